#!/usr/bin/env bash
# Builds the tiny test guest: a bootable qcow2 disk (about 16 MiB) that boots in seconds
# under TCG, reads vmm's NoCloud seed, applies it and reports on the serial console what it
# applied (see tests/guest/init). Made from Debian packages without mounting anything:
# the cloud kernel and busybox-static come by `apt-get download`; syslinux installs on a
# FAT partition through mtools; sfdisk writes the partition table into a plain file.
#
#   tests/guest/build.sh [OUT]      # default tests/guest/out/tiny.qcow2
#
# Needs: apt-get, dpkg-deb, cpio, gzip, kmod (modinfo), fdisk (sfdisk), mtools, syslinux,
# qemu-img (the setup installs them).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/out/tiny.qcow2}
mkdir -p "$(dirname "$out")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

kernel_pkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')
[ -n "$kernel_pkg" ] || { echo "build.sh: no cloud kernel package found" >&2; exit 1; }
apt-get download -q "$kernel_pkg" busybox-static >/dev/null 2>&1 || {
  echo "build.sh: apt-get download $kernel_pkg busybox-static failed" >&2
  exit 1
}
dpkg-deb -x "$(ls "${kernel_pkg}"_*.deb)" pkg
dpkg-deb -x "$(ls busybox-static_*.deb)" pkg
version=${kernel_pkg#linux-image-}
moddir=pkg/lib/modules/$version

# Modules to load, each after what it depends on (the package has no modules.dep).
wanted="virtio_pci virtio_blk virtio_net ata_piix sr_mod vfat isofs nls_cp437 nls_ascii nls_iso8859-1 nls_utf8"
declare -A path seen
while IFS= read -r ko; do
  name=$(basename "$ko" .ko)
  path[$name]=$ko
  path[${name//-/_}]=$ko
done < <(find "$moddir" -name '*.ko')
order=()
visit() {
  local m=${1//-/_}
  [ -n "${seen[$m]:-}" ] && return
  seen[$m]=1
  local ko=${path[$m]:-}
  [ -n "$ko" ] || return 0 # built into the kernel
  local dep
  for dep in $(modinfo -F depends "$ko" | tr ',' ' '); do visit "$dep"; done
  order+=("$ko")
}
for m in $wanted; do visit "$m"; done

root=initramfs
mkdir -p "$root"/{bin,dev,proc,sys,tmp,seed,etc,root,lib/modules}
cp pkg/bin/busybox "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
: >"$root/lib/modules/order"
for ko in "${order[@]}"; do
  cp "$ko" "$root/lib/modules/"
  basename "$ko" >>"$root/lib/modules/order"
done
cp "$here/init" "$root/init"
cp "$here/json.awk" "$root/lib/json.awk"
chmod 0755 "$root/init"
echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
(cd "$root" && find . | cpio -o -H newc --quiet) | gzip -9 >initrd.img
cp "pkg/boot/vmlinuz-$version" vmlinuz

cat >syslinux.cfg <<'CFG'
DEFAULT guest
PROMPT 0
TIMEOUT 0
LABEL guest
  KERNEL vmlinuz
  APPEND initrd=initrd.img console=ttyS0 loglevel=3 panic=-1
CFG

# A FAT partition holding syslinux, the kernel and the initramfs, at 1 MiB into the disk.
part_mib=$(( ($(stat -c %s vmlinuz) + $(stat -c %s initrd.img)) / 1048576 + 4 ))
truncate -s "${part_mib}M" part.img
mformat -i part.img -v TINYGUEST ::
mcopy -i part.img vmlinuz initrd.img syslinux.cfg ::/
syslinux --install part.img
truncate -s $(( part_mib + 1 ))M disk.img
printf 'label: dos\nstart=2048, type=c, bootable\n' | sfdisk -q disk.img
dd if=/usr/lib/syslinux/mbr/mbr.bin of=disk.img conv=notrunc bs=440 count=1 status=none
dd if=part.img of=disk.img bs=1M seek=1 conv=notrunc status=none
qemu-img convert -f raw -O qcow2 disk.img "$out.tmp"
mv "$out.tmp" "$out"
echo "build.sh: $out ($(du -h "$out" | cut -f1), kernel $version)"

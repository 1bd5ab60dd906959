#!/usr/bin/env bash
# Vendors the console page's browser libraries from npm into vmm-server/assets/console,
# pinned by version and checked by the registry's integrity hash. The files are committed
# (the server embeds them); run this only to move to another version, then update the pins.
#   noVNC   (@novnc/novnc, MPL-2.0; its vendored pako is MIT): the VNC client, ES modules.
#   xterm.js (@xterm/xterm, MIT): the serial terminal.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
novnc=1.7.0
novnc_sha='sha512-ucEJOx4T2avIRCleodk7YobZj5O2Ga2AeLfQ69A/yjG9HHba2+PDgwSkN3FttrmG+70ZGx21sElNFouK13RzyA=='
xterm=5.5.0
xterm_sha='sha512-hqJHYaQb5OptNunnyAnkHyM8aCjZ1MEIDTQu1iIbbTD/xops91NB5yq1ZK/dC2JDbVWtF23zUtl9JE2NqwT87A=='
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
fetch() { # package version integrity -> unpacked directory
  local file
  file=$(npm pack --silent "$1@$2")
  local got
  got="sha512-$(openssl dgst -sha512 -binary "$file" | base64 -w0)"
  [ "$got" = "$3" ] || { echo "$1@$2: integrity $got, expected $3" >&2; exit 1; }
  mkdir -p "$1" && tar xzf "$file" -C "$1"
  echo "$1/package"
}
n=$(fetch @novnc/novnc "$novnc" "$novnc_sha")
x=$(fetch @xterm/xterm "$xterm" "$xterm_sha")
out="$here/console"
rm -rf "$out/novnc" "$out/xterm"
mkdir -p "$out/novnc" "$out/xterm"
cp -r "$n/core" "$n/vendor" "$n/LICENSE.txt" "$out/novnc/"
cp "$n"/docs/LICENSE.* "$out/novnc/"
cp "$x/lib/xterm.js" "$x/css/xterm.css" "$x/LICENSE" "$out/xterm/"
echo "noVNC $novnc and xterm.js $xterm are in $out"

//! Storage pools and volumes on a node: finding a volume, streaming bytes to and from one,
//! making sure vmm's pool exists and is active, and re-reading the pool's directory.

use std::io::Read;
use std::time::{Duration, Instant};

use virt::connect::Connect;
use virt::error::ErrorNumber;
use virt::storage_pool::StoragePool;
use virt::storage_vol::StorageVol;
use virt::stream::Stream;
use vmm_core::VmId;

use super::xml::pool_xml;
use super::{code_is, LibvirtError, STREAM_CHUNK};

pub(super) fn lookup_volume(c: &Connect, pool: &str, vm: VmId) -> Result<Option<StorageVol>, LibvirtError> {
    let pool = c.lookup_storage_pool_by_name(pool)?;
    match pool.lookup_storage_vol_by_name(&vm.volume_name()) {
        Ok(v) => Ok(Some(v)),
        Err(e) if code_is(&e, &[ErrorNumber::NoStorageVolume]) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub(super) fn lookup_named(pool: &StoragePool, name: &str) -> Result<Option<StorageVol>, LibvirtError> {
    match pool.lookup_storage_vol_by_name(name) {
        Ok(v) => Ok(Some(v)),
        Err(e) if code_is(&e, &[ErrorNumber::NoStorageVolume]) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Streams `size` bytes of `data` into `vol` through libvirt (so remote nodes work the same).
pub(super) fn send(
    c: &Connect,
    vol: &StorageVol,
    mut data: Box<dyn Read + Send>,
    size: u64,
) -> Result<(), LibvirtError> {
    let stream = Stream::new(c, 0)?;
    vol.upload(&stream, 0, size, 0)?;
    let mut buf = vec![0u8; STREAM_CHUNK];
    let mut left = size;
    while left > 0 {
        let want = usize::try_from(left.min(STREAM_CHUNK as u64)).unwrap_or(STREAM_CHUNK);
        let n = match data.read(&mut buf[..want]) {
            Ok(0) => {
                stream.abort().ok();
                return Err(LibvirtError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                stream.abort().ok();
                return Err(LibvirtError::Io(e));
            }
        };
        let mut chunk = &buf[..n];
        while !chunk.is_empty() {
            match stream.send(chunk) {
                Ok(sent) if sent > 0 => chunk = &chunk[usize::try_from(sent).unwrap_or(chunk.len())..],
                Ok(_) => {
                    stream.abort().ok();
                    return Err(LibvirtError::Io(std::io::ErrorKind::WriteZero.into()));
                }
                Err(e) => {
                    stream.abort().ok();
                    return Err(e.into());
                }
            }
        }
        left -= n as u64;
    }
    stream.finish()?;
    Ok(())
}

/// Reads `length` bytes of `vol` from `offset` through libvirt.
pub(super) fn receive(
    c: &Connect,
    vol: &StorageVol,
    offset: u64,
    length: u64,
) -> Result<Vec<u8>, LibvirtError> {
    let stream = Stream::new(c, 0)?;
    vol.download(&stream, offset, length, 0)?;
    let mut out = Vec::with_capacity(usize::try_from(length).unwrap_or(0));
    let mut buf = vec![0u8; STREAM_CHUNK];
    loop {
        match stream.recv(&mut buf) {
            Ok(0) => break,
            Ok(n) if n > 0 => {
                let n = usize::try_from(n).unwrap_or(0);
                let room = usize::try_from(length).unwrap_or(usize::MAX).saturating_sub(out.len());
                out.extend_from_slice(&buf[..n.min(room)]);
            }
            Ok(_) => continue,
            Err(e) => {
                stream.abort().ok();
                return Err(e.into());
            }
        }
    }
    stream.finish()?;
    Ok(out)
}

pub(super) fn ensure_pool(c: &Connect, name: &str, path: &str) -> Result<StoragePool, LibvirtError> {
    let pool = match c.lookup_storage_pool_by_name(name) {
        Ok(p) => p,
        Err(e) if code_is(&e, &[ErrorNumber::NoStoragePool]) => {
            match c.define_storage_pool_xml(&pool_xml(name, path)?, 0) {
                Ok(pool) => {
                    pool.build(0)?;
                    pool.set_autostart(true)?;
                    pool
                }
                // Defined by a concurrent caller in between.
                Err(_) => c.lookup_storage_pool_by_name(name)?,
            }
        }
        Err(e) => return Err(e.into()),
    };
    if !pool.is_active()? {
        if let Err(e) = pool.create(0) {
            // Started by a concurrent caller in between.
            if !pool.is_active()? {
                return Err(e.into());
            }
        }
    }
    Ok(pool)
}

/// Re-reads the pool's directory, so that libvirt learns of files it did not create itself
/// (virtlogd writes the console logs). libvirt refuses a refresh while any volume of the
/// pool is being built or copied, which on a busy node is whenever a VM is being installed:
/// the refresh waits for that, up to `patience`.
pub(super) fn refresh_pool(p: &StoragePool, patience: Duration) -> Result<(), LibvirtError> {
    let give_up = Instant::now() + patience;
    loop {
        match p.refresh(0) {
            Err(e) if pool_is_busy(&e) && Instant::now() < give_up => {
                std::thread::sleep(Duration::from_millis(100));
            }
            other => return other.map(drop).map_err(Into::into),
        }
    }
}

/// libvirt's answer to a refresh of a pool in which a volume is being built or copied. It
/// has no code of its own (an internal error), only these words.
pub(super) fn pool_is_busy(e: &virt::error::Error) -> bool {
    code_is(e, &[ErrorNumber::InternalError]) && e.message().contains("asynchronous jobs running")
}

//! Storage pools and volumes on a node: finding a volume, streaming bytes to and from one,
//! making sure vmm's pool exists and is active, and re-reading the pool's directory.

use std::io::Read;
use std::time::{Duration, Instant};

use virt::connect::Connect;
use virt::error::ErrorNumber;
use virt::storage_pool::StoragePool;
use virt::storage_vol::StorageVol;
use virt::stream::Stream;
use vmm_core::{Error, Hypervisor, Result, VmId};

use super::xml::{named_volume_xml, pool_path, pool_xml};
use super::{code_is, LibvirtError, LibvirtHypervisor, GIB, STREAM_CHUNK};

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

/// Streams the whole of `vol` into `sink` in pieces; returns the bytes sent. A node on this
/// host (`local`) has the volume's file read directly; any other, through a libvirt stream.
/// A sink whose reader went away ends the read.
pub(super) fn stream_out(
    c: &Connect,
    vol: &StorageVol,
    mut sink: vmm_core::hypervisor::DataSink,
    local: bool,
) -> Result<u64, LibvirtError> {
    use futures::SinkExt;
    use std::io::Read;
    let gone = || LibvirtError::Io(std::io::ErrorKind::BrokenPipe.into());
    if local {
        let mut file = std::fs::File::open(vol.path()?)?;
        let mut sent = 0u64;
        loop {
            // Whole chunks, so that the reader need not copy them again.
            let mut buf = vec![0u8; vmm_core::backup::CHUNK_SIZE];
            let mut filled = 0;
            while filled < buf.len() {
                match file.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if filled == 0 {
                return Ok(sent);
            }
            buf.truncate(filled);
            futures::executor::block_on(sink.send(buf)).map_err(|_| gone())?;
            sent += filled as u64;
        }
    }
    let stream = Stream::new(c, 0)?;
    vol.download(&stream, 0, 0, 0)?;
    let mut buf = vec![0u8; STREAM_CHUNK];
    let mut sent = 0u64;
    loop {
        match stream.recv(&mut buf) {
            Ok(0) => break,
            Ok(n) if n > 0 => {
                let n = usize::try_from(n).unwrap_or(0);
                if futures::executor::block_on(sink.send(buf[..n].to_vec())).is_err() {
                    stream.abort().ok();
                    return Err(gone());
                }
                sent += n as u64;
            }
            Ok(_) => continue,
            Err(e) => {
                stream.abort().ok();
                return Err(e.into());
            }
        }
    }
    stream.finish()?;
    Ok(sent)
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

impl LibvirtHypervisor {
    /// Runs `f` on the VM's volume; a missing volume is [`Error::VmNotFound`].
    pub(super) async fn on_volume<T, F>(&self, op: &'static str, vm: VmId, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&StorageVol) -> Result<T, virt::error::Error> + Send + 'static,
    {
        let pool = self.config.storage_pool.clone();
        self.call(op, move |c| match lookup_volume(c, &pool, vm)? {
            Some(v) => Ok(Some(f(&v)?)),
            None => Ok(None),
        })
        .await?
        .ok_or(Error::VmNotFound { id: vm })
    }

    /// The path of the VM's volume on the node, if it exists.
    pub async fn volume_path(&self, vm: VmId) -> Result<Option<String>> {
        match self.on_volume("read a volume", vm, |v| v.path()).await {
            Ok(p) => Ok(Some(p)),
            Err(Error::VmNotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The storage pool's directory on the node (read once).
    pub(super) async fn pool_dir(&self) -> Result<String> {
        if let Some(dir) = self.pool_dir.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(dir);
        }
        let (name, path) = (self.config.storage_pool.clone(), self.config.storage_path.clone());
        let dir = self
            .call("read the storage pool", move |c| {
                pool_path(&ensure_pool(c, &name, &path)?.xml_desc(0)?).map_err(LibvirtError::Parse)
            })
            .await?;
        *self.pool_dir.lock().unwrap_or_else(|e| e.into_inner()) = Some(dir.clone());
        Ok(dir)
    }

    /// Where domains are placed: the operator's settings, and the pool's directory for the
    /// console log on nodes that keep one.
    pub(super) async fn placement(&self) -> Result<(String, Option<String>, Option<String>)> {
        let log_dir = if self.capabilities().console_log { Some(self.pool_dir().await?) } else { None };
        Ok((self.config.storage_pool.clone(), self.config.network.clone(), log_dir))
    }

    /// Writes `data` (`size` bytes) as volume `name` of `format`, replacing one of that name.
    pub(super) async fn upload_volume(
        &self,
        op: &'static str,
        name: String,
        format: &'static str,
        data: Box<dyn Read + Send>,
        size: u64,
    ) -> Result<()> {
        let (pool, path) = (self.config.storage_pool.clone(), self.config.storage_path.clone());
        let xml = named_volume_xml(&name, size.max(512), format).map_err(|e| self.to_error(op, e.into()))?;
        self.call_moving(op, size, move |c| {
            let p = ensure_pool(c, &pool, &path)?;
            if let Some(old) = lookup_named(&p, &name)? {
                old.delete(0)?;
            }
            let vol = StorageVol::create_xml(&p, &xml, 0)?;
            let sent = send(c, &vol, data, size);
            if sent.is_err() {
                // No partial volume stays behind.
                vol.delete(0).ok();
            }
            sent
        })
        .await
    }

    /// Deletes volume `name` if it exists.
    pub(super) async fn delete_named(&self, op: &'static str, name: String) -> Result<()> {
        let (pool, path) = (self.config.storage_pool.clone(), self.config.storage_path.clone());
        self.call(op, move |c| {
            let p = ensure_pool(c, &pool, &path)?;
            if let Some(v) = lookup_named(&p, &name)? {
                v.delete(0)?;
            }
            Ok(())
        })
        .await
    }

    /// Makes volume `to` (qcow2, at least `size_gib`) a copy of volume `from`; `to` must not
    /// exist. Returns its size in GiB.
    pub(super) async fn copy_named(
        &self,
        op: &'static str,
        from: String,
        to: String,
        size_gib: Option<u64>,
    ) -> Result<u64> {
        let (pool, path) = (self.config.storage_pool.clone(), self.config.storage_path.clone());
        let bytes = size_gib.unwrap_or(1) * GIB;
        let copied = self
            .call_moving(op, bytes, move |c| {
                let p = ensure_pool(c, &pool, &path)?;
                let Some(source) = lookup_named(&p, &from)? else { return Ok(Err(from)) };
                if lookup_named(&p, &to)?.is_some() {
                    return Ok(Err(to));
                }
                let capacity = source.info()?.capacity.max(size_gib.unwrap_or(0) * GIB);
                let vol =
                    StorageVol::create_xml_from(&p, &named_volume_xml(&to, capacity, "qcow2")?, &source, 0)?;
                // libvirt copies at the source's size; grow the copy to the size asked for.
                if vol.info()?.capacity < capacity {
                    if let Err(e) = vol.resize(capacity, 0) {
                        vol.delete(0).ok();
                        return Err(e.into());
                    }
                }
                Ok(Ok(vol.info()?.capacity.div_ceil(GIB)))
            })
            .await?;
        copied.map_err(|name| Error::conflict(format!("volume {name} is missing or already exists")))
    }
}

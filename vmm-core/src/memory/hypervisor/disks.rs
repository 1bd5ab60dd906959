//! The fake's disks as data (read for backups, written by restores) and its snapshots
//! (each keeps the disk's content and the domain's power state).

use super::{FakeVolume, HypervisorCall, InMemoryHypervisor};
use crate::backup::Consistency;
use crate::error::{Error, Result};
use crate::hypervisor::{DataSink, PowerState, VolumeInfo, VolumeRead};
use crate::id::VmId;
use crate::image::ImageFormat;
use crate::snapshot::SnapshotInfo;

impl InMemoryHypervisor {
    /// [`Hypervisor::read_volume`](crate::Hypervisor::read_volume): the content as bytes.
    pub(super) async fn read_disk(&self, vm: VmId, mut sink: DataSink) -> Result<VolumeRead> {
        use futures::SinkExt;
        let gate = self.gate(HypervisorCall::ReadVolume).await?;
        let (content, running) = {
            let s = self.state();
            let running = s.domains.get(&vm).is_some_and(|(_, st)| *st != PowerState::Shutoff);
            let content = s.volumes.get(&vm).map(|v| v.content.clone().into_bytes());
            (content.ok_or(Error::VmNotFound { id: vm }), running)
        };
        gate.pass().await;
        let content = content?;
        for piece in content.chunks(1 << 20) {
            sink.send(piece.to_vec())
                .await
                .map_err(|_| Error::conflict("the reader of the disk went away"))?;
        }
        // A running fake has no guest agent: its copy is crash-consistent.
        let consistency = if running { Consistency::CrashConsistent } else { Consistency::Stopped };
        Ok(VolumeRead { format: ImageFormat::Qcow2, bytes: content.len() as u64, consistency })
    }

    /// [`Hypervisor::write_volume`](crate::Hypervisor::write_volume): the bytes (text) become
    /// the content.
    pub(super) async fn write_disk(
        &self,
        vm: VmId,
        _format: ImageFormat,
        mut data: Box<dyn std::io::Read + Send>,
        size: u64,
    ) -> Result<VolumeInfo> {
        let gate = self.gate(HypervisorCall::WriteVolume).await?;
        if self.state().volumes.contains_key(&vm) {
            return Err(Error::conflict(format!("volume {} exists", vm.volume_name())));
        }
        // Read on a thread of its own, as a node would: the data may be fed by the caller's
        // own task.
        let (done, bytes) = futures::channel::oneshot::channel();
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = done.send(data.read_to_end(&mut bytes).map(|_| bytes));
        });
        let read = bytes.await.map_err(|_| Error::backend(self.uri.clone(), "the reading thread died"))?;
        gate.pass().await;
        let bytes = read.map_err(|e| Error::backend(self.uri.clone(), e))?;
        if bytes.len() as u64 != size {
            return Err(Error::invalid("data", format!("{} bytes arrived of {size}", bytes.len())));
        }
        let content = String::from_utf8(bytes).map_err(|_| Error::invalid("data", "the fake holds text"))?;
        let size_gib = size.div_ceil(1 << 30).max(1);
        let mut s = self.state();
        match s.volumes.entry(vm) {
            std::collections::btree_map::Entry::Occupied(_) => {
                Err(Error::conflict(format!("volume {} exists", vm.volume_name())))
            }
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(FakeVolume { size_gib, content });
                Ok(VolumeInfo { name: vm.volume_name(), capacity_gib: size_gib })
            }
        }
    }

    /// [`Hypervisor::create_snapshot`](crate::Hypervisor::create_snapshot): the content and
    /// power state are kept.
    pub(super) async fn take_snapshot(&self, vm: VmId, name: &str) -> Result<SnapshotInfo> {
        let gate = self.gate(HypervisorCall::CreateSnapshot).await?;
        let result = {
            let mut s = self.state();
            let state = s.domains.get(&vm).map(|(_, st)| *st).ok_or(Error::VmNotFound { id: vm })?;
            let content =
                s.volumes.get(&vm).map(|v| v.content.clone()).ok_or(Error::VmNotFound { id: vm })?;
            let taken = s.snapshots.entry(vm).or_default();
            if taken.iter().any(|(i, _, _)| i.name == name) {
                Err(Error::conflict(format!("VM {vm} has a snapshot named {name}")))
            } else {
                let info = SnapshotInfo {
                    name: name.to_owned(),
                    parent: taken.last().map(|(i, _, _)| i.name.clone()),
                    memory: state == PowerState::Running,
                };
                taken.push((info.clone(), content, state));
                Ok(info)
            }
        };
        gate.pass().await;
        result
    }

    /// [`Hypervisor::list_snapshots`](crate::Hypervisor::list_snapshots).
    pub(super) fn snapshots_of(&self, vm: VmId) -> Vec<SnapshotInfo> {
        let s = self.state();
        s.snapshots.get(&vm).map(|t| t.iter().map(|(i, _, _)| i.clone()).collect()).unwrap_or_default()
    }

    /// [`Hypervisor::revert_snapshot`](crate::Hypervisor::revert_snapshot): the content and
    /// power state come back.
    pub(super) async fn revert_to(&self, vm: VmId, name: &str) -> Result<()> {
        let gate = self.gate(HypervisorCall::RevertSnapshot).await?;
        let result = {
            let mut s = self.state();
            let found = s.snapshots.get(&vm).and_then(|t| t.iter().find(|(i, _, _)| i.name == name).cloned());
            match found {
                None => Err(Error::conflict(format!("VM {vm} has no snapshot named {name}"))),
                Some((_, content, state)) => {
                    if let Some(v) = s.volumes.get_mut(&vm) {
                        v.content = content;
                    }
                    if let Some((_, st)) = s.domains.get_mut(&vm) {
                        *st = state;
                    }
                    Ok(())
                }
            }
        };
        gate.pass().await;
        result
    }

    /// [`Hypervisor::delete_snapshot`](crate::Hypervisor::delete_snapshot).
    pub(super) async fn remove_snapshot(&self, vm: VmId, name: &str) -> Result<()> {
        let gate = self.gate(HypervisorCall::DeleteSnapshot).await?;
        if let Some(taken) = self.state().snapshots.get_mut(&vm) {
            taken.retain(|(i, _, _)| i.name != name);
        }
        gate.pass().await;
        Ok(())
    }
}

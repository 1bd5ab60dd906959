//! What a backup is on its target: the disk cut into chunks of [`CHUNK_SIZE`] bytes, each
//! stored under its own key with its SHA-256 in the [`Manifest`], which also holds the
//! SHA-256 of the whole disk, the VM's settings and where it was installed from. The
//! manifest is written last, in one atomic put: a backup without one is not restorable.
//!
//! Chunks of zeros are not stored. An incremental backup stores only the chunks that differ
//! from its parent's and names the parent's keys for the rest, so a manifest always lists
//! every key its disk needs: deleting a backup keeps the chunks a newer manifest names.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::guest::GuestSettings;
use crate::id::{BackupId, VmId};
use crate::image::ImageFormat;
use crate::vm::Vm;

use super::Consistency;

/// The size of a chunk (4 MiB); the last one of a disk may be shorter.
pub const CHUNK_SIZE: usize = 4 << 20;

/// The manifest format this code writes.
pub const MANIFEST_VERSION: u32 = 1;

/// Where the objects of `backup` of `vm` live: every key starts with this.
pub fn backup_prefix(vm: VmId, backup: BackupId) -> String {
    format!("vms/{vm}/{backup}/")
}

/// The key of the manifest of `backup`.
pub fn manifest_key(vm: VmId, backup: BackupId) -> String {
    format!("vms/{vm}/{backup}/manifest.json")
}

/// The key of chunk `index` written by `backup`.
pub fn chunk_key(vm: VmId, backup: BackupId, index: usize) -> String {
    format!("vms/{vm}/{backup}/chunks/{index:08}")
}

/// The lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    crate::secret::sha256_hex(data)
}

/// One stored chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    /// Where it is stored (possibly under an older backup of the chain).
    pub key: String,
    /// The SHA-256 of its bytes.
    pub sha256: String,
    /// How many bytes it holds.
    pub len: u64,
}

/// One chunk of the disk: stored, or all zeros (then only its length is kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Chunk {
    /// Stored under a key.
    Stored(ChunkRef),
    /// All zeros, not stored.
    Zero {
        /// How many zero bytes.
        zero: u64,
    },
}

impl Chunk {
    /// How many bytes of the disk it covers.
    pub fn len(&self) -> u64 {
        match self {
            Self::Stored(c) => c.len,
            Self::Zero { zero } => *zero,
        }
    }

    /// Whether it covers no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What is on the target for one backup, written once it is complete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_VERSION`].
    pub version: u32,
    /// The backup.
    pub backup_id: BackupId,
    /// The backup the chunks not stored here come from, for an incremental one.
    pub parent_id: Option<BackupId>,
    /// When the disk was read.
    pub created_at: DateTime<Utc>,
    /// The disk's format as stored on the node (its bytes are that file's bytes).
    pub format: ImageFormat,
    /// Its size in bytes.
    pub size: u64,
    /// [`CHUNK_SIZE`] when written.
    pub chunk_size: u64,
    /// The whole disk's checksum ([`disk_digest`]).
    pub sha256: String,
    /// How consistent the copy is.
    pub consistency: Consistency,
    /// The VM as it was.
    pub vm: Vm,
    /// The guest settings it was installed with (cloud-init), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest: Option<GuestSettings>,
    /// Every chunk of the disk, in order.
    pub chunks: Vec<Chunk>,
}

impl Manifest {
    /// Reads a manifest, checking that it is one this code understands and that its chunks
    /// add up to its size.
    pub fn from_json(data: &[u8]) -> Result<Self> {
        let m: Manifest = serde_json::from_slice(data)
            .map_err(|e| Error::conflict(format!("the backup's manifest is unreadable: {e}")))?;
        if m.version != MANIFEST_VERSION {
            return Err(Error::conflict(format!("manifest version {} is not supported", m.version)));
        }
        let total: u64 = m.chunks.iter().map(Chunk::len).sum();
        if total != m.size {
            return Err(Error::conflict(format!("the manifest's chunks hold {total} bytes, not {}", m.size)));
        }
        if disk_digest(&m.chunks) != m.sha256 {
            return Err(Error::conflict("the manifest's chunk list does not match its checksum"));
        }
        for c in &m.chunks {
            if let Chunk::Stored(c) = c {
                super::target::check_key(&c.key)
                    .map_err(|_| Error::conflict(format!("the manifest names a bad key {:?}", c.key)))?;
            }
        }
        Ok(m)
    }

    /// The keys of the stored chunks.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.chunks.iter().filter_map(|c| match c {
            Chunk::Stored(c) => Some(c.key.as_str()),
            Chunk::Zero { .. } => None,
        })
    }
}

/// Cuts a stream of pieces of any size into chunks of [`CHUNK_SIZE`]; a piece that is a
/// whole chunk where one starts passes through without a copy.
#[derive(Debug, Default)]
pub struct Chunker {
    buf: Vec<u8>,
    total: u64,
}

impl Chunker {
    /// Takes the next piece; returns the chunks it completed.
    pub fn push(&mut self, piece: Vec<u8>) -> Vec<Vec<u8>> {
        self.total += piece.len() as u64;
        if self.buf.is_empty() && piece.len() == CHUNK_SIZE {
            return vec![piece];
        }
        let mut full = Vec::new();
        let mut rest = &piece[..];
        while !rest.is_empty() {
            if self.buf.capacity() == 0 {
                self.buf.reserve_exact(CHUNK_SIZE);
            }
            let take = (CHUNK_SIZE - self.buf.len()).min(rest.len());
            self.buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.buf.len() == CHUNK_SIZE {
                full.push(std::mem::take(&mut self.buf));
            }
        }
        full
    }

    /// The last, short chunk (if any) and the number of bytes seen.
    pub fn finish(self) -> (Option<Vec<u8>>, u64) {
        ((!self.buf.is_empty()).then_some(self.buf), self.total)
    }
}

/// The SHA-256 of `len` zero bytes (a full chunk's is computed once).
pub fn zero_digest(len: u64) -> String {
    static FULL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if len == CHUNK_SIZE as u64 {
        return FULL.get_or_init(|| sha256_hex(&vec![0; CHUNK_SIZE])).clone();
    }
    sha256_hex(&vec![0; usize::try_from(len).unwrap_or(0)])
}

/// The whole disk's checksum: the SHA-256 of its chunks' SHA-256s (lowercase hex, in order,
/// zero chunks included), as Proxmox Backup Server checksums a fixed index. With every
/// chunk checked against its own, it checks the disk without hashing it twice.
pub fn disk_digest(chunks: &[Chunk]) -> String {
    let mut whole = Sha256::new();
    for c in chunks {
        match c {
            Chunk::Stored(c) => whole.update(c.sha256.as_bytes()),
            Chunk::Zero { zero } => whole.update(zero_digest(*zero).as_bytes()),
        }
    }
    crate::secret::hex(&whole.finalize())
}

/// Whether a chunk is all zeros (compared 16 bytes at a time).
pub fn is_zero(chunk: &[u8]) -> bool {
    let mut words = chunk.chunks_exact(16);
    let body = words.by_ref().all(|w| u128::from_ne_bytes(w.try_into().expect("16 bytes")) == 0);
    body && words.remainder().iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the pieces, the chunks are the input cut at CHUNK_SIZE.
        #[test]
        fn chunks_concatenate_to_the_input(cuts in proptest::collection::vec(0usize..3 * CHUNK_SIZE / 2, 0..6)) {
            let total: usize = cuts.iter().sum();
            let data: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
            let mut chunker = Chunker::default();
            let mut out = Vec::new();
            let mut at = 0;
            for c in &cuts {
                out.extend(chunker.push(data[at..at + c].to_vec()));
                at += c;
            }
            let (last, n) = chunker.finish();
            out.extend(last);
            prop_assert!(out.iter().rev().skip(1).all(|c| c.len() == CHUNK_SIZE));
            prop_assert_eq!(out.concat(), data);
            prop_assert_eq!(n as usize, total);
        }
    }

    #[test]
    fn the_disk_digest_covers_every_chunk_in_order() {
        let a = Chunk::Stored(ChunkRef { key: "k/a".into(), sha256: sha256_hex(b"a"), len: 1 });
        let z = Chunk::Zero { zero: CHUNK_SIZE as u64 };
        let whole = disk_digest(&[a.clone(), z.clone()]);
        assert_ne!(whole, disk_digest(&[z.clone(), a.clone()]));
        assert_ne!(whole, disk_digest(std::slice::from_ref(&a)));
        assert_eq!(zero_digest(CHUNK_SIZE as u64), sha256_hex(&vec![0; CHUNK_SIZE]));
    }

    #[test]
    fn zero_chunks_are_recognised() {
        assert!(is_zero(&[0; 100]));
        assert!(is_zero(&[]));
        let mut c = vec![0u8; 4099];
        c[4098] = 1;
        assert!(!is_zero(&c));
        c[4098] = 0;
        c[17] = 1;
        assert!(!is_zero(&c));
    }
}

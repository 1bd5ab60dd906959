//! SSH keys: each user's library of OpenSSH public keys, one key per entry, named and
//! fingerprinted. VMs are given keys from it by id (`ssh_key_ids`) at create and reinstall.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::guest::{parse_ssh_key, ssh_key_fingerprint};
use crate::id::{SshKeyId, UserId};

/// Longest key line accepted, in bytes (an RSA 16384 key fits).
pub const MAX_KEY_BYTES: usize = 16 * 1024;

/// What a user gives to add a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SshKeySpec {
    /// A name for it.
    pub name: String,
    /// One OpenSSH public key line (`ssh-ed25519 AAAA… comment`).
    pub public_key: String,
}

/// A key of a user's library.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SshKey {
    /// The id.
    pub id: SshKeyId,
    /// Whose it is.
    pub owner_id: UserId,
    /// Its name.
    pub name: String,
    /// The key, as OpenSSH writes it back.
    pub public_key: String,
    /// Its SHA-256 fingerprint (`SHA256:…`); unique in the owner's library.
    pub fingerprint: String,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

impl SshKey {
    /// Checks a spec and makes the key of `owner`.
    pub fn from_spec(spec: &SshKeySpec, owner: UserId, now: DateTime<Utc>) -> Result<Self> {
        crate::names::check_name(&spec.name)?;
        let name = spec.name.as_str();
        let line = spec.public_key.trim();
        if line.len() > MAX_KEY_BYTES || line.contains(['\n', '\r']) {
            return Err(Error::invalid("public_key", "must be one OpenSSH public key line"));
        }
        let public_key =
            parse_ssh_key(line).map_err(|_| Error::invalid("public_key", "is not an OpenSSH public key"))?;
        let fingerprint = ssh_key_fingerprint(&public_key)?;
        Ok(Self {
            id: SshKeyId::new(),
            owner_id: owner,
            name: name.to_owned(),
            public_key,
            fingerprint,
            created_at: now,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx5ZWNR0v1Jbf5Jz1Ubs5YqQ2t4aH1r0WAXLrNQHdCX you@laptop";

    #[test]
    fn one_key_per_entry_fingerprinted() {
        let spec = SshKeySpec { name: "laptop".into(), public_key: format!("  {KEY}\n") };
        let key = SshKey::from_spec(&spec, UserId::new(), Utc::now()).unwrap();
        assert_eq!(key.public_key, KEY);
        assert!(key.fingerprint.starts_with("SHA256:"), "{}", key.fingerprint);
        for bad in [format!("{KEY}\n{KEY}"), "ssh-ed25519 not-base64".into(), String::new(), "ssh-rsa".into()]
        {
            let spec = SshKeySpec { name: "k".into(), public_key: bad.clone() };
            assert!(SshKey::from_spec(&spec, UserId::new(), Utc::now()).is_err(), "{bad:?}");
        }
        let unnamed = SshKeySpec { name: " ".into(), public_key: KEY.into() };
        assert!(SshKey::from_spec(&unnamed, UserId::new(), Utc::now()).is_err());
    }
}

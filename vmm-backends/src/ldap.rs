//! [`LdapDirectory`]: sign-in against an LDAP directory. A user is found by a search (as a
//! service account, or anonymously), checked by a simple bind with their own DN and
//! password, and given the role of the first configured group they are a member of
//! (`groupOfNames` with `member`). Plain `ldap://` is refused except on loopback unless
//! StartTLS is on; `ldaps://` and StartTLS verify the server's certificate.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use ldap3::{ldap_escape, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};
use vmm_core::{Directory, DirectoryUser, Error, Result, Role, Secret};

/// How to reach and read the directory.
#[derive(Clone, PartialEq, Eq)]
pub struct LdapConfig {
    /// `ldaps://host[:port]`, or `ldap://host[:port]` with `starttls` (plain only on loopback).
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS.
    pub starttls: bool,
    /// The DN to search as (anonymously when `None`).
    pub bind_dn: Option<String>,
    /// Its password.
    pub bind_password: Option<Secret>,
    /// Where users are searched for.
    pub user_base: String,
    /// How a user is found; `{email}` stands for the (escaped) email signed in with.
    pub user_filter: String,
    /// Where groups are searched for.
    pub group_base: String,
    /// Group DN → role; the first group the user is a member of decides.
    pub roles: Vec<(String, Role)>,
    /// How long connecting and each operation may take.
    pub timeout: Duration,
}

impl fmt::Debug for LdapConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LdapConfig")
            .field("url", &self.url)
            .field("starttls", &self.starttls)
            .field("bind_dn", &self.bind_dn)
            .field("bind_password", &self.bind_password.as_ref().map(|_| "***"))
            .field("user_base", &self.user_base)
            .field("user_filter", &self.user_filter)
            .field("group_base", &self.group_base)
            .field("roles", &self.roles)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl LdapConfig {
    /// Checks the settings: the URL's scheme and host, TLS for anything off loopback, a
    /// filter that names `{email}`, and at least one group mapped to a role.
    pub fn validate(&self) -> Result<()> {
        let url = url::Url::parse(&self.url).map_err(|_| Error::invalid("ldap.url", "is not a URL"))?;
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| Error::invalid("ldap.url", "names no host"))?;
        if !url.username().is_empty()
            || url.password().is_some()
            || url.query().is_some()
            || !matches!(url.path(), "" | "/")
        {
            return Err(Error::invalid("ldap.url", "must be scheme://host[:port], nothing more"));
        }
        match url.scheme() {
            "ldaps" if self.starttls => {
                return Err(Error::invalid("ldap.starttls", "ldaps:// is TLS already"))
            }
            "ldaps" => {}
            "ldap" if self.starttls => {}
            "ldap" => {
                let loopback = host == "localhost"
                    || host.trim_matches(['[', ']']).parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
                if !loopback {
                    return Err(Error::invalid(
                        "ldap.url",
                        "plain ldap:// is only for loopback: use ldaps:// or starttls = true",
                    ));
                }
            }
            _ => return Err(Error::invalid("ldap.url", "must be ldap:// or ldaps://")),
        }
        if !self.user_filter.contains("{email}") || !self.user_filter.starts_with('(') {
            return Err(Error::invalid("ldap.user_filter", "must be an LDAP filter naming {email}"));
        }
        if self.roles.is_empty() {
            return Err(Error::invalid("ldap.roles", "map at least one group to a role"));
        }
        if self.bind_dn.is_some() != self.bind_password.is_some() {
            return Err(Error::invalid("ldap.bind_password", "a bind DN and its password go together"));
        }
        Ok(())
    }
}

/// A directory reached over LDAP.
#[derive(Debug)]
pub struct LdapDirectory {
    config: LdapConfig,
}

impl LdapDirectory {
    /// A directory with checked settings.
    pub fn new(config: LdapConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config })
    }

    fn unavailable(&self, what: &str) -> Error {
        Error::unavailable("ldap", format!("the directory did not {what}"))
    }
}

/// Whether an LDAP result says the credentials were wrong (49: invalidCredentials).
const INVALID_CREDENTIALS: u32 = 49;

#[async_trait]
impl Directory for LdapDirectory {
    async fn authenticate(&self, email: &str, password: &Secret) -> Result<Option<DirectoryUser>> {
        if password.expose().is_empty() {
            return Ok(None); // an empty password is an anonymous bind
        }
        let c = &self.config;
        let settings = LdapConnSettings::new().set_conn_timeout(c.timeout).set_starttls(c.starttls);
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &c.url).await.map_err(|e| {
            tracing::warn!(error = %e, "cannot reach the LDAP directory");
            self.unavailable("answer")
        })?;
        ldap3::drive!(conn);
        ldap.with_timeout(c.timeout);
        if let (Some(dn), Some(pw)) = (&c.bind_dn, &c.bind_password) {
            let bound =
                ldap.simple_bind(dn, pw.expose()).await.map_err(|_| self.unavailable("answer a bind"))?;
            if bound.rc != 0 {
                tracing::error!(rc = bound.rc, "the LDAP service account cannot bind");
                return Err(self.unavailable("accept vmm's service account"));
            }
        }
        let filter = c.user_filter.replace("{email}", &ldap_escape(email));
        let found = ldap
            .with_timeout(c.timeout)
            .search(&c.user_base, Scope::Subtree, &filter, vec!["1.1"])
            .await
            .and_then(|r| r.success())
            .map_err(|_| self.unavailable("answer a search for the user"))?;
        let [entry] = found.0.as_slice() else { return Ok(None) };
        let dn = SearchEntry::construct(entry.clone()).dn;
        let bound =
            ldap.simple_bind(&dn, password.expose()).await.map_err(|_| self.unavailable("answer a bind"))?;
        match bound.rc {
            0 => {}
            INVALID_CREDENTIALS => return Ok(None),
            rc => {
                tracing::warn!(rc, "the LDAP directory refused a user's bind");
                return Ok(None);
            }
        }
        let groups = format!("(&(objectClass=groupOfNames)(member={}))", ldap_escape(&dn));
        let member_of = ldap
            .with_timeout(c.timeout)
            .search(&c.group_base, Scope::Subtree, &groups, vec!["1.1"])
            .await
            .and_then(|r| r.success())
            .map_err(|_| self.unavailable("answer a search for the user's groups"))?;
        let member_of: Vec<String> =
            member_of.0.into_iter().map(|e| SearchEntry::construct(e).dn.to_lowercase()).collect();
        let _ = ldap.unbind().await;
        let role =
            c.roles.iter().find(|(group, _)| member_of.contains(&group.to_lowercase())).map(|(_, r)| *r);
        Ok(Some(DirectoryUser { role }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> LdapConfig {
        LdapConfig {
            url: url.into(),
            starttls: false,
            bind_dn: None,
            bind_password: None,
            user_base: "ou=people,dc=example,dc=com".into(),
            user_filter: "(mail={email})".into(),
            group_base: "ou=groups,dc=example,dc=com".into(),
            roles: vec![("cn=admins,ou=groups,dc=example,dc=com".into(), Role::Admin)],
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn plain_ldap_only_on_loopback_and_the_password_never_shows() {
        assert!(config("ldap://127.0.0.1:3890").validate().is_ok());
        assert!(config("ldap://[::1]:3890").validate().is_ok());
        assert!(config("ldaps://ldap.example.com").validate().is_ok());
        assert!(LdapConfig { starttls: true, ..config("ldap://ldap.example.com") }.validate().is_ok());
        for bad in [
            "ldap://ldap.example.com",
            "http://127.0.0.1",
            "ldap://u:p@127.0.0.1",
            "ldap://127.0.0.1/dc=x",
            "ldap://",
        ] {
            assert!(config(bad).validate().is_err(), "{bad}");
        }
        assert!(LdapConfig { user_filter: "(mail=x)".into(), ..config("ldaps://h") }.validate().is_err());
        assert!(LdapConfig { roles: vec![], ..config("ldaps://h") }.validate().is_err());
        let with_secret = LdapConfig {
            bind_dn: Some("cn=vmm".into()),
            bind_password: Some(Secret::new("hunter2-service")),
            ..config("ldaps://h")
        };
        assert!(!format!("{with_secret:?}").contains("hunter2"));
    }
}

//! `vmmd config show`: the settings in effect, as a config file would give them, with every
//! secret replaced by [`REDACTED`].

use std::time::Duration;

use toml::{Table, Value};

use super::Settings;

/// What a secret is shown as.
pub const REDACTED: &str = "<redacted>";

fn secs(d: Duration) -> Value {
    Value::Integer(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn int(n: impl TryInto<i64>) -> Value {
    Value::Integer(n.try_into().unwrap_or(i64::MAX))
}

fn text(s: impl ToString) -> Value {
    Value::String(s.to_string())
}

fn list<T: ToString>(items: impl IntoIterator<Item = T>) -> Value {
    Value::Array(items.into_iter().map(text).collect())
}

/// `url` with its password (a database URL may carry one) replaced.
fn without_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some(REDACTED));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

impl Settings {
    /// The settings as a TOML config file, secrets redacted: every key the file takes,
    /// with the value in effect (from the file, the environment or the default).
    pub fn to_redacted_toml(&self) -> String {
        let mut t = Table::new();
        let mut put = |k: &str, v: Value| {
            t.insert(k.to_owned(), v);
        };
        put("listen", text(self.listen));
        put("database_url", text(without_password(&self.database_url)));
        put("data_dir", text(self.data_dir.display()));
        if self.admin_token.is_some() {
            put("admin_token", text(REDACTED));
        }
        put("admin_email", text(&self.admin_email));
        put("session_ttl_s", secs(self.session_ttl));
        put("event_retention_days", int(self.event_retention.as_secs() / 86_400));
        put("local_node", Value::Boolean(self.local_node));
        put("local_node_virt_type", text(self.local_node_virt_type));
        put("storage_path", text(&self.storage_path));
        put("storage_pool", text(&self.storage_pool));
        put("storage_shared", Value::Boolean(self.storage_shared));
        put("node_lease_s", int(self.node_lease.as_secs()));
        put("ha_interval_s", int(self.ha_interval.as_secs()));
        put("fence_timeout_s", int(self.fence_timeout.as_secs()));
        // The programs only: an agent's arguments may hold a BMC's password.
        let agents = self.fence_agents.0.iter().map(|(name, argv)| {
            let shown =
                argv.iter().enumerate().map(|(i, a)| text(if i == 0 { a.as_str() } else { REDACTED }));
            (name.clone(), Value::Array(shown.collect()))
        });
        put("fence_agents", Value::Table(agents.collect()));
        put("test_nodes", Value::Boolean(self.node_uris.test_nodes));
        put("node_uri_params", list(&self.node_uris.query_params));
        put("header_read_timeout_s", secs(self.serve.header_read_timeout));
        put("request_timeout_s", secs(self.limits.request_timeout));
        put("max_connections", int(self.serve.max_connections));
        put("libvirt_connect_timeout_s", secs(self.libvirt.connect));
        put("libvirt_call_timeout_s", secs(self.libvirt.call));
        put("auth_max_failures", int(self.throttle.max_failures));
        put("task_lease_s", secs(self.task_lease));
        put("image_dir", text(self.image_dir.display()));
        put("image_max_bytes", int(self.image_limits.max_bytes));
        put("image_max_virtual_bytes", int(self.image_limits.max_virtual_bytes));
        put("image_url_hosts", list(&self.image_urls.allowed_hosts));
        put("image_url_addresses", list(&self.image_urls.allowed_addresses));
        put("image_url_allow_private", Value::Boolean(self.image_urls.allow_private));
        put("webhook_url_hosts", list(&self.webhook_urls.allowed_hosts));
        put("webhook_url_addresses", list(&self.webhook_urls.allowed_addresses));
        put("webhook_url_allow_private", Value::Boolean(self.webhook_urls.allow_private));
        put("webhook_max_failures", int(self.webhook_max_failures));
        put("reconcile_interval_s", secs(self.reconcile_interval));
        if self.metrics_token.is_some() {
            put("metrics_token", text(REDACTED));
        }
        put("console_ttl_s", secs(self.console_ttl));
        put("console_sessions", int(self.console_sessions));
        put("usage_interval_s", secs(self.usage_interval));
        put("stats_cache_s", secs(self.stats_cache));
        if let Some(l) = &self.ldap {
            let mut ldap = Table::new();
            ldap.insert("url".into(), text(&l.url));
            ldap.insert("starttls".into(), Value::Boolean(l.starttls));
            if let Some(dn) = &l.bind_dn {
                ldap.insert("bind_dn".into(), text(dn));
            }
            if l.bind_password.is_some() {
                ldap.insert("bind_password".into(), text(REDACTED));
            }
            ldap.insert("user_base".into(), text(&l.user_base));
            ldap.insert("user_filter".into(), text(&l.user_filter));
            ldap.insert("group_base".into(), text(&l.group_base));
            let roles = l.roles.iter().map(|(group, role)| {
                let mut r = Table::new();
                r.insert("group".into(), text(group));
                r.insert("role".into(), text(role));
                Value::Table(r)
            });
            ldap.insert("roles".into(), Value::Array(roles.collect()));
            ldap.insert("timeout_s".into(), secs(l.timeout));
            put("ldap", Value::Table(ldap));
        }
        if let Some(s) = &self.smtp {
            let mut smtp = Table::new();
            smtp.insert("host".into(), text(&s.host));
            if let Some(port) = s.port {
                smtp.insert("port".into(), int(port));
            }
            smtp.insert("security".into(), text(format!("{:?}", s.security).to_lowercase()));
            if let Some(user) = &s.username {
                smtp.insert("username".into(), text(user));
            }
            if s.password.is_some() {
                smtp.insert("password".into(), text(REDACTED));
            }
            smtp.insert("from".into(), text(&s.from));
            put("smtp", Value::Table(smtp));
        }
        if let Some(tg) = &self.telegram {
            let mut telegram = Table::new();
            telegram.insert("bot_token".into(), text(REDACTED));
            if let Some(base) = &tg.api_base {
                telegram.insert("api_base".into(), text(base));
            }
            put("telegram", Value::Table(telegram));
        }
        toml::to_string(&t).expect("a table of plain values serializes")
    }
}

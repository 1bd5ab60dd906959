//! Notification channels' transports: email through the operator's SMTP server (lettre;
//! STARTTLS, TLS, or plain on loopback only) and Telegram through the operator's bot
//! (`sendMessage` on the Bot API, whose base URL is configurable so that a stand-in can
//! serve it). Credentials never appear in `Debug`, logs or errors.

use std::fmt;
use std::time::Duration;

use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;
use vmm_core::{Error, Result, Secret};

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// STARTTLS on the submission port (587 by default).
    #[default]
    Starttls,
    /// TLS from the start (465 by default).
    Tls,
    /// No encryption: only to a server on loopback.
    Plain,
}

/// The operator's SMTP server.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Host name.
    pub host: String,
    /// Port (default by security: 587, 465, 25).
    pub port: Option<u16>,
    /// How the connection is protected.
    #[serde(default)]
    pub security: SmtpSecurity,
    /// User name, if the server wants one.
    pub username: Option<String>,
    /// Password.
    pub password: Option<Secret>,
    /// The sender: `vmm <vmm@example.com>`.
    pub from: String,
}

impl fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("from", &self.from)
            .finish()
    }
}

impl SmtpConfig {
    /// Checks the settings: a sender address, and plain SMTP only on loopback.
    pub fn check(&self) -> Result<()> {
        self.from
            .parse::<Mailbox>()
            .map_err(|_| Error::invalid("smtp.from", "is not a mailbox (name <address>)"))?;
        if self.security == SmtpSecurity::Plain && !is_loopback(&self.host) {
            return Err(Error::invalid("smtp.security", "plain SMTP is only for a server on loopback"));
        }
        Ok(())
    }

    /// Sends one message.
    pub async fn send(&self, to: &str, subject: &str, text: &str) -> Result<()> {
        let to: Mailbox = to.parse().map_err(|_| Error::invalid("to", "is not an email address"))?;
        let from: Mailbox = self.from.parse().map_err(|_| Error::invalid("smtp.from", "is not a mailbox"))?;
        let message = Message::builder()
            .from(from)
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(text.to_owned())
            .map_err(|e| Error::backend("smtp", e))?;
        let builder = match self.security {
            SmtpSecurity::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&self.host),
            SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&self.host),
            SmtpSecurity::Plain => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.host)),
        }
        .map_err(|e| Error::backend("smtp", e))?;
        let default_port = match self.security {
            SmtpSecurity::Starttls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::Plain => 25,
        };
        let mut builder =
            builder.port(self.port.unwrap_or(default_port)).timeout(Some(Duration::from_secs(15)));
        if let (Some(user), Some(password)) = (&self.username, &self.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        builder.build().send(message).await.map(drop).map_err(|e| {
            tracing::info!(error = %e, "the SMTP server did not take a message");
            Error::unavailable("smtp", "the mail server did not take the message")
        })
    }
}

/// The operator's Telegram bot.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramConfig {
    /// The bot's token.
    pub bot_token: Secret,
    /// The Bot API's base URL (default `https://api.telegram.org`); plain HTTP only on loopback.
    pub api_base: Option<String>,
}

impl fmt::Debug for TelegramConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelegramConfig").field("bot_token", &"***").field("api_base", &self.api_base).finish()
    }
}

impl TelegramConfig {
    fn base(&self) -> &str {
        self.api_base.as_deref().unwrap_or("https://api.telegram.org").trim_end_matches('/')
    }

    /// Checks the settings: an https base URL, or http on loopback.
    pub fn check(&self) -> Result<()> {
        let url =
            url::Url::parse(self.base()).map_err(|_| Error::invalid("telegram.api_base", "is not a URL"))?;
        let loopback = url.host_str().is_some_and(is_loopback);
        if !(url.scheme() == "https" || (url.scheme() == "http" && loopback)) {
            return Err(Error::invalid("telegram.api_base", "must be https (http only on loopback)"));
        }
        let token = self.bot_token.expose();
        if token.is_empty()
            || !token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b':' || b == b'_' || b == b'-')
        {
            return Err(Error::invalid("telegram.bot_token", "is not a bot token"));
        }
        Ok(())
    }

    /// Sends `text` to `chat_id` (blocking: call it off the runtime).
    pub fn send_blocking(&self, chat_id: &str, text: &str) -> Result<()> {
        let url = format!("{}/bot{}/sendMessage", self.base(), self.bot_token.expose());
        let body = serde_json::json!({"chat_id": chat_id, "text": text, "disable_web_page_preview": true});
        let agent = ureq::AgentBuilder::new().redirects(0).timeout(Duration::from_secs(15)).build();
        match agent.post(&url).send_json(body) {
            Ok(_) => Ok(()),
            // The URL holds the token: say nothing of it.
            Err(ureq::Error::Status(code, _)) => {
                Err(Error::unavailable("telegram", format!("the Bot API answered {code}")))
            }
            Err(ureq::Error::Transport(t)) => Err(Error::unavailable(
                "telegram",
                format!("the Bot API could not be reached ({})", t.kind()),
            )),
        }
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_and_plain_transports_stay_on_loopback() {
        let smtp = SmtpConfig {
            host: "mail.example".into(),
            port: None,
            security: SmtpSecurity::Plain,
            username: Some("vmm".into()),
            password: Some(Secret::new("hunter2-smtp")),
            from: "vmm <vmm@example.com>".into(),
        };
        assert!(!format!("{smtp:?}").contains("hunter2"));
        assert!(smtp.check().is_err(), "plain SMTP to another host");
        assert!(SmtpConfig { host: "127.0.0.1".into(), ..smtp.clone() }.check().is_ok());
        let tg = TelegramConfig {
            bot_token: Secret::new("123:ABC-def"),
            api_base: Some("http://example.com".into()),
        };
        assert!(!format!("{tg:?}").contains("ABC"));
        assert!(tg.check().is_err());
        assert!(TelegramConfig { api_base: Some("http://127.0.0.1:9/".into()), ..tg.clone() }
            .check()
            .is_ok());
        assert!(TelegramConfig { api_base: None, ..tg }.check().is_ok());
    }
}

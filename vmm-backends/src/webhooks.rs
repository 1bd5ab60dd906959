//! [`HttpWebhookSender`]: webhook deliveries over HTTP and HTTPS, under the operator's URL
//! policy. As for image URLs, the host is resolved once by a resolver that checks each
//! address and hands only checked ones to the connection; redirects are not followed (a
//! receiver that redirects has not taken the event).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use vmm_core::webhook::{Channel, ChannelKind, WebhookSender};
use vmm_core::{Error, Result, UrlPolicy};

use crate::images::fetch::CheckedResolver;
use crate::notify::{SmtpConfig, TelegramConfig};

/// Sends webhook deliveries, and notification channels' messages through the operator's
/// SMTP server and Telegram bot (when configured).
#[derive(Debug, Clone)]
pub struct HttpWebhookSender {
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// How long the whole request may take.
    pub timeout: Duration,
    /// The SMTP server for email channels.
    pub smtp: Option<SmtpConfig>,
    /// The bot for Telegram channels.
    pub telegram: Option<TelegramConfig>,
}

impl Default for HttpWebhookSender {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            smtp: None,
            telegram: None,
        }
    }
}

impl HttpWebhookSender {
    fn post_blocking(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: &[u8],
        policy: &UrlPolicy,
    ) -> Result<u16> {
        let url = policy.check_url(url)?;
        let refused = Arc::new(Mutex::new(None));
        let agent = ureq::AgentBuilder::new()
            .redirects(0)
            .resolver(CheckedResolver { policy: policy.clone(), refused: refused.clone() })
            .timeout_connect(self.connect_timeout)
            .timeout(self.timeout)
            .user_agent(concat!("vmm/", env!("CARGO_PKG_VERSION")))
            .build();
        let mut request = agent.post(url.as_str());
        for (name, value) in headers {
            request = request.set(name, value);
        }
        match request.send_bytes(body) {
            Ok(response) => Ok(response.status()),
            Err(ureq::Error::Status(code, _)) => Ok(code),
            Err(ureq::Error::Transport(t)) => {
                if let Some(e) = refused.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    return Err(e);
                }
                tracing::info!(error = %t, "a webhook receiver could not be reached");
                Err(Error::unavailable(
                    "webhook",
                    format!("the receiver could not be reached ({})", t.kind()),
                ))
            }
        }
    }
}

#[async_trait]
impl WebhookSender for HttpWebhookSender {
    async fn post(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: &[u8],
        policy: &UrlPolicy,
    ) -> Result<u16> {
        let (sender, url, headers, body, policy) =
            (self.clone(), url.to_owned(), headers.to_vec(), body.to_vec(), policy.clone());
        tokio::task::spawn_blocking(move || sender.post_blocking(&url, &headers, &body, &policy))
            .await
            .map_err(|e| Error::backend("webhook", e))?
    }

    async fn notify(&self, channel: &Channel, subject: &str, text: &str) -> Result<()> {
        match channel.kind {
            ChannelKind::Email => match &self.smtp {
                Some(smtp) => smtp.send(&channel.to, subject, text).await,
                None => Err(Error::unsupported("this server", "email (no [smtp] configured)")),
            },
            ChannelKind::Telegram => match &self.telegram {
                Some(bot) => {
                    let (bot, to, text) = (bot.clone(), channel.to.clone(), text.to_owned());
                    tokio::task::spawn_blocking(move || bot.send_blocking(&to, &text))
                        .await
                        .map_err(|e| Error::backend("telegram", e))?
                }
                None => Err(Error::unsupported("this server", "Telegram (no [telegram] configured)")),
            },
        }
    }
}

//! [`InMemoryWebhookSender`]: records what would be sent and answers as told.

use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;

use super::lock;
use crate::error::Result;
use crate::image::UrlPolicy;
use crate::webhook::{Channel, WebhookSender};

/// One POST it was asked to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentRequest {
    /// The URL.
    pub url: String,
    /// The headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl SentRequest {
    /// The value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A webhook sender that sends nothing: it checks the URL under the policy (an address
/// written in the URL included), records the request, and answers 200 unless told otherwise.
/// Notifications are recorded as (channel, subject, text).
#[derive(Debug, Default)]
pub struct InMemoryWebhookSender {
    sent: Mutex<Vec<SentRequest>>,
    answers: Mutex<VecDeque<Result<u16>>>,
    notified: Mutex<Vec<(Channel, String, String)>>,
}

impl InMemoryWebhookSender {
    /// A sender that answers 200.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next request is answered with `answer` (then 200 again once the told answers
    /// run out).
    pub fn answer_next(&self, answer: Result<u16>) {
        lock(&self.answers).push_back(answer);
    }

    /// What it was asked to send, in order (refused URLs included).
    pub fn sent(&self) -> Vec<SentRequest> {
        lock(&self.sent).clone()
    }

    /// The notifications it was asked to send, in order.
    pub fn notified(&self) -> Vec<(Channel, String, String)> {
        lock(&self.notified).clone()
    }
}

#[async_trait]
impl WebhookSender for InMemoryWebhookSender {
    async fn post(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: &[u8],
        policy: &UrlPolicy,
    ) -> Result<u16> {
        // The real sender also checks each address a name resolves to; the fake resolves none.
        crate::webhook::check_url(url, policy)?;
        lock(&self.sent).push(SentRequest {
            url: url.to_owned(),
            headers: headers.to_vec(),
            body: body.to_vec(),
        });
        lock(&self.answers).pop_front().unwrap_or(Ok(200))
    }

    async fn notify(&self, channel: &Channel, subject: &str, text: &str) -> Result<()> {
        lock(&self.notified).push((channel.clone(), subject.to_owned(), text.to_owned()));
        lock(&self.answers).pop_front().unwrap_or(Ok(200)).map(drop)
    }
}

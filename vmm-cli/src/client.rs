//! A small client of the HTTP API: JSON in and out, problems turned into [`Error::Api`],
//! pages followed, calls retried where that is safe (reads; a write whose request never left;
//! every POST carries one `Idempotency-Key` per command all the same).

use std::io::Read;
use std::time::Duration;

use serde_json::Value;
use vmm_core::ErrorKind;

use crate::error::{Error, Result};

/// The API's prefix under the server's URL.
const API: &str = "/api/v1";

/// The most items a page may hold: lists are read in pages this big.
pub const PAGE: usize = 1000;

/// Tries of a call that may be repeated.
const TRIES: u32 = 4;

const USER_AGENT: &str = concat!("vmm-cli/", env!("CARGO_PKG_VERSION"));

/// An HTTP method the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Reads.
    Get,
    /// Creates and actions.
    Post,
    /// Partial updates.
    Patch,
    /// Uploads.
    Put,
    /// Deletes.
    Delete,
}

impl Method {
    /// The method as HTTP writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Patch => "PATCH",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
        }
    }
}

/// What the server answered.
#[derive(Debug)]
pub enum Answer {
    /// A JSON body.
    Json(Value),
    /// A text body (a console log).
    Text(String),
    /// No body (204).
    Empty,
}

/// A connection to one vmmd.
pub struct Client {
    agent: ureq::Agent,
    url: String,
    token: Option<String>,
    /// Sent on every POST of this command, so that a retried create is made once.
    idempotency_key: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("url", &self.url).finish_non_exhaustive()
    }
}

impl Client {
    /// A client of the vmmd at `url` (without `/api/v1`), calling with `token`.
    pub fn new(url: &str, token: Option<String>) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            // Longer than the server gives a request (90 s; a task wait holds one up to 60 s),
            // so that the server's answer, not the client's deadline, ends a slow call.
            .timeout(Duration::from_secs(120))
            .user_agent(USER_AGENT)
            .build();
        Self { agent, url: url.to_owned(), token, idempotency_key: uuid::Uuid::new_v4().to_string() }
    }

    /// Calls `method` on `path` (under `/api/v1`) with `query` and a JSON `body`.
    pub fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(String, String)],
        body: Option<&Value>,
    ) -> Result<Answer> {
        let url = format!("{}{API}{path}", self.url);
        let mut tries = 0;
        loop {
            tries += 1;
            let mut req = self.agent.request(method.as_str(), &url);
            for (k, v) in query {
                req = req.query(k, v);
            }
            if let Some(token) = &self.token {
                req = req.set("Authorization", &format!("Bearer {token}"));
            }
            if method == Method::Post {
                req = req.set("Idempotency-Key", &self.idempotency_key);
            }
            let sent = match body {
                Some(body) => req.send_json(body),
                None => req.call(),
            };
            let failed = match answer(&self.url, sent) {
                Ok(answer) => return Ok(answer),
                Err(failed) => failed,
            };
            // Reads are repeated after a connection error, a 503 or a 429; writes only when
            // the request never left (a create must not run twice on a lost answer).
            let again = match failed.again {
                Again::Always => true,
                Again::Reads => method == Method::Get,
                Again::Never => false,
            };
            if !again || tries >= TRIES {
                return Err(failed.error);
            }
            std::thread::sleep(failed.after.unwrap_or(Duration::from_millis(250 << tries)));
        }
    }

    /// PUTs the file at `file` as the body of `path`, without a deadline on the whole call
    /// (a large image takes as long as it takes), only on each read and write.
    pub fn upload(&self, path: &str, file: &std::path::Path) -> Result<Answer> {
        let len = std::fs::metadata(file).map_err(Error::io(format!("reading {}", file.display())))?.len();
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            .timeout_write(Duration::from_secs(300))
            .timeout_read(Duration::from_secs(900))
            .user_agent(USER_AGENT)
            .build();
        // An upload is not repeated: its body is a stream.
        let url = format!("{}{API}{path}", self.url);
        let mut req = agent.put(&url).set("Content-Type", "application/octet-stream");
        req = req.set("Content-Length", &len.to_string());
        if let Some(token) = &self.token {
            req = req.set("Authorization", &format!("Bearer {token}"));
        }
        let data = std::fs::File::open(file).map_err(Error::io(format!("reading {}", file.display())))?;
        answer(&self.url, req.send(data)).map_err(|f| f.error)
    }

    /// A JSON answer of a GET.
    pub fn get(&self, path: &str, query: &[(String, String)]) -> Result<Value> {
        match self.call(Method::Get, path, query, None)? {
            Answer::Json(v) => Ok(v),
            other => Err(Error::Answer(format!("GET {path} answered {other:?}, not JSON"))),
        }
    }

    /// Every item of the list at `path`, `page` items per request, up to `limit` items.
    pub fn list(
        &self,
        path: &str,
        query: &[(String, String)],
        limit: Option<usize>,
        page: usize,
    ) -> Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let want = limit.map_or(page, |l| (l - items.len()).min(page));
            let mut q = query.to_vec();
            q.push(("limit".into(), want.to_string()));
            if let Some(c) = cursor.take() {
                q.push(("cursor".into(), c));
            }
            let mut page = self.get(path, &q)?;
            let Some(Value::Array(found)) = page.get_mut("items").map(Value::take) else {
                return Err(Error::Answer(format!("GET {path} answered no `items`")));
            };
            items.extend(found);
            match page.get("next_cursor").and_then(Value::as_str) {
                Some(next) if limit.is_none_or(|l| items.len() < l) => cursor = Some(next.to_owned()),
                _ => return Ok(items),
            }
        }
    }
}

/// Whether a failed call may be made again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Again {
    /// The request never reached the server.
    Always,
    /// The server is busy or the connection broke: reads may be repeated.
    Reads,
    /// The answer stands.
    Never,
}

/// A failed call: the error, whether to try again and after how long the server asks.
struct Failed {
    error: Error,
    again: Again,
    after: Option<Duration>,
}

/// The answer of a call, or its problem as an error.
fn answer(
    url: &str,
    sent: std::result::Result<ureq::Response, ureq::Error>,
) -> std::result::Result<Answer, Failed> {
    let unreachable = |reason: String, again| Failed {
        error: Error::Unreachable { url: url.to_owned(), reason },
        again,
        after: None,
    };
    let response = match sent {
        Ok(response) => response,
        Err(ureq::Error::Status(status, response)) => return Err(problem(status, response)),
        Err(ureq::Error::Transport(t)) => {
            let again = match t.kind() {
                ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::Dns => Again::Always,
                _ => Again::Reads,
            };
            return Err(unreachable(t.to_string(), again));
        }
    };
    if response.header("idempotent-replayed") == Some("true") {
        eprintln!("vmm: note: this is the answer the server kept for an earlier try of this request (a secret it showed then is not shown again)");
    }
    let json = response.content_type() == "application/json";
    let status = response.status();
    let mut body = Vec::new();
    response.into_reader().read_to_end(&mut body).map_err(|e| unreachable(e.to_string(), Again::Reads))?;
    let failed = |e: String| Failed { error: Error::Answer(e), again: Again::Never, after: None };
    if status == 204 || body.is_empty() {
        return Ok(Answer::Empty);
    }
    if json {
        return serde_json::from_slice(&body).map(Answer::Json).map_err(|e| failed(e.to_string()));
    }
    String::from_utf8(body).map(Answer::Text).map_err(|_| failed("a text answer that is not UTF-8".into()))
}

/// The [`Error::Api`] of a problem answer; an error status with another body (a readiness
/// report, a proxy's page) keeps that body as its detail.
fn problem(status: u16, response: ureq::Response) -> Failed {
    let after = response
        .header("retry-after")
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s.clamp(1, 10)));
    let text = response.into_string().unwrap_or_default();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let field = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_owned);
    let Some(code) = field("code") else {
        let detail = match body {
            Value::Null if text.trim().is_empty() => format!("HTTP {status}"),
            Value::Null => text.trim().chars().take(300).collect(),
            other => other.to_string(),
        };
        let kind = ErrorKind::from_http_status(status);
        // A 503 that is not a problem is an answer (not ready), not a busy server.
        let again = if status == 429 { Again::Reads } else { Again::Never };
        return Failed {
            error: Error::Api { status, kind, code: format!("http_{status}"), detail },
            again,
            after,
        };
    };
    let kind = match code.as_str() {
        "timeout" => ErrorKind::Timeout,
        _ => ErrorKind::from_http_status(status),
    };
    let mut detail = field("detail").or_else(|| field("title")).unwrap_or_else(|| format!("HTTP {status}"));
    if let Some(field) = field("field") {
        if !detail.contains(&field) {
            detail = format!("{field}: {detail}");
        }
    }
    let again = if matches!(status, 429 | 503) { Again::Reads } else { Again::Never };
    Failed { error: Error::Api { status, kind, code, detail }, again, after }
}

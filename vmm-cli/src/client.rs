//! A small client of the HTTP API: JSON in and out, problems turned into [`Error::Api`],
//! pages followed, idempotent calls retried.

use std::io::Read;
use std::time::Duration;

use serde_json::Value;
use vmm_core::ErrorKind;

use crate::error::{Error, Result};

/// The API's prefix under the server's URL.
const API: &str = "/api/v1";

/// The most items a page may hold: lists are read in pages this big.
pub const PAGE: usize = 1000;

/// Tries of a call that may be repeated (reads, and writes carrying an `Idempotency-Key`).
const TRIES: u32 = 4;

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
    fn as_str(self) -> &'static str {
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
            // A task wait holds a call for up to 60 s.
            .timeout(Duration::from_secs(90))
            .user_agent(concat!("vmm-cli/", env!("CARGO_PKG_VERSION")))
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
        self.send(method, path, query, |req| {
            answer(
                &self.url,
                match body {
                    Some(body) => req.send_json(body),
                    None => req.call(),
                },
            )
        })
    }

    /// PUTs the file at `file` as the body of `path`.
    pub fn upload(&self, path: &str, file: &std::path::Path) -> Result<Answer> {
        let len = std::fs::metadata(file).map_err(Error::io(format!("reading {}", file.display())))?.len();
        // An upload is not repeated: its body is a stream.
        let url = format!("{}{API}{path}", self.url);
        let mut req = self.agent.put(&url).set("Content-Type", "application/octet-stream");
        req = req.set("Content-Length", &len.to_string());
        if let Some(token) = &self.token {
            req = req.set("Authorization", &format!("Bearer {token}"));
        }
        let data = std::fs::File::open(file).map_err(Error::io(format!("reading {}", file.display())))?;
        answer(&self.url, req.send(data))
    }

    /// A JSON answer of a GET.
    pub fn get(&self, path: &str, query: &[(String, String)]) -> Result<Value> {
        match self.call(Method::Get, path, query, None)? {
            Answer::Json(v) => Ok(v),
            other => Err(Error::Answer(format!("GET {path} answered {other:?}, not JSON"))),
        }
    }

    /// Every item of the list at `path`, page after page, up to `limit` items.
    pub fn list(&self, path: &str, query: &[(String, String)], limit: Option<usize>) -> Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let want = limit.map_or(PAGE, |l| (l - items.len()).min(PAGE));
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

    fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(String, String)],
        send: impl Fn(ureq::Request) -> Result<Answer>,
    ) -> Result<Answer> {
        let url = format!("{}{API}{path}", self.url);
        let repeatable = matches!(method, Method::Get | Method::Post);
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
            let result = send(req);
            let retry =
                matches!(result, Err(Error::Unreachable { .. } | Error::Api { status: 503 | 429, .. }));
            if !(retry && repeatable && tries < TRIES) {
                return result;
            }
            std::thread::sleep(Duration::from_millis(250 << tries));
        }
    }
}

/// The answer of a call, or its problem as an error.
fn answer(url: &str, sent: std::result::Result<ureq::Response, ureq::Error>) -> Result<Answer> {
    let response = match sent {
        Ok(response) => response,
        Err(ureq::Error::Status(status, response)) => return Err(problem(status, response)),
        Err(ureq::Error::Transport(t)) => {
            return Err(Error::Unreachable { url: url.to_owned(), reason: t.to_string() })
        }
    };
    let json = response.content_type() == "application/json";
    let status = response.status();
    let mut body = Vec::new();
    response
        .into_reader()
        .read_to_end(&mut body)
        .map_err(|e| Error::Unreachable { url: url.to_owned(), reason: e.to_string() })?;
    if status == 204 || body.is_empty() {
        return Ok(Answer::Empty);
    }
    if json {
        return serde_json::from_slice(&body).map(Answer::Json).map_err(|e| Error::Answer(e.to_string()));
    }
    String::from_utf8(body)
        .map(Answer::Text)
        .map_err(|_| Error::Answer("a text answer that is not UTF-8".into()))
}

/// The [`Error::Api`] of a problem answer (or of a bare status, from a proxy).
fn problem(status: u16, response: ureq::Response) -> Error {
    let body: Value = response.into_json().unwrap_or(Value::Null);
    let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_owned);
    let code = text("code").unwrap_or_else(|| format!("http_{status}"));
    let kind = match code.as_str() {
        "timeout" => ErrorKind::Timeout,
        _ => ErrorKind::from_http_status(status),
    };
    let mut detail = text("detail").or_else(|| text("title")).unwrap_or_else(|| format!("HTTP {status}"));
    if let Some(field) = text("field") {
        if !detail.contains(&field) {
            detail = format!("{field}: {detail}");
        }
    }
    Error::Api { status, kind, code, detail }
}

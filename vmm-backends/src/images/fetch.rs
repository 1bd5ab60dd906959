//! [`HttpFetcher`]: image data over HTTP and HTTPS, under the operator's URL policy. The
//! host is resolved once per request by a resolver that checks every address it returns
//! and hands only checked ones to the connection, so the address connected to is one that
//! was checked (no second lookup an attacker's DNS could answer differently). Redirects are
//! followed by hand, each new URL checked like the first.

use std::io::Read;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use vmm_core::{Error, ImageFetcher, Result, UrlPolicy};

/// Most redirects followed for one fetch.
const MAX_REDIRECTS: usize = 5;

/// Fetches image data from HTTP and HTTPS URLs.
#[derive(Debug, Clone)]
pub struct HttpFetcher {
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// How long the server may stay silent while sending.
    pub read_timeout: Duration,
}

impl Default for HttpFetcher {
    fn default() -> Self {
        Self { connect_timeout: Duration::from_secs(10), read_timeout: Duration::from_secs(60) }
    }
}

/// Resolves under the policy; remembers why it refused, for the error.
pub(crate) struct CheckedResolver {
    pub(crate) policy: UrlPolicy,
    pub(crate) refused: Arc<Mutex<Option<Error>>>,
}

impl ureq::Resolver for CheckedResolver {
    fn resolve(&self, netloc: &str) -> std::io::Result<Vec<SocketAddr>> {
        let addrs: Vec<SocketAddr> = netloc.to_socket_addrs()?.collect();
        if addrs.is_empty() {
            return Err(std::io::Error::other("the name has no address"));
        }
        for addr in &addrs {
            if let Err(e) = self.policy.check_ip(addr.ip()) {
                *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                return Err(std::io::Error::other("a forbidden address"));
            }
        }
        Ok(addrs)
    }
}

impl HttpFetcher {
    /// GETs `url`, following redirects under `policy`, up to the response's headers.
    fn get(&self, url: &str, policy: &UrlPolicy) -> Result<ureq::Response> {
        let mut current = policy.check_url(url)?;
        for _ in 0..=MAX_REDIRECTS {
            let refused = Arc::new(Mutex::new(None));
            let agent = ureq::AgentBuilder::new()
                .redirects(0)
                .resolver(CheckedResolver { policy: policy.clone(), refused: refused.clone() })
                .timeout_connect(self.connect_timeout)
                .timeout_read(self.read_timeout)
                .user_agent(concat!("vmm/", env!("CARGO_PKG_VERSION")))
                .build();
            match agent.get(current.as_str()).call() {
                Ok(response) if (300..400).contains(&response.status()) => {
                    let location = response
                        .header("location")
                        .ok_or_else(|| Error::invalid("source_url", "the server redirected nowhere"))?;
                    let next = current
                        .join(location)
                        .map_err(|_| Error::invalid("source_url", "the server redirected to a bad URL"))?;
                    current = policy.check_url(next.as_str()).map_err(|e| redirected(next.as_str(), e))?;
                }
                Ok(response) => return Ok(response),
                Err(ureq::Error::Status(code, _)) => {
                    return Err(Error::invalid("source_url", format!("the server answered {code}")));
                }
                Err(ureq::Error::Transport(t)) => {
                    if let Some(e) = refused.lock().unwrap_or_else(|p| p.into_inner()).take() {
                        return Err(if current.as_str() == url {
                            e
                        } else {
                            redirected(current.as_str(), e)
                        });
                    }
                    tracing::info!(error = %t, "an image URL could not be fetched");
                    return Err(Error::invalid("source_url", format!("cannot be fetched ({})", t.kind())));
                }
            }
        }
        Err(Error::invalid("source_url", format!("more than {MAX_REDIRECTS} redirects")))
    }
}

/// A refusal of a URL reached by a redirect, saying so.
fn redirected(to: &str, e: Error) -> Error {
    let why = match &e {
        Error::Invalid { reason, .. } => reason.clone(),
        other => other.public_message(),
    };
    Error::invalid("source_url", format!("redirects to {to}, which {why}"))
}

#[async_trait]
impl ImageFetcher for HttpFetcher {
    async fn probe(&self, url: &str, policy: &UrlPolicy) -> Result<()> {
        let (fetcher, url, policy) = (self.clone(), url.to_owned(), policy.clone());
        tokio::task::spawn_blocking(move || fetcher.get(&url, &policy).map(drop))
            .await
            .map_err(|e| Error::backend("image fetch", e))?
    }

    async fn fetch(&self, url: &str, policy: &UrlPolicy) -> Result<Box<dyn Read + Send>> {
        let (fetcher, url, policy) = (self.clone(), url.to_owned(), policy.clone());
        let response = tokio::task::spawn_blocking(move || fetcher.get(&url, &policy))
            .await
            .map_err(|e| Error::backend("image fetch", e))??;
        Ok(response.into_reader())
    }
}

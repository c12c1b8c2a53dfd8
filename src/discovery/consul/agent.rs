//! [`ConsulAgent`]: where Consul's HTTP API is (address, ACL token,
//! timeout), and the small HTTP/1.1 client the discovery and the
//! registration share.

use crate::core::redact::{MASK, redact_url};
use crate::error::{Error, ErrorClass, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The HTTP API of a Consul agent: its address, the ACL token sent with every
/// request (as the `X-Consul-Token` header) and the timeout of a request that
/// does not block. Cheap to clone; clones share one connection pool.
///
/// The token never appears in `Debug` output, logs or errors: `Debug` shows
/// `***` in its place, and an error quoting a response body has any copy of
/// the token in it replaced by `***`.
///
/// Only plain `http://` is supported (the `consul` feature carries no TLS
/// client): point it at the local agent, as Consul recommends.
///
/// ```
/// use failover_pool::discovery::consul::ConsulAgent;
/// use std::time::Duration;
///
/// let agent = ConsulAgent::new("127.0.0.1:8500")?
///     .with_token("b1gs33cr3t")
///     .with_timeout(Duration::from_secs(3));
/// assert_eq!(agent.address(), "http://127.0.0.1:8500");
/// assert!(!format!("{agent:?}").contains("b1gs33cr3t"));
/// assert!(ConsulAgent::new("https://consul.example.com:8501").is_err());
/// # Ok::<(), failover_pool::Error>(())
/// ```
#[derive(Clone)]
pub struct ConsulAgent {
    base: Arc<str>,
    token: Option<Arc<str>>,
    timeout: Duration,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl fmt::Debug for ConsulAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsulAgent")
            .field("address", &redact_url(&self.base))
            .field("token", &self.token.as_ref().map(|_| MASK))
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// One answer from the agent: the status was 200.
#[derive(Debug)]
pub(super) struct Reply {
    /// The `X-Consul-Index` header (0 when absent or not a number).
    pub(super) index: u64,
    /// The body.
    pub(super) body: Bytes,
}

impl ConsulAgent {
    /// The default timeout of a request that does not block (5 s).
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    /// The agent at `address`: `host:port` or `http://host:port` (a path
    /// prefix is kept, for an agent behind a proxy).
    ///
    /// # Errors
    /// [`Error::Config`] when the address is empty, is `https://` (no TLS
    /// client here), carries user info, or does not parse.
    pub fn new(address: &str) -> Result<Self> {
        let base = parse_base(address.trim()).map_err(|why| {
            Error::Config(format!(
                "invalid Consul address `{}`: {why}",
                redact_url(address)
            ))
        })?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Self::DEFAULT_TIMEOUT));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Ok(ConsulAgent {
            base: base.into(),
            token: None,
            timeout: Self::DEFAULT_TIMEOUT,
            client,
        })
    }

    /// Sends `token` as `X-Consul-Token` with every request (an empty token
    /// sends none).
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        let token = token.into();
        self.token = (!token.is_empty()).then(|| token.into());
        self
    }

    /// The timeout of a request that does not block (default
    /// [`Self::DEFAULT_TIMEOUT`]). A blocking query gets its `wait`, plus
    /// Consul's jitter of up to `wait / 16`, plus this.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The base URL requests go to (`http://host:port[/prefix]`).
    pub fn address(&self) -> &str {
        &self.base
    }

    /// The timeout of a request that does not block.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether a token is set.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// What errors name as the failing endpoint.
    pub(super) fn label(&self) -> String {
        format!("consul {}", redact_url(&self.base))
    }

    /// Sends `method path_and_query` with an optional JSON body and waits up
    /// to `timeout` for a 200 and its whole body.
    pub(super) async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
        op: &'static str,
    ) -> Result<Reply> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path_and_query}", self.base));
        if let Some(token) = &self.token {
            request = request.header("X-Consul-Token", &**token);
        }
        if body.is_some() {
            request = request.header("Content-Type", "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| {
                Error::Config(format!(
                    "cannot build a Consul request: {}",
                    self.scrub(&e.to_string())
                ))
            })?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                let class = if e.is_connect() {
                    ErrorClass::not_executed()
                } else {
                    ErrorClass::maybe_executed()
                };
                self.error(
                    class,
                    format!("request failed: {}", self.scrub(&source_chain(&e))),
                    op,
                )
            })?;
            let status = response.status();
            let index = response
                .headers()
                .get("X-Consul-Index")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
            let body = response.into_body().collect().await.map_err(|e| {
                let why = format!("reading the answer failed: {}", self.scrub(&e.to_string()));
                self.error(ErrorClass::maybe_executed(), why, op)
            })?;
            Ok::<_, Error>((status, index, body.to_bytes()))
        };
        let (status, index, body) =
            tokio::time::timeout(timeout, exchange)
                .await
                .map_err(|_| {
                    let why = format!("no answer within {timeout:?}");
                    self.error(ErrorClass::maybe_executed(), why, op)
                })??;
        if status != StatusCode::OK {
            return Err(self.status_error(status, &body, op));
        }
        Ok(Reply { index, body })
    }

    /// `HTTP <status>: <body>` (shortened, token masked). A 4xx is the
    /// caller's fault (bad token, bad request): an application error.
    fn status_error(&self, status: StatusCode, body: &[u8], op: &'static str) -> Error {
        let text = String::from_utf8_lossy(body);
        let mut text = self.scrub(text.trim());
        if text.len() > 300 {
            let cut = (0..=300)
                .rev()
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(0);
            text.truncate(cut);
            text.push('…');
        }
        let class = if status.is_client_error() {
            ErrorClass::Application
        } else {
            ErrorClass::not_executed()
        };
        self.error(class, format!("HTTP {status}: {text}"), op)
    }

    fn error(&self, class: ErrorClass, why: String, op: &'static str) -> Error {
        Error::backend(self.label(), class, why).during(op)
    }

    /// `text` with every copy of the token replaced by `***`.
    pub(super) fn scrub(&self, text: &str) -> String {
        match &self.token {
            Some(token) => text.replace(&**token, MASK),
            None => text.to_owned(),
        }
    }
}

/// An error and its sources, joined by `: `.
fn source_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut next = error.source();
    while let Some(e) = next {
        out.push_str(": ");
        out.push_str(&e.to_string());
        next = e.source();
    }
    out
}

/// `http://host:port[/prefix]` from `host:port` or an `http://` URL.
fn parse_base(address: &str) -> std::result::Result<String, &'static str> {
    if address.is_empty() {
        return Err("it is empty");
    }
    let url = match address.split_once("://") {
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => {
            return Err(
                "https is not supported (the `consul` feature has no TLS client); \
                        use the local agent over http",
            );
        }
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => format!("http://{rest}"),
        Some(_) => return Err("the scheme must be http"),
        None => format!("http://{address}"),
    };
    let uri: hyper::Uri = url.parse().map_err(|_| "not a URL")?;
    let authority = uri.authority().ok_or("no host")?;
    if authority.as_str().contains('@') {
        return Err("user info is not supported; use the ACL token");
    }
    if uri.query().is_some() {
        return Err("a query string is not supported");
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// Percent-encodes a URL path segment or query value (everything but
/// RFC 3986's unreserved characters).
pub(super) fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A duration as Go's `time.ParseDuration` reads it: `7s`, or `1500ms`.
pub(super) fn go_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis().max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            parse_base("localhost:8500").unwrap(),
            "http://localhost:8500"
        );
        assert_eq!(
            parse_base("HTTP://10.0.0.1:8500/").unwrap(),
            "http://10.0.0.1:8500"
        );
        assert_eq!(
            parse_base("http://proxy/consul").unwrap(),
            "http://proxy/consul"
        );
        assert!(parse_base("https://consul:8501").is_err());
        assert!(parse_base("http://u:p@consul:8500").is_err());
        assert!(parse_base("").is_err());
    }

    #[test]
    fn encoding_and_durations() {
        assert_eq!(
            encode("Service.Tags contains \"a\""),
            "Service.Tags%20contains%20%22a%22"
        );
        assert_eq!(encode("web/v1"), "web%2Fv1");
        assert_eq!(go_duration(Duration::from_secs(7)), "7s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn scrubs_the_token() {
        let agent = ConsulAgent::new("localhost:8500")
            .unwrap()
            .with_token("t0k3n");
        assert_eq!(agent.scrub("bad token t0k3n!"), "bad token ***!");
        assert!(!format!("{agent:?}").contains("t0k3n"));
    }
}

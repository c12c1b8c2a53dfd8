//! Active checks of one endpoint: the [`HealthCheck`] trait, the future it
//! returns, and the built-in checks ([`TcpCheck`]; `HttpCheck` with the
//! `http` feature).

use crate::core::endpoint::{Endpoint, Health};
#[cfg(feature = "http")]
use crate::core::redact::redact_url;
use crate::error::BoxError;
use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;

/// The future a [`HealthCheck`] returns.
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = Result<Health, BoxError>> + Send + 'a>>;

/// One active check of one endpoint.
///
/// `Ok(Healthy)` and `Ok(Degraded)` are passes (the endpoint takes that
/// health once the rise threshold allows it); `Ok(Unknown)` counts as a pass
/// reported as `Healthy`; `Ok(Unhealthy)` and `Err(_)` are failures. The
/// [`HealthChecker`](super::HealthChecker) bounds every check with
/// [`HealthCheckConfig::timeout`](super::HealthCheckConfig::timeout),
/// so an implementation does not need its own.
///
/// ```
/// use failover_pool::core::Endpoint;
/// use failover_pool::core::Health;
/// use failover_pool::core::health::{CheckFuture, HealthCheck};
///
/// /// Passes for every endpoint tagged "up".
/// #[derive(Debug)]
/// struct TagCheck;
///
/// impl HealthCheck for TagCheck {
///     fn check<'a>(&'a self, endpoint: &'a Endpoint) -> CheckFuture<'a> {
///         Box::pin(async move {
///             if endpoint.tags.iter().any(|t| t == "up") {
///                 Ok(Health::Healthy)
///             } else {
///                 Err("not tagged up".into())
///             }
///         })
///     }
/// }
/// ```
pub trait HealthCheck: Send + Sync + Debug + 'static {
    /// Checks `endpoint` once.
    fn check<'a>(&'a self, endpoint: &'a Endpoint) -> CheckFuture<'a>;
}

/// Passes when a TCP connection to [`Endpoint::authority`] can be opened; the
/// connection is closed right away.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpCheck;

impl TcpCheck {
    /// A TCP connect check.
    pub const fn new() -> Self {
        TcpCheck
    }
}

impl HealthCheck for TcpCheck {
    fn check<'a>(&'a self, endpoint: &'a Endpoint) -> CheckFuture<'a> {
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(endpoint.authority()).await?;
            drop(stream);
            Ok(Health::Healthy)
        })
    }
}

/// `GET {scheme}://{authority}{path}`; passes on a 2xx status (or on the
/// statuses given to [`HttpCheck::expect_status`]), reports
/// [`Health::Degraded`] on a status given to [`HttpCheck::degraded_status`]
/// (such as 429), and fails on anything else.
///
/// The scheme is the endpoint's protocol when it is `http` or `https`, and
/// `http` otherwise. This crate builds `reqwest` without TLS: for `https`
/// endpoints enable one of reqwest's TLS features in your own `Cargo.toml`
/// (or pass a configured client to [`HttpCheck::with_client`]). One client is
/// reused for every check, so connections are pooled.
///
/// ```
/// use failover_pool::core::Endpoint;
/// use failover_pool::core::health::HttpCheck;
///
/// let check = HttpCheck::new().path("/ready").degraded_status(429);
/// let ep = Endpoint::new("api-1", "10.0.0.7", 8080).with_protocol("http");
/// assert_eq!(check.url(&ep), "http://10.0.0.7:8080/ready");
/// ```
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
#[derive(Debug, Clone)]
pub struct HttpCheck {
    client: reqwest::Client,
    path: String,
    expected: Vec<u16>,
    degraded: Vec<u16>,
}

#[cfg(feature = "http")]
impl Default for HttpCheck {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "http")]
impl HttpCheck {
    /// A check of `/health` with a default client.
    pub fn new() -> Self {
        Self::with_client(reqwest::Client::new())
    }

    /// A check of `/health` with the given client.
    pub fn with_client(client: reqwest::Client) -> Self {
        HttpCheck {
            client,
            path: DEFAULT_HEALTH_PATH.to_owned(),
            expected: Vec::new(),
            degraded: Vec::new(),
        }
    }

    /// The path to request (a leading `/` is added if missing).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        let path = path.into();
        self.path = if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        };
        self
    }

    /// Accepts exactly these statuses as healthy instead of any 2xx; call it
    /// once per accepted status.
    pub fn expect_status(mut self, status: u16) -> Self {
        self.expected.push(status);
        self
    }

    /// Reports [`Health::Degraded`] (a pass) on this status; call it once per
    /// status.
    pub fn degraded_status(mut self, status: u16) -> Self {
        self.degraded.push(status);
        self
    }

    /// The URL checked for `endpoint`.
    pub fn url(&self, endpoint: &Endpoint) -> String {
        let scheme = match endpoint.protocol.to_ascii_lowercase().as_str() {
            "https" => "https",
            _ => "http",
        };
        format!("{scheme}://{}{}", endpoint.authority(), self.path)
    }

    fn classify(&self, status: u16) -> Result<Health, BoxError> {
        if self.degraded.contains(&status) {
            Ok(Health::Degraded)
        } else if (self.expected.is_empty() && (200..300).contains(&status))
            || self.expected.contains(&status)
        {
            Ok(Health::Healthy)
        } else {
            Err(format!("unexpected HTTP status {status}").into())
        }
    }
}

#[cfg(feature = "http")]
impl HealthCheck for HttpCheck {
    fn check<'a>(&'a self, endpoint: &'a Endpoint) -> CheckFuture<'a> {
        Box::pin(async move {
            let response = self
                .client
                .get(self.url(endpoint))
                .send()
                .await
                .map_err(redact_request_error)?;
            self.classify(response.status().as_u16())
        })
    }
}

/// `err` with the secrets of the URL it shows (a token in the health path's
/// query, say) masked by [`redact_url`]; without the URL when the masked
/// form does not parse.
#[cfg(feature = "http")]
fn redact_request_error(mut err: reqwest::Error) -> reqwest::Error {
    let Some(url) = err.url_mut() else {
        return err;
    };
    let masked = match redact_url(url.as_str()) {
        std::borrow::Cow::Borrowed(_) => return err,
        std::borrow::Cow::Owned(masked) => masked,
    };
    match reqwest::Url::parse(&masked) {
        Ok(masked) => {
            *url = masked;
            err
        }
        Err(_) => err.without_url(),
    }
}

/// The path an HTTP check requests unless told otherwise.
pub(super) const DEFAULT_HEALTH_PATH: &str = "/health";

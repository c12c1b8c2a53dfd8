//! [`FailoverClient`] and its builder: a reqwest client over the endpoint
//! core ([`Failover`]), with the HTTP rules of [`classify`](super::classify).

use std::sync::Arc;

use http::Method;

use super::classify::StatusPolicy;
use super::fallback::Fallback;
use super::request::RequestBuilder;
use super::shared::ClientInner;
use crate::core::{
    BreakerConfig, Endpoint, Failover, FailoverBuilder, HealthCheck, HealthCheckConfig, HedgeDelay,
    OutlierConfig, RetryPolicy, Stats, Strategy, discovery::Discovery,
};
use crate::error::{Error, Result};

/// An HTTP client that spreads calls over a service's endpoints and fails
/// over between them: a [`reqwest::Client`] for the requests, the endpoint
/// core ([`Failover`]: strategy, health checks, outlier ejection, circuit
/// breakers, retries with a budget) for the choice of endpoint.
///
/// Requests name a path; each try sends it to the endpoint picked for it.
/// What is retried follows RFC 9110: idempotent methods (GET, HEAD,
/// OPTIONS, TRACE, PUT, DELETE) go to another endpoint after any failure
/// of the endpoint; POST and PATCH only when the request was certainly not
/// sent (connection refused) or carries an `Idempotency-Key`
/// ([`RequestBuilder::idempotency_key`]). Failures of the endpoint are
/// connect errors, resets, timeouts and 502/503/504 (see [`StatusPolicy`]);
/// a 4xx is the caller's answer, never retried, never held against the
/// endpoint. Cheap to clone.
///
/// ```no_run
/// use failover_pool::http::FailoverClient;
/// use std::time::Duration;
///
/// # async fn demo() -> failover_pool::Result<()> {
/// let users = FailoverClient::builder("users")
///     .url("http://10.0.0.1:8080")?
///     .url("http://10.0.0.2:8080")?
///     .build()?;
/// let response = users
///     .get("/users/42")
///     .timeout(Duration::from_secs(2))
///     .send()
///     .await?;
/// println!("{} from {:?}", response.status(), failover_pool::http::served_by(&response));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct FailoverClient {
    pub(crate) inner: Arc<ClientInner>,
}

impl FailoverClient {
    /// A builder for a client named `name` (in metrics, events and logs).
    pub fn builder(name: impl Into<Arc<str>>) -> FailoverClientBuilder {
        Self::from_core(Failover::builder(name))
    }

    /// A builder that starts from a core builder: endpoints, discovery,
    /// strategy, health checks, breaker and retries already set, e.g. from
    /// YAML ([`StaticProviderConfig::builder`](crate::config::StaticProviderConfig::builder)
    /// and the Consul and Kubernetes providers' equivalents).
    pub fn from_core(core: FailoverBuilder) -> FailoverClientBuilder {
        FailoverClientBuilder {
            core,
            http: None,
            statuses: StatusPolicy::default(),
            hedge: None,
            fallback: None,
            invalid: None,
        }
    }

    /// A request with `method` to `path` (with its query, if any).
    pub fn request(&self, method: Method, path: impl Into<String>) -> RequestBuilder {
        RequestBuilder::new(Arc::clone(&self.inner), method, path.into())
    }

    /// A GET request to `path`.
    pub fn get(&self, path: impl Into<String>) -> RequestBuilder {
        self.request(Method::GET, path)
    }

    /// A POST request to `path` (retried only when certainly not sent, or
    /// with an idempotency key).
    pub fn post(&self, path: impl Into<String>) -> RequestBuilder {
        self.request(Method::POST, path)
    }

    /// A PUT request to `path`.
    pub fn put(&self, path: impl Into<String>) -> RequestBuilder {
        self.request(Method::PUT, path)
    }

    /// A PATCH request to `path` (retried only when certainly not sent, or
    /// with an idempotency key).
    pub fn patch(&self, path: impl Into<String>) -> RequestBuilder {
        self.request(Method::PATCH, path)
    }

    /// A DELETE request to `path`.
    pub fn delete(&self, path: impl Into<String>) -> RequestBuilder {
        self.request(Method::DELETE, path)
    }

    /// A HEAD request to `path`.
    pub fn head(&self, path: impl Into<String>) -> RequestBuilder {
        self.request(Method::HEAD, path)
    }

    /// The endpoint core under the client: its endpoints, events
    /// ([`Failover::subscribe`]) and health checks.
    pub fn failover(&self) -> &Failover {
        &self.inner.failover
    }

    /// Statistics: calls, attempts, retries, budget refusals, hedges, and
    /// per endpoint health, breaker, ejection, latency.
    pub fn stats(&self) -> Stats {
        self.inner.failover.stats()
    }

    /// The reqwest client that sends the requests.
    pub fn http_client(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// Stops the background tasks (health checks, discovery).
    pub fn close(&self) {
        self.inner.failover.close();
    }
}

/// Builds a [`FailoverClient`].
#[derive(Debug)]
pub struct FailoverClientBuilder {
    core: FailoverBuilder,
    http: Option<reqwest::Client>,
    statuses: StatusPolicy,
    hedge: Option<HedgeDelay>,
    fallback: Option<Fallback>,
    invalid: Option<String>,
}

impl FailoverClientBuilder {
    /// Adds an endpoint; its `protocol` `https` selects HTTPS, anything
    /// else HTTP.
    pub fn endpoint(mut self, endpoint: Endpoint) -> Self {
        self.core = self.core.endpoint(endpoint);
        self
    }

    /// Adds endpoints.
    pub fn endpoints(mut self, endpoints: impl IntoIterator<Item = Endpoint>) -> Self {
        self.core = self.core.endpoints(endpoints);
        self
    }

    /// Adds the endpoint at `url` (`http://host:port` or `https://...`,
    /// no path), named by its authority.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the URL does not parse, has no host, or has
    /// a path, query or credentials.
    pub fn url(self, url: &str) -> Result<Self> {
        let endpoint = endpoint_of(url)?;
        Ok(self.endpoint(endpoint))
    }

    /// Keeps the endpoints current from a [`Discovery`] (Consul,
    /// Kubernetes, a static list, your own).
    pub fn discovery(mut self, discovery: impl Discovery) -> Self {
        self.core = self.core.discovery(discovery);
        self
    }

    /// How an endpoint is chosen per try (default: the core's).
    pub fn strategy(mut self, strategy: impl Strategy) -> Self {
        self.core = self.core.strategy(strategy);
        self
    }

    /// The per-endpoint circuit breaker.
    pub fn breaker(mut self, config: BreakerConfig) -> Self {
        self.core = self.core.breaker(config);
        self
    }

    /// Retries: attempts, backoff with jitter, per-try timeout, overall
    /// deadline, retry budget.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.core = self.core.retry(policy);
        self
    }

    /// An active health check (e.g. [`HttpCheck`](crate::core::HttpCheck)
    /// of `/health`); without one, health is passive only (what calls see).
    pub fn health_check(mut self, check: impl HealthCheck) -> Self {
        self.core = self.core.health_check(check);
        self
    }

    /// Interval, timeout and thresholds of the active health check.
    pub fn health_config(mut self, config: HealthCheckConfig) -> Self {
        self.core = self.core.health_config(config);
        self
    }

    /// Outlier detection (ejection of endpoints that fail more than the
    /// others).
    pub fn outlier(mut self, config: OutlierConfig) -> Self {
        self.core = self.core.outlier(config);
        self
    }

    /// The reqwest client to send with (its TLS, proxy, pool and default
    /// headers); by default `reqwest::Client::new()`.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// Which responses count as a failure of the endpoint.
    pub fn statuses(mut self, policy: StatusPolicy) -> Self {
        self.statuses = policy;
        self
    }

    /// Hedges idempotent requests: a second copy goes to another endpoint
    /// when no answer came within `delay` (paid for from the retry budget).
    /// Off by default; a request can opt out with
    /// [`RequestBuilder::hedge`].
    pub fn hedging(mut self, delay: HedgeDelay) -> Self {
        if let HedgeDelay::Quantile { quantile, .. } = delay
            && !(quantile > 0.0 && quantile < 1.0)
        {
            self.invalid = Some(format!(
                "hedging: the quantile must be between 0 and 1, not {quantile}"
            ));
        }
        self.hedge = Some(delay);
        self
    }

    /// What a call returns instead of an error when no endpoint can be
    /// tried at all (none configured, all down, all circuits open): see
    /// [`Fallback`].
    pub fn fallback(mut self, fallback: Fallback) -> Self {
        self.fallback = Some(fallback);
        self
    }

    /// Builds the client and starts its background tasks (on the current
    /// Tokio runtime when there are any).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for invalid settings, or as
    /// [`FailoverBuilder::build`].
    pub fn build(self) -> Result<FailoverClient> {
        if let Some(problem) = self.invalid {
            return Err(Error::Config(problem));
        }
        let failover = self.core.build()?;
        Ok(FailoverClient {
            inner: Arc::new(ClientInner {
                responses: super::metrics::ResponseMetrics::new(Arc::clone(failover.name())),
                failover,
                http: self.http.unwrap_or_default(),
                statuses: self.statuses,
                hedge: self.hedge,
                fallback: self.fallback,
            }),
        })
    }
}

/// The endpoint at `url`.
fn endpoint_of(url: &str) -> Result<Endpoint> {
    let bad = |why: &str| Error::Config(format!("endpoint URL `{url}`: {why}"));
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("the scheme must be http or https"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad("credentials belong in headers, not in the URL"));
    }
    if parsed.path() != "/" || parsed.query().is_some() {
        return Err(bad("only scheme, host and port; requests give the path"));
    }
    let host = parsed.host_str().ok_or_else(|| bad("no host"))?;
    let port = parsed
        .port_or_known_default()
        .ok_or_else(|| bad("no port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let id = match parsed.port() {
        Some(p) => format!("{}:{p}", parsed.host_str().unwrap_or(host)),
        None => parsed.host_str().unwrap_or(host).to_owned(),
    };
    Ok(Endpoint::new(id, host, port).with_protocol(parsed.scheme()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls_are_checked() {
        let e = endpoint_of("http://10.0.0.1:8080").unwrap();
        assert_eq!(
            (&*e.id, e.address.as_str(), e.port),
            ("10.0.0.1:8080", "10.0.0.1", 8080)
        );
        assert_eq!(e.protocol, "http");
        let e = endpoint_of("https://api.example.com").unwrap();
        assert_eq!((e.port, e.protocol.as_str()), (443, "https"));
        let e = endpoint_of("http://[::1]:9000/").unwrap();
        assert_eq!((e.address.as_str(), e.port), ("::1", 9000));
        for bad in [
            "ftp://x:1",
            "http://u:p@x:1",
            "http://x:1/api",
            "http://x:1/?a=b",
            "not a url",
        ] {
            assert!(endpoint_of(bad).is_err(), "{bad}");
        }
    }
}

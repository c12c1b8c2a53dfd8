//! Building a pool: [`PoolBuilder`] (node URLs or a topology source, plus
//! settings) and [`PoolSpec`], the serde shape of a pool's configuration.

use crate::core::redact::Redacted;
use crate::error::{Error, Result};
use crate::pool::FailoverPool;
use crate::pool::backend::Backend;
use crate::pool::config::{PoolConfig, PromotionPolicy, ReadPreference};
use crate::pool::node::NodeSpec;
use crate::pool::source::TopologySource;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

/// Serde configuration of a pool: the node URLs and the pool settings.
/// URLs print masked in `Debug`.
///
/// ```
/// # use failover_pool::pool::PoolSpec;
/// let spec: PoolSpec = serde_yaml_ng::from_str(r#"
/// urls: ["postgres://app:s3cret@db-a/app", "postgres://app:s3cret@db-b/app"]
/// pool:
///   name: orders
///   probe_interval: 500ms
///   promotion: { policy: automatic, confirmation: 2s }
/// "#).unwrap();
/// assert_eq!(spec.urls.len(), 2);
/// assert!(!format!("{spec:?}").contains("s3cret"));
/// ```
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolSpec {
    /// Node URLs, any order.
    pub urls: Vec<Redacted>,
    /// Pool settings (defaults for what is left out).
    #[serde(default)]
    pub pool: PoolConfig,
}

impl fmt::Debug for PoolSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolSpec")
            .field("urls", &self.urls)
            .field("pool", &self.pool)
            .finish()
    }
}

/// Builds a [`FailoverPool`]: node URLs (or a [`TopologySource`]) and
/// settings; [`PoolBuilder::connect`] validates, probes and starts it.
pub struct PoolBuilder<B: Backend> {
    urls: Vec<Redacted>,
    source: Option<Arc<dyn TopologySource>>,
    config: PoolConfig,
    backend: PhantomData<fn() -> B>,
}

impl<B: Backend> Default for PoolBuilder<B> {
    fn default() -> Self {
        PoolBuilder {
            urls: Vec::new(),
            source: None,
            config: PoolConfig::default(),
            backend: PhantomData,
        }
    }
}

impl<B: Backend> fmt::Debug for PoolBuilder<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("urls", &self.urls)
            .field("source", &self.source)
            .field("config", &self.config)
            .finish()
    }
}

impl<B: Backend> PoolBuilder<B> {
    /// Adds a node URL.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.urls.push(Redacted::new(url));
        self
    }

    /// Adds node URLs.
    pub fn urls<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.urls.extend(urls.into_iter().map(|u| Redacted::new(u)));
        self
    }

    /// Takes the nodes from a topology source instead of URLs.
    pub fn source(mut self, source: impl TopologySource) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// Replaces all settings.
    pub fn config(mut self, config: PoolConfig) -> Self {
        self.config = config;
        self
    }

    /// Name used in events, metrics and logs.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Promotion policy.
    pub fn promotion(mut self, policy: PromotionPolicy) -> Self {
        self.config.promotion = policy;
        self
    }

    /// Default read preference.
    pub fn read_preference(mut self, pref: ReadPreference) -> Self {
        self.config.read_preference = pref;
        self
    }

    /// Largest replay delay of a replica that serves reads.
    pub fn max_replica_lag(mut self, lag: Duration) -> Self {
        self.config.max_replica_lag = Some(lag);
        self
    }

    /// Connections per node pool.
    pub fn max_connections(mut self, n: u32) -> Self {
        self.config.max_connections = n;
        self
    }

    /// How long callers wait for a node during a failover.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.config.acquire_timeout = timeout;
        self
    }

    /// How often nodes are probed.
    pub fn probe_interval(mut self, interval: Duration) -> Self {
        self.config.probe_interval = interval;
        self
    }

    /// Validates, probes the nodes and starts the pool.
    ///
    /// # Errors
    /// [`Error::Config`] when neither URLs nor a source were given, or both.
    pub async fn connect(self) -> Result<FailoverPool<B>> {
        let backend = B::from_config(&self.config);
        match (self.source, self.urls.is_empty()) {
            (Some(source), true) => {
                FailoverPool::with_source_arc(backend, source, self.config).await
            }
            (None, false) => {
                let urls: Vec<&str> = self.urls.iter().map(Redacted::expose).collect();
                let nodes = NodeSpec::from_urls(&urls, B::DEFAULT_PORT)?;
                FailoverPool::new(backend, nodes, self.config).await
            }
            (Some(_), false) => Err(Error::Config(
                "give the pool either node URLs or a topology source, not both".into(),
            )),
            (None, true) => Err(Error::Config(
                "a failover pool needs at least one node".into(),
            )),
        }
    }
}

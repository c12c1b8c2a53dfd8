//! Building a cache: [`CacheSide`] (a [`FailoverRedis`] you made, or the
//! URLs of a Redis deployment) and [`CacheBuilder`].

use super::FailoverCache;
use super::config::{CacheConfig, FailSafeConfig, ReadFrom, WritePolicy};
use super::error::CacheError;
use crate::core::redact::Redacted;
use crate::pool::PoolConfig;
use crate::redis::FailoverRedis;
use std::sync::Arc;
use std::time::Duration;

/// One side of a cache: a name (for metrics, events and errors) and a
/// Redis deployment, independent of the other side's.
#[derive(Debug, Clone)]
pub struct CacheSide {
    name: String,
    source: Source,
}

#[derive(Debug, Clone)]
enum Source {
    Redis(FailoverRedis),
    Urls {
        urls: Vec<Redacted>,
        pool: Option<Box<PoolConfig>>,
    },
}

impl CacheSide {
    /// A side over a pool you built (and keep: closing the cache leaves it open).
    pub fn redis(name: impl Into<String>, redis: FailoverRedis) -> Self {
        CacheSide {
            name: name.into(),
            source: Source::Redis(redis),
        }
    }

    /// A side over one Redis server.
    pub fn url(name: impl Into<String>, url: impl Into<Redacted>) -> Self {
        Self::urls(name, [url])
    }

    /// A side over a Redis master and its replicas (any order; roles are
    /// discovered). The cache builds its pool with timeouts fit for a
    /// cache — probes every 500 ms, connects and probes time out after
    /// 500 ms, callers wait at most 1 s (or the write timeout) for a
    /// master — unless [`with_pool_config`](Self::with_pool_config) says
    /// otherwise, and closes it with the cache.
    pub fn urls<I, S>(name: impl Into<String>, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Redacted>,
    {
        CacheSide {
            name: name.into(),
            source: Source::Urls {
                urls: urls.into_iter().map(Into::into).collect(),
                pool: None,
            },
        }
    }

    /// The pool settings of a side built from URLs (ignored for a side
    /// built from a [`FailoverRedis`]).
    pub fn with_pool_config(mut self, config: PoolConfig) -> Self {
        if let Source::Urls { pool, .. } = &mut self.source {
            *pool = Some(Box::new(config));
        }
        self
    }

    /// The side's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The side's name, pool, and whether the cache made (and closes) it.
    pub(crate) async fn connect(
        self,
        cache: &CacheConfig,
    ) -> Result<(Arc<str>, FailoverRedis, bool), CacheError> {
        let name: Arc<str> = Arc::from(self.name.as_str());
        match self.source {
            Source::Redis(redis) => Ok((name, redis, false)),
            Source::Urls { urls, pool } => {
                let config = pool.map_or_else(|| default_pool(&self.name, cache), |p| *p);
                let urls: Vec<&str> = urls.iter().map(Redacted::expose).collect();
                let redis = FailoverRedis::connect_with(&urls, config)
                    .await
                    .map_err(|source| CacheError::Connect {
                        side: self.name.clone(),
                        source,
                    })?;
                Ok((name, redis, true))
            }
        }
    }
}

/// The pool settings the cache uses for a side built from URLs.
fn default_pool(side: &str, cache: &CacheConfig) -> PoolConfig {
    let half_second = Duration::from_millis(500);
    PoolConfig {
        name: format!("{}-{side}", cache.name),
        probe_interval: half_second,
        probe_timeout: half_second,
        connect_timeout: half_second,
        acquire_timeout: cache.write_timeout.max(Duration::from_secs(1)),
        max_connections: 4,
        ..PoolConfig::default()
    }
}

/// Builds a [`FailoverCache`]: two sides and the settings.
#[derive(Debug, Default)]
pub struct CacheBuilder {
    primary: Option<CacheSide>,
    secondary: Option<CacheSide>,
    config: CacheConfig,
}

impl CacheBuilder {
    /// The primary side (asked first by default).
    pub fn primary(mut self, side: CacheSide) -> Self {
        self.primary = Some(side);
        self
    }

    /// The secondary side.
    pub fn secondary(mut self, side: CacheSide) -> Self {
        self.secondary = Some(side);
        self
    }

    /// All settings at once.
    pub fn config(mut self, config: CacheConfig) -> Self {
        self.config = config;
        self
    }

    /// The name in metrics, events and logs.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// The prefix of every key.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.prefix = prefix.into();
        self
    }

    /// When a write counts as done.
    pub fn write_policy(mut self, policy: WritePolicy) -> Self {
        self.config.write_policy = policy;
        self
    }

    /// Which side reads ask first.
    pub fn read_from(mut self, read_from: ReadFrom) -> Self {
        self.config.read_from = read_from;
        self
    }

    /// Read both sides and repair the one behind.
    pub fn read_repair(mut self, on: bool) -> Self {
        self.config.read_repair = on;
        self
    }

    /// Serve the last known value when both sides are down.
    pub fn fail_safe(mut self, fail_safe: FailSafeConfig) -> Self {
        self.config.fail_safe = Some(fail_safe);
        self
    }

    /// Starts the cache: validates, connects sides given as URLs, starts
    /// the repair loops.
    ///
    /// # Errors
    /// [`CacheError::Config`] for invalid settings, a missing side or two
    /// sides with one name; [`CacheError::Connect`] when a side's URLs are
    /// invalid. A side that is down is no error: it is repaired once up.
    pub async fn build(self) -> Result<FailoverCache, CacheError> {
        let (Some(primary), Some(secondary)) = (self.primary, self.secondary) else {
            return Err(CacheError::Config(
                "a cache needs a primary and a secondary side".into(),
            ));
        };
        if primary.name == secondary.name {
            return Err(CacheError::Config(format!(
                "both sides are named `{}`",
                primary.name
            )));
        }
        self.config.validate()?;
        let primary = primary.connect(&self.config).await?;
        let secondary = match secondary.connect(&self.config).await {
            Ok(s) => s,
            Err(e) => {
                if primary.2 {
                    primary.1.close().await;
                }
                return Err(e);
            }
        };
        Ok(FailoverCache::start(self.config, [primary, secondary]))
    }
}

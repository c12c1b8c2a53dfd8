//! The cache's settings ([`CacheConfig`]) and its serde shape with the two
//! sides' URLs ([`CacheSpec`]). Durations are written as `"500ms"`, `"10m"`.

use super::error::CacheError;
use crate::core::redact::Redacted;
use crate::pool::PoolConfig;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// When a write counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WritePolicy {
    /// Sent to both sides at once. `Ok` when both acknowledged it; when one
    /// failed or timed out, still `Ok`, with the write queued for that side
    /// (and an event); an error only when neither acknowledged it.
    #[default]
    Both,
    /// Like [`Both`](Self::Both), but an error when either side did not
    /// acknowledge ([`CacheError::NotAcknowledged`]: the write stands on
    /// the other side and is queued for the failed one).
    RequireBoth,
    /// Sent to both sides at once; `Ok` as soon as the primary acknowledged
    /// it (the secondary's answer is awaited in the background). When the
    /// primary fails, `Ok` once the secondary acknowledged it.
    PrimaryThenAsync,
    /// Sent to both sides at once; `Ok` as soon as either acknowledged it.
    Any,
}

/// Which side a read asks first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadFrom {
    /// The primary, then the secondary.
    #[default]
    PrimaryFirst,
    /// The side with the lower recent latency (moving average) first.
    Nearest,
}

/// Bounds and pace of each side's repair queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueueConfig {
    /// Most keys queued per side; one more makes the side divergent.
    pub max_entries: usize,
    /// Most bytes (keys and entries) queued per side; more makes the side
    /// divergent.
    pub max_bytes: usize,
    /// Most entries replayed per second per side.
    pub replay_rate: u32,
    /// Entries sent in one replay pipeline.
    pub replay_batch: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_entries: 100_000,
            max_bytes: 64 * 1024 * 1024,
            replay_rate: 5_000,
            replay_batch: 100,
        }
    }
}

/// Serving the last known value when both sides are down.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FailSafeConfig {
    /// How long after it was last read or written a value may be served.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Most values kept in memory for it.
    pub max_entries: usize,
}

impl Default for FailSafeConfig {
    fn default() -> Self {
        FailSafeConfig {
            max_age: Duration::from_secs(300),
            max_entries: 10_000,
        }
    }
}

/// Settings of a [`FailoverCache`](super::FailoverCache).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CacheConfig {
    /// Name in metrics (`manager` label), events and logs.
    pub name: String,
    /// Prepended to every key; also what reconciliation scans for.
    pub prefix: String,
    /// When a write counts as done.
    pub write_policy: WritePolicy,
    /// Which side reads ask first.
    pub read_from: ReadFrom,
    /// How long one side may take to acknowledge a write before it counts
    /// as failed for that side (and the write is queued for it).
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// How long a read waits for the first side before asking the other too.
    #[serde(with = "humantime_serde")]
    pub read_soft_timeout: Duration,
    /// How long a whole read may take.
    #[serde(with = "humantime_serde")]
    pub read_timeout: Duration,
    /// Read both sides, return the newer entry and copy it onto the side
    /// that is behind (doubles the read traffic).
    pub read_repair: bool,
    /// How long a delete's tombstone stays on each side. A side repaired
    /// later than this (see the module docs) could get a deleted value back
    /// from the other side by reconciliation.
    #[serde(with = "humantime_serde")]
    pub tombstone_ttl: Duration,
    /// The repair queues.
    pub queue: QueueConfig,
    /// How often a side that failed is checked (`PING`), and the pace of
    /// the repair loops.
    #[serde(with = "humantime_serde")]
    pub health_interval: Duration,
    /// Fail-safe: serve the last known value when both sides are down.
    pub fail_safe: Option<FailSafeConfig>,
    /// The writer id in versions; random per instance when unset.
    pub writer_id: Option<u32>,
    /// A version read from a side further ahead of this host's clock than
    /// this does not move the version clock.
    #[serde(with = "humantime_serde")]
    pub max_clock_ahead: Duration,
    /// Writes of the `PrimaryThenAsync` and `Any` policies whose slower side
    /// may still be in flight; past it, writes wait for both sides.
    pub max_async_writes: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            name: "cache".into(),
            prefix: "cache:".into(),
            write_policy: WritePolicy::default(),
            read_from: ReadFrom::default(),
            write_timeout: Duration::from_millis(500),
            read_soft_timeout: Duration::from_millis(100),
            read_timeout: Duration::from_secs(1),
            read_repair: false,
            tombstone_ttl: Duration::from_secs(15 * 60),
            queue: QueueConfig::default(),
            health_interval: Duration::from_millis(250),
            fail_safe: None,
            writer_id: None,
            max_clock_ahead: Duration::from_secs(5),
            max_async_writes: 1024,
        }
    }
}

impl CacheConfig {
    /// Checks the values; every problem names its field.
    pub fn validate(&self) -> Result<(), CacheError> {
        let bad = |m: &str| Err(CacheError::Config(m.to_owned()));
        if self.write_timeout.is_zero() {
            return bad("write_timeout must be > 0");
        }
        if self.read_timeout.is_zero() {
            return bad("read_timeout must be > 0");
        }
        if self.read_soft_timeout > self.read_timeout {
            return bad("read_soft_timeout must be <= read_timeout");
        }
        if self.tombstone_ttl < Duration::from_millis(1) {
            return bad("tombstone_ttl must be at least 1ms");
        }
        if self.health_interval.is_zero() {
            return bad("health_interval must be > 0");
        }
        if self.queue.max_entries == 0 || self.queue.max_bytes == 0 {
            return bad("queue.max_entries and queue.max_bytes must be > 0");
        }
        if self.queue.replay_rate == 0 || self.queue.replay_batch == 0 {
            return bad("queue.replay_rate and queue.replay_batch must be > 0");
        }
        if let Some(fs) = &self.fail_safe
            && (fs.max_age.is_zero() || fs.max_entries == 0)
        {
            return bad("fail_safe.max_age and fail_safe.max_entries must be > 0");
        }
        Ok(())
    }
}

/// One side in a [`CacheSpec`]: its name and the URLs of its nodes (one
/// Redis master, or a master and its replicas: roles are discovered).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SideSpec {
    /// Name in metrics (`side` label), events and errors.
    pub name: String,
    /// Node URLs; printed masked.
    pub urls: Vec<Redacted>,
    /// The side's pool settings; by default short timeouts fit for a cache
    /// (see [`CacheSide::urls`](super::CacheSide::urls)).
    #[serde(default)]
    pub pool: Option<PoolConfig>,
}

/// Serde configuration of a cache: the two sides and the settings.
///
/// ```
/// use failover_pool::cache::{CacheSpec, WritePolicy};
/// let spec: CacheSpec = serde_yaml_ng::from_str(r#"
/// primary: { name: east, urls: ["redis://:s3cret@cache-east:6379/"] }
/// secondary: { name: west, urls: ["redis://:s3cret@cache-west:6379/"] }
/// cache:
///   name: sessions
///   prefix: "sess:"
///   write_policy: both
///   write_timeout: 300ms
///   fail_safe: { max_age: 2m }
/// "#).unwrap();
/// assert_eq!(spec.cache.write_policy, WritePolicy::Both);
/// assert!(!format!("{spec:?}").contains("s3cret"));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheSpec {
    /// The side asked first (by default) for reads.
    pub primary: SideSpec,
    /// The other side.
    pub secondary: SideSpec,
    /// Settings (defaults for what is left out).
    #[serde(default)]
    pub cache: CacheConfig,
}

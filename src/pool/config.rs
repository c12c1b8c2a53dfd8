//! Configuration of a [`FailoverPool`](crate::pool::FailoverPool): probing,
//! promotion policy, read preference and timeouts (serde, durations as `"1s"`).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Who makes a secondary the new primary when the primary is gone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "snake_case")]
pub enum PromotionPolicy {
    /// Never promote; follow the promotions an orchestrator makes (Patroni,
    /// Sentinel, a managed service). The pool notices within one probe interval.
    External,
    /// Promote only when told: [`FailoverPool::promote`](crate::pool::FailoverPool::promote)
    /// or [`FailoverPool::switchover`](crate::pool::FailoverPool::switchover).
    Manual,
    /// Promote the most advanced healthy secondary once the primary has been
    /// unreachable for `confirmation`, if its lag is within `max_lag_bytes`.
    /// Only a writer this pool has seen can be lost: a pool that starts
    /// while no primary is reachable waits for one (or for an external or
    /// manual promotion) rather than promote a replica of unknown lag. A
    /// failed promotion is retried after 2 s.
    Automatic {
        /// How long the primary must stay unreachable before promoting
        /// (an outage shorter than this never causes a promotion).
        #[serde(with = "humantime_serde", default = "default_confirmation")]
        confirmation: Duration,
        /// Largest replication lag, in bytes behind the last position seen on
        /// the old primary, that a candidate may have. A candidate further
        /// behind is not promoted (that would lose more acknowledged writes).
        #[serde(default = "default_max_failover_lag")]
        max_lag_bytes: u64,
    },
}

fn default_confirmation() -> Duration {
    Duration::from_secs(3)
}

fn default_max_failover_lag() -> u64 {
    16 * 1024 * 1024
}

impl PromotionPolicy {
    /// Automatic promotion with the default confirmation window (3 s) and lag bound (16 MiB).
    pub fn automatic() -> Self {
        PromotionPolicy::Automatic {
            confirmation: default_confirmation(),
            max_lag_bytes: default_max_failover_lag(),
        }
    }
}

impl Default for PromotionPolicy {
    /// [`PromotionPolicy::External`]: the safe default when several
    /// application instances share a cluster.
    fn default() -> Self {
        PromotionPolicy::External
    }
}

/// Where reads go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadPreference {
    /// Always the writer.
    Primary,
    /// A replica within the lag bound; the writer when none is.
    #[default]
    PreferReplica,
    /// Only replicas within the lag bound (waits, bounded by the acquire
    /// timeout, when there is none).
    Replica,
    /// The node with the lowest probe round-trip, writer included.
    Nearest,
}

/// Configuration of a failover pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PoolConfig {
    /// Name used in events, metrics and logs.
    pub name: String,
    /// How often every node is probed for its role and position.
    #[serde(with = "humantime_serde")]
    pub probe_interval: Duration,
    /// Timeout of one probe (connect + query). A frozen node is detected by it.
    #[serde(with = "humantime_serde")]
    pub probe_timeout: Duration,
    /// Probes in a row that must time out (or get an error answer from the
    /// server) before a node counts as down; one slow moment of a loaded
    /// primary then does not retire its connections or start a failover. A
    /// refused or reset connection counts at once. Default 2.
    pub probe_timeouts_to_down: u32,
    /// How long a caller waits for a connection of the role it asked for,
    /// across a failover, before getting an error.
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    /// Timeout of one connection attempt to a node (kept short so a dead or
    /// frozen node does not eat the whole acquire timeout).
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Promotion policy.
    pub promotion: PromotionPolicy,
    /// How long one promotion or switchover command may take before it is
    /// reported as timed out (its outcome is then unknown: the node may
    /// still finish promoting, and the next probe will say).
    #[serde(with = "humantime_serde")]
    pub promotion_timeout: Duration,
    /// Default read preference of `reader()`.
    pub read_preference: ReadPreference,
    /// A replica lagging more than this (as reported by the server) is not read from.
    #[serde(with = "humantime_serde")]
    pub max_replica_lag: Option<Duration>,
    /// A replica more than this many bytes behind the writer is not read from.
    pub max_replica_lag_bytes: Option<u64>,
    /// Largest number of connections per node pool.
    pub max_connections: u32,
    /// Smallest number of idle connections per node pool.
    pub min_connections: u32,
    /// Check a pooled connection with a round trip before handing it out
    /// (sqlx's `test_before_acquire`, deadpool's `RecyclingMethod::Verified`),
    /// unless [`PoolConfig::test_bypass_window`] lets it skip the check. On
    /// by default, as in sqlx: right after a node dies, its idle pooled
    /// connections may not know yet, and without the check the first
    /// operation on one fails instead of waiting for the new writer.
    pub test_before_acquire: bool,
    /// With `test_before_acquire`, a connection used less than this long
    /// ago is handed out without the round trip (HikariCP's
    /// `aliveBypassWindowMs`), which saves that round trip under load. The
    /// price, measured in the drills (see the README): a frozen or cut-off
    /// node is not noticed by a bypassed connection, so operations started
    /// in the first moments of such a fault hang and fail, and may run on
    /// the old primary when it wakes up. `None` (the default) means zero:
    /// every checkout is checked.
    #[serde(with = "humantime_serde")]
    pub test_bypass_window: Option<Duration>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            name: "pool".into(),
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_secs(1),
            probe_timeouts_to_down: 2,
            acquire_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(2),
            promotion: PromotionPolicy::default(),
            promotion_timeout: Duration::from_secs(60),
            read_preference: ReadPreference::default(),
            max_replica_lag: Some(Duration::from_secs(10)),
            max_replica_lag_bytes: Some(16 * 1024 * 1024),
            max_connections: 10,
            min_connections: 0,
            test_before_acquire: true,
            test_bypass_window: None,
        }
    }
}

impl PoolConfig {
    /// The connection check backends apply on checkout: `None` for none,
    /// `Some(window)` for a round trip unless the connection was used less
    /// than `window` ago (zero: always).
    pub fn connection_check(&self) -> Option<Duration> {
        self.test_before_acquire
            .then(|| self.test_bypass_window.unwrap_or(Duration::ZERO))
    }

    /// Checks the values; every problem names its field.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Config(m.to_owned()));
        if self.probe_interval.is_zero() {
            return bad("probe_interval must be > 0");
        }
        if self.probe_timeout.is_zero() {
            return bad("probe_timeout must be > 0");
        }
        if self.probe_timeouts_to_down == 0 {
            return bad("probe_timeouts_to_down must be >= 1");
        }
        if self.acquire_timeout < self.connect_timeout {
            return bad("acquire_timeout must be >= connect_timeout");
        }
        if self.connect_timeout.is_zero() {
            return bad("connect_timeout must be > 0");
        }
        if self.acquire_timeout.is_zero() {
            return bad("acquire_timeout must be > 0");
        }
        if self.promotion_timeout.is_zero() {
            return bad("promotion_timeout must be > 0");
        }
        if self.max_connections == 0 {
            return bad("max_connections must be > 0");
        }
        if self.min_connections > self.max_connections {
            return bad("min_connections must be <= max_connections");
        }
        if let PromotionPolicy::Automatic { confirmation, .. } = &self.promotion
            && confirmation.is_zero()
        {
            return bad("promotion.confirmation must be > 0 (a zero window promotes on any blip)");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_shape() {
        let cfg: PoolConfig = serde_yaml_ng::from_str(
            "name: orders\nprobe_interval: 500ms\npromotion:\n  policy: automatic\n  confirmation: 2s\nread_preference: nearest\nmax_replica_lag: 5s\n",
        )
        .unwrap();
        assert_eq!(cfg.probe_interval, Duration::from_millis(500));
        assert_eq!(
            cfg.promotion,
            PromotionPolicy::Automatic {
                confirmation: Duration::from_secs(2),
                max_lag_bytes: 16 * 1024 * 1024
            }
        );
        assert_eq!(cfg.read_preference, ReadPreference::Nearest);
        cfg.validate().unwrap();
    }

    #[test]
    fn validation_names_the_field() {
        let cfg = PoolConfig {
            max_connections: 0,
            ..PoolConfig::default()
        };
        assert!(
            cfg.validate()
                .unwrap_err()
                .to_string()
                .contains("max_connections")
        );
        let cfg = PoolConfig {
            promotion: PromotionPolicy::Automatic {
                confirmation: Duration::ZERO,
                max_lag_bytes: 0,
            },
            ..PoolConfig::default()
        };
        assert!(
            cfg.validate()
                .unwrap_err()
                .to_string()
                .contains("confirmation")
        );
    }
}

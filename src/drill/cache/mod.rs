//! The cache drill: a [`FailoverCache`](crate::cache::FailoverCache) over
//! two independent local Redis servers under a mixed set/delete/get load,
//! one side failing for a while, then the repair, checked key by key.
//!
//! [`run_cache_drill`] starts two single-server
//! [`LocalRedisCluster`](super::LocalRedisCluster)s (the two
//! "deployments"), builds a cache over them (policy
//! [`Both`](crate::cache::WritePolicy::Both)), writes every key once, then
//! runs [`load::run_load`]: writer tasks set (3 in 4) or delete (1 in 4)
//! the keys they own, reader tasks read random keys. At `fault_at` one
//! side fails for `outage` ([`CacheFault`]: killed and restarted **empty**,
//! frozen with `SIGSTOP` and thawed, or cut off by a
//! [`FaultProxy`](super::FaultProxy) in blackhole mode and healed). After
//! the load the drill waits for the cache to say it is in sync, then reads
//! both servers directly ([`inspect`]) and compares them with each other
//! and with the last acknowledged operation of every key.
//!
//! The [`CacheDrillReport`] names its figures as the issue does:
//! `divergent_keys_after_repair`, `resurrected_deletes`, `ttls_extended`,
//! `caller_errors` (goal 0 each), `acked_writes`, `repair_ms` (from the
//! side's recovery to the cache in sync) and `p99_added_latency_ms` (p99
//! of the calls started during the fault minus p99 before it).
//!
//! ```no_run
//! # async fn demo() -> Result<(), failover_pool::drill::DrillError> {
//! use failover_pool::drill::cache::{CacheDrillOptions, CacheFault, run_cache_drill};
//!
//! let opts = CacheDrillOptions {
//!     fault: CacheFault::Freeze,
//!     ..CacheDrillOptions::default()
//! };
//! let report = run_cache_drill(&opts, |p| eprintln!("{}", p.line())).await?;
//! assert!(report.all_goals_met(), "{}", report.render_text());
//! # Ok(())
//! # }
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::DrillError;

mod events;
mod figures;
pub mod inspect;
pub mod load;
mod report;
mod run;
mod svg;

pub use report::{CacheBucket, CacheDrillReport, CacheTimelineEvent};
pub use run::{CacheProgress, run_cache_drill, write_cache_outputs};
pub use svg::render_cache_svg;

/// The fault injected into one side of the cache.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum CacheFault {
    /// SIGKILL the side's server, restart it empty after the outage.
    #[default]
    Crash,
    /// SIGSTOP the side's server, SIGCONT after the outage (a hang).
    Freeze,
    /// Cut the side off: its proxy swallows all traffic (a partition),
    /// then passes it again.
    Blackhole,
}

impl CacheFault {
    /// The name used on the command line and in reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            CacheFault::Crash => "crash",
            CacheFault::Freeze => "freeze",
            CacheFault::Blackhole => "blackhole",
        }
    }
}

/// Which side of the cache fails.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum FaultSide {
    /// The primary: the side reads ask first.
    #[default]
    Primary,
    /// The secondary.
    Secondary,
}

impl FaultSide {
    /// The name used on the command line and in reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            FaultSide::Primary => "primary",
            FaultSide::Secondary => "secondary",
        }
    }
}

/// The settings of a cache drill.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheDrillOptions {
    /// The fault.
    pub fault: CacheFault,
    /// The side that fails.
    pub side: FaultSide,
    /// How long the load runs.
    pub duration: Duration,
    /// When the fault is injected, since the load started.
    pub fault_at: Duration,
    /// How long the side stays failed.
    pub outage: Duration,
    /// Writer tasks.
    pub writers: usize,
    /// Reader tasks.
    pub readers: usize,
    /// Keys the writers share out (each key has one writer).
    pub keys: usize,
    /// The TTL of every value: longer than the drill and its repair, so
    /// that no key expires before the check.
    pub ttl: Duration,
    /// The pause between two calls of one task.
    pub pace: Duration,
    /// The cache's `write_timeout`: how long one side may take to
    /// acknowledge a write before it is queued for it.
    pub write_timeout: Duration,
    /// The cache's `read_soft_timeout`.
    pub read_soft_timeout: Duration,
    /// The cache's `health_interval`.
    pub health_interval: Duration,
    /// How long the drill waits, after the load, for the cache to be in
    /// sync before it checks the sides anyway.
    pub repair_timeout: Duration,
    /// Write the report as JSON to this file.
    pub json: Option<PathBuf>,
    /// Write a chart of the drill as SVG to this file.
    pub svg: Option<PathBuf>,
}

impl Default for CacheDrillOptions {
    fn default() -> Self {
        CacheDrillOptions {
            fault: CacheFault::Crash,
            side: FaultSide::Primary,
            duration: Duration::from_secs(12),
            fault_at: Duration::from_secs(3),
            outage: Duration::from_secs(4),
            writers: 8,
            readers: 4,
            keys: 2000,
            ttl: Duration::from_secs(600),
            pace: Duration::from_millis(1),
            write_timeout: Duration::from_millis(200),
            read_soft_timeout: Duration::from_millis(50),
            health_interval: Duration::from_millis(100),
            repair_timeout: Duration::from_secs(60),
            json: None,
            svg: None,
        }
    }
}

impl CacheDrillOptions {
    /// Checks the settings; every problem names its field.
    ///
    /// # Errors
    ///
    /// [`DrillError::InvalidOptions`].
    pub fn validate(&self) -> Result<(), DrillError> {
        let invalid = |text: String| Err(DrillError::InvalidOptions(text));
        if self.writers == 0 {
            return invalid("writers: at least one writer is needed".into());
        }
        if self.keys < self.writers {
            return invalid(format!(
                "keys: {} keys cannot be shared out among {} writers",
                self.keys, self.writers
            ));
        }
        if self.outage.is_zero() {
            return invalid("outage: the side must fail for some time".into());
        }
        if self.fault_at + self.outage >= self.duration {
            return invalid(format!(
                "fault_at + outage ({:?} + {:?}) must end before the load does (duration {:?})",
                self.fault_at, self.outage, self.duration
            ));
        }
        let needed = self.duration + self.repair_timeout;
        if self.ttl <= needed {
            return invalid(format!(
                "ttl: {:?} would let keys expire before the check; it must exceed duration + repair timeout ({needed:?})",
                self.ttl
            ));
        }
        for (name, d) in [
            ("write_timeout", self.write_timeout),
            ("read_soft_timeout", self.read_soft_timeout),
            ("health_interval", self.health_interval),
        ] {
            if d.is_zero() {
                return invalid(format!("{name}: must be more than zero"));
            }
        }
        Ok(())
    }
}

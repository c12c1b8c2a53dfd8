//! The HTTP drill: a [`FailoverClient`](crate::http::FailoverClient) over
//! N local backends ([`LocalHttpBackends`](super::LocalHttpBackends))
//! under an **open-loop** load (requests start at a fixed rate whatever
//! happens to earlier ones, so a stalled client cannot hide errors), one
//! backend failing for a while ([`HttpFault`]), and what the callers saw.
//!
//! The load mixes GET (6 in 10), PUT (1), POST without a key (2) and POST
//! with an `Idempotency-Key` (1), each with a unique `x-request-id`, so
//! that the backends can tell which request ran twice. The
//! [`HttpDrillReport`] has, with these JSON names:
//! `caller_errors_idempotent` (GET, PUT, keyed POST; goal 0),
//! `caller_errors_non_idempotent`, `may_have_executed_errors`,
//! `requests`, `retries`, `retries_refused_by_budget`, `p99_ms_before`,
//! `p99_ms_during`, `p99_ms_after`, `eject_ms` (fault → the client takes
//! the backend out: ejection, unhealthy or breaker open) and `readmit_ms`
//! (backend back → first request it answers).
//!
//! ```no_run
//! # async fn demo() -> Result<(), failover_pool::drill::DrillError> {
//! use failover_pool::drill::http::{HttpDrillOptions, HttpFault, run_http_drill};
//!
//! let opts = HttpDrillOptions { fault: HttpFault::Freeze, ..HttpDrillOptions::default() };
//! let report = run_http_drill(&opts, |line| eprintln!("{line}")).await?;
//! println!("{}", report.render_text());
//! # Ok(())
//! # }
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::drill::DrillError;

mod events;
mod load;
mod report;
mod run;

pub use report::{HttpBucket, HttpDrillReport, HttpTimelineEvent, MethodErrors};
pub use run::{run_http_drill, write_http_outputs};

/// The fault injected into backend `b0`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum HttpFault {
    /// The backend dies (its listener and every connection closed), and
    /// is restarted on the same port after the outage.
    #[default]
    Crash,
    /// The backend accepts and reads requests but never answers (a hung
    /// process), until the outage ends.
    Freeze,
    /// The backend answers, slowly (`slow_delay` per request).
    Slow,
    /// The backend dies and comes back every 300 ms during the outage.
    Flap,
}

impl HttpFault {
    /// The name used on the command line and in reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            HttpFault::Crash => "crash",
            HttpFault::Freeze => "freeze",
            HttpFault::Slow => "slow",
            HttpFault::Flap => "flap",
        }
    }
}

/// The settings of an HTTP drill.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpDrillOptions {
    /// Backends (the fault hits the first, `b0`).
    pub backends: usize,
    /// The fault.
    pub fault: HttpFault,
    /// How long the load runs.
    pub duration: Duration,
    /// When the fault starts, since the load started.
    pub fault_at: Duration,
    /// How long it lasts.
    pub outage: Duration,
    /// Requests started per second (open loop).
    pub rate: u32,
    /// The time limit of one try.
    pub try_timeout: Duration,
    /// Tries per request, the first included.
    pub max_attempts: u32,
    /// How slow `slow` is.
    pub slow_delay: Duration,
    /// Hedge idempotent requests after this long without an answer.
    pub hedge: Option<Duration>,
    /// Write the report as JSON to this file.
    pub json: Option<PathBuf>,
    /// Write a chart of the drill as SVG to this file.
    pub svg: Option<PathBuf>,
}

impl Default for HttpDrillOptions {
    fn default() -> Self {
        HttpDrillOptions {
            backends: 3,
            fault: HttpFault::Crash,
            duration: Duration::from_secs(12),
            fault_at: Duration::from_secs(3),
            outage: Duration::from_secs(4),
            rate: 400,
            try_timeout: Duration::from_millis(300),
            max_attempts: 3,
            slow_delay: Duration::from_millis(800),
            hedge: None,
            json: None,
            svg: None,
        }
    }
}

impl HttpDrillOptions {
    /// Checks the settings; every problem names its field.
    ///
    /// # Errors
    ///
    /// [`DrillError::InvalidOptions`].
    pub fn validate(&self) -> Result<(), DrillError> {
        let invalid = |text: String| Err(DrillError::InvalidOptions(text));
        if self.backends < 2 {
            return invalid(format!(
                "backends: {} leaves nothing to fail over to; at least 2",
                self.backends
            ));
        }
        if self.rate == 0 || self.rate > 20_000 {
            return invalid(format!(
                "rate: {} requests/s is not in 1..=20000",
                self.rate
            ));
        }
        if self.max_attempts == 0 {
            return invalid("max_attempts: at least one try".into());
        }
        if self.try_timeout.is_zero() || self.outage.is_zero() {
            return invalid("try_timeout and outage must be more than zero".into());
        }
        if self.fault_at + self.outage >= self.duration {
            return invalid(format!(
                "fault_at + outage ({:?} + {:?}) must end before the load does (duration {:?})",
                self.fault_at, self.outage, self.duration
            ));
        }
        Ok(())
    }
}

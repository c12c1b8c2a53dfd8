//! [`BreakerConfig`] and its [`SlidingWindow`]: what a circuit breaker
//! counts and when it trips, with validation that names the offending field.

use crate::error::Error;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Largest accepted [`SlidingWindow::Count::size`].
pub(super) const MAX_COUNT_WINDOW: u32 = 100_000;
/// Largest accepted [`SlidingWindow::Time::buckets`].
pub(super) const MAX_TIME_BUCKETS: u32 = 1_000;
/// Largest accepted [`BreakerConfig::half_open_max_calls`].
pub(super) const MAX_HALF_OPEN_CALLS: u32 = 10_000;

/// The window over which failure and slow-call rates are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SlidingWindow {
    /// The last `size` calls.
    Count {
        /// How many of the most recent calls are counted.
        size: u32,
    },
    /// The calls of the last `duration`, kept in `buckets` buckets: a call is
    /// forgotten between `duration - duration / buckets` and `duration` after
    /// it was recorded, never later.
    Time {
        /// How far back calls are counted (e.g. `"10s"`).
        #[serde(with = "humantime_serde")]
        duration: Duration,
        /// How many buckets the duration is split into (default 10).
        #[serde(default = "default_time_buckets")]
        buckets: u32,
    },
}

fn default_time_buckets() -> u32 {
    10
}

impl Default for SlidingWindow {
    fn default() -> Self {
        SlidingWindow::Count { size: 20 }
    }
}

/// Configuration of a [`CircuitBreaker`](super::CircuitBreaker).
///
/// Deserializes with every field optional (missing fields take the
/// [`Default`] values); durations are written like `"10s"` or `"250ms"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Whether the breaker does anything; a disabled breaker permits every
    /// call and never changes state. Default `true`.
    pub enabled: bool,
    /// The sliding window the rates are computed over. Default: the last 20 calls.
    pub window: SlidingWindow,
    /// Trip when at least this fraction (`0.0 < x <= 1.0`) of the calls in the
    /// window failed. Default `0.5`.
    pub failure_rate_threshold: f64,
    /// A call that takes longer than this is slow. Default 5s.
    #[serde(with = "humantime_serde")]
    pub slow_call_duration: Duration,
    /// Trip when at least this fraction (`0.0 < x <= 1.0`) of the calls in the
    /// window were slow. Default `1.0`: only when every call is slow.
    pub slow_call_rate_threshold: f64,
    /// No rate-based decision is made before the window holds this many
    /// calls (for a count window, at most its size). Default 10.
    pub minimum_calls: u32,
    /// Also trip after this many failures in a row, whatever the window says;
    /// `None` disables it. Default `Some(5)`.
    pub consecutive_failures: Option<u32>,
    /// How long the breaker stays open before probe calls are let through.
    /// Default 10s.
    #[serde(with = "humantime_serde")]
    pub open_duration: Duration,
    /// How many probe calls may run at once while half-open; that many
    /// successful probes close the breaker. Default 3.
    pub half_open_max_calls: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            enabled: true,
            window: SlidingWindow::default(),
            failure_rate_threshold: 0.5,
            slow_call_duration: Duration::from_secs(5),
            slow_call_rate_threshold: 1.0,
            minimum_calls: 10,
            consecutive_failures: Some(5),
            open_duration: Duration::from_secs(10),
            half_open_max_calls: 3,
        }
    }
}

fn check_rate(name: &str, value: f64) -> Result<(), Error> {
    if value.is_finite() && value > 0.0 && value <= 1.0 {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "breaker.{name} must be greater than 0.0 and at most 1.0 (a fraction, not a percentage), got {value}"
        )))
    }
}

impl BreakerConfig {
    /// Checks that every field is in range; the error names the offending field.
    pub fn validate(&self) -> Result<(), Error> {
        match self.window {
            SlidingWindow::Count { size } => {
                if size == 0 || size > MAX_COUNT_WINDOW {
                    return Err(Error::Config(format!(
                        "breaker.window.size must be between 1 and {MAX_COUNT_WINDOW}, got {size}"
                    )));
                }
            }
            SlidingWindow::Time { duration, buckets } => {
                if buckets == 0 || buckets > MAX_TIME_BUCKETS {
                    return Err(Error::Config(format!(
                        "breaker.window.buckets must be between 1 and {MAX_TIME_BUCKETS}, got {buckets}"
                    )));
                }
                if duration < Duration::from_millis(1) * buckets {
                    return Err(Error::Config(format!(
                        "breaker.window.duration must be at least 1ms per bucket ({buckets} buckets), got {duration:?}"
                    )));
                }
            }
        }
        check_rate("failure_rate_threshold", self.failure_rate_threshold)?;
        check_rate("slow_call_rate_threshold", self.slow_call_rate_threshold)?;
        if self.slow_call_duration.is_zero() {
            return Err(Error::Config(
                "breaker.slow_call_duration must be greater than zero".into(),
            ));
        }
        if self.minimum_calls == 0 {
            return Err(Error::Config(
                "breaker.minimum_calls must be at least 1".into(),
            ));
        }
        if self.consecutive_failures == Some(0) {
            return Err(Error::Config(
                "breaker.consecutive_failures must be at least 1 (or null to disable it)".into(),
            ));
        }
        if self.open_duration.is_zero() {
            return Err(Error::Config(
                "breaker.open_duration must be greater than zero".into(),
            ));
        }
        if self.half_open_max_calls == 0 || self.half_open_max_calls > MAX_HALF_OPEN_CALLS {
            return Err(Error::Config(format!(
                "breaker.half_open_max_calls must be between 1 and {MAX_HALF_OPEN_CALLS}, got {}",
                self.half_open_max_calls
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

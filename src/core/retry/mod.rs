//! Retries: exponential [`Backoff`] with jitter, the [`RetryPolicy`] an
//! executor follows, [`Idempotency`], and a [`RetryBudget`] that stops retry
//! storms.
//!
//! The budget works like tower's `TpsBudget`: every success deposits a
//! fraction of a retry, every retry withdraws one, and a fixed reserve of
//! `min_per_sec` retries per second is always available. Within any `ttl`
//! the retries allowed are at most
//! `min_per_sec * ttl + retry_ratio * successes in that ttl`. It is a ring of
//! time slots of packed atomics: lock-free, no allocation after
//! construction.
//!
//! The budget and its configuration are in `budget.rs`.

mod budget;

pub use budget::{BudgetConfig, RetryBudget};

use crate::core::clock::dur_nanos;
use crate::error::Error;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Whether an operation may safely run more than once.
///
/// Nothing that may have executed is retried unless `Idempotent`: a failure
/// that certainly happened before the operation reached a server (connection
/// refused, breaker open) can be retried either way, but a timeout or a
/// connection cut mid-operation is retried only for idempotent work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Idempotency {
    /// Running it twice has the same effect as running it once (reads,
    /// upserts keyed by a request id, ...).
    Idempotent,
    /// Running it twice may do it twice (inserts, increments, payments).
    #[default]
    NotIdempotent,
}

impl Idempotency {
    /// Whether this is [`Idempotency::Idempotent`].
    pub const fn is_idempotent(self) -> bool {
        matches!(self, Idempotency::Idempotent)
    }
}

/// How the delay before a retry is randomized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Jitter {
    /// Exactly the capped exponential delay.
    None,
    /// Uniform in `[0, cap]` (AWS "full jitter"): the best at spreading out
    /// clients that failed together.
    #[default]
    Full,
    /// `cap / 2` plus uniform in `[0, cap / 2]`: never less than half the cap.
    Equal,
}

/// Capped exponential backoff with jitter.
///
/// Durations deserialize from strings like `"50ms"` or `"2s"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Backoff {
    /// The cap of the first retry's delay. Default 50ms.
    #[serde(with = "humantime_serde")]
    pub initial: Duration,
    /// The largest delay. Default 2s.
    #[serde(with = "humantime_serde")]
    pub max: Duration,
    /// How much the cap grows per retry (`>= 1.0`). Default 2.0.
    pub multiplier: f64,
    /// How the delay is randomized below the cap. Default [`Jitter::Full`].
    pub jitter: Jitter,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(2),
            multiplier: 2.0,
            jitter: Jitter::Full,
        }
    }
}

impl Backoff {
    /// The delay cap before retry number `retry` (0 for the first retry):
    /// `min(max, initial * multiplier^retry)`, saturating at `max` for any
    /// `retry`, however large.
    pub fn cap(&self, retry: u32) -> Duration {
        if self.initial >= self.max {
            return self.max;
        }
        let exp = i32::try_from(retry).unwrap_or(i32::MAX);
        let secs = self.initial.as_secs_f64() * self.multiplier.powi(exp);
        if secs.is_nan() || secs >= self.max.as_secs_f64() {
            return self.max;
        }
        Duration::try_from_secs_f64(secs.max(0.0))
            .unwrap_or(self.max)
            .min(self.max)
    }

    /// The randomized delay before retry number `retry` (0 for the first
    /// retry), within `[0, cap(retry)]` as [`Backoff::jitter`] says.
    pub fn delay(&self, retry: u32) -> Duration {
        let cap = self.cap(retry);
        match self.jitter {
            Jitter::None => cap,
            Jitter::Full => Duration::from_nanos(fastrand::u64(0..=dur_nanos(cap))),
            Jitter::Equal => {
                let cap = dur_nanos(cap);
                let half = cap / 2;
                Duration::from_nanos(half + fastrand::u64(0..=cap - half))
            }
        }
    }

    /// Checks the fields; the error names the offending one.
    pub fn validate(&self) -> Result<(), Error> {
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            return Err(Error::Config(format!(
                "retry.backoff.multiplier must be a finite number >= 1.0, got {}",
                self.multiplier
            )));
        }
        if self.initial > self.max {
            return Err(Error::Config(format!(
                "retry.backoff.initial ({:?}) must not exceed retry.backoff.max ({:?})",
                self.initial, self.max
            )));
        }
        Ok(())
    }
}

/// When and how often a failed call is tried again.
///
/// Deserializes with every field optional; durations are strings like
/// `"30s"`, and `null` disables an optional limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in total, the first one included; 1 means no retry. Default 3.
    pub max_attempts: u32,
    /// The delay between attempts.
    pub backoff: Backoff,
    /// The time limit of each attempt; `None` for none. Default 30s.
    #[serde(with = "humantime_serde")]
    pub attempt_timeout: Option<Duration>,
    /// The time limit of the whole call, across attempts and backoff sleeps;
    /// `None` (the default) for none.
    #[serde(with = "humantime_serde")]
    pub deadline: Option<Duration>,
    /// The retry budget shared by the calls using this policy; `None`
    /// disables it. Default: [`BudgetConfig::default`].
    pub budget: Option<BudgetConfig>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            backoff: Backoff::default(),
            attempt_timeout: Some(Duration::from_secs(30)),
            deadline: None,
            budget: Some(BudgetConfig::default()),
        }
    }
}

impl RetryPolicy {
    /// A policy that makes a single attempt (the other fields keep their defaults).
    pub fn no_retry() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// Checks every field; the error names the offending one.
    pub fn validate(&self) -> Result<(), Error> {
        if self.max_attempts == 0 {
            return Err(Error::Config(
                "retry.max_attempts must be at least 1 (1 = no retry)".into(),
            ));
        }
        self.backoff.validate()?;
        if self.attempt_timeout.is_some_and(|d| d.is_zero()) {
            return Err(Error::Config(
                "retry.attempt_timeout must be greater than zero (or null for none)".into(),
            ));
        }
        if self.deadline.is_some_and(|d| d.is_zero()) {
            return Err(Error::Config(
                "retry.deadline must be greater than zero (or null for none)".into(),
            ));
        }
        if let Some(budget) = &self.budget {
            budget.validate()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

//! [`RetryBudget`]: retries limited to a share of recent successes plus a
//! small reserve, so an outage never turns into a retry storm; and its
//! [`BudgetConfig`].
//!
//! Like tower's `TpsBudget`: every success deposits a fraction of a retry,
//! every retry withdraws one, and a fixed reserve of `min_per_sec` retries
//! per second is always available.

use crate::core::clock::{dur_nanos, now_nanos};
use crate::error::Error;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Configuration of a [`RetryBudget`]; the defaults are tower's `TpsBudget`
/// defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetConfig {
    /// How long a deposit (and a withdrawal) counts, between 1s and 60s.
    /// Default 10s.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Retries per second allowed even without any success. Default 10.
    pub min_per_sec: u32,
    /// Retries allowed per success, between 0 and 1000 (0.2 = one retry for
    /// every five successes). Default 0.2.
    pub retry_ratio: f64,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            ttl: Duration::from_secs(10),
            min_per_sec: 10,
            retry_ratio: 0.2,
        }
    }
}

impl BudgetConfig {
    /// Checks the fields; the error names the offending one.
    pub fn validate(&self) -> Result<(), Error> {
        if self.ttl < Duration::from_secs(1) || self.ttl > Duration::from_secs(60) {
            return Err(Error::Config(format!(
                "retry.budget.ttl must be between 1s and 60s, got {:?}",
                self.ttl
            )));
        }
        if !(self.retry_ratio.is_finite() && (0.0..=1000.0).contains(&self.retry_ratio)) {
            return Err(Error::Config(format!(
                "retry.budget.retry_ratio must be between 0 and 1000, got {}",
                self.retry_ratio
            )));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The budget.
//
// Amounts are in thousandths of a retry: a withdrawal takes 1000, a deposit
// adds `retry_ratio * 1000`. Each slot is one `AtomicU64`: the high 32 bits
// are the slot's epoch (`now / slot length`, wrapping), the low 32 bits its
// balance as an `i32`. Packing both makes recycling a slot for a new epoch a
// single compare-and-swap.

const SLOTS: usize = 10;
const WITHDRAW: i64 = 1000;

fn pack(epoch: u32, value: i32) -> u64 {
    (u64::from(epoch) << 32) | u64::from(value as u32)
}

fn unpack(word: u64) -> (u32, i32) {
    ((word >> 32) as u32, word as u32 as i32)
}

/// A limit on retries relative to successes; see the [module
/// documentation](crate::core::retry).
///
/// Share one budget (in an `Arc`) among every call it should limit.
pub struct RetryBudget {
    slots: [AtomicU64; SLOTS],
    slot_nanos: u64,
    deposit_amount: i32,
    reserve: i64,
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("available", &self.available())
            .field("reserve", &(self.reserve as f64 / WITHDRAW as f64))
            .field(
                "per_deposit",
                &(f64::from(self.deposit_amount) / WITHDRAW as f64),
            )
            .finish()
    }
}

/// Whether a slot written at `tag` still counts at epoch `cur`. A slot
/// slightly ahead of `cur` (written by a caller with a later clock reading)
/// counts too.
fn slot_counts(cur: u32, tag: u32) -> bool {
    let age = cur.wrapping_sub(tag) as i32;
    age > -(SLOTS as i32) && age < SLOTS as i32
}

impl RetryBudget {
    /// An empty budget (only the `min_per_sec` reserve is available).
    ///
    /// The configuration should have passed [`BudgetConfig::validate`];
    /// out-of-range values are clamped rather than panicking.
    pub fn new(config: &BudgetConfig) -> Self {
        let ttl = config
            .ttl
            .clamp(Duration::from_secs(1), Duration::from_secs(60));
        let ratio = if config.retry_ratio.is_finite() {
            config.retry_ratio.clamp(0.0, 1000.0)
        } else {
            0.0
        };
        let reserve = f64::from(config.min_per_sec) * ttl.as_secs_f64() * WITHDRAW as f64;
        RetryBudget {
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
            slot_nanos: (dur_nanos(ttl) / SLOTS as u64).max(1),
            deposit_amount: (ratio * WITHDRAW as f64).round() as i32,
            // f64 -> i64 saturates; keep far from overflow when summing.
            reserve: (reserve as i64).min(i64::MAX / 4),
        }
    }

    fn epoch(&self, now: u64) -> (usize, u32) {
        let epoch = now / self.slot_nanos;
        ((epoch % SLOTS as u64) as usize, epoch as u32)
    }

    /// The reserve plus every slot still within the ttl, in thousandths.
    fn balance(&self, cur: u32) -> i64 {
        let mut sum = self.reserve;
        for slot in &self.slots {
            let (tag, value) = unpack(slot.load(Ordering::SeqCst));
            if slot_counts(cur, tag) {
                sum += i64::from(value);
            }
        }
        sum
    }

    /// Records a successful call, making `retry_ratio` more retries
    /// available for the next `ttl`.
    pub fn deposit(&self) {
        self.deposit_at(now_nanos());
    }

    /// [`RetryBudget::deposit`] with the current [`clock`](crate::core::clock)
    /// reading supplied by the caller (saves a clock read on hot paths).
    pub fn deposit_at(&self, now: u64) {
        if self.deposit_amount == 0 {
            return;
        }
        let (i, cur) = self.epoch(now);
        let slot = &self.slots[i];
        let mut word = slot.load(Ordering::SeqCst);
        loop {
            let (tag, value) = unpack(word);
            let next = if tag == cur {
                pack(tag, value.saturating_add(self.deposit_amount))
            } else {
                pack(cur, self.deposit_amount)
            };
            match slot.compare_exchange_weak(word, next, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return,
                Err(actual) => word = actual,
            }
        }
    }

    /// Takes one retry out of the budget; `false` (and nothing taken) when
    /// the budget is exhausted. Never lets concurrent callers take more than
    /// the budget holds.
    pub fn try_withdraw(&self) -> bool {
        self.try_withdraw_at(now_nanos())
    }

    /// [`RetryBudget::try_withdraw`] with the current clock reading supplied by the caller.
    pub fn try_withdraw_at(&self, now: u64) -> bool {
        let (i, cur) = self.epoch(now);
        if self.balance(cur) < WITHDRAW {
            return false;
        }
        // Take first, then check that the total is still not negative: the
        // last of several racing withdrawals sees all the others, so the
        // budget can be under-spent under contention but never overdrawn.
        let slot = &self.slots[i];
        let mut word = slot.load(Ordering::SeqCst);
        let taken_tag = loop {
            let (tag, value) = unpack(word);
            let base = if tag == cur { value } else { 0 };
            let Some(next_value) = base.checked_sub(WITHDRAW as i32) else {
                return false;
            };
            match slot.compare_exchange_weak(
                word,
                pack(cur, next_value),
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => break cur,
                Err(actual) => word = actual,
            }
        };
        if self.balance(cur) >= 0 {
            return true;
        }
        // Overdrawn by a race: give it back (unless the slot moved on, which
        // already forgot the withdrawal).
        let mut word = slot.load(Ordering::SeqCst);
        loop {
            let (tag, value) = unpack(word);
            if tag != taken_tag {
                return false;
            }
            let next = pack(tag, value.saturating_add(WITHDRAW as i32));
            match slot.compare_exchange_weak(word, next, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return false,
                Err(actual) => word = actual,
            }
        }
    }

    /// How many retries are available right now (possibly fractional).
    pub fn available(&self) -> f64 {
        let (_, cur) = self.epoch(now_nanos());
        self.balance(cur).max(0) as f64 / WITHDRAW as f64
    }
}

#[cfg(test)]
mod tests;

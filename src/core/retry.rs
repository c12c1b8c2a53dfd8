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

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::core::clock::{dur_nanos, now_nanos};
use crate::error::Error;

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
/// documentation](self).
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
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;
    use std::sync::atomic::AtomicUsize;
    use tokio::time::advance;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    /// Paused runtimes created before the clock's process-wide base was set
    /// would read as "1" until they advance past it; step well clear of it.
    async fn start() {
        advance(Duration::from_secs(1)).await;
    }

    fn backoff(jitter: Jitter) -> Backoff {
        Backoff {
            jitter,
            ..Backoff::default()
        }
    }

    #[test]
    fn backoff_cap_grows_then_clamps() {
        let b = backoff(Jitter::None);
        let caps: Vec<_> = (0..8).map(|r| b.cap(r)).collect();
        assert_eq!(
            caps,
            [
                MS(50),
                MS(100),
                MS(200),
                MS(400),
                MS(800),
                MS(1600),
                MS(2000),
                MS(2000)
            ]
        );
        assert_eq!(b.cap(1000), MS(2000));
        assert_eq!(b.cap(u32::MAX), MS(2000));
        assert_eq!(b.delay(3), MS(400));
        let flat = Backoff {
            multiplier: 1.0,
            ..b.clone()
        };
        assert_eq!(flat.cap(1000), MS(50));
        let huge = Backoff {
            initial: Duration::from_secs(u64::MAX / 4),
            max: Duration::MAX,
            multiplier: 1000.0,
            jitter: Jitter::Full,
        };
        assert_eq!(huge.cap(1000), Duration::MAX);
        assert!(huge.delay(1000) <= Duration::MAX);
    }

    #[test]
    fn full_jitter_stays_within_cap_and_varies() {
        let b = backoff(Jitter::Full);
        let delays: Vec<_> = (0..1000).map(|_| b.delay(2)).collect();
        assert!(delays.iter().all(|d| *d <= MS(200)));
        assert!(delays.iter().collect::<HashSet<_>>().len() > 100);
        assert!(delays.iter().any(|d| *d < MS(100)));
    }

    #[test]
    fn equal_jitter_stays_between_half_and_cap() {
        let b = backoff(Jitter::Equal);
        let delays: Vec<_> = (0..1000).map(|_| b.delay(10)).collect();
        assert!(delays.iter().all(|d| (MS(1000)..=MS(2000)).contains(d)));
        assert!(delays.iter().collect::<HashSet<_>>().len() > 100);
    }

    proptest! {
        #[test]
        fn jitter_bounds(
            initial_ms in 0u64..10_000,
            extra_ms in 0u64..100_000,
            multiplier in 1.0f64..20.0,
            retry in 0u32..5_000,
            jitter in prop_oneof![Just(Jitter::None), Just(Jitter::Full), Just(Jitter::Equal)],
        ) {
            let b = Backoff {
                initial: MS(initial_ms),
                max: MS(initial_ms + extra_ms),
                multiplier,
                jitter,
            };
            b.validate().unwrap();
            let cap = b.cap(retry);
            prop_assert!(cap <= b.max);
            prop_assert!(cap >= b.initial.min(b.max));
            prop_assert!(b.cap(retry.saturating_add(1)) >= cap);
            let d = b.delay(retry);
            prop_assert!(d <= cap);
            match jitter {
                Jitter::None => prop_assert_eq!(d, cap),
                Jitter::Equal => prop_assert!(d >= cap / 2),
                Jitter::Full => {}
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn budget_without_deposits_allows_the_reserve_only() {
        start().await;
        let budget = RetryBudget::new(&BudgetConfig::default());
        assert_eq!(budget.available(), 100.0);
        for i in 0..100 {
            assert!(budget.try_withdraw(), "withdrawal {i}");
        }
        assert!(!budget.try_withdraw());
        assert!(!budget.try_withdraw());
        assert_eq!(budget.available(), 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_allow_ratio_more() {
        start().await;
        let budget = RetryBudget::new(&BudgetConfig {
            ttl: Duration::from_secs(10),
            min_per_sec: 1,
            retry_ratio: 0.2,
        });
        for _ in 0..50 {
            budget.deposit();
        }
        // 10 from the reserve, 50 * 0.2 from the deposits.
        assert!((budget.available() - 20.0).abs() < 1e-9);
        let taken = (0..100).take_while(|_| budget.try_withdraw()).count();
        assert_eq!(taken, 20);
        // Deposits spread over the ttl add up too.
        for _ in 0..5 {
            advance(Duration::from_secs(1)).await;
            for _ in 0..10 {
                budget.deposit();
            }
        }
        assert_eq!((0..100).take_while(|_| budget.try_withdraw()).count(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn ratio_above_one_and_zero() {
        start().await;
        let generous = RetryBudget::new(&BudgetConfig {
            ttl: Duration::from_secs(1),
            min_per_sec: 0,
            retry_ratio: 2.5,
        });
        assert!(!generous.try_withdraw());
        generous.deposit();
        generous.deposit();
        assert_eq!((0..10).take_while(|_| generous.try_withdraw()).count(), 5);

        let stingy = RetryBudget::new(&BudgetConfig {
            ttl: Duration::from_secs(1),
            min_per_sec: 2,
            retry_ratio: 0.0,
        });
        for _ in 0..100 {
            stingy.deposit();
        }
        assert_eq!((0..10).take_while(|_| stingy.try_withdraw()).count(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn budget_refills_after_ttl() {
        start().await;
        let config = BudgetConfig {
            ttl: Duration::from_secs(10),
            min_per_sec: 1,
            retry_ratio: 0.5,
        };
        let budget = RetryBudget::new(&config);
        for _ in 0..10 {
            budget.deposit();
        }
        assert_eq!((0..100).take_while(|_| budget.try_withdraw()).count(), 15);
        // Withdrawals are still remembered just before the ttl passes...
        advance(Duration::from_millis(8_900)).await;
        assert!(!budget.try_withdraw());
        // ...and forgotten (with the deposits) once it has.
        advance(Duration::from_millis(1_100)).await;
        assert_eq!(budget.available(), 10.0);
        assert_eq!((0..100).take_while(|_| budget.try_withdraw()).count(), 10);
        advance(Duration::from_secs(10)).await;
        assert_eq!(budget.available(), 10.0);
        // Many ttls later (every slot recycled many times) it still adds up.
        for _ in 0..100 {
            advance(Duration::from_millis(700)).await;
            budget.deposit();
        }
        // The reserve plus the deposits of the last 9 to 10 seconds (13 to 15
        // of them, one every 0.7s), never anything older.
        let available = budget.available();
        assert!((16.5..=17.5).contains(&available), "{available}");
    }

    #[test]
    fn concurrent_withdrawals_never_exceed_the_budget() {
        for _ in 0..20 {
            let budget = RetryBudget::new(&BudgetConfig {
                ttl: Duration::from_secs(60),
                min_per_sec: 1,
                retry_ratio: 0.1,
            });
            let granted = AtomicUsize::new(0);
            let deposits = AtomicUsize::new(0);
            std::thread::scope(|s| {
                for t in 0..8 {
                    let (budget, granted, deposits) = (&budget, &granted, &deposits);
                    s.spawn(move || {
                        for i in 0..2_000 {
                            if t % 2 == 0 && i % 4 == 0 {
                                budget.deposit();
                                deposits.fetch_add(1, Ordering::SeqCst);
                            }
                            if budget.try_withdraw() {
                                granted.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    });
                }
            });
            let deposits = deposits.load(Ordering::SeqCst);
            let limit = 60 + deposits / 10;
            let granted = granted.load(Ordering::SeqCst);
            assert!(granted <= limit, "granted {granted} > limit {limit}");
            // Contention may leave a little unspent, never much.
            assert!(granted + 8 >= limit, "granted {granted}, limit {limit}");
            assert!(budget.available() < 1.0 + 8.0);
        }
    }

    #[test]
    fn slot_packing_round_trips() {
        for (e, v) in [(0, 0), (u32::MAX, i32::MIN), (7, -1000), (123, i32::MAX)] {
            assert_eq!(unpack(pack(e, v)), (e, v));
        }
        assert!(slot_counts(5, 0));
        assert!(!slot_counts(10, 0));
        assert!(slot_counts(3, u32::MAX - 2)); // across the wrap
        assert!(slot_counts(0, 2)); // slightly ahead
        assert!(!slot_counts(0x9000_0000, 0));
    }

    #[test]
    fn validate_rejects_bad_policies() {
        RetryPolicy::default().validate().unwrap();
        RetryPolicy::no_retry().validate().unwrap();
        assert_eq!(RetryPolicy::no_retry().max_attempts, 1);
        type Tweak = fn(&mut RetryPolicy);
        let cases: &[(&str, Tweak)] = &[
            ("max_attempts", |p| p.max_attempts = 0),
            ("multiplier", |p| p.backoff.multiplier = 0.5),
            ("multiplier", |p| p.backoff.multiplier = f64::NAN),
            ("multiplier", |p| p.backoff.multiplier = f64::INFINITY),
            ("backoff.initial", |p| p.backoff.initial = MS(5_000)),
            ("attempt_timeout", |p| {
                p.attempt_timeout = Some(Duration::ZERO)
            }),
            ("deadline", |p| p.deadline = Some(Duration::ZERO)),
            ("retry_ratio", |p| {
                p.budget.as_mut().unwrap().retry_ratio = -0.1
            }),
            ("retry_ratio", |p| {
                p.budget.as_mut().unwrap().retry_ratio = 1000.5
            }),
            ("retry_ratio", |p| {
                p.budget.as_mut().unwrap().retry_ratio = f64::NAN
            }),
            ("ttl", |p| p.budget.as_mut().unwrap().ttl = MS(500)),
            ("ttl", |p| {
                p.budget.as_mut().unwrap().ttl = Duration::from_secs(61)
            }),
        ];
        for (field, tweak) in cases {
            let mut p = RetryPolicy::default();
            tweak(&mut p);
            let err = p.validate().expect_err(field);
            assert_eq!(err.code(), crate::error::ErrorCode::Config);
            assert!(err.to_string().contains(field), "{field}: {err}");
        }
        let mut p = RetryPolicy::default();
        p.budget.as_mut().unwrap().retry_ratio = 1000.0;
        p.budget.as_mut().unwrap().min_per_sec = 0;
        p.attempt_timeout = None;
        p.validate().unwrap();
    }

    #[test]
    fn policy_yaml_round_trip() {
        let yaml = "
max_attempts: 5
backoff:
  initial: 50ms
  max: 2s
  multiplier: 1.5
  jitter: equal
attempt_timeout: null
deadline: 1m 30s
budget:
  ttl: 10s
  min_per_sec: 20
  retry_ratio: 0.1
";
        let p: RetryPolicy = serde_yaml_ng::from_str(yaml).unwrap();
        assert_eq!(
            p,
            RetryPolicy {
                max_attempts: 5,
                backoff: Backoff {
                    initial: MS(50),
                    max: Duration::from_secs(2),
                    multiplier: 1.5,
                    jitter: Jitter::Equal,
                },
                attempt_timeout: None,
                deadline: Some(Duration::from_secs(90)),
                budget: Some(BudgetConfig {
                    ttl: Duration::from_secs(10),
                    min_per_sec: 20,
                    retry_ratio: 0.1,
                }),
            }
        );
        p.validate().unwrap();
        let text = serde_yaml_ng::to_string(&p).unwrap();
        assert!(text.contains("50ms") && text.contains("2s"), "{text}");
        let back: RetryPolicy = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(back, p);

        // Everything optional; omitted fields take the defaults.
        let d: RetryPolicy = serde_yaml_ng::from_str("max_attempts: 2").unwrap();
        assert_eq!(d.backoff, Backoff::default());
        assert_eq!(d.attempt_timeout, Some(Duration::from_secs(30)));
        assert_eq!(d.budget, Some(BudgetConfig::default()));
        let none: RetryPolicy = serde_yaml_ng::from_str("budget: null").unwrap();
        assert_eq!(none.budget, None);
        assert!(serde_yaml_ng::from_str::<RetryPolicy>("max_attempt: 2").is_err());
        assert!(serde_yaml_ng::from_str::<RetryPolicy>("deadline: soon").is_err());

        let i: Idempotency = serde_yaml_ng::from_str("idempotent").unwrap();
        assert!(i.is_idempotent());
        assert!(!Idempotency::default().is_idempotent());
    }
}

//! A per-endpoint circuit breaker with resilience4j semantics.
//!
//! A [`CircuitBreaker`] is [`BreakerState::Closed`] while an endpoint behaves,
//! trips to [`BreakerState::Open`] when too many calls in its sliding window
//! fail (or are slow), or when too many fail in a row, rejects calls while
//! open, and after [`BreakerConfig::open_duration`] lets a few probe calls
//! through ([`BreakerState::HalfOpen`]): any failed probe opens it again, and
//! [`BreakerConfig::half_open_max_calls`] successful probes close it.
//!
//! Every call goes through a [`BreakerPermit`] obtained with
//! [`CircuitBreaker::try_acquire`] and finished with
//! [`BreakerPermit::record`]. A permit dropped without being recorded (the
//! caller's future was cancelled) frees its half-open probe slot and records
//! nothing.
//!
//! The hot path (acquiring a permit, recording an outcome) takes no lock and
//! does not allocate: the state is one packed atomic word changed by
//! compare-and-swap, so every transition happens (and is reported) exactly
//! once; the sliding windows are arrays of atomics.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::core::clock::{dur_nanos, now_nanos};
use crate::error::Error;

/// Largest accepted [`SlidingWindow::Count::size`].
const MAX_COUNT_WINDOW: u32 = 100_000;
/// Largest accepted [`SlidingWindow::Time::buckets`].
const MAX_TIME_BUCKETS: u32 = 1_000;
/// Largest accepted [`BreakerConfig::half_open_max_calls`].
const MAX_HALF_OPEN_CALLS: u32 = 10_000;

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

/// Configuration of a [`CircuitBreaker`].
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

/// The state of a [`CircuitBreaker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls flow; outcomes are recorded into the sliding window.
    Closed,
    /// Calls are rejected until the open duration has elapsed.
    Open,
    /// A limited number of probe calls decide whether to close or reopen.
    HalfOpen,
}

impl BreakerState {
    /// Lowercase `snake_case` name (`"closed"`, `"open"`, `"half_open"`), for labels and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    const fn to_bits(self) -> u64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }

    const fn from_bits(bits: u64) -> Self {
        match bits & STATE_MASK {
            1 => BreakerState::Open,
            2 => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a call ended, from the breaker's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallOutcome {
    /// The call succeeded.
    Success,
    /// The call failed in a way that says something about the endpoint
    /// (a failover-class error, a timeout).
    Failure,
    /// The application's own error: neither a success nor a failure for the
    /// breaker (it is not counted at all).
    Ignored,
}

/// A change of [`BreakerState`]; each one is reported by exactly one caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Transition {
    /// The state before.
    pub from: BreakerState,
    /// The state after.
    pub to: BreakerState,
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", self.from, self.to)
    }
}

/// A call refused by an open (or fully probed half-open) breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BreakerRejected {
    /// How long until the breaker lets a probe through. Zero when it is
    /// half-open and every probe slot is taken: a slot frees as soon as a
    /// probe finishes.
    pub retry_after: Duration,
}

impl fmt::Display for BreakerRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "circuit breaker open, retry after {:?}",
            self.retry_after
        )
    }
}

impl std::error::Error for BreakerRejected {}

// ---------------------------------------------------------------------------
// The packed state word.
//
// bits  0..2   state (0 closed, 1 open, 2 half-open)
// bits  2..18  half-open probes in flight
// bits 18..34  successful half-open probes
// bits 34..64  generation, bumped by every transition (wrapping)

const STATE_MASK: u64 = 0b11;
const INFLIGHT_SHIFT: u32 = 2;
const SUCCESS_SHIFT: u32 = 18;
const GEN_SHIFT: u32 = 34;
const FIELD16: u64 = 0xFFFF;
const GEN_MASK: u64 = (1 << 30) - 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Word {
    state: BreakerState,
    inflight: u32,
    successes: u32,
    generation: u32,
}

impl Word {
    const fn unpack(bits: u64) -> Self {
        Word {
            state: BreakerState::from_bits(bits),
            inflight: ((bits >> INFLIGHT_SHIFT) & FIELD16) as u32,
            successes: ((bits >> SUCCESS_SHIFT) & FIELD16) as u32,
            generation: ((bits >> GEN_SHIFT) & GEN_MASK) as u32,
        }
    }

    const fn pack(self) -> u64 {
        self.state.to_bits()
            | ((self.inflight as u64 & FIELD16) << INFLIGHT_SHIFT)
            | ((self.successes as u64 & FIELD16) << SUCCESS_SHIFT)
            | ((self.generation as u64 & GEN_MASK) << GEN_SHIFT)
    }

    /// The first word of a new state (a new generation, no probes).
    const fn next(self, state: BreakerState, inflight: u32) -> Self {
        Word {
            state,
            inflight,
            successes: 0,
            generation: (self.generation.wrapping_add(1)) & GEN_MASK as u32,
        }
    }
}

// ---------------------------------------------------------------------------
// Sliding windows.

/// Calls, failures and slow calls currently in a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    total: u64,
    failures: u64,
    slow: u64,
}

// Count window: one byte per slot, plus the three totals packed in one word
// (21 bits each, biased so that a transiently negative total cannot borrow
// from its neighbour).
const SLOT_PRESENT: u8 = 1;
const SLOT_FAILURE: u8 = 2;
const SLOT_SLOW: u8 = 4;
const AGG_BITS: u32 = 21;
const AGG_MASK: u64 = (1 << AGG_BITS) - 1;
const AGG_BIAS: u64 = 1 << 20;
const AGG_INIT: u64 = AGG_BIAS | (AGG_BIAS << AGG_BITS) | (AGG_BIAS << (2 * AGG_BITS));

struct CountWindow {
    slots: Box<[AtomicU8]>,
    cursor: AtomicU64,
    agg: AtomicU64,
}

impl CountWindow {
    fn new(size: u32) -> Self {
        let size = size.clamp(1, MAX_COUNT_WINDOW) as usize;
        CountWindow {
            slots: (0..size).map(|_| AtomicU8::new(0)).collect(),
            cursor: AtomicU64::new(0),
            agg: AtomicU64::new(AGG_INIT),
        }
    }

    fn record(&self, failure: bool, slow: bool) {
        let mut new = SLOT_PRESENT;
        if failure {
            new |= SLOT_FAILURE;
        }
        if slow {
            new |= SLOT_SLOW;
        }
        let i = (self.cursor.fetch_add(1, Ordering::Relaxed) % self.slots.len() as u64) as usize;
        let old = self.slots[i].swap(new, Ordering::AcqRel);
        self.apply(old, new);
    }

    fn apply(&self, old: u8, new: u8) {
        if old == new {
            return;
        }
        let d = |bit: u8| i64::from(new & bit != 0) - i64::from(old & bit != 0);
        let delta =
            d(SLOT_PRESENT) + (d(SLOT_FAILURE) << AGG_BITS) + (d(SLOT_SLOW) << (2 * AGG_BITS));
        // Two's complement: adding the wrapped delta adds each field's delta,
        // and the bias keeps every field within its 21 bits.
        self.agg.fetch_add(delta as u64, Ordering::AcqRel);
    }

    fn counts(&self) -> Counts {
        let w = self.agg.load(Ordering::Acquire);
        let field = |i: u32| ((w >> (i * AGG_BITS)) & AGG_MASK).saturating_sub(AGG_BIAS);
        Counts {
            total: field(0),
            failures: field(1),
            slow: field(2),
        }
    }

    fn clear(&self) {
        for slot in self.slots.iter() {
            let old = slot.swap(0, Ordering::AcqRel);
            self.apply(old, 0);
        }
    }
}

// Time window: per bucket, its epoch (`now / bucket + 1`, 0 = empty) and its
// counts packed with the low bits of the epoch they belong to, so a bucket
// being recycled for a new epoch is never mistaken for the old one.
const TB_FIELD_BITS: u32 = 18;
const TB_FIELD_MAX: u64 = (1 << TB_FIELD_BITS) - 1;
const TB_TAG_SHIFT: u32 = 54;
const TB_TAG_MASK: u64 = (1 << 10) - 1;

struct Bucket {
    epoch: AtomicU64,
    counts: AtomicU64,
}

struct TimeWindow {
    bucket_nanos: u64,
    buckets: Box<[Bucket]>,
}

impl TimeWindow {
    fn new(duration: Duration, buckets: u32) -> Self {
        let n = buckets.clamp(1, MAX_TIME_BUCKETS);
        TimeWindow {
            bucket_nanos: (dur_nanos(duration) / u64::from(n)).max(1),
            buckets: (0..n)
                .map(|_| Bucket {
                    epoch: AtomicU64::new(0),
                    counts: AtomicU64::new(0),
                })
                .collect(),
        }
    }

    fn epoch_of(&self, now: u64) -> u64 {
        now / self.bucket_nanos + 1
    }

    fn tag(epoch: u64) -> u64 {
        epoch & TB_TAG_MASK
    }

    fn record(&self, now: u64, failure: bool, slow: bool) {
        let cur = self.epoch_of(now);
        let bucket = &self.buckets[(cur % self.buckets.len() as u64) as usize];
        let prev = bucket.epoch.fetch_max(cur, Ordering::AcqRel);
        if prev > cur {
            // Our clock reading is older than the bucket's: the sample already
            // fell out of the window.
            return;
        }
        let tag = Self::tag(cur);
        let inc =
            1 | (u64::from(failure) << TB_FIELD_BITS) | (u64::from(slow) << (2 * TB_FIELD_BITS));
        // The counts belong to `cur` if their tag says so, unless we are the
        // one moving the bucket to `cur` from an epoch with the same tag.
        let recycled_alias = prev != cur && prev != 0 && Self::tag(prev) == tag;
        let mut c = bucket.counts.load(Ordering::Acquire);
        loop {
            let current = (c >> TB_TAG_SHIFT) == tag && !recycled_alias;
            let next = if current {
                if c & TB_FIELD_MAX == TB_FIELD_MAX {
                    return; // saturated: the rates stay what they are
                }
                c + inc
            } else {
                if bucket.epoch.load(Ordering::Acquire) != cur {
                    return;
                }
                (tag << TB_TAG_SHIFT) | inc
            };
            match bucket
                .counts
                .compare_exchange_weak(c, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(actual) => c = actual,
            }
        }
    }

    fn counts(&self, now: u64) -> Counts {
        let cur = self.epoch_of(now);
        let n = self.buckets.len() as u64;
        let mut sum = Counts::default();
        for bucket in self.buckets.iter() {
            let e = bucket.epoch.load(Ordering::Acquire);
            if e == 0 || e > cur || cur - e >= n {
                continue;
            }
            let c = bucket.counts.load(Ordering::Acquire);
            if c >> TB_TAG_SHIFT != Self::tag(e) {
                continue;
            }
            sum.total += c & TB_FIELD_MAX;
            sum.failures += (c >> TB_FIELD_BITS) & TB_FIELD_MAX;
            sum.slow += (c >> (2 * TB_FIELD_BITS)) & TB_FIELD_MAX;
        }
        sum
    }

    fn clear(&self) {
        for bucket in self.buckets.iter() {
            bucket.counts.store(0, Ordering::Release);
            bucket.epoch.store(0, Ordering::Release);
        }
    }
}

enum Window {
    Count(CountWindow),
    Time(TimeWindow),
}

impl Window {
    fn new(config: &SlidingWindow) -> Self {
        match *config {
            SlidingWindow::Count { size } => Window::Count(CountWindow::new(size)),
            SlidingWindow::Time { duration, buckets } => {
                Window::Time(TimeWindow::new(duration, buckets))
            }
        }
    }

    fn record(&self, now: u64, failure: bool, slow: bool) {
        match self {
            Window::Count(w) => w.record(failure, slow),
            Window::Time(w) => w.record(now, failure, slow),
        }
    }

    fn counts(&self, now: u64) -> Counts {
        match self {
            Window::Count(w) => w.counts(),
            Window::Time(w) => w.counts(now),
        }
    }

    fn clear(&self) {
        match self {
            Window::Count(w) => w.clear(),
            Window::Time(w) => w.clear(),
        }
    }
}

// ---------------------------------------------------------------------------
// The breaker.

/// A per-endpoint circuit breaker; see the [module documentation](self).
///
/// Cheap to query, lock-free to use, `Send + Sync`; share it by reference or
/// inside an `Arc`.
pub struct CircuitBreaker {
    config: Arc<BreakerConfig>,
    word: AtomicU64,
    /// When the current (or next) open period ends, in clock nanoseconds.
    /// Only ever raised (`fetch_max`) before the state becomes open, so a
    /// caller that sees `Open` also sees its deadline.
    open_until: AtomicU64,
    consecutive_failures: AtomicU32,
    window: Window,
    open_nanos: u64,
    slow_nanos: u64,
    min_calls: u64,
    half_open_max: u32,
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = Word::unpack(self.word.load(Ordering::Acquire));
        f.debug_struct("CircuitBreaker")
            .field("enabled", &self.config.enabled)
            .field("state", &word.state)
            .field("half_open_in_flight", &word.inflight)
            .field("half_open_successes", &word.successes)
            .field(
                "consecutive_failures",
                &self.consecutive_failures.load(Ordering::Relaxed),
            )
            .field("window", &self.config.window)
            .finish_non_exhaustive()
    }
}

impl CircuitBreaker {
    /// A closed breaker with an empty window.
    ///
    /// The configuration should have passed [`BreakerConfig::validate`];
    /// out-of-range sizes are clamped rather than panicking.
    pub fn new(config: Arc<BreakerConfig>) -> Self {
        let window = Window::new(&config.window);
        let min_calls = match config.window {
            // resilience4j: a count window never needs more calls than it holds.
            SlidingWindow::Count { size } => config.minimum_calls.min(size.max(1)),
            SlidingWindow::Time { .. } => config.minimum_calls,
        };
        CircuitBreaker {
            open_nanos: dur_nanos(config.open_duration),
            slow_nanos: dur_nanos(config.slow_call_duration),
            min_calls: u64::from(min_calls.max(1)),
            half_open_max: config.half_open_max_calls.clamp(1, MAX_HALF_OPEN_CALLS),
            word: AtomicU64::new(
                Word {
                    state: BreakerState::Closed,
                    inflight: 0,
                    successes: 0,
                    generation: 0,
                }
                .pack(),
            ),
            open_until: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            window,
            config,
        }
    }

    /// The configuration the breaker was built with.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    fn load(&self) -> Word {
        Word::unpack(self.word.load(Ordering::Acquire))
    }

    fn cas(&self, current: Word, new: Word) -> Result<(), Word> {
        self.word
            .compare_exchange(
                current.pack(),
                new.pack(),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .map(|_| ())
            .map_err(Word::unpack)
    }

    /// The current state. An open breaker whose open duration has elapsed
    /// still reports [`BreakerState::Open`] until a call takes a probe
    /// permit. A disabled breaker is always [`BreakerState::Closed`].
    pub fn state(&self) -> BreakerState {
        if !self.config.enabled {
            return BreakerState::Closed;
        }
        self.load().state
    }

    /// Whether [`try_acquire`](Self::try_acquire) would currently succeed,
    /// without changing anything: closed, half-open with a free probe slot,
    /// or open with its open duration elapsed. Always `true` when disabled.
    pub fn is_call_permitted(&self, now: u64) -> bool {
        if !self.config.enabled {
            return true;
        }
        let word = self.load();
        match word.state {
            BreakerState::Closed => true,
            BreakerState::Open => now >= self.open_until.load(Ordering::Acquire),
            BreakerState::HalfOpen => word.inflight < self.half_open_max,
        }
    }

    /// Asks to make a call at clock time `now` (see [`crate::core::clock`]).
    ///
    /// Closed: always granted. Open: rejected until the open duration has
    /// elapsed, then the breaker turns half-open and this call is its first
    /// probe (the permit's [`transition`](BreakerPermit::transition) says
    /// so). Half-open: granted while fewer than
    /// [`BreakerConfig::half_open_max_calls`] probes are in flight.
    pub fn try_acquire(&self, now: u64) -> Result<BreakerPermit<'_>, BreakerRejected> {
        if !self.config.enabled {
            return Ok(BreakerPermit::new(self, PermitKind::Disabled, None));
        }
        let mut word = self.load();
        loop {
            match word.state {
                BreakerState::Closed => {
                    return Ok(BreakerPermit::new(
                        self,
                        PermitKind::Closed(word.generation),
                        None,
                    ));
                }
                BreakerState::Open => {
                    let until = self.open_until.load(Ordering::Acquire);
                    if now < until {
                        return Err(BreakerRejected {
                            retry_after: Duration::from_nanos(until - now),
                        });
                    }
                    let next = word.next(BreakerState::HalfOpen, 1);
                    match self.cas(word, next) {
                        Ok(()) => {
                            return Ok(BreakerPermit::new(
                                self,
                                PermitKind::HalfOpen(next.generation),
                                Some(Transition {
                                    from: BreakerState::Open,
                                    to: BreakerState::HalfOpen,
                                }),
                            ));
                        }
                        Err(actual) => word = actual,
                    }
                }
                BreakerState::HalfOpen => {
                    if word.inflight >= self.half_open_max {
                        return Err(BreakerRejected {
                            retry_after: Duration::ZERO,
                        });
                    }
                    let next = Word {
                        inflight: word.inflight + 1,
                        ..word
                    };
                    match self.cas(word, next) {
                        Ok(()) => {
                            return Ok(BreakerPermit::new(
                                self,
                                PermitKind::HalfOpen(word.generation),
                                None,
                            ));
                        }
                        Err(actual) => word = actual,
                    }
                }
            }
        }
    }

    /// Opens the breaker now (e.g. a health check failed, or an operator
    /// asked), for a fresh open duration. Returns the transition, or `None`
    /// when it was already open (its open period is extended) or the breaker
    /// is disabled.
    pub fn force_open(&self, now: u64) -> Option<Transition> {
        if !self.config.enabled {
            return None;
        }
        self.open_until
            .fetch_max(now.saturating_add(self.open_nanos), Ordering::AcqRel);
        let mut word = self.load();
        loop {
            if word.state == BreakerState::Open {
                return None;
            }
            match self.cas(word, word.next(BreakerState::Open, 0)) {
                Ok(()) => {
                    self.consecutive_failures.store(0, Ordering::Release);
                    return Some(Transition {
                        from: word.state,
                        to: BreakerState::Open,
                    });
                }
                Err(actual) => word = actual,
            }
        }
    }

    /// Closes the breaker and clears its window and failure streak. Returns
    /// the transition, or `None` when it was already closed. Permits taken
    /// before the reset record nothing.
    pub fn reset(&self) -> Option<Transition> {
        self.window.clear();
        self.consecutive_failures.store(0, Ordering::Release);
        let mut word = self.load();
        loop {
            let next = word.next(BreakerState::Closed, 0);
            match self.cas(word, next) {
                Ok(()) if word.state == BreakerState::Closed => return None,
                Ok(()) => {
                    return Some(Transition {
                        from: word.state,
                        to: BreakerState::Closed,
                    });
                }
                Err(actual) => word = actual,
            }
        }
    }

    /// The failure rate (`0.0..=1.0`) of the calls in the window, or `None`
    /// while the window holds fewer than the minimum number of calls.
    pub fn failure_rate(&self) -> Option<f64> {
        let c = self.window.counts(now_nanos());
        (c.total >= self.min_calls && c.total > 0).then(|| c.failures as f64 / c.total as f64)
    }

    /// The slow-call rate (`0.0..=1.0`) of the calls in the window, or `None`
    /// while the window holds fewer than the minimum number of calls.
    pub fn slow_call_rate(&self) -> Option<f64> {
        let c = self.window.counts(now_nanos());
        (c.total >= self.min_calls && c.total > 0).then(|| c.slow as f64 / c.total as f64)
    }

    /// Trips `word` (closed or half-open) to open; `None` if another caller
    /// changed the state first.
    fn trip(&self, mut word: Word, generation: u32, now: u64) -> Option<Transition> {
        self.open_until
            .fetch_max(now.saturating_add(self.open_nanos), Ordering::AcqRel);
        loop {
            if word.generation != generation || word.state == BreakerState::Open {
                return None;
            }
            match self.cas(word, word.next(BreakerState::Open, 0)) {
                Ok(()) => {
                    self.consecutive_failures.store(0, Ordering::Release);
                    return Some(Transition {
                        from: word.state,
                        to: BreakerState::Open,
                    });
                }
                Err(actual) => word = actual,
            }
        }
    }

    fn record_closed(
        &self,
        generation: u32,
        outcome: CallOutcome,
        duration: Duration,
        now: u64,
    ) -> Option<Transition> {
        let failure = match outcome {
            CallOutcome::Ignored => return None,
            CallOutcome::Success => false,
            CallOutcome::Failure => true,
        };
        let word = self.load();
        if word.state != BreakerState::Closed || word.generation != generation {
            // The call started in an earlier closed period: it says nothing
            // about the current one.
            return None;
        }
        let slow = dur_nanos(duration) > self.slow_nanos;
        self.window.record(now, failure, slow);
        let streak_tripped = if failure {
            let streak = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
            self.config
                .consecutive_failures
                .is_some_and(|n| streak >= n)
        } else {
            self.consecutive_failures.store(0, Ordering::Release);
            false
        };
        let rate_tripped = || {
            let c = self.window.counts(now);
            c.total >= self.min_calls
                && c.total > 0
                && (c.failures as f64 / c.total as f64 >= self.config.failure_rate_threshold
                    || c.slow as f64 / c.total as f64 >= self.config.slow_call_rate_threshold)
        };
        if streak_tripped || rate_tripped() {
            self.trip(word, generation, now)
        } else {
            None
        }
    }

    fn record_half_open(
        &self,
        generation: u32,
        outcome: CallOutcome,
        duration: Duration,
        now: u64,
    ) -> Option<Transition> {
        let mut word = self.load();
        loop {
            if word.state != BreakerState::HalfOpen || word.generation != generation {
                return None;
            }
            let inflight = word.inflight.saturating_sub(1);
            let next = match outcome {
                CallOutcome::Ignored => Word { inflight, ..word },
                // A slow probe is a failed probe: the endpoint is not back yet.
                CallOutcome::Failure => return self.trip(word, generation, now),
                CallOutcome::Success if dur_nanos(duration) > self.slow_nanos => {
                    return self.trip(word, generation, now);
                }
                CallOutcome::Success if word.successes + 1 >= self.half_open_max => {
                    // Nobody writes the window while half-open: clear it
                    // before closing so the closed period starts fresh.
                    self.window.clear();
                    self.consecutive_failures.store(0, Ordering::Release);
                    let next = word.next(BreakerState::Closed, 0);
                    match self.cas(word, next) {
                        Ok(()) => {
                            return Some(Transition {
                                from: BreakerState::HalfOpen,
                                to: BreakerState::Closed,
                            });
                        }
                        Err(actual) => {
                            word = actual;
                            continue;
                        }
                    }
                }
                CallOutcome::Success => Word {
                    inflight,
                    successes: word.successes + 1,
                    ..word
                },
            };
            match self.cas(word, next) {
                Ok(()) => return None,
                Err(actual) => word = actual,
            }
        }
    }

    /// Frees a half-open probe slot taken by a permit that was never recorded.
    fn release_probe(&self, generation: u32) {
        let mut word = self.load();
        while word.state == BreakerState::HalfOpen && word.generation == generation {
            let next = Word {
                inflight: word.inflight.saturating_sub(1),
                ..word
            };
            match self.cas(word, next) {
                Ok(()) => return,
                Err(actual) => word = actual,
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PermitKind {
    Disabled,
    Closed(u32),
    HalfOpen(u32),
}

/// Permission to make one call, from [`CircuitBreaker::try_acquire`].
///
/// Finish it with [`record`](Self::record). Dropping it unrecorded (for
/// instance because the future holding it was cancelled) frees its
/// half-open probe slot and records nothing.
#[must_use = "record the call's outcome with `BreakerPermit::record`"]
pub struct BreakerPermit<'a> {
    breaker: &'a CircuitBreaker,
    kind: PermitKind,
    transition: Option<Transition>,
    armed: bool,
}

impl fmt::Debug for BreakerPermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (state, generation) = match self.kind {
            PermitKind::Disabled => ("disabled", None),
            PermitKind::Closed(g) => ("closed", Some(g)),
            PermitKind::HalfOpen(g) => ("half_open", Some(g)),
        };
        f.debug_struct("BreakerPermit")
            .field("acquired_in", &state)
            .field("generation", &generation)
            .field("transition", &self.transition)
            .finish()
    }
}

impl<'a> BreakerPermit<'a> {
    fn new(breaker: &'a CircuitBreaker, kind: PermitKind, transition: Option<Transition>) -> Self {
        BreakerPermit {
            breaker,
            kind,
            transition,
            armed: true,
        }
    }
}

impl BreakerPermit<'_> {
    /// The transition acquiring this permit caused (open -> half-open), if any.
    pub fn transition(&self) -> Option<Transition> {
        self.transition
    }

    /// Whether this permit is a half-open probe.
    pub fn is_probe(&self) -> bool {
        matches!(self.kind, PermitKind::HalfOpen(_))
    }

    /// Records how the call ended: its outcome, how long it took and the
    /// clock time now. Returns the transition this outcome caused, if any
    /// (reported to exactly one caller).
    pub fn record(
        mut self,
        outcome: CallOutcome,
        duration: Duration,
        now: u64,
    ) -> Option<Transition> {
        self.armed = false;
        match self.kind {
            PermitKind::Disabled => None,
            PermitKind::Closed(generation) => self
                .breaker
                .record_closed(generation, outcome, duration, now),
            PermitKind::HalfOpen(generation) => self
                .breaker
                .record_half_open(generation, outcome, duration, now),
        }
    }
}

impl Drop for BreakerPermit<'_> {
    fn drop(&mut self) {
        if self.armed
            && let PermitKind::HalfOpen(generation) = self.kind
        {
            self.breaker.release_probe(generation);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use tokio::time::{advance, sleep};

    const FAST: Duration = Duration::from_millis(1);

    fn breaker(tweak: impl FnOnce(&mut BreakerConfig)) -> CircuitBreaker {
        let mut config = BreakerConfig {
            consecutive_failures: None,
            ..BreakerConfig::default()
        };
        tweak(&mut config);
        config.validate().expect("test config is valid");
        CircuitBreaker::new(Arc::new(config))
    }

    /// Paused runtimes created before the clock's process-wide base was set
    /// would read as "1" until they advance past it; step well clear of it.
    async fn start() {
        advance(Duration::from_secs(1)).await;
    }

    fn call(b: &CircuitBreaker, outcome: CallOutcome) -> Option<Transition> {
        let now = now_nanos();
        b.try_acquire(now)
            .expect("call permitted")
            .record(outcome, FAST, now)
    }

    const TO_OPEN: Transition = Transition {
        from: BreakerState::Closed,
        to: BreakerState::Open,
    };
    const TO_HALF_OPEN: Transition = Transition {
        from: BreakerState::Open,
        to: BreakerState::HalfOpen,
    };
    const REOPEN: Transition = Transition {
        from: BreakerState::HalfOpen,
        to: BreakerState::Open,
    };
    const TO_CLOSED: Transition = Transition {
        from: BreakerState::HalfOpen,
        to: BreakerState::Closed,
    };

    /// Trips a breaker that opens on one failure.
    fn trip(b: &CircuitBreaker) {
        assert_eq!(b.force_open(now_nanos()), Some(TO_OPEN));
    }

    #[tokio::test(start_paused = true)]
    async fn trips_on_failure_rate_after_minimum_calls() {
        start().await;
        let b = breaker(|c| c.minimum_calls = 4);
        assert_eq!(call(&b, CallOutcome::Success), None);
        assert_eq!(call(&b, CallOutcome::Success), None);
        assert_eq!(call(&b, CallOutcome::Failure), None);
        assert_eq!(b.failure_rate(), None);
        assert_eq!(b.state(), BreakerState::Closed);
        // 2 of 4 = 50% >= threshold.
        assert_eq!(call(&b, CallOutcome::Failure), Some(TO_OPEN));
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.failure_rate(), Some(0.5));
    }

    #[tokio::test(start_paused = true)]
    async fn no_rate_decision_before_minimum_calls() {
        start().await;
        let b = breaker(|c| c.minimum_calls = 10);
        for _ in 0..9 {
            assert_eq!(call(&b, CallOutcome::Failure), None);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.failure_rate(), None);
        assert_eq!(call(&b, CallOutcome::Failure), Some(TO_OPEN));
    }

    #[tokio::test(start_paused = true)]
    async fn consecutive_failures_trip() {
        start().await;
        let b = breaker(|c| {
            c.window = SlidingWindow::Count { size: 100 };
            c.minimum_calls = 100;
            c.consecutive_failures = Some(3);
        });
        assert_eq!(call(&b, CallOutcome::Failure), None);
        assert_eq!(call(&b, CallOutcome::Failure), None);
        // A success breaks the streak; an ignored outcome does not.
        assert_eq!(call(&b, CallOutcome::Success), None);
        assert_eq!(call(&b, CallOutcome::Failure), None);
        assert_eq!(call(&b, CallOutcome::Ignored), None);
        assert_eq!(call(&b, CallOutcome::Failure), None);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(call(&b, CallOutcome::Failure), Some(TO_OPEN));
    }

    #[tokio::test(start_paused = true)]
    async fn slow_calls_trip() {
        start().await;
        let b = breaker(|c| {
            c.minimum_calls = 4;
            c.failure_rate_threshold = 1.0;
            c.slow_call_duration = Duration::from_millis(100);
            c.slow_call_rate_threshold = 0.75;
        });
        let record = |d: Duration| {
            let now = now_nanos();
            b.try_acquire(now)
                .unwrap()
                .record(CallOutcome::Success, d, now)
        };
        // Exactly the threshold is not slow.
        assert_eq!(record(Duration::from_millis(100)), None);
        assert_eq!(record(Duration::from_millis(101)), None);
        assert_eq!(record(Duration::from_secs(1)), None);
        assert_eq!(b.slow_call_rate(), None);
        assert_eq!(record(Duration::from_secs(2)), Some(TO_OPEN));
        // Slow successes count toward the slow rate, not the failure rate.
        assert_eq!(b.failure_rate(), Some(0.0));
        assert_eq!(b.slow_call_rate(), Some(0.75));
    }

    #[tokio::test(start_paused = true)]
    async fn open_rejects_with_retry_after() {
        start().await;
        let b = breaker(|c| c.open_duration = Duration::from_secs(10));
        trip(&b);
        let err = b.try_acquire(now_nanos()).unwrap_err();
        assert_eq!(err.retry_after, Duration::from_secs(10));
        assert!(!b.is_call_permitted(now_nanos()));
        advance(Duration::from_secs(4)).await;
        let err = b.try_acquire(now_nanos()).unwrap_err();
        assert_eq!(err.retry_after, Duration::from_secs(6));
        assert_eq!(b.state(), BreakerState::Open);
        // Forcing it open again extends the open period, reporting nothing.
        assert_eq!(b.force_open(now_nanos()), None);
        let err = b.try_acquire(now_nanos()).unwrap_err();
        assert_eq!(err.retry_after, Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_after_open_duration() {
        start().await;
        let b = breaker(|c| c.open_duration = Duration::from_secs(10));
        trip(&b);
        advance(Duration::from_secs(10) - Duration::from_nanos(1)).await;
        assert!(!b.is_call_permitted(now_nanos()));
        advance(Duration::from_nanos(1)).await;
        // Elapsed, but still open until a call takes a probe.
        assert!(b.is_call_permitted(now_nanos()));
        assert_eq!(b.state(), BreakerState::Open);
        let probe = b.try_acquire(now_nanos()).unwrap();
        assert!(probe.is_probe());
        assert_eq!(probe.transition(), Some(TO_HALF_OPEN));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let second = b.try_acquire(now_nanos()).unwrap();
        assert_eq!(second.transition(), None);
        drop((probe, second));
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_limits_concurrent_probes() {
        start().await;
        let b = breaker(|c| c.half_open_max_calls = 3);
        trip(&b);
        advance(b.config().open_duration).await;
        let now = now_nanos();
        let probes: Vec<_> = (0..3).map(|_| b.try_acquire(now).unwrap()).collect();
        assert!(!b.is_call_permitted(now));
        let err = b.try_acquire(now).unwrap_err();
        assert_eq!(err.retry_after, Duration::ZERO);
        let mut probes = probes.into_iter();
        assert_eq!(
            probes
                .next()
                .unwrap()
                .record(CallOutcome::Success, FAST, now),
            None
        );
        // A finished probe frees its slot.
        assert!(b.is_call_permitted(now));
        let fourth = b.try_acquire(now).unwrap();
        assert!(b.try_acquire(now).is_err());
        drop(fourth);
        assert_eq!(b.state(), BreakerState::HalfOpen);
    }

    #[tokio::test(start_paused = true)]
    async fn failure_in_half_open_reopens() {
        start().await;
        let b = breaker(|c| c.open_duration = Duration::from_secs(10));
        trip(&b);
        advance(Duration::from_secs(10)).await;
        let now = now_nanos();
        let first = b.try_acquire(now).unwrap();
        let second = b.try_acquire(now).unwrap();
        advance(Duration::from_secs(1)).await;
        let now = now_nanos();
        assert_eq!(first.record(CallOutcome::Failure, FAST, now), Some(REOPEN));
        assert_eq!(b.state(), BreakerState::Open);
        // A fresh open period, from the failure.
        assert_eq!(
            b.try_acquire(now).unwrap_err().retry_after,
            Duration::from_secs(10)
        );
        // The other probe belongs to the finished half-open period.
        assert_eq!(second.record(CallOutcome::Success, FAST, now), None);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_probe_reopens() {
        start().await;
        let b = breaker(|c| c.slow_call_duration = Duration::from_secs(1));
        trip(&b);
        advance(b.config().open_duration).await;
        let now = now_nanos();
        let probe = b.try_acquire(now).unwrap();
        assert_eq!(
            probe.record(CallOutcome::Success, Duration::from_secs(2), now),
            Some(REOPEN)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn enough_successes_close_with_a_clear_window() {
        start().await;
        let b = breaker(|c| {
            c.minimum_calls = 2;
            c.half_open_max_calls = 3;
        });
        call(&b, CallOutcome::Success);
        assert_eq!(call(&b, CallOutcome::Failure), Some(TO_OPEN));
        advance(b.config().open_duration).await;
        let now = now_nanos();
        let probes: Vec<_> = (0..3).map(|_| b.try_acquire(now).unwrap()).collect();
        let results: Vec<_> = probes
            .into_iter()
            .map(|p| p.record(CallOutcome::Success, FAST, now))
            .collect();
        assert_eq!(results, [None, None, Some(TO_CLOSED)]);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.failure_rate(), None);
        // The old failure is gone: one failure + one success is 50% again,
        // but two successes first keep it closed.
        assert_eq!(call(&b, CallOutcome::Success), None);
        assert_eq!(call(&b, CallOutcome::Success), None);
        assert_eq!(b.failure_rate(), Some(0.0));
    }

    #[tokio::test(start_paused = true)]
    async fn sequential_probes_close_too() {
        start().await;
        let b = breaker(|c| c.half_open_max_calls = 2);
        trip(&b);
        advance(b.config().open_duration).await;
        let p = b.try_acquire(now_nanos()).unwrap();
        assert_eq!(p.transition(), Some(TO_HALF_OPEN));
        assert_eq!(p.record(CallOutcome::Success, FAST, now_nanos()), None);
        // An ignored probe frees its slot without counting.
        let p = b.try_acquire(now_nanos()).unwrap();
        assert_eq!(p.record(CallOutcome::Ignored, FAST, now_nanos()), None);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let p = b.try_acquire(now_nanos()).unwrap();
        assert_eq!(
            p.record(CallOutcome::Success, FAST, now_nanos()),
            Some(TO_CLOSED)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn time_window_forgets_old_failures() {
        start().await;
        let b = breaker(|c| {
            c.window = SlidingWindow::Time {
                duration: Duration::from_secs(10),
                buckets: 10,
            };
            c.minimum_calls = 5;
            c.failure_rate_threshold = 0.9;
        });
        for _ in 0..4 {
            assert_eq!(call(&b, CallOutcome::Failure), None);
        }
        // Still counted a bit less than `duration` later...
        advance(Duration::from_millis(8_900)).await;
        assert_eq!(call(&b, CallOutcome::Success), None);
        assert_eq!(b.failure_rate(), Some(0.8));
        // ...and forgotten once `duration` has passed.
        advance(Duration::from_millis(1_100)).await;
        assert_eq!(b.failure_rate(), None);
        for _ in 0..4 {
            assert_eq!(call(&b, CallOutcome::Failure), None);
        }
        // Five calls again (the success is still in): 4 of 5 failed.
        assert_eq!(b.failure_rate(), Some(0.8));
        advance(Duration::from_secs(10)).await;
        assert_eq!(b.failure_rate(), None);
        for _ in 0..4 {
            assert_eq!(call(&b, CallOutcome::Failure), None);
        }
        assert_eq!(call(&b, CallOutcome::Failure), Some(TO_OPEN));
    }

    #[tokio::test(start_paused = true)]
    async fn time_window_reuses_buckets_across_rounds() {
        start().await;
        let b = breaker(|c| {
            c.window = SlidingWindow::Time {
                duration: Duration::from_secs(1),
                buckets: 4,
            };
            c.minimum_calls = 1;
            c.failure_rate_threshold = 1.0;
        });
        // Many rounds over every bucket: the totals never leak between rounds.
        for _ in 0..50 {
            for _ in 0..3 {
                assert_eq!(call(&b, CallOutcome::Success), None);
            }
            advance(Duration::from_millis(250)).await;
        }
        let c = b.window.counts(now_nanos());
        assert_eq!(c.total, 9, "{c:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn count_window_slides() {
        start().await;
        let b = breaker(|c| {
            c.window = SlidingWindow::Count { size: 5 };
            c.minimum_calls = 5;
        });
        call(&b, CallOutcome::Failure);
        call(&b, CallOutcome::Failure);
        for _ in 0..3 {
            assert_eq!(call(&b, CallOutcome::Success), None);
        }
        assert_eq!(b.failure_rate(), Some(0.4));
        // Two more successes push both failures out.
        call(&b, CallOutcome::Success);
        call(&b, CallOutcome::Success);
        assert_eq!(b.failure_rate(), Some(0.0));
        assert_eq!(call(&b, CallOutcome::Failure), None);
        assert_eq!(call(&b, CallOutcome::Failure), None);
        assert_eq!(b.failure_rate(), Some(0.4));
        assert_eq!(call(&b, CallOutcome::Failure), Some(TO_OPEN));
        assert_eq!(b.failure_rate(), Some(0.6));
    }

    #[test]
    fn minimum_calls_is_capped_by_a_count_window() {
        let b = breaker(|c| {
            c.window = SlidingWindow::Count { size: 3 };
            c.minimum_calls = 10;
        });
        for _ in 0..2 {
            call(&b, CallOutcome::Failure);
        }
        assert_eq!(call(&b, CallOutcome::Failure), Some(TO_OPEN));
    }

    #[tokio::test(start_paused = true)]
    async fn dropped_permit_releases_half_open_slot() {
        start().await;
        let b = breaker(|c| c.half_open_max_calls = 1);
        trip(&b);
        advance(b.config().open_duration).await;
        let probe = b.try_acquire(now_nanos()).unwrap();
        assert!(!b.is_call_permitted(now_nanos()));
        drop(probe);
        assert!(b.is_call_permitted(now_nanos()));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let probe = b.try_acquire(now_nanos()).unwrap();
        assert_eq!(probe.transition(), None);
        assert_eq!(
            probe.record(CallOutcome::Success, FAST, now_nanos()),
            Some(TO_CLOSED)
        );
    }

    async fn guarded_call(b: &CircuitBreaker, takes: Duration) -> Option<Transition> {
        let permit = b.try_acquire(now_nanos()).ok()?;
        sleep(takes).await;
        permit.record(CallOutcome::Success, takes, now_nanos())
    }

    #[tokio::test(start_paused = true)]
    async fn cancelled_future_releases_half_open_slot() {
        start().await;
        let b = breaker(|c| c.half_open_max_calls = 1);
        trip(&b);
        advance(b.config().open_duration).await;

        // Cancelled by `select!`: the other branch wins.
        tokio::select! {
            _ = guarded_call(&b, Duration::from_secs(60)) => panic!("should be cancelled"),
            _ = sleep(Duration::from_millis(10)) => {}
        }
        assert!(b.is_call_permitted(now_nanos()));

        // Cancelled by dropping a future that holds the slot.
        let mut fut = Box::pin(guarded_call(&b, Duration::from_secs(60)));
        assert!(
            tokio::time::timeout(Duration::from_millis(10), &mut fut)
                .await
                .is_err()
        );
        assert!(
            !b.is_call_permitted(now_nanos()),
            "the future holds the slot"
        );
        assert!(b.try_acquire(now_nanos()).is_err());
        drop(fut);
        assert!(b.is_call_permitted(now_nanos()));
        assert_eq!(b.state(), BreakerState::HalfOpen);

        // The slot is really usable: a probe runs to completion and closes it.
        assert_eq!(
            guarded_call(&b, Duration::from_millis(5)).await,
            Some(TO_CLOSED)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn dropped_closed_permit_records_nothing() {
        start().await;
        let b = breaker(|c| c.minimum_calls = 1);
        for _ in 0..10 {
            drop(b.try_acquire(now_nanos()).unwrap());
        }
        assert_eq!(b.failure_rate(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn ignored_outcomes_do_not_count() {
        start().await;
        let b = breaker(|c| {
            c.minimum_calls = 2;
            c.consecutive_failures = Some(2);
        });
        for _ in 0..10 {
            assert_eq!(call(&b, CallOutcome::Ignored), None);
        }
        assert_eq!(b.failure_rate(), None);
        assert_eq!(b.window.counts(now_nanos()), Counts::default());
        assert_eq!(call(&b, CallOutcome::Success), None);
        assert_eq!(call(&b, CallOutcome::Ignored), None);
        assert_eq!(b.failure_rate(), None);
        assert_eq!(call(&b, CallOutcome::Success), None);
        assert_eq!(b.failure_rate(), Some(0.0));
    }

    #[tokio::test(start_paused = true)]
    async fn stale_closed_permit_records_nothing() {
        start().await;
        let b = breaker(|c| c.minimum_calls = 1);
        let early = b.try_acquire(now_nanos()).unwrap();
        trip(&b);
        assert_eq!(
            b.reset(),
            Some(Transition {
                from: BreakerState::Open,
                to: BreakerState::Closed,
            })
        );
        // Started before the trip: not part of the new closed period.
        assert_eq!(early.record(CallOutcome::Failure, FAST, now_nanos()), None);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.failure_rate(), None);
        assert_eq!(b.reset(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn disabled_breaker_always_permits() {
        start().await;
        let b = breaker(|c| {
            c.enabled = false;
            c.minimum_calls = 1;
            c.consecutive_failures = Some(1);
        });
        for _ in 0..100 {
            assert_eq!(call(&b, CallOutcome::Failure), None);
        }
        assert_eq!(b.force_open(now_nanos()), None);
        assert!(b.is_call_permitted(now_nanos()));
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn concurrent_recording_trips_exactly_once() {
        for _ in 0..20 {
            let b = breaker(|c| {
                c.window = SlidingWindow::Count { size: 50 };
                c.minimum_calls = 50;
                c.consecutive_failures = Some(30);
            });
            let opened = AtomicUsize::new(0);
            let other = AtomicUsize::new(0);
            std::thread::scope(|s| {
                for t in 0..8 {
                    let (b, opened, other) = (&b, &opened, &other);
                    s.spawn(move || {
                        for i in 0..200 {
                            let now = now_nanos();
                            let Ok(permit) = b.try_acquire(now) else {
                                continue;
                            };
                            let outcome = if (i + t) % 4 == 0 {
                                CallOutcome::Success
                            } else {
                                CallOutcome::Failure
                            };
                            match permit.record(outcome, FAST, now) {
                                Some(TO_OPEN) => opened.fetch_add(1, Ordering::Relaxed),
                                Some(_) => other.fetch_add(1, Ordering::Relaxed),
                                None => 0,
                            };
                        }
                    });
                }
            });
            assert_eq!(opened.load(Ordering::Relaxed), 1);
            assert_eq!(other.load(Ordering::Relaxed), 0);
            assert_eq!(b.state(), BreakerState::Open);
        }
    }

    #[test]
    fn concurrent_half_open_cycle_reports_each_transition_once() {
        let b = breaker(|c| {
            c.half_open_max_calls = 4;
            c.open_duration = Duration::from_secs(1);
        });
        let t0 = now_nanos();
        assert_eq!(b.force_open(t0), Some(TO_OPEN));
        let later = t0 + dur_nanos(Duration::from_secs(2));
        let to_half = AtomicUsize::new(0);
        let to_closed = AtomicUsize::new(0);
        let granted = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..100 {
                        let Ok(p) = b.try_acquire(later) else {
                            continue;
                        };
                        granted.fetch_add(1, Ordering::Relaxed);
                        if p.transition() == Some(TO_HALF_OPEN) {
                            to_half.fetch_add(1, Ordering::Relaxed);
                        }
                        if p.record(CallOutcome::Success, FAST, later) == Some(TO_CLOSED) {
                            to_closed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(to_half.load(Ordering::Relaxed), 1);
        assert_eq!(to_closed.load(Ordering::Relaxed), 1);
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(granted.load(Ordering::Relaxed) >= 4);
    }

    #[test]
    fn count_window_totals_stay_exact_under_contention() {
        let w = CountWindow::new(64);
        std::thread::scope(|s| {
            for t in 0..8 {
                let w = &w;
                s.spawn(move || {
                    for i in 0..5_000 {
                        w.record((i + t) % 3 == 0, i % 5 == 0);
                    }
                });
            }
        });
        let c = w.counts();
        let (mut failures, mut slow) = (0, 0);
        for slot in w.slots.iter() {
            let v = slot.load(Ordering::Relaxed);
            failures += u64::from(v & SLOT_FAILURE != 0);
            slow += u64::from(v & SLOT_SLOW != 0);
        }
        assert_eq!(c.total, 64);
        assert_eq!((c.failures, c.slow), (failures, slow));
        w.clear();
        assert_eq!(w.counts(), Counts::default());
    }

    #[test]
    fn state_word_round_trips() {
        let w = Word {
            state: BreakerState::HalfOpen,
            inflight: 9_999,
            successes: 1_234,
            generation: (1 << 30) - 1,
        };
        assert_eq!(Word::unpack(w.pack()), w);
        assert_eq!(w.next(BreakerState::Open, 0).generation, 0);
    }

    #[test]
    fn validate_rejects_bad_configs() {
        BreakerConfig::default().validate().unwrap();
        type Tweak = fn(&mut BreakerConfig);
        let cases: &[(&str, Tweak)] = &[
            ("failure_rate_threshold", |c| c.failure_rate_threshold = 0.0),
            ("failure_rate_threshold", |c| {
                c.failure_rate_threshold = 50.0
            }),
            ("failure_rate_threshold", |c| {
                c.failure_rate_threshold = f64::NAN
            }),
            ("slow_call_rate_threshold", |c| {
                c.slow_call_rate_threshold = -0.1
            }),
            ("slow_call_duration", |c| {
                c.slow_call_duration = Duration::ZERO
            }),
            ("minimum_calls", |c| c.minimum_calls = 0),
            ("consecutive_failures", |c| c.consecutive_failures = Some(0)),
            ("open_duration", |c| c.open_duration = Duration::ZERO),
            ("half_open_max_calls", |c| c.half_open_max_calls = 0),
            ("half_open_max_calls", |c| c.half_open_max_calls = 1_000_000),
            ("window.size", |c| {
                c.window = SlidingWindow::Count { size: 0 }
            }),
            ("window.size", |c| {
                c.window = SlidingWindow::Count { size: 1_000_000 }
            }),
            ("window.buckets", |c| {
                c.window = SlidingWindow::Time {
                    duration: Duration::from_secs(10),
                    buckets: 0,
                }
            }),
            ("window.duration", |c| {
                c.window = SlidingWindow::Time {
                    duration: Duration::from_millis(5),
                    buckets: 10,
                }
            }),
        ];
        for (field, tweak) in cases {
            let mut c = BreakerConfig::default();
            tweak(&mut c);
            let err = c.validate().expect_err(field);
            assert_eq!(err.code(), crate::error::ErrorCode::Config);
            assert!(err.to_string().contains(field), "{field}: {err}");
        }
    }

    #[test]
    fn config_deserializes_with_defaults_and_humantime() {
        let c: BreakerConfig = serde_yaml_ng::from_str(
            "window: { type: time, duration: 30s }\nopen_duration: 1m\nconsecutive_failures: null\n",
        )
        .unwrap();
        assert_eq!(
            c.window,
            SlidingWindow::Time {
                duration: Duration::from_secs(30),
                buckets: 10
            }
        );
        assert_eq!(c.open_duration, Duration::from_secs(60));
        assert_eq!(c.consecutive_failures, None);
        assert_eq!(c.half_open_max_calls, 3);
        c.validate().unwrap();
        let back: BreakerConfig =
            serde_yaml_ng::from_str(&serde_yaml_ng::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        assert!(serde_yaml_ng::from_str::<BreakerConfig>("failure_rate: 0.5").is_err());
    }

    #[test]
    fn state_names() {
        assert_eq!(BreakerState::HalfOpen.to_string(), "half_open");
        assert_eq!(TO_OPEN.to_string(), "closed -> open");
    }

    #[test]
    fn breaker_is_send_sync_and_debug() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<CircuitBreaker>();
        let b = breaker(|_| {});
        assert!(format!("{b:?}").contains("Closed"));
        let p = b.try_acquire(now_nanos()).unwrap();
        assert!(format!("{p:?}").contains("closed"));
    }
}

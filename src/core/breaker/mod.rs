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
//!
//! The configuration is in `config.rs`, the states and the packed state word
//! in `state.rs`, the sliding windows in `window.rs`; this file holds the
//! breaker and its permits.

mod config;
mod state;
mod window;

pub use config::{BreakerConfig, SlidingWindow};
pub use state::{BreakerRejected, BreakerState, CallOutcome, Transition};

use crate::core::clock::{dur_nanos, now_nanos};
use config::MAX_HALF_OPEN_CALLS;
use state::Word;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;
use window::Window;

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

    /// Ends an open period early, at `now`: an open breaker lets its
    /// half-open probe calls through from now on (an active health check
    /// has just seen the endpoint recover, so waiting out the rest of the
    /// open duration would only keep a good endpoint idle). The probes
    /// still decide whether it closes. Returns whether it was open.
    pub fn end_open_period(&self, now: u64) -> bool {
        if !self.config.enabled || self.load().state != BreakerState::Open {
            return false;
        }
        self.open_until.fetch_min(now, Ordering::AcqRel);
        true
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
mod test_support;
#[cfg(test)]
mod tests;

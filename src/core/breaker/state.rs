//! The breaker's states and what it reports ([`BreakerState`],
//! [`CallOutcome`], [`Transition`], [`BreakerRejected`]), and the packed
//! atomic word the state lives in.

use std::fmt;
use std::time::Duration;

/// The state of a [`CircuitBreaker`](super::CircuitBreaker).
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
pub(super) struct Word {
    pub(super) state: BreakerState,
    pub(super) inflight: u32,
    pub(super) successes: u32,
    pub(super) generation: u32,
}

impl Word {
    pub(super) const fn unpack(bits: u64) -> Self {
        Word {
            state: BreakerState::from_bits(bits),
            inflight: ((bits >> INFLIGHT_SHIFT) & FIELD16) as u32,
            successes: ((bits >> SUCCESS_SHIFT) & FIELD16) as u32,
            generation: ((bits >> GEN_SHIFT) & GEN_MASK) as u32,
        }
    }

    pub(super) const fn pack(self) -> u64 {
        self.state.to_bits()
            | ((self.inflight as u64 & FIELD16) << INFLIGHT_SHIFT)
            | ((self.successes as u64 & FIELD16) << SUCCESS_SHIFT)
            | ((self.generation as u64 & GEN_MASK) << GEN_SHIFT)
    }

    /// The first word of a new state (a new generation, no probes).
    pub(super) const fn next(self, state: BreakerState, inflight: u32) -> Self {
        Word {
            state,
            inflight,
            successes: 0,
            generation: (self.generation.wrapping_add(1)) & GEN_MASK as u32,
        }
    }
}

#[cfg(test)]
mod tests;

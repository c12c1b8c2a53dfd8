//! Entry versions: a hybrid logical clock ([`Version::hlc`]) with the
//! writer's id as the tiebreak ([`Version::writer`]).
//!
//! # Why a hybrid logical clock
//! Two application instances may write the same key, each to both sides,
//! and a replay may reach a side long after a newer write did. The version
//! must order those writes the same way on every side and in every process,
//! with no coordination:
//! - a per-process counter orders one process's writes but says nothing
//!   about two processes;
//! - the wall clock orders them as a person would, but two writes in the
//!   same millisecond tie and a clock stepping back reorders one process's
//!   own writes;
//! - a hybrid logical clock is the wall clock in milliseconds (upper 48
//!   bits) with a logical counter (lower 16 bits) that moves on whenever the
//!   wall clock does not: it never goes back, never repeats in a process,
//!   stays within a millisecond of real time under normal load, and — since
//!   every versioned read advances it past the version read — a write made after reading another instance's
//!   value is newer than that value even when this host's clock is behind.
//!
//! Two instances can still produce the same clock value, so the writer id
//! (random per cache instance unless configured) breaks the tie: the order
//! is total, and "newest wins" picks the same winner everywhere.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Bits of the logical counter below the milliseconds.
const LOGICAL_BITS: u32 = 16;

/// The version of a cache entry: compared by `hlc`, then by `writer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    /// Hybrid logical clock: Unix milliseconds `<< 16`, plus a logical counter.
    pub hlc: u64,
    /// Id of the cache instance that wrote it (tiebreak).
    pub writer: u32,
}

impl Version {
    /// The smallest version: older than every write.
    pub const ZERO: Version = Version { hlc: 0, writer: 0 };

    /// The wall-clock part: Unix time in milliseconds.
    pub fn millis(self) -> u64 {
        self.hlc >> LOGICAL_BITS
    }

    /// The logical counter within that millisecond.
    pub fn logical(self) -> u16 {
        (self.hlc & ((1 << LOGICAL_BITS) - 1)) as u16
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}@{:08x}",
            self.millis(),
            self.logical(),
            self.writer
        )
    }
}

/// Unix time in milliseconds now.
pub(crate) fn wall_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Milliseconds of a duration, saturating.
pub(crate) fn millis_of(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A hybrid logical clock shared by every write of one cache instance:
/// lock-free (one compare-and-swap per version).
#[derive(Debug)]
pub(crate) struct Hlc {
    last: AtomicU64,
    writer: u32,
    /// Observed versions further ahead of the wall clock than this are not
    /// followed (a peer with a broken clock must not drag this one along).
    max_ahead_ms: u64,
}

impl Hlc {
    pub(crate) fn new(writer: u32, max_ahead: Duration) -> Self {
        Hlc {
            last: AtomicU64::new(0),
            writer,
            max_ahead_ms: millis_of(max_ahead),
        }
    }

    /// The writer id of this clock's versions.
    pub(crate) fn writer(&self) -> u32 {
        self.writer
    }

    /// A new version, newer than every version this clock made or
    /// observed; `now` is the wall clock (Unix milliseconds, from
    /// [`wall_millis`]), read by the caller, who needs it too.
    pub(crate) fn next_at(&self, now: u64) -> Version {
        let wall = now << LOGICAL_BITS;
        let mut cur = self.last.load(Relaxed);
        loop {
            let next = wall.max(cur + 1);
            match self.last.compare_exchange_weak(cur, next, Relaxed, Relaxed) {
                Ok(_) => {
                    return Version {
                        hlc: next,
                        writer: self.writer,
                    };
                }
                Err(seen) => cur = seen,
            }
        }
    }

    /// Moves the clock past a version read from a side, so the next write
    /// is newer than what was read (unless it is implausibly far ahead).
    pub(crate) fn observe(&self, v: Version) {
        // Usually the clock is past it already (this instance's own
        // writes): a load, no write to the shared line.
        if v.hlc > self.last.load(Relaxed)
            && v.millis() <= wall_millis().saturating_add(self.max_ahead_ms)
        {
            self.last.fetch_max(v.hlc, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_grow_and_order_by_clock_then_writer() {
        let clock = Hlc::new(7, Duration::from_secs(5));
        let a = clock.next_at(wall_millis());
        let b = clock.next_at(wall_millis());
        assert!(b > a);
        assert!(a.millis() + 1000 > wall_millis());
        let other = Version {
            hlc: a.hlc,
            writer: 8,
        };
        assert!(other > a && other < b.max(other));
    }

    #[test]
    fn observing_a_newer_version_moves_the_clock_past_it() {
        let clock = Hlc::new(1, Duration::from_secs(5));
        let ahead = Version {
            hlc: (wall_millis() + 2000) << LOGICAL_BITS,
            writer: 2,
        };
        clock.observe(ahead);
        assert!(clock.next_at(wall_millis()) > ahead);
        let absurd = Version {
            hlc: (wall_millis() + 3_600_000) << LOGICAL_BITS,
            writer: 2,
        };
        clock.observe(absurd);
        assert!(clock.next_at(wall_millis()) < absurd);
    }
}

//! What a backend has seen: [`BackendStats`], the snapshot handed out, and
//! the live counters behind it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// A snapshot of what one backend of
/// [`LocalHttpBackends`](super::LocalHttpBackends) has seen, from
/// [`stats`](super::LocalHttpBackends::stats). Counts run from the start
/// of the backends (or the last
/// [`reset_stats`](super::LocalHttpBackends::reset_stats)) and survive
/// [`kill`](super::LocalHttpBackends::kill) and
/// [`restart`](super::LocalHttpBackends::restart).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackendStats {
    /// Connections accepted.
    pub connections: u64,
    /// Requests whose head was read, health checks included.
    pub received: u64,
    /// Of [`received`](Self::received), the `GET /health` requests.
    pub health_checks: u64,
    /// Requests executed: the handler did the work. Health checks are
    /// never executed.
    pub executed: u64,
    /// Responses the handler produced, by status code, health checks
    /// included. A [`ResetMidBody`](super::BackendMode::ResetMidBody)
    /// response counts as a `200` although its body is cut; hung and
    /// dropped requests are not answered.
    pub answered: BTreeMap<u16, u64>,
    /// Executed requests by method (`"GET"`, `"POST"`, ...).
    pub executed_by_method: BTreeMap<String, u64>,
}

impl BackendStats {
    /// How many responses had status `code`.
    pub fn answered_with(&self, code: u16) -> u64 {
        self.answered.get(&code).copied().unwrap_or(0)
    }

    /// How many responses were produced, all codes together.
    pub fn answered_total(&self) -> u64 {
        self.answered.values().sum()
    }

    /// How many requests with this method were executed.
    pub fn executed_with(&self, method: &str) -> u64 {
        self.executed_by_method.get(method).copied().unwrap_or(0)
    }
}

/// The live counters of one backend. The plain counts are atomics; the two
/// breakdowns share one small per-backend lock.
#[derive(Debug, Default)]
pub(super) struct Tally {
    connections: AtomicU64,
    received: AtomicU64,
    health_checks: AtomicU64,
    executed: AtomicU64,
    breakdown: Mutex<Breakdown>,
}

/// The per-status and per-method counts.
#[derive(Debug, Default)]
struct Breakdown {
    answered: BTreeMap<u16, u64>,
    executed_by_method: BTreeMap<String, u64>,
}

impl Tally {
    pub(super) fn connection(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn received(&self) {
        self.received.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn health_check(&self) {
        self.health_checks.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn executed(&self, method: &str) {
        self.executed.fetch_add(1, Ordering::Relaxed);
        let mut breakdown = self.breakdown();
        match breakdown.executed_by_method.get_mut(method) {
            Some(count) => *count += 1,
            None => {
                breakdown.executed_by_method.insert(method.to_owned(), 1);
            }
        }
    }

    pub(super) fn answered(&self, code: u16) {
        *self.breakdown().answered.entry(code).or_insert(0) += 1;
    }

    pub(super) fn snapshot(&self) -> BackendStats {
        let breakdown = self.breakdown();
        BackendStats {
            connections: self.connections.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            health_checks: self.health_checks.load(Ordering::Relaxed),
            executed: self.executed.load(Ordering::Relaxed),
            answered: breakdown.answered.clone(),
            executed_by_method: breakdown.executed_by_method.clone(),
        }
    }

    pub(super) fn reset(&self) {
        let mut breakdown = self.breakdown();
        *breakdown = Breakdown::default();
        for counter in [
            &self.connections,
            &self.received,
            &self.health_checks,
            &self.executed,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
    }

    fn breakdown(&self) -> MutexGuard<'_, Breakdown> {
        self.breakdown
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_and_reset() {
        let tally = Tally::default();
        tally.connection();
        tally.received();
        tally.received();
        tally.health_check();
        tally.executed("POST");
        tally.answered(200);
        tally.answered(200);
        let stats = tally.snapshot();
        assert_eq!(stats.connections, 1);
        assert_eq!(stats.received, 2);
        assert_eq!(stats.health_checks, 1);
        assert_eq!(stats.executed, 1);
        assert_eq!(stats.executed_with("POST"), 1);
        assert_eq!(stats.executed_with("GET"), 0);
        assert_eq!(stats.answered_with(200), 2);
        assert_eq!(stats.answered_total(), 2);
        tally.reset();
        assert_eq!(tally.snapshot(), BackendStats::default());
    }
}

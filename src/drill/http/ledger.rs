//! The request ledger: how many times each `x-request-id` was executed,
//! across all backends.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Executions per request id, shared by every backend of one
/// [`LocalHttpBackends`](super::LocalHttpBackends).
#[derive(Debug, Default)]
pub(super) struct RequestLedger {
    executions: Mutex<HashMap<String, u32>>,
}

impl RequestLedger {
    /// Records one execution of `id`.
    pub(super) fn record(&self, id: &str) {
        let mut executions = self.lock();
        match executions.get_mut(id) {
            Some(count) => *count = count.saturating_add(1),
            None => {
                executions.insert(id.to_owned(), 1);
            }
        }
    }

    /// How many times `id` was executed.
    pub(super) fn executions(&self, id: &str) -> u32 {
        self.lock().get(id).copied().unwrap_or(0)
    }

    /// The ids executed more than once with their counts, sorted by id.
    pub(super) fn duplicated(&self) -> Vec<(String, u32)> {
        let mut duplicated: Vec<(String, u32)> = self
            .lock()
            .iter()
            .filter(|&(_, &count)| count > 1)
            .map(|(id, &count)| (id.clone(), count))
            .collect();
        duplicated.sort_unstable();
        duplicated
    }

    /// Forgets every execution.
    pub(super) fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, u32>> {
        self.executions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_duplicates() {
        let ledger = RequestLedger::default();
        for id in ["b", "a", "b", "c", "a", "b"] {
            ledger.record(id);
        }
        assert_eq!(ledger.executions("b"), 3);
        assert_eq!(ledger.executions("c"), 1);
        assert_eq!(ledger.executions("z"), 0);
        assert_eq!(
            ledger.duplicated(),
            [("a".to_owned(), 2), ("b".to_owned(), 3)]
        );
        ledger.clear();
        assert_eq!(ledger.executions("b"), 0);
    }
}

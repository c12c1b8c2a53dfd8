//! The Jepsen-style set check: every attempted write compared with the ids
//! found on the surviving primary ([`check_sets`]), and the writes that
//! reached another primary after the fault ([`fenced_writes`]).

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::drill::workload::WriteRecord;

/// The result of the set check on the surviving primary.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SetCheck {
    /// Writes attempted.
    pub attempted: u64,
    /// Writes acknowledged.
    pub acked: u64,
    /// Acknowledged ids missing from the survivor, ascending.
    pub lost: Vec<i64>,
    /// Ids on the survivor that were never attempted, ascending.
    pub unexpected: Vec<i64>,
    /// Ids whose attempt failed but that are on the survivor.
    pub maybe_committed_present: u64,
}

/// Compares the attempted writes with the ids found on the survivor.
pub fn check_sets(writes: &[WriteRecord], present: &BTreeSet<i64>) -> SetCheck {
    let mut check = SetCheck {
        attempted: writes.len() as u64,
        ..SetCheck::default()
    };
    let mut attempted = BTreeSet::new();
    for w in writes {
        attempted.insert(w.id);
        let here = present.contains(&w.id);
        match (w.is_ok(), here) {
            (true, true) => check.acked += 1,
            (true, false) => {
                check.acked += 1;
                check.lost.push(w.id);
            }
            (false, true) => check.maybe_committed_present += 1,
            (false, false) => {}
        }
    }
    check.lost.sort_unstable();
    check.unexpected = present.difference(&attempted).copied().collect();
    check
}

/// Writes that reached another primary after the fault: ids in `others`
/// but not in `survivor` whose attempt started at or after `fault_at`.
/// Returns (all of them, those started at or after `failover_at`).
pub fn fenced_writes(
    writes: &[WriteRecord],
    fault_at: Duration,
    failover_at: Option<Duration>,
    survivor: &BTreeSet<i64>,
    others: &BTreeSet<i64>,
) -> (u64, u64) {
    let mut all = 0;
    let mut after_failover = 0;
    for w in writes {
        if w.start >= fault_at && others.contains(&w.id) && !survivor.contains(&w.id) {
            all += 1;
            if failover_at.is_some_and(|f| w.start >= f) {
                after_failover += 1;
            }
        }
    }
    (all, after_failover)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(id: i64, ok: bool) -> WriteRecord {
        WriteRecord {
            id,
            writer: 0,
            start: Duration::from_millis(id as u64 * 10),
            end: Duration::from_millis(id as u64 * 10 + 5),
            error: (!ok).then(|| "io".to_owned()),
        }
    }

    #[test]
    fn set_check_classifies() {
        let writes = vec![w(1, true), w(2, true), w(3, false), w(4, false)];
        let present: BTreeSet<i64> = [1, 3, 99].into_iter().collect();
        let c = check_sets(&writes, &present);
        assert_eq!(c.attempted, 4);
        assert_eq!(c.acked, 2);
        assert_eq!(c.lost, vec![2]);
        assert_eq!(c.unexpected, vec![99]);
        assert_eq!(c.maybe_committed_present, 1);
    }

    #[test]
    fn fenced_writes_count_only_after_the_fault() {
        let writes: Vec<_> = (1..=10).map(|i| w(i, true)).collect();
        let survivor: BTreeSet<i64> = (1..=5).collect();
        let others: BTreeSet<i64> = [2, 6, 7, 9].into_iter().collect();
        // Fault at 65 ms: ids 7.. start after it; failover at 85 ms: 9, 10.
        let (all, after) = fenced_writes(
            &writes,
            Duration::from_millis(65),
            Some(Duration::from_millis(85)),
            &survivor,
            &others,
        );
        assert_eq!((all, after), (2, 1));
    }
}

//! Reconciliation: a key scan of both sides (`SCAN … MATCH <prefix>*`),
//! comparing each key's entries and copying the newer one (value or
//! tombstone, with its own absolute expiry) onto the side that is behind,
//! by the same compare-and-set as every write. Foreign values are left
//! alone; expired entries are not copied. Copies are paced by
//! `queue.replay_rate`.
//!
//! The cache runs it by itself for a divergent side (its queue overflowed,
//! or it came back with another data set); [`FailoverCache::reconcile`]
//! runs it on demand, e.g. at a service's start (a crashed process lost its
//! queues) or on a schedule.
//!
//! [`FailoverCache::reconcile`]: super::FailoverCache::reconcile

use super::Inner;
use super::entry::{CasReply, EntryKind, Stored};
use super::error::{CacheError, SideError};
use super::events::CacheEventKind;
use super::stats::ReconcileReport;
use super::version::wall_millis;
use std::sync::Arc;
use tokio::time::Instant;

/// Keys asked for per `SCAN` step.
const SCAN_COUNT: usize = 500;

/// A copy to make: the key and what to write there.
struct Transfer<'a> {
    key: &'a [u8],
    raw: &'a [u8],
    expires_at: u64,
    tombstone: bool,
}

impl Inner {
    /// Runs a key scan for a divergent side unless one that started after
    /// its divergence has finished meanwhile.
    pub(crate) async fn reconcile_due(self: &Arc<Self>, index: usize) -> Result<(), CacheError> {
        let _one_at_a_time = self.reconciling.lock().await;
        if !self.sides[index].divergent() {
            return Ok(());
        }
        self.reconcile_locked().await.map(|_| ())
    }

    /// A key scan of both sides, one at a time per cache.
    pub(crate) async fn reconcile(self: &Arc<Self>) -> Result<ReconcileReport, CacheError> {
        let _one_at_a_time = self.reconciling.lock().await;
        self.reconcile_locked().await
    }

    async fn reconcile_locked(&self) -> Result<ReconcileReport, CacheError> {
        let started = Instant::now();
        let covered = [self.sides[0].scan_started(), self.sides[1].scan_started()];
        let mut report = ReconcileReport::default();
        let pattern = format!("{}*", escape_glob(&self.config.prefix));
        for source in 0..2 {
            let mut cursor = 0;
            loop {
                let (next, keys) = self.sides[source]
                    .scan(cursor, &pattern, SCAN_COUNT)
                    .await
                    .map_err(|e| side_failed(&pattern, e))?;
                if !keys.is_empty() {
                    self.reconcile_keys(&pattern, &keys, &mut report).await?;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        for (side, covered) in self.sides.iter().zip(covered) {
            side.scan_finished(covered);
        }
        report.duration = started.elapsed();
        self.counters.reconciliations.inc();
        tracing::info!(cache = %self.name, ?report, "cache reconciled");
        self.events.emit(CacheEventKind::Reconciled {
            report: report.clone(),
        });
        Ok(report)
    }

    /// Compares one batch of keys on both sides and copies what is behind.
    async fn reconcile_keys(
        &self,
        pattern: &str,
        keys: &[Vec<u8>],
        report: &mut ReconcileReport,
    ) -> Result<(), CacheError> {
        let started = Instant::now();
        let (a, b) = tokio::join!(self.sides[0].mget(keys), self.sides[1].mget(keys));
        let a = a.map_err(|e| side_failed(pattern, e))?;
        let b = b.map_err(|e| side_failed(pattern, e))?;
        report.scanned += keys.len() as u64;
        let now = wall_millis();
        let mut copies: [Vec<Transfer<'_>>; 2] = [Vec::new(), Vec::new()];
        for ((key, x), y) in keys.iter().zip(&a).zip(&b) {
            match plan(x, y, now) {
                Plan::Copy { to, from } => {
                    if let Stored::Entry { header, raw } = from {
                        copies[to].push(Transfer {
                            key,
                            raw,
                            expires_at: header.expires_at,
                            tombstone: header.kind == EntryKind::Tombstone,
                        });
                    }
                }
                Plan::Foreign => report.foreign_skipped += 1,
                Plan::Nothing => {}
            }
        }
        let mut sent = 0;
        for (to, copies) in copies.iter().enumerate() {
            if copies.is_empty() {
                continue;
            }
            sent += copies.len();
            let side = &self.sides[to];
            let items: Vec<(&[u8], &[u8], u64)> = copies
                .iter()
                .map(|c| (c.key, c.raw, c.expires_at))
                .collect();
            let replies = side
                .cas_many(&self.script, &items)
                .await
                .map_err(|e| side_failed(pattern, e))?;
            for (c, r) in copies.iter().zip(replies) {
                if let Ok(CasReply::Written | CasReply::Removed) = r {
                    side.counters.reconciled.inc();
                    report.tombstones_copied += u64::from(c.tombstone);
                    if to == 0 {
                        report.copied_to_primary += 1;
                    } else {
                        report.copied_to_secondary += 1;
                    }
                }
            }
        }
        self.pace(sent, started).await;
        Ok(())
    }
}

/// What to do with one key.
enum Plan<'a> {
    Nothing,
    Foreign,
    /// Copy `from` onto side `to`.
    Copy {
        to: usize,
        from: &'a Stored,
    },
}

/// The newer entry is copied onto the side that is behind (or has
/// nothing); an expired one only onto a side with an older entry, which it
/// removes. Foreign values are left alone.
fn plan<'a>(x: &'a Stored, y: &'a Stored, now: u64) -> Plan<'a> {
    let live = |s: &Stored| matches!(s, Stored::Entry { header, .. } if header.expires_at > now);
    let held = |s: &Stored| matches!(s, Stored::Entry { .. });
    match (x, y) {
        (Stored::Foreign(_), _) | (_, Stored::Foreign(_)) => Plan::Foreign,
        _ if x.version() > y.version() && (live(x) || held(y)) => Plan::Copy { to: 1, from: x },
        _ if y.version() > x.version() && (live(y) || held(x)) => Plan::Copy { to: 0, from: y },
        _ => Plan::Nothing,
    }
}

fn side_failed(pattern: &str, error: SideError) -> CacheError {
    CacheError::Side {
        op: "reconcile",
        key: pattern.to_owned(),
        error,
    }
}

/// `s` with the glob characters of `SCAN … MATCH` escaped.
pub(crate) fn escape_glob(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::entry::{Header, build};
    use crate::cache::version::Version;
    use bytes::Bytes;

    fn entry(hlc: u64, kind: EntryKind, expires_at: u64) -> Stored {
        let header = Header {
            kind,
            version: Version { hlc, writer: 1 },
            expires_at,
        };
        Stored::parse(Some(build(&header, b"v")))
    }

    #[test]
    fn the_newer_live_entry_goes_to_the_side_behind() {
        let now = 1000;
        let old = entry(1, EntryKind::Value, 5000);
        let newer_delete = entry(2, EntryKind::Tombstone, 5000);
        assert!(matches!(
            plan(&old, &newer_delete, now),
            Plan::Copy { to: 0, .. }
        ));
        assert!(matches!(
            plan(&old, &Stored::Missing, now),
            Plan::Copy { to: 1, .. }
        ));
        let expired = entry(3, EntryKind::Value, 999);
        assert!(matches!(
            plan(&expired, &Stored::Missing, now),
            Plan::Nothing
        ));
        // An expired newer entry still removes an older one.
        assert!(matches!(
            plan(&old, &expired, now),
            Plan::Copy { to: 0, .. }
        ));
        let foreign = Stored::Foreign(Bytes::from_static(b"raw"));
        assert!(matches!(plan(&foreign, &old, now), Plan::Foreign));
        assert!(matches!(plan(&old, &old.clone(), now), Plan::Nothing));
    }

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(escape_glob("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}

//! What the cache drill logs of the cache's events (from
//! [`FailoverCache::subscribe`](crate::cache::FailoverCache::subscribe)):
//! sides going down and up, divergence, reconciliation, ...;
//! `WriteQueued` only counted.

use crate::cache::{CacheEvent, CacheEventKind};
use crate::drill::event_log::Logged;

/// What the drill logs of a cache event: its kind and details;
/// `WriteQueued` is only counted.
pub(super) fn describe(event: &CacheEvent) -> Logged {
    let (kind, detail) = match &event.kind {
        CacheEventKind::WriteQueued { .. } => return Logged::Count,
        CacheEventKind::SideDown { side, reason } => ("SideDown", format!("{side}: {reason}")),
        CacheEventKind::SideUp { side, down_for } => {
            ("SideUp", format!("{side}, down for {down_for:.1?}"))
        }
        CacheEventKind::Divergent {
            side,
            reason,
            dropped,
        } => (
            "Divergent",
            format!("{side}: {reason} ({dropped} queued entries dropped)"),
        ),
        CacheEventKind::InSync { side } => ("InSync", side.to_string()),
        CacheEventKind::Reconciled { report } => (
            "Reconciled",
            format!(
                "scanned {}, copied onto a {} and onto b {} ({} tombstones) in {:.1?}",
                report.scanned,
                report.copied_to_primary,
                report.copied_to_secondary,
                report.tombstones_copied,
                report.duration
            ),
        ),
        CacheEventKind::ReplayRejected { side, key, reason } => {
            ("ReplayRejected", format!("{side}: {key}: {reason}"))
        }
        CacheEventKind::ReadRepaired { side, key } => ("ReadRepaired", format!("{side}: {key}")),
        CacheEventKind::FailSafeServed { key, age } => {
            ("FailSafeServed", format!("{key}, {age:.1?} old"))
        }
    };
    Logged::Keep(kind, detail)
}

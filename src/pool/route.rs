//! Where a call goes: a [`Route`] (the writer, a reader by
//! [`ReadPreference`], or a node that has replayed a [`WriteToken`]) and
//! how it is resolved against a [`Topology`] snapshot (lock-free, no
//! allocation).

use crate::pool::config::ReadPreference;
use crate::pool::topology::Topology;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

/// A read-your-writes token: the writer's position after a write. A read
/// with it goes only to a node that has replayed that far (else the writer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WriteToken {
    /// Fencing epoch (timeline) of the writer that produced the token.
    pub epoch: u64,
    /// Position on the writer (Postgres LSN, Redis offset).
    pub position: u64,
}

/// Which node a call should go to. Resolved anew for every call, so a
/// handle bound to a route keeps working across failovers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The current writer (a node that reports itself primary and is not fenced).
    Writer,
    /// A reader chosen by the read preference (replicas within the lag bounds).
    Reader(ReadPreference),
    /// A replica that has replayed the token, else the writer (read-your-writes).
    After(WriteToken),
}

impl Route {
    /// Whether the route needs the writer (held back during a switchover).
    pub(crate) fn is_writer(self) -> bool {
        matches!(self, Route::Writer)
    }

    /// What the route waits for, in words, for errors.
    pub(crate) fn wanted(self) -> &'static str {
        match self {
            Route::Writer => "writer",
            Route::Reader(ReadPreference::Primary) => "writer (read preference `primary`)",
            Route::Reader(ReadPreference::PreferReplica) => "replica or writer",
            Route::Reader(ReadPreference::Replica) => "replica within the lag bounds",
            Route::Reader(ReadPreference::Nearest) => "reachable node",
            Route::After(_) => "node that has replayed the write token",
        }
    }

    /// The position in `topo.nodes` this route picks now, if any. `rr`
    /// spreads reads over the eligible replicas.
    pub(crate) fn pick(self, topo: &Topology, rr: &AtomicUsize) -> Option<usize> {
        match self {
            Route::Writer => topo.writer,
            Route::Reader(pref) => pick_reader(topo, pref, rr),
            Route::After(token) => pick_after(topo, token, rr),
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Route::Writer => f.write_str("writer"),
            Route::Reader(pref) => write!(f, "reader ({pref:?})"),
            Route::After(t) => write!(f, "reader after {}/{}", t.epoch, t.position),
        }
    }
}

fn pick_reader(t: &Topology, pref: ReadPreference, rr: &AtomicUsize) -> Option<usize> {
    let replica =
        || (!t.readers.is_empty()).then(|| t.readers[rr.fetch_add(1, Relaxed) % t.readers.len()]);
    match pref {
        ReadPreference::Primary => t.writer,
        ReadPreference::Replica => replica(),
        ReadPreference::PreferReplica => replica().or(t.writer),
        ReadPreference::Nearest => t
            .readers
            .iter()
            .copied()
            .chain(t.writer)
            .min_by_key(|&i| t.nodes[i].rtt.unwrap_or(Duration::MAX)),
    }
}

/// A replica that has replayed `token` (round robin among them, without
/// allocating), else the writer.
fn pick_after(t: &Topology, token: WriteToken, rr: &AtomicUsize) -> Option<usize> {
    let caught_up = |i: &usize| {
        let n = &t.nodes[*i];
        n.epoch == token.epoch && n.position >= token.position
    };
    let count = t.readers.iter().filter(|i| caught_up(i)).count();
    if count == 0 {
        return t.writer;
    }
    let nth = rr.fetch_add(1, Relaxed) % count;
    t.readers.iter().copied().filter(caught_up).nth(nth)
}

//! Redis backends: the probe (`INFO replication`: role, offsets, link
//! state, replication-id lineage), the classification of Redis errors, and
//! [`FailoverRedis`], a `redis::aio::ConnectionLike` that sends writes to the
//! current master and follows failovers.
//!
//! # What decides the writer (fencing)
//! Redis has no timeline, so every probe reports epoch 0 and the pool
//! decides, in this order:
//! 1. **Only a node that reports `role:master` in its own probe gets writes.**
//!    A writer named by Sentinel (or any topology source) is a hint until then.
//! 2. **Lineage.** A promoted replica starts a new replication history
//!    (`master_replid`) and keeps the one it continued as `master_replid2`.
//!    A master still on a history some node continued is superseded: it is
//!    fenced (no writes) until it reports itself a replica. The pool
//!    remembers superseded histories, so a superseded master is still fenced
//!    when the promoted node is down.
//! 3. **Unrelated masters** (an old master restarted empty gets a fresh
//!    history that no one continued): the current writer keeps the role, then
//!    the node this pool promoted or followed last, then — for a pool that
//!    knows neither, e.g. one just started — the master most other nodes
//!    replicate from, then the furthest ahead, then the smallest node id. The
//!    others are fenced.
//!
//! # Errors
//! `READONLY`, `MASTERDOWN`, `LOADING`, `NOREPLICAS`, `TRYAGAIN`,
//! `CLUSTERDOWN` and refused connections did not execute: failover-class,
//! re-probed, and [`FailoverRedis`] sends the command again to the new
//! writer. I/O failures, resets and response timeouts are failover-class and
//! may have executed (not retried). `WRONGTYPE`, `NOSCRIPT`, `OOM`, syntax
//! and other server errors are the caller's, untouched.

mod ack;
mod backend;
mod client;
#[cfg(feature = "deadpool-redis")]
mod deadpool;
mod node;
mod send;
mod sentinel;
mod watched;

pub use ack::Acknowledged;
pub use backend::{RedisBackend, RedisConn, RedisNodePool};
pub use client::FailoverRedis;
#[cfg(feature = "deadpool-redis")]
pub use deadpool::{DeadpoolRedis, RedisDeadpoolError};
pub use node::RedisNode;
pub use send::{UNCONFIRMED, is_unconfirmed};
pub use sentinel::SentinelTopology;

use crate::core::Classify;
use crate::core::endpoint::Role;
use crate::error::ErrorClass;
use crate::pool::{Lineage, Probe};
use ::redis::{ErrorKind, RedisError, ServerErrorKind};
use std::sync::Arc;
use std::time::Duration;

/// The port a node URL without one means.
pub(crate) const DEFAULT_PORT: u16 = 6379;

/// A `master_replid2` of all zeros means "no previous history".
const NO_REPLID: &str = "0000000000000000000000000000000000000000";

/// Classifies a Redis error (see the [module docs](self#errors)).
pub fn classify(error: &RedisError) -> ErrorClass {
    match error.kind() {
        ErrorKind::Server(kind) => match kind {
            ServerErrorKind::ReadOnly
            | ServerErrorKind::MasterDown
            | ServerErrorKind::BusyLoading
            | ServerErrorKind::TryAgain
            | ServerErrorKind::ClusterDown => ErrorClass::not_executed(),
            _ if error.code() == Some("NOREPLICAS") => ErrorClass::not_executed(),
            _ => ErrorClass::Application,
        },
        _ if error.code() == Some("NOREPLICAS") => ErrorClass::not_executed(),
        // Refused by this crate before it was sent (a connection that had
        // ended, a retired pool generation).
        ErrorKind::Client if backend::is_not_sent(error) => ErrorClass::not_executed(),
        ErrorKind::Io => {
            // A refusal never reached the server; any other I/O failure may
            // have happened after the command was written.
            if error.is_connection_refusal() {
                ErrorClass::not_executed()
            } else {
                ErrorClass::maybe_executed()
            }
        }
        _ if error.is_timeout() || error.is_connection_dropped() => ErrorClass::maybe_executed(),
        _ => ErrorClass::Application,
    }
}

impl Classify for RedisError {
    fn classify(&self) -> ErrorClass {
        classify(self)
    }
}

/// What `INFO replication` says about a node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Replication {
    pub(crate) master: bool,
    pub(crate) replid: Option<String>,
    pub(crate) replid2: Option<String>,
    pub(crate) master_offset: u64,
    /// Replica: offset processed (applied).
    pub(crate) processed: Option<u64>,
    /// Replica: offset read from the master (7.0+).
    pub(crate) read: Option<u64>,
    pub(crate) upstream: Option<String>,
    pub(crate) link_up: bool,
    pub(crate) link_down_secs: Option<u64>,
    /// A master in the middle of a `FAILOVER` (`master_failover_state`
    /// other than `no-failover`).
    pub(crate) failing_over: bool,
}

/// Parses the text of `INFO replication`.
pub(crate) fn parse_replication(info: &str) -> Replication {
    let mut r = Replication::default();
    let mut host = None;
    let mut port = None;
    for line in info.lines() {
        let Some((k, v)) = line.trim().split_once(':') else {
            continue;
        };
        match k {
            "role" => r.master = v == "master",
            "master_replid" => r.replid = Some(v.to_owned()),
            "master_replid2" if v != NO_REPLID => r.replid2 = Some(v.to_owned()),
            "master_repl_offset" => r.master_offset = v.parse().unwrap_or(0),
            "slave_repl_offset" => r.processed = v.parse().ok(),
            "slave_read_repl_offset" => r.read = v.parse().ok(),
            "master_host" => host = Some(v.to_owned()),
            "master_port" => port = Some(v.to_owned()),
            "master_link_status" => r.link_up = v == "up",
            "master_link_down_since_seconds" => r.link_down_secs = v.parse().ok(),
            "master_failover_state" => r.failing_over = v != "no-failover",
            _ => {}
        }
    }
    if let (Some(h), Some(p)) = (host, port) {
        r.upstream = Some(if h.contains(':') {
            format!("[{h}]:{p}")
        } else {
            format!("{h}:{p}")
        });
    }
    r
}

/// The pool's [`Probe`] from `INFO replication`.
pub(crate) fn probe_from_info(r: &Replication) -> Probe {
    let role = if r.master {
        Role::Primary
    } else {
        Role::Replica
    };
    let position = if r.master {
        r.master_offset
    } else {
        r.processed.unwrap_or(r.master_offset)
    };
    let mut probe = Probe::new(role, 0, position);
    if !r.master {
        probe.received = Some(r.read.unwrap_or(position).max(position));
        probe.lag = Some(if r.link_up {
            Duration::ZERO
        } else {
            // Cut off from its master: as stale as the cut is long (a
            // replica that never synced counts as unboundedly behind).
            r.link_down_secs
                .map_or(Duration::from_secs(u32::MAX.into()), Duration::from_secs)
        });
        probe.upstream = r.upstream.as_deref().map(Arc::from);
    }
    probe.lineage = r.replid.as_deref().map(|id| Lineage {
        id: Arc::from(id),
        previous: r.replid2.as_deref().map(Arc::from),
    });
    probe
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROMOTED: &str = "# Replication\r\nrole:master\r\nconnected_slaves:1\r\nslave0:ip=127.0.0.1,port=7001,state=online,offset=98,lag=0\r\nmaster_failover_state:no-failover\r\nmaster_replid:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\r\nmaster_replid2:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\nmaster_repl_offset:98\r\nsecond_repl_offset:57\r\n";
    const REPLICA: &str = "# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\nmaster_port:7000\r\nmaster_link_status:down\r\nmaster_last_io_seconds_ago:-1\r\nmaster_sync_in_progress:0\r\nslave_read_repl_offset:60\r\nslave_repl_offset:57\r\nmaster_link_down_since_seconds:3\r\nmaster_replid:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\nmaster_replid2:0000000000000000000000000000000000000000\r\nmaster_repl_offset:57\r\n";

    #[test]
    fn a_promoted_master_names_the_history_it_continued() {
        let p = probe_from_info(&parse_replication(PROMOTED));
        assert_eq!(p.role, Role::Primary);
        assert_eq!(p.position, 98);
        let l = p.lineage.unwrap();
        assert_eq!(&*l.id, "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
        assert_eq!(
            l.previous.as_deref(),
            Some("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
        );
    }

    #[test]
    fn a_cut_off_replica_reports_its_upstream_and_staleness() {
        let p = probe_from_info(&parse_replication(REPLICA));
        assert_eq!(p.role, Role::Replica);
        assert_eq!(p.position, 57);
        assert_eq!(p.received, Some(60));
        assert_eq!(p.lag, Some(Duration::from_secs(3)));
        assert_eq!(p.upstream.as_deref(), Some("127.0.0.1:7000"));
        assert_eq!(p.lineage.unwrap().previous, None);
    }

    #[test]
    fn error_classes() {
        let server = |code: &'static str| {
            RedisError::from((ErrorKind::Server(ServerErrorKind::ResponseError), code))
        };
        assert_eq!(
            classify(&RedisError::from(std::io::Error::from(
                std::io::ErrorKind::ConnectionRefused
            ))),
            ErrorClass::not_executed()
        );
        assert_eq!(
            classify(&RedisError::from(std::io::Error::from(
                std::io::ErrorKind::ConnectionReset
            ))),
            ErrorClass::maybe_executed()
        );
        assert_eq!(
            classify(&RedisError::from((
                ErrorKind::Server(ServerErrorKind::ReadOnly),
                "READONLY"
            ))),
            ErrorClass::not_executed()
        );
        assert_eq!(classify(&server("WRONGTYPE")), ErrorClass::Application);
    }
}

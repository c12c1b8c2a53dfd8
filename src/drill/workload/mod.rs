//! The drill's workload: writers writing records with unique ids and
//! readers checking read-your-writes, through the crate's failover pools,
//! with every attempt recorded for the analysis in
//! [`report`](super::report). The two operations are each client library's
//! own ([`DrillDriver`]: Postgres in `pg.rs`, Redis in `redis.rs`); the
//! loops, records and counters here are the same for every store.
//!
//! # Records
//! Postgres: a row of [`TABLE_SQL`]: `drill_writes (id bigint primary key,
//! writer int, at timestamptz default now())`. Redis: the key
//! `drill:<id>` ([`redis_key`]) holding the writer's number.
//!
//! # Writers
//! Each writer task takes the next id from one global counter (so every id
//! is attempted exactly once, by one writer) and writes it through the
//! pool's writer, under a client-side time limit ([`WorkloadConfig::op_timeout`])
//! so that a frozen node cannot hang a writer. Every attempt becomes a
//! [`WriteRecord`]: id, start, end and either success (the acknowledgement
//! time is the end) or an error kind (see [`error kinds`](#error-kinds)).
//! After an error a writer sleeps 5 ms so that it does not spin.
//!
//! # Readers and stale reads
//! Reader `k` is paired with writer `k % writers` (its *sibling*). Before each
//! read it loads the highest id the sibling has had acknowledged so far
//! (`X`, if any), then asks a node chosen by the pool's read preference
//! whether record `X` exists ([`READ_SQL`], a primary-key lookup; Redis
//! `EXISTS drill:<X>`).
//!
//! A **stale read** is a read that succeeded but did not see `X`: a write
//! acknowledged *before the read started* was invisible to it (a failed
//! read-your-writes check). With a replica read preference this is
//! expected now and then (asynchronous replication lags by a few
//! milliseconds); an acknowledged write lost in a failover also shows up as
//! stale reads afterwards. They are counted, never treated as failures.
//!
//! # Error kinds
//! * the crate's [`ErrorCode`](crate::ErrorCode) string (`no_node`,
//!   `timeout`, ...) when the pool itself refused;
//! * `timeout`: the client-side limit passed (Redis: also the client's
//!   response timeout);
//! * `db:<SQLSTATE>`: the Postgres server answered with an error
//!   (`db:57P01`, ...); `redis:<CODE>`: the Redis server did
//!   (`redis:READONLY`, ...);
//! * `io`: the connection failed (reset, refused, closed mid-command);
//! * `unconfirmed`: Redis, an acknowledged write that the master applied
//!   but too few replicas confirmed in time (`WAIT`);
//! * `closed`: a tokio-postgres connection was already closed;
//! * `pool_timed_out`, `pool_closed`, `protocol`, `tls`, `worker_crashed`:
//!   the sqlx errors of those names (the sqlx surface reports "no writer
//!   within the acquire timeout" as `pool_timed_out`, as `PgPool` would);
//! * `sqlx`, `pg`, `redis`: any other client error.

mod driver;
mod pg;
mod redis;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use self::driver::{DrillDriver, WriteAck, crate_kind, writer_id};
pub use self::pg::{ALL_IDS_SQL, INSERT_SQL, READ_SQL, TABLE_SQL, pg_kind, sqlx_kind};
pub use self::redis::{KEY_PREFIX, id_of_key, redis_key, redis_kind};
pub use super::scenario::DrillBackend;
use crate::pool::{Backend, FailoverPool};

/// How long a worker sleeps after an error.
const ERROR_PAUSE: Duration = Duration::from_millis(5);

/// One write attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteRecord {
    /// The id inserted (unique over the drill).
    pub id: i64,
    /// The writer task's number.
    pub writer: u32,
    /// When the attempt started, since the drill's start.
    pub start: Duration,
    /// When it ended (for a success: when it was acknowledged).
    pub end: Duration,
    /// `None` for an acknowledged write, else the error kind.
    pub error: Option<String>,
}

impl WriteRecord {
    /// Whether the write was acknowledged.
    pub fn is_ok(&self) -> bool {
        self.error.is_none()
    }
}

/// One read attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadRecord {
    /// The reader task's number.
    pub reader: u32,
    /// When the read started, since the drill's start.
    pub start: Duration,
    /// When it ended.
    pub end: Duration,
    /// The id checked: the sibling writer's latest acknowledged id when the
    /// read started (`None` before its first acknowledged write).
    pub checked_id: Option<i64>,
    /// `Ok(seen)` for a successful read (whether row `checked_id` was
    /// there), else the error kind.
    pub result: Result<bool, String>,
}

impl ReadRecord {
    /// Whether the read succeeded.
    pub fn is_ok(&self) -> bool {
        self.result.is_ok()
    }

    /// Whether it is a stale read: it succeeded, checked an id and did not
    /// see it (see the [module docs](self#readers-and-stale-reads)).
    pub fn is_stale(&self) -> bool {
        self.checked_id.is_some() && matches!(self.result, Ok(false))
    }
}

/// Settings of a [`Workload`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkloadConfig {
    /// Number of writer tasks (at least one).
    pub writers: usize,
    /// Number of reader tasks.
    pub readers: usize,
    /// Client-side limit of one operation.
    pub op_timeout: Duration,
    /// How writes wait for replicas (Redis `WAIT`); `None`: plain writes.
    pub ack: Option<WriteAck>,
}

/// Running totals, for progress display.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkloadCounters {
    /// Acknowledged writes.
    pub ok_writes: u64,
    /// Successful reads.
    pub ok_reads: u64,
    /// Failed operations (writes and reads).
    pub errors: u64,
}

#[derive(Debug)]
struct Shared<B: Backend> {
    pool: FailoverPool<B>,
    t0: Instant,
    op_timeout: Duration,
    ack: Option<WriteAck>,
    stop: AtomicBool,
    next_id: AtomicI64,
    /// Per writer: its latest acknowledged id (0: none yet).
    last_acked: Vec<AtomicI64>,
    ok_writes: AtomicU64,
    ok_reads: AtomicU64,
    errors: AtomicU64,
    /// The latest start time of an acknowledged write, in microseconds
    /// since `t0`.
    last_acked_start_us: AtomicU64,
}

/// Everything the workload recorded.
#[derive(Debug, Clone, Default)]
pub struct WorkloadRecords {
    /// Every write attempt, by id.
    pub writes: Vec<WriteRecord>,
    /// Every read attempt, by start time.
    pub reads: Vec<ReadRecord>,
}

/// The running writer and reader tasks.
#[derive(Debug)]
pub struct Workload<B: Backend> {
    shared: Arc<Shared<B>>,
    writers: Vec<JoinHandle<Vec<WriteRecord>>>,
    readers: Vec<JoinHandle<Vec<ReadRecord>>>,
}

impl<B: DrillDriver> Workload<B> {
    /// Starts the writer and reader tasks; times are recorded relative to
    /// `t0`. Ids start at 1.
    pub fn start(pool: FailoverPool<B>, config: WorkloadConfig, t0: Instant) -> Workload<B> {
        let writers = config.writers.max(1);
        let shared = Arc::new(Shared {
            pool,
            t0,
            op_timeout: config.op_timeout,
            ack: config.ack,
            stop: AtomicBool::new(false),
            next_id: AtomicI64::new(1),
            last_acked: (0..writers).map(|_| AtomicI64::new(0)).collect(),
            ok_writes: AtomicU64::new(0),
            ok_reads: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            last_acked_start_us: AtomicU64::new(0),
        });
        let writer_tasks = (0..writers)
            .map(|w| tokio::spawn(write_loop(Arc::clone(&shared), w)))
            .collect();
        let reader_tasks = (0..config.readers)
            .map(|r| tokio::spawn(read_loop(Arc::clone(&shared), r, r % writers)))
            .collect();
        Workload {
            shared,
            writers: writer_tasks,
            readers: reader_tasks,
        }
    }

    /// The totals so far.
    pub fn counters(&self) -> WorkloadCounters {
        WorkloadCounters {
            ok_writes: self.shared.ok_writes.load(Ordering::Relaxed),
            ok_reads: self.shared.ok_reads.load(Ordering::Relaxed),
            errors: self.shared.errors.load(Ordering::Relaxed),
        }
    }

    /// When the latest-started acknowledged write started (since `t0`),
    /// if any was acknowledged.
    pub fn last_acked_start(&self) -> Option<Duration> {
        match self.shared.last_acked_start_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// Stops every task (operations in flight finish or time out) and
    /// returns the records.
    pub async fn stop(self) -> WorkloadRecords {
        self.shared.stop.store(true, Ordering::Relaxed);
        let mut records = WorkloadRecords::default();
        for handle in self.writers {
            // A panicked task loses its records; the drill reports what is left.
            if let Ok(mut w) = handle.await {
                records.writes.append(&mut w);
            }
        }
        for handle in self.readers {
            if let Ok(mut r) = handle.await {
                records.reads.append(&mut r);
            }
        }
        records.writes.sort_by_key(|w| w.id);
        records.reads.sort_by_key(|r| r.start);
        records
    }
}

async fn write_loop<B: DrillDriver>(shared: Arc<Shared<B>>, writer: usize) -> Vec<WriteRecord> {
    let mut records = Vec::new();
    let writer_no = writer as i32;
    while !shared.stop.load(Ordering::Relaxed) {
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let start = shared.t0.elapsed();
        let insert = B::insert(&shared.pool, id, writer_no, shared.ack);
        let result = tokio::time::timeout(shared.op_timeout, insert).await;
        let end = shared.t0.elapsed();
        let error = match result {
            Ok(Ok(())) => None,
            Ok(Err(kind)) => Some(kind),
            Err(_) => Some("timeout".to_owned()),
        };
        let ok = error.is_none();
        records.push(WriteRecord {
            id,
            writer: writer as u32,
            start,
            end,
            error,
        });
        if ok {
            shared.last_acked[writer].store(id, Ordering::Relaxed);
            shared.ok_writes.fetch_add(1, Ordering::Relaxed);
            let us = start.as_micros().max(1) as u64;
            shared.last_acked_start_us.fetch_max(us, Ordering::Relaxed);
        } else {
            shared.errors.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(ERROR_PAUSE).await;
        }
    }
    records
}

async fn read_loop<B: DrillDriver>(
    shared: Arc<Shared<B>>,
    reader: usize,
    sibling: usize,
) -> Vec<ReadRecord> {
    let mut records = Vec::new();
    while !shared.stop.load(Ordering::Relaxed) {
        let acked = shared.last_acked[sibling].load(Ordering::Relaxed);
        let checked_id = (acked > 0).then_some(acked);
        let start = shared.t0.elapsed();
        let result =
            tokio::time::timeout(shared.op_timeout, B::read_row(&shared.pool, acked)).await;
        let end = shared.t0.elapsed();
        let result = match result {
            Ok(r) => r,
            Err(_) => Err("timeout".to_owned()),
        };
        let ok = result.is_ok();
        records.push(ReadRecord {
            reader: reader as u32,
            start,
            end,
            checked_id,
            result,
        });
        if ok {
            shared.ok_reads.fetch_add(1, Ordering::Relaxed);
        } else {
            shared.errors.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(ERROR_PAUSE).await;
        }
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_reads_need_a_checked_id() {
        let read = |checked_id, result| ReadRecord {
            reader: 0,
            start: Duration::ZERO,
            end: Duration::ZERO,
            checked_id,
            result,
        };
        assert!(read(Some(5), Ok(false)).is_stale());
        assert!(!read(Some(5), Ok(true)).is_stale());
        assert!(!read(None, Ok(false)).is_stale());
        assert!(!read(Some(5), Err("io".into())).is_stale());
    }

    #[test]
    fn crate_errors_use_their_code() {
        let e = crate::Error::NoNode {
            wanted: "writer",
            waited: Duration::from_secs(1),
            last: None,
        };
        assert_eq!(crate_kind(&e), "no_node");
    }
}

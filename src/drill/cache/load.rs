//! The cache drill's workload: writer tasks that set (3 in 4) or delete
//! (1 in 4) the keys they own, reader tasks that read random keys, every
//! call timed and the last acknowledged operation of every key kept, so
//! that what the sides hold afterwards can be checked key by key.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::cache::{CacheError, FailoverCache, WriteAck};

/// Errors kept as text per load (the rest are only counted).
const ERROR_SAMPLES: usize = 20;

/// The shape of a [`run_load`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// Writer tasks; writer `w` owns the keys `k` with `k % writers == w`,
    /// so the last operation of every key is known.
    pub writers: usize,
    /// Reader tasks, each reading random keys.
    pub readers: usize,
    /// The keys, `0..keys` (under the cache's prefix).
    pub keys: usize,
    /// The TTL of every value written.
    pub ttl: Duration,
    /// The pause between two calls of one task.
    pub pace: Duration,
}

/// Running totals of a load, readable while it runs (for progress).
#[derive(Debug, Default)]
pub struct LoadCounters {
    /// Calls that returned `Ok`.
    pub ok: AtomicU64,
    /// Calls that returned an error.
    pub errors: AtomicU64,
}

impl LoadCounters {
    fn count(&self, ok: bool) {
        let counter = if ok { &self.ok } else { &self.errors };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The last acknowledged operation on a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LastOp {
    /// Set to this value.
    Set {
        /// The value.
        value: u64,
        /// The cache's acknowledgement.
        ack: WriteAck,
    },
    /// Deleted.
    Deleted {
        /// The cache's acknowledgement.
        ack: WriteAck,
    },
}

impl LastOp {
    /// The cache's acknowledgement of the operation.
    pub fn ack(&self) -> &WriteAck {
        match self {
            LastOp::Set { ack, .. } | LastOp::Deleted { ack } => ack,
        }
    }
}

/// One call of the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    /// When it started, since the load's `origin`.
    pub at: Duration,
    /// How long it took.
    pub took: Duration,
    /// A write (set or delete), or a read.
    pub write: bool,
    /// Whether it returned `Ok`.
    pub ok: bool,
}

/// What a load saw.
#[derive(Debug, Clone, Default)]
pub struct LoadRecord {
    /// Per key, the last acknowledged operation.
    pub last: BTreeMap<String, LastOp>,
    /// Every call, in no particular order.
    pub calls: Vec<Call>,
    /// The first errors returned to callers, as text.
    pub error_samples: Vec<String>,
    /// Acknowledged writes (sets and deletes).
    pub acked_writes: u64,
    /// Writes that returned an error.
    pub write_errors: u64,
    /// Reads answered (a value or nothing).
    pub reads: u64,
    /// Reads that returned an error.
    pub read_errors: u64,
    /// Acknowledged writes that were queued for a side by the time they
    /// returned.
    pub queued: u64,
}

impl LoadRecord {
    /// Errors returned to callers, reads and writes.
    pub fn caller_errors(&self) -> u64 {
        self.write_errors + self.read_errors
    }

    /// Adds another task's record to this one.
    pub fn merge(&mut self, other: LoadRecord) {
        self.last.extend(other.last);
        self.calls.extend(other.calls);
        let room = ERROR_SAMPLES.saturating_sub(self.error_samples.len());
        self.error_samples
            .extend(other.error_samples.into_iter().take(room));
        self.acked_writes += other.acked_writes;
        self.write_errors += other.write_errors;
        self.reads += other.reads;
        self.read_errors += other.read_errors;
        self.queued += other.queued;
    }

    fn error(&mut self, e: &CacheError) {
        if self.error_samples.len() < ERROR_SAMPLES {
            self.error_samples.push(crate::error::chain(e));
        }
    }
}

/// Writes every key once (value 0), so that a side restarted empty misses
/// all of them; the acknowledgements, per key.
///
/// # Errors
///
/// The first write that failed.
pub async fn preload(
    cache: &FailoverCache,
    keys: usize,
    ttl: Duration,
) -> Result<BTreeMap<String, LastOp>, CacheError> {
    let mut last = BTreeMap::new();
    for k in 0..keys {
        let key = k.to_string();
        let ack = cache.set(&key, &0u64, ttl).await?;
        last.insert(key, LastOp::Set { value: 0, ack });
    }
    Ok(last)
}

/// Runs the load until `stop` is raised; call times are measured from
/// `origin`, every call is counted in `counters` as it returns.
///
/// # Panics
///
/// When `opts.writers` or `opts.keys` is 0, or `keys < writers`.
pub async fn run_load(
    cache: FailoverCache,
    opts: LoadOptions,
    origin: Instant,
    stop: Arc<AtomicBool>,
    counters: Arc<LoadCounters>,
) -> LoadRecord {
    assert!(
        opts.writers > 0 && opts.keys >= opts.writers,
        "a load needs writers and at least one key per writer"
    );
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..opts.writers {
        let task = Task {
            cache: cache.clone(),
            opts,
            origin,
            stop: stop.clone(),
            counters: counters.clone(),
        };
        tasks.spawn(task.write_loop(w));
    }
    for _ in 0..opts.readers {
        let task = Task {
            cache: cache.clone(),
            opts,
            origin,
            stop: stop.clone(),
            counters: counters.clone(),
        };
        tasks.spawn(task.read_loop());
    }
    let mut all = LoadRecord::default();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(record) => all.merge(record),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => {}
        }
    }
    all
}

/// What one task of a load works with.
struct Task {
    cache: FailoverCache,
    opts: LoadOptions,
    origin: Instant,
    stop: Arc<AtomicBool>,
    counters: Arc<LoadCounters>,
}

impl Task {
    /// Records one call.
    fn record(&self, record: &mut LoadRecord, started: Instant, write: bool, ok: bool) {
        self.counters.count(ok);
        record.calls.push(Call {
            at: started - self.origin,
            took: started.elapsed(),
            write,
            ok,
        });
    }

    /// Writer `w`: sets (3 in 4) or deletes (1 in 4) one of its keys per call.
    async fn write_loop(self, w: usize) -> LoadRecord {
        let (cache, opts) = (&self.cache, self.opts);
        let mut record = LoadRecord::default();
        let mine: Vec<usize> = (0..opts.keys).filter(|k| k % opts.writers == w).collect();
        let mut n = 0u64;
        while !self.stop.load(Ordering::Relaxed) {
            n += 1;
            let key = mine[fastrand::usize(..mine.len())].to_string();
            let started = Instant::now();
            let result = if fastrand::u8(..4) == 0 {
                cache.delete(&key).await.map(|ack| LastOp::Deleted { ack })
            } else {
                let value = (w as u64) << 32 | n;
                (cache.set(&key, &value, opts.ttl).await).map(|ack| LastOp::Set { value, ack })
            };
            self.record(&mut record, started, true, result.is_ok());
            match result {
                Ok(op) => {
                    record.acked_writes += 1;
                    record.queued += u64::from(op.ack().queued_for.is_some());
                    record.last.insert(key, op);
                }
                Err(e) => {
                    record.write_errors += 1;
                    record.error(&e);
                }
            }
            tokio::time::sleep(opts.pace).await;
        }
        record
    }

    /// A reader: one `get` of a random key per call.
    async fn read_loop(self) -> LoadRecord {
        let mut record = LoadRecord::default();
        while !self.stop.load(Ordering::Relaxed) {
            let key = fastrand::usize(..self.opts.keys).to_string();
            let started = Instant::now();
            let result = self.cache.get::<u64>(&key).await;
            self.record(&mut record, started, false, result.is_ok());
            match result {
                Ok(_) => record.reads += 1,
                Err(e) => {
                    record.read_errors += 1;
                    record.error(&e);
                }
            }
            tokio::time::sleep(self.opts.pace).await;
        }
        record
    }
}

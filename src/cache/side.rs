//! One side of the cache: a [`FailoverRedis`] with its health (up, or down
//! until it answers a `PING`), its repair queue, its divergence state and
//! its counters; and the commands the cache sends it, each bounded by a
//! timeout.

use super::entry::{CasReply, Stored, cas_cmd};
use super::error::{SideError, SideErrorKind};
use super::events::{CacheEventKind, EventBus};
use super::queue::{Pending, Pushed, RepairQueue};
use super::stats::{SideCounters, SideStats};
use crate::redis::{FailoverRedis, classify};
use ::redis::{Cmd, ErrorKind, RedisError, Script, ServerErrorKind, Value};
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The writer and replication history a side was last seen with.
type Identity = (Arc<str>, Arc<str>);

/// See the [module docs](self).
#[derive(Debug)]
pub(crate) struct Side {
    pub(crate) name: Arc<str>,
    pub(crate) redis: FailoverRedis,
    /// Built by the cache from URLs: closed with it.
    pub(crate) owned: bool,
    up: AtomicBool,
    down_since: Mutex<Option<Instant>>,
    /// Moving average of answer times, in microseconds: kept only for
    /// [`ReadFrom::Nearest`](super::ReadFrom::Nearest), the one reader.
    ewma_us: AtomicU64,
    track_latency: bool,
    pub(crate) queue: RepairQueue,
    /// Wakes the side's repair loop.
    pub(crate) wake: Arc<Notify>,
    /// Key scans asked for (divergence) and done: a scan is due while
    /// `wanted > done`.
    wanted: AtomicU64,
    done: AtomicU64,
    /// Divergent and no scan started since: missed writes are not queued.
    skip_queue: AtomicBool,
    identity: Mutex<Option<Identity>>,
    pub(crate) counters: SideCounters,
    events: Arc<EventBus>,
    write_timeout: Duration,
    read_timeout: Duration,
}

impl Side {
    pub(crate) fn new(
        name: Arc<str>,
        redis: FailoverRedis,
        owned: bool,
        counters: SideCounters,
        events: Arc<EventBus>,
        config: &super::CacheConfig,
    ) -> Self {
        let side = Side {
            name,
            identity: Mutex::new(identity_of(&redis)),
            redis,
            owned,
            up: AtomicBool::new(true),
            down_since: Mutex::new(None),
            ewma_us: AtomicU64::new(1000),
            track_latency: config.read_from == super::ReadFrom::Nearest,
            queue: RepairQueue::new(config.queue.max_entries, config.queue.max_bytes),
            wake: Arc::new(Notify::new()),
            wanted: AtomicU64::new(0),
            done: AtomicU64::new(0),
            skip_queue: AtomicBool::new(false),
            counters,
            events,
            write_timeout: config.write_timeout,
            read_timeout: config.read_timeout,
        };
        side.counters.up.set(1.0);
        side
    }

    /// Whether calls are sent to the side now: it has not failed since its
    /// last health check, and its pool knows a master. A side whose pool
    /// lost its master is marked down here.
    pub(crate) fn available(&self) -> bool {
        if !self.up.load(Relaxed) {
            return false;
        }
        if self.redis.topology().writer.is_none() {
            self.mark_down(|| "its pool knows no master".to_owned());
            return false;
        }
        true
    }

    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Relaxed)
    }

    /// Whether the side may lack entries the other has: something queued
    /// for it, or a key scan due. Reads ask such a side last, and a miss
    /// there is checked on the other side.
    pub(crate) fn lagging(&self) -> bool {
        self.queue.len() > 0 || self.divergent()
    }

    /// Whether a key scan is due.
    pub(crate) fn divergent(&self) -> bool {
        self.wanted.load(Relaxed) > self.done.load(Relaxed)
    }

    /// The recent answer time (for [`ReadFrom::Nearest`](super::ReadFrom::Nearest)).
    pub(crate) fn latency_us(&self) -> u64 {
        self.ewma_us.load(Relaxed)
    }

    fn observe_latency(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let old = self.ewma_us.load(Relaxed);
        self.ewma_us
            .store((old - old / 8).saturating_add(us / 8), Relaxed);
    }

    /// Stops sending calls to the side until it answers a health check.
    pub(crate) fn mark_down(&self, reason: impl FnOnce() -> String) {
        if self.up.swap(false, Relaxed) {
            *self.down_since.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
            self.counters.up.set(0.0);
            let reason = reason();
            tracing::warn!(side = %self.name, %reason, "cache side down");
            self.events.emit(CacheEventKind::SideDown {
                side: Arc::clone(&self.name),
                reason,
            });
            self.wake.notify_one();
        }
    }

    /// Sends calls to the side again.
    pub(crate) fn mark_up(&self) {
        if !self.up.swap(true, Relaxed) {
            let since = self
                .down_since
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            self.counters.up.set(1.0);
            let down_for = since.map_or(Duration::ZERO, |s| s.elapsed());
            tracing::info!(side = %self.name, ?down_for, "cache side up");
            self.events.emit(CacheEventKind::SideUp {
                side: Arc::clone(&self.name),
                down_for,
            });
        }
    }

    /// Judges a failed call: an outage marks the side down.
    fn failed(&self, kind: SideErrorKind, what: &str) -> SideError {
        let e = SideError::new(&self.name, kind);
        if e.is_outage() {
            self.mark_down(|| format!("{what}: {e}"));
        }
        e
    }

    /// Runs `call` under `limit`, judging its failure.
    async fn bounded<T>(
        &self,
        what: &str,
        limit: Duration,
        call: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, SideError> {
        match tokio::time::timeout(limit, self.judged(what, call)).await {
            Ok(r) => r,
            Err(_) => Err(self.timed_out(what, limit)),
        }
    }

    /// Runs `call` if the side is available, judging its failure; the
    /// caller bounds it in time (see [`timed_out`](Self::timed_out)).
    async fn judged<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, SideError> {
        if !self.available() {
            return Err(SideError::new(&self.name, SideErrorKind::Down));
        }
        let start = self.track_latency.then(Instant::now);
        match call.await {
            Ok(v) => {
                if let Some(start) = start {
                    self.observe_latency(start.elapsed());
                }
                Ok(v)
            }
            Err(e) => Err(self.failed(SideErrorKind::Redis(Box::new(e)), what)),
        }
    }

    /// The error of a call that did not end within `limit`, judged: the
    /// side is marked down.
    pub(crate) fn timed_out(&self, what: &str, limit: Duration) -> SideError {
        self.failed(SideErrorKind::Timeout(limit), what)
    }

    /// Writes one entry by compare-and-set: `cmd` is its `EVALSHA`
    /// ([`cas_cmd`](super::entry::cas_cmd)); on `NOSCRIPT` (a restarted
    /// server) the script is loaded and the call sent again. Bounded by the
    /// write timeout.
    pub(crate) async fn cas(&self, script: &Script, cmd: &Cmd) -> Result<CasReply, SideError> {
        match tokio::time::timeout(self.write_timeout, self.cas_unbounded(script, cmd)).await {
            Ok(r) => r,
            Err(_) => Err(self.timed_out("write", self.write_timeout)),
        }
    }

    /// [`cas`](Self::cas) without its timeout: for a caller that bounds
    /// both sides' calls with one timer, and calls
    /// [`timed_out`](Self::timed_out) for a side that did not answer.
    pub(crate) async fn cas_unbounded(
        &self,
        script: &Script,
        cmd: &Cmd,
    ) -> Result<CasReply, SideError> {
        let mut conn = self.redis.clone();
        let call = async {
            match cmd.query_async::<i64>(&mut conn).await {
                Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                    script.load_async(&mut conn).await?;
                    cmd.query_async(&mut conn).await
                }
                r => r,
            }
        };
        let code = self.judged("write", call).await?;
        CasReply::from_code(code).ok_or_else(|| unexpected(&self.name, code))
    }

    /// Writes many entries by compare-and-set in one pipeline (the script
    /// is loaded first in the same pipeline). One answer per entry; a
    /// failure of the whole pipeline is the `Err`. Bounded by the write
    /// timeout.
    pub(crate) async fn cas_many(
        &self,
        script: &Script,
        items: &[(&[u8], &[u8], u64)],
    ) -> Result<Vec<Result<CasReply, RedisError>>, SideError> {
        let call = self.cas_many_unbounded(script, items);
        match tokio::time::timeout(self.write_timeout, call).await {
            Ok(r) => r,
            Err(_) => Err(self.timed_out("write", self.write_timeout)),
        }
    }

    /// [`cas_many`](Self::cas_many) without its timeout (see
    /// [`cas_unbounded`](Self::cas_unbounded)).
    pub(crate) async fn cas_many_unbounded(
        &self,
        script: &Script,
        items: &[(&[u8], &[u8], u64)],
    ) -> Result<Vec<Result<CasReply, RedisError>>, SideError> {
        let mut pipe = ::redis::pipe();
        pipe.load_script(script).ignore();
        for (key, entry, at) in items {
            pipe.add_command(cas_cmd(script, key, entry, *at, false));
        }
        pipe.ignore_errors();
        let mut conn = self.redis.clone();
        let values: Vec<Value> = self.judged("write", pipe.query_async(&mut conn)).await?;
        Ok(values
            .into_iter()
            .map(|v| match v {
                Value::Int(code) => CasReply::from_code(code).ok_or_else(|| {
                    RedisError::from((
                        ErrorKind::UnexpectedReturnType,
                        "cache script",
                        code.to_string(),
                    ))
                }),
                Value::ServerError(e) => Err(RedisError::from(e)),
                other => Err(RedisError::from((
                    ErrorKind::UnexpectedReturnType,
                    "cache script",
                    format!("{other:?}"),
                ))),
            })
            .collect())
    }

    /// Reads one key.
    pub(crate) async fn get(&self, key: &[u8]) -> Result<Stored, SideError> {
        let mut conn = self.redis.clone();
        let cmd = ::redis::cmd("GET").arg(key).take();
        let v: Option<Vec<u8>> = self
            .bounded("read", self.read_timeout, cmd.query_async(&mut conn))
            .await
            .inspect_err(|_| self.counters.read_errors.inc())?;
        Ok(Stored::parse(v.map(Bytes::from)))
    }

    /// Reads many keys (`MGET`).
    pub(crate) async fn mget(&self, keys: &[Vec<u8>]) -> Result<Vec<Stored>, SideError> {
        let mut conn = self.redis.clone();
        let cmd = ::redis::cmd("MGET").arg(keys).take();
        let vs: Vec<Option<Vec<u8>>> = self
            .bounded("read", self.read_timeout, cmd.query_async(&mut conn))
            .await
            .inspect_err(|_| self.counters.read_errors.inc())?;
        Ok(vs
            .into_iter()
            .map(|v| Stored::parse(v.map(Bytes::from)))
            .collect())
    }

    /// One `SCAN` step over keys matching `pattern`.
    pub(crate) async fn scan(
        &self,
        cursor: u64,
        pattern: &str,
        count: usize,
    ) -> Result<(u64, Vec<Vec<u8>>), SideError> {
        let mut conn = self.redis.clone();
        let cmd = ::redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(count)
            .take();
        self.bounded("scan", self.read_timeout, cmd.query_async(&mut conn))
            .await
    }

    /// The health check: a `PING` under the write timeout, bypassing the
    /// up/down state.
    pub(crate) async fn ping(&self) -> Result<(), String> {
        let mut conn = self.redis.clone();
        let cmd = ::redis::cmd("PING");
        match tokio::time::timeout(self.write_timeout, cmd.query_async::<String>(&mut conn)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.write_timeout)),
        }
    }

    /// Queues a write the side missed. An overflow makes the side divergent
    /// (the queue is given up: a key scan covers it); while divergent and
    /// before the scan starts, nothing is queued.
    pub(crate) fn enqueue(&self, p: Pending, key: &str, reason: impl FnOnce() -> String) {
        if self.skip_queue.load(Relaxed) {
            self.counters.dropped_divergent.inc();
            return;
        }
        let was_empty = self.queue.len() == 0;
        match self.queue.push(p) {
            Pushed::Added | Pushed::Replaced => {
                self.counters.queued.inc();
                if self.events.listened() {
                    self.events.emit(CacheEventKind::WriteQueued {
                        side: Arc::clone(&self.name),
                        key: key.to_owned(),
                        reason: reason(),
                    });
                }
            }
            Pushed::Stale => self.counters.queued.inc(),
            Pushed::Overflow => {
                self.counters.dropped_overflow.inc();
                self.diverge("its repair queue is full", true);
            }
        }
        self.update_gauges();
        if was_empty {
            self.wake.notify_one();
        }
    }

    /// Makes the side divergent: a key scan is due. With `give_up`, the
    /// queue is emptied and missed writes are not queued until the scan
    /// starts.
    pub(crate) fn diverge(&self, reason: &str, give_up: bool) {
        let dropped = if give_up {
            self.skip_queue.store(true, Relaxed);
            let n = self.queue.clear();
            self.counters.dropped_overflow.add(n as u64);
            n
        } else {
            0
        };
        self.wanted.fetch_add(1, Relaxed);
        self.counters.divergences.inc();
        self.counters.divergent.set(1.0);
        self.update_gauges();
        tracing::warn!(side = %self.name, reason, dropped, "cache side divergent");
        self.events.emit(CacheEventKind::Divergent {
            side: Arc::clone(&self.name),
            reason: reason.to_owned(),
            dropped,
        });
        self.wake.notify_one();
    }

    /// A key scan starts: missed writes are queued again from now on.
    /// Returns the divergence it covers.
    pub(crate) fn scan_started(&self) -> u64 {
        self.skip_queue.store(false, Relaxed);
        self.wanted.load(Relaxed)
    }

    /// A key scan that started at divergence `covered` finished.
    pub(crate) fn scan_finished(&self, covered: u64) {
        self.done.fetch_max(covered, Relaxed);
        if !self.divergent() {
            self.counters.divergent.set(0.0);
        }
    }

    /// Checks whether the side's master or replication history changed
    /// (a restart without persistence, a failover that may have lost
    /// writes) or is seen for the first time (the side was down when the
    /// cache started): then a key scan is due.
    pub(crate) fn check_identity(&self) {
        let Some(now) = identity_of(&self.redis) else {
            return;
        };
        let mut seen = self.identity.lock().unwrap_or_else(|e| e.into_inner());
        // Unknown before: the side was down when the cache started, and
        // may lack what a previous process wrote.
        let changed = seen.as_ref() != Some(&now);
        *seen = Some(now);
        drop(seen);
        if changed {
            self.diverge(
                "its master or replication history changed (or was unknown)",
                false,
            );
        }
    }

    pub(crate) fn update_gauges(&self) {
        self.counters.backlog.set(self.queue.len() as f64);
        self.counters.backlog_bytes.set(self.queue.bytes() as f64);
    }

    pub(crate) fn stats(&self) -> SideStats {
        let c = &self.counters;
        SideStats {
            name: Arc::clone(&self.name),
            up: self.is_up(),
            divergent: self.divergent(),
            backlog: self.queue.len(),
            backlog_bytes: self.queue.bytes(),
            acked_writes: c.acked.get(),
            queued_writes: c.queued.get(),
            failed_writes: c.failed.get(),
            replayed: c.replayed.get(),
            superseded: c.superseded.get(),
            rejected: c.rejected.get(),
            dropped_overflow: c.dropped_overflow.get(),
            dropped_divergent: c.dropped_divergent.get(),
            expired_in_queue: c.expired.get(),
            divergences: c.divergences.get(),
            reconciled_keys: c.reconciled.get(),
            read_hits: c.hits.get(),
            read_misses: c.misses.get(),
            read_errors: c.read_errors.get(),
            read_repairs: c.read_repairs.get(),
        }
    }
}

/// The side's writer and its replication history, if the pool knows them.
fn identity_of(redis: &FailoverRedis) -> Option<Identity> {
    let topo = redis.topology();
    let w = topo.writer_status()?;
    Some((Arc::clone(&w.id), Arc::clone(&w.lineage.as_ref()?.id)))
}

fn unexpected(side: &Arc<str>, code: i64) -> SideError {
    SideError::new(
        side,
        SideErrorKind::Redis(Box::new(RedisError::from((
            ErrorKind::UnexpectedReturnType,
            "cache script",
            code.to_string(),
        )))),
    )
}

/// Whether a Redis error says the side is unreachable.
pub(crate) fn is_outage(e: &RedisError) -> bool {
    classify(e).is_failover()
}

//! The write path: one entry sent to both sides at once by compare-and-set,
//! answered by the write policy, and queued for the side that missed it.
//!
//! Whether a side missed a write is decided only once both sides have
//! answered (for `PrimaryThenAsync` and `Any`, in a task that outlives the
//! call), so a key scan that starts after the decision finds the write on
//! the side that has it. A caller that stops waiting for a `Both` or
//! `RequireBoth` write (its future dropped) leaves the write queued for
//! both sides: whatever reached a side, both end up with it.

use super::Inner;
use super::config::WritePolicy;
use super::entry::CasReply;
use super::error::{CacheError, SideError};
use super::queue::Pending;
use super::version::Version;
use bytes::Bytes;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, oneshot};

/// What a successful write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteAck {
    /// The entry's version.
    pub version: Version,
    /// When the entry expires, Unix milliseconds (also set on the keys).
    pub expires_at: u64,
    /// The side that missed the write and has it queued, when known by the
    /// time the call returned.
    pub queued_for: Option<Arc<str>>,
}

/// One entry on its way to both sides.
#[derive(Debug)]
pub(crate) struct Write {
    /// The key, prefix included.
    pub(crate) key: Vec<u8>,
    /// Header and payload.
    pub(crate) entry: Bytes,
    pub(crate) version: Version,
    pub(crate) expires_at: u64,
}

impl Write {
    fn pending(&self) -> Pending {
        Pending {
            key: Bytes::copy_from_slice(&self.key),
            entry: self.entry.clone(),
            version: self.version,
            expires_at: self.expires_at,
        }
    }

    fn ack(&self, queued_for: Option<Arc<str>>) -> WriteAck {
        WriteAck {
            version: self.version,
            expires_at: self.expires_at,
            queued_for,
        }
    }
}

/// How one side's attempt ended.
type Attempt = Result<CasReply, SideError>;

/// Queues writes for both sides if the call is dropped before both
/// sides answered.
struct Unsettled<'a> {
    inner: &'a Inner,
    keys: &'a [&'a str],
    ws: &'a [Write],
    armed: bool,
}

impl Drop for Unsettled<'_> {
    fn drop(&mut self) {
        if self.armed {
            for side in &self.inner.sides {
                for (key, w) in self.keys.iter().zip(self.ws) {
                    side.enqueue(w.pending(), key, || {
                        "the caller stopped waiting for the write".to_owned()
                    });
                }
            }
        }
    }
}

impl Inner {
    /// The compare-and-set call of `w`.
    fn cas_cmd(&self, w: &Write, nx: bool) -> ::redis::Cmd {
        super::entry::cas_cmd(&self.script, &w.key, &w.entry, w.expires_at, nx)
    }

    /// Runs one call on each side at once under one timer of the write
    /// timeout (not one per side): a side that has not answered by then
    /// failed by timeout, and is judged so.
    async fn both_in_time<T>(
        &self,
        fa: impl Future<Output = Result<T, SideError>>,
        fb: impl Future<Output = Result<T, SideError>>,
    ) -> [Result<T, SideError>; 2] {
        let limit = self.config.write_timeout;
        let timer = tokio::time::sleep(limit);
        tokio::pin!(fa, fb, timer);
        let (mut ra, mut rb) = (None, None);
        while ra.is_none() || rb.is_none() {
            tokio::select! {
                biased;
                r = &mut fa, if ra.is_none() => ra = Some(r),
                r = &mut fb, if rb.is_none() => rb = Some(r),
                () = &mut timer => break,
            }
        }
        let [a, b] = &self.sides;
        [
            ra.unwrap_or_else(|| Err(a.timed_out("write", limit))),
            rb.unwrap_or_else(|| Err(b.timed_out("write", limit))),
        ]
    }

    /// Writes `w` to both sides by the write policy.
    pub(crate) async fn write(
        self: &Arc<Self>,
        op: &'static str,
        key: &str,
        w: Write,
    ) -> Result<WriteAck, CacheError> {
        if self.is_closed() {
            return Err(CacheError::Closed);
        }
        let policy = self.config.write_policy;
        if matches!(policy, WritePolicy::PrimaryThenAsync | WritePolicy::Any)
            && let Ok(permit) = Arc::clone(&self.async_writes).try_acquire_owned()
        {
            return self.write_detached(op, key, w, permit).await;
        }
        self.write_inline(op, key, &w).await
    }

    /// Both sides at once, answered when both have answered.
    async fn write_inline(
        &self,
        op: &'static str,
        key: &str,
        w: &Write,
    ) -> Result<WriteAck, CacheError> {
        let mut guard = Unsettled {
            inner: self,
            keys: std::slice::from_ref(&key),
            ws: std::slice::from_ref(w),
            armed: true,
        };
        let cmd = self.cas_cmd(w, false);
        let [a, b] = &self.sides;
        let results = self
            .both_in_time(
                a.cas_unbounded(&self.script, &cmd),
                b.cas_unbounded(&self.script, &cmd),
            )
            .await;
        guard.armed = false;
        self.settle(op, key, w, results)
    }

    /// Both sides at once in a task of their own; answered as soon as the
    /// policy allows, settled when both have answered.
    async fn write_detached(
        self: &Arc<Self>,
        op: &'static str,
        key: &str,
        w: Write,
        permit: OwnedSemaphorePermit,
    ) -> Result<WriteAck, CacheError> {
        let (tx, rx) = oneshot::channel();
        let inner = Arc::clone(self);
        let key = key.to_owned();
        tokio::spawn(async move {
            let _permit = permit;
            let [a, b] = &inner.sides;
            let cmd = inner.cas_cmd(&w, false);
            let fa = a.cas_unbounded(&inner.script, &cmd);
            let fb = b.cas_unbounded(&inner.script, &cmd);
            // One timer for both sides.
            let limit = inner.config.write_timeout;
            let timer = tokio::time::sleep(limit);
            tokio::pin!(fa, fb, timer);
            let (mut ra, mut rb): (Option<Attempt>, Option<Attempt>) = (None, None);
            let mut tx = Some(tx);
            while ra.is_none() || rb.is_none() {
                tokio::select! {
                    biased;
                    r = &mut fa, if ra.is_none() => ra = Some(r),
                    r = &mut fb, if rb.is_none() => rb = Some(r),
                    () = &mut timer => {
                        ra = ra.or_else(|| Some(Err(a.timed_out("write", limit))));
                        rb = rb.or_else(|| Some(Err(b.timed_out("write", limit))));
                    }
                }
                let early = match inner.config.write_policy {
                    WritePolicy::Any => matches!(ra, Some(Ok(_))) || matches!(rb, Some(Ok(_))),
                    _ => matches!(ra, Some(Ok(_))),
                };
                if early && let Some(tx) = tx.take() {
                    let _ = tx.send(Ok(w.ack(None)));
                }
            }
            if let (Some(ra), Some(rb)) = (ra, rb) {
                let outcome = inner.settle(op, &key, &w, [ra, rb]);
                if let Some(tx) = tx {
                    let _ = tx.send(outcome);
                }
            }
        });
        rx.await.unwrap_or(Err(CacheError::Closed))
    }

    /// Set-if-absent: decided by one side (the primary unless it is down),
    /// then written to the other by compare-and-set. `None` when a live
    /// value was there.
    pub(crate) async fn write_nx(
        &self,
        op: &'static str,
        key: &str,
        w: Write,
    ) -> Result<Option<WriteAck>, CacheError> {
        if self.is_closed() {
            return Err(CacheError::Closed);
        }
        let first = usize::from(!self.sides[0].available() && self.sides[1].available());
        let second = 1 - first;
        let decided = match self.sides[first]
            .cas(&self.script, &self.cas_cmd(&w, true))
            .await
        {
            Ok(CasReply::Exists | CasReply::Kept) => return Ok(None),
            Ok(reply) => reply,
            Err(e) if e.may_have_executed() => {
                self.sides[first].counters.failed.inc();
                return Err(CacheError::Side {
                    op,
                    key: key.to_owned(),
                    error: e,
                });
            }
            Err(e) => return self.nx_on_second(op, key, &w, first, e).await,
        };
        let mut guard = Unsettled {
            inner: self,
            keys: std::slice::from_ref(&key),
            ws: std::slice::from_ref(&w),
            armed: true,
        };
        let other = self.sides[second]
            .cas(&self.script, &self.cas_cmd(&w, false))
            .await;
        guard.armed = false;
        let results = if first == 0 {
            [Ok(decided), other]
        } else {
            [other, Ok(decided)]
        };
        self.settle(op, key, &w, results).map(Some)
    }

    /// The deciding side certainly did not apply the set-if-absent: the
    /// other decides.
    async fn nx_on_second(
        &self,
        op: &'static str,
        key: &str,
        w: &Write,
        first: usize,
        first_error: SideError,
    ) -> Result<Option<WriteAck>, CacheError> {
        let second = 1 - first;
        let r = self.sides[second]
            .cas(&self.script, &self.cas_cmd(w, true))
            .await;
        match r {
            Ok(CasReply::Exists | CasReply::Kept) => Ok(None),
            r => {
                let results = if first == 0 {
                    [Err(first_error), r]
                } else {
                    [r, Err(first_error)]
                };
                self.settle(op, key, w, results).map(Some)
            }
        }
    }

    /// Writes many entries to both sides at once (one pipeline per side),
    /// whatever the policy; each entry is settled on its own. The first
    /// entry's error, if any, is the error (the others are settled too).
    pub(crate) async fn write_many(
        &self,
        op: &'static str,
        keys: &[&str],
        ws: &[Write],
    ) -> Result<Vec<WriteAck>, CacheError> {
        if self.is_closed() {
            return Err(CacheError::Closed);
        }
        let items: Vec<(&[u8], &[u8], u64)> = ws
            .iter()
            .map(|w| (&w.key[..], &w.entry[..], w.expires_at))
            .collect();
        let mut guard = Unsettled {
            inner: self,
            keys,
            ws,
            armed: true,
        };
        let [a, b] = &self.sides;
        let [ra, rb] = self
            .both_in_time(
                a.cas_many_unbounded(&self.script, &items),
                b.cas_many_unbounded(&self.script, &items),
            )
            .await;
        guard.armed = false;
        type Replies = Result<Vec<Result<CasReply, ::redis::RedisError>>, SideError>;
        let per_entry = |side: &super::side::Side, r: Replies| -> Vec<Attempt> {
            match r {
                Ok(replies) => replies
                    .into_iter()
                    .map(|r| {
                        r.map_err(|e| {
                            SideError::new(
                                &side.name,
                                super::error::SideErrorKind::Redis(Box::new(e)),
                            )
                        })
                    })
                    .collect(),
                Err(e) => vec![Err(e); ws.len()],
            }
        };
        let (ra, rb) = (per_entry(a, ra), per_entry(b, rb));
        let mut acks = Vec::with_capacity(ws.len());
        let mut first_error = None;
        for (((key, w), x), y) in keys.iter().zip(ws).zip(ra).zip(rb) {
            match self.settle(op, key, w, [x, y]) {
                Ok(ack) => acks.push(ack),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(acks), Err)
    }

    /// Counts both answers, queues the write for a side that missed it,
    /// and answers by the policy.
    fn settle(
        &self,
        op: &'static str,
        key: &str,
        w: &Write,
        results: [Attempt; 2],
    ) -> Result<WriteAck, CacheError> {
        for (side, r) in self.sides.iter().zip(&results) {
            if r.is_ok() {
                side.counters.acked.inc();
                if side.queue.len() > 0 {
                    side.queue.settle(&w.key, w.version);
                    side.update_gauges();
                }
            }
        }
        if let Some(fs) = &self.fail_safe
            && results.iter().any(Result::is_ok)
        {
            fs.written(&w.key, &w.entry);
        }
        match results {
            [Ok(_), Ok(_)] => Ok(w.ack(None)),
            [Ok(_), Err(e)] => self.half_written(op, key, w, 0, e),
            [Err(e), Ok(_)] => self.half_written(op, key, w, 1, e),
            [Err(a), Err(b)] => {
                if a.may_have_executed() || b.may_have_executed() {
                    // It may stand on a side: make it stand on both.
                    for side in &self.sides {
                        side.enqueue(w.pending(), key, || {
                            format!("{op} failed on both sides but may have been applied")
                        });
                    }
                } else {
                    for side in &self.sides {
                        side.counters.failed.inc();
                    }
                }
                Err(CacheError::Unavailable {
                    op,
                    key: key.to_owned(),
                    primary: a,
                    secondary: b,
                })
            }
        }
    }

    fn half_written(
        &self,
        op: &'static str,
        key: &str,
        w: &Write,
        written: usize,
        e: SideError,
    ) -> Result<WriteAck, CacheError> {
        let missed = &self.sides[1 - written];
        missed.enqueue(w.pending(), key, || e.to_string());
        if self.config.write_policy == WritePolicy::RequireBoth {
            return Err(CacheError::NotAcknowledged {
                op,
                key: key.to_owned(),
                written_on: Arc::clone(&self.sides[written].name),
                failed: e,
            });
        }
        Ok(w.ack(Some(Arc::clone(&missed.name))))
    }
}

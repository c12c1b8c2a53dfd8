//! The read path: one side first (the primary, or the nearer one; a side
//! that is down or catching up goes last), the other on an error or after
//! the soft timeout, the whole call under the hard timeout; a miss on a
//! side that is catching up is checked on the other; read repair and the
//! fail-safe on top.

use super::Inner;
use super::config::ReadFrom;
use super::entry::{EntryKind, Stored};
use super::error::{CacheError, SideError};
use super::events::CacheEventKind;
use super::side::Side;
use super::version::wall_millis;
use bytes::Bytes;
use std::sync::Arc;

/// What a read found, and on which side.
#[derive(Debug)]
pub(crate) struct Found {
    pub(crate) stored: Stored,
    pub(crate) side: usize,
}

impl Inner {
    /// The order in which sides are asked.
    pub(crate) fn read_order(&self) -> [usize; 2] {
        let [a, b] = &self.sides;
        let mut order = match self.config.read_from {
            ReadFrom::Nearest if b.latency_us() < a.latency_us() => [1, 0],
            _ => [0, 1],
        };
        let rank = |s: &Side| u8::from(!s.is_up()) * 2 + u8::from(s.lagging());
        if rank(&self.sides[order[1]]) < rank(&self.sides[order[0]]) {
            order.swap(0, 1);
        }
        order
    }

    /// Runs `call` on the first side of `order`, on the other after an
    /// error or the soft timeout; the first success wins. On failure, the
    /// errors by side (primary, secondary).
    pub(crate) async fn race<'a, T, F, Fut>(
        &'a self,
        order: [usize; 2],
        call: F,
    ) -> Result<(usize, T), [SideError; 2]>
    where
        F: Fn(&'a Side) -> Fut,
        Fut: Future<Output = Result<T, SideError>>,
    {
        let [first, second] = order;
        let by_side = |e_first: SideError, e_second: SideError| {
            if first == 0 {
                [e_first, e_second]
            } else {
                [e_second, e_first]
            }
        };
        let a = call(&self.sides[first]);
        tokio::pin!(a);
        let soft = tokio::time::sleep(self.config.read_soft_timeout);
        tokio::pin!(soft);
        let first_error = tokio::select! {
            biased;
            r = &mut a => match r {
                Ok(v) => return Ok((first, v)),
                Err(e) => e,
            },
            () = &mut soft => {
                let b = call(&self.sides[second]);
                tokio::pin!(b);
                return tokio::select! {
                    r = &mut a => match r {
                        Ok(v) => Ok((first, v)),
                        Err(ea) => match b.await {
                            Ok(v) => Ok((second, v)),
                            Err(eb) => Err(by_side(ea, eb)),
                        },
                    },
                    r = &mut b => match r {
                        Ok(v) => Ok((second, v)),
                        Err(eb) => match a.await {
                            Ok(v) => Ok((first, v)),
                            Err(ea) => Err(by_side(ea, eb)),
                        },
                    },
                };
            }
        };
        match call(&self.sides[second]).await {
            Ok(v) => Ok((second, v)),
            Err(e) => Err(by_side(first_error, e)),
        }
    }

    /// Reads one key (prefixed) by the read path; `None` when both sides failed.
    pub(crate) async fn read(
        self: &Arc<Self>,
        op: &'static str,
        key: &str,
        pkey: &[u8],
    ) -> Result<Found, CacheError> {
        if self.is_closed() {
            return Err(CacheError::Closed);
        }
        let limit = self.config.read_timeout;
        let read = async {
            if self.config.read_repair {
                self.read_repairing(key, pkey).await
            } else {
                self.read_plain(pkey).await
            }
        };
        let result = match tokio::time::timeout(limit, read).await {
            Ok(r) => r,
            Err(_) => {
                return self.fail_safe_or(key, pkey, || CacheError::Timeout {
                    op,
                    key: key.to_owned(),
                    after: limit,
                });
            }
        };
        match result {
            Ok(found) => {
                self.saw(&found.stored, found.side, pkey);
                Ok(found)
            }
            Err([primary, secondary]) => self.fail_safe_or(key, pkey, || CacheError::Unavailable {
                op,
                key: key.to_owned(),
                primary,
                secondary,
            }),
        }
    }

    /// Reads many keys (prefixed) from one side (`MGET`), by the same
    /// order, fallback and timeouts as one key; misses on a side that is
    /// catching up are checked on the other. The fail-safe answers only
    /// when it has every key. Returns the side that answered and what it
    /// holds per key.
    pub(crate) async fn read_many(
        &self,
        op: &'static str,
        label: &str,
        pkeys: &[Vec<u8>],
    ) -> Result<(usize, Vec<Stored>), CacheError> {
        if self.is_closed() {
            return Err(CacheError::Closed);
        }
        let limit = self.config.read_timeout;
        let read = async {
            let order = self.read_order();
            let (side, mut stored) = self.race(order, |s| s.mget(pkeys)).await?;
            if side != order[0] {
                self.counters.fallback_reads.inc();
            }
            let other = &self.sides[1 - side];
            let missing: Vec<usize> = (0..stored.len())
                .filter(|&i| matches!(stored[i], Stored::Missing))
                .collect();
            if !missing.is_empty() && self.sides[side].lagging() && other.available() {
                let keys: Vec<Vec<u8>> = missing.iter().map(|&i| pkeys[i].clone()).collect();
                if let Ok(more) = other.mget(&keys).await {
                    for (i, s) in missing.into_iter().zip(more) {
                        stored[i] = s;
                    }
                }
            }
            Ok::<_, [SideError; 2]>((side, stored))
        };
        let failed = match tokio::time::timeout(limit, read).await {
            Ok(Ok((side, stored))) => {
                for (s, pkey) in stored.iter().zip(pkeys) {
                    // Counted on the side that answered the batch.
                    self.saw(s, side, pkey);
                }
                return Ok((side, stored));
            }
            Ok(Err([primary, secondary])) => CacheError::Unavailable {
                op,
                key: label.to_owned(),
                primary,
                secondary,
            },
            Err(_) => CacheError::Timeout {
                op,
                key: label.to_owned(),
                after: limit,
            },
        };
        let Some(fs) = &self.fail_safe else {
            return Err(failed);
        };
        let mut served = Vec::with_capacity(pkeys.len());
        for pkey in pkeys {
            match fs.get(pkey) {
                Some((payload, _)) => served.push(Stored::Foreign(payload)),
                None => return Err(failed),
            }
        }
        self.counters.fail_safe_hits.add(served.len() as u64);
        Ok((0, served))
    }

    async fn read_plain(&self, pkey: &[u8]) -> Result<Found, [SideError; 2]> {
        let order = self.read_order();
        let (side, stored) = self.race(order, |s| s.get(pkey)).await?;
        if side != order[0] {
            self.counters.fallback_reads.inc();
        }
        let other = &self.sides[1 - side];
        if matches!(stored, Stored::Missing) && self.sides[side].lagging() && other.available() {
            // This side may not have it yet.
            if let Ok(s @ Stored::Entry { .. } | s @ Stored::Foreign(_)) = other.get(pkey).await {
                return Ok(Found {
                    stored: s,
                    side: 1 - side,
                });
            }
        }
        Ok(Found { stored, side })
    }

    /// Reads both sides; the newer entry wins and is copied onto the side
    /// that is behind. The side answering second is waited for up to the
    /// soft timeout.
    async fn read_repairing(
        self: &Arc<Self>,
        key: &str,
        pkey: &[u8],
    ) -> Result<Found, [SideError; 2]> {
        let [first, second] = self.read_order();
        let a = self.sides[first].get(pkey);
        let b = self.sides[second].get(pkey);
        tokio::pin!(a, b);
        let soft = self.config.read_soft_timeout;
        let (ra, rb) = tokio::select! {
            biased;
            ra = &mut a => {
                let rb = if ra.is_ok() { tokio::time::timeout(soft, &mut b).await.ok() } else { Some(b.await) };
                (Some(ra), rb)
            }
            rb = &mut b => {
                let ra = if rb.is_ok() { tokio::time::timeout(soft, &mut a).await.ok() } else { Some(a.await) };
                (ra, Some(rb))
            }
        };
        let mut answers: [Option<Result<Stored, SideError>>; 2] = [None, None];
        answers[first] = ra;
        answers[second] = rb;
        match answers {
            [Some(Ok(x)), Some(Ok(y))] => Ok(self.newest(key, pkey, [x, y], first)),
            [Some(Ok(stored)), _] => Ok(Found { stored, side: 0 }),
            [_, Some(Ok(stored))] => Ok(Found { stored, side: 1 }),
            [Some(Err(x)), Some(Err(y))] => Err([x, y]),
            // Unreachable: a side that failed makes the other be awaited.
            [x, y] => Err([
                x.and_then(Result::err).unwrap_or_else(|| self.down(0)),
                y.and_then(Result::err).unwrap_or_else(|| self.down(1)),
            ]),
        }
    }

    fn down(&self, side: usize) -> SideError {
        SideError::new(&self.sides[side].name, super::error::SideErrorKind::Down)
    }

    /// The newer of two answers; the older side gets a copy.
    fn newest(
        self: &Arc<Self>,
        key: &str,
        pkey: &[u8],
        answers: [Stored; 2],
        first: usize,
    ) -> Found {
        let version = |s: &Stored| s.version();
        let winner = match (&answers[0], &answers[1]) {
            (Stored::Foreign(_), _) | (_, Stored::Foreign(_)) => None,
            (x, y) if version(x) == version(y) => None,
            (x, y) => Some(usize::from(version(y) > version(x))),
        };
        let Some(w) = winner else {
            let [x, y] = answers;
            let stored = if first == 0 { x } else { y };
            return Found {
                stored,
                side: first,
            };
        };
        let [x, y] = answers;
        let stored = if w == 0 { x } else { y };
        if let Stored::Entry { header, raw } = &stored
            && header.expires_at > wall_millis()
        {
            self.repair_in_background(key, pkey, 1 - w, raw.clone(), header.expires_at);
        }
        Found { stored, side: w }
    }

    fn repair_in_background(
        self: &Arc<Self>,
        key: &str,
        pkey: &[u8],
        to: usize,
        raw: Bytes,
        expires_at: u64,
    ) {
        let inner = Arc::clone(self);
        let key = key.to_owned();
        let cmd = super::entry::cas_cmd(&self.script, pkey, &raw, expires_at, false);
        tokio::spawn(async move {
            let side = &inner.sides[to];
            if let Ok(super::entry::CasReply::Written) = side.cas(&inner.script, &cmd).await {
                side.counters.read_repairs.inc();
                inner.events.emit(CacheEventKind::ReadRepaired {
                    side: Arc::clone(&side.name),
                    key,
                });
            }
        });
    }

    /// Counts a read and feeds the version clock and the fail-safe.
    pub(crate) fn saw(&self, stored: &Stored, side: usize, pkey: &[u8]) {
        let side = &self.sides[side];
        if let Some(v) = stored.version() {
            self.hlc.observe(v);
        }
        match stored {
            Stored::Entry { header, .. } if header.kind == EntryKind::Value => {
                side.counters.hits.inc()
            }
            Stored::Foreign(_) => side.counters.hits.inc(),
            _ => side.counters.misses.inc(),
        }
        if let Some(fs) = &self.fail_safe {
            match stored.payload() {
                Some(p) => fs.record(pkey, p),
                None => fs.forget(pkey),
            }
        }
    }

    /// The fail-safe's value when it has one, else the error.
    fn fail_safe_or(
        &self,
        key: &str,
        pkey: &[u8],
        error: impl FnOnce() -> CacheError,
    ) -> Result<Found, CacheError> {
        let Some((payload, age)) = self.fail_safe.as_ref().and_then(|fs| fs.get(pkey)) else {
            return Err(error());
        };
        self.counters.fail_safe_hits.inc();
        self.events.emit(CacheEventKind::FailSafeServed {
            key: key.to_owned(),
            age,
        });
        Ok(Found {
            stored: Stored::Foreign(payload),
            side: 0,
        })
    }
}

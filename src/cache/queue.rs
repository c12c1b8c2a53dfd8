//! A side's repair queue: the writes it missed, one entry per key (the
//! newest version wins), bounded in keys and bytes, sharded so that writers
//! never wait on one lock, and taken in the order the keys were first
//! queued.

use super::entry::HEADER_LEN;
use super::version::Version;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

const SHARDS: usize = 16;
/// Bookkeeping per queued key, counted in the byte bound.
const OVERHEAD: usize = 96;

/// A write a side missed.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    /// The key, prefix included.
    pub(crate) key: Bytes,
    /// The entry as stored: header and payload.
    pub(crate) entry: Bytes,
    /// Its version.
    pub(crate) version: Version,
    /// Its absolute expiry (Unix ms).
    pub(crate) expires_at: u64,
}

impl Pending {
    fn size(&self) -> usize {
        self.key.len() + self.entry.len() + OVERHEAD
    }
}

/// What [`RepairQueue::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Queued; the key was not queued before.
    Added,
    /// Replaced an older entry of the same key.
    Replaced,
    /// Not queued: a newer entry of the key is queued.
    Stale,
    /// Not queued: the bounds would be exceeded.
    Overflow,
}

#[derive(Debug, Default)]
struct Shard {
    map: HashMap<Bytes, Pending>,
    /// Keys in the order they were first queued (may name keys no longer
    /// in `map`: skipped when taken).
    order: VecDeque<Bytes>,
}

/// See the [module docs](self).
#[derive(Debug)]
pub(crate) struct RepairQueue {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    entries: AtomicUsize,
    bytes: AtomicUsize,
    max_entries: usize,
    max_bytes: usize,
    next_shard: AtomicUsize,
}

impl RepairQueue {
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> Self {
        RepairQueue {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            entries: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            max_entries,
            max_bytes,
            next_shard: AtomicUsize::new(0),
        }
    }

    /// Keys queued.
    pub(crate) fn len(&self) -> usize {
        self.entries.load(Relaxed)
    }

    /// Bytes queued (keys, entries and bookkeeping).
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.load(Relaxed)
    }

    fn shard(&self, key: &[u8]) -> std::sync::MutexGuard<'_, Shard> {
        let i = (self.hasher.hash_one(key) as usize) % SHARDS;
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves room for `entries` more keys and `bytes` more bytes, or
    /// reserves nothing and says no.
    fn reserve(&self, entries: usize, bytes: isize) -> bool {
        let n = self.entries.fetch_add(entries, Relaxed) + entries;
        let b = self.adjust_bytes(bytes);
        if n > self.max_entries || (bytes > 0 && b > self.max_bytes) {
            self.entries.fetch_sub(entries, Relaxed);
            self.adjust_bytes(-bytes);
            return false;
        }
        true
    }

    fn adjust_bytes(&self, delta: isize) -> usize {
        if delta >= 0 {
            self.bytes.fetch_add(delta.unsigned_abs(), Relaxed) + delta.unsigned_abs()
        } else {
            self.bytes.fetch_sub(delta.unsigned_abs(), Relaxed) - delta.unsigned_abs()
        }
    }

    /// Queues `p` unless a newer entry of its key is queued or the bounds
    /// would be exceeded.
    pub(crate) fn push(&self, p: Pending) -> Pushed {
        let mut shard = self.shard(&p.key);
        match shard.map.get_mut(&p.key) {
            Some(old) if old.version >= p.version => Pushed::Stale,
            Some(old) => {
                let delta = p.size() as isize - old.size() as isize;
                if !self.reserve(0, delta) {
                    return Pushed::Overflow;
                }
                *old = p;
                Pushed::Replaced
            }
            None => {
                if !self.reserve(1, p.size() as isize) {
                    return Pushed::Overflow;
                }
                let key = p.key.clone();
                shard.map.insert(key.clone(), p);
                shard.order.push_back(key);
                if shard.order.len() > 2 * shard.map.len() + 64 {
                    let Shard { map, order } = &mut *shard;
                    order.retain(|k| map.contains_key(k));
                }
                Pushed::Added
            }
        }
    }

    /// Takes up to `max` entries, oldest keys first, shard by shard.
    pub(crate) fn take(&self, max: usize) -> Vec<Pending> {
        let mut out = Vec::new();
        let start = self.next_shard.fetch_add(1, Relaxed);
        for i in 0..SHARDS {
            if out.len() >= max || self.len() == 0 {
                break;
            }
            let mut shard = self.shards[(start + i) % SHARDS]
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            while out.len() < max {
                let Some(key) = shard.order.pop_front() else {
                    break;
                };
                if let Some(p) = shard.map.remove(&key) {
                    self.entries.fetch_sub(1, Relaxed);
                    self.adjust_bytes(-(p.size() as isize));
                    out.push(p);
                }
            }
        }
        out
    }

    /// Removes the key's entry if it is not newer than `version` (a write
    /// of that version just reached the side).
    pub(crate) fn settle(&self, key: &[u8], version: Version) {
        let mut shard = self.shard(key);
        if shard.map.get(key).is_some_and(|p| p.version <= version)
            && let Some(p) = shard.map.remove(key)
        {
            self.entries.fetch_sub(1, Relaxed);
            self.adjust_bytes(-(p.size() as isize));
        }
    }

    /// Drops the values of entries that expired by `now_ms`, keeping their
    /// headers: replayed, they still remove older entries of the key.
    /// Returns how many expired.
    pub(crate) fn sweep_expired(&self, now_ms: u64) -> usize {
        let mut expired = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            for p in shard.map.values_mut() {
                if p.expires_at <= now_ms && p.entry.len() > HEADER_LEN {
                    let freed = p.entry.len() - HEADER_LEN;
                    // A copy, not a slice: a slice would keep the value's buffer.
                    p.entry = Bytes::copy_from_slice(&p.entry[..HEADER_LEN]);
                    self.adjust_bytes(-(freed as isize));
                    expired += 1;
                }
            }
        }
        expired
    }

    /// Empties the queue; returns how many keys it held.
    pub(crate) fn clear(&self) -> usize {
        let mut cleared = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            for (_, p) in shard.map.drain() {
                self.entries.fetch_sub(1, Relaxed);
                self.adjust_bytes(-(p.size() as isize));
                cleared += 1;
            }
            shard.order.clear();
        }
        cleared
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::entry::{EntryKind, Header, build};

    fn pending(key: &str, hlc: u64, expires_at: u64, payload: &[u8]) -> Pending {
        let version = Version { hlc, writer: 1 };
        let header = Header {
            kind: EntryKind::Value,
            version,
            expires_at,
        };
        Pending {
            key: Bytes::copy_from_slice(key.as_bytes()),
            entry: build(&header, payload),
            version,
            expires_at,
        }
    }

    #[test]
    fn one_entry_per_key_newest_wins_first_queued_first_taken() {
        let q = RepairQueue::new(10, 1 << 20);
        assert_eq!(q.push(pending("a", 2, 9, b"x")), Pushed::Added);
        assert_eq!(q.push(pending("b", 3, 9, b"x")), Pushed::Added);
        assert_eq!(q.push(pending("a", 1, 9, b"old")), Pushed::Stale);
        assert_eq!(q.push(pending("a", 5, 9, b"new")), Pushed::Replaced);
        assert_eq!(q.len(), 2);
        let taken = q.take(10);
        assert_eq!(taken.len(), 2);
        let a = taken.iter().find(|p| &p.key[..] == b"a").unwrap();
        assert_eq!(a.version.hlc, 5);
        assert_eq!((q.len(), q.bytes()), (0, 0));
    }

    #[test]
    fn bounds_settling_expiry_and_clearing() {
        let q = RepairQueue::new(2, 1 << 20);
        q.push(pending("a", 1, 9, b"x"));
        q.push(pending("b", 1, 100, b"xyz"));
        assert_eq!(q.push(pending("c", 1, 9, b"x")), Pushed::Overflow);
        let tight = RepairQueue::new(10, 2 * OVERHEAD);
        assert_eq!(tight.push(pending("a", 1, 9, &[0; 64])), Pushed::Added);
        assert_eq!(tight.push(pending("b", 1, 9, &[0; 64])), Pushed::Overflow);
        q.settle(b"a", Version { hlc: 1, writer: 1 });
        assert_eq!(q.len(), 1);
        let before = q.bytes();
        assert_eq!(q.sweep_expired(100), 1);
        assert_eq!(q.bytes(), before - 3);
        assert_eq!(q.take(1)[0].entry.len(), HEADER_LEN);
        q.push(pending("d", 1, 9, b"x"));
        assert_eq!(q.clear(), 1);
        assert_eq!((q.len(), q.bytes()), (0, 0));
    }
}

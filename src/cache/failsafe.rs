//! The fail-safe: the last value each key was read or written with, kept
//! in memory (bounded in keys, sharded) and served when both sides are
//! down, for at most `max_age` after it was last seen.

use super::config::FailSafeConfig;
use super::entry::{EntryKind, HEADER_LEN, Header};
use bytes::Bytes;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

const SHARDS: usize = 16;

/// Key → last value and when it was seen.
type Shard = HashMap<Box<[u8]>, (Bytes, Instant)>;

/// See the [module docs](self).
#[derive(Debug)]
pub(crate) struct FailSafe {
    max_age: Duration,
    per_shard: usize,
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
}

impl FailSafe {
    pub(crate) fn new(config: &FailSafeConfig) -> Self {
        FailSafe {
            max_age: config.max_age,
            per_shard: config.max_entries.div_ceil(SHARDS).max(1),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, key: &[u8]) -> std::sync::MutexGuard<'_, Shard> {
        let i = (self.hasher.hash_one(key) as usize) % SHARDS;
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers the value a key was read with.
    pub(crate) fn record(&self, key: &[u8], payload: Bytes) {
        let now = Instant::now();
        let mut shard = self.shard(key);
        if let Some(slot) = shard.get_mut(key) {
            *slot = (payload, now);
            return;
        }
        if shard.len() >= self.per_shard {
            let max_age = self.max_age;
            shard.retain(|_, (_, seen)| now.duration_since(*seen) <= max_age);
            if shard.len() >= self.per_shard
                && let Some(victim) = shard.keys().next().cloned()
            {
                shard.remove(&victim);
            }
        }
        shard.insert(Box::from(key), (payload, now));
    }

    /// Remembers what a write stored (a delete forgets the key).
    pub(crate) fn written(&self, key: &[u8], entry: &Bytes) {
        match Header::decode(entry) {
            Some(h) if h.kind == EntryKind::Value => self.record(key, entry.slice(HEADER_LEN..)),
            _ => self.forget(key),
        }
    }

    /// Forgets a key (deleted, or found missing).
    pub(crate) fn forget(&self, key: &[u8]) {
        self.shard(key).remove(key);
    }

    /// The last value of a key and its age, unless older than `max_age`.
    pub(crate) fn get(&self, key: &[u8]) -> Option<(Bytes, Duration)> {
        let shard = self.shard(key);
        let (payload, seen) = shard.get(key)?;
        let age = seen.elapsed();
        (age <= self.max_age).then(|| (payload.clone(), age))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn serves_within_max_age_and_stays_bounded() {
        let fs = FailSafe::new(&FailSafeConfig {
            max_age: Duration::from_secs(10),
            max_entries: 16,
        });
        fs.record(b"a", Bytes::from_static(b"1"));
        assert_eq!(fs.get(b"a").unwrap().0, Bytes::from_static(b"1"));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(fs.get(b"a").is_none());
        for i in 0..100u32 {
            fs.record(&i.to_be_bytes(), Bytes::from_static(b"x"));
        }
        let kept: usize = fs.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(kept <= 16, "{kept}");
        fs.forget(&7u32.to_be_bytes());
        assert!(fs.get(&7u32.to_be_bytes()).is_none());
    }
}

//! The data calls of [`FailoverCache`]: typed (MessagePack, see
//! [`codec`](super::codec)) and raw bytes. Keys are the caller's; the
//! cache's prefix is added in front.

use super::codec;
use super::entry::{self, EntryKind, HEADER_LEN, Header};
use super::error::{CacheError, share};
use super::flight::{self, Turn};
use super::version::{millis_of, wall_millis};
use super::write::{Write, WriteAck};
use super::{FailoverCache, read::Found};
use crate::error::BoxError;
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

impl FailoverCache {
    /// The value of `key`; `None` when absent, deleted or expired.
    ///
    /// # Errors
    /// [`CacheError::Unavailable`] or [`CacheError::Timeout`] when no side
    /// answered (unless the fail-safe has the key), [`CacheError::Decode`]
    /// when the value is not a `T`.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, CacheError> {
        let pkey = self.inner.key(key);
        let found = self.inner.read("get", key, &pkey).await?;
        found
            .stored
            .payload()
            .map(|p| self.decode(key, found.side, &p))
            .transpose()
    }

    /// The bytes of `key` (see [`get`](Self::get)).
    ///
    /// # Errors
    /// As [`get`](Self::get), without decoding.
    pub async fn get_raw(&self, key: &str) -> Result<Option<Bytes>, CacheError> {
        let pkey = self.inner.key(key);
        Ok(self.inner.read("get", key, &pkey).await?.stored.payload())
    }

    /// Stores `value` under `key` for `ttl` (an absolute expiry: replays
    /// never extend it).
    ///
    /// # Errors
    /// [`CacheError::Encode`]; [`CacheError::Unavailable`] when neither
    /// side acknowledged it; [`CacheError::NotAcknowledged`] under
    /// [`RequireBoth`](super::WritePolicy::RequireBoth) when one did not.
    pub async fn set<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<WriteAck, CacheError> {
        let w = self.encoded(key, value, ttl)?;
        self.inner.write("set", key, w).await
    }

    /// Stores bytes under `key` (see [`set`](Self::set)).
    ///
    /// # Errors
    /// As [`set`](Self::set).
    pub async fn set_raw(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<WriteAck, CacheError> {
        let w = self.raw_write(key, Some(value), ttl);
        self.inner.write("set", key, w).await
    }

    /// Stores `value` unless `key` holds a live value; `None` when it
    /// did. The primary decides (the secondary when the primary is down),
    /// then the other side gets the entry by compare-and-set.
    ///
    /// # Errors
    /// As [`set`](Self::set); [`CacheError::Side`] when the deciding side
    /// did not answer in time (the entry may stand there).
    pub async fn set_nx<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<Option<WriteAck>, CacheError> {
        let w = self.encoded(key, value, ttl)?;
        self.inner.write_nx("set_nx", key, w).await
    }

    /// Stores bytes unless `key` holds a live value (see [`set_nx`](Self::set_nx)).
    ///
    /// # Errors
    /// As [`set_nx`](Self::set_nx).
    pub async fn set_nx_raw(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<Option<WriteAck>, CacheError> {
        let w = self.raw_write(key, Some(value), ttl);
        self.inner.write_nx("set_nx", key, w).await
    }

    /// Deletes `key`: a tombstone for `tombstone_ttl` on both sides, so
    /// the old value cannot come back from a side that missed the delete.
    ///
    /// # Errors
    /// As [`set`](Self::set).
    pub async fn delete(&self, key: &str) -> Result<WriteAck, CacheError> {
        let ttl = self.inner.config.tombstone_ttl;
        let w = self.raw_write(key, None, ttl);
        self.inner.write("delete", key, w).await
    }

    /// The value of `key`, or else the loader's, stored for `ttl`. In this
    /// process, one loader runs per key at a time: callers asking for the
    /// same key meanwhile wait for it and share its value (or its error).
    /// When no side answers the read, the loader runs all the same; when
    /// no side takes the write, the value is returned all the same.
    ///
    /// # Errors
    /// [`CacheError::Loader`], [`CacheError::Encode`], [`CacheError::Decode`].
    pub async fn get_or_set_with<T, F, Fut, E>(
        &self,
        key: &str,
        ttl: Duration,
        loader: F,
    ) -> Result<T, CacheError>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Into<BoxError>,
    {
        let pkey = self.inner.key(key);
        loop {
            let side = match self.inner.read("get_or_set", key, &pkey).await {
                Ok(Found { stored, side }) => match stored.payload() {
                    Some(p) => return self.decode(key, side, &p),
                    None => side,
                },
                Err(CacheError::Unavailable { .. } | CacheError::Timeout { .. }) => 0,
                Err(e) => return Err(e),
            };
            match self.inner.flights.join(key) {
                Turn::Wait(slot) => {
                    self.inner.counters.single_flight_waits.inc();
                    match flight::wait(slot).await {
                        Some(Ok(p)) => return self.decode(key, side, &p),
                        Some(Err(e)) => return Err(CacheError::loader(key, e)),
                        None => continue,
                    }
                }
                Turn::Lead(leader) => {
                    self.inner.counters.loader_calls.inc();
                    let value = match loader().await {
                        Ok(v) => v,
                        Err(e) => {
                            let e = share(e);
                            leader.land(Err(e.clone()));
                            return Err(CacheError::loader(key, e));
                        }
                    };
                    let w = match self.encoded(key, &value, ttl) {
                        Ok(w) => w,
                        Err(e) => {
                            leader.land(Err(share(e.to_string())));
                            return Err(e);
                        }
                    };
                    let payload = w.entry.slice(HEADER_LEN..);
                    if let Err(e) = self.inner.write("get_or_set", key, w).await {
                        tracing::debug!(key, error = %e, "loaded value not stored");
                    }
                    leader.land(Ok(payload));
                    return Ok(value);
                }
            }
        }
    }

    /// The values of `keys`, in order (`None` where absent): one `MGET` on
    /// one side, with the same fallback and timeouts as [`get`](Self::get)
    /// (misses on a side that is catching up are asked of the other; no
    /// read repair).
    ///
    /// # Errors
    /// As [`get`](Self::get); the fail-safe answers only when it has every key.
    pub async fn mget<T: DeserializeOwned>(
        &self,
        keys: &[&str],
    ) -> Result<Vec<Option<T>>, CacheError> {
        let (side, stored) = self.mget_stored(keys).await?;
        keys.iter()
            .zip(stored)
            .map(|(key, s)| s.payload().map(|p| self.decode(key, side, &p)).transpose())
            .collect()
    }

    /// The bytes of `keys` (see [`mget`](Self::mget)).
    ///
    /// # Errors
    /// As [`mget`](Self::mget).
    pub async fn mget_raw(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>, CacheError> {
        let (_, stored) = self.mget_stored(keys).await?;
        Ok(stored.iter().map(|s| s.payload()).collect())
    }

    /// Stores every item for `ttl`: one pipeline per side, both sides at
    /// once, each entry versioned and settled on its own (queued for a side
    /// that missed it). Waits for both sides whatever the write policy.
    ///
    /// # Errors
    /// The first item's error, as for [`set`](Self::set); the other items
    /// are written (or queued) all the same.
    pub async fn mset<T: Serialize>(
        &self,
        items: &[(&str, T)],
        ttl: Duration,
    ) -> Result<Vec<WriteAck>, CacheError> {
        let ws = items
            .iter()
            .map(|(key, value)| self.encoded(key, value, ttl))
            .collect::<Result<Vec<_>, _>>()?;
        let keys: Vec<&str> = items.iter().map(|(k, _)| *k).collect();
        self.mset_writes(&keys, &ws).await
    }

    /// Stores every item's bytes (see [`mset`](Self::mset)).
    ///
    /// # Errors
    /// As [`mset`](Self::mset).
    pub async fn mset_raw(
        &self,
        items: &[(&str, &[u8])],
        ttl: Duration,
    ) -> Result<Vec<WriteAck>, CacheError> {
        let ws: Vec<Write> = items
            .iter()
            .map(|(k, v)| self.raw_write(k, Some(v), ttl))
            .collect();
        let keys: Vec<&str> = items.iter().map(|(k, _)| *k).collect();
        self.mset_writes(&keys, &ws).await
    }

    async fn mset_writes(&self, keys: &[&str], ws: &[Write]) -> Result<Vec<WriteAck>, CacheError> {
        if ws.is_empty() {
            return Ok(Vec::new());
        }
        self.inner.write_many("mset", keys, ws).await
    }

    async fn mget_stored(&self, keys: &[&str]) -> Result<(usize, Vec<entry::Stored>), CacheError> {
        if keys.is_empty() {
            return Ok((0, Vec::new()));
        }
        let pkeys: Vec<Vec<u8>> = keys.iter().map(|k| self.inner.key(k)).collect();
        let label = match keys {
            [one] => (*one).to_owned(),
            [first, ..] => format!("{first} … ({} keys)", keys.len()),
            [] => String::new(),
        };
        self.inner.read_many("mget", &label, &pkeys).await
    }

    /// A new version and absolute expiry.
    fn header(&self, ttl: Duration, kind: EntryKind) -> Header {
        let now = wall_millis();
        Header {
            kind,
            version: self.inner.hlc.next_at(now),
            expires_at: now.saturating_add(millis_of(ttl).max(1)),
        }
    }

    fn write_of(&self, key: &str, header: &Header, entry: Bytes) -> Write {
        Write {
            key: self.inner.key(key),
            entry,
            version: header.version,
            expires_at: header.expires_at,
        }
    }

    /// A typed value's entry.
    fn encoded<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<Write, CacheError> {
        let header = self.header(ttl, EntryKind::Value);
        let entry = codec::encode(&header, value).map_err(|source| CacheError::Encode {
            key: key.to_owned(),
            source,
        })?;
        Ok(self.write_of(key, &header, entry))
    }

    /// Bytes' entry, or a tombstone's (`None`).
    fn raw_write(&self, key: &str, value: Option<&[u8]>, ttl: Duration) -> Write {
        let kind = match value {
            Some(_) => EntryKind::Value,
            None => EntryKind::Tombstone,
        };
        let header = self.header(ttl, kind);
        self.write_of(
            key,
            &header,
            entry::build(&header, value.unwrap_or_default()),
        )
    }

    fn decode<T: DeserializeOwned>(
        &self,
        key: &str,
        side: usize,
        payload: &[u8],
    ) -> Result<T, CacheError> {
        codec::decode(payload).map_err(|source| CacheError::Decode {
            key: key.to_owned(),
            side: std::sync::Arc::clone(&self.inner.sides[side].name),
            source,
        })
    }
}

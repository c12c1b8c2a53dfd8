//! [`FailoverCache`]: a cache kept on two independent Redis deployments
//! (the *sides*: a primary and a secondary, each a [`FailoverRedis`] or a
//! URL), written to both, read from either, that loses no acknowledged
//! write and brings back no deleted value when a side fails.
//!
//! # Writes
//! Every write ([`set`](FailoverCache::set), [`delete`](FailoverCache::delete),
//! …) gets a [`Version`] and an absolute expiry, and is sent to both sides
//! at once by a compare-and-set script (see [Entries](#entries-and-the-script)).
//! The [`WritePolicy`] says when it counts as done: `Both` (the default:
//! `Ok` when both sides acknowledged; when one failed or timed out, still
//! `Ok`, the write queued for that side and an event emitted), `RequireBoth`
//! (an error instead), `PrimaryThenAsync` or `Any`. A side that failed is
//! not asked again until it answers a `PING` (every `health_interval`), so
//! an outage costs callers at most one write timeout.
//!
//! # Versions
//! A [`Version`] is a hybrid logical clock (Unix milliseconds and a
//! logical counter) with the writer's id as tiebreak: two application
//! instances writing the same key order their writes the same way on both
//! sides, and a replay never overwrites a newer value. See [`version`] for
//! why this and not a per-process counter or the bare wall clock.
//!
//! # Entries and the script
//! An entry is one Redis string: a 23-byte header (magic, value or
//! tombstone, version, absolute expiry) and the payload; see [`entry`].
//! Every write — a caller's, a replay, a read repair, a reconciliation —
//! goes through one Lua script (`EVALSHA`, loaded on `NOSCRIPT` by
//! [`redis::Script`]) that, in one server-side step, reads the header in
//! place (`GETRANGE 0 22`), compares the versions, and writes with
//! `SET … PXAT <expiry>` only if the new entry is newer; an entry whose
//! expiry has passed removes an older one instead (Redis deletes a key set
//! with an expiry already passed). The expiry is
//! absolute and travels with the entry, so a replay never extends a TTL.
//! Typed values are MessagePack (see [`codec`] for why).
//!
//! # Deletes
//! A delete writes a tombstone (a header without payload) with its own TTL
//! (`tombstone_ttl`, default 15 minutes) on both sides, queued like any
//! write for a side that missed it. A read treats it as a miss; read repair
//! and reconciliation copy it like a value, so the old value on the side
//! that missed the delete can never win.
//!
//! # Repair queue
//! Each side has a queue of the writes it missed: bounded in keys and bytes
//! ([`QueueConfig`]), one entry per key (the newest version wins), replayed
//! by the side's repair loop as soon as it answers again, oldest keys
//! first, in pipelines, at most `replay_rate` entries a second. An entry
//! whose value expires while queued keeps only its header: replayed, it
//! still removes an older value. When a queue overflows, the side becomes
//! **divergent**: the queue is given up, and a key scan
//! ([`reconcile`](FailoverCache::reconcile): `SCAN` of both sides for the prefix, newest entry copied, tombstones
//! honoured) runs once the side is up. A side that comes back with another
//! data set — its master restarted empty, or a failover inside it (seen
//! through its pool's replication history) — is divergent as well.
//!
//! # Reads
//! The primary first (or the nearer side, [`ReadFrom::Nearest`]; a side
//! that is down or catching up goes last); the other side after an error
//! or the soft timeout (`read_soft_timeout`), the first answer wins; the
//! whole call ends at `read_timeout`. A miss on a side that is catching up
//! is checked on the other. With `read_repair`, both sides are read and the
//! newer entry is copied onto the side behind. With a [`FailSafeConfig`],
//! the last value read or written is served for `max_age` when both sides
//! are down ([`CacheEventKind::FailSafeServed`]).
//!
//! # Restart safety
//! The queues live in memory: **a process that crashes loses the writes
//! queued for a side that was down**, and the sides stay apart on those
//! keys until they expire or are written again. Run
//! [`reconcile`](FailoverCache::reconcile) at a service's start (or on a
//! schedule): it finds and repairs those keys. Deletes are safe across a
//! crash as long as the reconciliation runs within `tombstone_ttl`. A side
//! that is down when the cache starts is scanned by itself once it is up
//! (this process cannot know what it missed before).
//! Likewise, a tombstone that expired before a divergent side was
//! reconciled no longer protects the delete; keep `tombstone_ttl` longer
//! than the outages you want to survive.
//!
//! # Values written by other clients
//! A string under the prefix without the header is *foreign*: reads return
//! it as it is, any cache write replaces it, read repair and reconciliation
//! leave it alone. See [`entry`](entry#values-without-a-header).
//!
//! # Observability
//! [`FailoverCache::stats`] (acknowledged, queued and replayed writes,
//! backlog, divergent keys, per side), [`FailoverCache::subscribe`]
//! ([`CacheEvent`]s), and metrics named `failover_cache_*` (see
//! [`names`]).
//!
//! # Hot path
//! No global lock: side state, the version clock and counters are atomics;
//! the repair queues, single-flight and fail-safe maps are sharded and
//! touched only on a miss or a failure. A write allocates its key, its
//! entry (header and encoded value in one buffer, shared with the queue if
//! a side misses it) and one `EVALSHA` command sent to both sides.
//!
//! # Clocks
//! Versions and expiries come from this host's wall clock, and the sides'
//! servers expire entries by theirs: keep hosts and servers in time (NTP).
//! A host whose clock runs ahead wins the writes it races (last writer
//! wins); one that runs behind catches up on every versioned read it makes.

pub mod codec;
pub mod entry;
pub mod version;

mod api;
mod builder;
mod config;
mod error;
mod events;
mod failsafe;
mod flight;
mod queue;
mod read;
mod reconcile;
mod repair;
mod side;
mod stats;
mod write;

pub use builder::{CacheBuilder, CacheSide};
pub use config::{
    CacheConfig, CacheSpec, FailSafeConfig, QueueConfig, ReadFrom, SideSpec, WritePolicy,
};
pub use entry::{EntryKind, Header, Stored};
pub use error::{CacheError, SideError, SideErrorKind};
pub use events::{CacheEvent, CacheEventKind};
pub use stats::{CacheStats, ReconcileReport, SideStats, names};
pub use version::Version;
pub use write::WriteAck;

use crate::core::task::TaskHandle;
use crate::redis::FailoverRedis;
use failsafe::FailSafe;
use flight::Flights;
use side::Side;
use stats::{CacheCounters, SideCounters};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, broadcast};
use version::Hlc;

/// A cache on two Redis deployments; see the [module docs](self). Cheap to
/// clone; dropping the last clone stops its repair loops.
///
/// ```no_run
/// use failover_pool::cache::{CacheSide, FailoverCache};
/// use std::time::Duration;
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Profile { name: String, visits: u32 }
///
/// # async fn demo() -> Result<(), failover_pool::cache::CacheError> {
/// let cache = FailoverCache::builder()
///     .primary(CacheSide::url("east", "redis://cache-east:6379/"))
///     .secondary(CacheSide::url("west", "redis://cache-west:6379/"))
///     .prefix("profiles:")
///     .build()
///     .await?;
/// let ttl = Duration::from_secs(600);
/// cache.set("42", &Profile { name: "Ada".into(), visits: 1 }, ttl).await?;
/// let p: Option<Profile> = cache.get("42").await?;
/// let q: Profile = cache
///     .get_or_set_with("43", ttl, || async {
///         Ok::<_, std::io::Error>(Profile { name: "Alan".into(), visits: 0 })
///     })
///     .await?;
/// cache.delete("42").await?;
/// let stats = cache.stats();
/// println!("queued for west: {}", stats.secondary.backlog);
/// # let _ = (p, q); Ok(()) }
/// ```
#[derive(Clone)]
pub struct FailoverCache {
    inner: Arc<Inner>,
}

impl fmt::Debug for FailoverCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailoverCache")
            .field("name", &self.inner.name)
            .field("primary", &self.inner.sides[0].name)
            .field("secondary", &self.inner.sides[1].name)
            .field("prefix", &self.inner.config.prefix)
            .finish_non_exhaustive()
    }
}

/// The cache's shared state.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: CacheConfig,
    pub(crate) name: Arc<str>,
    pub(crate) sides: [Side; 2],
    pub(crate) hlc: Hlc,
    pub(crate) script: ::redis::Script,
    pub(crate) flights: Flights,
    pub(crate) fail_safe: Option<FailSafe>,
    pub(crate) events: Arc<events::EventBus>,
    pub(crate) counters: CacheCounters,
    /// Writes of the asynchronous policies still in flight.
    pub(crate) async_writes: Arc<Semaphore>,
    /// One key scan at a time.
    pub(crate) reconciling: tokio::sync::Mutex<()>,
    tasks: Mutex<Vec<TaskHandle>>,
    closed: AtomicBool,
}

impl Inner {
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Relaxed)
    }

    /// The key as stored: prefix and key.
    pub(crate) fn key(&self, key: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.config.prefix.len() + key.len());
        k.extend_from_slice(self.config.prefix.as_bytes());
        k.extend_from_slice(key.as_bytes());
        k
    }
}

impl FailoverCache {
    /// A builder: two sides and the settings.
    pub fn builder() -> CacheBuilder {
        CacheBuilder::default()
    }

    /// Builds a cache from its serde configuration.
    ///
    /// # Errors
    /// As [`CacheBuilder::build`].
    pub async fn from_spec(spec: CacheSpec) -> Result<Self, CacheError> {
        let side = |s: SideSpec| {
            let side = CacheSide::urls(s.name, s.urls);
            match s.pool {
                Some(pool) => side.with_pool_config(pool),
                None => side,
            }
        };
        Self::builder()
            .primary(side(spec.primary))
            .secondary(side(spec.secondary))
            .config(spec.cache)
            .build()
            .await
    }

    /// Starts a cache on two connected sides (validated by the builder).
    fn start(config: CacheConfig, sides: [(Arc<str>, FailoverRedis, bool); 2]) -> Self {
        let name: Arc<str> = Arc::from(config.name.as_str());
        let events = Arc::new(events::EventBus::new(Arc::clone(&name)));
        let sides = sides.map(|(side, redis, owned)| {
            let counters = SideCounters::new(&name, &side);
            Side::new(side, redis, owned, counters, Arc::clone(&events), &config)
        });
        let writer = config.writer_id.unwrap_or_else(|| fastrand::u32(..));
        let inner = Arc::new(Inner {
            hlc: Hlc::new(writer, config.max_clock_ahead),
            script: entry::cas_script(),
            flights: Flights::new(),
            fail_safe: config.fail_safe.as_ref().map(FailSafe::new),
            counters: CacheCounters::new(&name),
            async_writes: Arc::new(Semaphore::new(config.max_async_writes)),
            reconciling: tokio::sync::Mutex::new(()),
            tasks: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            events,
            sides,
            name,
            config,
        });
        let tasks = (0..2)
            .map(|i| TaskHandle::spawn(repair::run(Arc::downgrade(&inner), i)))
            .collect();
        *inner.tasks.lock().unwrap_or_else(|e| e.into_inner()) = tasks;
        FailoverCache { inner }
    }

    /// The settings.
    pub fn config(&self) -> &CacheConfig {
        &self.inner.config
    }

    /// The writer id in this instance's versions.
    pub fn writer_id(&self) -> u32 {
        self.inner.hlc.writer()
    }

    /// The two sides' pools (primary, secondary), e.g. to inspect them.
    pub fn sides(&self) -> [&FailoverRedis; 2] {
        [&self.inner.sides[0].redis, &self.inner.sides[1].redis]
    }

    /// The key as stored on the sides (the prefix and `key`).
    pub fn stored_key(&self, key: &str) -> String {
        format!("{}{key}", self.inner.config.prefix)
    }

    /// Counters and state of both sides: acknowledged, queued and replayed
    /// writes, backlog, divergence (what a drill reads).
    pub fn stats(&self) -> CacheStats {
        let c = &self.inner.counters;
        CacheStats {
            primary: self.inner.sides[0].stats(),
            secondary: self.inner.sides[1].stats(),
            fallback_reads: c.fallback_reads.get(),
            fail_safe_hits: c.fail_safe_hits.get(),
            loader_calls: c.loader_calls.get(),
            single_flight_waits: c.single_flight_waits.get(),
            reconciliations: c.reconciliations.get(),
        }
    }

    /// Subscribes to the cache's events.
    pub fn subscribe(&self) -> broadcast::Receiver<CacheEvent> {
        self.inner.events.subscribe()
    }

    /// Scans both sides for the prefix and copies the newer entry of every
    /// key onto the side that is behind (see the [module docs](self#repair-queue)). Run it at a
    /// service's start, or on a schedule, to repair what a crashed process
    /// had queued.
    ///
    /// # Errors
    /// [`CacheError::Side`] when a side fails during the scan (what was
    /// copied until then stays copied).
    pub async fn reconcile(&self) -> Result<ReconcileReport, CacheError> {
        if self.inner.is_closed() {
            return Err(CacheError::Closed);
        }
        self.inner.reconcile().await
    }

    /// Waits until both sides are up, nothing is queued and neither is
    /// divergent, for at most `within`; whether that happened.
    pub async fn wait_in_sync(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.stats().in_sync() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            for side in &self.inner.sides {
                side.wake.notify_one();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the repair loops (what is queued stays unreplayed) and closes
    /// the sides the cache built from URLs. Calls made afterwards fail with
    /// [`CacheError::Closed`].
    pub async fn close(&self) {
        self.inner.closed.store(true, Relaxed);
        let tasks: Vec<_> = self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        for t in tasks {
            t.shutdown().await;
        }
        for side in &self.inner.sides {
            if side.owned {
                side.redis.close().await;
            }
        }
    }
}

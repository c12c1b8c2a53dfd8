//! What `FailoverCache` costs on top of plain redis-rs commands, measured
//! against two real, independent local Redis servers (two
//! `LocalRedisCluster`s of one master each) in the same process and run:
//!
//! * `cache/set/{raw,sequential,cache}/{1,16}`: one `SET key value PX ttl`
//!   on a redis-rs `ConnectionManager` to server A (`raw`), the same `SET`
//!   sent by hand to A and then to B (`sequential`), and
//!   `FailoverCache::set` with A as primary and B as secondary (`cache`:
//!   the dual write, both sides at once);
//! * `cache/get/{raw,cache}/{1,16}`: one `GET` on the raw client vs
//!   `FailoverCache::get` (read from the primary).
//!
//! `1` is one call per iteration; `16` is 16 concurrent calls (16 tasks,
//! joined) per iteration. The value is a 32-byte string; the raw clients
//! write it as is, the cache writes it MessagePack-encoded behind its entry
//! header, through its compare-and-set script. The raw clients and the
//! cache use different keys (the cache would not decode a raw value).
//!
//! After criterion's report, the bench measures every pair again itself,
//! as `benches/redis_overhead.rs` does: short loops of the two variants
//! alternate (ABBA order) for a few seconds per pair, every iteration is
//! timed, and the median over the rounds of (b median / a median) is
//! printed as `overhead <pair> ratio=<b/a>`: `cache-set` (dual write vs one
//! raw `SET`), `cache-set-vs-sequential` (dual write vs two raw `SET`s one
//! after the other) and `cache-get` (cache `GET` vs raw `GET`). A second
//! raw client configured like the first gives the noise floor (`noise
//! floor ... ratio=` lines): an overhead ratio within it is no measured
//! overhead.
//!
//! The `floor <pair> ratio=` lines say where the cache's cost comes from,
//! each against the same raw `SET` or `GET`: `floor-set-pair` (raw `SET`s
//! on A and B at once: waiting for two servers), `floor-script` (the
//! cache's compare-and-set script by hand on the raw client to A, a newer
//! version each call: the script's cost on one server), `floor-script-pair`
//! (that script on A and B at once: the cache's dual write without the
//! cache, its floor), `floor-pool-set` and `floor-pool-get` (the plain
//! command through the cache's own `FailoverRedis` on A: the pool's cost);
//! `overhead cache-set-vs-script-pair` is then what the cache adds on top
//! of its floor.
//!
//! Run with `cargo bench --all-features --bench cache` (about two minutes).
//! `CACHE_BENCH_PAIRS=<text>` limits the bench's own measurement to the
//! pairs whose name contains `<text>` (e.g. `cache-get/16`). A criterion
//! filter that matches nothing (`-- none`) skips criterion and leaves the
//! bench's own measurement.

mod common;
use common::{Limits, Timed, overhead};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::Criterion;
use failover_pool::FailoverCache;
use failover_pool::cache::entry::{self, EntryKind, Header};
use failover_pool::cache::{CacheSide, Version, codec};
use failover_pool::drill::{LocalRedisCluster, RedisClusterOptions};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

/// Tasks per iteration of the concurrent cases.
const TASKS: u32 = 16;
/// Target duration of one loop (one variant) of the bench's own
/// measurement: short, so that both variants see the same machine state.
const LOOP_TIME: Duration = Duration::from_millis(20);
/// Time spent on each pair by the bench's own measurement.
const PAIR_TIME: Duration = Duration::from_secs(2);
/// Fewest rounds per pair (a multiple of 4: ABBA order).
const MIN_ROUNDS: usize = 24;
/// The cache's key prefix, and the key the cache reads and writes.
const PREFIX: &str = "bench:";
const CACHE_KEY: &str = "cache";
/// The key the raw clients read and write (not the cache's: the cache
/// would not decode a raw value).
const RAW_KEY: &str = "bench:raw";
/// The key the hand-run script writes.
const SCRIPT_KEY: &str = "bench:script";
/// The value, 32 bytes.
const VALUE: &str = "0123456789abcdef0123456789abcdef";
/// The TTL of every write: longer than the run.
const TTL: Duration = Duration::from_secs(600);

/// The plain redis-rs client, as in `benches/redis_overhead.rs`.
type RawRedis = ConnectionManager;

/// Unix time in milliseconds.
fn wall_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

/// Connects a [`RawRedis`] to `url`, with redis-rs's default settings.
async fn raw_redis(url: &str) -> RawRedis {
    let client = redis::Client::open(url).expect("server URL");
    ConnectionManager::new(client)
        .await
        .expect("raw redis connection manager")
}

/// One raw `SET key value PX ttl`.
async fn raw_set(conn: &RawRedis) {
    let mut conn = conn.clone();
    let () = redis::cmd("SET")
        .arg(RAW_KEY)
        .arg(VALUE)
        .arg("PX")
        .arg(TTL.as_millis() as u64)
        .query_async(&mut conn)
        .await
        .expect("SET");
}

/// One raw `GET`.
async fn raw_get(conn: &RawRedis) {
    let value: Option<Vec<u8>> = conn.clone().get(RAW_KEY).await.expect("GET");
    black_box(value.expect("the raw key is set"));
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Get,
    Set,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Set => "set",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The plain client on server A.
    Raw,
    /// A second plain client on server A, configured like the first: raw
    /// vs raw-b is the noise floor (only in the bench's own measurement).
    RawB,
    /// `SET` only: the plain clients on A, then on B, one after the other.
    Sequential,
    /// `FailoverCache` over A (primary) and B (secondary).
    Cache,
    /// `SET` only, floor lines: the plain clients on A and on B at once.
    RawPair,
    /// `SET` only, floor lines: the cache's compare-and-set script
    /// (`EVALSHA`, a newer version each call) on the plain client on A.
    Script,
    /// `SET` only, floor lines: the script on A and on B at once, with the
    /// plain clients (the cache's dual write without the cache).
    ScriptPair,
    /// Floor lines: the plain `SET` or `GET` through the cache's own
    /// `FailoverRedis` on A (the pool's cost per call).
    Pool,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Raw => "raw",
            Kind::RawB => "raw-b",
            Kind::Sequential => "sequential",
            Kind::Cache => "cache",
            Kind::RawPair => "raw-pair",
            Kind::Script => "script",
            Kind::ScriptPair => "script-pair",
            Kind::Pool => "pool",
        }
    }
}

/// One measured thing: a client, a call, a concurrency.
#[derive(Debug, Clone, Copy)]
struct Case {
    op: Op,
    kind: Kind,
    tasks: u32,
}

/// The clients under test.
#[derive(Debug)]
struct Clients {
    /// On server A.
    raw_a: RawRedis,
    /// On server A too (noise floor).
    raw_a_b: RawRedis,
    /// On server B.
    raw_b: RawRedis,
    cache: FailoverCache,
    /// The cache's script, run by hand on the plain clients.
    script: redis::Script,
    /// The hybrid clock of the hand-run script's versions.
    clock: AtomicU64,
    /// The MessagePack of the value, as the cache stores it.
    payload: Vec<u8>,
}

impl Clients {
    async fn connect(url_a: &str, url_b: &str) -> Clients {
        let cache = FailoverCache::builder()
            .primary(CacheSide::url("a", url_a))
            .secondary(CacheSide::url("b", url_b))
            .prefix(PREFIX)
            .build()
            .await
            .expect("FailoverCache");
        Clients {
            raw_a: raw_redis(url_a).await,
            raw_a_b: raw_redis(url_a).await,
            raw_b: raw_redis(url_b).await,
            cache,
            script: redis::Script::new(entry::CAS_LUA),
            clock: AtomicU64::new(wall_millis() << 16),
            payload: codec::to_vec(VALUE).expect("MessagePack"),
        }
    }

    /// A new entry of the value, newer than the last one, and its expiry.
    fn entry(&self) -> (Vec<u8>, u64) {
        let expires_at = wall_millis() + TTL.as_millis() as u64;
        let header = Header {
            kind: EntryKind::Value,
            version: Version {
                hlc: self.clock.fetch_add(1, Relaxed) + 1,
                writer: 1,
            },
            expires_at,
        };
        let mut entry = header.encode().to_vec();
        entry.extend_from_slice(&self.payload);
        (entry, expires_at)
    }

    /// The cache's script by hand on `conn`, as the cache calls it.
    async fn script(&self, conn: &RawRedis, entry: &[u8], expires_at: u64) {
        let code: i64 = self
            .script
            .key(SCRIPT_KEY)
            .arg(entry)
            .arg(expires_at)
            .arg("0")
            .invoke_async(&mut conn.clone())
            .await
            .expect("EVALSHA");
        black_box(code);
    }

    /// One call through the given client.
    async fn call(&self, op: Op, kind: Kind) {
        match (op, kind) {
            (Op::Set, Kind::Raw) => raw_set(&self.raw_a).await,
            (Op::Set, Kind::RawB) => raw_set(&self.raw_a_b).await,
            (Op::Set, Kind::Sequential) => {
                raw_set(&self.raw_a).await;
                raw_set(&self.raw_b).await;
            }
            (Op::Set, Kind::Cache) => {
                let ack = self.cache.set(CACHE_KEY, VALUE, TTL).await;
                black_box(ack.expect("FailoverCache::set"));
            }
            (Op::Get, Kind::Raw) => raw_get(&self.raw_a).await,
            (Op::Get, Kind::RawB) => raw_get(&self.raw_a_b).await,
            (Op::Get, Kind::Cache) => {
                let value: Option<String> =
                    self.cache.get(CACHE_KEY).await.expect("FailoverCache::get");
                black_box(value.expect("the cache key is set"));
            }
            (Op::Set, Kind::RawPair) => {
                tokio::join!(raw_set(&self.raw_a), raw_set(&self.raw_b));
            }
            (Op::Set, Kind::Script) => {
                let (entry, at) = self.entry();
                self.script(&self.raw_a, &entry, at).await;
            }
            (Op::Set, Kind::ScriptPair) => {
                let (entry, at) = self.entry();
                tokio::join!(
                    self.script(&self.raw_a, &entry, at),
                    self.script(&self.raw_b, &entry, at)
                );
            }
            (Op::Set, Kind::Pool) => {
                let () = redis::cmd("SET")
                    .arg(RAW_KEY)
                    .arg(VALUE)
                    .arg("PX")
                    .arg(TTL.as_millis() as u64)
                    .query_async(&mut self.cache.sides()[0].clone())
                    .await
                    .expect("SET");
            }
            (Op::Get, Kind::Pool) => {
                let value: Option<Vec<u8>> = self.cache.sides()[0]
                    .clone()
                    .get(RAW_KEY)
                    .await
                    .expect("GET");
                black_box(value.expect("the raw key is set"));
            }
            (Op::Get, Kind::Sequential | Kind::RawPair | Kind::Script | Kind::ScriptPair) => {
                unreachable!("SET only")
            }
        }
    }

    /// One iteration: one call, or `tasks` concurrent ones.
    async fn iteration(self: &Arc<Self>, case: Case) {
        let Case { op, kind, .. } = case;
        if case.tasks == 1 {
            return self.call(op, kind).await;
        }
        let mut set = JoinSet::new();
        for _ in 0..case.tasks {
            let clients = Arc::clone(self);
            set.spawn(async move { clients.call(op, kind).await });
        }
        while let Some(joined) = set.join_next().await {
            joined.expect("call task panicked");
        }
    }
}

impl Timed for Arc<Clients> {
    type Case = Case;

    async fn iteration(&self, case: Case) {
        Clients::iteration(self, case).await;
    }
}

/// The measurement's loop and pair lengths.
const LIMITS: Limits = Limits {
    loop_time: LOOP_TIME,
    pair_time: PAIR_TIME,
    min_rounds: MIN_ROUNDS,
};

/// Starts one independent Redis server (a cluster of one master).
fn start_server(runtime: &Runtime, which: &str) -> LocalRedisCluster {
    let cluster = runtime
        .block_on(LocalRedisCluster::start(
            RedisClusterOptions::new().replicas(0),
        ))
        .unwrap_or_else(|e| panic!("starting local Redis server {which} failed: {e}"));
    eprintln!(
        "local Redis server {which} (1 master) started in {:?}",
        cluster.started_in()
    );
    cluster
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let server_a = start_server(&runtime, "A");
    let server_b = start_server(&runtime, "B");
    let (url_a, url_b) = (server_a.url(0), server_b.url(0));
    let clients = Arc::new(runtime.block_on(Clients::connect(&url_a, &url_b)));
    let case = |op, kind, tasks| Case { op, kind, tasks };
    // Write the keys, and warm every client up, before anything is
    // measured.
    runtime.block_on(async {
        for kind in [
            Kind::Raw,
            Kind::RawB,
            Kind::Sequential,
            Kind::Cache,
            Kind::RawPair,
            Kind::Script,
            Kind::ScriptPair,
            Kind::Pool,
        ] {
            for _ in 0..3 {
                clients.iteration(case(Op::Set, kind, TASKS)).await;
            }
        }
        for kind in [Kind::Raw, Kind::RawB, Kind::Cache, Kind::Pool] {
            for _ in 0..3 {
                clients.iteration(case(Op::Get, kind, TASKS)).await;
            }
        }
    });

    let mut criterion = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        // Rendering plots takes longer than measuring here.
        .without_plots()
        .configure_from_args();
    {
        let mut group = criterion.benchmark_group("cache");
        for (op, kinds) in [
            (Op::Set, &[Kind::Raw, Kind::Sequential, Kind::Cache][..]),
            (Op::Get, &[Kind::Raw, Kind::Cache][..]),
        ] {
            for tasks in [1, TASKS] {
                for &kind in kinds {
                    let id = format!("{}/{}/{tasks}", op.name(), kind.name());
                    let (clients, case) = (&clients, case(op, kind, tasks));
                    group.bench_function(id, |b| {
                        b.to_async(&runtime)
                            .iter(|| async move { clients.iteration(case).await });
                    });
                }
            }
        }
        group.finish();
    }
    criterion.final_summary();

    // `cargo test --benches` runs this without `--bench`: criterion then
    // runs every benchmark once as a test; skip the long measurement.
    let args: Vec<String> = std::env::args().collect();
    let measuring = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--list");
    if measuring {
        let mut lines = Vec::new();
        let mut extra = Vec::new();
        let mut floors = Vec::new();
        // (name, a, b, op): `b` measured against `a`.
        let pairs = [
            ("cache-set", Kind::Raw, Kind::Cache, Op::Set),
            (
                "cache-set-vs-sequential",
                Kind::Sequential,
                Kind::Cache,
                Op::Set,
            ),
            ("cache-get", Kind::Raw, Kind::Cache, Op::Get),
            ("raw-set", Kind::Raw, Kind::RawB, Op::Set),
            ("raw-get", Kind::Raw, Kind::RawB, Op::Get),
            ("floor-set-pair", Kind::Raw, Kind::RawPair, Op::Set),
            ("floor-script", Kind::Raw, Kind::Script, Op::Set),
            ("floor-script-pair", Kind::Raw, Kind::ScriptPair, Op::Set),
            (
                "cache-set-vs-script-pair",
                Kind::ScriptPair,
                Kind::Cache,
                Op::Set,
            ),
            ("floor-pool-set", Kind::Raw, Kind::Pool, Op::Set),
            ("floor-pool-get", Kind::Raw, Kind::Pool, Op::Get),
        ];
        let only = std::env::var("CACHE_BENCH_PAIRS").unwrap_or_default();
        for (name, a, b, op) in pairs {
            for tasks in [1, TASKS] {
                let pair = format!("{name}/{tasks}");
                if !pair.contains(only.as_str()) {
                    continue;
                }
                let o = overhead(
                    &runtime,
                    &clients,
                    case(op, a, tasks),
                    case(op, b, tasks),
                    LIMITS,
                );
                println!(
                    "measured {pair} {} vs {}: {} median {:.1} µs mean {:.1} µs, {} median \
                     {:.1} µs mean {:.1} µs; {} alternating rounds of {} iterations each; \
                     median of per-round ratios: of medians {:.3}, of means {:.3}",
                    a.name(),
                    b.name(),
                    a.name(),
                    o.a_median,
                    o.a_mean,
                    b.name(),
                    o.b_median,
                    o.b_mean,
                    o.rounds,
                    o.iters,
                    o.ratio,
                    o.mean_ratio
                );
                if b == Kind::RawB {
                    extra.push(format!(
                        "noise floor (a second raw client vs the raw client): {pair} ratio={:.3}",
                        o.ratio
                    ));
                } else if name.starts_with("floor") {
                    floors.push(format!("floor {pair} ratio={:.3}", o.ratio));
                } else {
                    lines.push(format!("overhead {pair} ratio={:.3}", o.ratio));
                }
            }
        }
        for line in extra.iter().chain(&floors).chain(&lines) {
            println!("{line}");
        }
    }

    runtime.block_on(clients.cache.close());
    {
        // Clients may spawn clean-up work when dropped.
        let _context = runtime.enter();
        drop(clients);
    }
    drop(runtime);
    // Stops the servers.
    drop(server_b);
    drop(server_a);
}

//! What the Redis failover clients cost on top of the clients they wrap,
//! measured against a real local Redis (1 master + 1 replica started with
//! `LocalRedisCluster`) in the same process and run:
//!
//! * `redis/{get,set}/{raw,failover}/{1,16}`: `GET`/`SET` on a plain
//!   redis-rs `ConnectionManager` ([`RawRedis`]) vs on `FailoverRedis`;
//! * `deadpool-redis/{get,set}/{raw,failover}/{1,16}`: `GET`/`SET` on a
//!   connection from a plain `deadpool_redis::Pool` vs from
//!   `FailoverPool<DeadpoolRedis>::writer()`.
//!
//! `1` is one command per iteration; `16` is 16 concurrent commands (16
//! tasks, joined) per iteration. `GET` reads a 32-byte value, `SET` writes
//! it back (one key, written before anything is measured).
//!
//! Like is compared with like: the raw client and `FailoverRedis` both
//! send every caller's commands over one multiplexed connection to the
//! master, with a 500 ms response timeout (redis-rs's default, and
//! `FailoverRedis`'s). The raw client is redis-rs's `ConnectionManager`
//! (the client the users have: one multiplexed connection that
//! reconnects to the same address). Both deadpool
//! pools hold up to 16 connections and recycle a connection with
//! deadpool-redis's `UNWATCH`+`PING` round trip at every checkout. The
//! failover pool's node pools also have create, wait and recycle timeouts
//! (the connect timeout); a raw pool with the same timeouts is measured
//! too, by the bench's own measurement only, and reported on separate lines
//! (`raw-timeouts` vs `raw`).
//!
//! After criterion's report, the bench measures every pair again itself:
//! short loops of raw and failover alternate (ABBA order, so that neither
//! always runs first) for a few seconds per pair, every iteration is timed,
//! and the median over the rounds of (failover median / raw median) is
//! printed as `overhead <pair> ratio=<failover/raw>`. The same is done for
//! a second raw client configured like the first (`noise floor ... ratio=`
//! lines): two identical clients differ by that much on this machine in
//! this run, so an overhead ratio within the noise floor is no measured
//! overhead.
//!
//! Run with `cargo bench --all-features --bench redis_overhead` (about
//! 1.5 minutes). Environment: `REDIS_OVERHEAD_RUNTIME=current_thread` runs
//! everything on a current-thread runtime (default: multi-thread);
//! `REDIS_OVERHEAD_PROFILE=1` also times the sub-steps (checkout, command
//! on a checked-out connection) of each client, and the redis-rs paths
//! with 16 tasks; `REDIS_OVERHEAD_PAIRS=<text>` limits the bench's own
//! measurement to the pairs whose name contains `<text>` (e.g.
//! `redis/get/16`). A criterion filter that matches nothing (`-- none`)
//! skips criterion and leaves the bench's own measurement.

mod common;
use common::{Limits, Timed, mean, median, overhead};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use failover_pool::drill::{LocalRedisCluster, RedisClusterOptions};
use failover_pool::pool::{Backend, FailoverPool, PoolConfig, Route};
use failover_pool::redis::{DeadpoolRedis, FailoverRedis, RedisBackend, RedisNodePool};
use redis::AsyncCommands;
use redis::aio::{ConnectionLike, ConnectionManager};
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

/// Connections per deadpool pool, and tasks per iteration of the
/// concurrent cases.
const POOL_SIZE: u32 = 16;
/// Target duration of one loop (one variant) of the bench's own
/// measurement: short, so that raw and failover see the same machine state.
const LOOP_TIME: Duration = Duration::from_millis(20);
/// Time spent on each pair by the bench's own measurement.
const PAIR_TIME: Duration = Duration::from_secs(2);
/// Fewest rounds per pair (a multiple of 4: ABBA order).
const MIN_ROUNDS: usize = 24;
/// The key every command reads or writes, and its value.
const KEY: &str = "bench:redis_overhead";
const VALUE: &[u8; 32] = b"0123456789abcdef0123456789abcdef";

/// The plain redis-rs client compared with `FailoverRedis` (see the module
/// docs for why not `ConnectionManager`).
type RawRedis = ConnectionManager;

/// Connects a [`RawRedis`] to `url`, with redis-rs's default settings.
async fn raw_redis(url: &str) -> RawRedis {
    let client = redis::Client::open(url).expect("master URL");
    ConnectionManager::new(client)
        .await
        .expect("raw redis connection manager")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lib {
    Redis,
    Deadpool,
}

impl Lib {
    fn name(self) -> &'static str {
        match self {
            Lib::Redis => "redis",
            Lib::Deadpool => "deadpool-redis",
        }
    }
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

    async fn run<C: ConnectionLike + Send + Sync>(self, conn: &mut C) {
        match self {
            Op::Get => {
                let value: Option<Vec<u8>> = conn.get(KEY).await.expect("GET");
                black_box(value);
            }
            Op::Set => {
                let () = conn.set(KEY, VALUE).await.expect("SET");
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The plain client.
    Raw,
    /// The failover client, configured like the raw client.
    Failover,
    /// A second plain client, configured like the first: raw vs raw-b is
    /// the noise floor (only in the bench's own measurement).
    RawB,
    /// deadpool only: a plain pool with the failover node pools' create,
    /// wait and recycle timeouts (only in the bench's own measurement).
    RawTimeouts,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Raw => "raw",
            Kind::Failover => "failover",
            Kind::RawB => "raw-b",
            Kind::RawTimeouts => "raw-timeouts",
        }
    }
}

/// One measured thing: a client, a command, a concurrency.
#[derive(Debug, Clone, Copy)]
struct Case {
    lib: Lib,
    op: Op,
    kind: Kind,
    tasks: u32,
}

/// The clients under test, all on the same cluster's master.
#[derive(Debug)]
struct Clients {
    redis_raw: RawRedis,
    redis_raw_b: RawRedis,
    redis_failover: FailoverRedis,
    deadpool_raw: deadpool_redis::Pool,
    deadpool_raw_b: deadpool_redis::Pool,
    deadpool_raw_timeouts: deadpool_redis::Pool,
    deadpool_failover: FailoverPool<DeadpoolRedis>,
}

impl Clients {
    async fn connect(cluster: &LocalRedisCluster) -> Clients {
        let master = cluster
            .nodes()
            .into_iter()
            .find(|n| n.replica_of.is_none())
            .expect("a master")
            .url();
        let urls = cluster.urls();
        let config = PoolConfig {
            max_connections: POOL_SIZE,
            ..PoolConfig::default()
        };
        let deadpool = |timeouts: Option<Duration>| {
            let mut builder = deadpool_redis::Config::from_url(master.as_str())
                .builder()
                .expect("raw deadpool-redis config")
                .max_size(POOL_SIZE as usize)
                .runtime(deadpool_redis::Runtime::Tokio1);
            if timeouts.is_some() {
                builder = builder
                    .create_timeout(timeouts)
                    .wait_timeout(timeouts)
                    .recycle_timeout(timeouts);
            }
            builder.build().expect("raw deadpool-redis pool")
        };
        Clients {
            redis_raw: raw_redis(&master).await,
            redis_raw_b: raw_redis(&master).await,
            redis_failover: FailoverRedis::connect_with(&urls, config.clone())
                .await
                .expect("FailoverRedis"),
            deadpool_raw: deadpool(None),
            deadpool_raw_b: deadpool(None),
            deadpool_raw_timeouts: deadpool(Some(config.connect_timeout)),
            deadpool_failover: FailoverPool::<DeadpoolRedis>::connect_with(&urls, config)
                .await
                .expect("failover deadpool-redis pool"),
        }
    }

    fn deadpool(&self, kind: Kind) -> &deadpool_redis::Pool {
        match kind {
            Kind::Raw => &self.deadpool_raw,
            Kind::RawB => &self.deadpool_raw_b,
            Kind::RawTimeouts => &self.deadpool_raw_timeouts,
            Kind::Failover => unreachable!("the failover pool is no deadpool_redis::Pool"),
        }
    }

    /// One command through the given client.
    async fn command(&self, lib: Lib, kind: Kind, op: Op) {
        match lib {
            Lib::Redis => self.redis_command(kind, op).await,
            Lib::Deadpool => self.deadpool_command(kind, op).await,
        }
    }

    /// One command on a clone of a redis-rs client. A future of its own
    /// (not [`Clients::command`]'s), so that a spawned redis-rs task does
    /// not carry the size of deadpool's checkout futures (~7 KB).
    async fn redis_command(&self, kind: Kind, op: Op) {
        match kind {
            Kind::Raw => op.run(&mut self.redis_raw.clone()).await,
            Kind::RawB => op.run(&mut self.redis_raw_b.clone()).await,
            Kind::Failover => op.run(&mut self.redis_failover.clone()).await,
            Kind::RawTimeouts => unreachable!("deadpool only"),
        }
    }

    /// One checkout and command on a deadpool pool.
    async fn deadpool_command(&self, kind: Kind, op: Op) {
        if kind == Kind::Failover {
            let mut conn = self.deadpool_failover.writer().await.expect("writer()");
            op.run(&mut *conn).await;
        } else {
            let mut conn = self.deadpool(kind).get().await.expect("raw get()");
            op.run(&mut conn).await;
        }
    }

    /// One iteration: one command, or `tasks` concurrent ones.
    async fn iteration(self: &Arc<Self>, case: Case) {
        let Case { lib, op, kind, .. } = case;
        if case.tasks == 1 {
            return self.command(lib, kind, op).await;
        }
        let mut set = JoinSet::new();
        for _ in 0..case.tasks {
            let clients = Arc::clone(self);
            match lib {
                Lib::Redis => set.spawn(async move { clients.redis_command(kind, op).await }),
                Lib::Deadpool => set.spawn(async move { clients.deadpool_command(kind, op).await }),
            };
        }
        while let Some(joined) = set.join_next().await {
            joined.expect("command task panicked");
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

/// A sub-step timed by the profile (`REDIS_OVERHEAD_PROFILE=1`), 1 task,
/// `GET` only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// `GET` on a clone of the raw client.
    RedisRawGet,
    /// `GET` on a clone of `FailoverRedis` (checkout + command).
    RedisFailoverGet,
    /// `FailoverRedis::checkout(Route::Writer)`, then drop.
    RedisFailoverCheckout,
    /// `GET` on a `FailoverRedis` connection checked out beforehand.
    RedisFailoverGetOnConn,
    /// `get()` on the raw deadpool pool, then drop.
    DeadpoolRawCheckout,
    /// `get()` on the raw deadpool pool with timeouts, then drop.
    DeadpoolRawTimeoutsCheckout,
    /// `FailoverPool<DeadpoolRedis>::writer()`, then drop.
    DeadpoolFailoverCheckout,
    /// `get()` straight on the failover pool's writer node pool, then drop.
    DeadpoolNodePoolCheckout,
    /// `GET` on a raw deadpool connection obtained beforehand.
    DeadpoolRawGetOnConn,
    /// `GET` on a failover deadpool connection obtained beforehand.
    DeadpoolFailoverGetOnConn,
}

impl Step {
    const ALL: [Step; 10] = [
        Step::RedisRawGet,
        Step::RedisFailoverGet,
        Step::RedisFailoverCheckout,
        Step::RedisFailoverGetOnConn,
        Step::DeadpoolRawCheckout,
        Step::DeadpoolRawTimeoutsCheckout,
        Step::DeadpoolFailoverCheckout,
        Step::DeadpoolNodePoolCheckout,
        Step::DeadpoolRawGetOnConn,
        Step::DeadpoolFailoverGetOnConn,
    ];
}

impl Clients {
    /// The deadpool failover pool's current writer node pool.
    fn deadpool_writer_pool(&self) -> deadpool_redis::Pool {
        let topo = self.deadpool_failover.topology();
        let writer = topo.writer_status().expect("a writer");
        self.deadpool_failover
            .node_pool(&writer.id)
            .expect("the writer's pool")
    }

    /// Times one `step` (µs), setup excluded.
    async fn step(&self, step: Step) -> f64 {
        let began = Instant::now();
        match step {
            Step::RedisRawGet => Op::Get.run(&mut self.redis_raw.clone()).await,
            Step::RedisFailoverGet => Op::Get.run(&mut self.redis_failover.clone()).await,
            Step::RedisFailoverCheckout => {
                drop(black_box(
                    self.redis_failover.checkout(Route::Writer).await.unwrap(),
                ));
            }
            Step::DeadpoolRawCheckout => drop(black_box(self.deadpool_raw.get().await.unwrap())),
            Step::DeadpoolRawTimeoutsCheckout => {
                drop(black_box(self.deadpool_raw_timeouts.get().await.unwrap()));
            }
            Step::DeadpoolFailoverCheckout => {
                drop(black_box(self.deadpool_failover.writer().await.unwrap()));
            }
            Step::DeadpoolNodePoolCheckout => {
                let node = self.deadpool_writer_pool();
                let began = Instant::now();
                drop(black_box(node.get().await.unwrap()));
                return began.elapsed().as_secs_f64() * 1e6;
            }
            Step::RedisFailoverGetOnConn => {
                let mut conn = self.redis_failover.checkout(Route::Writer).await.unwrap();
                let began = Instant::now();
                Op::Get.run(&mut *conn).await;
                return began.elapsed().as_secs_f64() * 1e6;
            }
            Step::DeadpoolRawGetOnConn => {
                let mut conn = self.deadpool_raw.get().await.unwrap();
                let began = Instant::now();
                Op::Get.run(&mut conn).await;
                return began.elapsed().as_secs_f64() * 1e6;
            }
            Step::DeadpoolFailoverGetOnConn => {
                let mut conn = self.deadpool_failover.writer().await.unwrap();
                let began = Instant::now();
                Op::Get.run(&mut *conn).await;
                return began.elapsed().as_secs_f64() * 1e6;
            }
        }
        began.elapsed().as_secs_f64() * 1e6
    }
}

/// Times every [`Step`] (1 task), steps interleaved round by round, and
/// prints the median and mean of each.
fn profile(runtime: &Runtime, clients: &Arc<Clients>) {
    const ROUNDS: usize = 20;
    const ITERS: usize = 200;
    let n = Step::ALL.len();
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); n];
    runtime.block_on(async {
        for round in 0..ROUNDS {
            for k in 0..n {
                // Alternate the order of the steps from round to round.
                let k = if round % 2 == 0 { k } else { n - 1 - k };
                for _ in 0..ITERS {
                    samples[k].push(clients.step(Step::ALL[k]).await);
                }
            }
        }
    });
    println!("profile (1 task, {ROUNDS} interleaved rounds of {ITERS} iterations per step):");
    for (step, mut times) in Step::ALL.iter().zip(samples) {
        let mean = mean(&times);
        println!(
            "  {:<28} median {:>8.2} µs  mean {:>8.2} µs",
            format!("{step:?}"),
            median(&mut times),
            mean
        );
    }
    profile_redis_concurrent(runtime, clients);
}

/// A way of sending `GET` through redis-rs, for the concurrent profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RedisPath {
    /// On a clone of the raw client.
    Raw,
    /// On a clone of `FailoverRedis`.
    Failover,
    /// `FailoverRedis::checkout(Route::Writer)`, then on the checked-out
    /// connection.
    FailoverCheckoutThenGet,
    /// `RedisBackend::acquire` straight on the writer's node pool (no
    /// routing), then on that connection.
    NodePoolThenGet,
}

impl RedisPath {
    const ALL: [RedisPath; 4] = [
        RedisPath::Raw,
        RedisPath::Failover,
        RedisPath::FailoverCheckoutThenGet,
        RedisPath::NodePoolThenGet,
    ];
}

/// The redis-rs paths with [`POOL_SIZE`] concurrent tasks, interleaved
/// round by round: separates the failover layer's routing from its
/// connection.
fn profile_redis_concurrent(runtime: &Runtime, clients: &Arc<Clients>) {
    const ROUNDS: usize = 40;
    const ITERS: usize = 50;
    let backend = Arc::new(RedisBackend::from_config(clients.redis_failover.config()));
    let node: RedisNodePool = {
        let topo = clients.redis_failover.topology();
        let writer = topo.writer_status().expect("a writer");
        clients
            .redis_failover
            .node_pool(&writer.id)
            .expect("the writer's pool")
    };
    let n = RedisPath::ALL.len();
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); n];
    runtime.block_on(async {
        for round in 0..ROUNDS {
            for k in 0..n {
                let k = if round % 2 == 0 { k } else { n - 1 - k };
                let path = RedisPath::ALL[k];
                for _ in 0..ITERS {
                    let began = Instant::now();
                    let mut set = JoinSet::new();
                    for _ in 0..POOL_SIZE {
                        let clients = Arc::clone(clients);
                        match path {
                            RedisPath::Raw => set.spawn(async move {
                                Op::Get.run(&mut clients.redis_raw.clone()).await
                            }),
                            RedisPath::Failover => set.spawn(async move {
                                Op::Get.run(&mut clients.redis_failover.clone()).await
                            }),
                            RedisPath::FailoverCheckoutThenGet => set.spawn(async move {
                                let checkout = clients.redis_failover.checkout(Route::Writer);
                                Op::Get.run(&mut *checkout.await.unwrap()).await
                            }),
                            RedisPath::NodePoolThenGet => set.spawn({
                                let (backend, node) = (Arc::clone(&backend), node.clone());
                                async move {
                                    Op::Get
                                        .run(&mut backend.acquire(&node).await.unwrap())
                                        .await
                                }
                            }),
                        };
                    }
                    while let Some(joined) = set.join_next().await {
                        joined.unwrap();
                    }
                    samples[k].push(began.elapsed().as_secs_f64() * 1e6);
                }
            }
        }
    });
    println!(
        "profile (redis GET, {POOL_SIZE} concurrent tasks per iteration, {ROUNDS} interleaved \
         rounds of {ITERS} iterations per path):"
    );
    for (path, mut times) in RedisPath::ALL.iter().zip(samples) {
        let mean = mean(&times);
        println!(
            "  {:<28} median {:>8.1} µs  mean {:>8.1} µs",
            format!("{path:?}"),
            median(&mut times),
            mean
        );
    }
}

fn main() {
    let runtime = match std::env::var("REDIS_OVERHEAD_RUNTIME").as_deref() {
        Ok("current_thread") => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    }
    .enable_all()
    .build()
    .expect("tokio runtime");
    let cluster = runtime
        .block_on(LocalRedisCluster::start(
            RedisClusterOptions::new().replicas(1),
        ))
        .unwrap_or_else(|e| panic!("starting the local Redis cluster failed: {e}"));
    eprintln!(
        "local Redis cluster (1 master + 1 replica) started in {:?}",
        cluster.started_in()
    );
    let clients = Arc::new(runtime.block_on(Clients::connect(&cluster)));
    let libs = [Lib::Redis, Lib::Deadpool];
    let ops = [Op::Get, Op::Set];
    let case = |lib, op, kind, tasks| Case {
        lib,
        op,
        kind,
        tasks,
    };
    // Write the key, and open every pool's connections, before anything
    // is measured.
    runtime.block_on(async {
        let all = [
            (Lib::Redis, Kind::Raw),
            (Lib::Redis, Kind::RawB),
            (Lib::Redis, Kind::Failover),
            (Lib::Deadpool, Kind::Raw),
            (Lib::Deadpool, Kind::RawB),
            (Lib::Deadpool, Kind::RawTimeouts),
            (Lib::Deadpool, Kind::Failover),
        ];
        for (lib, kind) in all {
            for op in [Op::Set, Op::Get] {
                for _ in 0..3 {
                    clients.iteration(case(lib, op, kind, POOL_SIZE)).await;
                }
            }
        }
    });

    let mut criterion = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        // Rendering plots takes longer than measuring here (~8 s per
        // benchmark with the plotters backend): the whole bench would take
        // 4 minutes instead of under 2.
        .without_plots()
        .configure_from_args();
    for lib in libs {
        let mut group = criterion.benchmark_group(lib.name());
        // Raw and failover side by side, for each command and concurrency.
        for op in ops {
            for tasks in [1, POOL_SIZE] {
                for kind in [Kind::Raw, Kind::Failover] {
                    let id = format!("{}/{}/{tasks}", op.name(), kind.name());
                    let (clients, case) = (&clients, case(lib, op, kind, tasks));
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
        let pairs = [
            (Lib::Redis, Kind::Failover),
            (Lib::Redis, Kind::RawB),
            (Lib::Deadpool, Kind::Failover),
            (Lib::Deadpool, Kind::RawB),
            (Lib::Deadpool, Kind::RawTimeouts),
        ];
        let only = std::env::var("REDIS_OVERHEAD_PAIRS").unwrap_or_default();
        for (lib, kind) in pairs {
            for op in ops {
                for tasks in [1, POOL_SIZE] {
                    let pair = format!("{}/{}/{tasks}", lib.name(), op.name());
                    if !pair.contains(only.as_str()) {
                        continue;
                    }
                    let raw = case(lib, op, Kind::Raw, tasks);
                    let o = overhead(&runtime, &clients, raw, case(lib, op, kind, tasks), LIMITS);
                    println!(
                        "measured {pair} raw vs {}: raw median {:.1} µs mean {:.1} µs, {} \
                         median {:.1} µs mean {:.1} µs; {} alternating rounds of {} iterations \
                         each; median of per-round ratios: of medians {:.3}, of means {:.3}",
                        kind.name(),
                        o.a_median,
                        o.a_mean,
                        kind.name(),
                        o.b_median,
                        o.b_mean,
                        o.rounds,
                        o.iters,
                        o.ratio,
                        o.mean_ratio
                    );
                    match kind {
                        Kind::Failover => {
                            lines.push(format!("overhead {pair} ratio={:.3}", o.ratio))
                        }
                        Kind::RawB => extra.push(format!(
                            "noise floor (a second raw client vs the raw client): {pair} \
                             ratio={:.3}",
                            o.ratio
                        )),
                        _ => extra.push(format!(
                            "with the failover node pools' create/wait/recycle timeouts on a \
                             raw pool: {pair} ratio={:.3}",
                            o.ratio
                        )),
                    }
                }
            }
        }
        for line in extra.iter().chain(&lines) {
            println!("{line}");
        }
        if std::env::var_os("REDIS_OVERHEAD_PROFILE").is_some() {
            profile(&runtime, &clients);
        }
    }

    {
        // Clients may spawn clean-up work when dropped.
        let _context = runtime.enter();
        drop(clients);
    }
    drop(runtime);
    // Stops the servers.
    drop(cluster);
}

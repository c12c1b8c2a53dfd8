//! What the failover pools cost on top of the pools they wrap, measured
//! against a real local PostgreSQL (1 primary + 1 standby started with
//! `LocalPgCluster`) in the same process and run:
//!
//! * `sqlx/raw/{1,16}` vs `sqlx/failover/{1,16}`: `SELECT 1` executed on a
//!   plain `sqlx::PgPool` vs on `FailoverPgPool`;
//! * `deadpool/raw/{1,16}` vs `deadpool/failover/{1,16}`: `SELECT 1` on a
//!   connection from a plain `deadpool_postgres::Pool` vs from
//!   `FailoverPool<DeadpoolPostgres>::writer()`.
//!
//! `1` is one query per iteration; `16` is 16 concurrent queries (16 tasks,
//! joined) per iteration. Every pool holds up to 16 connections.
//!
//! Like is compared with like: the raw sqlx pool checks connections before
//! handing them out (sqlx's default `test_before_acquire`) and so does the
//! failover sqlx pool (`PoolConfig::default()`); the raw deadpool pool uses
//! `RecyclingMethod::Fast`, so the failover deadpool pool is built with
//! `test_before_acquire: false` (which is `Fast`). The deadpool failover
//! pool with the full `PoolConfig::default()` (`RecyclingMethod::Verified`,
//! one extra round trip per checkout) is measured too, by the bench's own
//! measurement only, and reported on separate lines.
//!
//! After criterion's report, the bench measures every pair again itself:
//! short loops of raw and failover alternate (ABBA order, so that neither
//! always runs first) for a few seconds per pair, every iteration is timed,
//! and the median over the rounds of (failover median / raw median) is
//! printed as `overhead <pair> ratio=<failover/raw>`. The same is done for
//! a second raw pool configured like the first (`noise floor ... ratio=`
//! lines): two identical pools differ by that much on this machine in this
//! run, so an overhead ratio within the noise floor is no measured overhead.
//!
//! Run with `cargo bench --bench pg_overhead --features drill`. Environment:
//! `PG_OVERHEAD_RUNTIME=current_thread` runs everything on a
//! current-thread runtime (default: multi-thread); `PG_OVERHEAD_PROFILE=1`
//! also times the sub-steps (acquire, topology lookup, query on an acquired
//! connection) of each pool. A criterion filter that matches nothing
//! (`-- none`) skips criterion and leaves the bench's own measurement.

mod common;
use common::{mean, median};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use deadpool_postgres::{ManagerConfig, RecyclingMethod};
use failover_pool::drill::{LocalPgCluster, PgClusterOptions};
use failover_pool::pool::{FailoverPool, PoolConfig};
use failover_pool::postgres::{DeadpoolPostgres, FailoverPgPool};
use sqlx::postgres::PgPoolOptions;
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

/// Connections per pool, and tasks per iteration of the concurrent cases.
const POOL_SIZE: u32 = 16;
/// Target duration of one loop (one variant) of the bench's own
/// measurement: short, so that raw and failover see the same machine state.
const LOOP_TIME: Duration = Duration::from_millis(20);
/// Time spent on each pair by the bench's own measurement.
const PAIR_TIME: Duration = Duration::from_secs(3);
/// Fewest rounds per pair (a multiple of 4: ABBA order).
const MIN_ROUNDS: usize = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lib {
    Sqlx,
    Deadpool,
}

impl Lib {
    fn name(self) -> &'static str {
        match self {
            Lib::Sqlx => "sqlx",
            Lib::Deadpool => "deadpool",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The plain pool.
    Raw,
    /// The failover pool, configured like the raw pool.
    Failover,
    /// The deadpool failover pool with `PoolConfig::default()`'s
    /// `test_before_acquire: true` (a verifying round trip per checkout);
    /// only in the bench's own measurement.
    FailoverDefault,
    /// The deadpool failover pool with `test_bypass_window: 500ms` (the
    /// check only for connections idle that long); only in the bench's own
    /// measurement.
    FailoverBypass,
    /// A second raw pool, configured like the first: raw vs raw-b is the
    /// noise floor of the comparison (only in the bench's own measurement).
    RawB,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Raw => "raw",
            Kind::Failover => "failover",
            Kind::FailoverDefault => "failover-default",
            Kind::FailoverBypass => "failover-bypass-500ms",
            Kind::RawB => "raw-b",
        }
    }
}

/// The pools under test, all on the same cluster.
#[derive(Debug)]
struct Pools {
    sqlx_raw: sqlx::PgPool,
    sqlx_raw_b: sqlx::PgPool,
    sqlx_failover: FailoverPgPool,
    deadpool_raw: deadpool_postgres::Pool,
    deadpool_raw_b: deadpool_postgres::Pool,
    deadpool_failover: FailoverPool<DeadpoolPostgres>,
    deadpool_failover_default: FailoverPool<DeadpoolPostgres>,
    deadpool_failover_bypass: FailoverPool<DeadpoolPostgres>,
}

impl Pools {
    async fn connect(cluster: &LocalPgCluster) -> Pools {
        let primary = cluster.node(cluster.primary_index()).url();
        let urls = cluster.urls();
        let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
        let config = PoolConfig {
            max_connections: POOL_SIZE,
            ..PoolConfig::default()
        };

        let sqlx_raw = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .connect(&primary)
            .await
            .expect("raw sqlx pool");
        let sqlx_raw_b = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .connect(&primary)
            .await
            .expect("second raw sqlx pool");
        let sqlx_failover = FailoverPgPool::connect_with(&urls, config.clone())
            .await
            .expect("failover sqlx pool");

        let pg_config: tokio_postgres::Config = primary.parse().expect("primary URL");
        let raw_deadpool = || {
            let manager = deadpool_postgres::Manager::from_config(
                pg_config.clone(),
                tokio_postgres::NoTls,
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            );
            deadpool_postgres::Pool::builder(manager)
                .max_size(POOL_SIZE as usize)
                .build()
                .expect("raw deadpool pool")
        };
        let deadpool_raw = raw_deadpool();
        let deadpool_raw_b = raw_deadpool();
        // `test_before_acquire: false` is deadpool's `RecyclingMethod::Fast`,
        // as in the raw pool; the default (`true`) is `Verified`, one more
        // round trip per checkout, measured separately.
        let deadpool_failover = FailoverPool::<DeadpoolPostgres>::connect(
            &urls,
            PoolConfig {
                test_before_acquire: false,
                ..config.clone()
            },
        )
        .await
        .expect("failover deadpool pool");
        let deadpool_failover_bypass = FailoverPool::<DeadpoolPostgres>::connect(
            &urls,
            PoolConfig {
                test_bypass_window: Some(Duration::from_millis(500)),
                ..config.clone()
            },
        )
        .await
        .expect("failover deadpool pool (bypass window)");
        let deadpool_failover_default = FailoverPool::<DeadpoolPostgres>::connect(&urls, config)
            .await
            .expect("failover deadpool pool (default config)");
        Pools {
            sqlx_raw,
            sqlx_raw_b,
            sqlx_failover,
            deadpool_raw,
            deadpool_raw_b,
            deadpool_failover,
            deadpool_failover_default,
            deadpool_failover_bypass,
        }
    }

    /// One `SELECT 1` through the given pool.
    async fn query(&self, lib: Lib, kind: Kind) {
        match (lib, kind) {
            (Lib::Sqlx, Kind::Raw | Kind::RawB) => {
                let pool = if kind == Kind::Raw {
                    &self.sqlx_raw
                } else {
                    &self.sqlx_raw_b
                };
                let done = sqlx::query("SELECT 1").execute(pool).await;
                black_box(done.expect("SELECT 1 on the raw sqlx pool"));
            }
            (Lib::Sqlx, Kind::Failover) => {
                let done = sqlx::query("SELECT 1").execute(&self.sqlx_failover).await;
                black_box(done.expect("SELECT 1 on the failover sqlx pool"));
            }
            (Lib::Deadpool, Kind::Raw | Kind::RawB) => {
                let pool = if kind == Kind::Raw {
                    &self.deadpool_raw
                } else {
                    &self.deadpool_raw_b
                };
                let client = pool.get().await.expect("raw deadpool get");
                let done = client.execute("SELECT 1", &[]).await;
                black_box(done.expect("SELECT 1 on the raw deadpool pool"));
            }
            (Lib::Deadpool, Kind::Failover | Kind::FailoverDefault | Kind::FailoverBypass) => {
                let pool = match kind {
                    Kind::Failover => &self.deadpool_failover,
                    Kind::FailoverDefault => &self.deadpool_failover_default,
                    _ => &self.deadpool_failover_bypass,
                };
                let client = pool.writer().await.expect("failover deadpool writer");
                let done = client.execute("SELECT 1", &[]).await;
                black_box(done.expect("SELECT 1 on the failover deadpool pool"));
            }
            (Lib::Sqlx, Kind::FailoverDefault | Kind::FailoverBypass) => {
                unreachable!("the sqlx failover pool already runs with the defaults")
            }
        }
    }

    /// One iteration: `tasks` concurrent queries (inline when 1).
    async fn iteration(self: &Arc<Self>, lib: Lib, kind: Kind, tasks: u32) {
        if tasks == 1 {
            return self.query(lib, kind).await;
        }
        let mut set = JoinSet::new();
        for _ in 0..tasks {
            let pools = Arc::clone(self);
            set.spawn(async move { pools.query(lib, kind).await });
        }
        while let Some(joined) = set.join_next().await {
            joined.expect("query task panicked");
        }
    }

    /// Runs `iters` iterations, pushing the time of each (µs) onto `out`.
    async fn sample(
        self: &Arc<Self>,
        lib: Lib,
        kind: Kind,
        tasks: u32,
        iters: u32,
        out: &mut Vec<f64>,
    ) {
        for _ in 0..iters {
            let began = Instant::now();
            self.iteration(lib, kind, tasks).await;
            out.push(began.elapsed().as_secs_f64() * 1e6);
        }
    }
}

/// The bench's own measurement of one pair.
#[derive(Debug)]
struct Overhead {
    rounds: usize,
    iters: u32,
    raw_median: f64,
    failover_median: f64,
    raw_mean: f64,
    failover_mean: f64,
    /// Median over the rounds of failover median / raw median.
    ratio: f64,
    /// Median over the rounds of failover mean / raw mean.
    mean_ratio: f64,
}

/// Measures one pair: short loops of raw and failover alternating (ABBA)
/// for [`PAIR_TIME`], every iteration timed.
fn overhead(
    runtime: &Runtime,
    pools: &Arc<Pools>,
    lib: Lib,
    failover_kind: Kind,
    tasks: u32,
) -> Overhead {
    // Calibrate the loop length on the raw pool.
    let mut probe = Vec::new();
    runtime.block_on(pools.sample(lib, Kind::Raw, tasks, 50, &mut probe));
    let per_iter = median(&mut probe) * 1e-6;
    let iters = (LOOP_TIME.as_secs_f64() / per_iter).clamp(10.0, 10_000.0) as u32;
    let (mut raw_all, mut failover_all) = (Vec::new(), Vec::new());
    let (mut ratios, mut mean_ratios) = (Vec::new(), Vec::new());
    let began = Instant::now();
    let mut round = 0;
    while round < MIN_ROUNDS || began.elapsed() < PAIR_TIME {
        // ABBA: raw first in rounds 0, 3, 4, 7, 8, ...
        let raw_first = matches!(round % 4, 0 | 3);
        let (mut raw, mut failover) = (Vec::new(), Vec::new());
        runtime.block_on(async {
            if raw_first {
                pools.sample(lib, Kind::Raw, tasks, iters, &mut raw).await;
                pools
                    .sample(lib, failover_kind, tasks, iters, &mut failover)
                    .await;
            } else {
                pools
                    .sample(lib, failover_kind, tasks, iters, &mut failover)
                    .await;
                pools.sample(lib, Kind::Raw, tasks, iters, &mut raw).await;
            }
        });
        mean_ratios.push(mean(&failover) / mean(&raw));
        ratios.push(median(&mut failover) / median(&mut raw));
        raw_all.extend(raw);
        failover_all.extend(failover);
        round += 1;
    }
    Overhead {
        rounds: round,
        iters,
        raw_mean: mean(&raw_all),
        failover_mean: mean(&failover_all),
        raw_median: median(&mut raw_all),
        failover_median: median(&mut failover_all),
        ratio: median(&mut ratios),
        mean_ratio: median(&mut mean_ratios),
    }
}

/// A sub-step timed by the profile (`PG_OVERHEAD_PROFILE=1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// `PgPool::acquire()` on the raw pool, then drop.
    SqlxRawAcquire,
    /// `FailoverPgPool::acquire()`, then drop.
    SqlxFailoverAcquire,
    /// `FailoverPgPool::writer()` (a routed handle: a pool clone).
    SqlxFailoverWriterPool,
    /// `SELECT 1` on an already acquired raw connection.
    SqlxRawExecuteOnConn,
    /// `SELECT 1` on an already acquired failover connection.
    SqlxFailoverExecuteOnConn,
    /// `Pool::get()` on the raw deadpool pool, then drop.
    DeadpoolRawGet,
    /// `FailoverPool::writer()`, then drop.
    DeadpoolFailoverWriter,
    /// `FailoverPool::node_pool(writer)` only (topology lookup, `Pool` clone).
    DeadpoolFailoverWriterNode,
    /// `get()` straight on the failover pool's inner node pool, then drop.
    DeadpoolNodePoolGet,
    /// `SELECT 1` on an object from the raw pool, obtained beforehand.
    DeadpoolRawExecuteOnObject,
    /// `SELECT 1` on an object from the failover pool, obtained beforehand.
    DeadpoolFailoverExecuteOnObject,
    /// `SELECT 1` on an object from the failover's node pool, obtained beforehand.
    DeadpoolNodePoolExecuteOnObject,
}

impl Step {
    const ALL: [Step; 12] = [
        Step::SqlxRawAcquire,
        Step::SqlxFailoverAcquire,
        Step::SqlxFailoverWriterPool,
        Step::SqlxRawExecuteOnConn,
        Step::SqlxFailoverExecuteOnConn,
        Step::DeadpoolRawGet,
        Step::DeadpoolFailoverWriter,
        Step::DeadpoolFailoverWriterNode,
        Step::DeadpoolNodePoolGet,
        Step::DeadpoolRawExecuteOnObject,
        Step::DeadpoolFailoverExecuteOnObject,
        Step::DeadpoolNodePoolExecuteOnObject,
    ];
}

/// Object ids handed out by each deadpool pool during the profile: more
/// than the pool size means connections were replaced.
#[derive(Debug, Default)]
struct SeenIds {
    raw: std::collections::HashSet<deadpool_postgres::ObjectId>,
    failover: std::collections::HashSet<deadpool_postgres::ObjectId>,
    node: std::collections::HashSet<deadpool_postgres::ObjectId>,
}

impl Pools {
    /// The failover pool's current writer node pool (topology lookup and a clone).
    fn deadpool_writer_pool(&self) -> deadpool_postgres::Pool {
        let topo = self.deadpool_failover.topology();
        let writer = topo.writer_status().expect("a writer");
        self.deadpool_failover
            .node_pool(&writer.id)
            .expect("the writer's pool")
    }

    /// Times one `step` (µs), setup excluded.
    async fn step(&self, step: Step, seen: &mut SeenIds) -> f64 {
        let began;
        match step {
            Step::SqlxRawAcquire => {
                began = Instant::now();
                drop(black_box(self.sqlx_raw.acquire().await.unwrap()));
            }
            Step::SqlxFailoverAcquire => {
                began = Instant::now();
                drop(black_box(self.sqlx_failover.acquire().await.unwrap()));
            }
            Step::SqlxFailoverWriterPool => {
                began = Instant::now();
                drop(black_box(self.sqlx_failover.writer().await.unwrap()));
            }
            Step::SqlxRawExecuteOnConn | Step::SqlxFailoverExecuteOnConn => {
                let mut conn = if step == Step::SqlxRawExecuteOnConn {
                    self.sqlx_raw.acquire().await.unwrap()
                } else {
                    self.sqlx_failover.acquire().await.unwrap()
                };
                began = Instant::now();
                black_box(sqlx::query("SELECT 1").execute(&mut *conn).await.unwrap());
                let elapsed = began.elapsed();
                drop(conn);
                return elapsed.as_secs_f64() * 1e6;
            }
            Step::DeadpoolRawGet => {
                began = Instant::now();
                let o = self.deadpool_raw.get().await.unwrap();
                seen.raw.insert(deadpool_postgres::Object::id(&o));
                drop(black_box(o));
            }
            Step::DeadpoolFailoverWriter => {
                began = Instant::now();
                let o = self.deadpool_failover.writer().await.unwrap();
                seen.failover.insert(deadpool_postgres::Object::id(&*o));
                drop(black_box(o));
            }
            Step::DeadpoolFailoverWriterNode => {
                began = Instant::now();
                drop(black_box(self.deadpool_writer_pool()));
            }
            Step::DeadpoolNodePoolGet => {
                let node = self.deadpool_writer_pool();
                began = Instant::now();
                let o = node.get().await.unwrap();
                seen.node.insert(deadpool_postgres::Object::id(&o));
                drop(black_box(o));
            }
            Step::DeadpoolRawExecuteOnObject
            | Step::DeadpoolFailoverExecuteOnObject
            | Step::DeadpoolNodePoolExecuteOnObject => {
                let o = match step {
                    Step::DeadpoolRawExecuteOnObject => self.deadpool_raw.get().await.unwrap(),
                    Step::DeadpoolFailoverExecuteOnObject => {
                        self.deadpool_failover.writer().await.unwrap().into_inner()
                    }
                    _ => self.deadpool_writer_pool().get().await.unwrap(),
                };
                began = Instant::now();
                black_box(o.execute("SELECT 1", &[]).await.unwrap());
                let elapsed = began.elapsed();
                drop(o);
                return elapsed.as_secs_f64() * 1e6;
            }
        }
        began.elapsed().as_secs_f64() * 1e6
    }
}

/// Times every [`Step`] (1 task), steps interleaved round by round, and
/// prints the median and mean of each.
fn profile(runtime: &Runtime, pools: &Arc<Pools>) {
    const ROUNDS: usize = 20;
    const ITERS: usize = 200;
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); Step::ALL.len()];
    let mut seen = SeenIds::default();
    runtime.block_on(async {
        for round in 0..ROUNDS {
            for k in 0..Step::ALL.len() {
                // Alternate the order of the steps from round to round.
                let k = if round % 2 == 0 {
                    k
                } else {
                    Step::ALL.len() - 1 - k
                };
                for _ in 0..ITERS {
                    let t = pools.step(Step::ALL[k], &mut seen).await;
                    samples[k].push(t);
                }
            }
        }
    });
    println!("profile (1 task, {ROUNDS} interleaved rounds of {ITERS} iterations per step):");
    for (step, mut times) in Step::ALL.iter().zip(samples) {
        let mean = mean(&times);
        println!(
            "  {:<34} median {:>8.2} µs  mean {:>8.2} µs",
            format!("{step:?}"),
            median(&mut times),
            mean
        );
    }
    let node = pools.deadpool_writer_pool();
    println!(
        "  deadpool objects seen: raw {} (status {:?}), failover writer() {}, node pool get() {} (status {:?})",
        seen.raw.len(),
        pools.deadpool_raw.status(),
        seen.failover.len(),
        seen.node.len(),
        node.status()
    );
    profile_sqlx_concurrent(runtime, pools);
}

/// A way of running `SELECT 1` through sqlx, for the concurrent profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SqlxPath {
    /// `query.execute(&PgPool)`.
    RawExecutor,
    /// `PgPool::acquire()`, then `query.execute(&mut *conn)`.
    RawAcquireThenExecute,
    /// As `RawAcquireThenExecute`, with the acquire wrapped in
    /// `tokio::time::timeout_at(now + 30 s, ..)` as `acquire_where` does.
    RawTimeoutAcquireThenExecute,
    /// `FailoverPgPool::acquire()`, then `query.execute(&mut *conn)`.
    FailoverAcquireThenExecute,
    /// `query.execute(&FailoverPgPool)`.
    FailoverExecutor,
}

impl SqlxPath {
    const ALL: [SqlxPath; 5] = [
        SqlxPath::RawExecutor,
        SqlxPath::RawAcquireThenExecute,
        SqlxPath::RawTimeoutAcquireThenExecute,
        SqlxPath::FailoverAcquireThenExecute,
        SqlxPath::FailoverExecutor,
    ];
}

impl Pools {
    async fn sqlx_path(&self, path: SqlxPath) {
        let query = sqlx::query("SELECT 1");
        let done = match path {
            SqlxPath::RawExecutor => query.execute(&self.sqlx_raw).await,
            SqlxPath::FailoverExecutor => query.execute(&self.sqlx_failover).await,
            SqlxPath::RawAcquireThenExecute => {
                let mut conn = self.sqlx_raw.acquire().await.unwrap();
                query.execute(&mut *conn).await
            }
            SqlxPath::RawTimeoutAcquireThenExecute => {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
                let acquire = tokio::time::timeout_at(deadline, self.sqlx_raw.acquire());
                let mut conn = acquire.await.unwrap().unwrap();
                query.execute(&mut *conn).await
            }
            SqlxPath::FailoverAcquireThenExecute => {
                let mut conn = self.sqlx_failover.acquire().await.unwrap();
                query.execute(&mut *conn).await
            }
        };
        black_box(done.unwrap());
    }
}

/// The sqlx paths with [`POOL_SIZE`] concurrent tasks, interleaved round by
/// round: separates the cost of the failover layer's extra timer from the
/// rest.
fn profile_sqlx_concurrent(runtime: &Runtime, pools: &Arc<Pools>) {
    const ROUNDS: usize = 40;
    const ITERS: usize = 25;
    let n = SqlxPath::ALL.len();
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); n];
    runtime.block_on(async {
        for round in 0..ROUNDS {
            for k in 0..n {
                let k = if round % 2 == 0 { k } else { n - 1 - k };
                let path = SqlxPath::ALL[k];
                for _ in 0..ITERS {
                    let began = Instant::now();
                    let mut set = JoinSet::new();
                    for _ in 0..POOL_SIZE {
                        let pools = Arc::clone(pools);
                        set.spawn(async move { pools.sqlx_path(path).await });
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
        "profile (sqlx, {POOL_SIZE} concurrent tasks per iteration, {ROUNDS} interleaved rounds \
         of {ITERS} iterations per path):"
    );
    for (path, mut times) in SqlxPath::ALL.iter().zip(samples) {
        let mean = mean(&times);
        println!(
            "  {:<34} median {:>8.1} µs  mean {:>8.1} µs",
            format!("{path:?}"),
            median(&mut times),
            mean
        );
    }
}

fn main() {
    let runtime = match std::env::var("PG_OVERHEAD_RUNTIME").as_deref() {
        Ok("current_thread") => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    }
    .enable_all()
    .build()
    .expect("tokio runtime");
    let cluster = runtime
        .block_on(LocalPgCluster::start(
            // 8 pools of 16 connections, probes and replication.
            PgClusterOptions::new().setting("max_connections", "180"),
        ))
        .unwrap_or_else(|e| panic!("starting the local PostgreSQL cluster failed: {e}"));
    eprintln!(
        "local PostgreSQL cluster (1 primary + 1 standby) started in {:?}",
        cluster.started_in()
    );
    let pools = Arc::new(runtime.block_on(Pools::connect(&cluster)));
    let libs = [Lib::Sqlx, Lib::Deadpool];
    let kinds = [Kind::Raw, Kind::Failover];
    // Open every pool's connections before anything is measured.
    runtime.block_on(async {
        let all = [
            (Lib::Sqlx, Kind::Raw),
            (Lib::Sqlx, Kind::RawB),
            (Lib::Sqlx, Kind::Failover),
            (Lib::Deadpool, Kind::Raw),
            (Lib::Deadpool, Kind::RawB),
            (Lib::Deadpool, Kind::Failover),
            (Lib::Deadpool, Kind::FailoverDefault),
            (Lib::Deadpool, Kind::FailoverBypass),
        ];
        for (lib, kind) in all {
            for _ in 0..3 {
                pools.iteration(lib, kind, POOL_SIZE).await;
            }
        }
    });

    let mut criterion = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    for lib in libs {
        let mut group = criterion.benchmark_group(lib.name());
        // Raw and failover side by side, for each concurrency.
        for tasks in [1, POOL_SIZE] {
            for kind in kinds {
                let id = format!("{}/{tasks}", kind.name());
                let pools = &pools;
                group.bench_function(id, |b| {
                    b.to_async(&runtime)
                        .iter(|| async move { pools.iteration(lib, kind, tasks).await });
                });
            }
        }
        group.finish();
    }
    criterion.final_summary();

    // `cargo test --benches` runs this without `--bench`: criterion then
    // runs every benchmark once as a test; skip the long measurement.
    let args: Vec<String> = std::env::args().collect();
    let measuring = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--list");
    if !measuring {
        let _context = runtime.enter();
        drop(pools);
        return;
    }
    let mut lines = Vec::new();
    let mut extra = Vec::new();
    let pairs = [
        (Lib::Sqlx, Kind::Failover),
        (Lib::Sqlx, Kind::RawB),
        (Lib::Deadpool, Kind::Failover),
        (Lib::Deadpool, Kind::RawB),
        (Lib::Deadpool, Kind::FailoverDefault),
        (Lib::Deadpool, Kind::FailoverBypass),
    ];
    for (lib, failover_kind) in pairs {
        for tasks in [1, POOL_SIZE] {
            let o = overhead(&runtime, &pools, lib, failover_kind, tasks);
            let pair = format!("{}/{tasks}", lib.name());
            println!(
                "measured {pair} raw vs {}: raw median {:.1} µs mean {:.1} µs, {} median \
                 {:.1} µs mean {:.1} µs; {} alternating rounds of {} iterations each; median \
                 of per-round ratios: of medians {:.3}, of means {:.3}",
                failover_kind.name(),
                o.raw_median,
                o.raw_mean,
                failover_kind.name(),
                o.failover_median,
                o.failover_mean,
                o.rounds,
                o.iters,
                o.ratio,
                o.mean_ratio
            );
            match failover_kind {
                Kind::Failover => lines.push(format!("overhead {pair} ratio={:.3}", o.ratio)),
                Kind::RawB => extra.push(format!(
                    "noise floor (a second raw pool vs the raw pool): {pair} ratio={:.3}",
                    o.ratio
                )),
                Kind::FailoverBypass => extra.push(format!(
                    "with test_bypass_window 500ms (no check for recently used connections): \
                     {pair} ratio={:.3}",
                    o.ratio
                )),
                _ => extra.push(format!(
                    "with PoolConfig::default() (a round-trip check per checkout): \
                     {pair} ratio={:.3}",
                    o.ratio
                )),
            }
        }
    }
    for line in extra {
        println!("{line}");
    }
    for line in lines {
        println!("{line}");
    }
    if std::env::var_os("PG_OVERHEAD_PROFILE").is_some() {
        profile(&runtime, &pools);
    }

    {
        // Pools may spawn clean-up work when dropped.
        let _context = runtime.enter();
        drop(pools);
    }
    drop(runtime);
    drop(cluster);
}

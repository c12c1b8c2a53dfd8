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
//! After criterion's report, the bench measures every pair again itself
//! (timed loops, raw and failover alternating over several rounds, in
//! ABBA order so that neither always runs first) and prints the median of
//! the per-round ratios as `overhead <pair> ratio=<failover/raw>`.
//!
//! Run with `cargo bench --bench pg_overhead --features drill`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use deadpool_postgres::{ManagerConfig, RecyclingMethod};
use failover_pool::drill::{LocalPgCluster, PgClusterOptions};
use failover_pool::pool::{FailoverPool, PoolConfig};
use failover_pool::postgres::deadpool::DeadpoolPostgres;
use failover_pool::postgres::sqlx::FailoverPgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

/// Connections per pool, and tasks per iteration of the concurrent cases.
const POOL_SIZE: u32 = 16;
/// Rounds of the bench's own measurement (an even number: ABBA order).
const ROUNDS: usize = 12;
/// Target duration of one timed loop of the bench's own measurement.
const LOOP_TIME: Duration = Duration::from_millis(150);

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
    Raw,
    Failover,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Raw => "raw",
            Kind::Failover => "failover",
        }
    }
}

/// The four pools under test, all on the same cluster.
#[derive(Debug)]
struct Pools {
    sqlx_raw: sqlx::PgPool,
    sqlx_failover: FailoverPgPool,
    deadpool_raw: deadpool_postgres::Pool,
    deadpool_failover: FailoverPool<DeadpoolPostgres>,
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
        let sqlx_failover = FailoverPgPool::connect_with(&urls, config.clone())
            .await
            .expect("failover sqlx pool");

        let pg_config: tokio_postgres::Config = primary.parse().expect("primary URL");
        let manager = deadpool_postgres::Manager::from_config(
            pg_config,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let deadpool_raw = deadpool_postgres::Pool::builder(manager)
            .max_size(POOL_SIZE as usize)
            .build()
            .expect("raw deadpool pool");
        let deadpool_failover = FailoverPool::<DeadpoolPostgres>::connect(&urls, config)
            .await
            .expect("failover deadpool pool");
        Pools {
            sqlx_raw,
            sqlx_failover,
            deadpool_raw,
            deadpool_failover,
        }
    }

    /// One `SELECT 1` through the given pool.
    async fn query(&self, lib: Lib, kind: Kind) {
        match (lib, kind) {
            (Lib::Sqlx, Kind::Raw) => {
                let done = sqlx::query("SELECT 1").execute(&self.sqlx_raw).await;
                black_box(done.expect("SELECT 1 on the raw sqlx pool"));
            }
            (Lib::Sqlx, Kind::Failover) => {
                let done = sqlx::query("SELECT 1").execute(&self.sqlx_failover).await;
                black_box(done.expect("SELECT 1 on the failover sqlx pool"));
            }
            (Lib::Deadpool, Kind::Raw) => {
                let client = self.deadpool_raw.get().await.expect("raw deadpool get");
                let done = client.execute("SELECT 1", &[]).await;
                black_box(done.expect("SELECT 1 on the raw deadpool pool"));
            }
            (Lib::Deadpool, Kind::Failover) => {
                let client = self
                    .deadpool_failover
                    .writer()
                    .await
                    .expect("failover deadpool writer");
                let done = client.execute("SELECT 1", &[]).await;
                black_box(done.expect("SELECT 1 on the failover deadpool pool"));
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

    /// Mean time of one iteration over a loop of `iters`.
    async fn timed(self: &Arc<Self>, lib: Lib, kind: Kind, tasks: u32, iters: u32) -> Duration {
        let began = Instant::now();
        for _ in 0..iters {
            self.iteration(lib, kind, tasks).await;
        }
        began.elapsed() / iters
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The bench's own measurement of one pair: returns the median raw and
/// failover iteration times (µs) and the median of the per-round ratios.
fn overhead(runtime: &Runtime, pools: &Arc<Pools>, lib: Lib, tasks: u32) -> (f64, f64, f64) {
    // Calibrate the loop length on the raw pool.
    let probe = 50;
    let per_iter = runtime.block_on(pools.timed(lib, Kind::Raw, tasks, probe));
    let iters =
        (LOOP_TIME.as_secs_f64() / per_iter.as_secs_f64().max(1e-9)).clamp(20.0, 20_000.0) as u32;
    let mut raw = Vec::with_capacity(ROUNDS);
    let mut failover = Vec::with_capacity(ROUNDS);
    let mut ratios = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        // ABBA: raw first in rounds 0, 3, 4, 7, 8, ...
        let raw_first = matches!(round % 4, 0 | 3);
        let (r, f) = runtime.block_on(async {
            if raw_first {
                let r = pools.timed(lib, Kind::Raw, tasks, iters).await;
                let f = pools.timed(lib, Kind::Failover, tasks, iters).await;
                (r, f)
            } else {
                let f = pools.timed(lib, Kind::Failover, tasks, iters).await;
                let r = pools.timed(lib, Kind::Raw, tasks, iters).await;
                (r, f)
            }
        });
        let (r, f) = (r.as_secs_f64() * 1e6, f.as_secs_f64() * 1e6);
        raw.push(r);
        failover.push(f);
        ratios.push(f / r);
    }
    (median(&mut raw), median(&mut failover), median(&mut ratios))
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let cluster = runtime
        .block_on(LocalPgCluster::start(PgClusterOptions::new()))
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
        for lib in libs {
            for kind in kinds {
                for _ in 0..3 {
                    pools.iteration(lib, kind, POOL_SIZE).await;
                }
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

    let mut lines = Vec::new();
    for lib in libs {
        for tasks in [1, POOL_SIZE] {
            let (raw, failover, ratio) = overhead(&runtime, &pools, lib, tasks);
            let pair = format!("{}/{tasks}", lib.name());
            println!(
                "measured {pair}: raw {raw:.1} µs/iter, failover {failover:.1} µs/iter \
                 (medians of {ROUNDS} alternating rounds)"
            );
            lines.push(format!("overhead {pair} ratio={ratio:.3}"));
        }
    }
    for line in lines {
        println!("{line}");
    }

    {
        // Pools may spawn clean-up work when dropped.
        let _context = runtime.enter();
        drop(pools);
    }
    drop(runtime);
    drop(cluster);
}

//! The command line: subcommands, their options, and the drill options
//! they stand for.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use failover_pool::drill::cache::{CacheDrillOptions, CacheFault, FaultSide};
use failover_pool::drill::http::{HttpDrillOptions, HttpFault};
use failover_pool::drill::run::DrillOptions;
use failover_pool::drill::scenario::{
    ClusterKind, DrillBackend, DrillReadPreference, Fault, NetworkMode, Promotion, Store,
};

/// Failover drills: inject a real fault into a local PostgreSQL primary or
/// Redis master under load and measure what the application sees.
#[derive(Debug, Parser)]
#[command(name = "failover-drill", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Drill a local PostgreSQL primary with one streaming standby (needs the
    /// PostgreSQL server binaries: initdb, postgres, pg_basebackup).
    Postgres(PostgresArgs),
    /// Drill a local Redis master with replicas, and three Sentinels for
    /// `--promotion sentinel` (needs redis-server).
    Redis(RedisArgs),
    /// Drill a FailoverCache over two independent local Redis servers: one
    /// side fails under a set/delete/get load, then the repair is checked
    /// key by key (needs redis-server).
    Cache(CacheArgs),
    /// Drill a FailoverClient over local HTTP backends under an open-loop
    /// load: one backend crashes, hangs, slows down or flaps.
    Http(HttpArgs),
}

#[derive(Debug, Args)]
pub(crate) struct HttpArgs {
    /// Backends (the fault hits the first).
    #[arg(long, default_value_t = 3)]
    backends: usize,
    /// The fault injected into the first backend.
    #[arg(long, value_enum, default_value_t = HttpFault::Crash)]
    fault: HttpFault,
    /// How long the load runs.
    #[arg(long, value_parser = parse_duration, default_value = "12s")]
    duration: Duration,
    /// When the fault starts, since the load started.
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    fault_at: Duration,
    /// How long it lasts.
    #[arg(long, value_parser = parse_duration, default_value = "4s")]
    outage: Duration,
    /// Requests started per second (open loop: whatever became of earlier ones).
    #[arg(long, default_value_t = 400)]
    rate: u32,
    /// The time limit of one try.
    #[arg(long, value_parser = parse_duration, default_value = "300ms")]
    try_timeout: Duration,
    /// Tries per request, the first included.
    #[arg(long, default_value_t = 3)]
    attempts: u32,
    /// `--fault slow`: the delay per request.
    #[arg(long, value_parser = parse_duration, default_value = "800ms")]
    slow_delay: Duration,
    /// Hedge idempotent requests after this long without an answer.
    #[arg(long, value_parser = parse_duration)]
    hedge: Option<Duration>,
    /// Write the report as JSON to this file.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Write a chart of the drill as SVG to this file.
    #[arg(long, value_name = "PATH")]
    svg: Option<PathBuf>,
    /// No progress lines on stderr.
    #[arg(long, short)]
    quiet: bool,
}

impl HttpArgs {
    fn options(&self) -> HttpDrillOptions {
        HttpDrillOptions {
            backends: self.backends,
            fault: self.fault,
            duration: self.duration,
            fault_at: self.fault_at,
            outage: self.outage,
            rate: self.rate,
            try_timeout: self.try_timeout,
            max_attempts: self.attempts,
            slow_delay: self.slow_delay,
            hedge: self.hedge,
            json: self.json.clone(),
            svg: self.svg.clone(),
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct CacheArgs {
    /// The fault injected into one side.
    #[arg(long, value_enum, default_value_t = CacheFault::Crash)]
    fault: CacheFault,
    /// The side that fails (the primary is the one reads ask first).
    #[arg(long, value_enum, default_value_t = FaultSide::Primary)]
    side: FaultSide,
    /// How long the load runs (e.g. 12s, 1m).
    #[arg(long, value_parser = parse_duration, default_value = "12s")]
    duration: Duration,
    /// When the fault is injected, since the load started.
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    fault_at: Duration,
    /// How long the side stays failed (then restarted empty, thawed or healed).
    #[arg(long, value_parser = parse_duration, default_value = "4s")]
    outage: Duration,
    /// Writer tasks (each sets or deletes its own keys).
    #[arg(long, default_value_t = 8)]
    writers: usize,
    /// Reader tasks.
    #[arg(long, default_value_t = 4)]
    readers: usize,
    /// Keys.
    #[arg(long, default_value_t = 2000)]
    keys: usize,
    /// The cache's write timeout per side.
    #[arg(long, value_parser = parse_duration, default_value = "200ms")]
    write_timeout: Duration,
    /// The cache's read soft timeout (then the other side is asked too).
    #[arg(long, value_parser = parse_duration, default_value = "50ms")]
    read_soft_timeout: Duration,
    /// Write the report as JSON to this file.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Write a chart of the drill as SVG to this file.
    #[arg(long, value_name = "PATH")]
    svg: Option<PathBuf>,
    /// No progress line on stderr.
    #[arg(long, short)]
    quiet: bool,
}

impl CacheArgs {
    fn options(&self) -> CacheDrillOptions {
        CacheDrillOptions {
            fault: self.fault,
            side: self.side,
            duration: self.duration,
            fault_at: self.fault_at,
            outage: self.outage,
            writers: self.writers,
            readers: self.readers,
            keys: self.keys,
            write_timeout: self.write_timeout,
            read_soft_timeout: self.read_soft_timeout,
            json: self.json.clone(),
            svg: self.svg.clone(),
            ..CacheDrillOptions::default()
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct PostgresArgs {
    /// The fault injected into the primary.
    #[arg(long, value_enum, default_value_t = Fault::Crash)]
    fault: Fault,
    /// Who promotes the standby.
    #[arg(long, value_enum, default_value_t = PgPromotion::Automatic)]
    promotion: PgPromotion,
    /// Synchronous replication (then no acknowledged write may be lost).
    #[arg(long)]
    sync: bool,
    /// The client library the pool runs on.
    #[arg(long, value_enum, default_value_t = PgClient::Sqlx)]
    backend: PgClient,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Debug, Args)]
pub(crate) struct RedisArgs {
    /// The fault injected into the master.
    #[arg(long, value_enum, default_value_t = Fault::Crash)]
    fault: Fault,
    /// Who promotes a replica.
    #[arg(long, value_enum, default_value_t = RedisPromotion::Automatic)]
    promotion: RedisPromotion,
    /// The client library the pool runs on.
    #[arg(long, value_enum, default_value_t = RedisClient::Redis)]
    backend: RedisClient,
    /// Replicas of the master.
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// Replicas each write waits for (FailoverRedis::acknowledged(N,
    /// 500ms): WAIT); 0: plain writes.
    #[arg(long, default_value_t = 0)]
    ack: u32,
    #[command(flatten)]
    common: CommonArgs,
}

/// Who promotes the Postgres standby.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PgPromotion {
    /// The pool itself (PromotionPolicy::Automatic with the confirmation window).
    Automatic,
    /// An orchestrator (played by the drill) promotes; the pool follows (PromotionPolicy::External).
    External,
}

/// Who promotes a Redis replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RedisPromotion {
    /// The pool itself: REPLICAOF NO ONE after the confirmation window.
    Automatic,
    /// An orchestrator (played by the drill) promotes; the pool follows (PromotionPolicy::External).
    External,
    /// Three Sentinels (down-after 1s) promote; the pool follows them as its topology source.
    Sentinel,
}

/// The Postgres client library.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PgClient {
    /// sqlx: FailoverPgPool used as a sqlx::Executor.
    Sqlx,
    /// deadpool-postgres: `FailoverPool<DeadpoolPostgres>`.
    Deadpool,
}

/// The Redis client library.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RedisClient {
    /// The redis crate: FailoverRedis as a ConnectionLike.
    Redis,
    /// deadpool-redis: `FailoverPool<DeadpoolRedis>`.
    DeadpoolRedis,
}

/// The options both subcommands share, with the same defaults.
#[derive(Debug, Args)]
pub(crate) struct CommonArgs {
    /// How long the workload runs (e.g. 20s, 1m).
    #[arg(long, value_parser = parse_duration, default_value = "20s")]
    duration: Duration,
    /// When the fault is injected, since the workload started.
    #[arg(long, value_parser = parse_duration, default_value = "8s")]
    fault_at: Duration,
    /// Writer tasks, each writing unique ids in a loop.
    #[arg(long, default_value_t = 8)]
    writers: usize,
    /// Reader tasks, each checking its sibling writer's latest write.
    #[arg(long, default_value_t = 8)]
    readers: usize,
    /// The readers' read preference.
    #[arg(long, value_enum, default_value_t = DrillReadPreference::PreferReplica)]
    read_preference: DrillReadPreference,
    /// Automatic promotion: how long the primary must be unreachable first.
    #[arg(long, value_parser = parse_duration, default_value = "300ms")]
    confirmation: Duration,
    /// External promotion: how long the simulated orchestrator waits with
    /// the primary unreachable before it promotes.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    external_delay: Duration,
    /// The pool's probe interval.
    #[arg(long, value_parser = parse_duration, default_value = "100ms")]
    probe_interval: Duration,
    /// The pool's probe timeout.
    #[arg(long, value_parser = parse_duration, default_value = "300ms")]
    probe_timeout: Duration,
    /// The pool's connect timeout per node.
    #[arg(long, value_parser = parse_duration, default_value = "500ms")]
    connect_timeout: Duration,
    /// Client-side limit of one operation (and the pool's acquire timeout).
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    op_timeout: Duration,
    /// Skip the pool's round-trip check for a connection used less than
    /// this long ago (0s: check every checkout; default: the backend's).
    #[arg(long, value_parser = parse_duration)]
    test_bypass_window: Option<Duration>,
    /// Write the report as JSON to this file.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Write a chart of the drill as SVG to this file.
    #[arg(long, value_name = "PATH")]
    svg: Option<PathBuf>,
    /// No progress line on stderr.
    #[arg(long, short)]
    quiet: bool,
    /// Where the cluster runs: local server processes, or containers on
    /// the Docker engine at DOCKER_HOST (needs the `testcontainers` feature).
    #[arg(long, value_enum, default_value_t = ClusterKind::Local)]
    cluster: ClusterKind,
    /// Containers: bridge network with published ports, or the host
    /// network (default: FAILOVER_DRILL_NETWORK, else bridge).
    #[arg(long, value_enum)]
    network: Option<NetworkMode>,
    /// Containers: the server image, name:tag (default:
    /// FAILOVER_DRILL_PG_IMAGE / FAILOVER_DRILL_REDIS_IMAGE, else postgres:17
    /// / redis:7 on a bridge, the locally built images on the host network).
    #[arg(long, value_name = "NAME:TAG")]
    image: Option<String>,
}

impl CommonArgs {
    /// The drill's options: these, for `store`, with the defaults for the
    /// store-specific ones.
    fn options(&self, store: Store, backend: DrillBackend) -> DrillOptions {
        DrillOptions {
            store,
            backend,
            duration: self.duration,
            fault_at: self.fault_at,
            writers: self.writers,
            readers: self.readers,
            read_preference: self.read_preference,
            confirmation: self.confirmation,
            external_delay: self.external_delay,
            probe_interval: self.probe_interval,
            probe_timeout: self.probe_timeout,
            connect_timeout: self.connect_timeout,
            op_timeout: self.op_timeout,
            test_bypass_window: self.test_bypass_window,
            json: self.json.clone(),
            svg: self.svg.clone(),
            progress: !self.quiet,
            cluster: self.cluster,
            network: self.network,
            image: self.image.clone(),
            ..DrillOptions::default()
        }
    }
}

/// A drill to run: one of the failover pool's, or the cache's.
pub(crate) enum Drill {
    /// `postgres` or `redis`: the subcommand's name and the options.
    Pool(&'static str, DrillOptions),
    /// `cache`: the options, and whether progress is shown.
    Cache(CacheDrillOptions, bool),
    /// `http`: the options, and whether progress is shown.
    Http(HttpDrillOptions, bool),
}

impl Command {
    /// The drill the subcommand asks for.
    pub(crate) fn drill(&self) -> Drill {
        let (name, opts) = match self {
            Command::Cache(a) => return Drill::Cache(a.options(), !a.quiet),
            Command::Http(a) => return Drill::Http(a.options(), !a.quiet),
            Command::Postgres(a) => {
                let backend = match a.backend {
                    PgClient::Sqlx => DrillBackend::Sqlx,
                    PgClient::Deadpool => DrillBackend::Deadpool,
                };
                let promotion = match a.promotion {
                    PgPromotion::Automatic => Promotion::Automatic,
                    PgPromotion::External => Promotion::External,
                };
                let opts = DrillOptions {
                    fault: a.fault,
                    promotion,
                    sync: a.sync,
                    ..a.common.options(Store::Postgres, backend)
                };
                ("postgres", opts)
            }
            Command::Redis(a) => {
                let backend = match a.backend {
                    RedisClient::Redis => DrillBackend::Redis,
                    RedisClient::DeadpoolRedis => DrillBackend::DeadpoolRedis,
                };
                let promotion = match a.promotion {
                    RedisPromotion::Automatic => Promotion::Automatic,
                    RedisPromotion::External => Promotion::External,
                    RedisPromotion::Sentinel => Promotion::Sentinel,
                };
                let opts = DrillOptions {
                    fault: a.fault,
                    promotion,
                    replicas: a.replicas,
                    ack: a.ack,
                    ..a.common.options(Store::Redis, backend)
                };
                ("redis", opts)
            }
        };
        Drill::Pool(name, opts)
    }
}

/// Parses `20s`, `500ms`, `1m`, `1m30s` (humantime syntax).
fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime_serde::re::humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{text}` is not a duration like 20s, 500ms or 1m ({e})"))
}

//! [`FailoverPgPool`]: a drop-in for `sqlx::PgPool` over a primary and its
//! standbys, and the [`SqlxPostgres`] backend it runs on.
//!
//! `&FailoverPgPool` implements `sqlx::Executor<Database = Postgres>` (every
//! query goes to the writer) and `sqlx::Acquire`, so code written for
//! `&PgPool` compiles unchanged:
//!
//! ```no_run
//! use failover_pool::postgres::sqlx::FailoverPgPool;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = FailoverPgPool::connect(&[
//!     "postgres://app@db-a:5432/app",
//!     "postgres://app@db-b:5432/app",
//! ])
//! .await?;
//!
//! sqlx::query("INSERT INTO t (v) VALUES ($1)").bind(1).execute(&pool).await?;
//! let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM t").fetch_one(&pool).await?;
//! let mut tx = pool.begin().await?;
//! sqlx::query("DELETE FROM t").execute(&mut *tx).await?;
//! tx.commit().await?;
//!
//! // Reads that may go to a replica:
//! let replica = pool.reader().await?;
//! let rows = sqlx::query("SELECT v FROM t").fetch_all(&replica).await?;
//! # let _ = (n, rows); Ok(()) }
//! ```
//!
//! Errors keep sqlx's type on the drop-in surface: when no writer appears
//! within the acquire timeout you get `sqlx::Error::PoolTimedOut`, as from a
//! `PgPool`; the pool's own methods ([`FailoverPgPool::writer`],
//! [`FailoverPgPool::transaction`], …) return this crate's [`Error`] with its code.

use crate::core::events::Event;
use crate::error::{BoxError, Error, ErrorClass, Result};
use crate::pool::{
    Backend, EpochCheck, FailoverPool, NodeRef, NodeSpec, PoolConfig, Probe, ReadPreference,
    Topology, WriteToken,
};
use crate::postgres::{
    IN_RECOVERY_SQL, POSITION_SQL, PROBE_SQL, PROMOTE_SQL, already_primary, classify_sqlstate,
    probe_from_row, wait_promoted,
};
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{
    PgConnectOptions, PgConnection, PgPoolOptions, PgQueryResult, PgRow, PgStatement, PgTypeInfo,
    Postgres,
};
use sqlx::{Connection, Either, Execute, Executor, PgPool, SqlStr, Transaction};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, broadcast};

/// Classifies a sqlx error (see [`classify_sqlstate`]
/// for database errors). I/O, TLS, pool-timeout, pool-closed and protocol
/// errors are failover-class; a refused connection or a pool timeout
/// certainly did not execute.
pub fn classify(error: &sqlx::Error) -> ErrorClass {
    match error {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => classify_sqlstate(&code),
            None => ErrorClass::Application,
        },
        sqlx::Error::Io(io) => ErrorClass::of_io(io),
        sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
            ErrorClass::not_executed()
        }
        sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => ErrorClass::maybe_executed(),
        _ => ErrorClass::Application,
    }
}

/// The sqlx Postgres backend of a [`FailoverPool`]: per-node `PgPool`s and
/// probes over a dedicated connection.
#[derive(Debug, Clone)]
pub struct SqlxPostgres {
    max_connections: u32,
    min_connections: u32,
    connect_timeout: Duration,
    test_before_acquire: bool,
}

impl SqlxPostgres {
    /// A backend whose node pools follow `config` (sizes, connect timeout).
    pub fn new(config: &PoolConfig) -> Self {
        SqlxPostgres {
            max_connections: config.max_connections,
            min_connections: config.min_connections,
            connect_timeout: config.connect_timeout,
            test_before_acquire: config.test_before_acquire,
        }
    }
}

/// Per-node state of [`SqlxPostgres`].
pub struct SqlxNode {
    options: PgConnectOptions,
    probe: Mutex<Option<PgConnection>>,
}

impl fmt::Debug for SqlxNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlxNode")
            .field("host", &self.options.get_host())
            .field("port", &self.options.get_port())
            .finish()
    }
}

fn node_error(what: &str, e: sqlx::Error) -> Error {
    let class = classify(&e);
    Error::backend(what.to_owned(), class, e)
}

impl Backend for SqlxPostgres {
    type Node = SqlxNode;
    type Pool = PgPool;
    type Conn = PoolConnection<Postgres>;
    type Error = sqlx::Error;

    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn node(&self, spec: &NodeSpec) -> Result<SqlxNode> {
        let options = PgConnectOptions::from_str(&spec.url)
            .map_err(|e| Error::Config(format!("bad Postgres URL for node `{}`: {e}", spec.id)))?;
        Ok(SqlxNode {
            options,
            probe: Mutex::new(None),
        })
    }

    fn pool(&self, node: &SqlxNode, _epoch: u64, _current: EpochCheck) -> Result<PgPool> {
        // A retired generation is closed, so it hands out nothing; no
        // per-acquire hook is needed (it would cost an allocation per acquire).
        Ok(PgPoolOptions::new()
            .max_connections(self.max_connections)
            .min_connections(self.min_connections)
            .acquire_timeout(self.connect_timeout)
            .test_before_acquire(self.test_before_acquire)
            .connect_lazy_with(node.options.clone()))
    }

    #[allow(clippy::manual_async_fn)] // the future must not borrow `self`
    fn close_pool(&self, pool: PgPool) -> impl Future<Output = ()> + Send + 'static {
        async move { pool.close().await }
    }

    fn acquire(
        &self,
        pool: &PgPool,
    ) -> impl Future<Output = std::result::Result<PoolConnection<Postgres>, sqlx::Error>> + Send
    {
        pool.acquire()
    }

    async fn probe(&self, node: &SqlxNode) -> Result<Probe> {
        let mut slot = node.probe.lock().await;
        // Taken out: if this future is cancelled (timeout), the connection
        // (possibly mid-query on a frozen server) is dropped, not reused.
        let mut conn = match slot.take() {
            Some(c) => c,
            None => PgConnection::connect_with(&node.options)
                .await
                .map_err(|e| node_error("probe connect", e))?,
        };
        let row: (bool, i64, i64, Option<i64>, Option<f64>) = sqlx::query_as(PROBE_SQL)
            .fetch_one(&mut conn)
            .await
            .map_err(|e| node_error("probe", e))?;
        *slot = Some(conn);
        Ok(probe_from_row(row.0, row.1, row.2, row.3, row.4))
    }

    async fn promote(&self, node: &SqlxNode) -> Result<()> {
        let mut conn = PgConnection::connect_with(&node.options)
            .await
            .map_err(|e| node_error("promote connect", e))?;
        let res = async {
            match sqlx::query_scalar::<_, bool>(PROMOTE_SQL)
                .fetch_one(&mut conn)
                .await
            {
                Ok(_) => {}
                Err(sqlx::Error::Database(db)) if already_primary(db.code().as_deref()) => {
                    return Ok(());
                }
                Err(e) => return Err(node_error("promote", e)),
            }
            wait_promoted(&mut conn, |conn| {
                Box::pin(async move {
                    sqlx::query_scalar::<_, bool>(IN_RECOVERY_SQL)
                        .fetch_one(conn)
                        .await
                        .map_err(|e| node_error("promote", e))
                })
            })
            .await
        }
        .await;
        let _ = conn.close().await;
        res
    }

    fn classify(error: &sqlx::Error) -> ErrorClass {
        classify(error)
    }
}

/// Serde configuration of a [`FailoverPgPool`]: the node URLs and the pool settings.
///
/// ```
/// # use failover_pool::postgres::sqlx::PgFailoverConfig;
/// let cfg: PgFailoverConfig = serde_yaml_ng::from_str(r#"
/// urls: ["postgres://app@db-a/app", "postgres://app@db-b/app"]
/// pool:
///   name: orders
///   promotion: { policy: automatic, confirmation: 2s }
/// "#).unwrap();
/// assert_eq!(cfg.urls.len(), 2);
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PgFailoverConfig {
    /// Node URLs; the first is only the first guess for the primary.
    pub urls: Vec<String>,
    /// Pool settings.
    #[serde(default)]
    pub pool: PoolConfig,
}

/// Builds a [`FailoverPgPool`] from URLs and options.
///
/// ```no_run
/// # async fn demo() -> failover_pool::Result<()> {
/// use failover_pool::pool::{PromotionPolicy, ReadPreference};
/// use failover_pool::postgres::sqlx::FailoverPgPool;
/// use std::time::Duration;
///
/// let pool = FailoverPgPool::builder()
///     .url("postgres://app@db-a/app")
///     .url("postgres://app@db-b/app")
///     .name("orders")
///     .promotion(PromotionPolicy::automatic())
///     .read_preference(ReadPreference::Nearest)
///     .max_replica_lag(Duration::from_secs(2))
///     .connect()
///     .await?;
/// # let _ = pool; Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct FailoverPgPoolBuilder {
    urls: Vec<String>,
    config: PoolConfig,
}

impl FailoverPgPoolBuilder {
    /// Adds a node URL.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.urls.push(url.into());
        self
    }

    /// Adds node URLs.
    pub fn urls<S: Into<String>>(mut self, urls: impl IntoIterator<Item = S>) -> Self {
        self.urls.extend(urls.into_iter().map(Into::into));
        self
    }

    /// Replaces the whole pool configuration.
    pub fn config(mut self, config: PoolConfig) -> Self {
        self.config = config;
        self
    }

    /// Name used in events, metrics and logs.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Promotion policy.
    pub fn promotion(mut self, policy: crate::pool::PromotionPolicy) -> Self {
        self.config.promotion = policy;
        self
    }

    /// Default read preference of `reader()`.
    pub fn read_preference(mut self, pref: ReadPreference) -> Self {
        self.config.read_preference = pref;
        self
    }

    /// Largest replay delay of a replica that serves reads.
    pub fn max_replica_lag(mut self, lag: Duration) -> Self {
        self.config.max_replica_lag = Some(lag);
        self
    }

    /// Connections per node pool.
    pub fn max_connections(mut self, n: u32) -> Self {
        self.config.max_connections = n;
        self
    }

    /// How long callers wait for a writer (or reader) during a failover.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.config.acquire_timeout = timeout;
        self
    }

    /// How often nodes are probed.
    pub fn probe_interval(mut self, interval: Duration) -> Self {
        self.config.probe_interval = interval;
        self
    }

    /// Validates, probes the nodes and starts the pool.
    pub async fn connect(self) -> Result<FailoverPgPool> {
        let urls: Vec<&str> = self.urls.iter().map(String::as_str).collect();
        FailoverPgPool::connect_with(&urls, self.config).await
    }
}

/// A failover-aware drop-in for `sqlx::PgPool`. Cheap to clone.
#[derive(Clone)]
pub struct FailoverPgPool {
    pool: FailoverPool<SqlxPostgres>,
}

impl fmt::Debug for FailoverPgPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("FailoverPgPool").field(&self.pool).finish()
    }
}

/// The id of a node from its URL: `host:port`.
pub fn node_id(url: &str) -> Result<String> {
    let o = PgConnectOptions::from_str(url)
        .map_err(|e| Error::Config(format!("bad Postgres URL: {e}")))?;
    Ok(format!("{}:{}", o.get_host(), o.get_port()))
}

fn to_sqlx(e: Error) -> sqlx::Error {
    match e {
        Error::NoWriter { .. } | Error::Timeout { .. } => sqlx::Error::PoolTimedOut,
        Error::Closed => sqlx::Error::PoolClosed,
        Error::Backend { source, .. } => match source.downcast::<sqlx::Error>() {
            Ok(e) => *e,
            Err(other) => sqlx::Error::Configuration(other),
        },
        other => sqlx::Error::Configuration(Box::new(other)),
    }
}

impl FailoverPgPool {
    /// A builder (URLs plus options).
    pub fn builder() -> FailoverPgPoolBuilder {
        FailoverPgPoolBuilder::default()
    }

    /// Connects with default settings (see [`PoolConfig`]): the node URLs in
    /// any order; roles are discovered.
    pub async fn connect(urls: &[&str]) -> Result<Self> {
        Self::connect_with(urls, PoolConfig::default()).await
    }

    /// Connects with explicit settings.
    pub async fn connect_with(urls: &[&str], config: PoolConfig) -> Result<Self> {
        let nodes = urls
            .iter()
            .map(|u| {
                Ok(NodeSpec {
                    id: Arc::from(node_id(u)?),
                    url: (*u).to_owned(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let backend = SqlxPostgres::new(&config);
        Ok(FailoverPgPool {
            pool: FailoverPool::new(backend, nodes, config).await?,
        })
    }

    /// Connects from a serde configuration.
    pub async fn from_config(config: PgFailoverConfig) -> Result<Self> {
        let urls: Vec<&str> = config.urls.iter().map(String::as_str).collect();
        Self::connect_with(&urls, config.pool).await
    }

    /// The generic failover pool underneath (topology, events, promotion, switchover).
    pub fn failover(&self) -> &FailoverPool<SqlxPostgres> {
        &self.pool
    }

    /// The current topology.
    pub fn topology(&self) -> Arc<Topology> {
        self.pool.topology()
    }

    /// Subscribes to the pool's events.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.pool.subscribe()
    }

    /// The writer's `PgPool` (waits during a failover, bounded by the acquire timeout).
    pub async fn writer(&self) -> Result<PgPool> {
        Ok(self.pool.writer_node().await?.pool)
    }

    /// A reader's `PgPool` for the configured read preference.
    pub async fn reader(&self) -> Result<PgPool> {
        Ok(self.pool.reader_node().await?.pool)
    }

    /// A reader's `PgPool` for an explicit read preference.
    pub async fn reader_with(&self, pref: ReadPreference) -> Result<PgPool> {
        Ok(self.pool.reader_node_with(pref).await?.pool)
    }

    /// A `PgPool` on a node that has replayed `token` (else the writer's).
    pub async fn reader_after(&self, token: WriteToken) -> Result<PgPool> {
        Ok(self.pool.reader_node_after(token).await?.pool)
    }

    /// A read-your-writes token: the writer's WAL position now (after your
    /// committed writes). Pass it to [`FailoverPgPool::reader_after`].
    pub async fn write_token(&self) -> Result<WriteToken> {
        let (mut conn, node) = self.pool.acquire_writer().await?;
        let (position, epoch): (i64, i64) = sqlx::query_as(POSITION_SQL)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| self.observe_err(&node, e))?;
        Ok(WriteToken {
            epoch: epoch.max(0) as u64,
            position: position.max(0) as u64,
        })
    }

    fn observe_err(&self, node: &NodeRef<SqlxPostgres>, e: sqlx::Error) -> Error {
        let class = self.pool.report(node, &e);
        Error::backend(&*node.id, class, e)
    }

    async fn acquire_node(
        &self,
    ) -> std::result::Result<(PoolConnection<Postgres>, NodeRef<SqlxPostgres>), sqlx::Error> {
        self.pool.acquire_writer().await.map_err(to_sqlx)
    }

    /// A connection to the writer, like `PgPool::acquire`.
    pub async fn acquire(&self) -> std::result::Result<PoolConnection<Postgres>, sqlx::Error> {
        Ok(self.acquire_node().await?.0)
    }

    /// Starts a transaction on the writer, like `PgPool::begin`.
    pub async fn begin(&self) -> std::result::Result<Transaction<'static, Postgres>, sqlx::Error> {
        let conn = self.acquire().await?;
        Transaction::begin(conn, None).await
    }

    /// Runs `body` in a transaction on the writer and commits it, with
    /// failover-aware errors and no replay:
    ///
    /// - a failover-class failure *before* `COMMIT` was sent leaves nothing
    ///   applied (the server rolls back): the error is failover-class with
    ///   [`Error::may_have_executed`] `== false`, so the caller may retry;
    /// - a failure *during* `COMMIT` is [`Error::OutcomeUnknown`]: the
    ///   transaction may or may not be durable; it is never replayed here;
    /// - the body's own errors are returned as application errors after a rollback.
    pub async fn transaction<T, F>(&self, body: F) -> Result<T>
    where
        T: Send,
        F: for<'t> FnOnce(
                &'t mut Transaction<'static, Postgres>,
            ) -> BoxFuture<'t, std::result::Result<T, sqlx::Error>>
            + Send,
    {
        let (conn, node) = self.pool.acquire_writer().await?;
        let mut tx = Transaction::begin(conn, None).await.map_err(|e| {
            // Nothing of the body ran: a failure at BEGIN never executed it.
            let class = match self.pool.report(&node, &e) {
                ErrorClass::Failover { .. } => ErrorClass::not_executed(),
                app => app,
            };
            Error::backend(&*node.id, class, e)
        })?;
        let value = match body(&mut tx).await {
            Ok(v) => v,
            Err(e) => {
                let class = self.pool.report(&node, &e);
                drop(tx); // rollback (or nothing, if the connection is gone)
                return Err(Error::backend(
                    &*node.id,
                    match class {
                        ErrorClass::Failover { .. } => ErrorClass::not_executed(),
                        app => app,
                    },
                    e,
                ));
            }
        };
        match tx.commit().await {
            Ok(()) => Ok(value),
            Err(e) => {
                let class = self.pool.report(&node, &e);
                match class {
                    ErrorClass::Failover { .. } => Err(Error::OutcomeUnknown {
                        node: node.id.to_string(),
                        source: Box::new(e) as BoxError,
                    }),
                    ErrorClass::Application => Err(Error::backend(&*node.id, class, e)),
                }
            }
        }
    }

    /// Stops the prober and closes every node pool.
    pub async fn close(&self) {
        self.pool.close().await
    }
}

impl<'p> Executor<'p> for &'_ FailoverPgPool {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, std::result::Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let this = self.clone();
        async_stream::try_stream! {
            let (mut conn, node) = this.acquire_node().await?;
            let mut s = conn.fetch_many(query);
            while let Some(v) = s.try_next().await.inspect_err(|e| { this.pool.report(&node, e); })? {
                yield v;
            }
        }
        .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, std::result::Result<Option<PgRow>, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let this = self.clone();
        Box::pin(async move {
            let (mut conn, node) = this.acquire_node().await?;
            conn.fetch_optional(query).await.inspect_err(|e| {
                this.pool.report(&node, e);
            })
        })
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, std::result::Result<PgStatement, sqlx::Error>>
    where
        'p: 'e,
    {
        let this = self.clone();
        Box::pin(async move {
            let (mut conn, _) = this.acquire_node().await?;
            conn.prepare_with(sql, parameters).await
        })
    }

    #[doc(hidden)]
    fn describe<'e>(
        self,
        sql: SqlStr,
    ) -> BoxFuture<'e, std::result::Result<sqlx::Describe<Postgres>, sqlx::Error>>
    where
        'p: 'e,
    {
        let this = self.clone();
        Box::pin(async move {
            let (mut conn, _) = this.acquire_node().await?;
            conn.describe(sql).await
        })
    }
}

impl<'a> sqlx::Acquire<'a> for &'_ FailoverPgPool {
    type Database = Postgres;
    type Connection = PoolConnection<Postgres>;

    fn acquire(
        self,
    ) -> BoxFuture<'static, std::result::Result<PoolConnection<Postgres>, sqlx::Error>> {
        let this = self.clone();
        Box::pin(async move { this.acquire().await })
    }

    fn begin(
        self,
    ) -> BoxFuture<'static, std::result::Result<Transaction<'a, Postgres>, sqlx::Error>> {
        let this = self.clone();
        Box::pin(async move {
            let conn = this.acquire().await?;
            Transaction::begin(conn, None).await
        })
    }
}

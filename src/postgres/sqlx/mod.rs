//! [`FailoverPgPool`]: a drop-in for `sqlx::PgPool` over a primary and its
//! standbys, and the [`SqlxPostgres`] backend it runs on.
//!
//! `&FailoverPgPool` implements `sqlx::Executor<Database = Postgres>` (every
//! query goes to the writer) and `sqlx::Acquire`, so code written for
//! `&PgPool` compiles unchanged. [`writer()`](FailoverPgPool::writer) and
//! [`reader()`](FailoverPgPool::reader) return [`Routed`] handles that are
//! executors too: each query picks its node anew, so a handle kept across a
//! failover keeps working, and failover-class errors make the pool re-probe.
//!
//! ```no_run
//! use failover_pool::postgres::FailoverPgPool;
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
//! Errors keep sqlx's type on the drop-in surface: when no node appears
//! within the acquire timeout you get `sqlx::Error::PoolTimedOut`, as from a
//! `PgPool`, and after `close()` `sqlx::Error::PoolClosed`; the pool's own
//! methods ([`FailoverPgPool::transaction`], [`FailoverPool::checkout`], …)
//! return this crate's [`Error`] with its code.

mod executor;

use crate::core::Classify;
use crate::error::{Error, ErrorClass, Result};
use crate::pool::{
    Backend, FailoverPool, PoolBuilder, PoolConfig, PoolGeneration, PoolSpec, Probe,
    ReadPreference, Route, Routed, WriteToken,
};
use crate::postgres::{
    DEFAULT_PORT, IN_RECOVERY_SQL, POSITION_SQL, PROBE_SQL, PROMOTE_SQL, already_primary,
    classify_sqlstate, probe_from_row, token_from_row, wait_promoted,
};
use futures_util::future::BoxFuture;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions, Postgres};
use sqlx::{Connection, PgPool, Transaction};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::Mutex;

/// A failover-aware drop-in for `sqlx::PgPool`: a [`FailoverPool`] on the
/// sqlx backend. Cheap to clone.
pub type FailoverPgPool = FailoverPool<SqlxPostgres>;

/// Builds a [`FailoverPgPool`] (see [`PoolBuilder`]).
///
/// ```no_run
/// # async fn demo() -> failover_pool::Result<()> {
/// use failover_pool::pool::{PromotionPolicy, ReadPreference};
/// use failover_pool::postgres::FailoverPgPool;
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
pub type FailoverPgPoolBuilder = PoolBuilder<SqlxPostgres>;

/// Serde configuration of a [`FailoverPgPool`] (see [`PoolSpec`]).
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
pub type PgFailoverConfig = PoolSpec;

/// Classifies a sqlx error (see [`classify_sqlstate`] for database errors).
/// I/O, TLS, pool-timeout, pool-closed and protocol errors are
/// failover-class; a refused connection or a pool timeout certainly did
/// not execute.
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

impl Classify for sqlx::Error {
    fn classify(&self) -> ErrorClass {
        classify(self)
    }
}

/// The sqlx Postgres backend of a [`FailoverPool`]: per-node `PgPool`s and
/// probes over a dedicated connection.
///
/// sqlx reports a node pool with no free connection and a node that does
/// not answer the same way (`PoolTimedOut`), so unlike deadpool a saturated
/// sqlx node pool makes the caller re-probe and retry until the acquire
/// timeout; size `max_connections` for your concurrency.
#[derive(Debug, Clone)]
pub struct SqlxPostgres {
    max_connections: u32,
    min_connections: u32,
    connect_timeout: Duration,
    /// `None`: no check; `Some(w)`: a round trip for connections idle `w` or longer.
    check_idle_after: Option<Duration>,
}

/// Per-node state of [`SqlxPostgres`]: parsed connect options and the probe
/// connection. Its `Debug` shows host and port only.
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

impl Backend for SqlxPostgres {
    type Node = SqlxNode;
    type Pool = PgPool;
    type Conn = PoolConnection<Postgres>;
    type Error = sqlx::Error;

    const DEFAULT_PORT: u16 = DEFAULT_PORT;

    fn from_config(config: &PoolConfig) -> Self {
        SqlxPostgres {
            max_connections: config.max_connections,
            min_connections: config.min_connections,
            connect_timeout: config.connect_timeout,
            check_idle_after: config.connection_check(),
        }
    }

    fn node(&self, spec: &crate::pool::NodeSpec) -> Result<SqlxNode> {
        // sqlx's parse errors do not echo the URL.
        let options = PgConnectOptions::from_str(spec.url.expose()).map_err(|e| {
            Error::Config(format!(
                "bad Postgres URL `{}` for node `{}`: {e}",
                spec.url, spec.id
            ))
        })?;
        Ok(SqlxNode {
            options,
            probe: Mutex::new(None),
        })
    }

    fn pool(&self, node: &SqlxNode, _generation: PoolGeneration) -> Result<PgPool> {
        // A retired generation is closed, so it hands out nothing.
        let options = PgPoolOptions::new()
            .max_connections(self.max_connections)
            .min_connections(self.min_connections)
            .acquire_timeout(self.connect_timeout);
        let options = match self.check_idle_after {
            None => options.test_before_acquire(false),
            Some(Duration::ZERO) => options.test_before_acquire(true),
            Some(window) => options
                .test_before_acquire(false)
                .before_acquire(move |conn, meta| {
                    Box::pin(async move {
                        if meta.idle_for < window {
                            return Ok(true);
                        }
                        conn.ping().await.map(|()| true)
                    })
                }),
        };
        Ok(options.connect_lazy_with(node.options.clone()))
    }

    #[allow(clippy::manual_async_fn)] // the future must not borrow `self`
    fn close_pool(&self, pool: PgPool) -> impl Future<Output = ()> + Send + 'static {
        // Marks the pool closed now (sqlx does on the call), then waits for
        // its connections when awaited.
        drop(pool.close());
        async move { pool.close().await }
    }

    fn acquire(
        &self,
        pool: &PgPool,
    ) -> impl Future<Output = std::result::Result<PoolConnection<Postgres>, sqlx::Error>> + Send
    {
        pool.acquire()
    }

    async fn probe(&self, node: &SqlxNode) -> std::result::Result<Probe, sqlx::Error> {
        let mut slot = node.probe.lock().await;
        // Taken out: if this future is cancelled (timeout), the connection
        // (possibly mid-query on a frozen server) is dropped, not reused.
        let mut conn = match slot.take() {
            Some(c) => c,
            None => PgConnection::connect_with(&node.options).await?,
        };
        let row: (bool, i64, i64, Option<i64>, Option<f64>) =
            sqlx::query_as(PROBE_SQL).fetch_one(&mut conn).await?;
        *slot = Some(conn);
        Ok(probe_from_row(row.0, row.1, row.2, row.3, row.4))
    }

    async fn promote(&self, node: &SqlxNode) -> std::result::Result<(), sqlx::Error> {
        let mut conn = PgConnection::connect_with(&node.options).await?;
        let res = match sqlx::query_scalar::<_, bool>(PROMOTE_SQL)
            .fetch_one(&mut conn)
            .await
        {
            Ok(_) => {
                wait_promoted(&mut conn, |conn| {
                    Box::pin(sqlx::query_scalar::<_, bool>(IN_RECOVERY_SQL).fetch_one(conn))
                })
                .await
            }
            Err(sqlx::Error::Database(db)) if already_primary(db.code().as_deref()) => Ok(()),
            Err(e) => Err(e),
        };
        let _ = conn.close().await;
        res
    }

    async fn write_token(
        conn: &mut PoolConnection<Postgres>,
    ) -> std::result::Result<WriteToken, sqlx::Error> {
        let (position, timeline): (i64, i64) =
            sqlx::query_as(POSITION_SQL).fetch_one(&mut **conn).await?;
        Ok(token_from_row(position, timeline))
    }
}

/// What the drop-in surface returns for this crate's errors: the sqlx
/// variant a caller of `PgPool` would match on.
pub(crate) fn to_sqlx(e: Error) -> sqlx::Error {
    match e {
        // What `PgPool` says when it cannot get a connection in time.
        Error::NoNode { .. } | Error::Timeout { .. } => sqlx::Error::PoolTimedOut,
        Error::Closed => sqlx::Error::PoolClosed,
        Error::Backend { source, .. } => match source.downcast::<sqlx::Error>() {
            Ok(e) => *e,
            Err(other) => sqlx::Error::Io(std::io::Error::other(other)),
        },
        Error::Config(_) => sqlx::Error::Configuration(Box::new(e)),
        other => sqlx::Error::Io(std::io::Error::other(other)),
    }
}

/// The sqlx facade: what `PgPool` users reach for, on top of the generic
/// [`FailoverPool`] surface.
impl FailoverPool<SqlxPostgres> {
    /// Connects with default settings (see [`PoolConfig`]): the node URLs in
    /// any order; roles are discovered.
    pub async fn connect(urls: &[&str]) -> Result<Self> {
        Self::connect_with(urls, PoolConfig::default()).await
    }

    /// The generic failover pool underneath: the pool itself.
    #[deprecated(
        note = "`FailoverPgPool` is a `FailoverPool<SqlxPostgres>`: call its methods directly"
    )]
    pub fn failover(&self) -> &Self {
        self
    }

    /// A handle whose queries go to the current writer (an `Executor`,
    /// like `&PgPool`). Returns at once; each query picks the writer anew.
    ///
    /// # Errors
    /// [`Error::Closed`] after [`FailoverPool::close`].
    pub async fn writer(&self) -> Result<Routed<SqlxPostgres>> {
        self.routed(Route::Writer)
    }

    /// A handle whose queries go to a reader by the configured read
    /// preference (an `Executor`). Each query picks its node anew.
    pub async fn reader(&self) -> Result<Routed<SqlxPostgres>> {
        self.routed(self.default_read_route())
    }

    /// A reader handle with an explicit read preference.
    pub async fn reader_with(&self, pref: ReadPreference) -> Result<Routed<SqlxPostgres>> {
        self.routed(Route::Reader(pref))
    }

    /// A handle whose queries go only to a node that has replayed `token`
    /// (else the writer): read-your-writes.
    pub async fn reader_after(&self, token: WriteToken) -> Result<Routed<SqlxPostgres>> {
        self.routed(Route::After(token))
    }

    fn routed(&self, route: Route) -> Result<Routed<SqlxPostgres>> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        Ok(self.route(route))
    }

    /// A connection to the writer, like `PgPool::acquire`.
    pub async fn acquire(&self) -> std::result::Result<PoolConnection<Postgres>, sqlx::Error> {
        executor::acquire_on(self, Route::Writer).await
    }

    /// Starts a transaction on the writer, like `PgPool::begin`.
    pub async fn begin(&self) -> std::result::Result<Transaction<'static, Postgres>, sqlx::Error> {
        Transaction::begin(self.acquire().await?, None).await
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
        let (conn, node) = self.checkout(Route::Writer).await?.into_parts();
        // Nothing of the body ran: a failure at BEGIN never executed it.
        let mut tx = Transaction::begin(conn, None)
            .await
            .map_err(|e| node.observe_in_transaction(e))?;
        let result = body(&mut tx).await;
        node.finish_transaction(tx, result, |tx| tx.commit()).await
    }
}

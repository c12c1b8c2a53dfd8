//! [`DeadpoolPostgres`]: the deadpool-postgres / tokio-postgres backend of a
//! [`FailoverPool`].
//!
//! ```no_run
//! use failover_pool::pool::{FailoverPool, PoolConfig};
//! use failover_pool::postgres::DeadpoolPostgres;
//!
//! # async fn demo() -> failover_pool::Result<()> {
//! let pool = FailoverPool::<DeadpoolPostgres>::connect(
//!     &["postgres://app@db-a/app", "postgres://app@db-b/app"],
//!     PoolConfig::default(),
//! )
//! .await?;
//! let writer = pool.writer().await?; // dereferences to a deadpool_postgres::Object
//! if let Err(e) = writer.execute("INSERT INTO t VALUES (1)", &[]).await {
//!     return Err(writer.observe(e)); // a failover-class error re-probes at once
//! }
//! let reader = pool.reader().await?; // a replica, per the read preference
//! let _rows = reader.query("SELECT * FROM t", &[]).await.map_err(|e| reader.observe(e))?;
//! # Ok(()) }
//! ```
//!
//! Every node pool is a generation: when the node's role changes the pool
//! is replaced, and the old generation's `pre_recycle` hook refuses to hand
//! its connections out again, so nobody writes to a demoted primary through
//! an old pooled connection. A connection whose server closed it (a crash:
//! tokio-postgres sees the reset at once) makes the pool re-probe when it
//! is returned.

use crate::core::Classify;
use crate::error::{Error, ErrorClass, Result};
use crate::pool::{
    Backend, FailoverPool, NodeSpec, PoolConfig, PoolGeneration, Pooled, Probe, ReadPreference,
    Route, WriteToken,
};
use crate::postgres::{
    DEFAULT_PORT, IN_RECOVERY_SQL, POSITION_SQL, PROBE_SQL, PROMOTE_SQL, already_primary,
    classify_sqlstate, probe_from_row, token_from_row, wait_promoted,
};
use deadpool_postgres::{
    Hook, HookError, Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use futures_util::future::BoxFuture;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};

/// Classifies a tokio-postgres error: SQLSTATEs as in
/// [`classify_sqlstate`]; a closed connection or I/O failure is
/// failover-class; a refused connection did not execute; conversion and
/// other client-side errors are the application's.
pub fn classify_pg(error: &tokio_postgres::Error) -> ErrorClass {
    if let Some(db) = error.as_db_error() {
        return classify_sqlstate(db.code().code());
    }
    if error.is_closed() {
        return ErrorClass::maybe_executed();
    }
    // A failure to connect (refused, timed out, TLS) never reached the server.
    let text = error.to_string();
    if text.starts_with("error connecting")
        || text.starts_with("error performing TLS")
        || text.starts_with("timeout waiting")
    {
        return ErrorClass::not_executed();
    }
    let mut src = std::error::Error::source(error);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return ErrorClass::of_io(io);
        }
        src = s.source();
    }
    if text.starts_with("error communicating") || text.starts_with("unexpected message") {
        ErrorClass::maybe_executed()
    } else {
        ErrorClass::Application
    }
}

/// Classifies a deadpool-postgres pool error: timeouts and a closed pool
/// never reached the server; backend errors as in [`classify_pg`].
pub fn classify(error: &PoolError) -> ErrorClass {
    match error {
        PoolError::Timeout(_) | PoolError::Closed => ErrorClass::not_executed(),
        PoolError::Backend(e) => classify_pg(e),
        PoolError::PostCreateHook(_) => ErrorClass::not_executed(),
        PoolError::NoRuntimeSpecified => ErrorClass::Application,
    }
}

impl Classify for tokio_postgres::Error {
    fn classify(&self) -> ErrorClass {
        classify_pg(self)
    }
}

/// An error of the deadpool backend: from the node's connection pool, or
/// from a statement on a connection (probe, promotion, write token).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgDeadpoolError {
    /// Getting a connection from the node's pool failed.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// A statement failed.
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
}

impl Classify for PgDeadpoolError {
    fn classify(&self) -> ErrorClass {
        match self {
            PgDeadpoolError::Pool(e) => classify(e),
            PgDeadpoolError::Postgres(e) => classify_pg(e),
        }
    }
}

/// The deadpool-postgres backend: per-node `deadpool_postgres::Pool`s and
/// probes over a dedicated tokio-postgres connection.
#[derive(Debug, Clone)]
pub struct DeadpoolPostgres {
    max_connections: usize,
    connect_timeout: Duration,
    /// `None`: no check; `Some(w)`: a round trip for connections last used `w` or more ago.
    check_idle_after: Option<Duration>,
}

/// Per-node state of [`DeadpoolPostgres`]: parsed connect options and the
/// probe connection. Its `Debug` shows hosts and ports only.
pub struct DeadpoolNode {
    config: tokio_postgres::Config,
    probe: Mutex<Option<Client>>,
}

impl fmt::Debug for DeadpoolNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadpoolNode")
            .field("hosts", &self.config.get_hosts())
            .field("ports", &self.config.get_ports())
            .finish()
    }
}

async fn connect(
    config: &tokio_postgres::Config,
) -> std::result::Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

impl Backend for DeadpoolPostgres {
    type Node = DeadpoolNode;
    type Pool = Pool;
    type Conn = Object;
    type Error = PgDeadpoolError;

    const DEFAULT_PORT: u16 = DEFAULT_PORT;

    fn from_config(config: &PoolConfig) -> Self {
        DeadpoolPostgres {
            max_connections: config.max_connections as usize,
            connect_timeout: config.connect_timeout,
            check_idle_after: config.connection_check(),
        }
    }

    fn node(&self, spec: &NodeSpec) -> Result<DeadpoolNode> {
        let mut config = tokio_postgres::Config::from_str(spec.url.expose()).map_err(|e| {
            Error::Config(format!(
                "bad Postgres URL `{}` for node `{}`: {e}",
                spec.url, spec.id
            ))
        })?;
        config.connect_timeout(self.connect_timeout);
        Ok(DeadpoolNode {
            config,
            probe: Mutex::new(None),
        })
    }

    fn pool(&self, node: &DeadpoolNode, generation: PoolGeneration) -> Result<Pool> {
        // `Fast` drops connections tokio-postgres saw closed; `Verified`
        // adds a round trip. With a bypass window the round trip, when
        // due, is the post-recycle hook below.
        let recycling_method = match self.check_idle_after {
            Some(Duration::ZERO) => RecyclingMethod::Verified,
            _ => RecyclingMethod::Fast,
        };
        let manager = Manager::from_config(
            node.config.clone(),
            NoTls,
            ManagerConfig { recycling_method },
        );
        let mut builder = Pool::builder(manager)
            .max_size(self.max_connections)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(self.connect_timeout))
            .wait_timeout(Some(self.connect_timeout))
            // A recycle check on a frozen node must not hang the caller.
            .recycle_timeout(Some(self.connect_timeout))
            .pre_recycle(Hook::sync_fn(move |_, _| {
                if generation.is_current() {
                    Ok(())
                } else {
                    Err(HookError::Message(
                        "connection from a retired pool generation".into(),
                    ))
                }
            }));
        if let Some(window) = self.check_idle_after.filter(|w| !w.is_zero()) {
            let timeout = self.connect_timeout;
            builder = builder.post_recycle(Hook::async_fn(move |client, metrics| {
                let due = metrics.last_used() >= window;
                Box::pin(async move {
                    if !due {
                        return Ok(());
                    }
                    match tokio::time::timeout(timeout, client.simple_query("")).await {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err(e)) => Err(HookError::Backend(e)),
                        Err(_) => Err(HookError::Message("connection check timed out".into())),
                    }
                })
            }));
        }
        builder
            .build()
            .map_err(|e| Error::Config(format!("deadpool-postgres pool: {e}")))
    }

    #[allow(clippy::manual_async_fn)] // the future must not borrow `self`
    fn close_pool(&self, pool: Pool) -> impl Future<Output = ()> + Send + 'static {
        async move { pool.close() }
    }

    async fn acquire(&self, pool: &Pool) -> std::result::Result<Object, PgDeadpoolError> {
        Ok(pool.get().await?)
    }

    fn is_broken(conn: &Object) -> bool {
        conn.is_closed()
    }

    fn is_exhausted(error: &PgDeadpoolError) -> bool {
        matches!(
            error,
            PgDeadpoolError::Pool(PoolError::Timeout(deadpool_postgres::TimeoutType::Wait))
        )
    }

    async fn probe(&self, node: &DeadpoolNode) -> std::result::Result<Probe, PgDeadpoolError> {
        let mut slot = node.probe.lock().await;
        let client = match slot.take() {
            Some(c) if !c.is_closed() => c,
            _ => connect(&node.config).await?,
        };
        let row = client.query_one(PROBE_SQL, &[]).await?;
        let probe = probe_from_row(
            row.try_get(0)?,
            row.try_get(1)?,
            row.try_get(2)?,
            row.try_get(3)?,
            row.try_get(4)?,
        );
        *slot = Some(client);
        Ok(probe)
    }

    async fn promote(&self, node: &DeadpoolNode) -> std::result::Result<(), PgDeadpoolError> {
        let mut client = connect(&node.config).await?;
        match client.query_one(PROMOTE_SQL, &[]).await {
            Ok(_) => {}
            Err(e) if already_primary(e.code().map(|c| c.code())) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        wait_promoted(&mut client, |client| {
            Box::pin(async move {
                let row = client.query_one(IN_RECOVERY_SQL, &[]).await?;
                Ok(row.try_get::<_, bool>(0)?)
            })
        })
        .await
    }

    async fn write_token(conn: &mut Object) -> std::result::Result<WriteToken, PgDeadpoolError> {
        let row = conn.query_one(POSITION_SQL, &[]).await?;
        Ok(token_from_row(row.try_get(0)?, row.try_get(1)?))
    }
}

/// The deadpool facade: checked-out connections for each route, on top of
/// the generic [`FailoverPool`] surface.
impl FailoverPool<DeadpoolPostgres> {
    /// Connects to the nodes (any order; roles are discovered).
    pub async fn connect(urls: &[&str], config: PoolConfig) -> Result<Self> {
        Self::connect_with(urls, config).await
    }

    /// A pooled connection to the writer (waits during a failover, bounded
    /// by the acquire timeout). It dereferences to a `deadpool_postgres::Object`.
    pub async fn writer(&self) -> Result<Pooled<DeadpoolPostgres>> {
        self.checkout(Route::Writer).await
    }

    /// A pooled connection for reading, per the configured read preference.
    pub async fn reader(&self) -> Result<Pooled<DeadpoolPostgres>> {
        self.checkout(self.default_read_route()).await
    }

    /// A pooled connection for reading with an explicit preference.
    pub async fn reader_with(&self, pref: ReadPreference) -> Result<Pooled<DeadpoolPostgres>> {
        self.checkout(Route::Reader(pref)).await
    }

    /// A pooled connection on a node that has replayed `token` (else the
    /// writer): read-your-writes.
    pub async fn reader_after(&self, token: WriteToken) -> Result<Pooled<DeadpoolPostgres>> {
        self.checkout(Route::After(token)).await
    }

    /// Runs `body` in a transaction on the writer and commits it, with
    /// failover-aware errors and no replay (as
    /// [`FailoverPgPool::transaction`](crate::postgres::FailoverPgPool::transaction)):
    /// a failover-class failure before `COMMIT` did not execute, a failure
    /// during `COMMIT` is [`Error::OutcomeUnknown`], the body's own errors
    /// are application errors after a rollback.
    pub async fn transaction<T, F>(&self, body: F) -> Result<T>
    where
        T: Send,
        F: for<'t> FnOnce(
                &'t deadpool_postgres::Transaction<'_>,
            )
                -> BoxFuture<'t, std::result::Result<T, tokio_postgres::Error>>
            + Send,
    {
        let (mut conn, node) = self.checkout(Route::Writer).await?.into_parts();
        // Nothing of the body ran: a failure at BEGIN never executed it.
        let tx = conn
            .transaction()
            .await
            .map_err(|e| node.observe_in_transaction(e))?;
        let result = body(&tx).await;
        node.finish_transaction(tx, result, |tx| tx.commit()).await
    }
}

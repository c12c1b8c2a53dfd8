//! [`DeadpoolPostgres`]: the deadpool-postgres / tokio-postgres backend of a
//! [`FailoverPool`].
//!
//! ```no_run
//! use failover_pool::pool::{FailoverPool, PoolConfig};
//! use failover_pool::postgres::deadpool::DeadpoolPostgres;
//!
//! # async fn demo() -> failover_pool::Result<()> {
//! let pool = FailoverPool::<DeadpoolPostgres>::connect(
//!     &["postgres://app@db-a/app", "postgres://app@db-b/app"],
//!     PoolConfig::default(),
//! )
//! .await?;
//! let writer = pool.writer().await?; // a deadpool_postgres::Object on the primary
//! writer.execute("INSERT INTO t VALUES (1)", &[]).await.ok();
//! let reader = pool.reader().await?; // a replica, per the read preference
//! let _rows = reader.query("SELECT * FROM t", &[]).await.ok();
//! # Ok(()) }
//! ```
//!
//! Every node pool is a generation: when the node's role changes the pool
//! is replaced, and the old generation's `pre_recycle` hook refuses to hand
//! its connections out again, so nobody writes to a demoted primary through
//! an old pooled connection.

use crate::error::{Error, ErrorClass, Result};
use crate::pool::{
    Backend, EpochCheck, FailoverPool, NodeRef, NodeSpec, PoolConfig, Probe, ReadPreference,
    WriteToken,
};
use crate::postgres::{
    IN_RECOVERY_SQL, POSITION_SQL, PROBE_SQL, PROMOTE_SQL, already_primary, classify_sqlstate,
    probe_from_row, wait_promoted,
};
use deadpool_postgres::{
    Hook, HookError, Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};

/// Classifies a tokio-postgres error: SQLSTATEs as in
/// [`classify_sqlstate`]; a closed
/// connection or I/O failure is failover-class; a refused connection did not
/// execute; conversion and other client-side errors are the application's.
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

/// The deadpool-postgres backend: per-node `deadpool_postgres::Pool`s and
/// probes over a dedicated tokio-postgres connection.
#[derive(Debug, Clone)]
pub struct DeadpoolPostgres {
    max_connections: usize,
    connect_timeout: Duration,
    recycling: RecyclingMethod,
}

impl DeadpoolPostgres {
    /// A backend whose node pools follow `config` (size, connect timeout).
    pub fn new(config: &PoolConfig) -> Self {
        DeadpoolPostgres {
            max_connections: config.max_connections as usize,
            connect_timeout: config.connect_timeout,
            recycling: if config.test_before_acquire {
                RecyclingMethod::Verified
            } else {
                RecyclingMethod::Fast
            },
        }
    }
}

/// Per-node state of [`DeadpoolPostgres`].
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

fn pg_error(what: &str, e: tokio_postgres::Error) -> Error {
    let class = classify_pg(&e);
    Error::backend(what.to_owned(), class, e)
}

async fn connect(config: &tokio_postgres::Config) -> Result<Client> {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| pg_error("connect", e))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

impl Backend for DeadpoolPostgres {
    type Node = DeadpoolNode;
    type Pool = Pool;
    type Conn = Object;
    type Error = PoolError;

    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn node(&self, spec: &NodeSpec) -> Result<DeadpoolNode> {
        let mut config = tokio_postgres::Config::from_str(&spec.url)
            .map_err(|e| Error::Config(format!("bad Postgres URL for node `{}`: {e}", spec.id)))?;
        config.connect_timeout(self.connect_timeout);
        Ok(DeadpoolNode {
            config,
            probe: Mutex::new(None),
        })
    }

    fn pool(&self, node: &DeadpoolNode, epoch: u64, current: EpochCheck) -> Result<Pool> {
        let manager = Manager::from_config(
            node.config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: self.recycling.clone(),
            },
        );
        Pool::builder(manager)
            .max_size(self.max_connections)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(self.connect_timeout))
            .wait_timeout(Some(self.connect_timeout))
            // A recycle check on a frozen node must not hang the caller.
            .recycle_timeout(Some(self.connect_timeout))
            .pre_recycle(Hook::sync_fn(move |_, _| {
                if current.is_current(epoch) {
                    Ok(())
                } else {
                    Err(HookError::Message(
                        "connection from a retired pool generation".into(),
                    ))
                }
            }))
            .build()
            .map_err(|e| Error::Config(format!("deadpool-postgres pool: {e}")))
    }

    #[allow(clippy::manual_async_fn)] // the future must not borrow `self`
    fn close_pool(&self, pool: Pool) -> impl Future<Output = ()> + Send + 'static {
        async move { pool.close() }
    }

    fn acquire(
        &self,
        pool: &Pool,
    ) -> impl Future<Output = std::result::Result<Object, PoolError>> + Send {
        pool.get()
    }

    async fn probe(&self, node: &DeadpoolNode) -> Result<Probe> {
        let mut slot = node.probe.lock().await;
        let client = match slot.take() {
            Some(c) if !c.is_closed() => c,
            _ => connect(&node.config).await?,
        };
        let row = client
            .query_one(PROBE_SQL, &[])
            .await
            .map_err(|e| pg_error("probe", e))?;
        let probe = probe_from_row(
            row.try_get(0).map_err(|e| pg_error("probe", e))?,
            row.try_get(1).map_err(|e| pg_error("probe", e))?,
            row.try_get(2).map_err(|e| pg_error("probe", e))?,
            row.try_get(3).map_err(|e| pg_error("probe", e))?,
            row.try_get(4).map_err(|e| pg_error("probe", e))?,
        );
        *slot = Some(client);
        Ok(probe)
    }

    async fn promote(&self, node: &DeadpoolNode) -> Result<()> {
        let client = connect(&node.config).await?;
        match client.query_one(PROMOTE_SQL, &[]).await {
            Ok(_) => {}
            Err(e) if already_primary(e.code().map(|c| c.code())) => return Ok(()),
            Err(e) => return Err(pg_error("promote", e)),
        }
        let mut client = client;
        wait_promoted(&mut client, |client| {
            Box::pin(async move {
                let row = client
                    .query_one(IN_RECOVERY_SQL, &[])
                    .await
                    .map_err(|e| pg_error("promote", e))?;
                Ok(row.get::<_, bool>(0))
            })
        })
        .await
    }

    fn classify(error: &PoolError) -> ErrorClass {
        classify(error)
    }

    fn is_exhausted(error: &PoolError) -> bool {
        matches!(
            error,
            PoolError::Timeout(deadpool_postgres::TimeoutType::Wait)
        )
    }
}

impl FailoverPool<DeadpoolPostgres> {
    /// Connects to the nodes (any order; roles are discovered).
    pub async fn connect(urls: &[&str], config: PoolConfig) -> Result<Self> {
        let nodes = urls
            .iter()
            .map(|u| {
                let c = tokio_postgres::Config::from_str(u)
                    .map_err(|e| Error::Config(format!("bad Postgres URL `{u}`: {e}")))?;
                let host = match c.get_hosts().first() {
                    Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
                    _ => "localhost".to_owned(),
                };
                let port = c.get_ports().first().copied().unwrap_or(5432);
                Ok(NodeSpec {
                    id: Arc::from(format!("{host}:{port}")),
                    url: (*u).to_owned(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        FailoverPool::new(DeadpoolPostgres::new(&config), nodes, config).await
    }

    /// A pooled connection to the writer (waits during a failover, bounded
    /// by the acquire timeout).
    pub async fn writer(&self) -> Result<Object> {
        Ok(self.acquire_writer().await?.0)
    }

    /// A pooled connection for reading, per the configured read preference.
    pub async fn reader(&self) -> Result<Object> {
        Ok(self.acquire_reader().await?.0)
    }

    /// A pooled connection for reading with an explicit preference.
    pub async fn reader_with(&self, pref: ReadPreference) -> Result<Object> {
        Ok(self.acquire_reader_with(pref).await?.0)
    }

    /// A read-your-writes token: the writer's WAL position now.
    pub async fn write_token(&self) -> Result<WriteToken> {
        let (conn, node) = self.acquire_writer().await?;
        let row = conn
            .query_one(POSITION_SQL, &[])
            .await
            .map_err(|e| self.observe(&node, e))?;
        Ok(WriteToken {
            position: row.get::<_, i64>(0).max(0) as u64,
            epoch: row.get::<_, i64>(1).max(0) as u64,
        })
    }

    /// Classifies a tokio-postgres error from a connection of `node`,
    /// triggers a re-probe when it is failover-class, and wraps it.
    pub fn observe(&self, node: &NodeRef<DeadpoolPostgres>, e: tokio_postgres::Error) -> Error {
        let class = classify_pg(&e);
        if class.is_failover() {
            self.report_failure(node);
        }
        Error::backend(&*node.id, class, e)
    }
}

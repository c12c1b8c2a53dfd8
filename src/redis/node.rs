//! [`RedisNode`]: one Redis server as both Redis backends see it, and the
//! commands the pool sends it outside callers' traffic: the probe
//! (`INFO replication`), promotion (`REPLICAOF NO ONE`), re-pointing a
//! replica (`REPLICAOF host port`), a planned switch (`FAILOVER TO`) and the
//! write token (the master offset).

use super::{Replication, parse_replication, probe_from_info};
use crate::core::redact::redact_url;
use crate::error::{Error, Result};
use crate::pool::{NodeSpec, PoolConfig, Probe, WriteToken};
use ::redis::aio::{ConnectionLike, MultiplexedConnection};
use ::redis::{AsyncConnectionConfig, Client, ConnectionAddr, RedisError};
use std::fmt;
use std::time::Duration;
use tokio::sync::Mutex;

/// One Redis server: its client, address and probe connection. Its
/// `Debug` shows the address only.
pub struct RedisNode {
    client: Client,
    connection: AsyncConnectionConfig,
    host: String,
    port: u16,
    probe: Mutex<Option<MultiplexedConnection>>,
}

impl fmt::Debug for RedisNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisNode")
            .field("host", &self.host)
            .field("port", &self.port)
            .finish()
    }
}

async fn info_replication(
    conn: &mut impl ConnectionLike,
) -> std::result::Result<Replication, RedisError> {
    let text: String = ::redis::cmd("INFO")
        .arg("replication")
        .query_async(conn)
        .await?;
    Ok(parse_replication(&text))
}

/// The master's replication offset now: a read-your-writes token.
pub(crate) async fn write_token(
    conn: &mut impl ConnectionLike,
) -> std::result::Result<WriteToken, RedisError> {
    let info = info_replication(conn).await?;
    Ok(WriteToken {
        epoch: 0,
        position: info.master_offset,
    })
}

/// How long a `FAILOVER TO` lets the target catch up: half the promotion
/// timeout, at most 10 s. The pool has already waited for the catch-up
/// before it switches; Redis still waits for the replica's acknowledgement,
/// which comes about once a second.
pub(crate) fn failover_timeout(config: &PoolConfig) -> Duration {
    (config.promotion_timeout / 2).min(Duration::from_secs(10))
}

impl RedisNode {
    /// Parses the node's URL (no connection yet).
    pub(crate) fn new(spec: &NodeSpec, connection: AsyncConnectionConfig) -> Result<Self> {
        let bad = |why: String| {
            Error::Config(format!(
                "bad Redis URL `{}` for node `{}`: {}",
                spec.url,
                spec.id,
                redact_url(&why)
            ))
        };
        let client = Client::open(spec.url.expose()).map_err(|e| bad(e.to_string()))?;
        let (host, port) = match client.get_connection_info().addr() {
            ConnectionAddr::Tcp(h, p) => (h.clone(), *p),
            ConnectionAddr::TcpTls { host, port, .. } => (host.clone(), *port),
            _ => return Err(bad("a failover node needs a TCP address".into())),
        };
        Ok(RedisNode {
            client,
            connection,
            host,
            port,
            probe: Mutex::new(None),
        })
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// The database the node's URL selects.
    pub(crate) fn db(&self) -> i64 {
        self.client.get_connection_info().redis_settings().db()
    }

    async fn connect(&self) -> std::result::Result<MultiplexedConnection, RedisError> {
        self.client
            .get_multiplexed_async_connection_with_config(&self.connection)
            .await
    }

    /// What the node says about itself, over the cached probe connection.
    pub(crate) async fn probe(&self) -> std::result::Result<Probe, RedisError> {
        let mut slot = self.probe.lock().await;
        // Taken out: a cancelled probe (timeout) drops its connection.
        let (mut conn, cached) = match slot.take() {
            Some(c) => (c, true),
            None => (self.connect().await?, false),
        };
        let info = match info_replication(&mut conn).await {
            Ok(info) => info,
            // The cached connection was closed (Sentinel kills the client
            // connections of a replica it promotes; a server restart): one
            // more try on a new one before the node counts as down.
            Err(e)
                if cached && !e.is_timeout() && (e.is_io_error() || e.is_connection_dropped()) =>
            {
                conn = self.connect().await?;
                info_replication(&mut conn).await?
            }
            Err(e) => return Err(e),
        };
        *slot = Some(conn);
        Ok(probe_from_info(&info))
    }

    /// `REPLICAOF NO ONE` (a master answers OK too: idempotent).
    pub(crate) async fn promote(&self) -> std::result::Result<(), RedisError> {
        let mut conn = self.connect().await?;
        ::redis::cmd("REPLICAOF")
            .arg("NO")
            .arg("ONE")
            .query_async::<()>(&mut conn)
            .await
    }

    /// `REPLICAOF <leader>`.
    pub(crate) async fn follow(&self, leader: &RedisNode) -> std::result::Result<(), RedisError> {
        let mut conn = self.connect().await?;
        ::redis::cmd("REPLICAOF")
            .arg(&leader.host)
            .arg(leader.port)
            .query_async::<()>(&mut conn)
            .await
    }

    /// A planned switch coordinated by Redis (6.2+): this master pauses its
    /// clients, lets `to` catch up (within `timeout`) and hands over; returns
    /// once `to` reports itself master, or an error when Redis gave up (the
    /// target did not catch up in time: this master stays master).
    pub(crate) async fn failover_to(
        &self,
        to: &RedisNode,
        timeout: Duration,
    ) -> std::result::Result<(), RedisError> {
        let mut conn = self.connect().await?;
        ::redis::cmd("FAILOVER")
            .arg("TO")
            .arg(&to.host)
            .arg(to.port)
            .arg("TIMEOUT")
            .arg(
                u64::try_from(timeout.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1),
            )
            .query_async::<()>(&mut conn)
            .await?;
        let mut target = to.connect().await?;
        loop {
            if info_replication(&mut target).await?.master {
                return Ok(());
            }
            let me = info_replication(&mut conn).await?;
            if me.master && !me.failing_over {
                return Err(RedisError::from((
                    ::redis::ErrorKind::Client,
                    "FAILOVER aborted",
                    format!(
                        "the target did not catch up within {timeout:?}; this node stays master"
                    ),
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

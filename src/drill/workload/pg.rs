//! The Postgres drivers of the workload: the drill's table and statements,
//! [`DrillDriver`] for sqlx ([`SqlxPostgres`]) and deadpool-postgres
//! ([`DeadpoolPostgres`]), and the kinds of their errors.

use super::driver::{DrillDriver, WriteAck, crate_kind};
use crate::pool::FailoverPool;
use crate::postgres::{DeadpoolPostgres, FailoverPgPool, SqlxPostgres};

/// Creates the drill's table.
pub const TABLE_SQL: &str = "CREATE TABLE IF NOT EXISTS drill_writes \
     (id bigint PRIMARY KEY, writer int NOT NULL, at timestamptz NOT NULL DEFAULT now())";
/// One write: `$1` the id, `$2` the writer number.
pub const INSERT_SQL: &str = "INSERT INTO drill_writes (id, writer) VALUES ($1, $2)";
/// One read: whether row `$1` exists.
pub const READ_SQL: &str = "SELECT EXISTS (SELECT 1 FROM drill_writes WHERE id = $1)";
/// Reads every id (for the final set check).
pub const ALL_IDS_SQL: &str = "SELECT id FROM drill_writes";

impl DrillDriver for SqlxPostgres {
    async fn insert(
        pool: &FailoverPgPool,
        id: i64,
        writer: i32,
        _ack: Option<WriteAck>,
    ) -> Result<(), String> {
        sqlx::query(INSERT_SQL)
            .bind(id)
            .bind(writer)
            .execute(pool)
            .await
            .map(drop)
            .map_err(|e| sqlx_kind(&e))
    }

    async fn read_row(pool: &FailoverPgPool, id: i64) -> Result<bool, String> {
        let reader = pool.reader().await.map_err(|e| crate_kind(&e))?;
        sqlx::query_scalar::<_, bool>(READ_SQL)
            .bind(id)
            .fetch_one(&reader)
            .await
            .map_err(|e| sqlx_kind(&e))
    }
}

impl DrillDriver for DeadpoolPostgres {
    async fn insert(
        pool: &FailoverPool<Self>,
        id: i64,
        writer: i32,
        _ack: Option<WriteAck>,
    ) -> Result<(), String> {
        let conn = pool.writer().await.map_err(|e| crate_kind(&e))?;
        let result = async {
            let stmt = conn.prepare_cached(INSERT_SQL).await?;
            conn.execute(&stmt, &[&id, &writer]).await
        }
        .await;
        result.map(drop).map_err(|e| {
            conn.report(&e);
            pg_kind(&e)
        })
    }

    async fn read_row(pool: &FailoverPool<Self>, id: i64) -> Result<bool, String> {
        let conn = pool.reader().await.map_err(|e| crate_kind(&e))?;
        let result = async {
            let stmt = conn.prepare_cached(READ_SQL).await?;
            conn.query_one(&stmt, &[&id]).await?.try_get::<_, bool>(0)
        }
        .await;
        result.map_err(|e| {
            conn.report(&e);
            pg_kind(&e)
        })
    }
}

/// The kind of a sqlx error (see the [workload docs](super#error-kinds)).
pub fn sqlx_kind(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("db:{code}"),
            None => "db".to_owned(),
        },
        // A pool error with no sqlx counterpart travels as I/O.
        sqlx::Error::Io(io) => match io.get_ref().and_then(|e| e.downcast_ref::<crate::Error>()) {
            Some(e) => crate_kind(e),
            None => "io".to_owned(),
        },
        sqlx::Error::PoolTimedOut => "pool_timed_out".to_owned(),
        sqlx::Error::PoolClosed => "pool_closed".to_owned(),
        sqlx::Error::Protocol(_) => "protocol".to_owned(),
        sqlx::Error::Tls(_) => "tls".to_owned(),
        sqlx::Error::WorkerCrashed => "worker_crashed".to_owned(),
        sqlx::Error::Configuration(source) => match source.downcast_ref::<crate::Error>() {
            Some(e) => crate_kind(e),
            None => "sqlx".to_owned(),
        },
        _ => "sqlx".to_owned(),
    }
}

/// The kind of a tokio-postgres error (see the [workload docs](super#error-kinds)).
pub fn pg_kind(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("db:{}", db.code().code());
    }
    if e.is_closed() {
        return "closed".to_owned();
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return "io".to_owned();
        }
        source = s.source();
    }
    "pg".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlx_errors_use_the_crate_code_they_carry() {
        let io = sqlx::Error::Io(std::io::Error::other(crate::Error::Closed));
        assert_eq!(sqlx_kind(&io), "closed");
        let wrapped = sqlx::Error::Configuration(Box::new(crate::Error::Closed));
        assert_eq!(sqlx_kind(&wrapped), "closed");
        assert_eq!(sqlx_kind(&sqlx::Error::PoolTimedOut), "pool_timed_out");
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(sqlx_kind(&io), "io");
    }
}

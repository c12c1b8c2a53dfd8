//! `FailoverPgPool` against the Postgres pair of the repository's
//! `docker-compose.yml` (`pg-primary` and its streaming replica
//! `pg-replica`): waits until the pool has found the primary, writes a row
//! there, reads it back through the read path (read-your-writes, then a
//! replica-only read), and prints which server served what and the pool's
//! view of the roles.
//!
//! Run: `docker compose up -d`, then
//! `cargo run --features sqlx --example compose_pg`.
//! `COMPOSE_PG_PRIMARY_URL` and `COMPOSE_PG_REPLICA_URL` override the URLs
//! (default `postgres://postgres@127.0.0.1:5433/postgres` and `:5434`).

use failover_pool::core::redact::redact_url;
use failover_pool::pool::{PoolConfig, ReadPreference, Route};
use failover_pool::postgres::FailoverPgPool;
use std::error::Error;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const HINT: &str = "is the stack up? run `docker compose up -d` first";
/// How long to wait for the pool to find a primary.
const WAIT: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("compose_pg: {}", chain(&*e));
            ExitCode::FAILURE
        }
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

async fn run() -> Result<(), Box<dyn Error>> {
    let urls = [
        env_or(
            "COMPOSE_PG_PRIMARY_URL",
            "postgres://postgres@127.0.0.1:5433/postgres",
        ),
        env_or(
            "COMPOSE_PG_REPLICA_URL",
            "postgres://postgres@127.0.0.1:5434/postgres",
        ),
    ];
    let started = Instant::now();
    let pool = FailoverPgPool::connect_with(
        &urls,
        PoolConfig {
            name: "compose_pg".into(),
            probe_interval: Duration::from_millis(200),
            acquire_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(1),
            ..PoolConfig::default()
        },
    )
    .await?;

    // The pool probed every node once while connecting: none answering
    // means nothing is listening there.
    if pool.topology().nodes.iter().all(|n| !n.up) {
        print_roles(&pool);
        let urls: Vec<_> = urls.iter().map(|u| redact_url(u)).collect();
        return Err(format!("no Postgres server answers at {urls:?}; {HINT}").into());
    }
    while pool.topology().writer.is_none() {
        if started.elapsed() > WAIT {
            print_roles(&pool);
            return Err(format!("no primary found within {WAIT:?}; {HINT}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("pool found the primary after {:?}", started.elapsed());
    print_roles(&pool);

    // The drop-in surface: `&pool` is an executor whose queries go to the primary.
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS compose_example \
         (id bigserial PRIMARY KEY, note text NOT NULL, at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(&pool)
    .await?;

    // A checkout names the node it is on.
    let mut writer = pool.checkout(Route::Writer).await?;
    let (id, in_recovery): (i64, bool) = sqlx::query_as(
        "INSERT INTO compose_example (note) VALUES ($1) RETURNING id, pg_is_in_recovery()",
    )
    .bind("hello from compose_pg")
    .fetch_one(&mut **writer)
    .await
    .map_err(|e| writer.observe(e))?;
    println!(
        "wrote row {id} on {} (pg_is_in_recovery = {in_recovery})",
        writer.node_id()
    );
    drop(writer);

    // Read-your-writes: a node that has replayed the write, else the primary.
    let token = pool.write_token().await?;
    let mut fresh = pool.checkout(Route::After(token)).await?;
    let (note, in_recovery): (String, bool) =
        sqlx::query_as("SELECT note, pg_is_in_recovery() FROM compose_example WHERE id = $1")
            .bind(id)
            .fetch_one(&mut **fresh)
            .await
            .map_err(|e| fresh.observe(e))?;
    println!(
        "read row {id} back (read-your-writes) on {} (pg_is_in_recovery = {in_recovery}): {note:?}",
        fresh.node_id()
    );
    drop(fresh);

    // A replica-only read: the replica has the row once it has replayed it
    // (on a fresh stack, the table too: 42P01 until then).
    let started = Instant::now();
    let replica = pool.reader_with(ReadPreference::Replica).await?;
    loop {
        let mut conn = replica.checkout().await?;
        let row: Option<(bool,)> =
            match sqlx::query_as("SELECT pg_is_in_recovery() FROM compose_example WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut **conn)
                .await
            {
                Ok(row) => row,
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => None,
                Err(e) => return Err(conn.observe(e).into()),
            };
        if let Some((in_recovery,)) = row {
            println!(
                "replica {} has row {id} (pg_is_in_recovery = {in_recovery}), seen after {:?}",
                conn.node_id(),
                started.elapsed()
            );
            break;
        }
        if started.elapsed() > WAIT {
            return Err(format!("the replica did not replay row {id} within {WAIT:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    print_roles(&pool);
    pool.close().await;
    Ok(())
}

/// An error and its sources, one line.
fn chain(e: &dyn Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.ends_with(&s_text) {
            text += &format!(": {s_text}");
        }
        source = s.source();
    }
    text
}

/// The pool's view: every node, its role, and what it serves.
fn print_roles(pool: &FailoverPgPool) {
    let topo = pool.topology();
    println!("pool view (epoch {}):", topo.epoch);
    for (i, n) in topo.nodes.iter().enumerate() {
        let serves = if topo.writer == Some(i) {
            "writes"
        } else if topo.readers.contains(&i) {
            "reads"
        } else {
            "nothing"
        };
        let role = n.role.map_or("unknown", |r| r.as_str());
        let mut line = format!(
            "  {:<16} up={:<5} role={role:<8} serves {serves}",
            n.id, n.up
        );
        if let Some(lag) = n.lag_bytes {
            line += &format!(", {lag} bytes behind");
        }
        if let Some(e) = n.last_error.as_deref().filter(|_| !n.up) {
            line += &format!(", last error: {e}");
        }
        println!("{line}");
    }
}

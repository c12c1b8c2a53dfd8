//! `FailoverRedis` fed by `SentinelTopology`, against the Redis part of the
//! repository's `docker-compose.yml` (master `mymaster` on 127.0.0.1:6380,
//! a replica on :6381, sentinels on :26380-26382): waits until the pool has
//! found the master the sentinels name, SETs a key, GETs it back (from the
//! master, then read-your-writes from a replica that has it), and prints
//! which server served each command (the server's own `tcp_port` and
//! `role`, asked in the same pipeline) and the pool's view of the roles.
//!
//! Run: `docker compose up -d`, then
//! `cargo run --features redis --example compose_redis`.
//! `COMPOSE_REDIS_SENTINELS` (comma-separated URLs) and
//! `COMPOSE_REDIS_MASTER` override the sentinels and the master name.

use failover_pool::core::redact::redact_url;
use failover_pool::pool::PoolConfig;
use failover_pool::redis::{FailoverRedis, SentinelTopology};
use std::error::Error;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const HINT: &str = "is the stack up? run `docker compose up -d` first";
/// How long to wait for the pool to find the master.
const WAIT: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("compose_redis: {}", chain(&*e));
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn Error>> {
    let sentinels = std::env::var("COMPOSE_REDIS_SENTINELS").unwrap_or_else(|_| {
        "redis://127.0.0.1:26380,redis://127.0.0.1:26381,redis://127.0.0.1:26382".into()
    });
    let sentinels: Vec<&str> = sentinels.split(',').map(str::trim).collect();
    let master = std::env::var("COMPOSE_REDIS_MASTER").unwrap_or_else(|_| "mymaster".into());

    // Sentinel names nodes by the addresses it knows them by (127.0.0.1:638x
    // here, as the stack runs on the host network); `url_for` turns them
    // into URLs (a password would go here).
    let source = SentinelTopology::new(&master, &sentinels, |host, port| {
        format!("redis://{host}:{port}/")
    })?
    .refresh(Duration::from_millis(500));
    let started = Instant::now();
    let redis = FailoverRedis::builder()
        .source(source)
        .config(PoolConfig {
            name: "compose_redis".into(),
            probe_interval: Duration::from_millis(200),
            acquire_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(1),
            ..PoolConfig::default()
        })
        .connect()
        .await
        .map_err(|e| {
            let sentinels: Vec<_> = sentinels.iter().map(|u| redact_url(u)).collect();
            format!(
                "could not read `{master}` from the sentinels {sentinels:?}: {}; {HINT}",
                chain(&e)
            )
        })?;

    while redis.topology().writer.is_none() {
        if started.elapsed() > WAIT {
            print_roles(&redis);
            return Err(format!("no master `{master}` found within {WAIT:?}; {HINT}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("pool found the master after {:?}", started.elapsed());
    print_roles(&redis);

    let key = "compose_redis:greeting";
    let unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    let value = format!("hello from compose_redis at unix ms {unix_ms}");

    // A pipeline runs on one connection, so `INFO server` and `ROLE` come
    // from the node that ran the SET.
    let mut writer = redis.clone();
    let (info, role): (String, Vec<redis::Value>) = redis::pipe()
        .set(key, &value)
        .ignore()
        .cmd("INFO")
        .arg("server")
        .cmd("ROLE")
        .query_async(&mut writer)
        .await?;
    println!(
        "SET {key} on the master at {} (server says port {}, role {})",
        writer_id(&redis),
        tcp_port(&info),
        role_of(&role)
    );

    let (got, info): (Option<String>, String) = redis::pipe()
        .get(key)
        .cmd("INFO")
        .arg("server")
        .query_async(&mut writer)
        .await?;
    println!("GET {key} from port {}: {got:?}", tcp_port(&info));
    if got.as_deref() != Some(value.as_str()) {
        return Err(format!("read back {got:?}, wrote {value:?}").into());
    }

    // Read-your-writes: a replica that has processed the SET, else the master.
    let token = redis.write_token().await?;
    let mut fresh = redis.reader_after(token).await?;
    let (got, info, role): (Option<String>, String, Vec<redis::Value>) = redis::pipe()
        .get(key)
        .cmd("INFO")
        .arg("server")
        .cmd("ROLE")
        .query_async(&mut fresh)
        .await?;
    println!(
        "GET {key} (read-your-writes) from port {} (role {}): {got:?}",
        tcp_port(&info),
        role_of(&role)
    );
    if got.as_deref() != Some(value.as_str()) {
        return Err(format!("read back {got:?}, wrote {value:?}").into());
    }

    print_roles(&redis);
    redis.close().await;
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

fn writer_id(redis: &FailoverRedis) -> String {
    let topo = redis.topology();
    topo.writer_status()
        .map_or_else(|| "?".into(), |w| w.id.to_string())
}

/// `tcp_port` from the text of `INFO server`.
fn tcp_port(info: &str) -> &str {
    info.lines()
        .find_map(|l| l.trim().strip_prefix("tcp_port:"))
        .unwrap_or("?")
}

/// The first element of a `ROLE` reply: `master` or `slave`.
fn role_of(role: &[redis::Value]) -> String {
    match role.first() {
        Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(redis::Value::SimpleString(s)) => s.clone(),
        _ => "?".into(),
    }
}

/// The pool's view: every node the sentinels named, its role, what it serves.
fn print_roles(redis: &FailoverRedis) {
    let topo = redis.topology();
    let claimed = topo.claimed_writer.as_deref().unwrap_or("none");
    println!(
        "pool view (epoch {}, sentinels name {claimed} master):",
        topo.epoch
    );
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
        if let Some(e) = n.last_error.as_deref().filter(|_| !n.up) {
            line += &format!(", last error: {e}");
        }
        println!("{line}");
    }
}

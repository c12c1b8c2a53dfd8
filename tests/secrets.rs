//! Credentials never show: every output a pool can produce (`Debug`,
//! `Display` of errors, events, topology, stats, `tracing` records) is built
//! from node URLs carrying a recognisable password, against a real
//! streaming-replication cluster and a refused node, and searched for it.
#![cfg(all(feature = "drill", feature = "sqlx", feature = "deadpool-postgres"))]

use failover_pool::drill::{LocalPgCluster, PgClusterOptions};
use failover_pool::pool::{
    FailoverPool, NodeSpec, PoolBuilder, PoolConfig, PoolSpec, ReadPreference, Route,
};
use failover_pool::postgres::{DeadpoolPostgres, FailoverPgPool, SqlxPostgres};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

const SECRET: &str = "hunter2-Zq9";

/// Records every span and event field `tracing` sees, as text.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<String>>);

struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        span.record(&mut Fields(&mut self.0.lock().unwrap()));
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, values: &Record<'_>) {
        values.record(&mut Fields(&mut self.0.lock().unwrap()));
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut s = self.0.lock().unwrap();
        s.push('\n');
        s.push_str(event.metadata().target());
        event.record(&mut Fields(&mut s));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// `postgres://postgres:<SECRET>@127.0.0.1:<port>/postgres` (the test
/// cluster trusts local connections, so the password is carried, not checked).
fn with_password(url: &str) -> String {
    url.replacen("postgres@", &format!("postgres:{SECRET}@"), 1)
}

fn config() -> PoolConfig {
    PoolConfig {
        name: "secrets".into(),
        probe_interval: Duration::from_millis(100),
        probe_timeout: Duration::from_millis(500),
        acquire_timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_millis(500),
        ..PoolConfig::default()
    }
}

fn assert_clean(what: &str, text: &str) {
    assert!(!text.contains(SECRET), "{what} shows the password: {text}");
}

// Current-thread: every spawned task (prober, probes) runs under the
// thread-local capturing subscriber.
#[tokio::test]
async fn no_output_shows_a_password() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    let cluster = LocalPgCluster::start(PgClusterOptions::new().standbys(1))
        .await
        .expect("start cluster");
    let mut urls: Vec<String> = cluster.urls().iter().map(|u| with_password(u)).collect();
    // A node nobody listens on: its probe and connect errors are shown too.
    urls.push(format!("postgres://postgres:{SECRET}@127.0.0.1:1/postgres"));
    let url_refs: Vec<&str> = urls.iter().map(String::as_str).collect();
    let mut out = String::new();

    // Specs, configs, builders.
    for u in &url_refs {
        let spec = NodeSpec::from_url(u, 5432).unwrap();
        let _ = writeln!(out, "{spec:?} {} {:?}", spec.url, spec.url);
    }
    let spec = PoolSpec {
        urls: urls.iter().map(|u| u.as_str().into()).collect(),
        pool: config(),
    };
    let _ = writeln!(out, "{spec:?}");
    let builder: PoolBuilder<SqlxPostgres> = FailoverPgPool::builder().urls(urls.clone());
    let _ = writeln!(out, "{builder:?}");

    // Errors for URLs that cannot be used.
    for bad in [
        format!("postgres://postgres:{SECRET}@a,b/postgres"),
        format!("postgres://postgres:{SECRET}@db:notaport/postgres"),
        format!("password={SECRET} dbname=x"),
    ] {
        let e = FailoverPgPool::connect_with(&[bad.as_str()], config())
            .await
            .unwrap_err();
        let _ = writeln!(out, "{e} {e:?} {}", failover_pool::error::chain(&e));
        let e = FailoverPool::<DeadpoolPostgres>::connect(&[bad.as_str()], config())
            .await
            .unwrap_err();
        let _ = writeln!(out, "{e} {e:?}");
    }

    // Running pools of both backends, their topology, stats, events, handles.
    let sqlx_pool = FailoverPgPool::connect_with(&url_refs, config())
        .await
        .unwrap();
    let deadpool = FailoverPool::<DeadpoolPostgres>::connect(&url_refs, config())
        .await
        .unwrap();
    let mut sqlx_events = sqlx_pool.subscribe();
    sqlx::query("SELECT 1").execute(&sqlx_pool).await.unwrap();
    let reader = sqlx_pool
        .reader_with(ReadPreference::Replica)
        .await
        .unwrap();
    sqlx::query("SELECT 1").execute(&reader).await.unwrap();
    let conn = deadpool.writer().await.unwrap();
    conn.execute("SELECT 1", &[]).await.unwrap();
    let _ = writeln!(out, "{conn:?} {reader:?}");
    drop(conn);
    // A route nothing can serve: the error carries the refused node's last failure.
    cluster.kill(1).unwrap();
    let err = sqlx_pool
        .checkout(Route::Reader(ReadPreference::Replica))
        .await
        .unwrap_err();
    let _ = writeln!(out, "{err} {err:?} {}", failover_pool::error::chain(&err));
    let topo = sqlx_pool.refresh().await;
    assert!(
        topo.nodes.iter().any(|n| n.last_error.is_some()),
        "a node failed its probe: {topo:?}"
    );
    let _ = writeln!(out, "{topo:?} {:?}", deadpool.refresh().await);
    let _ = writeln!(out, "{sqlx_pool:?} {deadpool:?} {:?}", sqlx_pool.stats());
    while let Ok(e) = sqlx_events.try_recv() {
        let _ = writeln!(out, "{e:?}");
    }
    sqlx_pool.close().await;
    deadpool.close().await;
    let logs = capture.0.lock().unwrap().clone();
    assert!(!logs.is_empty(), "tracing captured nothing");
    assert_clean("tracing output", &logs);
    assert_clean("outputs", &out);
    drop(cluster);
}

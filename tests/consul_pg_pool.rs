//! A `FailoverPgPool` whose nodes come from Consul (the in-process fake of
//! Consul's HTTP API) over a real streaming-replication cluster, the way
//! Patroni registers Postgres: tags `master` and `replica`. The tag names the
//! writer, but the pool still verifies it by probing: a wrong `master` tag
//! on a standby gets no write; after a failover, the new tags are followed.
#![cfg(all(feature = "consul", feature = "drill", feature = "sqlx"))]

mod consul_support;

use consul_support::{FakeConsul, Instance, agent};
use failover_pool::discovery::consul::ConsulDiscovery;
use failover_pool::drill::{LocalPgCluster, PgClusterOptions};
use failover_pool::pool::{DiscoveredTopology, PoolConfig, PromotionPolicy};
use failover_pool::postgres::FailoverPgPool;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn config() -> PoolConfig {
    PoolConfig {
        name: "consul-pg".into(),
        probe_interval: Duration::from_millis(200),
        probe_timeout: Duration::from_millis(500),
        acquire_timeout: Duration::from_secs(20),
        connect_timeout: Duration::from_secs(1),
        // Patroni promotes; the pool follows what Consul and the probes say.
        promotion: PromotionPolicy::External,
        max_connections: 4,
        ..PoolConfig::default()
    }
}

/// The port of the server a write went to.
async fn write_port(pool: &FailoverPgPool, id: i64) -> i32 {
    let mut tx = pool.begin().await.expect("begin on the writer");
    sqlx::query("INSERT INTO t VALUES ($1)")
        .bind(id)
        .execute(&mut *tx)
        .await
        .expect("insert");
    let port: i32 = sqlx::query_scalar("SELECT inet_server_port()")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.expect("commit");
    port
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_follows_patroni_tags_in_consul_and_still_probes_roles() {
    let c = LocalPgCluster::start(PgClusterOptions::new().standbys(1))
        .await
        .expect("cluster");
    c.exec(0, "CREATE TABLE t (id bigint PRIMARY KEY)")
        .await
        .unwrap();
    c.wait_caught_up().await.unwrap();
    let (p0, p1) = (c.node(0).port, c.node(1).port);
    let urls: BTreeMap<u16, String> = [(p0, c.node(0).url()), (p1, c.node(1).url())].into();

    let fake = FakeConsul::start(
        None,
        vec![
            Instance::new("pg", "pg-0", p0).tags(&["master"]),
            Instance::new("pg", "pg-1", p1).tags(&["replica"]),
        ],
    )
    .await;
    let discovery = ConsulDiscovery::builder(agent(&fake), "pg")
        .build()
        .expect("discovery");
    let source = DiscoveredTopology::new(discovery, move |ep| urls[&ep.port].clone());
    let pool = FailoverPgPool::builder()
        .source(source)
        .config(config())
        .connect()
        .await
        .expect("pool");
    wait_for("the tagged writer", || {
        pool.topology()
            .writer_status()
            .is_some_and(|w| &*w.id == "pg-0")
    })
    .await;
    assert_eq!(write_port(&pool, 1).await, i32::from(p0));

    // A wrong tag: Consul names the standby master. It reports itself a
    // standby in its probe, so it gets no write.
    fake.update(|s| {
        for i in &mut s.instances {
            i.tags = vec!["master".into()];
        }
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    for id in 2..10 {
        assert_eq!(
            write_port(&pool, id).await,
            i32::from(p0),
            "a write reached the standby"
        );
    }

    // The tags are right again.
    fake.update(|s| s.instances[1].tags = vec!["replica".into()]);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Patroni fails over: the primary dies, the standby is promoted, and
    // Consul's tags follow. The pool writes to the new primary.
    c.kill(0).unwrap();
    c.promote(1).await.expect("promote");
    let changed = Instant::now();
    fake.update(|s| {
        s.instances.retain(|i| i.id == "pg-1");
        s.instances[0].tags = vec!["master".into()];
    });
    wait_for("the new writer", || {
        pool.topology()
            .writer_status()
            .is_some_and(|w| &*w.id == "pg-1")
    })
    .await;
    eprintln!(
        "pool wrote to the new primary {:?} after Consul's change",
        changed.elapsed()
    );
    assert_eq!(write_port(&pool, 100).await, i32::from(p1));
    assert_eq!(pool.topology().nodes.len(), 1, "the removed node is gone");
}

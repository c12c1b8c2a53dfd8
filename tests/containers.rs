//! The container clusters (feature `testcontainers`) on a real engine: the
//! same generic tests run on the local clusters and on containers, in the
//! network mode the environment names (`scripts/engine.sh` sets the host
//! network and the local images) and on a bridge network, plus one crash
//! drill per store through `run_drill`.
//!
//! Without an engine these tests print one line and pass, unless
//! `FAILOVER_POOL_REQUIRE_CONTAINERS` or `CI` is set (then they fail):
//! `.ci/run` runs them inside `scripts/engine.sh run`.
#![cfg(feature = "testcontainers")]

use std::time::Duration;

use failover_pool::drill::containers::{
    ContainerPgCluster, ContainerRedisCluster, ContainerSettings, NetworkMode, engine_or_skip,
};
use failover_pool::drill::{
    Cluster, ClusterError, ClusterKind, DrillOptions, Fault, LocalPgCluster, LocalRedisCluster,
    PgCluster, PgClusterOptions, Promotion, RedisCluster, RedisClusterOptions, RedisRole, Store,
    run_drill,
};

/// Crash the primary, promote the standby, restart the old primary: it
/// comes back a primary on its old timeline, without the new writes.
async fn pg_crash_promote_restart(cluster: &impl PgCluster) -> Result<(), ClusterError> {
    cluster
        .exec(0, "CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
        .await?;
    cluster.wait_caught_up().await?;
    assert_eq!(cluster.count(1, "SELECT count(*) FROM t").await?, 1);
    assert!(cluster.is_in_recovery(1).await?);

    cluster.kill(0).await?;
    assert!(!cluster.is_running(0));
    assert!(
        cluster.exec(0, "SELECT 1").await.is_err(),
        "a killed node answers"
    );
    cluster.promote(1).await?;
    assert_eq!(cluster.primary_index(), 1);
    assert!(!cluster.is_in_recovery(1).await?);
    cluster.exec(1, "INSERT INTO t VALUES (2)").await?;

    cluster.restart(0).await?;
    assert!(
        !cluster.is_in_recovery(0).await?,
        "old primary restarts as a primary"
    );
    assert!(cluster.timeline(1).await? > cluster.timeline(0).await?);
    assert_eq!(cluster.count(0, "SELECT count(*) FROM t").await?, 1);
    assert_eq!(cluster.count(1, "SELECT count(*) FROM t").await?, 2);
    Ok(())
}

/// Freeze hangs the node (a query times out), thaw brings it back; a
/// graceful stop and a restart keep the data.
async fn pg_freeze_and_stop(cluster: &impl PgCluster) -> Result<(), ClusterError> {
    cluster
        .exec(0, "CREATE TABLE f (id int); INSERT INTO f VALUES (1)")
        .await?;
    cluster.wait_caught_up().await?;
    cluster.freeze(1).await?;
    assert!(cluster.is_frozen(1));
    match cluster.exec(1, "SELECT 1").await {
        Err(ClusterError::QueryTimeout { .. }) => {}
        other => panic!("a frozen node should time out, got {other:?}"),
    }
    cluster.thaw(1).await?;
    assert_eq!(cluster.count(1, "SELECT count(*) FROM f").await?, 1);
    cluster.stop_graceful(1).await?;
    assert!(!cluster.is_running(1));
    cluster.restart(1).await?;
    assert!(
        cluster.is_in_recovery(1).await?,
        "a standby restarts as a standby"
    );
    assert_eq!(cluster.count(1, "SELECT count(*) FROM f").await?, 1);
    Ok(())
}

/// Sentinels promote a replica when the master is killed; the restarted
/// old master is an empty master.
async fn redis_sentinel_failover(cluster: &impl RedisCluster) -> Result<(), ClusterError> {
    cluster.exec(0, &["SET", "k", "v"]).await?;
    cluster.wait_caught_up().await?;
    let v: Option<String> = cluster.query(1, &["GET", "k"]).await?;
    assert_eq!(v.as_deref(), Some("v"));
    assert!(matches!(cluster.role(1).await?, RedisRole::Replica { .. }));

    let old = cluster.port(0);
    cluster.kill(0).await?;
    let new = cluster
        .wait_sentinel_failover(old, Duration::from_secs(30))
        .await?;
    assert_ne!(new, 0);
    assert!(cluster.role(new).await?.is_master());
    let v: Option<String> = cluster.query(new, &["GET", "k"]).await?;
    assert_eq!(v.as_deref(), Some("v"));

    cluster.restart(0).await?;
    assert!(cluster.role(0).await?.is_master());
    assert!(cluster.keys_with_prefix(0, "k").await?.is_empty());
    Ok(())
}

fn pg_opts() -> PgClusterOptions {
    PgClusterOptions::new().standbys(1)
}

fn redis_opts() -> RedisClusterOptions {
    RedisClusterOptions::new()
        .replicas(2)
        .sentinels(true)
        .down_after(Duration::from_millis(1000))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_same_test_runs_on_local_and_containers() {
    let Some(settings) = engine_or_skip("pg_same_test_runs_on_local_and_containers").await else {
        return;
    };
    let local = LocalPgCluster::start(pg_opts()).await.unwrap();
    pg_crash_promote_restart(&local).await.unwrap();
    drop(local);

    let containers = ContainerPgCluster::start(pg_opts(), settings)
        .await
        .unwrap();
    assert_eq!(containers.kind(), ClusterKind::Containers);
    eprintln!("container cluster up in {:?}", containers.started_in());
    pg_crash_promote_restart(&containers).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_container_freeze_stop_restart() {
    let Some(settings) = engine_or_skip("pg_container_freeze_stop_restart").await else {
        return;
    };
    let opts = pg_opts().query_timeout(Duration::from_secs(1));
    let cluster = ContainerPgCluster::start(opts, settings).await.unwrap();
    pg_freeze_and_stop(&cluster).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_same_test_runs_on_local_and_containers() {
    let Some(settings) = engine_or_skip("redis_same_test_runs_on_local_and_containers").await
    else {
        return;
    };
    let local = LocalRedisCluster::start(redis_opts()).await.unwrap();
    redis_sentinel_failover(&local).await.unwrap();
    drop(local);

    let containers = ContainerRedisCluster::start(redis_opts(), settings)
        .await
        .unwrap();
    redis_sentinel_failover(&containers).await.unwrap();
}

/// The bridge mode with published ports, whatever the environment says
/// (the images stay those the environment names).
fn bridge(settings: ContainerSettings) -> ContainerSettings {
    settings.network(NetworkMode::Bridge)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_on_a_bridge_network() {
    let Some(settings) = engine_or_skip("pg_on_a_bridge_network").await else {
        return;
    };
    let cluster = ContainerPgCluster::start(pg_opts(), bridge(settings))
        .await
        .unwrap();
    pg_crash_promote_restart(&cluster).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_on_a_bridge_network() {
    let Some(settings) = engine_or_skip("redis_on_a_bridge_network").await else {
        return;
    };
    let cluster = ContainerRedisCluster::start(redis_opts(), bridge(settings))
        .await
        .unwrap();
    redis_sentinel_failover(&cluster).await.unwrap();
}

fn drill_opts(store: Store) -> DrillOptions {
    DrillOptions {
        store,
        backend: match store {
            Store::Postgres => failover_pool::drill::DrillBackend::Sqlx,
            Store::Redis => failover_pool::drill::DrillBackend::Redis,
        },
        fault: Fault::Crash,
        promotion: Promotion::Automatic,
        cluster: ClusterKind::Containers,
        duration: Duration::from_secs(8),
        fault_at: Duration::from_secs(3),
        writers: 4,
        readers: 4,
        progress: false,
        ..DrillOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_crash_drill_on_containers() {
    if engine_or_skip("pg_crash_drill_on_containers")
        .await
        .is_none()
    {
        return;
    }
    // Synchronous replication: no acknowledged write may be lost (with
    // asynchronous replication the last unreplicated ones may be).
    let opts = DrillOptions {
        sync: true,
        ..drill_opts(Store::Postgres)
    };
    let report = run_drill(&opts, |_| {}).await.unwrap();
    assert_eq!(report.cluster, ClusterKind::Containers);
    assert!(report.cluster_detail.is_some());
    assert_eq!(report.lost_acked_writes, 0, "{report:#?}");
    assert_eq!(report.writes_to_fenced_node, 0);
    assert!(report.acked_writes > 0);
    assert!(report.promoted, "{report:#?}");
    assert_eq!(report.survivor, "pg1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sentinel_crash_drill_on_containers() {
    if engine_or_skip("redis_sentinel_crash_drill_on_containers")
        .await
        .is_none()
    {
        return;
    }
    let opts = DrillOptions {
        promotion: Promotion::Sentinel,
        duration: Duration::from_secs(10),
        ..drill_opts(Store::Redis)
    };
    let report = run_drill(&opts, |_| {}).await.unwrap();
    assert_eq!(report.cluster, ClusterKind::Containers);
    assert_eq!(report.writes_to_fenced_node, 0);
    assert!(report.acked_writes > 0);
    assert!(
        report.promoted && report.sentinel_switch_ms.is_some(),
        "{report:#?}"
    );
    assert_ne!(report.survivor, report.old_primary);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_runs_a_drill_on_containers_and_names_the_cluster() {
    if engine_or_skip("cli_runs_a_drill_on_containers_and_names_the_cluster")
        .await
        .is_none()
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_failover-drill"))
        .args(["redis", "--cluster", "containers", "--duration", "6s"])
        .args(["--fault-at", "2s", "--writers", "2", "--readers", "2", "-q"])
        .arg("--json")
        .arg(&json)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("cluster   containers ("), "{stdout}");
    assert!(
        stdout.contains("crash: SIGKILL to redis0's container"),
        "{stdout}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["cluster"], "containers");
    let detail = report["cluster_detail"].as_str().unwrap();
    assert!(detail.contains("network, image "), "{detail}");
    assert!(report["acked_writes"].as_u64().unwrap() > 0);
    assert_eq!(report["writes_to_fenced_node"], 0);
}

/// The drill containers this process owns, running or not.
async fn my_containers() -> Vec<String> {
    use bollard::query_parameters::ListContainersOptions;
    let docker = bollard::Docker::connect_with_defaults().unwrap();
    let label = format!("io.failover-pool.drill.owner={}", std::process::id());
    let options = ListContainersOptions {
        all: true,
        filters: Some([("label".to_owned(), vec![label])].into()),
        ..Default::default()
    };
    let list = docker.list_containers(Some(options)).await.unwrap();
    list.into_iter()
        .filter_map(|c| c.names?.into_iter().next())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_are_removed_when_a_test_panics() {
    let Some(settings) = engine_or_skip("containers_are_removed_when_a_test_panics").await else {
        return;
    };
    let opts = RedisClusterOptions::new().replicas(1);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let cluster = ContainerRedisCluster::start(opts, settings).await.unwrap();
        let names: Vec<String> = (0..cluster.len())
            .map(|i| format!("/{}", cluster.container_name(i)))
            .collect();
        tx.send((names, my_containers().await)).unwrap();
        cluster.freeze(1).await.unwrap(); // a paused container is removed too
        panic!("a test fails while its cluster runs");
    });
    let err = task.await.unwrap_err();
    assert!(err.is_panic());
    let (ours, before) = rx.await.unwrap();
    assert!(
        ours.iter().all(|n| before.contains(n)),
        "{ours:?} not listed in {before:?}"
    );
    let left = my_containers().await;
    assert!(
        ours.iter().all(|n| !left.contains(n)),
        "left behind: {ours:?} among {left:?}"
    );
}

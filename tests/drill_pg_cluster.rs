#![cfg(feature = "drill")]
//! Integration tests for `failover_pool::drill::LocalPgCluster`: real
//! PostgreSQL servers started from the installed binaries, real faults.
//!
//! Each test starts its own cluster (own ports, own directory), so the tests
//! run in parallel. Timings are printed, never asserted.

use std::time::{Duration, Instant};

use failover_pool::drill::{ClusterError, LocalPgCluster, PgClusterOptions, PgRole};
use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

use failover_pool::error::chain;

async fn start(opts: PgClusterOptions, label: &str) -> LocalPgCluster {
    let began = Instant::now();
    let cluster = match LocalPgCluster::start(opts).await {
        Ok(c) => c,
        Err(e) => panic!("starting the {label} cluster failed: {}", chain(&e)),
    };
    eprintln!(
        "[timing] {label}: LocalPgCluster::start took {:?} (measured outside: {:?})",
        cluster.started_in(),
        began.elapsed()
    );
    cluster
}

fn pid_gone(pid: u32) -> bool {
    kill(Pid::from_raw(pid as i32), None) == Err(Errno::ESRCH)
}

/// Waits (briefly) until `pid` no longer exists; orphaned children are
/// reaped by init, which may take a moment.
async fn wait_pid_gone(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if pid_gone(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_replication_kill_and_restart() {
    let cluster = start(PgClusterOptions::new(), "1+1 async").await;
    assert_eq!(cluster.len(), 2);
    let primary = cluster.node(0);
    let standby = cluster.node(1);
    assert_eq!(primary.name, "pg0");
    assert_eq!(standby.name, "pg1");
    assert_eq!(primary.role, PgRole::Primary);
    assert_eq!(standby.role, PgRole::Standby { upstream: 0 });
    assert!(primary.running && standby.running);
    assert_ne!(primary.port, 5432);
    assert_eq!(
        primary.url(),
        format!("postgres://postgres@127.0.0.1:{}/postgres", primary.port)
    );
    assert!(primary.data_dir.join("PG_VERSION").exists());
    assert!(!cluster.is_in_recovery(0).await.unwrap());
    assert!(cluster.is_in_recovery(1).await.unwrap());

    cluster
        .exec(
            0,
            "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100)",
        )
        .await
        .unwrap();
    let began = Instant::now();
    cluster.wait_caught_up().await.unwrap();
    eprintln!("[timing] standby caught up in {:?}", began.elapsed());
    assert_eq!(
        cluster.count(1, "SELECT count(*) FROM t").await.unwrap(),
        100
    );

    // Crash the primary: new connections are refused.
    cluster.kill(0).unwrap();
    assert!(!cluster.node(0).running);
    assert!(pid_gone(primary.pid.unwrap()));
    let err = cluster.connect(0).await.unwrap_err();
    let text = chain(&err);
    assert!(
        text.to_lowercase().contains("refused"),
        "expected connection refused, got: {text}"
    );
    // Killing it again is a clear error, not a panic.
    assert!(matches!(
        cluster.kill(0),
        Err(ClusterError::InvalidState { .. })
    ));

    // Restart on the same port: it accepts again and kept its data.
    let began = Instant::now();
    cluster.restart(0).await.unwrap();
    eprintln!("[timing] restart after kill took {:?}", began.elapsed());
    assert_eq!(cluster.node(0).port, primary.port);
    assert!(cluster.node(0).running);
    assert_eq!(
        cluster.count(0, "SELECT count(*) FROM t").await.unwrap(),
        100
    );

    cluster.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freeze_makes_queries_hang_until_thaw() {
    let cluster = start(PgClusterOptions::new().standbys(0), "1+0").await;
    let open = cluster.connect(0).await.unwrap();
    open.simple_query("SELECT 1").await.unwrap();

    cluster.freeze(0).unwrap();
    assert!(cluster.node(0).frozen);
    // A new connection: the TCP handshake completes in the kernel, but the
    // server never answers the startup message.
    let fresh = tokio::time::timeout(Duration::from_secs(2), async {
        let client = cluster.connect(0).await?;
        client
            .simple_query("SELECT 1")
            .await
            .map_err(|source| ClusterError::Query {
                node: "pg0".into(),
                sql: "SELECT 1".into(),
                source,
            })
    })
    .await;
    match fresh {
        Err(_elapsed) => {}
        Ok(Err(ClusterError::QueryTimeout { .. })) => {}
        Ok(other) => panic!("expected a timeout from a frozen server, got {other:?}"),
    }
    // An open connection stalls too (its backend is stopped as well).
    let stalled = tokio::time::timeout(Duration::from_secs(2), open.simple_query("SELECT 1")).await;
    assert!(
        stalled.is_err(),
        "a query on an open connection answered while frozen"
    );

    cluster.thaw(0).unwrap();
    assert!(!cluster.node(0).frozen);
    let answered = tokio::time::timeout(Duration::from_secs(5), open.simple_query("SELECT 1"))
        .await
        .expect("no answer after thaw");
    answered.unwrap();
    let one: i32 = cluster.query_scalar(0, "SELECT 1").await.unwrap();
    assert_eq!(one, 1);

    // A frozen node can still be stopped gracefully (it is thawed first).
    cluster.freeze(0).unwrap();
    cluster.stop_graceful(0).await.unwrap();
    assert!(!cluster.node(0).running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_standby_moves_to_a_new_timeline() {
    let cluster = start(PgClusterOptions::new(), "1+1 async (promote)").await;
    cluster
        .exec(0, "CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    cluster.wait_caught_up().await.unwrap();
    let before = cluster.timeline(0).await.unwrap();

    cluster.kill(0).unwrap();
    let began = Instant::now();
    cluster.promote(1).await.unwrap();
    eprintln!("[timing] promotion took {:?}", began.elapsed());

    assert!(!cluster.is_in_recovery(1).await.unwrap());
    assert_eq!(cluster.primary_index(), 1);
    assert_eq!(cluster.node(1).role, PgRole::Primary);
    let after = cluster.timeline(1).await.unwrap();
    assert!(after > before, "timeline {before} -> {after}");
    let checkpointed: i64 = cluster
        .query_scalar(1, "SELECT timeline_id::bigint FROM pg_control_checkpoint()")
        .await
        .unwrap();
    assert_eq!(checkpointed, after);
    cluster.exec(1, "INSERT INTO t VALUES (2)").await.unwrap();
    assert_eq!(cluster.count(1, "SELECT count(*) FROM t").await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synchronous_cluster_with_two_standbys() {
    let cluster = start(
        PgClusterOptions::new().standbys(2).synchronous(true),
        "1+2 sync",
    )
    .await;
    assert_eq!(cluster.len(), 3);
    let client = cluster.connect(0).await.unwrap();
    let rows = client
        .query(
            "SELECT application_name, sync_state FROM pg_stat_replication ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let states: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(states.len(), 2, "{states:?}");
    assert_eq!(states[0].0, "pg1");
    assert_eq!(states[1].0, "pg2");
    for (name, state) in &states {
        assert!(
            state == "sync" || state == "quorum",
            "{name} has sync_state {state}"
        );
    }
    let names: String = cluster
        .query_scalar(0, "SHOW synchronous_standby_names")
        .await
        .unwrap();
    assert_eq!(names, "ANY 1 (*)");
    // A commit needs a standby's confirmation; it works.
    cluster
        .exec(0, "CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    cluster.wait_caught_up().await.unwrap();
    for i in 1..3 {
        assert_eq!(cluster.count(i, "SELECT count(*) FROM t").await.unwrap(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_brain_then_rejoin_old_primary_as_standby() {
    let cluster = start(PgClusterOptions::new(), "1+1 async (rejoin)").await;
    cluster
        .exec(
            0,
            "CREATE TABLE t (id int, origin text); INSERT INTO t VALUES (1, 'pg0')",
        )
        .await
        .unwrap();
    cluster.wait_caught_up().await.unwrap();

    // The primary crashes, the standby is promoted, then the old primary
    // comes back on its old timeline: two primaries (split brain).
    cluster.kill(0).unwrap();
    cluster.promote(1).await.unwrap();
    cluster.restart(0).await.unwrap();
    assert!(!cluster.is_in_recovery(0).await.unwrap());
    assert!(!cluster.is_in_recovery(1).await.unwrap());
    // Both accept diverging writes.
    cluster
        .exec(0, "INSERT INTO t VALUES (2, 'pg0 split brain')")
        .await
        .unwrap();
    cluster
        .exec(1, "INSERT INTO t VALUES (3, 'pg1')")
        .await
        .unwrap();

    let began = Instant::now();
    cluster.rejoin_as_standby(0, 1).await.unwrap();
    eprintln!(
        "[timing] rejoin_as_standby (pg_rewind) took {:?}",
        began.elapsed()
    );
    let node = cluster.node(0);
    assert!(node.running);
    assert_eq!(node.role, PgRole::Standby { upstream: 1 });
    assert!(cluster.is_in_recovery(0).await.unwrap());
    let upstream: String = cluster
        .query_scalar(0, "SELECT conninfo FROM pg_stat_wal_receiver")
        .await
        .unwrap();
    assert!(
        upstream.contains(&format!("port={}", cluster.node(1).port)),
        "{upstream}"
    );

    // It follows the new primary; the split-brain write is gone.
    cluster
        .exec(1, "INSERT INTO t VALUES (4, 'pg1')")
        .await
        .unwrap();
    cluster.wait_caught_up().await.unwrap();
    assert_eq!(cluster.count(0, "SELECT count(*) FROM t").await.unwrap(), 3);
    assert_eq!(
        cluster
            .count(0, "SELECT count(*) FROM t WHERE origin = 'pg0 split brain'")
            .await
            .unwrap(),
        0
    );
    cluster.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remaining_standby_follows_the_promoted_one() {
    let cluster = start(PgClusterOptions::new().standbys(2), "1+2 async (follow)").await;
    cluster
        .exec(0, "CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    cluster.wait_caught_up().await.unwrap();
    cluster.kill(0).unwrap();
    cluster.promote(1).await.unwrap();
    cluster.follow(2, 1).await.unwrap();
    cluster.exec(1, "INSERT INTO t VALUES (2)").await.unwrap();
    cluster.wait_caught_up().await.unwrap();
    assert_eq!(cluster.count(2, "SELECT count(*) FROM t").await.unwrap(), 2);
    assert!(cluster.is_in_recovery(2).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_kills_every_process_even_when_the_test_panics() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let cluster = start(PgClusterOptions::new(), "1+1 async (drop)").await;
        let mut pids = Vec::new();
        let mut ports = Vec::new();
        for node in cluster.nodes() {
            let pid = node.pid.unwrap();
            pids.push(pid);
            ports.push(node.port);
            let group = failover_pool::drill::ProcessGroup::new(pid);
            pids.extend(group.children().into_iter().map(|p| p.as_raw() as u32));
        }
        // One node frozen, to check that frozen servers are cleaned up too.
        cluster.freeze(1).unwrap();
        tx.send((pids, ports, cluster.dir().to_path_buf())).unwrap();
        panic!("deliberate panic with a running cluster");
    });
    let joined = task.await;
    assert!(joined.unwrap_err().is_panic());
    let (pids, ports, dir) = rx.await.unwrap();
    assert!(
        pids.len() > 2,
        "expected postmasters and their children: {pids:?}"
    );
    // The postmasters are reaped by the guard itself.
    assert!(pid_gone(pids[0]));
    for pid in &pids {
        assert!(wait_pid_gone(*pid).await, "process {pid} survived the drop");
    }
    for port in ports {
        let connected = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        assert!(!connected, "port {port} still accepts connections");
    }
    assert!(!dir.exists(), "{} was not removed", dir.display());
}

#[tokio::test]
async fn empty_bin_dir_is_a_clear_error() {
    let empty = tempfile::tempdir().unwrap();
    let err = LocalPgCluster::start(PgClusterOptions::new().bin_dir(empty.path()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClusterError::NoServerBinaries { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("no PostgreSQL server binaries found"),
        "{text}"
    );
    assert!(text.contains(&empty.path().display().to_string()), "{text}");
}

#[tokio::test]
async fn operations_on_bad_indexes_are_errors() {
    let cluster = start(PgClusterOptions::new().standbys(0), "1+0 (errors)").await;
    assert!(matches!(
        cluster.kill(5),
        Err(ClusterError::NoSuchNode { index: 5, count: 1 })
    ));
    assert!(matches!(
        cluster.restart(0).await,
        Err(ClusterError::InvalidState { .. })
    ));
    assert!(matches!(
        cluster.promote(0).await,
        Err(ClusterError::Query { .. })
    ));
}

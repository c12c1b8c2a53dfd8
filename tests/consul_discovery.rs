//! Consul discovery and registration against an in-process fake of Consul's
//! HTTP API (`consul_support`): not a real Consul. The registration, token
//! and configuration cases are in `consul_support/registration_cases.rs`.
#![cfg(all(feature = "consul", feature = "drill"))]

mod consul_support;
#[path = "consul_support/registration_cases.rs"]
mod registration_cases;

use consul_support::{
    FakeConsul, Instance, PATIENCE, TOKEN, agent, assert_no_token_in_logs, eventually, ids, logs,
    next, set_ids, web,
};
use failover_pool::core::{Failover, Health, Role};
use failover_pool::discovery::consul::ConsulDiscovery;
use failover_pool::discovery::{Discovery, DiscoveryChange};
use failover_pool::error::chain;
use failover_pool::pool::{DiscoveredTopology, TopologySource};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test]
async fn initial_list_is_mapped_and_roles_come_from_tags() {
    logs::install();
    let mut primary = Instance::new("pg", "pg-0", 5432).tags(&["master", "v15"]);
    primary.address = String::new(); // falls back to Node.Address
    primary.node_address = "10.0.0.10".into();
    primary.weights = (10, 1);
    primary.meta.insert("zone".into(), "eu-1a".into());
    let replica = Instance::new("pg", "pg-1", 5433).tags(&["replica"]);
    let down = Instance::new("pg", "pg-2", 5434)
        .tags(&["replica"])
        .checks(&["critical"]);
    let fake = FakeConsul::start(Some(TOKEN), vec![primary, replica, down]).await;

    let d = ConsulDiscovery::builder(agent(&fake), "pg")
        .build()
        .unwrap();
    let started = Instant::now();
    let list = next(&d).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "initial list not prompt"
    );
    assert_eq!(ids(&list), ["pg-0", "pg-1"], "passing only by default");
    let pg0 = &list[0];
    assert_eq!(
        (pg0.address.as_str(), pg0.port, pg0.weight),
        ("10.0.0.10", 5432, 10)
    );
    assert_eq!(pg0.tags, ["master", "v15"]);
    assert_eq!(pg0.metadata["zone"], "eu-1a");
    assert_eq!(
        (pg0.health, pg0.role),
        (Health::Healthy, Some(Role::Primary))
    );
    assert_eq!(list[1].role, Some(Role::Replica));
    assert_eq!(d.last_index(), 100);
    let q = &fake.health_queries()[0];
    assert_eq!(
        (q.path.as_str(), q.query.as_str()),
        ("/v1/health/service/pg", "passing=true")
    );
    assert_eq!(q.token.as_deref(), Some(TOKEN));

    let d = ConsulDiscovery::builder(agent(&fake), "pg")
        .build()
        .unwrap();
    let topology =
        DiscoveredTopology::new(d, |ep| format!("postgres://app@{}/app", ep.authority()));
    let view = topology.next_view().await.unwrap();
    assert_eq!(view.nodes.len(), 2);
    assert_eq!(view.writer.as_deref(), Some("pg-0"));
}

#[tokio::test]
async fn passing_filter_tags_dc_and_health() {
    logs::install();
    let mut degraded = web("web-1", 8001)
        .tags(&["v2"])
        .checks(&["passing", "warning"]);
    degraded.weights = (10, 2);
    let critical = web("web-2", 8002)
        .tags(&["v2", "canary"])
        .checks(&["critical"]);
    let healthy = web("web-3", 8003).tags(&["v1"]);
    let fake = FakeConsul::start(Some(TOKEN), vec![degraded, critical, healthy]).await;

    let all = ConsulDiscovery::builder(agent(&fake), "web")
        .passing_only(false)
        .build()
        .unwrap();
    let list = next(&all).await;
    let health: Vec<_> = list.iter().map(|e| (&*e.id, e.health, e.weight)).collect();
    assert_eq!(
        health,
        [
            ("web-1", Health::Degraded, 2),
            ("web-2", Health::Unhealthy, 1),
            ("web-3", Health::Healthy, 1)
        ]
    );
    let passing = ConsulDiscovery::builder(agent(&fake), "web")
        .build()
        .unwrap();
    assert_eq!(
        ids(&next(&passing).await),
        ["web-3"],
        "warning and critical are not passing"
    );

    let tagged = ConsulDiscovery::builder(agent(&fake), "web")
        .passing_only(false)
        .tag("v2")
        .tag("canary")
        .datacenter("dc1")
        .namespace("team-a")
        .near("_agent")
        .filter("Service.Meta.version == \"2\"")
        .build()
        .unwrap();
    assert_eq!(ids(&next(&tagged).await), ["web-2"]);
    let q = fake.health_queries().last().unwrap().query.clone();
    assert_eq!(
        q,
        "tag=v2&tag=canary&dc=dc1&ns=team-a&near=_agent&filter=Service.Meta.version%20%3D%3D%20%222%22"
    );

    let other_dc = ConsulDiscovery::builder(agent(&fake), "web")
        .datacenter("dc9")
        .build()
        .unwrap();
    let err = other_dc.next_change().await.unwrap_err();
    assert!(
        chain(&err).contains("No path to datacenter"),
        "{}",
        chain(&err)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reach_picks_while_calls_run() {
    logs::install();
    let fake = FakeConsul::start(Some(TOKEN), vec![web("a", 9001), web("b", 9002)]).await;
    let d = ConsulDiscovery::builder(agent(&fake), "web")
        .build()
        .unwrap();
    let failover = Arc::new(
        Failover::builder("consul-changes")
            .discovery(d)
            .build()
            .unwrap(),
    );
    eventually("the initial list", || set_ids(&failover).len() == 2).await;

    // Calls in flight on both instances while `b` goes away.
    let mut calls = Vec::new();
    for _ in 0..4 {
        let f = Arc::clone(&failover);
        calls.push(tokio::spawn(async move {
            f.execute(|ep| async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok::<_, std::io::Error>(ep.id().to_owned())
            })
            .await
        }));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t0 = Instant::now();
    fake.update(|s| s.instances.retain(|i| i.id != "b"));
    eventually("b removed", || set_ids(&failover) == ["a"]).await;
    let removed_after = t0.elapsed();
    for _ in 0..200 {
        assert_eq!(
            failover.pick().unwrap().id(),
            "a",
            "a removed instance was picked"
        );
    }
    let mut served = Vec::new();
    for call in calls {
        served.push(call.await.unwrap().expect("a call in flight failed").value);
    }
    assert!(
        served.contains(&"b".to_owned()),
        "no call ran on b: {served:?}"
    );

    // Change → first pick that reflects it, a few times.
    let mut add = Vec::new();
    for round in 0..5u16 {
        let id = format!("c{round}");
        let t0 = Instant::now();
        let instance = web(&id, 9100 + round);
        fake.update(move |s| s.instances.push(instance));
        loop {
            if failover.pick().unwrap().id() == id {
                break;
            }
            assert!(t0.elapsed() < PATIENCE, "{id} never picked");
            tokio::task::yield_now().await;
        }
        add.push(t0.elapsed());
    }
    add.sort();
    println!(
        "consul change -> pick latency over loopback: add {:?} (min {:?}, median {:?}, max {:?}); remove -> set {:?}",
        add, add[0], add[2], add[4], removed_after
    );
    assert_no_token_in_logs();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_consul_keeps_the_last_list_then_recovers() {
    logs::install();
    let fake = FakeConsul::start(Some(TOKEN), vec![web("a", 9001), web("b", 9002)]).await;
    let d = ConsulDiscovery::builder(agent(&fake), "web")
        .build()
        .unwrap();
    let failover = Failover::builder("consul-outage")
        .discovery(d)
        .build()
        .unwrap();
    eventually("the initial list", || set_ids(&failover).len() == 2).await;

    fake.stop().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(set_ids(&failover), ["a", "b"], "the last list must be kept");
    assert!(failover.pick().is_ok());
    let failures = logs::lines()
        .iter()
        .filter(|l| l.contains("consul-outage") && l.contains("endpoint discovery failed"))
        .count();
    println!("discovery failures logged during a 1.5 s outage: {failures}");
    assert!(
        (1..=15).contains(&failures),
        "expected a few attempts with backoff, saw {failures}"
    );

    fake.update(|s| {
        s.instances.retain(|i| i.id != "b");
        s.instances.push(web("c", 9003));
    });
    fake.restart().await;
    eventually("the list after recovery", || {
        set_ids(&failover) == ["a", "c"]
    })
    .await;
    let recovered = logs::lines()
        .iter()
        .any(|l| l.contains("consul-outage") && l.contains("endpoint discovery recovered"));
    assert!(recovered);
    assert_no_token_in_logs();
}

#[tokio::test]
async fn a_blocking_query_may_wait_longer_than_five_seconds() {
    logs::install();
    let fake = FakeConsul::start(Some(TOKEN), vec![web("a", 9001)]).await;
    let d = ConsulDiscovery::builder(agent(&fake), "web")
        .wait(Duration::from_secs(7))
        .build()
        .unwrap();
    assert_eq!(ids(&next(&d).await), ["a"]);

    let change = d.next_change();
    tokio::pin!(change);
    let waited = tokio::time::timeout(Duration::from_millis(7600), &mut change).await;
    assert!(
        waited.is_err(),
        "the watch ended early: {:?}",
        waited.map(|r| r.map(|_| ()))
    );
    let blocking: Vec<_> = fake
        .health_queries()
        .into_iter()
        .filter(|q| q.query.contains("index="))
        .collect();
    assert_eq!(blocking.len(), 1, "{blocking:?}");
    assert!(
        blocking[0].query.ends_with("index=100&wait=7s"),
        "{}",
        blocking[0].query
    );
    assert!(
        blocking[0].held >= Duration::from_secs(7),
        "held {:?}",
        blocking[0].held
    );
    assert_eq!(blocking[0].status, 200);

    let t0 = Instant::now();
    fake.update(|s| s.instances.push(web("b", 9002)));
    match tokio::time::timeout(Duration::from_secs(2), change).await {
        Ok(Ok(DiscoveryChange::Replace(list))) => assert_eq!(ids(&list), ["a", "b"]),
        other => panic!("{other:?}"),
    }
    println!("blocking query woke {:?} after the change", t0.elapsed());
}

#[tokio::test]
async fn index_going_backwards_or_zero_is_handled() {
    logs::install();
    let fake = FakeConsul::start(Some(TOKEN), vec![web("a", 9001)]).await;
    let d = ConsulDiscovery::builder(agent(&fake), "web")
        .wait(Duration::from_secs(1))
        .build()
        .unwrap();
    assert_eq!(ids(&next(&d).await), ["a"]);

    // A snapshot restore: index 100 → 5. Like Consul, the fake holds the
    // query on index 100 until `wait` passes, then answers index 5.
    fake.restore(5, |s| s.instances.push(web("b", 9002)));
    assert_eq!(ids(&next(&d).await), ["a", "b"]);
    assert_eq!(d.last_index(), 0, "a backwards index restarts the watch");
    // The restarted watch blocks on the new index and sees the next change.
    let t0 = Instant::now();
    let (list, _) = tokio::join!(next(&d), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        fake.update(|s| s.instances.retain(|i| i.id != "a"));
    });
    assert_eq!(ids(&list), ["b"]);
    assert!(
        t0.elapsed() < Duration::from_millis(900),
        "{:?}",
        t0.elapsed()
    );
    let queries: Vec<String> = fake.health_queries().into_iter().map(|q| q.query).collect();
    let tail = &queries[queries.len() - 3..];
    assert_eq!(
        tail,
        [
            "passing=true&index=100&wait=1s",
            "passing=true",
            "passing=true&index=5&wait=1s"
        ]
    );

    // X-Consul-Index: 0 is clamped to 1 and answers without a change are
    // rate-limited: no busy loop.
    fake.update(|s| s.zero_index = true);
    let before = fake.health_queries().len();
    let r = tokio::time::timeout(Duration::from_secs(1), d.next_change()).await;
    assert!(r.is_err(), "no change expected: {r:?}");
    let sent = fake.health_queries().len() - before;
    assert!((3..=15).contains(&sent), "{sent} queries in 1 s");
    assert!(
        fake.health_queries()
            .iter()
            .skip(before)
            .all(|q| !q.query.contains("index=0"))
    );
}

#[tokio::test]
async fn dropping_a_pending_call_loses_no_change() {
    logs::install();
    let fake = FakeConsul::start(Some(TOKEN), vec![web("a", 9001)]).await;
    let d = ConsulDiscovery::builder(agent(&fake), "web")
        .build()
        .unwrap();
    assert_eq!(ids(&next(&d).await), ["a"]);
    // A blocking query cut short by its caller (the future dropped) ...
    let r = tokio::time::timeout(Duration::from_millis(200), d.next_change()).await;
    assert!(r.is_err());
    // ... then a change: the next call returns it.
    fake.update(|s| s.instances.push(web("b", 9002)));
    assert_eq!(ids(&next(&d).await), ["a", "b"]);
}

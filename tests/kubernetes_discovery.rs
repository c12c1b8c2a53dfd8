//! Kubernetes discovery against an in-process fake of the API server's wire
//! format (`kubernetes_support`): a Service split over two EndpointSlices,
//! changes seen by calls through a `Failover`, a terminating endpoint
//! drained, BOOKMARKs and resumed watches, 410 Gone, an API server outage,
//! and the token kept out of Debug output and errors.
#![cfg(all(feature = "kubernetes", feature = "drill"))]

mod kubernetes_support;

use failover_pool::config::{FailoverConfig, expand_env};
use failover_pool::core::{Failover, Health};
use failover_pool::discovery::kubernetes::{ClusterAccess, KubernetesDiscovery};
use failover_pool::discovery::{Discovery, DiscoveryChange};
use kubernetes_support::{Ep, FakeApi, GoneAs, ready};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "sekret-bearer-token-0xC0FFEE";
const PATIENCE: Duration = Duration::from_secs(15);

fn discovery(api: &FakeApi) -> KubernetesDiscovery {
    KubernetesDiscovery::builder("web")
        .port_name("http")
        .access(ClusterAccess::new(api.url()).with_token(TOKEN))
        .build()
        .unwrap()
}

async fn next(d: &KubernetesDiscovery) -> Vec<(String, Health)> {
    match tokio::time::timeout(PATIENCE, d.next_change()).await {
        Ok(Ok(DiscoveryChange::Replace(list))) => {
            list.iter().map(|e| (e.id.to_string(), e.health)).collect()
        }
        other => panic!("expected a Replace, got {other:?}"),
    }
}

fn ids(f: &Failover) -> Vec<String> {
    let snap = f.endpoints().snapshot();
    let mut v: Vec<String> = snap.endpoints().iter().map(|e| e.id().to_owned()).collect();
    v.sort();
    v
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn until_watches(api: &FakeApi, n: usize) {
    eventually("a watch request", || {
        api.seen().iter().filter(|s| s.is_watch()).count() >= n
    })
    .await;
}

fn two_slices(api: &FakeApi) {
    api.put_slice(
        "web",
        "web-a",
        "http",
        8080,
        &[ready("web-0", "10.0.0.10"), ready("web-1", "10.0.0.11")],
    );
    let not_ready = Ep {
        pod: "web-3",
        ip: "10.0.0.13",
        ready: false,
        terminating: false,
    };
    api.put_slice(
        "web",
        "web-b",
        "http",
        8080,
        &[ready("web-2", "10.0.0.12"), not_ready],
    );
    api.put_slice("api", "api-x", "http", 8080, &[ready("api-0", "10.0.9.1")]);
}

#[tokio::test]
async fn a_split_service_is_the_union_of_its_slices() {
    let api = FakeApi::start().await;
    two_slices(&api);
    let d = discovery(&api);
    let DiscoveryChange::Replace(list) = d.next_change().await.unwrap() else {
        panic!()
    };
    let got: Vec<_> = list
        .iter()
        .map(|e| (&*e.id, e.address.as_str(), e.port, e.health))
        .collect();
    assert_eq!(
        got,
        [
            ("web-0", "10.0.0.10", 8080, Health::Healthy),
            ("web-1", "10.0.0.11", 8080, Health::Healthy),
            ("web-2", "10.0.0.12", 8080, Health::Healthy),
            ("web-3", "10.0.0.13", 8080, Health::Unhealthy),
        ]
    );
    assert_eq!(list[0].protocol, "http");
    assert_eq!(list[0].metadata["endpoint_slice"], "web-a");
    assert_eq!(list[2].metadata["zone"], "zone-a");
    let first = &api.seen()[0];
    assert_eq!(
        first.param("labelSelector").unwrap(),
        "kubernetes.io/service-name=web"
    );
    assert_eq!(
        first.authorization.as_deref(),
        Some(&*format!("Bearer {TOKEN}"))
    );
}

#[tokio::test]
async fn changes_reach_calls_and_terminating_endpoints_are_drained() {
    let api = FakeApi::start().await;
    api.put_slice(
        "web",
        "web-a",
        "http",
        8080,
        &[ready("web-0", "10.0.0.10"), ready("web-1", "10.0.0.11")],
    );
    let f = Failover::builder("web")
        .discovery(discovery(&api))
        .build()
        .unwrap();
    eventually("the initial list", || ids(&f) == ["web-0", "web-1"]).await;
    until_watches(&api, 1).await;

    // Calls in flight on web-0 (held for a while), then web-0 starts terminating.
    let mut in_flight = Vec::new();
    for _ in 0..4 {
        let f = f.clone();
        in_flight.push(tokio::spawn(async move {
            f.execute(|ep| async move {
                if ep.id() == "web-0" {
                    tokio::time::sleep(Duration::from_millis(800)).await;
                }
                Ok::<_, std::io::Error>(ep.id().to_owned())
            })
            .await
            .map(|s| s.value)
        }));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let terminating = Ep {
        pod: "web-0",
        ip: "10.0.0.10",
        ready: false,
        terminating: true,
    };
    let t0 = Instant::now();
    api.put_slice(
        "web",
        "web-a",
        "http",
        8080,
        &[
            terminating,
            ready("web-1", "10.0.0.11"),
            ready("web-2", "10.0.0.12"),
        ],
    );
    loop {
        if f.pick().unwrap().id() == "web-2" {
            break;
        }
        assert!(t0.elapsed() < PATIENCE, "the change never reached a pick");
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    println!(
        "change on the fake API server -> first pick reflecting it: {:?}",
        t0.elapsed()
    );
    assert_eq!(ids(&f), ["web-1", "web-2"]);
    for _ in 0..50 {
        let served = f
            .execute(|ep| async move { Ok::<_, std::io::Error>(ep.id().to_owned()) })
            .await
            .unwrap();
        assert_ne!(
            served.value, "web-0",
            "a new call went to a terminating endpoint"
        );
    }
    let mut finished_on_web0 = 0;
    for h in in_flight {
        if h.await.unwrap().unwrap() == "web-0" {
            finished_on_web0 += 1;
        }
    }
    assert!(finished_on_web0 >= 1, "no call was in flight on web-0");

    // web-1 removed from the slice: no new call goes to it.
    api.put_slice("web", "web-a", "http", 8080, &[ready("web-2", "10.0.0.12")]);
    eventually("web-1 removed", || ids(&f) == ["web-2"]).await;
    for _ in 0..20 {
        assert_eq!(f.pick().unwrap().id(), "web-2");
    }
}

#[tokio::test]
async fn bookmarks_and_dropped_watches_resume_from_the_resource_version() {
    let api = FakeApi::start().await;
    two_slices(&api);
    let d = Arc::new(discovery(&api));
    assert_eq!(next(&d).await.len(), 4);
    let list_rv = api.seen()[0].clone();
    assert!(!list_rv.is_watch());
    let task = tokio::spawn({
        let d = Arc::clone(&d);
        async move { next(&d).await }
    });
    until_watches(&api, 1).await;
    let bookmark = api.bookmark();
    tokio::time::sleep(Duration::from_millis(100)).await;
    api.drop_watches();
    until_watches(&api, 2).await;
    api.delete_slice("web-b");
    assert_eq!(task.await.unwrap().len(), 2);
    let watches: Vec<_> = api.seen().into_iter().filter(|s| s.is_watch()).collect();
    assert_eq!(
        watches[1].param("resourceVersion").unwrap(),
        bookmark.to_string()
    );
    assert_eq!(
        watches[0].param("allowWatchBookmarks").as_deref(),
        Some("true")
    );
    assert_eq!(
        api.seen().iter().filter(|s| !s.is_watch()).count(),
        1,
        "no re-list"
    );
}

#[tokio::test]
async fn gone_lists_again() {
    for how in [GoneAs::ErrorEvent, GoneAs::Http410] {
        let api = FakeApi::start().await;
        two_slices(&api);
        let d = Arc::new(discovery(&api));
        assert_eq!(next(&d).await.len(), 4);
        let task = tokio::spawn({
            let d = Arc::clone(&d);
            async move { next(&d).await }
        });
        until_watches(&api, 1).await;
        api.compact(how);
        api.drop_watches();
        let lists = || api.seen().iter().filter(|s| !s.is_watch()).count();
        eventually("a re-list after 410", || lists() == 2).await;
        until_watches(&api, 3).await;
        api.put_slice("web", "web-c", "http", 8080, &[ready("web-9", "10.0.0.19")]);
        let got = task.await.unwrap();
        assert_eq!(got.len(), 5, "{how:?}: {got:?}");
        assert_eq!(lists(), 2, "{how:?}");
    }
}

#[tokio::test]
async fn an_api_server_outage_keeps_the_last_list_and_recovers() {
    let api = FakeApi::start().await;
    two_slices(&api);
    let f = Failover::builder("web")
        .discovery(discovery(&api))
        .build()
        .unwrap();
    eventually("the initial list", || ids(&f).len() == 4).await;
    until_watches(&api, 1).await;
    api.set_down(true);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(ids(&f).len(), 4, "the last list is kept");
    assert!(f.pick().is_ok());
    // A separate discovery sees the outage as an error without the token.
    let err = discovery(&api).next_change().await.unwrap_err();
    let text = format!("{err} | {err:?} | {}", failover_pool::error::chain(&err));
    assert!(!text.contains(TOKEN), "{text}");
    println!("error while the API server is down: {err}");
    api.put_slice("web", "web-c", "http", 8080, &[ready("web-9", "10.0.0.19")]);
    api.set_down(false);
    eventually("recovery", || ids(&f).len() == 5).await;
}

#[tokio::test]
async fn the_token_never_shows_and_yaml_builds_a_provider() {
    let api = FakeApi::start().await;
    two_slices(&api);
    let dir = std::env::temp_dir().join(format!("k8s-disc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("config");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             contexts:\n- name: fake\n  context: {{cluster: fake, user: me, namespace: default}}\n\
             users:\n- name: me\n  user:\n    token: {TOKEN}\n",
            api.url()
        ),
    )
    .unwrap();
    let yaml = format!(
        "providers:\n  kubernetes:\n    enabled: true\n    config_path: {}\n    service_name: web\n    port_name: http\n    health_check: {{ enabled: false }}\n",
        kubeconfig.display()
    );
    let cfg: FailoverConfig = serde_yaml_ng::from_str(&expand_env(&yaml).unwrap()).unwrap();
    cfg.validate().unwrap();
    let f = cfg
        .providers
        .kubernetes
        .as_ref()
        .unwrap()
        .builder()
        .unwrap()
        .build()
        .unwrap();
    eventually("endpoints from YAML", || ids(&f).len() == 4).await;
    assert!(
        api.seen()
            .iter()
            .all(|s| s.authorization.as_deref() == Some(&*format!("Bearer {TOKEN}")))
    );

    let access = ClusterAccess::from_kubeconfig(&kubeconfig, None).unwrap();
    let d = discovery(&api);
    for text in [format!("{access:?}"), format!("{d:?}"), format!("{f:?}")] {
        assert!(!text.contains(TOKEN), "{text}");
    }
    assert!(format!("{access:?}").contains("***"));
    let missing = ClusterAccess::from_kubeconfig(&kubeconfig, Some("nope")).unwrap_err();
    assert!(!missing.to_string().contains(TOKEN));
    std::fs::remove_dir_all(&dir).unwrap();
}

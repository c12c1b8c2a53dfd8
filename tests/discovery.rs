//! Discovery: static URL lists, the mock driven through its handle, and the
//! background task that applies changes to an endpoint set.

use failover_pool::ErrorCode;
use failover_pool::core::events::{Event, EventBus, EventKind};
use failover_pool::core::{BreakerConfig, Endpoint, EndpointSet, Health};
use failover_pool::discovery::{
    Discovery, DiscoveryBackoff, DiscoveryChange, MockDiscovery, StaticDiscovery, apply_change,
    endpoint_from_url, spawn_discovery,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

const PATIENCE: Duration = Duration::from_secs(20);

fn empty_set() -> Arc<EndpointSet> {
    Arc::new(EndpointSet::new(Vec::new(), Arc::new(BreakerConfig::default())).unwrap())
}

fn ids(set: &EndpointSet) -> Vec<String> {
    set.snapshot()
        .endpoints()
        .iter()
        .map(|e| e.id().to_owned())
        .collect()
}

/// Polls until `cond` holds; panics after PATIENCE.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The next `EndpointsChanged` event (others are skipped).
async fn next_endpoints_changed(
    rx: &mut broadcast::Receiver<Event>,
) -> (Vec<Arc<str>>, Vec<Arc<str>>, Vec<Arc<str>>) {
    tokio::time::timeout(PATIENCE, async {
        loop {
            if let EventKind::EndpointsChanged {
                added,
                removed,
                updated,
            } = rx.recv().await.unwrap().kind
            {
                return (added, removed, updated);
            }
        }
    })
    .await
    .expect("no EndpointsChanged event")
}

fn strs(v: &[Arc<str>]) -> Vec<&str> {
    v.iter().map(|s| &**s).collect()
}

#[test]
fn urls_parse_into_endpoints() {
    let ep = endpoint_from_url("http://user-service-1:8080").unwrap();
    assert_eq!(&*ep.id, "user-service-1:8080");
    assert_eq!(ep.address, "user-service-1");
    assert_eq!(ep.port, 8080);
    assert_eq!(ep.protocol, "http");
    assert_eq!(ep.health, Health::Unknown);

    let cases = [
        (
            "https://api.example.com",
            "api.example.com:443",
            443,
            "https",
        ),
        ("HTTP://Web:81/", "Web:81", 81, "http"),
        ("http://web/health?x=1", "web:80", 80, "http"),
        (
            "postgres://app:s3cret@db-1:6432/orders",
            "db-1:6432",
            6432,
            "postgres",
        ),
        ("postgresql://db-2", "db-2:5432", 5432, "postgresql"),
        ("redis://cache", "cache:6379", 6379, "redis"),
        (
            "rediss://:pw@cache.internal",
            "cache.internal:6379",
            6379,
            "rediss",
        ),
        ("tcp://10.0.0.5:9000", "10.0.0.5:9000", 9000, "tcp"),
        ("http://[::1]:9000", "[::1]:9000", 9000, "http"),
        ("https://[2001:db8::7]", "[2001:db8::7]:443", 443, "https"),
        ("  http://padded:1  ", "padded:1", 1, "http"),
    ];
    for (url, id, port, protocol) in cases {
        let ep = endpoint_from_url(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(
            (&*ep.id, ep.port, ep.protocol.as_str()),
            (id, port, protocol),
            "{url}"
        );
        assert!(!ep.address.contains('@'), "credentials kept for {url}");
    }
    assert_eq!(
        endpoint_from_url("http://[::1]:9000").unwrap().address,
        "::1"
    );
}

#[test]
fn bad_urls_are_config_errors() {
    for url in [
        "user-service-1:8080",
        "",
        "http://",
        "http://:8080",
        "http://host:",
        "http://host:0",
        "http://host:65536",
        "http://host:http",
        "tcp://host",
        "ftp://files.example.com",
        "http://::1:80",
        "http://[::1",
        "http://[::1]x",
        "1http://host:1",
        "ht tp://host:1",
    ] {
        let err = endpoint_from_url(url).expect_err(url);
        assert_eq!(err.code(), ErrorCode::Config, "{url}");
        assert!(err.to_string().contains(url.trim()), "{err}");
    }

    let err =
        StaticDiscovery::from_urls(&["http://a:1", "http://b:2", "http://a:1/other"]).unwrap_err();
    assert_eq!(err.code(), ErrorCode::Config);
    assert!(err.to_string().contains("a:1"), "{err}");
    let none: [&str; 0] = [];
    assert_eq!(
        StaticDiscovery::from_urls(&none).unwrap_err().code(),
        ErrorCode::Config
    );
    assert_eq!(
        StaticDiscovery::from_urls(&["http://ok:1", "nope"])
            .unwrap_err()
            .code(),
        ErrorCode::Config
    );
}

#[tokio::test]
async fn static_discovery_answers_once_then_waits() {
    let urls = vec![
        "http://user-service-1:8080".to_owned(),
        "http://user-service-2:8080".to_owned(),
    ];
    let d = StaticDiscovery::from_urls(&urls).unwrap();
    assert_eq!(d.name(), "static");
    match d.next_change().await.unwrap() {
        DiscoveryChange::Replace(list) => {
            let ids: Vec<&str> = list.iter().map(|e| &*e.id).collect();
            assert_eq!(ids, ["user-service-1:8080", "user-service-2:8080"]);
        }
        other => panic!("expected Replace, got {other:?}"),
    }
    let later = tokio::time::timeout(Duration::from_millis(50), d.next_change()).await;
    assert!(later.is_err(), "a static list changed");
}

#[tokio::test]
async fn static_discovery_fills_a_set() {
    let set = empty_set();
    let events = EventBus::new("static", 64);
    let mut rx = events.subscribe();
    let d = StaticDiscovery::from_urls(&["http://a:80", "http://b:80"]).unwrap();
    let _task = spawn_discovery(
        Arc::new(d),
        Arc::clone(&set),
        events,
        DiscoveryBackoff::default(),
    );
    let (added, removed, updated) = next_endpoints_changed(&mut rx).await;
    assert_eq!(strs(&added), ["a:80", "b:80"]);
    assert!(removed.is_empty() && updated.is_empty());
    assert_eq!(ids(&set), ["a:80", "b:80"]);
}

#[tokio::test]
async fn mock_discovery_drives_the_set() {
    let (discovery, handle) = MockDiscovery::new(vec![
        Endpoint::new("a", "10.0.0.1", 80),
        Endpoint::new("b", "10.0.0.2", 80),
    ]);
    let set = empty_set();
    let events = EventBus::new("mock", 256);
    let mut rx = events.subscribe();
    let task = spawn_discovery(
        Arc::new(discovery),
        Arc::clone(&set),
        events,
        DiscoveryBackoff::default(),
    );

    eventually("the initial list", || set.snapshot().len() == 2).await;
    let (added, _, _) = next_endpoints_changed(&mut rx).await;
    assert_eq!(strs(&added), ["a", "b"]);

    handle.add(Endpoint::new("c", "10.0.0.3", 80));
    eventually("c to be added", || set.get("c").is_some()).await;
    let (added, _, _) = next_endpoints_changed(&mut rx).await;
    assert_eq!(strs(&added), ["c"]);

    handle.remove("a");
    eventually("a to be removed", || set.get("a").is_none()).await;
    let (_, removed, _) = next_endpoints_changed(&mut rx).await;
    assert_eq!(strs(&removed), ["a"]);
    assert_eq!(ids(&set), ["b", "c"]);

    // Changed metadata, same address: an update that keeps live state.
    let b = set.get("b").unwrap();
    b.set_health(Health::Healthy);
    handle.add(Endpoint::new("b", "10.0.0.2", 80).with_tag("v2"));
    let (added, removed, updated) = next_endpoints_changed(&mut rx).await;
    assert!(added.is_empty() && removed.is_empty());
    assert_eq!(strs(&updated), ["b"]);
    assert_eq!(set.get("b").unwrap().endpoint().tags, ["v2"]);
    assert_eq!(set.get("b").unwrap().health(), Health::Healthy);

    handle.replace(vec![Endpoint::new("d", "10.0.0.4", 80)]);
    eventually("the replacement", || ids(&set) == ["d"]).await;
    let (added, removed, _) = next_endpoints_changed(&mut rx).await;
    assert_eq!(strs(&added), ["d"]);
    assert_eq!(strs(&removed), ["b", "c"]);
    assert_eq!(handle.endpoints().len(), 1);

    task.shutdown().await;
}

#[tokio::test]
async fn discovery_failure_keeps_the_last_endpoints() {
    let (discovery, handle) = MockDiscovery::new(vec![
        Endpoint::new("a", "10.0.0.1", 80),
        Endpoint::new("b", "10.0.0.2", 80),
    ]);
    let set = empty_set();
    let events = EventBus::new("mock", 256);
    let mut rx = events.subscribe();
    let backoff = DiscoveryBackoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(100),
    };
    let _task = spawn_discovery(Arc::new(discovery), Arc::clone(&set), events, backoff);
    next_endpoints_changed(&mut rx).await;
    let version = set.snapshot().version();

    handle.fail("consul agent unreachable");
    handle.fail("consul agent still unreachable");
    // A list with duplicate ids cannot be applied: treated like a failure.
    handle.replace(vec![
        Endpoint::new("x", "10.0.0.9", 80),
        Endpoint::new("x", "10.0.0.9", 81),
    ]);
    handle.add(Endpoint::new("c", "10.0.0.3", 80));

    // Discovery works again after backing off: the next change applies on
    // top of the endpoints that were kept.
    let (added, removed, _) = next_endpoints_changed(&mut rx).await;
    assert_eq!(strs(&added), ["c"]);
    assert!(removed.is_empty());
    assert_eq!(ids(&set), ["a", "b", "c"]);
    assert!(set.snapshot().version() > version);
}

#[tokio::test]
async fn mock_health_reports_reach_the_live_endpoint() {
    let (discovery, handle) = MockDiscovery::new(vec![
        Endpoint::new("a", "10.0.0.1", 80),
        Endpoint::new("b", "10.0.0.2", 80).with_health(Health::Healthy),
    ]);
    let set = empty_set();
    let events = EventBus::new("mock", 256);
    let mut rx = events.subscribe();
    let _task = spawn_discovery(
        Arc::new(discovery),
        Arc::clone(&set),
        events,
        DiscoveryBackoff::default(),
    );
    next_endpoints_changed(&mut rx).await;
    assert_eq!(set.get("b").unwrap().health(), Health::Healthy);

    assert!(handle.set_health("b", Health::Unhealthy));
    assert!(!handle.set_health("zzz", Health::Unhealthy));
    eventually("b to be unhealthy", || {
        set.get("b").unwrap().health() == Health::Unhealthy
    })
    .await;
    assert!(handle.set_health("b", Health::Healthy));
    eventually("b to be healthy", || {
        set.get("b").unwrap().health() == Health::Healthy
    })
    .await;

    let mut kinds = Vec::new();
    while kinds.len() < 5 {
        kinds.push(
            tokio::time::timeout(PATIENCE, rx.recv())
                .await
                .unwrap()
                .unwrap()
                .kind,
        );
    }
    let b: Arc<str> = "b".into();
    assert!(
        kinds.contains(&EventKind::HealthChanged {
            endpoint: b.clone(),
            from: Health::Healthy,
            to: Health::Unhealthy
        }),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&EventKind::Recovered { endpoint: b }),
        "{kinds:?}"
    );
}

#[test]
fn apply_change_reports_what_changed() {
    let set = empty_set();
    let change = apply_change(
        &set,
        DiscoveryChange::Replace(vec![Endpoint::new("a", "h", 1), Endpoint::new("b", "h", 2)]),
    )
    .unwrap();
    assert_eq!(strs(&change.added), ["a", "b"]);

    let change = apply_change(&set, DiscoveryChange::Remove("a".into())).unwrap();
    assert_eq!(strs(&change.removed), ["a"]);
    let change = apply_change(&set, DiscoveryChange::Remove("a".into())).unwrap();
    assert!(change.is_empty());

    let change = apply_change(&set, DiscoveryChange::Upsert(Endpoint::new("c", "h", 3))).unwrap();
    assert_eq!(strs(&change.added), ["c"]);

    // A reported health change is applied to the live endpoint...
    let change = apply_change(
        &set,
        DiscoveryChange::Upsert(Endpoint::new("c", "h", 3).with_health(Health::Unhealthy)),
    )
    .unwrap();
    assert_eq!(strs(&change.updated), ["c"]);
    assert_eq!(set.get("c").unwrap().health(), Health::Unhealthy);
    // ...but an unchanged report does not override what checks learned.
    set.get("c").unwrap().set_health(Health::Healthy);
    apply_change(
        &set,
        DiscoveryChange::Upsert(
            Endpoint::new("c", "h", 3)
                .with_health(Health::Unhealthy)
                .with_tag("t"),
        ),
    )
    .unwrap();
    assert_eq!(set.get("c").unwrap().health(), Health::Healthy);

    let err = apply_change(
        &set,
        DiscoveryChange::Replace(vec![Endpoint::new("x", "h", 1), Endpoint::new("x", "h", 2)]),
    )
    .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Config);
    assert_eq!(ids(&set), ["b", "c"]);
}

#[test]
fn backoff_grows_and_is_capped() {
    let b = DiscoveryBackoff::default();
    assert_eq!(b.ceiling(1), Duration::from_millis(200));
    assert_eq!(b.ceiling(2), Duration::from_millis(400));
    assert_eq!(b.ceiling(7), Duration::from_secs(10));
    assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(10));
    for n in 1..40 {
        assert!(b.delay(n) <= b.ceiling(n));
    }
}

/// A password no output may show.
const SECRET: &str = "pa55-Wr0rd";

/// Panics when `text` shows the secret.
fn assert_hidden(what: &str, text: &str) {
    assert!(!text.contains(SECRET), "{what} shows the password: {text}");
}

#[test]
fn errors_and_debug_output_never_show_a_password() {
    // Errors naming a URL: bad port, bad scheme, no host, no default port,
    // and user info written without a scheme.
    let bad_urls = [
        format!("postgres://app:{SECRET}@db-1:notaport/orders"),
        format!("1ttp://app:{SECRET}@db-1:80"),
        format!("postgres://app:{SECRET}@/orders"),
        format!("tcp://app:{SECRET}@db-1"),
        format!("app:{SECRET}@db-1:5432"),
        format!("postgres://db-1:0/orders?password={SECRET}"),
    ];
    for url in &bad_urls {
        let err = endpoint_from_url(url).unwrap_err();
        assert_eq!(err.code(), ErrorCode::Config);
        assert_hidden("an endpoint_from_url error", &err.to_string());
        assert_hidden("an endpoint_from_url error", &format!("{err:?}"));
        assert_hidden(
            "an endpoint_from_url error chain",
            &failover_pool::error::chain(&err),
        );
        let err = StaticDiscovery::from_urls(&["http://ok-1:80", url.as_str()]).unwrap_err();
        assert_hidden("a StaticDiscovery::from_urls error", &err.to_string());
    }

    // What a good URL with a password turns into keeps no credentials.
    let url = format!("postgres://app:{SECRET}@db-1:5432/orders");
    let discovery = StaticDiscovery::from_urls(&[url.as_str()]).unwrap();
    assert_hidden("StaticDiscovery's Debug", &format!("{discovery:?}"));
    assert_hidden(
        "an Endpoint's Debug",
        &format!("{:?}", discovery.endpoints()),
    );

    // Configuration: endpoint URLs, the Consul address and its ACL token.
    let yaml = format!(
        "providers:\n  static:\n    endpoints: [\"{url}\", \"app:{SECRET}@db-2:5432\"]\n  \
         consul:\n    enabled: true\n    address: \"http://acl:{SECRET}@consul:8500\"\n    \
         token: \"{SECRET}\"\n    service_name: users\n"
    );
    let config: failover_pool::config::FailoverConfig = serde_yaml_ng::from_str(&yaml).unwrap();
    let consul = config.providers.consul.as_ref().unwrap();
    assert_eq!(consul.token.as_deref(), Some(SECRET));
    assert_hidden("ConsulProviderConfig's Debug", &format!("{consul:?}"));
    assert!(format!("{consul:?}").contains("token: Some(\"***\")"));
    let static_list = config.providers.static_list.as_ref().unwrap();
    assert_hidden("StaticProviderConfig's Debug", &format!("{static_list:?}"));
    assert_hidden("FailoverConfig's Debug", &format!("{config:?}"));
    assert_hidden("FailoverConfig's pretty Debug", &format!("{config:#?}"));
    let err = config.validate().unwrap_err();
    assert_hidden("a FailoverConfig::validate error", &err.to_string());
    let err = static_list.builder().unwrap_err();
    assert_hidden("a StaticProviderConfig::builder error", &err.to_string());
}

//! The ACL token never shows; registration and deregistration; a YAML
//! `consul` provider. Against the fake Consul of `consul_support`.

use crate::consul_support::{
    FakeConsul, TOKEN, agent, assert_no_token_in_logs, eventually, ids, logs, next, set_ids, web,
};
use failover_pool::config::FailoverConfig;
use failover_pool::core::{Failover, Health, Role};
use failover_pool::discovery::Discovery;
use failover_pool::discovery::consul::{
    ConsulAgent, ConsulCheck, ConsulDiscovery, ConsulRegistration,
};
use failover_pool::error::chain;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_never_shows() {
    logs::install();
    let fake = FakeConsul::start(Some(TOKEN), vec![web("a", 9001)]).await;
    fake.update(|s| s.echo_token = true);
    let good = agent(&fake);
    let builder = ConsulDiscovery::builder(good.clone(), "web");
    let discovery = builder.clone().build().unwrap();
    for text in [
        format!("{good:?}"),
        format!("{builder:?}"),
        format!("{discovery:?}"),
    ] {
        assert!(!text.contains(TOKEN), "{text}");
        assert!(text.contains("***"), "{text}");
    }
    let guard = ConsulRegistration::new("web", "127.0.0.1", 9009)
        .register(&good)
        .await
        .unwrap();
    assert!(!format!("{guard:?}").contains(TOKEN));
    guard.deregister().await.unwrap();

    let bad = ConsulAgent::new(&fake.address())
        .unwrap()
        .with_token("wr0ng-t0k3n-1234");
    let d = ConsulDiscovery::builder(bad.clone(), "web")
        .build()
        .unwrap();
    let err = d.next_change().await.unwrap_err();
    let text = format!("{err} | {} | {err:?}", chain(&err));
    assert!(text.contains("403"), "{text}");
    assert!(!text.contains("wr0ng-t0k3n"), "{text}");
    let err = ConsulRegistration::new("web", "127.0.0.1", 1)
        .register(&bad)
        .await
        .unwrap_err();
    assert!(!format!("{} {err:?}", chain(&err)).contains("wr0ng-t0k3n"));

    // Through the driver: the failure is logged, without the token.
    let failover = Failover::builder("consul-bad-token")
        .discovery(d)
        .build()
        .unwrap();
    eventually("a logged failure", || {
        logs::lines()
            .iter()
            .any(|l| l.contains("consul-bad-token") && l.contains("403"))
    })
    .await;
    drop(failover);
    assert_no_token_in_logs();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_and_deregistration() {
    logs::install();
    let fake = FakeConsul::start(Some(TOKEN), Vec::new()).await;
    let agent = agent(&fake);
    let check = ConsulCheck::http(
        "http://127.0.0.1:9000/health",
        Duration::from_secs(10),
        Duration::from_secs(2),
    )
    .deregister_critical_after(Duration::from_secs(90));
    let guard = ConsulRegistration::new("api", "127.0.0.1", 9000)
        .id("api-1")
        .tag("primary")
        .meta("version", "2")
        .check(check)
        .register(&agent)
        .await
        .unwrap();
    assert_eq!(guard.id(), "api-1");
    let reg = fake.state().registrations["api-1"].clone();
    assert_eq!(reg["Name"], "api");
    assert_eq!(
        (reg["Address"].as_str(), reg["Port"].as_u64()),
        (Some("127.0.0.1"), Some(9000))
    );
    assert_eq!(reg["Tags"][0], "primary");
    assert_eq!(reg["Meta"]["version"], "2");
    assert_eq!(reg["Check"]["HTTP"], "http://127.0.0.1:9000/health");
    assert_eq!(
        (
            reg["Check"]["Interval"].as_str(),
            reg["Check"]["Timeout"].as_str()
        ),
        (Some("10s"), Some("2s"))
    );
    assert_eq!(reg["Check"]["DeregisterCriticalServiceAfter"], "90s");
    let put = fake
        .state()
        .seen
        .iter()
        .find(|r| r.path == "/v1/agent/service/register")
        .cloned()
        .unwrap();
    assert_eq!(
        (put.method.as_str(), put.query.as_str()),
        ("PUT", "replace-existing-checks=true")
    );
    assert_eq!(put.token.as_deref(), Some(TOKEN));

    let d = ConsulDiscovery::builder(agent.clone(), "api")
        .passing_only(false)
        .allow_empty(true)
        .build()
        .unwrap();
    let list = next(&d).await;
    assert_eq!(ids(&list), ["api-1"]);
    assert_eq!(
        (list[0].health, list[0].role),
        (Health::Unhealthy, Some(Role::Primary)),
        "critical until checked"
    );

    guard.deregister().await.unwrap();
    assert!(next(&d).await.is_empty());
    assert!(fake.state().registrations.is_empty());

    // Dropping the guard deregisters in the background.
    let tcp = ConsulCheck::tcp(
        "127.0.0.1:9001",
        Duration::from_secs(5),
        Duration::from_secs(1),
    );
    let guard = ConsulRegistration::new("api", "127.0.0.1", 9001)
        .check(tcp)
        .register(&agent)
        .await
        .unwrap();
    assert_eq!(guard.id(), "api-127.0.0.1-9001");
    assert_eq!(
        fake.state().registrations[guard.id()]["Check"]["TCP"],
        "127.0.0.1:9001"
    );
    assert_eq!(ids(&next(&d).await), ["api-127.0.0.1-9001"]);
    drop(guard);
    assert!(next(&d).await.is_empty(), "deregistered on drop");
}

#[tokio::test]
async fn yaml_builds_a_consul_provider() {
    logs::install();
    let fake = FakeConsul::start(Some(TOKEN), vec![web("a", 9001), web("b", 9002)]).await;
    let yaml = format!(
        r#"
providers:
  consul:
    enabled: true
    address: "{}"
    token: "{TOKEN}"
    datacenter: dc1
    service_name: web
    health_check: {{ enabled: false }}
    failover: {{ strategy: round-robin, max_retries: 1 }}
"#,
        fake.address()
    );
    let config: FailoverConfig = serde_yaml_ng::from_str(&yaml).unwrap();
    config.validate().unwrap();
    let provider = config.providers.consul.as_ref().unwrap();
    assert!(!format!("{provider:?}").contains(TOKEN));
    let failover = provider.builder().unwrap().build().unwrap();
    eventually("endpoints from Consul", || set_ids(&failover) == ["a", "b"]).await;
    assert!(fake.health_queries()[0].query.contains("dc=dc1"));
}

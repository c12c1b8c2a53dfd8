//! Unit tests of the active health checker.

use super::*;
use crate::core::endpoint::Endpoint;
use crate::core::health::OutlierConfig;
use crate::core::health::check::CheckFuture;
use crate::core::health::test_support::{drain, set_of};
use crate::error::ErrorCode;
use std::sync::atomic::AtomicU8;
use tokio::sync::broadcast;

const PASS: u8 = 0;
const FAIL: u8 = 1;
const DEGRADED: u8 = 2;
const HANG: u8 = 3;

/// A check whose result per endpoint is set by the test.
#[derive(Debug, Default)]
struct Scripted {
    results: Mutex<HashMap<String, Arc<AtomicU8>>>,
}

impl Scripted {
    fn set(&self, id: &str, v: u8) {
        self.results
            .lock()
            .unwrap()
            .entry(id.to_owned())
            .or_default()
            .store(v, Relaxed);
    }
}

impl HealthCheck for Scripted {
    fn check<'a>(&'a self, endpoint: &'a Endpoint) -> CheckFuture<'a> {
        let v = self
            .results
            .lock()
            .unwrap()
            .get(&*endpoint.id)
            .map_or(PASS, |a| a.load(Relaxed));
        Box::pin(async move {
            match v {
                PASS => Ok(Health::Healthy),
                DEGRADED => Ok(Health::Degraded),
                HANG => std::future::pending().await,
                _ => Err("scripted failure".into()),
            }
        })
    }
}

fn checker(
    n: usize,
    config: HealthCheckConfig,
) -> (
    Arc<HealthChecker>,
    Arc<Scripted>,
    broadcast::Receiver<crate::core::events::Event>,
) {
    let script = Arc::new(Scripted::default());
    let events = EventBus::new("t", 256);
    let rx = events.subscribe();
    let hc = HealthChecker::new(
        set_of(n),
        Arc::clone(&script) as Arc<dyn HealthCheck>,
        config,
        events,
    )
    .unwrap();
    (Arc::new(hc), script, rx)
}

fn changed(id: &str, from: Health, to: Health) -> EventKind {
    EventKind::HealthChanged {
        endpoint: id.into(),
        from,
        to,
    }
}

#[tokio::test(start_paused = true)]
async fn rise_and_fall_thresholds() {
    let (hc, script, mut rx) = checker(2, HealthCheckConfig::default());
    // Unknown -> Healthy after one pass.
    assert_eq!(hc.check("e0").await.unwrap(), Health::Healthy);
    assert_eq!(
        drain(&mut rx),
        vec![changed("e0", Health::Unknown, Health::Healthy)]
    );

    script.set("e0", FAIL);
    assert_eq!(hc.check("e0").await.unwrap(), Health::Healthy);
    assert_eq!(hc.check("e0").await.unwrap(), Health::Healthy);
    assert!(drain(&mut rx).is_empty());
    assert_eq!(hc.check("e0").await.unwrap(), Health::Unhealthy);
    assert_eq!(
        drain(&mut rx),
        vec![changed("e0", Health::Healthy, Health::Unhealthy)]
    );

    // A pass in between resets the rise streak.
    script.set("e0", PASS);
    assert_eq!(hc.check("e0").await.unwrap(), Health::Unhealthy);
    script.set("e0", FAIL);
    assert_eq!(hc.check("e0").await.unwrap(), Health::Unhealthy);
    script.set("e0", PASS);
    assert_eq!(hc.check("e0").await.unwrap(), Health::Unhealthy);
    assert!(drain(&mut rx).is_empty());
    assert_eq!(hc.check("e0").await.unwrap(), Health::Healthy);
    assert_eq!(
        drain(&mut rx),
        vec![
            changed("e0", Health::Unhealthy, Health::Healthy),
            EventKind::Recovered {
                endpoint: "e0".into()
            }
        ]
    );
    let ep = hc.set().get("e0").unwrap();
    assert_eq!(ep.counters().recoveries.load(Relaxed), 1);
    assert_ne!(ep.last_checked(), 0);
}

#[tokio::test(start_paused = true)]
async fn unknown_goes_down_after_one_failure_and_degraded_is_immediate() {
    let (hc, script, mut rx) = checker(2, HealthCheckConfig::default());
    script.set("e1", FAIL);
    assert_eq!(hc.check("e1").await.unwrap(), Health::Unhealthy);
    script.set("e0", DEGRADED);
    assert_eq!(hc.check("e0").await.unwrap(), Health::Degraded);
    script.set("e0", PASS);
    assert_eq!(hc.check("e0").await.unwrap(), Health::Healthy);
    assert_eq!(
        drain(&mut rx),
        vec![
            changed("e1", Health::Unknown, Health::Unhealthy),
            changed("e0", Health::Unknown, Health::Degraded),
            changed("e0", Health::Degraded, Health::Healthy),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn timeout_is_a_failure_and_unknown_id_is_a_config_error() {
    let config = HealthCheckConfig {
        timeout: Duration::from_millis(500),
        ..HealthCheckConfig::default()
    };
    let (hc, script, _rx) = checker(1, config);
    script.set("e0", HANG);
    let report = hc.check_report("e0").await.unwrap();
    assert!(!report.passed());
    assert_eq!(report.health, Health::Unhealthy);
    assert_eq!(report.changed_from, Some(Health::Unknown));
    let err = report.outcome.unwrap_err();
    assert_eq!(err.code(), ErrorCode::HealthCheckFailed);
    let source = std::error::Error::source(&err).unwrap().to_string();
    assert!(source.contains("timed out"), "{source}");

    let err = hc.check("nope").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::Config);
}

#[tokio::test(start_paused = true)]
async fn panic_mode_toggles_with_health() {
    let (hc, script, mut rx) = checker(2, HealthCheckConfig::default());
    assert_eq!(hc.check_all().await.len(), 2);
    drain(&mut rx);
    script.set("e0", FAIL);
    script.set("e1", FAIL);
    for _ in 0..3 {
        hc.check_all().await;
    }
    let kinds = drain(&mut rx);
    // One of two down is 50% available: not below the threshold yet.
    assert_eq!(
        kinds
            .iter()
            .filter(|k| matches!(k, EventKind::PanicMode { .. }))
            .count(),
        1,
        "{kinds:?}"
    );
    assert_eq!(kinds.last(), Some(&EventKind::PanicMode { on: true }));
    assert!(hc.set().is_panic());

    script.set("e0", PASS);
    assert_eq!(hc.check("e0").await.unwrap(), Health::Unhealthy); // rise not reached
    assert!(hc.set().is_panic());
    assert_eq!(hc.check("e0").await.unwrap(), Health::Healthy);
    assert!(!hc.set().is_panic());
    let kinds = drain(&mut rx);
    assert!(
        kinds.contains(&EventKind::PanicMode { on: false }),
        "{kinds:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn background_loop_moves_health() {
    let config = HealthCheckConfig {
        interval: Duration::from_secs(1),
        fall: 2,
        ..HealthCheckConfig::default()
    };
    let (hc, script, mut rx) = checker(2, config);
    let task = Arc::clone(&hc).spawn();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(hc.set().get("e0").unwrap().health(), Health::Healthy);
    assert_eq!(hc.set().get("e1").unwrap().health(), Health::Healthy);
    script.set("e1", FAIL);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(hc.set().get("e1").unwrap().health(), Health::Unhealthy);
    assert_eq!(hc.set().get("e0").unwrap().health(), Health::Healthy);
    assert!(drain(&mut rx).contains(&changed("e1", Health::Healthy, Health::Unhealthy)));

    // Endpoints added later are picked up.
    hc.set()
        .upsert(Endpoint::new("late", "127.0.0.1", 9))
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(hc.set().get("late").unwrap().health(), Health::Healthy);

    drop(task);
    script.set("e1", PASS);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(hc.set().get("e1").unwrap().health(), Health::Unhealthy);
}

#[test]
fn config_validation_names_the_field() {
    assert!(HealthCheckConfig::default().validate().is_ok());
    let bad = [
        HealthCheckConfig {
            interval: Duration::ZERO,
            ..Default::default()
        },
        HealthCheckConfig {
            jitter: 1.5,
            ..Default::default()
        },
        HealthCheckConfig {
            rise: 0,
            ..Default::default()
        },
        HealthCheckConfig {
            path: Some("health".into()),
            ..Default::default()
        },
    ];
    for (cfg, field) in bad.iter().zip(["interval", "jitter", "rise", "path"]) {
        let msg = cfg.validate().unwrap_err().to_string();
        assert!(msg.contains(&format!("health_check.{field}")), "{msg}");
    }
    assert!(OutlierConfig::default().validate().is_ok());
    let msg = OutlierConfig {
        max_ejection: Duration::from_secs(1),
        ..Default::default()
    }
    .validate()
    .unwrap_err()
    .to_string();
    assert!(msg.contains("outlier_detection.max_ejection"), "{msg}");
    let msg = OutlierConfig {
        failure_rate: Some(0.0),
        ..Default::default()
    }
    .validate()
    .unwrap_err()
    .to_string();
    assert!(msg.contains("outlier_detection.failure_rate"), "{msg}");
}

#[tokio::test]
async fn join_all_keeps_order() {
    let futs = (0..5u64)
        .map(|i| async move {
            tokio::time::sleep(Duration::from_millis(10 * (5 - i))).await;
            i
        })
        .collect();
    assert_eq!(join_all(futs).await, vec![0, 1, 2, 3, 4]);
}

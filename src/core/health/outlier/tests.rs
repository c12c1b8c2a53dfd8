//! Unit tests of passive outlier detection.

use super::*;
use crate::core::health::test_support::{drain, set_of};
use tokio::sync::broadcast;

fn detector(
    n: usize,
    config: OutlierConfig,
) -> (
    OutlierDetector,
    Arc<EndpointSet>,
    broadcast::Receiver<crate::core::events::Event>,
) {
    let set = set_of(n);
    let events = EventBus::new("t", 256);
    let rx = events.subscribe();
    (
        OutlierDetector::new(Arc::clone(&set), config, events).unwrap(),
        set,
        rx,
    )
}

fn fail_n(d: &OutlierDetector, ep: &Arc<LiveEndpoint>, n: u32) {
    for _ in 0..n {
        let now = now_nanos();
        let c = ep.record_outcome(false, Duration::from_millis(1), now);
        d.on_result(ep, false, c, now);
    }
}

fn ejected(id: &str, secs: u64, ejections: u32) -> EventKind {
    EventKind::Ejected {
        endpoint: id.into(),
        duration: Duration::from_secs(secs),
        ejections,
    }
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_eject_for_growing_capped_durations() {
    let config = OutlierConfig {
        max_ejection: Duration::from_secs(75),
        ..OutlierConfig::default()
    };
    let (d, set, mut rx) = detector(4, config);
    let ep = set.get("e0").unwrap();
    fail_n(&d, &ep, 4);
    assert!(!ep.is_ejected(now_nanos()));
    fail_n(&d, &ep, 1);
    assert!(ep.is_ejected(now_nanos()));
    assert_eq!(drain(&mut rx), vec![ejected("e0", 30, 1)]);
    // Further failures while ejected change nothing.
    fail_n(&d, &ep, 3);
    assert!(drain(&mut rx).is_empty());

    tokio::time::advance(Duration::from_secs(29)).await;
    d.sweep(now_nanos());
    assert!(drain(&mut rx).is_empty());
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(!ep.is_ejected(now_nanos()));
    d.sweep(now_nanos());
    assert_eq!(
        drain(&mut rx),
        vec![
            EventKind::Unejected {
                endpoint: "e0".into()
            },
            EventKind::Recovered {
                endpoint: "e0".into()
            }
        ]
    );

    // Fails again without a success in between: ejected at once, twice as long.
    fail_n(&d, &ep, 1);
    assert_eq!(drain(&mut rx), vec![ejected("e0", 60, 2)]);
    tokio::time::advance(Duration::from_secs(60)).await;
    d.sweep(now_nanos());
    drain(&mut rx);

    // A success resets the streak; the third ejection is capped at 75s.
    let now = now_nanos();
    let c = ep.record_outcome(true, Duration::from_millis(1), now);
    d.on_result(&ep, true, c, now);
    fail_n(&d, &ep, 4);
    assert!(drain(&mut rx).is_empty());
    fail_n(&d, &ep, 1);
    assert_eq!(drain(&mut rx), vec![ejected("e0", 75, 3)]);
    assert_eq!(d.next_ejection(&ep), Duration::from_secs(75));
}

#[tokio::test(start_paused = true)]
async fn max_ejected_share_is_respected() {
    let (d, set, mut rx) = detector(4, OutlierConfig::default());
    for id in ["e0", "e1", "e2"] {
        fail_n(&d, &set.get(id).unwrap(), 5);
    }
    let now = now_nanos();
    let ejected_now: Vec<_> = set
        .snapshot()
        .endpoints()
        .iter()
        .filter(|e| e.is_ejected(now))
        .map(|e| e.id().to_owned())
        .collect();
    assert_eq!(ejected_now, ["e0", "e1"]);
    let kinds = drain(&mut rx);
    assert_eq!(
        kinds
            .iter()
            .filter(|k| matches!(k, EventKind::Ejected { .. }))
            .count(),
        2
    );
    // Half of the endpoints are out: not below the 0.5 panic threshold.
    assert!(!set.is_panic());

    // A lone endpoint is never ejected.
    let (d, set, _rx) = detector(1, OutlierConfig::default());
    let ep = set.get("e0").unwrap();
    fail_n(&d, &ep, 10);
    assert!(!ep.is_ejected(now_nanos()));
}

#[tokio::test(start_paused = true)]
async fn ejections_can_trigger_panic_mode() {
    let config = OutlierConfig {
        max_ejected_share: 1.0,
        ..OutlierConfig::default()
    };
    let (d, set, mut rx) = detector(2, config);
    fail_n(&d, &set.get("e0").unwrap(), 5);
    assert!(!set.is_panic());
    fail_n(&d, &set.get("e1").unwrap(), 5);
    assert!(set.is_panic());
    assert!(drain(&mut rx).contains(&EventKind::PanicMode { on: true }));
    tokio::time::advance(Duration::from_secs(30)).await;
    d.sweep(now_nanos());
    assert!(!set.is_panic());
    assert!(drain(&mut rx).contains(&EventKind::PanicMode { on: false }));
}

#[tokio::test(start_paused = true)]
async fn failure_rate_ejects_on_sweep() {
    let config = OutlierConfig {
        consecutive_failures: 0, // only the rate rule
        ..OutlierConfig::default()
    };
    let (d, set, mut rx) = detector(3, config);
    let (e0, e1, e2) = (
        set.get("e0").unwrap(),
        set.get("e1").unwrap(),
        set.get("e2").unwrap(),
    );
    let now = now_nanos();
    // e0: 20 calls, 12 failures (never 5 in a row) -> 60% >= 50%.
    for i in 0..20 {
        let ok = i % 5 == 0 || i % 5 == 2;
        let c = e0.record_outcome(ok, Duration::from_millis(1), now);
        d.on_result(&e0, ok, c, now);
    }
    // e1: 10 calls, all failed -> below the minimum request count.
    for _ in 0..10 {
        let c = e1.record_outcome(false, Duration::from_millis(1), now);
        d.on_result(&e1, false, c, now);
    }
    // e2: 30 calls, 9 failures -> 30%.
    for i in 0..30 {
        let ok = i % 10 >= 3;
        e2.record_outcome(ok, Duration::from_millis(1), now);
    }
    assert!(drain(&mut rx).is_empty());
    d.sweep(now);
    assert_eq!(drain(&mut rx), vec![ejected("e0", 30, 1)]);
    assert!(e0.is_ejected(now) && !e1.is_ejected(now) && !e2.is_ejected(now));

    // Only the calls since the last sweep count: 10 more failures on e1
    // make 10 in this interval, still too few.
    for _ in 0..10 {
        e1.record_outcome(false, Duration::from_millis(1), now);
    }
    d.sweep(now);
    assert!(!e1.is_ejected(now));
}

#[tokio::test(start_paused = true)]
async fn ejection_count_resets_after_a_long_healthy_stretch() {
    let config = OutlierConfig {
        interval: Duration::from_secs(10),
        max_ejection: Duration::from_secs(60),
        ..OutlierConfig::default()
    };
    let (d, set, _rx) = detector(2, config);
    let ep = set.get("e0").unwrap();
    fail_n(&d, &ep, 5);
    assert_eq!(ep.ejection_count(), 1);
    for _ in 0..3 {
        tokio::time::advance(Duration::from_secs(10)).await;
        d.sweep(now_nanos());
    }
    assert!(!ep.is_ejected(now_nanos()));
    assert_eq!(ep.ejection_count(), 1);
    for _ in 0..6 {
        tokio::time::advance(Duration::from_secs(10)).await;
        d.sweep(now_nanos());
    }
    assert_eq!(ep.ejection_count(), 0);
    assert_eq!(d.next_ejection(&ep), Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn spawned_sweep_unejects() {
    let config = OutlierConfig {
        interval: Duration::from_secs(5),
        base_ejection: Duration::from_secs(10),
        ..OutlierConfig::default()
    };
    let (d, set, mut rx) = detector(2, config);
    let d = Arc::new(d);
    let task = Arc::clone(&d).spawn();
    fail_n(&d, &set.get("e1").unwrap(), 5);
    tokio::time::sleep(Duration::from_secs(16)).await;
    let kinds = drain(&mut rx);
    assert!(
        kinds.contains(&EventKind::Unejected {
            endpoint: "e1".into()
        }),
        "{kinds:?}"
    );
    task.shutdown().await;
}

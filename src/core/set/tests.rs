//! Unit tests of the endpoint set and the live state of its endpoints.

use super::*;
use crate::core::clock::now_nanos;
use crate::core::endpoint::Health;
use std::time::Duration;

fn set(n: usize) -> EndpointSet {
    let eps = (0..n)
        .map(|i| Endpoint::new(format!("e{i}"), "127.0.0.1", 1000 + i as u16))
        .collect();
    EndpointSet::new(eps, Arc::new(BreakerConfig::default())).unwrap()
}

#[test]
fn duplicate_ids_are_a_config_error() {
    let eps = vec![Endpoint::new("a", "h", 1), Endpoint::new("a", "h", 2)];
    let err = EndpointSet::new(eps, Arc::new(BreakerConfig::default())).unwrap_err();
    assert_eq!(err.code(), crate::error::ErrorCode::Config);
}

#[test]
fn replace_keeps_live_state_of_unchanged_endpoints() {
    let s = set(3);
    let e1 = s.get("e1").unwrap();
    e1.set_health(Health::Unhealthy);
    let v1 = s.snapshot().version();
    let mut list: Vec<Endpoint> = s
        .snapshot()
        .endpoints()
        .iter()
        .map(|l| l.endpoint().clone())
        .collect();
    list.remove(0);
    list.push(Endpoint::new("e9", "127.0.0.1", 9));
    list[1] = list[1].clone().with_tag("new");
    let change = s.replace(list).unwrap();
    assert_eq!(&*change.removed, &[Arc::from("e0")]);
    assert_eq!(&*change.added, &[Arc::from("e9")]);
    assert_eq!(&*change.updated, &[Arc::from("e2")]);
    assert!(Arc::ptr_eq(&e1, &s.get("e1").unwrap()));
    assert_eq!(s.get("e1").unwrap().health(), Health::Unhealthy);
    assert!(s.snapshot().version() > v1);
    assert!(s.get("e0").is_none());
}

#[test]
fn upsert_and_remove() {
    let s = set(1);
    s.upsert(Endpoint::new("x", "h", 1)).unwrap();
    assert_eq!(s.snapshot().len(), 2);
    assert!(s.remove("x").unwrap());
    assert!(!s.remove("x").unwrap());
    assert_eq!(s.snapshot().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn in_flight_guard_releases_on_cancel() {
    let s = set(1);
    let ep = s.get("e0").unwrap();
    let ep2 = Arc::clone(&ep);
    let fut = async move {
        let _g = ep2.start_call();
        tokio::time::sleep(Duration::from_secs(60)).await;
    };
    let handle = tokio::spawn(fut);
    tokio::task::yield_now().await;
    assert_eq!(ep.in_flight(), 1);
    handle.abort();
    let _ = handle.await;
    assert_eq!(ep.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn ejection_expires_once() {
    let s = set(1);
    let ep = s.get("e0").unwrap();
    let now = now_nanos();
    assert_eq!(ep.eject(now + 1_000_000_000, now), Some(1));
    assert_eq!(ep.eject(now + 2_000_000_000, now), None);
    assert!(ep.is_ejected(now));
    assert!(!ep.is_available(now));
    tokio::time::advance(Duration::from_secs(2)).await;
    let later = now_nanos();
    assert!(!ep.is_ejected(later));
    assert!(ep.clear_expired_ejection(later));
    assert!(!ep.clear_expired_ejection(later));
}

#[test]
fn panic_mode_follows_threshold() {
    let s = set(4);
    let now = now_nanos();
    assert_eq!(s.refresh_panic(0.5, now), None);
    for id in ["e0", "e1", "e2"] {
        s.get(id).unwrap().set_health(Health::Unhealthy);
    }
    assert_eq!(s.refresh_panic(0.5, now), Some(true));
    assert!(s.is_panic());
    assert_eq!(s.refresh_panic(0.0, now), Some(false));
}

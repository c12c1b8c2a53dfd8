//! Unit tests of priority (active-passive) routing.

use super::*;
use crate::core::clock::now_nanos;
use crate::core::endpoint::{Endpoint, Health};
use crate::core::set::EndpointSet;
use crate::core::strategy::Excluded;
use crate::core::strategy::test_support::set;

fn pick_now(s: &dyn Strategy, set: &EndpointSet) -> Option<usize> {
    let snap = set.snapshot();
    let ex = Excluded::new();
    s.pick(&PickContext::new(&snap, now_nanos(), &ex))
}

#[tokio::test(start_paused = true)]
async fn priority_fails_over_at_once_and_back_after_hold_down() {
    let s = set(3);
    let prio = Priority::new(Duration::from_secs(30));
    let primary = s.get("e0").unwrap();
    assert_eq!(pick_now(&prio, &s), Some(0));

    primary.set_health(Health::Unhealthy);
    assert_eq!(pick_now(&prio, &s), Some(1));

    primary.set_health(Health::Healthy);
    assert_eq!(pick_now(&prio, &s), Some(1));
    tokio::time::advance(Duration::from_secs(29)).await;
    assert_eq!(pick_now(&prio, &s), Some(1));
    tokio::time::advance(Duration::from_millis(1_500)).await;
    assert_eq!(pick_now(&prio, &s), Some(0));
    assert_eq!(pick_now(&prio, &s), Some(0));
    assert_eq!(prio.active_in(s.snapshot().endpoints()), Some(0));
}

#[tokio::test(start_paused = true)]
async fn priority_hold_down_restarts_when_the_primary_flaps() {
    let s = set(2);
    let prio = Priority::new(Duration::from_secs(30));
    let primary = s.get("e0").unwrap();
    primary.set_health(Health::Unhealthy);
    assert_eq!(pick_now(&prio, &s), Some(1));

    primary.set_health(Health::Healthy);
    assert_eq!(pick_now(&prio, &s), Some(1));
    tokio::time::advance(Duration::from_secs(20)).await;
    primary.set_health(Health::Unhealthy);
    assert_eq!(pick_now(&prio, &s), Some(1));
    primary.set_health(Health::Healthy);
    assert_eq!(pick_now(&prio, &s), Some(1));
    tokio::time::advance(Duration::from_secs(20)).await;
    // 40 s since it first came back, but only 20 s continuously.
    assert_eq!(pick_now(&prio, &s), Some(1));
    tokio::time::advance(Duration::from_secs(11)).await;
    assert_eq!(pick_now(&prio, &s), Some(0));
}

#[tokio::test(start_paused = true)]
async fn priority_fails_over_from_the_standby_immediately() {
    let s = set(3);
    let prio = Priority::new(Duration::from_secs(30));
    s.get("e0").unwrap().set_health(Health::Unhealthy);
    assert_eq!(pick_now(&prio, &s), Some(1));
    s.get("e1").unwrap().set_health(Health::Unhealthy);
    assert_eq!(pick_now(&prio, &s), Some(2));
    // e1 back: still behind the hold-down.
    s.get("e1").unwrap().set_health(Health::Healthy);
    assert_eq!(pick_now(&prio, &s), Some(2));
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_eq!(pick_now(&prio, &s), Some(1));
}

#[test]
fn priority_exclusion_does_not_move_the_active_endpoint() {
    let s = set(3);
    let prio = Priority::default();
    assert_eq!(prio.hold_down(), DEFAULT_HOLD_DOWN);
    let snap = s.snapshot();
    let now = now_nanos();
    let none = Excluded::new();
    assert_eq!(prio.pick(&PickContext::new(&snap, now, &none)), Some(0));
    let mut tried = Excluded::new();
    tried.insert(0);
    assert_eq!(prio.pick(&PickContext::new(&snap, now, &tried)), Some(1));
    assert_eq!(prio.pick(&PickContext::new(&snap, now, &none)), Some(0));
}

#[tokio::test(start_paused = true)]
async fn priority_follows_the_active_endpoint_across_list_changes() {
    let s = set(3);
    let prio = Priority::new(Duration::from_secs(30));
    s.get("e0").unwrap().set_health(Health::Unhealthy);
    assert_eq!(pick_now(&prio, &s), Some(1));
    s.get("e0").unwrap().set_health(Health::Healthy);
    // A new endpoint at the front: e1 (active) moves to position 2.
    let mut list: Vec<Endpoint> = s
        .snapshot()
        .endpoints()
        .iter()
        .map(|l| l.endpoint().clone())
        .collect();
    list.insert(0, Endpoint::new("new", "127.0.0.1", 999));
    s.replace(list).unwrap();
    assert_eq!(pick_now(&prio, &s), Some(2));
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_eq!(pick_now(&prio, &s), Some(0));
}

//! Unit tests of backoff, jitter and retry policies.

use super::*;
use proptest::prelude::*;
use std::collections::HashSet;

const MS: fn(u64) -> Duration = Duration::from_millis;

fn backoff(jitter: Jitter) -> Backoff {
    Backoff {
        jitter,
        ..Backoff::default()
    }
}

#[test]
fn backoff_cap_grows_then_clamps() {
    let b = backoff(Jitter::None);
    let caps: Vec<_> = (0..8).map(|r| b.cap(r)).collect();
    assert_eq!(
        caps,
        [
            MS(50),
            MS(100),
            MS(200),
            MS(400),
            MS(800),
            MS(1600),
            MS(2000),
            MS(2000)
        ]
    );
    assert_eq!(b.cap(1000), MS(2000));
    assert_eq!(b.cap(u32::MAX), MS(2000));
    assert_eq!(b.delay(3), MS(400));
    let flat = Backoff {
        multiplier: 1.0,
        ..b.clone()
    };
    assert_eq!(flat.cap(1000), MS(50));
    let huge = Backoff {
        initial: Duration::from_secs(u64::MAX / 4),
        max: Duration::MAX,
        multiplier: 1000.0,
        jitter: Jitter::Full,
    };
    assert_eq!(huge.cap(1000), Duration::MAX);
    assert!(huge.delay(1000) <= Duration::MAX);
}

#[test]
fn full_jitter_stays_within_cap_and_varies() {
    let b = backoff(Jitter::Full);
    let delays: Vec<_> = (0..1000).map(|_| b.delay(2)).collect();
    assert!(delays.iter().all(|d| *d <= MS(200)));
    assert!(delays.iter().collect::<HashSet<_>>().len() > 100);
    assert!(delays.iter().any(|d| *d < MS(100)));
}

#[test]
fn equal_jitter_stays_between_half_and_cap() {
    let b = backoff(Jitter::Equal);
    let delays: Vec<_> = (0..1000).map(|_| b.delay(10)).collect();
    assert!(delays.iter().all(|d| (MS(1000)..=MS(2000)).contains(d)));
    assert!(delays.iter().collect::<HashSet<_>>().len() > 100);
}

proptest! {
    #[test]
    fn jitter_bounds(
        initial_ms in 0u64..10_000,
        extra_ms in 0u64..100_000,
        multiplier in 1.0f64..20.0,
        retry in 0u32..5_000,
        jitter in prop_oneof![Just(Jitter::None), Just(Jitter::Full), Just(Jitter::Equal)],
    ) {
        let b = Backoff {
            initial: MS(initial_ms),
            max: MS(initial_ms + extra_ms),
            multiplier,
            jitter,
        };
        b.validate().unwrap();
        let cap = b.cap(retry);
        prop_assert!(cap <= b.max);
        prop_assert!(cap >= b.initial.min(b.max));
        prop_assert!(b.cap(retry.saturating_add(1)) >= cap);
        let d = b.delay(retry);
        prop_assert!(d <= cap);
        match jitter {
            Jitter::None => prop_assert_eq!(d, cap),
            Jitter::Equal => prop_assert!(d >= cap / 2),
            Jitter::Full => {}
        }
    }
}

#[test]
fn validate_rejects_bad_policies() {
    RetryPolicy::default().validate().unwrap();
    RetryPolicy::no_retry().validate().unwrap();
    assert_eq!(RetryPolicy::no_retry().max_attempts, 1);
    type Tweak = fn(&mut RetryPolicy);
    let cases: &[(&str, Tweak)] = &[
        ("max_attempts", |p| p.max_attempts = 0),
        ("multiplier", |p| p.backoff.multiplier = 0.5),
        ("multiplier", |p| p.backoff.multiplier = f64::NAN),
        ("multiplier", |p| p.backoff.multiplier = f64::INFINITY),
        ("backoff.initial", |p| p.backoff.initial = MS(5_000)),
        ("attempt_timeout", |p| {
            p.attempt_timeout = Some(Duration::ZERO)
        }),
        ("deadline", |p| p.deadline = Some(Duration::ZERO)),
        ("retry_ratio", |p| {
            p.budget.as_mut().unwrap().retry_ratio = -0.1
        }),
        ("retry_ratio", |p| {
            p.budget.as_mut().unwrap().retry_ratio = 1000.5
        }),
        ("retry_ratio", |p| {
            p.budget.as_mut().unwrap().retry_ratio = f64::NAN
        }),
        ("ttl", |p| p.budget.as_mut().unwrap().ttl = MS(500)),
        ("ttl", |p| {
            p.budget.as_mut().unwrap().ttl = Duration::from_secs(61)
        }),
    ];
    for (field, tweak) in cases {
        let mut p = RetryPolicy::default();
        tweak(&mut p);
        let err = p.validate().expect_err(field);
        assert_eq!(err.code(), crate::error::ErrorCode::Config);
        assert!(err.to_string().contains(field), "{field}: {err}");
    }
    let mut p = RetryPolicy::default();
    p.budget.as_mut().unwrap().retry_ratio = 1000.0;
    p.budget.as_mut().unwrap().min_per_sec = 0;
    p.attempt_timeout = None;
    p.validate().unwrap();
}

#[test]
fn policy_yaml_round_trip() {
    let yaml = "
max_attempts: 5
backoff:
  initial: 50ms
  max: 2s
  multiplier: 1.5
  jitter: equal
attempt_timeout: null
deadline: 1m 30s
budget:
  ttl: 10s
  min_per_sec: 20
  retry_ratio: 0.1
";
    let p: RetryPolicy = serde_yaml_ng::from_str(yaml).unwrap();
    assert_eq!(
        p,
        RetryPolicy {
            max_attempts: 5,
            backoff: Backoff {
                initial: MS(50),
                max: Duration::from_secs(2),
                multiplier: 1.5,
                jitter: Jitter::Equal,
            },
            attempt_timeout: None,
            deadline: Some(Duration::from_secs(90)),
            budget: Some(BudgetConfig {
                ttl: Duration::from_secs(10),
                min_per_sec: 20,
                retry_ratio: 0.1,
            }),
        }
    );
    p.validate().unwrap();
    let text = serde_yaml_ng::to_string(&p).unwrap();
    assert!(text.contains("50ms") && text.contains("2s"), "{text}");
    let back: RetryPolicy = serde_yaml_ng::from_str(&text).unwrap();
    assert_eq!(back, p);

    // Everything optional; omitted fields take the defaults.
    let d: RetryPolicy = serde_yaml_ng::from_str("max_attempts: 2").unwrap();
    assert_eq!(d.backoff, Backoff::default());
    assert_eq!(d.attempt_timeout, Some(Duration::from_secs(30)));
    assert_eq!(d.budget, Some(BudgetConfig::default()));
    let none: RetryPolicy = serde_yaml_ng::from_str("budget: null").unwrap();
    assert_eq!(none.budget, None);
    assert!(serde_yaml_ng::from_str::<RetryPolicy>("max_attempt: 2").is_err());
    assert!(serde_yaml_ng::from_str::<RetryPolicy>("deadline: soon").is_err());

    let i: Idempotency = serde_yaml_ng::from_str("idempotent").unwrap();
    assert!(i.is_idempotent());
    assert!(!Idempotency::default().is_idempotent());
}

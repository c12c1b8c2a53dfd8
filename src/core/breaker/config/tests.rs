//! Unit tests of breaker configuration: validation and deserialization.

use super::*;

#[test]
fn validate_rejects_bad_configs() {
    BreakerConfig::default().validate().unwrap();
    type Tweak = fn(&mut BreakerConfig);
    let cases: &[(&str, Tweak)] = &[
        ("failure_rate_threshold", |c| c.failure_rate_threshold = 0.0),
        ("failure_rate_threshold", |c| {
            c.failure_rate_threshold = 50.0
        }),
        ("failure_rate_threshold", |c| {
            c.failure_rate_threshold = f64::NAN
        }),
        ("slow_call_rate_threshold", |c| {
            c.slow_call_rate_threshold = -0.1
        }),
        ("slow_call_duration", |c| {
            c.slow_call_duration = Duration::ZERO
        }),
        ("minimum_calls", |c| c.minimum_calls = 0),
        ("consecutive_failures", |c| c.consecutive_failures = Some(0)),
        ("open_duration", |c| c.open_duration = Duration::ZERO),
        ("half_open_max_calls", |c| c.half_open_max_calls = 0),
        ("half_open_max_calls", |c| c.half_open_max_calls = 1_000_000),
        ("window.size", |c| {
            c.window = SlidingWindow::Count { size: 0 }
        }),
        ("window.size", |c| {
            c.window = SlidingWindow::Count { size: 1_000_000 }
        }),
        ("window.buckets", |c| {
            c.window = SlidingWindow::Time {
                duration: Duration::from_secs(10),
                buckets: 0,
            }
        }),
        ("window.duration", |c| {
            c.window = SlidingWindow::Time {
                duration: Duration::from_millis(5),
                buckets: 10,
            }
        }),
    ];
    for (field, tweak) in cases {
        let mut c = BreakerConfig::default();
        tweak(&mut c);
        let err = c.validate().expect_err(field);
        assert_eq!(err.code(), crate::error::ErrorCode::Config);
        assert!(err.to_string().contains(field), "{field}: {err}");
    }
}

#[test]
fn config_deserializes_with_defaults_and_humantime() {
    let c: BreakerConfig = serde_yaml_ng::from_str(
        "window: { type: time, duration: 30s }\nopen_duration: 1m\nconsecutive_failures: null\n",
    )
    .unwrap();
    assert_eq!(
        c.window,
        SlidingWindow::Time {
            duration: Duration::from_secs(30),
            buckets: 10
        }
    );
    assert_eq!(c.open_duration, Duration::from_secs(60));
    assert_eq!(c.consecutive_failures, None);
    assert_eq!(c.half_open_max_calls, 3);
    c.validate().unwrap();
    let back: BreakerConfig =
        serde_yaml_ng::from_str(&serde_yaml_ng::to_string(&c).unwrap()).unwrap();
    assert_eq!(back, c);
    assert!(serde_yaml_ng::from_str::<BreakerConfig>("failure_rate: 0.5").is_err());
}

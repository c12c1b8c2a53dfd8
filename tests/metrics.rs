//! The documented metric names are emitted through the `metrics` facade,
//! with the documented labels, and count what happened.

use failover_pool::core::events::names;
use failover_pool::core::retry::{Backoff, RetryPolicy};
use failover_pool::core::{Classified, Endpoint, Failover, Priority};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Capture {
    counters: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    histograms: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
}

struct CountingHistogram(Arc<AtomicU64>);
impl metrics::HistogramFn for CountingHistogram {
    fn record(&self, _value: f64) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

fn render(key: &Key) -> String {
    let mut labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    labels.sort();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl Recorder for Capture {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let c = Arc::clone(
            self.counters
                .lock()
                .unwrap()
                .entry(render(key))
                .or_default(),
        );
        Counter::from_arc(c)
    }
    fn register_gauge(&self, _key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let c = Arc::clone(
            self.histograms
                .lock()
                .unwrap()
                .entry(render(key))
                .or_default(),
        );
        Histogram::from_arc(Arc::new(CountingHistogram(c)))
    }
}

#[test]
fn executor_metrics_have_documented_names_and_labels() {
    let capture = Capture::default();
    metrics::with_local_recorder(&capture, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let dead = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let live_port = live.local_addr().unwrap().port();
            let f = Failover::builder("m")
                .endpoint(Endpoint::new("dead", "127.0.0.1", dead))
                .endpoint(Endpoint::new("live", "127.0.0.1", live_port))
                .strategy(Priority::default())
                .retry(RetryPolicy {
                    backoff: Backoff {
                        initial: Duration::from_millis(1),
                        ..Backoff::default()
                    },
                    ..RetryPolicy::default()
                })
                .build()
                .unwrap();
            for _ in 0..3 {
                f.execute(|ep| async move {
                    tokio::net::TcpStream::connect(ep.endpoint().authority()).await?;
                    Ok::<_, Classified>(())
                })
                .await
                .unwrap();
            }
        });
    });
    let counters = capture.counters.lock().unwrap();
    let get = |k: &str| counters.get(k).map(|c| c.load(Ordering::Relaxed));
    assert_eq!(
        get(&format!(
            "{}{{manager=m,outcome=success}}",
            names::REQUESTS_TOTAL
        )),
        Some(3),
        "{counters:?}"
    );
    assert_eq!(
        get(&format!(
            "{}{{endpoint=live,manager=m,outcome=success}}",
            names::ATTEMPTS_TOTAL
        )),
        Some(3)
    );
    let dead_failures = get(&format!(
        "{}{{endpoint=dead,manager=m,outcome=failure}}",
        names::ATTEMPTS_TOTAL
    ))
    .unwrap();
    assert!(dead_failures >= 1);
    assert_eq!(
        get(&format!("{}{{manager=m}}", names::FAILOVERS_TOTAL)),
        Some(dead_failures)
    );
    assert_eq!(
        get(&format!("{}{{manager=m}}", names::RETRIES_TOTAL)),
        Some(dead_failures)
    );
    let histograms = capture.histograms.lock().unwrap();
    assert_eq!(
        histograms[&format!("{}{{manager=m}}", names::REQUEST_DURATION_SECONDS)]
            .load(Ordering::Relaxed),
        3
    );
    assert!(
        counters
            .keys()
            .chain(histograms.keys())
            .all(|k| k.starts_with("failover_"))
    );
}

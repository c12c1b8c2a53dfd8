//! [`run_http_drill`]: backends, client, open-loop load, the fault on
//! `b0` and its end, then the figures; and [`write_http_outputs`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::events::{describe, takes_out};
use super::load::{Call, Kind, Outcome, open_loop};
use super::report::{HttpBucket, HttpDrillReport, MethodErrors};
use super::{HttpDrillOptions, HttpFault};
use crate::core::{
    Backoff, HealthCheckConfig, HedgeDelay, HttpCheck, Jitter, OutlierConfig, RetryPolicy,
};
use crate::drill::DrillError;
use crate::drill::event_log::EventLog;
use crate::drill::figures::{micros, ms, ms_f64, percentile};
use crate::drill::http::{BackendMode, LocalHttpBackends};
use crate::http::FailoverClient;

/// The timeline's bucket.
const BUCKET: Duration = Duration::from_millis(250);
/// A `flap` backend's half period.
const FLAP_EVERY: Duration = Duration::from_millis(300);
/// Errors kept as text.
const ERROR_SAMPLES: usize = 10;

/// Runs an HTTP drill (see the [module docs](super)); `progress` gets a
/// line about once a second.
///
/// # Errors
///
/// [`DrillError::InvalidOptions`], [`DrillError::Proxy`] (a backend could
/// not listen or be restarted), [`DrillError::Pool`] (the client could
/// not be built) or [`DrillError::Task`].
pub async fn run_http_drill(
    opts: &HttpDrillOptions,
    mut progress: impl FnMut(&str),
) -> Result<HttpDrillReport, DrillError> {
    opts.validate()?;
    progress("starting the backends and the client ...");
    let listen_err = |source| DrillError::Proxy {
        node: "http backends".into(),
        source,
    };
    let backends = LocalHttpBackends::start(opts.backends)
        .await
        .map_err(listen_err)?;
    let client = build_client(opts, &backends)?;
    let target: Arc<str> = format!("127.0.0.1:{}", backends.port(0)).into();

    let origin = Instant::now();
    let events = {
        let target = Arc::clone(&target);
        let describe = move |e: &crate::core::Event| describe(e, &target);
        EventLog::start(client.failover().subscribe(), origin, "client", describe)
    };
    let counts = Arc::new(Mutex::new((0u64, 0u64)));
    let load = {
        let (client, counts) = (client.clone(), counts.clone());
        let (rate, duration) = (opts.rate, opts.duration);
        tokio::spawn(async move { open_loop(&client, rate, origin, duration, counts).await })
    };

    tokio::time::sleep_until((origin + opts.fault_at).into()).await;
    let fault_at = origin.elapsed();
    inject(opts, &backends);
    events.drill("fault", format!("{} on {target}", opts.fault.as_str()));
    let over = origin + opts.fault_at + opts.outage;
    let mut shown = 0;
    while Instant::now() < over {
        if opts.fault == HttpFault::Flap {
            flap(&backends).await.map_err(listen_err)?;
        }
        tokio::time::sleep(FLAP_EVERY.min(over.saturating_duration_since(Instant::now()))).await;
        let t = origin.elapsed().as_secs();
        if t != shown {
            shown = t;
            let (ok, err) = *counts.lock().unwrap_or_else(|e| e.into_inner());
            progress(&format!("{t:>3}s  {ok} answered, {err} failed  (fault on)"));
        }
    }
    end(opts, &backends).await.map_err(listen_err)?;
    let recovered_at = origin.elapsed();
    events.drill("fault over", recovery_text(opts.fault).into());
    let calls = load
        .await
        .map_err(|e| DrillError::Task("http load".into(), e))?;
    progress("load done; counting ...");
    let (events, failovers) = events.finish();
    let totals = client.stats().totals;
    client.close();

    let mut report = HttpDrillReport {
        store: "http".into(),
        fault: opts.fault,
        backends: opts.backends,
        target: target.to_string(),
        rate: opts.rate,
        duration_ms: ms(opts.duration),
        fault_at_ms: ms(fault_at),
        recovered_at_ms: ms(recovered_at),
        try_timeout_ms: ms(opts.try_timeout),
        max_attempts: opts.max_attempts,
        hedge_ms: opts.hedge.map(ms),
        requests: calls.len() as u64,
        ok: calls.iter().filter(|c| c.ok()).count() as u64,
        caller_errors_idempotent: 0,
        caller_errors_non_idempotent: 0,
        may_have_executed_errors: 0,
        non_idempotent_errors_not_executed: 0,
        executed_twice_non_idempotent: (backends.duplicated().iter())
            .filter(|(id, _)| id.starts_with(Kind::Post.id_prefix()))
            .count() as u64,
        by_method: Vec::new(),
        retries: totals.retries,
        retries_refused_by_budget: totals.budget_refusals,
        hedges: totals.hedges,
        failovers,
        p50_ms_before: 0.0,
        p99_ms_before: 0.0,
        p99_ms_during: 0.0,
        p99_ms_after: 0.0,
        eject_ms: (events.iter())
            .find(|e| e.t_ms >= ms(fault_at) && takes_out(e))
            .map(|e| e.t_ms - ms(fault_at)),
        readmit_ms: readmitted(&calls, &target, recovered_at),
        error_samples: Vec::new(),
        timeline: timeline(&calls, &target),
        events,
        goals: Vec::new(),
        notes: Vec::new(),
    };
    count_errors(&mut report, &calls);
    latencies(&mut report, &calls, fault_at, recovered_at);
    if opts.fault == HttpFault::Freeze {
        report.notes.push(
            "freeze: the backend process keeps accepting connections and reading requests but never answers (an in-process server cannot be SIGSTOPped alone)".into(),
        );
    }
    report.set_goals();
    Ok(report)
}

/// The drill's client over every backend: round robin, `max_attempts`
/// tries of `try_timeout`, a short backoff, the default retry budget,
/// outlier detection after 3 failures in a row, an active `/health`
/// check every 200 ms.
fn build_client(
    opts: &HttpDrillOptions,
    backends: &LocalHttpBackends,
) -> Result<FailoverClient, DrillError> {
    let mut b = FailoverClient::builder("drill")
        .retry(RetryPolicy {
            max_attempts: opts.max_attempts,
            backoff: Backoff {
                initial: Duration::from_millis(5),
                max: Duration::from_millis(100),
                multiplier: 2.0,
                jitter: Jitter::Full,
            },
            attempt_timeout: Some(opts.try_timeout),
            ..RetryPolicy::default()
        })
        .outlier(OutlierConfig {
            consecutive_failures: 3,
            interval: Duration::from_millis(100),
            base_ejection: Duration::from_secs(1),
            ..OutlierConfig::default()
        })
        .health_check(HttpCheck::new())
        .health_config(HealthCheckConfig {
            interval: Duration::from_millis(200),
            timeout: Duration::from_millis(150),
            ..HealthCheckConfig::default()
        });
    if let Some(h) = opts.hedge {
        b = b.hedging(HedgeDelay::Fixed(h));
    }
    for url in backends.urls() {
        b = b.url(&url).map_err(DrillError::Pool)?;
    }
    b.build().map_err(DrillError::Pool)
}

/// Starts the fault on `b0`.
fn inject(opts: &HttpDrillOptions, backends: &LocalHttpBackends) {
    match opts.fault {
        HttpFault::Crash | HttpFault::Flap => backends.kill(0),
        HttpFault::Freeze => backends.set_mode(0, BackendMode::Hang),
        HttpFault::Slow => backends.set_mode(0, BackendMode::Slow(opts.slow_delay)),
    }
}

/// One flap: back up if down, down if up.
async fn flap(backends: &LocalHttpBackends) -> std::io::Result<()> {
    if backends.is_running(0) {
        backends.kill(0);
        Ok(())
    } else {
        backends.restart(0).await
    }
}

/// Ends the fault: `b0` running and answering normally.
async fn end(opts: &HttpDrillOptions, backends: &LocalHttpBackends) -> std::io::Result<()> {
    match opts.fault {
        HttpFault::Crash | HttpFault::Flap => {
            if !backends.is_running(0) {
                backends.restart(0).await?;
            }
        }
        HttpFault::Freeze | HttpFault::Slow => backends.set_mode(0, BackendMode::Ok),
    }
    Ok(())
}

const fn recovery_text(fault: HttpFault) -> &'static str {
    match fault {
        HttpFault::Crash => "backend restarted",
        HttpFault::Freeze => "backend answers again",
        HttpFault::Slow => "backend fast again",
        HttpFault::Flap => "backend up for good",
    }
}

/// Errors by kind of request, and the samples.
fn count_errors(r: &mut HttpDrillReport, calls: &[Call]) {
    let mut by: BTreeMap<Kind, (u64, u64)> = BTreeMap::new();
    for c in calls {
        let entry = by.entry(c.kind).or_default();
        entry.0 += 1;
        if c.ok() {
            continue;
        }
        entry.1 += 1;
        if c.kind.repeatable() {
            r.caller_errors_idempotent += 1;
        } else {
            r.caller_errors_non_idempotent += 1;
        }
        match &c.outcome {
            Outcome::Failed {
                may_have_executed,
                text,
            } => {
                if *may_have_executed {
                    r.may_have_executed_errors += 1;
                } else if !c.kind.repeatable() {
                    r.non_idempotent_errors_not_executed += 1;
                }
                if r.error_samples.len() < ERROR_SAMPLES {
                    r.error_samples.push(format!("{}: {text}", c.kind.as_str()));
                }
            }
            Outcome::Status(code) if r.error_samples.len() < ERROR_SAMPLES => {
                r.error_samples
                    .push(format!("{}: HTTP {code}", c.kind.as_str()));
            }
            _ => {}
        }
    }
    r.by_method = (by.into_iter())
        .map(|(kind, (requests, errors))| MethodErrors {
            method: kind.as_str().into(),
            requests,
            errors,
        })
        .collect();
}

/// p50/p99 before, during and after the fault.
fn latencies(r: &mut HttpDrillReport, calls: &[Call], fault: Duration, over: Duration) {
    let window = |from: Duration, to: Duration| {
        let mut d: Vec<f64> = (calls.iter())
            .filter(|c| c.at >= from && c.at < to)
            .map(|c| ms_f64(c.took))
            .collect();
        d.sort_by(f64::total_cmp);
        d
    };
    let before = window(Duration::ZERO, fault);
    r.p50_ms_before = percentile(&before, 0.5);
    r.p99_ms_before = percentile(&before, 0.99);
    r.p99_ms_during = percentile(&window(fault, over), 0.99);
    r.p99_ms_after = percentile(&window(over, Duration::MAX), 0.99);
}

/// From `over` to the end of the first call `target` answered that
/// started after it.
fn readmitted(calls: &[Call], target: &str, over: Duration) -> Option<u64> {
    (calls.iter())
        .filter(|c| c.at >= over)
        .filter(|c| matches!(&c.outcome, Outcome::Answered(Some(by)) if &**by == target))
        .map(|c| c.at + c.took)
        .min()
        .map(|done| ms(done - over))
}

/// The calls per [`BUCKET`].
fn timeline(calls: &[Call], target: &str) -> Vec<HttpBucket> {
    let end = calls.iter().map(|c| c.at).max().unwrap_or_default();
    let n = (end.as_millis() / BUCKET.as_millis()) as usize + 1;
    let mut took: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut errors = vec![0u64; n];
    let mut on_target = vec![0u64; n];
    for c in calls {
        let i = (c.at.as_millis() / BUCKET.as_millis()) as usize;
        took[i].push(ms_f64(c.took));
        errors[i] += u64::from(!c.ok());
        if matches!(&c.outcome, Outcome::Answered(Some(by)) if &**by == target) {
            on_target[i] += 1;
        }
    }
    (0..n)
        .map(|i| {
            took[i].sort_by(f64::total_cmp);
            HttpBucket {
                t_ms: i as u64 * ms(BUCKET),
                requests: took[i].len() as u64,
                errors: errors[i],
                p99_ms: micros(percentile(&took[i], 0.99)),
                on_target: on_target[i],
            }
        })
        .collect()
}

/// Writes the JSON report and the SVG chart where `opts` asks for them.
///
/// # Errors
///
/// [`DrillError::Output`].
pub fn write_http_outputs(
    report: &HttpDrillReport,
    opts: &HttpDrillOptions,
) -> Result<(), DrillError> {
    crate::drill::run::write_report_files(report, opts.json.as_ref(), opts.svg.as_ref(), || {
        report.render_svg()
    })
}

//! [`Failover::execute_hedged`]: an idempotent call that sends a second
//! copy to another endpoint when the first is slow, takes whichever
//! answers first and cancels the other; the copy is paid for from the
//! retry budget, so hedging cannot storm a struggling service.

use super::{CallOptions, Classify, Failover, Served};
use crate::core::clock::now_nanos;
use crate::core::retry::Idempotency;
use crate::core::set::LiveEndpoint;
use crate::core::stats::LatencyHistogram;
use crate::core::strategy::Excluded;
use crate::error::{BoxError, Result};
use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// When a hedged call sends its second copy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HedgeDelay {
    /// After this long without an answer.
    Fixed(Duration),
    /// After the manager's latency at this quantile (e.g. `0.95`), but not
    /// before `min`; `min` alone until enough calls were measured (100).
    Quantile {
        /// The quantile, in `(0, 1)`.
        quantile: f64,
        /// The earliest a copy is sent.
        min: Duration,
    },
}

/// Calls measured before a [`HedgeDelay::Quantile`] trusts the histogram.
const MIN_SAMPLES: u64 = 100;

impl HedgeDelay {
    /// The delay now, given the manager's latency histogram.
    fn resolve(self, latency: &LatencyHistogram) -> Duration {
        match self {
            HedgeDelay::Fixed(d) => d,
            HedgeDelay::Quantile { quantile, min } => {
                if latency.summary().count < MIN_SAMPLES {
                    min
                } else {
                    latency.quantile(quantile).max(min)
                }
            }
        }
    }
}

impl Failover {
    /// Runs an idempotent `op` with failover, like
    /// [`execute_with`](Self::execute_with), and **hedges** it: when no
    /// answer came within `delay`, a second copy starts on another endpoint
    /// (when the retry budget allows one); the first success wins and the
    /// other copy is dropped (cancelled). When one copy fails, the other's
    /// outcome is the call's.
    ///
    /// A call that is not idempotent (`opts`) is never hedged: it runs
    /// exactly as [`execute_with`](Self::execute_with).
    ///
    /// ```no_run
    /// use failover_pool::core::{CallOptions, Endpoint, Failover, HedgeDelay};
    /// use std::time::Duration;
    ///
    /// # async fn demo() -> failover_pool::Result<()> {
    /// let failover = Failover::builder("search")
    ///     .endpoint(Endpoint::new("a", "10.0.0.1", 8080))
    ///     .endpoint(Endpoint::new("b", "10.0.0.2", 8080))
    ///     .build()?;
    /// let delay = HedgeDelay::Quantile { quantile: 0.95, min: Duration::from_millis(20) };
    /// let served = failover
    ///     .execute_hedged(CallOptions::idempotent(), delay, |ep| async move {
    ///         Ok::<_, std::io::Error>(ep.id().to_owned())
    ///     })
    ///     .await?;
    /// # let _ = served; Ok(()) }
    /// ```
    pub async fn execute_hedged<T, E, F, Fut>(
        &self,
        opts: CallOptions,
        delay: HedgeDelay,
        op: F,
    ) -> Result<Served<T>>
    where
        F: FnMut(Arc<LiveEndpoint>) -> Fut + Clone,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: Classify + Into<BoxError>,
    {
        if !matches!(opts.idempotency, Idempotency::Idempotent) {
            return self.execute_with(opts, op).await;
        }
        let delay = delay.resolve(&self.inner.latency);
        // Where the first copy runs now, so that the second goes elsewhere.
        let current: Arc<Mutex<Option<Arc<str>>>> = Arc::default();
        let first = {
            let (current, mut op) = (Arc::clone(&current), op.clone());
            self.execute_with(opts, move |ep: Arc<LiveEndpoint>| {
                *current.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(Arc::clone(&ep.endpoint().id));
                op(ep)
            })
        };
        let mut first = std::pin::pin!(first);
        tokio::select! {
            biased;
            done = &mut first => return done,
            () = tokio::time::sleep(delay) => {}
        }
        if let Some(budget) = &self.inner.budget
            && !budget.try_withdraw_at(now_nanos())
        {
            self.inner.counters.budget_refusals.fetch_add(1, Relaxed);
            return first.await;
        }
        self.inner.counters.hedges.fetch_add(1, Relaxed);
        self.inner.metrics.hedges.increment(1);
        let avoid = current.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let excluded = self.positions_of(avoid.as_deref());
        let second = std::pin::pin!(self.execute_excluding(opts, excluded, op));
        race(first, second).await
    }

    /// The positions of the endpoint `id` in the current snapshot, as an
    /// [`Excluded`] set.
    fn positions_of(&self, id: Option<&str>) -> Excluded {
        let mut excluded = Excluded::new();
        if let Some(id) = id {
            let snap = self.inner.set.snapshot();
            for (i, ep) in snap.endpoints().iter().enumerate() {
                if ep.id() == id {
                    excluded.insert(i);
                }
            }
        }
        excluded
    }
}

/// The first success of two calls, or the second outcome when the first
/// to finish failed.
async fn race<T>(
    mut a: std::pin::Pin<&mut impl Future<Output = Result<T>>>,
    mut b: std::pin::Pin<&mut impl Future<Output = Result<T>>>,
) -> Result<T> {
    tokio::select! {
        done = &mut a => match done {
            Ok(v) => Ok(v),
            Err(_) => b.await,
        },
        done = &mut b => match done {
            Ok(v) => Ok(v),
            Err(_) => a.await,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Endpoint;
    use crate::core::strategy::Priority;
    use std::sync::atomic::AtomicU32;

    /// `a` (picked first) answers after 500 ms, `b` at once.
    fn manager() -> Failover {
        Failover::builder("hedge")
            .endpoint(Endpoint::new("a", "127.0.0.1", 1))
            .endpoint(Endpoint::new("b", "127.0.0.1", 2))
            .strategy(Priority::new(Duration::ZERO))
            .build()
            .expect("manager")
    }

    fn op(
        calls: Arc<AtomicU32>,
    ) -> impl FnMut(
        Arc<LiveEndpoint>,
    ) -> std::pin::Pin<Box<dyn Future<Output = std::io::Result<String>> + Send>>
    + Clone {
        move |ep: Arc<LiveEndpoint>| {
            calls.fetch_add(1, Relaxed);
            Box::pin(async move {
                if ep.id() == "a" {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Ok(ep.id().to_owned())
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_idempotent_call_is_answered_by_the_copy() {
        let m = manager();
        let calls = Arc::new(AtomicU32::new(0));
        let delay = HedgeDelay::Fixed(Duration::from_millis(20));
        let served = m
            .execute_hedged(CallOptions::idempotent(), delay, op(calls.clone()))
            .await
            .expect("served");
        assert_eq!(served.value, "b");
        assert_eq!(calls.load(Relaxed), 2);
        assert_eq!(m.stats().totals.hedges, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_that_is_not_idempotent_is_never_copied() {
        let m = manager();
        let calls = Arc::new(AtomicU32::new(0));
        let delay = HedgeDelay::Fixed(Duration::from_millis(20));
        let served = m
            .execute_hedged(CallOptions::default(), delay, op(calls.clone()))
            .await
            .expect("served");
        assert_eq!(served.value, "a");
        assert_eq!(calls.load(Relaxed), 1);
        assert_eq!(m.stats().totals.hedges, 0);
    }

    #[test]
    fn a_quantile_delay_waits_for_enough_samples() {
        let h = LatencyHistogram::new();
        let d = HedgeDelay::Quantile {
            quantile: 0.9,
            min: Duration::from_millis(5),
        };
        assert_eq!(d.resolve(&h), Duration::from_millis(5));
        for _ in 0..200 {
            h.record(Duration::from_millis(40));
        }
        assert!(d.resolve(&h) >= Duration::from_millis(40));
    }
}

//! [`Failover::execute`] and its variants: one operation run with failover,
//! as a loop over named steps: wait before a retry (budget, backoff,
//! deadline), pick an endpoint, admit the call through its breaker, run one
//! attempt within its timeout, then record the outcome and decide whether to
//! retry.

use super::{CallOptions, Classify, Failover, Served};
use crate::core::breaker::{BreakerPermit, CallOutcome};
use crate::core::clock::{instant_of, nanos_of, now_nanos};
use crate::core::events::EventKind;
use crate::core::retry::Idempotency;
use crate::core::set::LiveEndpoint;
use crate::core::strategy::Excluded;
use crate::error::{BoxError, Error, ErrorClass, Result};
use std::future::Future;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::time::Instant;
use tracing::Instrument;

/// What one attempt of the operation returned: its value, or its error.
type AttemptResult<T> = std::result::Result<T, AttemptError>;

/// An attempt's error: its class, whether it counts against the endpoint
/// ([`Classify::counts_against_endpoint`]) and the error itself.
struct AttemptError {
    class: ErrorClass,
    against_endpoint: bool,
    error: BoxError,
}

impl AttemptError {
    fn of<E: Classify + Into<BoxError>>(e: E) -> Self {
        AttemptError {
            class: e.classify(),
            against_endpoint: e.counts_against_endpoint(),
            error: e.into(),
        }
    }
}

/// The state of one call across its attempts.
#[derive(Debug)]
struct CallState {
    started: Instant,
    /// Clock time of the latest point the call reached (its start, the end of
    /// a backoff, the end of an attempt); the call's duration is measured to it.
    clock: u64,
    deadline: Option<Instant>,
    idempotent: bool,
    /// Positions already tried, so a retry goes elsewhere when it can.
    excluded: Excluded,
    /// The current attempt, from 1.
    attempt: u32,
    may_have_executed: bool,
    /// The endpoint of the previous attempt, to report a failover.
    previous: Option<Arc<str>>,
    /// The error of the previous attempt, reported if the budget stops the call.
    last_error: Option<Error>,
}

impl CallState {
    fn new(opts: CallOptions, policy_deadline: Option<Duration>, excluded: Excluded) -> Self {
        let started = Instant::now();
        CallState {
            started,
            clock: nanos_of(started),
            deadline: opts.deadline.or(policy_deadline).map(|d| started + d),
            idempotent: matches!(opts.idempotency, Idempotency::Idempotent),
            excluded,
            attempt: 0,
            may_have_executed: false,
            previous: None,
            last_error: None,
        }
    }
}

impl Failover {
    /// Runs `op` with failover under the manager's retry policy, treating it
    /// as *not* idempotent: after a failure that may have executed (a timeout
    /// or a connection cut mid-request) it is not retried and the error says
    /// so ([`Error::may_have_executed`]).
    #[doc(alias = "execute_with_failover")]
    pub async fn execute<T, E, F, Fut>(&self, op: F) -> Result<Served<T>>
    where
        F: FnMut(Arc<LiveEndpoint>) -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: Classify + Into<BoxError>,
    {
        self.execute_with(CallOptions::default(), op).await
    }

    /// Runs an idempotent `op` with failover: it is retried (on another
    /// endpoint when one exists) even after failures that may have executed.
    pub async fn execute_idempotent<T, E, F, Fut>(&self, op: F) -> Result<Served<T>>
    where
        F: FnMut(Arc<LiveEndpoint>) -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: Classify + Into<BoxError>,
    {
        self.execute_with(CallOptions::idempotent(), op).await
    }

    /// Runs `op` with failover and explicit [`CallOptions`].
    pub async fn execute_with<T, E, F, Fut>(&self, opts: CallOptions, op: F) -> Result<Served<T>>
    where
        F: FnMut(Arc<LiveEndpoint>) -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: Classify + Into<BoxError>,
    {
        self.execute_excluding(opts, Excluded::new(), op).await
    }

    /// [`execute_with`](Self::execute_with), starting with the endpoints
    /// at the positions in `excluded` already tried (they are picked only
    /// when nothing else is left).
    pub(super) async fn execute_excluding<T, E, F, Fut>(
        &self,
        opts: CallOptions,
        excluded: Excluded,
        mut op: F,
    ) -> Result<Served<T>>
    where
        F: FnMut(Arc<LiveEndpoint>) -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: Classify + Into<BoxError>,
    {
        let mut call = CallState::new(opts, self.inner.retry.deadline, excluded);
        self.inner.counters.requests.fetch_add(1, Relaxed);
        let result = loop {
            call.attempt += 1;
            if call.attempt > 1
                && let Err(e) = self.wait_for_retry(&mut call).await
            {
                break Err(e);
            }
            let now = call.clock;
            let ep = match self.pick_for_attempt(&mut call, now) {
                Ok(ep) => ep,
                // After failed attempts, their last error says more than
                // "nothing left to pick" (and may carry a response).
                Err(e) => match call.last_error.take() {
                    Some(last) => {
                        break Err(exhausted(call.attempt - 1, call.may_have_executed, last));
                    }
                    None => break Err(e),
                },
            };
            let permit = match self.admit(&ep, &mut call, now) {
                ControlFlow::Continue(Some(permit)) => permit,
                ControlFlow::Continue(None) => continue,
                ControlFlow::Break(e) => break Err(e),
            };
            let (outcome, elapsed) = self.run_attempt(&ep, &mut op, &mut call, now).await;
            match self.settle(&ep, permit, outcome, elapsed, &mut call) {
                ControlFlow::Break(result) => {
                    break result.map(|value| Served {
                        value,
                        endpoint: ep,
                        attempts: call.attempt,
                    });
                }
                ControlFlow::Continue(()) => {}
            }
        };
        self.finish_call(&call, result.is_ok());
        result
    }

    /// Before attempt 2 and later: takes a retry from the budget, then sleeps
    /// the backoff unless that would pass the call's deadline.
    async fn wait_for_retry(&self, call: &mut CallState) -> Result<()> {
        let inner = &*self.inner;
        if let Some(budget) = &inner.budget
            && !budget.try_withdraw_at(now_nanos())
        {
            inner.counters.budget_refusals.fetch_add(1, Relaxed);
            inner.metrics.budget_exhausted.increment(1);
            inner.events.emit(EventKind::RetryBudgetExhausted);
            return Err(Error::RetryBudgetExhausted {
                attempts: call.attempt - 1,
                may_have_executed: call.may_have_executed,
                last: Box::new(call.last_error.take().unwrap_or(Error::Closed)),
            });
        }
        inner.counters.retries.fetch_add(1, Relaxed);
        inner.metrics.retries.increment(1);
        let delay = inner.retry.backoff.delay(call.attempt - 2);
        let wake = Instant::now() + delay;
        if let Some(d) = call.deadline
            && wake >= d
        {
            return Err(Error::Timeout {
                what: "call",
                after: d - call.started,
                may_have_executed: call.may_have_executed,
            });
        }
        tokio::time::sleep_until(wake).await;
        call.clock = now_nanos();
        Ok(())
    }

    /// Picks the endpoint of this attempt (one not tried yet when possible)
    /// and reports a failover when it differs from the previous attempt's.
    fn pick_for_attempt(&self, call: &mut CallState, now: u64) -> Result<Arc<LiveEndpoint>> {
        let inner = &*self.inner;
        let (index, ep) = self.pick_excluding(&call.excluded, now)?;
        if let Some(prev) = &call.previous
            && **prev != *ep.id()
        {
            inner.counters.failovers.fetch_add(1, Relaxed);
            inner.metrics.failovers.increment(1);
            inner.events.emit(EventKind::Failover {
                from: Arc::clone(prev),
                to: Arc::clone(&ep.endpoint().id),
                attempt: call.attempt,
            });
        }
        call.previous = Some(Arc::clone(&ep.endpoint().id));
        call.excluded.insert(index);
        Ok(ep)
    }

    /// Asks the endpoint's breaker for a permit. A refusal is this attempt's
    /// failure: `Continue(None)` moves on to the next attempt, `Break` ends
    /// the call when no attempt is left.
    fn admit<'a>(
        &self,
        ep: &'a LiveEndpoint,
        call: &mut CallState,
        now: u64,
    ) -> ControlFlow<Error, Option<BreakerPermit<'a>>> {
        match ep.breaker().try_acquire(now) {
            Ok(permit) => {
                if let Some(t) = permit.transition() {
                    self.breaker_event(ep, t);
                }
                ControlFlow::Continue(Some(permit))
            }
            Err(_) => {
                let err = Error::CircuitOpen {
                    endpoint: ep.id().to_owned(),
                };
                if call.attempt >= self.inner.retry.max_attempts {
                    return ControlFlow::Break(exhausted(
                        call.attempt,
                        call.may_have_executed,
                        err,
                    ));
                }
                call.last_error = Some(err);
                ControlFlow::Continue(None)
            }
        }
    }

    /// Runs `op` once on `ep`, counted as in flight, within the attempt
    /// timeout (capped by what is left of the deadline) and in a tracing
    /// span. Returns what it returned and how long it took.
    async fn run_attempt<T, E, F, Fut>(
        &self,
        ep: &Arc<LiveEndpoint>,
        op: &mut F,
        call: &mut CallState,
        now: u64,
    ) -> (AttemptResult<T>, Duration)
    where
        F: FnMut(Arc<LiveEndpoint>) -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: Classify + Into<BoxError>,
    {
        self.inner.counters.attempts.fetch_add(1, Relaxed);
        let guard = ep.start_call();
        let attempt_started = instant_of(now);
        let timeout = attempt_timeout(
            self.inner.retry.attempt_timeout,
            call.deadline,
            attempt_started,
        );
        let span = tracing::debug_span!("failover.attempt", manager = %self.inner.name, endpoint = %ep.id(), attempt = call.attempt);
        let fut = op(Arc::clone(ep)).instrument(span);
        let outcome = match timeout {
            Some(t) => match tokio::time::timeout_at(attempt_started + t, fut).await {
                Ok(r) => r.map_err(AttemptError::of),
                Err(_) => Err(AttemptError::of(Error::Timeout {
                    what: "attempt",
                    after: t,
                    may_have_executed: true,
                })),
            },
            None => fut.await.map_err(AttemptError::of),
        };
        drop(guard);
        let ended = Instant::now();
        call.clock = nanos_of(ended);
        (outcome, ended.saturating_duration_since(attempt_started))
    }

    /// Records the attempt (breaker, passive health, latency, retry budget)
    /// and decides: `Break` with the call's result, or `Continue` to retry.
    fn settle<T>(
        &self,
        ep: &Arc<LiveEndpoint>,
        permit: BreakerPermit<'_>,
        outcome: AttemptResult<T>,
        elapsed: Duration,
        call: &mut CallState,
    ) -> ControlFlow<Result<T>> {
        let now = call.clock;
        match outcome {
            Ok(value) => {
                self.record_permit(ep, permit, CallOutcome::Success, elapsed, now);
                self.record_attempt(ep, true, elapsed, now);
                if let Some(b) = &self.inner.budget {
                    b.deposit_at(now);
                }
                ControlFlow::Break(Ok(value))
            }
            Err(AttemptError {
                class: ErrorClass::Application,
                error: source,
                ..
            }) => {
                // The server answered: it is healthy; the error is the caller's.
                self.record_permit(ep, permit, CallOutcome::Ignored, elapsed, now);
                self.record_attempt(ep, true, elapsed, now);
                ControlFlow::Break(Err(Error::backend(
                    ep.id(),
                    ErrorClass::Application,
                    source,
                )))
            }
            Err(AttemptError {
                class: class @ ErrorClass::Failover { may_have_executed },
                against_endpoint,
                error: source,
            }) => {
                if against_endpoint {
                    self.record_permit(ep, permit, CallOutcome::Failure, elapsed, now);
                    self.record_attempt(ep, false, elapsed, now);
                } else {
                    // The server is fine, it asked to be left alone: move on
                    // without a verdict on it.
                    self.record_permit(ep, permit, CallOutcome::Ignored, elapsed, now);
                }
                let err = match source.downcast::<Error>() {
                    Ok(e) => *e,
                    Err(source) => Error::backend(ep.id(), class, source),
                };
                self.retry_after_failure(call, may_have_executed, err)
                    .map_break(Err)
            }
        }
    }

    /// Records the attempt's outcome in the breaker and reports the
    /// transition it caused.
    fn record_permit(
        &self,
        ep: &LiveEndpoint,
        permit: BreakerPermit<'_>,
        outcome: CallOutcome,
        elapsed: Duration,
        now: u64,
    ) {
        if let Some(t) = permit.record(outcome, elapsed, now) {
            self.breaker_event(ep, t);
        }
    }

    /// After a failover-class failure: retry unless the operation may have
    /// executed and is not idempotent (a retry could apply it twice), or no
    /// attempt is left.
    fn retry_after_failure(
        &self,
        call: &mut CallState,
        may_have_executed: bool,
        err: Error,
    ) -> ControlFlow<Error> {
        call.may_have_executed |= may_have_executed;
        if may_have_executed && !call.idempotent {
            return ControlFlow::Break(if call.attempt == 1 {
                err
            } else {
                exhausted(call.attempt, true, err)
            });
        }
        if call.attempt >= self.inner.retry.max_attempts {
            return ControlFlow::Break(exhausted(call.attempt, call.may_have_executed, err));
        }
        call.last_error = Some(err);
        ControlFlow::Continue(())
    }

    /// Counts the finished call and its duration.
    fn finish_call(&self, call: &CallState, succeeded: bool) {
        let inner = &*self.inner;
        let elapsed = instant_of(call.clock).saturating_duration_since(call.started);
        inner.latency.record(elapsed);
        inner.metrics.duration.record(elapsed.as_secs_f64());
        if succeeded {
            inner.counters.successes.fetch_add(1, Relaxed);
            inner.metrics.requests_ok.increment(1);
        } else {
            inner.counters.failures.fetch_add(1, Relaxed);
            inner.metrics.requests_err.increment(1);
        }
    }
}

/// The limit of one attempt: the policy's attempt timeout, capped by what is
/// left of the call's deadline.
fn attempt_timeout(
    per_attempt: Option<Duration>,
    deadline: Option<Instant>,
    attempt_started: Instant,
) -> Option<Duration> {
    match (per_attempt, deadline) {
        (Some(t), Some(d)) => Some(t.min(d.saturating_duration_since(attempt_started))),
        (Some(t), None) => Some(t),
        (None, Some(d)) => Some(d.saturating_duration_since(attempt_started)),
        (None, None) => None,
    }
}

fn exhausted(attempts: u32, may_have_executed: bool, last: Error) -> Error {
    Error::RetryExhausted {
        attempts,
        may_have_executed,
        last: Box::new(last),
    }
}

//! What a running drill tells its caller: [`Progress`] snapshots about
//! four times a second, and the loop that produces them while the
//! workload runs ([`observe`]).

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use super::cluster::DrillCluster;
use super::events::PoolEvents;
use super::options::DrillError;
use super::state::DrillState;
use crate::drill::workload::{DrillDriver, Workload, writer_id};
use crate::pool::FailoverPool;

/// How often the progress callback is called.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Where a drill is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Starting the cluster and the pool.
    Starting,
    /// The workload runs; no fault yet.
    BeforeFault,
    /// The fault was injected; no write started since has been acknowledged.
    FailingOver,
    /// Writes are acknowledged again after the fault.
    AfterFault,
    /// The workload stopped; healing the fault and checking the data.
    Checking,
}

impl Phase {
    /// The phase while the workload runs: before the fault, failing over
    /// (no write started after the fault acknowledged yet), or after it.
    fn of(fault_at: Option<Duration>, last_acked_start: Option<Duration>) -> Phase {
        match fault_at {
            None => Phase::BeforeFault,
            Some(f) if last_acked_start.is_some_and(|a| a >= f) => Phase::AfterFault,
            Some(_) => Phase::FailingOver,
        }
    }

    /// A short description.
    pub const fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::BeforeFault => "before fault",
            Phase::FailingOver => "failing over",
            Phase::AfterFault => "after fault",
            Phase::Checking => "checking",
        }
    }
}

/// A progress snapshot, given to [`run_drill`](super::run_drill)'s callback about four
/// times a second while the workload runs (and once when starting and
/// when checking).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progress {
    /// Time since the workload started.
    pub elapsed: Duration,
    /// The workload's planned duration.
    pub duration: Duration,
    /// Successful operations (writes and reads) per second over the last second.
    pub ops_per_sec: f64,
    /// Acknowledged writes so far.
    pub ok_writes: u64,
    /// Successful reads so far.
    pub ok_reads: u64,
    /// Failed operations so far.
    pub errors: u64,
    /// The pool's current writer, by node name.
    pub writer: Option<String>,
    /// Where the drill is.
    pub phase: Phase,
}

impl Progress {
    /// A snapshot that only says where the drill is (starting, checking).
    pub(super) fn status(phase: Phase, duration: Duration) -> Progress {
        Progress {
            elapsed: Duration::ZERO,
            duration,
            ops_per_sec: 0.0,
            ok_writes: 0,
            ok_reads: 0,
            errors: 0,
            writer: None,
            phase,
        }
    }

    /// One line for a terminal: elapsed, ops/s, errors, writer, phase.
    pub fn line(&self) -> String {
        match self.phase {
            Phase::Starting => "starting the cluster and the pool ...".to_owned(),
            Phase::Checking => {
                "workload stopped; healing the fault and checking the data ...".to_owned()
            }
            _ => format!(
                "{:>5.1}/{:.0}s  {:>6.0} ops/s  {:>6} errors  writer {:<4}  {}",
                self.elapsed.as_secs_f64(),
                self.duration.as_secs_f64(),
                self.ops_per_sec,
                self.errors,
                self.writer.as_deref().unwrap_or("none"),
                self.phase.as_str()
            ),
        }
    }
}

/// Successful operations per second over the last second, from samples
/// of the workload's running total.
#[derive(Debug, Default)]
struct Throughput {
    /// (elapsed, successful operations so far), the oldest at most a
    /// second before the newest.
    history: VecDeque<(Duration, u64)>,
}

impl Throughput {
    /// Adds a sample and returns the rate over the last second.
    fn sample(&mut self, elapsed: Duration, ok: u64) -> f64 {
        self.history.push_back((elapsed, ok));
        while self.history.len() > 1 && elapsed - self.history[0].0 > Duration::from_secs(1) {
            self.history.pop_front();
        }
        let (t_old, ok_old) = self.history[0];
        let span = (elapsed - t_old).as_secs_f64();
        if span > 0.0 {
            (ok - ok_old) as f64 / span
        } else {
            0.0
        }
    }
}

/// Lets the workload run until `duration` has passed since the drill's
/// start, or until the fault injection fails: drains the pool's events
/// and calls `report` every [`PROGRESS_EVERY`]. Returns the injection's
/// result when it finished meanwhile.
pub(super) async fn observe<B: DrillDriver, C: DrillCluster>(
    duration: Duration,
    state: &DrillState<C>,
    workload: &Workload<B>,
    pool: &FailoverPool<B>,
    events: &mut PoolEvents,
    injector: &mut JoinHandle<Result<(), DrillError>>,
    report: &mut impl FnMut(&Progress),
) -> Option<Result<(), DrillError>> {
    let t0 = state.t0;
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut throughput = Throughput::default();
    let mut injector_result: Option<Result<(), DrillError>> = None;
    let end = t0 + duration;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::time::sleep_until(end) => {}
            r = &mut *injector, if injector_result.is_none() => {
                let r = r.unwrap_or_else(|e| Err(DrillError::Task("fault injection".into(), e)));
                let failed = r.is_err();
                injector_result = Some(r);
                if failed {
                    break;
                }
            }
        }
        events.drain();
        let elapsed = t0.elapsed();
        if elapsed >= duration {
            break;
        }
        let c = workload.counters();
        let phase = Phase::of(state.fault_at(), workload.last_acked_start());
        report(&Progress {
            elapsed,
            duration,
            ops_per_sec: throughput.sample(elapsed, c.ok_writes + c.ok_reads),
            ok_writes: c.ok_writes,
            ok_reads: c.ok_reads,
            errors: c.errors,
            writer: writer_id(pool).map(|id| events.names().name(&id)),
            phase,
        });
    }
    injector_result
}

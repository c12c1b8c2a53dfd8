//! [`BackendMode`]: how a backend treats the requests it receives, and the
//! request sequence that [`BackendMode::EveryNth`] counts with.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How a backend of [`LocalHttpBackends`](super::LocalHttpBackends) treats
/// the requests it receives, set with
/// [`set_mode`](super::LocalHttpBackends::set_mode). See the
/// [module documentation](super) for what each mode means for health
/// checks and for the statistics.
///
/// Every mode reads the whole request (head and body) first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BackendMode {
    /// Execute the request and answer `200` with a JSON document
    /// `{"backend":"b0","method":"POST","path":"/x","body_len":N}` (plus
    /// `"request_id"` when the request carries `x-request-id`).
    #[default]
    Ok,
    /// Execute the request as soon as it has been read, then wait this
    /// long before answering as [`Ok`](Self::Ok). A client that gives up
    /// during the wait still leaves the execution behind, as with a real
    /// server that finishes its work whoever is still listening.
    Slow(Duration),
    /// Read the request and never answer; the request is not executed. The
    /// request stays pending until the client closes the connection or the
    /// backend is killed or dropped.
    Hang,
    /// Answer `code` without executing the request, with a `Retry-After`
    /// header (in whole seconds, rounded up) when `retry_after` is set.
    /// A code outside `100..=999` is answered as `500`.
    Status {
        /// The status code to answer with.
        code: u16,
        /// The delay to advertise in `Retry-After`, if any.
        retry_after: Option<Duration>,
    },
    /// Execute the request, then start a `200` response with a
    /// `Content-Length` whose body stops with an error after about half of
    /// it has been sent: the connection is aborted, the client sees the
    /// status and headers, then a failed body read.
    ResetMidBody,
    /// Execute the request, then close the connection without sending any
    /// response: the client's request fails although the work was done.
    DropAfterWork,
    /// Apply `mode` to every `n`-th request of this backend (the `n`-th,
    /// the `2n`-th, ...) and answer the others as [`Ok`](Self::Ok).
    /// Requests are counted from the moment the mode is set; health checks
    /// are not counted. `n` of `0` counts as `1`. Nested `EveryNth`s
    /// multiply: `every_nth(2, every_nth(3, m))` applies `m` to every 6th
    /// request.
    EveryNth {
        /// The period.
        n: u32,
        /// The mode applied to every `n`-th request.
        mode: Box<BackendMode>,
    },
}

/// The resolution of [`BackendMode::EveryNth`] for requests it leaves
/// alone.
static OK: BackendMode = BackendMode::Ok;

impl BackendMode {
    /// [`Status`](Self::Status) with `code` and no `Retry-After`.
    pub fn status(code: u16) -> Self {
        BackendMode::Status {
            code,
            retry_after: None,
        }
    }

    /// [`Status`](Self::Status) with `code` and a `Retry-After` of
    /// `retry_after` (whole seconds, rounded up).
    pub fn status_retry_after(code: u16, retry_after: Duration) -> Self {
        BackendMode::Status {
            code,
            retry_after: Some(retry_after),
        }
    }

    /// [`EveryNth`](Self::EveryNth): `mode` on every `n`-th request,
    /// [`Ok`](Self::Ok) otherwise.
    pub fn every_nth(n: u32, mode: BackendMode) -> Self {
        BackendMode::EveryNth {
            n,
            mode: Box::new(mode),
        }
    }

    /// The mode that applies to the `seq`-th request (counted from 1) under
    /// this mode; never an `EveryNth`.
    pub(super) fn resolve(&self, seq: u64) -> &BackendMode {
        match self {
            BackendMode::EveryNth { n, mode } => {
                let n = u64::from((*n).max(1));
                if seq.is_multiple_of(n) {
                    mode.resolve(seq / n)
                } else {
                    &OK
                }
            }
            other => other,
        }
    }
}

/// The mode in force on one backend together with the number of requests
/// it has seen, so that setting a mode starts a fresh count.
#[derive(Debug)]
pub(super) struct ModeCell {
    mode: BackendMode,
    seen: AtomicU64,
}

impl ModeCell {
    pub(super) fn new(mode: BackendMode) -> Self {
        ModeCell {
            mode,
            seen: AtomicU64::new(0),
        }
    }

    /// The mode as set.
    pub(super) fn mode(&self) -> &BackendMode {
        &self.mode
    }

    /// Counts one more (non-health) request and returns the mode that
    /// applies to it.
    pub(super) fn next_request(&self) -> &BackendMode {
        let seq = self.seen.fetch_add(1, Ordering::Relaxed) + 1;
        self.mode.resolve(seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(mode: &BackendMode, count: u64) -> Vec<BackendMode> {
        (1..=count).map(|seq| mode.resolve(seq).clone()).collect()
    }

    #[test]
    fn plain_modes_resolve_to_themselves() {
        assert_eq!(BackendMode::Hang.resolve(7), &BackendMode::Hang);
        assert_eq!(BackendMode::Ok.resolve(1), &BackendMode::Ok);
    }

    #[test]
    fn every_nth_applies_on_multiples() {
        let mode = BackendMode::every_nth(3, BackendMode::status(503));
        let got = resolved(&mode, 6);
        let s = BackendMode::status(503);
        let ok = BackendMode::Ok;
        assert_eq!(got, [ok.clone(), ok.clone(), s.clone(), ok.clone(), ok, s]);
    }

    #[test]
    fn every_nth_of_zero_or_one_applies_always() {
        for n in [0, 1] {
            let mode = BackendMode::every_nth(n, BackendMode::Hang);
            assert_eq!(resolved(&mode, 3), vec![BackendMode::Hang; 3]);
        }
    }

    #[test]
    fn nested_every_nth_multiplies() {
        let mode = BackendMode::every_nth(2, BackendMode::every_nth(3, BackendMode::Hang));
        let hangs: Vec<u64> = (1..=18)
            .filter(|&seq| *mode.resolve(seq) == BackendMode::Hang)
            .collect();
        assert_eq!(hangs, [6, 12, 18]);
    }

    #[test]
    fn cell_counts_from_one() {
        let cell = ModeCell::new(BackendMode::every_nth(2, BackendMode::Hang));
        assert_eq!(cell.next_request(), &BackendMode::Ok);
        assert_eq!(cell.next_request(), &BackendMode::Hang);
        assert_eq!(cell.mode(), &BackendMode::every_nth(2, BackendMode::Hang));
    }
}

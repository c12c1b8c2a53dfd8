//! The crate's error type, its machine-readable [`ErrorCode`], and the
//! classification every backend maps its own errors into.
//!
//! An [`Error`] always answers two questions a caller needs in an outage:
//! *what kind of failure is this* ([`Error::code`]) and *could the operation
//! have taken effect anyway* ([`Error::may_have_executed`]). The second one is
//! what decides whether a retry is safe.

use std::fmt;
use std::time::Duration;

/// A boxed error from a backend or a user's operation, kept as the `source` of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result alias with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error and its sources on one line, `: `-separated, for logs, events
/// and reports. A source whose text the line already contains (many errors
/// print their source themselves) is not repeated.
///
/// ```
/// let io = std::io::Error::other("disk full");
/// let err = failover_pool::Error::backend("db-1", failover_pool::ErrorClass::Application, io);
/// assert_eq!(failover_pool::error::chain(&err), "application error from `db-1`: disk full");
/// ```
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut s = error.to_string();
    let mut cur = error.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}

/// What kind of failure an [`Error`] is; stable and cheap to match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// No endpoint is configured or discovered at all.
    NoEndpoints,
    /// Endpoints exist but every one is unhealthy, ejected or behind an open breaker.
    AllEndpointsDown,
    /// An active health check failed.
    HealthCheckFailed,
    /// An attempt, an acquire or a whole call ran out of time.
    Timeout,
    /// The endpoint's circuit breaker refused the call.
    CircuitOpen,
    /// Every allowed attempt failed (the last failure is the source).
    RetryExhausted,
    /// The retry budget refused a retry (too many retries compared with successes).
    RetryBudgetExhausted,
    /// The node is read-only (a replica, or a demoted primary).
    ReadOnly,
    /// Two nodes claim to be the writer; the pool fenced one and refused the write.
    SplitBrain,
    /// A connection or transaction was cut by a failover: the outcome is unknown.
    OutcomeUnknown,
    /// No node of the kind asked for (the writer, a replica, …) was
    /// available within the acquire timeout.
    NoNode,
    /// The configuration is invalid.
    Config,
    /// A backend (database, cache, HTTP) error that is not a failover condition.
    Backend,
    /// The pool or manager was closed.
    Closed,
}

impl ErrorCode {
    /// The code as a short `snake_case` string, suitable for metric labels and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NoEndpoints => "no_endpoints",
            ErrorCode::AllEndpointsDown => "all_endpoints_down",
            ErrorCode::HealthCheckFailed => "health_check_failed",
            ErrorCode::Timeout => "timeout",
            ErrorCode::CircuitOpen => "circuit_open",
            ErrorCode::RetryExhausted => "retry_exhausted",
            ErrorCode::RetryBudgetExhausted => "retry_budget_exhausted",
            ErrorCode::ReadOnly => "read_only",
            ErrorCode::SplitBrain => "split_brain",
            ErrorCode::OutcomeUnknown => "outcome_unknown",
            ErrorCode::NoNode => "no_node",
            ErrorCode::Config => "config",
            ErrorCode::Backend => "backend",
            ErrorCode::Closed => "closed",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a failure relates to failover: the one question every backend answers
/// about its own errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The node or the path to it failed (refused, reset, timed out, shutting
    /// down, read-only): try another node and re-probe the topology.
    /// `may_have_executed` says whether the request could have reached the
    /// server before the failure.
    Failover {
        /// Whether the operation could have taken effect before it failed.
        may_have_executed: bool,
    },
    /// The application's own error (constraint violation, syntax, 4xx): the
    /// node is fine, never retry and never fail over.
    Application,
}

impl ErrorClass {
    /// A failover-class failure that certainly did not execute (e.g. connection refused).
    pub const fn not_executed() -> Self {
        ErrorClass::Failover {
            may_have_executed: false,
        }
    }

    /// A failover-class failure after the request may have reached the server.
    pub const fn maybe_executed() -> Self {
        ErrorClass::Failover {
            may_have_executed: true,
        }
    }

    /// Classifies an I/O error: a refused or unroutable connection never
    /// reached the server; any other I/O failure may have happened after the
    /// request was sent.
    pub fn of_io(error: &std::io::Error) -> Self {
        use std::io::ErrorKind::*;
        match error.kind() {
            ConnectionRefused | AddrNotAvailable | NotFound | HostUnreachable
            | NetworkUnreachable => ErrorClass::not_executed(),
            _ => ErrorClass::maybe_executed(),
        }
    }

    /// Whether this is a failover-class failure.
    pub const fn is_failover(self) -> bool {
        matches!(self, ErrorClass::Failover { .. })
    }
}

/// The crate's error.
///
/// Messages describe what this crate saw; the underlying backend error is
/// kept as [`std::error::Error::source`] and never repeated in the message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No endpoint is configured or discovered.
    #[error("no endpoints are configured or discovered")]
    NoEndpoints,
    /// Every endpoint is unavailable.
    #[error("all {total} endpoints are down (unhealthy, ejected or circuit open)")]
    AllEndpointsDown {
        /// How many endpoints exist.
        total: usize,
    },
    /// An active health check failed.
    #[error("health check of endpoint `{endpoint}` failed")]
    HealthCheckFailed {
        /// The endpoint checked.
        endpoint: String,
        /// Why it failed.
        #[source]
        source: Option<BoxError>,
    },
    /// Something ran out of time.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// What timed out ("attempt", "acquire", "call", "probe", ...).
        what: &'static str,
        /// The limit that was exceeded.
        after: Duration,
        /// Whether the timed-out operation may have executed.
        may_have_executed: bool,
    },
    /// The circuit breaker of an endpoint is open.
    #[error("circuit breaker of endpoint `{endpoint}` is open")]
    CircuitOpen {
        /// The endpoint whose breaker refused.
        endpoint: String,
    },
    /// All attempts failed.
    #[error("all {attempts} attempts failed")]
    RetryExhausted {
        /// How many attempts were made.
        attempts: u32,
        /// Whether any attempt may have executed.
        may_have_executed: bool,
        /// The last attempt's error.
        #[source]
        last: Box<Error>,
    },
    /// The retry budget refused another attempt.
    #[error("retry budget exhausted after {attempts} attempts")]
    RetryBudgetExhausted {
        /// How many attempts were made.
        attempts: u32,
        /// Whether any attempt may have executed.
        may_have_executed: bool,
        /// The last attempt's error.
        #[source]
        last: Box<Error>,
    },
    /// The node refused a write because it is read-only.
    #[error("node `{node}` is read-only")]
    ReadOnly {
        /// The node.
        node: String,
        /// The backend's error, when there is one.
        #[source]
        source: Option<BoxError>,
    },
    /// Two writers were seen; the write was refused.
    #[error("split brain: nodes {nodes:?} both report themselves primary")]
    SplitBrain {
        /// The nodes that claim to be writers.
        nodes: Vec<String>,
    },
    /// A failover cut the operation: it may or may not have been applied.
    #[error("outcome unknown: the connection to `{node}` failed during the operation")]
    OutcomeUnknown {
        /// The node the operation ran on.
        node: String,
        /// The failure.
        #[source]
        source: BoxError,
    },
    /// No node of the kind asked for appeared within the acquire timeout.
    #[error("no {wanted} available after waiting {waited:?}")]
    NoNode {
        /// What the caller asked for: "writer", "replica within the lag
        /// bounds", "node that has replayed the write token", …
        wanted: &'static str,
        /// How long the caller waited.
        waited: Duration,
        /// The last failure seen while trying nodes, if any.
        #[source]
        last: Option<BoxError>,
    },
    /// Invalid configuration.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An error from a backend or user operation.
    #[error(
        "{class_label} error from `{endpoint}`{during}",
        class_label = if class.is_failover() { "failover-class" } else { "application" },
        during = operation.map(|op| format!(" during {op}")).unwrap_or_default()
    )]
    Backend {
        /// The endpoint or node the operation ran against.
        endpoint: String,
        /// What this crate was doing when it failed ("probe", "promotion",
        /// "switchover", "write token", …); `None` for the caller's own operation.
        operation: Option<&'static str>,
        /// The operation certainly did not take effect: it was never sent
        /// (a failed connect) or its transaction was rolled back. Then
        /// [`Error::may_have_executed`] is `false` whatever the class.
        unapplied: bool,
        /// How the error was classified.
        class: ErrorClass,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
    /// The manager or pool was closed.
    #[error("closed")]
    Closed,
}

impl Error {
    /// The error's code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::NoEndpoints => ErrorCode::NoEndpoints,
            Error::AllEndpointsDown { .. } => ErrorCode::AllEndpointsDown,
            Error::HealthCheckFailed { .. } => ErrorCode::HealthCheckFailed,
            Error::Timeout { .. } => ErrorCode::Timeout,
            Error::CircuitOpen { .. } => ErrorCode::CircuitOpen,
            Error::RetryExhausted { .. } => ErrorCode::RetryExhausted,
            Error::RetryBudgetExhausted { .. } => ErrorCode::RetryBudgetExhausted,
            Error::ReadOnly { .. } => ErrorCode::ReadOnly,
            Error::SplitBrain { .. } => ErrorCode::SplitBrain,
            Error::OutcomeUnknown { .. } => ErrorCode::OutcomeUnknown,
            Error::NoNode { .. } => ErrorCode::NoNode,
            Error::Config(_) => ErrorCode::Config,
            Error::Backend { .. } => ErrorCode::Backend,
            Error::Closed => ErrorCode::Closed,
        }
    }

    /// Whether the failed operation could have taken effect on a server.
    ///
    /// `false` means it certainly did not (refused before sending, breaker
    /// open, no endpoint): retrying is safe even for non-idempotent work.
    /// `true` means it may have: retry only idempotent work, and treat the
    /// outcome as unknown otherwise.
    pub fn may_have_executed(&self) -> bool {
        match self {
            Error::NoEndpoints
            | Error::AllEndpointsDown { .. }
            | Error::HealthCheckFailed { .. }
            | Error::CircuitOpen { .. }
            | Error::SplitBrain { .. }
            | Error::NoNode { .. }
            | Error::Config(_)
            | Error::Closed
            | Error::ReadOnly { .. } => false,
            Error::Timeout {
                may_have_executed, ..
            }
            | Error::RetryExhausted {
                may_have_executed, ..
            }
            | Error::RetryBudgetExhausted {
                may_have_executed, ..
            } => *may_have_executed,
            Error::OutcomeUnknown { .. } => true,
            Error::Backend {
                unapplied: true, ..
            } => false,
            Error::Backend { class, .. } => match class {
                ErrorClass::Failover { may_have_executed } => *may_have_executed,
                // An application error came from the server: it executed (and failed).
                ErrorClass::Application => true,
            },
        }
    }

    /// Whether this is a failover-class failure (the node or the path to it
    /// failed), as opposed to the application's own error.
    pub fn is_failover(&self) -> bool {
        match self {
            Error::Backend { class, .. } => class.is_failover(),
            Error::Config(_) | Error::Closed => false,
            Error::RetryExhausted { last, .. } | Error::RetryBudgetExhausted { last, .. } => {
                last.is_failover()
            }
            _ => true,
        }
    }

    /// Builds a [`Error::Backend`] from any error.
    pub fn backend(
        endpoint: impl Into<String>,
        class: ErrorClass,
        source: impl Into<BoxError>,
    ) -> Self {
        Error::Backend {
            endpoint: endpoint.into(),
            operation: None,
            unapplied: false,
            class,
            source: source.into(),
        }
    }

    /// Marks a [`Error::Backend`] as certainly without effect (never sent,
    /// or rolled back), so [`Error::may_have_executed`] says `false` (other
    /// variants are returned unchanged).
    ///
    /// ```
    /// use failover_pool::{Error, ErrorClass};
    /// let e = Error::backend("db-1", ErrorClass::Application, "password authentication failed");
    /// assert!(e.may_have_executed()); // the server answered: by default it ran
    /// assert!(!e.unapplied().may_have_executed());
    /// ```
    pub fn unapplied(self) -> Self {
        match self {
            Error::Backend {
                endpoint,
                operation,
                class,
                source,
                ..
            } => Error::Backend {
                endpoint,
                operation,
                unapplied: true,
                class,
                source,
            },
            other => other,
        }
    }

    /// Names what this crate was doing when a [`Error::Backend`] happened
    /// (other variants are returned unchanged).
    ///
    /// ```
    /// use failover_pool::{Error, ErrorClass};
    /// let e = Error::backend("db-1", ErrorClass::not_executed(), "connection refused").during("probe");
    /// assert_eq!(e.to_string(), "failover-class error from `db-1` during probe");
    /// ```
    pub fn during(self, op: &'static str) -> Self {
        match self {
            Error::Backend {
                endpoint,
                unapplied,
                class,
                source,
                ..
            } => Error::Backend {
                endpoint,
                operation: Some(op),
                unapplied,
                class,
                source,
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn source_is_kept_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused by peer");
        let err = Error::backend("db-1", ErrorClass::not_executed(), io);
        let msg = err.to_string();
        assert!(!msg.contains("refused by peer"), "{msg}");
        assert!(
            err.source()
                .unwrap()
                .to_string()
                .contains("refused by peer")
        );
        assert_eq!(err.code(), ErrorCode::Backend);
        assert!(!err.may_have_executed());
        assert!(err.is_failover());
    }

    #[test]
    fn application_errors_executed_and_are_not_failover() {
        let err = Error::backend("db", ErrorClass::Application, "unique violation");
        assert!(err.may_have_executed());
        assert!(!err.is_failover());
    }

    #[test]
    fn retry_exhausted_carries_last() {
        let last = Error::Timeout {
            what: "attempt",
            after: Duration::from_millis(5),
            may_have_executed: true,
        };
        let err = Error::RetryExhausted {
            attempts: 3,
            may_have_executed: true,
            last: Box::new(last),
        };
        assert_eq!(err.code(), ErrorCode::RetryExhausted);
        assert_eq!(err.code().as_str(), "retry_exhausted");
        assert!(
            err.source()
                .unwrap()
                .to_string()
                .contains("attempt timed out")
        );
    }
}

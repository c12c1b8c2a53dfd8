//! How an operation's error relates to failover: the [`Classify`] trait and
//! [`Classified`], an error paired with its class for error types that do
//! not implement it.

use crate::error::{BoxError, Error, ErrorClass};

/// How an operation's error relates to failover. Implemented for this
/// crate's [`Error`], for [`std::io::Error`] and for [`Classified`]; implement
/// it for your own error type, or wrap your errors in [`Classified`].
pub trait Classify {
    /// The error's class.
    fn classify(&self) -> ErrorClass;

    /// Whether a failover-class error counts against the endpoint (its
    /// breaker, passive health and outlier detection). `false` for a server
    /// that is fine but asked to be left alone for a while (HTTP 429 with
    /// `Retry-After`): the call still moves on to another endpoint. The
    /// default is `true`.
    fn counts_against_endpoint(&self) -> bool {
        true
    }
}

impl Classify for Error {
    fn classify(&self) -> ErrorClass {
        if self.is_failover() {
            ErrorClass::Failover {
                may_have_executed: self.may_have_executed(),
            }
        } else {
            ErrorClass::Application
        }
    }
}

impl Classify for std::io::Error {
    fn classify(&self) -> ErrorClass {
        ErrorClass::of_io(self)
    }
}

/// An error paired with its [`ErrorClass`], for operations whose error type
/// does not implement [`Classify`].
#[derive(Debug)]
pub struct Classified {
    /// The class.
    pub class: ErrorClass,
    /// The error.
    pub error: BoxError,
    /// Whether it counts against the endpoint
    /// ([`Classify::counts_against_endpoint`]); `true` unless set with
    /// [`Classified::not_against_endpoint`].
    pub against_endpoint: bool,
}

impl Classified {
    /// A failover-class error that certainly did not execute.
    pub fn not_executed(error: impl Into<BoxError>) -> Self {
        Classified {
            class: ErrorClass::not_executed(),
            error: error.into(),
            against_endpoint: true,
        }
    }

    /// A failover-class error after which the operation may have executed.
    pub fn maybe_executed(error: impl Into<BoxError>) -> Self {
        Classified {
            class: ErrorClass::maybe_executed(),
            error: error.into(),
            against_endpoint: true,
        }
    }

    /// The application's own error: never retried, never a failover.
    pub fn application(error: impl Into<BoxError>) -> Self {
        Classified {
            class: ErrorClass::Application,
            error: error.into(),
            against_endpoint: true,
        }
    }

    /// The same error, not counted against the endpoint: the call moves on
    /// (if its class allows) but the endpoint's breaker, passive health and
    /// outlier detection do not see a failure.
    pub fn not_against_endpoint(mut self) -> Self {
        self.against_endpoint = false;
        self
    }
}

impl From<std::io::Error> for Classified {
    fn from(e: std::io::Error) -> Self {
        Classified {
            class: e.classify(),
            error: Box::new(e),
            against_endpoint: true,
        }
    }
}

impl From<Classified> for BoxError {
    fn from(c: Classified) -> Self {
        c.error
    }
}

impl Classify for Classified {
    fn classify(&self) -> ErrorClass {
        self.class
    }

    fn counts_against_endpoint(&self) -> bool {
        self.against_endpoint
    }
}

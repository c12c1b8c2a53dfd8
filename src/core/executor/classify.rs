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
}

impl Classified {
    /// A failover-class error that certainly did not execute.
    pub fn not_executed(error: impl Into<BoxError>) -> Self {
        Classified {
            class: ErrorClass::not_executed(),
            error: error.into(),
        }
    }

    /// A failover-class error after which the operation may have executed.
    pub fn maybe_executed(error: impl Into<BoxError>) -> Self {
        Classified {
            class: ErrorClass::maybe_executed(),
            error: error.into(),
        }
    }

    /// The application's own error: never retried, never a failover.
    pub fn application(error: impl Into<BoxError>) -> Self {
        Classified {
            class: ErrorClass::Application,
            error: error.into(),
        }
    }
}

impl From<std::io::Error> for Classified {
    fn from(e: std::io::Error) -> Self {
        Classified {
            class: e.classify(),
            error: Box::new(e),
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
}

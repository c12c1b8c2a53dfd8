//! [`CacheError`]: what went wrong in a cache call, naming the side and
//! the key (never a URL or a credential), and [`SideError`]: why one side
//! did not answer.

use crate::error::{BoxError, ErrorCode};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Why one side did not serve a call.
#[derive(Debug, Clone)]
pub struct SideError {
    /// The side's name.
    pub side: Arc<str>,
    /// What happened.
    pub kind: SideErrorKind,
}

/// The ways a side fails a call.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SideErrorKind {
    /// Not asked: the side failed recently (or its pool has no master) and
    /// has not answered a health check since.
    Down,
    /// No answer in time; a write may still have been applied.
    Timeout(Duration),
    /// Redis (or the side's pool) answered with an error.
    Redis(Box<::redis::RedisError>),
}

impl SideError {
    pub(crate) fn new(side: &Arc<str>, kind: SideErrorKind) -> Self {
        SideError {
            side: Arc::clone(side),
            kind,
        }
    }

    /// Whether a write that failed this way may have been applied anyway.
    pub fn may_have_executed(&self) -> bool {
        match &self.kind {
            SideErrorKind::Down => false,
            SideErrorKind::Timeout(_) => true,
            SideErrorKind::Redis(e) => {
                crate::redis::classify(e) != crate::ErrorClass::not_executed()
            }
        }
    }

    /// Whether it says the side is unreachable (as opposed to an error the
    /// server gave about this particular command).
    pub fn is_outage(&self) -> bool {
        match &self.kind {
            SideErrorKind::Down | SideErrorKind::Timeout(_) => true,
            SideErrorKind::Redis(e) => crate::redis::classify(e).is_failover(),
        }
    }
}

impl fmt::Display for SideError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            SideErrorKind::Down => write!(f, "side `{}` is down", self.side),
            SideErrorKind::Timeout(after) => {
                write!(f, "side `{}` did not answer within {after:?}", self.side)
            }
            SideErrorKind::Redis(e) => write!(f, "side `{}`: {e}", self.side),
        }
    }
}

impl std::error::Error for SideError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            SideErrorKind::Redis(e) => Some(e),
            _ => None,
        }
    }
}

/// The error of a [`FailoverCache`](super::FailoverCache) call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// Neither side served the call.
    #[error("{op} `{key}`: no side served it ({primary}; {secondary})")]
    Unavailable {
        /// The operation (`get`, `set`, `delete`, …).
        op: &'static str,
        /// The key (for several keys, the first and how many).
        key: String,
        /// Why the primary did not.
        primary: SideError,
        /// Why the secondary did not.
        secondary: SideError,
    },
    /// [`WritePolicy::RequireBoth`](super::WritePolicy::RequireBoth): one
    /// side did not acknowledge the write. It stands on the other side and
    /// is queued for this one.
    #[error("{op} `{key}`: written on `{written_on}` only, queued for the other side ({failed})")]
    NotAcknowledged {
        /// The operation.
        op: &'static str,
        /// The key.
        key: String,
        /// The side that has it.
        written_on: Arc<str>,
        /// Why the other did not.
        #[source]
        failed: SideError,
    },
    /// A call that needs one particular side (a key scan needs both)
    /// could not use it.
    #[error("{op} `{key}`: {error}")]
    Side {
        /// The operation.
        op: &'static str,
        /// The key (for a key scan, the pattern).
        key: String,
        /// Why the side did not serve it.
        #[source]
        error: SideError,
    },
    /// The whole call took longer than the read timeout.
    #[error("{op} `{key}` timed out after {after:?}")]
    Timeout {
        /// The operation.
        op: &'static str,
        /// The key.
        key: String,
        /// The limit.
        after: Duration,
    },
    /// The value could not be serialized.
    #[error("the value for `{key}` could not be encoded")]
    Encode {
        /// The key.
        key: String,
        /// The encoder's error.
        #[source]
        source: rmp_serde::encode::Error,
    },
    /// A stored value is not a MessagePack encoding of the type asked for.
    #[error("the value of `{key}` on side `{side}` does not decode as the type asked for")]
    Decode {
        /// The key.
        key: String,
        /// The side it was read from.
        side: Arc<str>,
        /// The decoder's error.
        #[source]
        source: rmp_serde::decode::Error,
    },
    /// The loader of [`get_or_set_with`](super::FailoverCache::get_or_set_with)
    /// failed (every caller waiting for the same key gets the same error).
    #[error("the loader for `{key}` failed")]
    Loader {
        /// The key.
        key: String,
        /// The loader's error.
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// A side could not be set up.
    #[error("side `{side}` could not be set up")]
    Connect {
        /// The side.
        side: String,
        /// The pool's error.
        #[source]
        source: crate::Error,
    },
    /// Invalid configuration.
    #[error("invalid cache configuration: {0}")]
    Config(String),
    /// The cache was closed.
    #[error("the cache was closed")]
    Closed,
}

impl CacheError {
    /// The crate-wide code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            CacheError::Unavailable { .. } => ErrorCode::AllEndpointsDown,
            CacheError::Side { error, .. } if error.is_outage() => ErrorCode::NoNode,
            CacheError::Side { .. } => ErrorCode::Backend,
            CacheError::NotAcknowledged { .. } | CacheError::Connect { .. } => ErrorCode::Backend,
            CacheError::Timeout { .. } => ErrorCode::Timeout,
            CacheError::Encode { .. } | CacheError::Decode { .. } | CacheError::Loader { .. } => {
                ErrorCode::Backend
            }
            CacheError::Config(_) => ErrorCode::Config,
            CacheError::Closed => ErrorCode::Closed,
        }
    }

    /// Whether a failed write may have been applied on a side anyway (it
    /// is then also queued for the other side, so both end up with it).
    pub fn may_have_executed(&self) -> bool {
        match self {
            CacheError::Unavailable {
                primary, secondary, ..
            } => primary.may_have_executed() || secondary.may_have_executed(),
            CacheError::NotAcknowledged { .. } | CacheError::Timeout { .. } => true,
            CacheError::Side { error, .. } => error.may_have_executed(),
            _ => false,
        }
    }

    /// A loader's error, shared by every caller waiting for the key.
    pub(crate) fn loader(key: &str, source: Arc<dyn std::error::Error + Send + Sync>) -> Self {
        CacheError::Loader {
            key: key.to_owned(),
            source,
        }
    }
}

/// Boxes a loader's error into the shareable form.
pub(crate) fn share(e: impl Into<BoxError>) -> Arc<dyn std::error::Error + Send + Sync> {
    Arc::from(e.into())
}

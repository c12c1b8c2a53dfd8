//! [`Fallback`]: what a call answers when the service cannot be reached at
//! all, and [`ServedBy`], which says who answered a response.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};

use crate::error::Error;

/// The answer of a call that could not reach any endpoint: every try
/// failed on the endpoints' side (none configured, all down or ejected,
/// circuits open, connections refused, timeouts) and the request is
/// idempotent or certainly was not executed. A POST that may have run is
/// never hidden behind a fallback: its error says so.
#[derive(Clone)]
#[non_exhaustive]
pub enum Fallback {
    /// A fixed response.
    Static {
        /// Its status.
        status: StatusCode,
        /// Its headers.
        headers: HeaderMap,
        /// Its body.
        body: Bytes,
    },
    /// A response built from the request's method and path and the error
    /// that would have been returned.
    With(FallbackFn),
}

/// A function building a [`Fallback`] response.
pub type FallbackFn = Arc<dyn Fn(&Method, &str, &Error) -> http::Response<Bytes> + Send + Sync>;

impl Fallback {
    /// A fixed response with `status` and `body` (and no headers).
    pub fn fixed(status: StatusCode, body: impl Into<Bytes>) -> Self {
        Fallback::Static {
            status,
            headers: HeaderMap::new(),
            body: body.into(),
        }
    }

    /// A response built by `f` from the method, the path and the error.
    pub fn with(
        f: impl Fn(&Method, &str, &Error) -> http::Response<Bytes> + Send + Sync + 'static,
    ) -> Self {
        Fallback::With(Arc::new(f))
    }

    /// Whether the fallback answers a call that failed with `error`.
    pub(crate) fn applies(error: &Error, repeatable: bool) -> bool {
        error.is_failover() && (repeatable || !error.may_have_executed())
    }

    /// The fallback's response.
    pub(crate) fn response(
        &self,
        method: &Method,
        path: &str,
        error: &Error,
    ) -> http::Response<Bytes> {
        match self {
            Fallback::Static {
                status,
                headers,
                body,
            } => {
                let mut r = http::Response::new(body.clone());
                *r.status_mut() = *status;
                *r.headers_mut() = headers.clone();
                r
            }
            Fallback::With(f) => f(method, path, error),
        }
    }
}

impl fmt::Debug for Fallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fallback::Static { status, body, .. } => f
                .debug_struct("Fallback::Static")
                .field("status", status)
                .field("body_len", &body.len())
                .finish_non_exhaustive(),
            Fallback::With(_) => f.write_str("Fallback::With(..)"),
        }
    }
}

/// Who answered a response: kept in the response's extensions
/// ([`served_by`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedBy {
    /// The endpoint that answered; `None` for a [`Fallback`].
    pub endpoint: Option<Arc<str>>,
    /// Tries made (1 = no retry); 0 for a fallback when no try could start.
    pub attempts: u32,
}

/// Who answered `response` (a [`FailoverClient`](super::FailoverClient)
/// or [`FailoverService`](super::FailoverService) response).
pub fn served_by(response: &reqwest::Response) -> Option<&ServedBy> {
    response.extensions().get::<ServedBy>()
}

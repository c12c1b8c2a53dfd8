//! What an HTTP outcome means for failover: which methods may be sent
//! twice (RFC 9110 §9.2.2), which statuses are the endpoint's failure and
//! which the caller's, `Retry-After`, and how a transport error relates to
//! the request having been sent.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, Method, StatusCode};
use serde::{Deserialize, Serialize};

use crate::core::Classified;
use crate::error::{BoxError, ErrorClass};

/// The header that makes a POST or PATCH safe to retry.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Which responses count as a failure of the endpoint (the rest, 4xx
/// included, are the caller's and never move a call or eject anything).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatusPolicy {
    /// Every 5xx, not only 502, 503 and 504.
    pub all_5xx: bool,
    /// 429 with a `Retry-After` the client can honour: the endpoint gets no
    /// traffic for that long (not an ejection, not a breaker failure) and
    /// the call moves to another endpoint, even a POST (a 429 was not
    /// processed).
    pub retry_429: bool,
    /// The longest `Retry-After` honoured; longer ones are returned to the
    /// caller as they are.
    #[serde(with = "humantime_serde")]
    pub max_retry_after: Duration,
}

impl Default for StatusPolicy {
    fn default() -> Self {
        StatusPolicy {
            all_5xx: false,
            retry_429: true,
            max_retry_after: Duration::from_secs(30),
        }
    }
}

/// What a response means for the endpoint that sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A response for the caller (2xx, 3xx, 4xx, other 5xx).
    Answer,
    /// The endpoint failed (502/503/504, or any 5xx with
    /// [`StatusPolicy::all_5xx`]); it may have executed the request. With a
    /// `Retry-After`, the endpoint is paused that long.
    Failed { retry_after: Option<Duration> },
    /// 429 with an honoured `Retry-After`: not executed, move on, no
    /// verdict on the endpoint.
    Busy { retry_after: Duration },
}

impl Verdict {
    /// How long the endpoint asked for no traffic, if it did.
    pub(crate) fn pause(self) -> Option<Duration> {
        match self {
            Verdict::Answer => None,
            Verdict::Failed { retry_after } => retry_after,
            Verdict::Busy { retry_after } => Some(retry_after),
        }
    }
}

impl StatusPolicy {
    /// The verdict on a response with this status and these headers.
    pub(crate) fn verdict(&self, status: StatusCode, headers: &HeaderMap) -> Verdict {
        let honoured = || retry_after(headers).filter(|d| *d <= self.max_retry_after);
        match status.as_u16() {
            429 if self.retry_429 => match honoured() {
                Some(retry_after) => Verdict::Busy { retry_after },
                None => Verdict::Answer,
            },
            502..=504 => Verdict::Failed {
                retry_after: honoured(),
            },
            500..=599 if self.all_5xx => Verdict::Failed {
                retry_after: honoured(),
            },
            _ => Verdict::Answer,
        }
    }
}

/// Whether `method` is idempotent (RFC 9110 §9.2.2): GET, HEAD, OPTIONS,
/// TRACE, PUT and DELETE. POST, PATCH and CONNECT are not.
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Whether a request may be sent again after it may have executed: an
/// idempotent method, or an `Idempotency-Key` header.
pub fn may_repeat(method: &Method, headers: &HeaderMap) -> bool {
    is_idempotent(method) || headers.contains_key(IDEMPOTENCY_KEY)
}

/// `Retry-After` as a delay: delta-seconds or an HTTP date (a date in the
/// past is no delay).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

/// The class of a transport error from the chain of `error`: a connection
/// that was never made (refused, unreachable) did not send the request;
/// anything else may have happened after it was sent.
pub(crate) fn transport_class(error: &(dyn StdError + 'static)) -> ErrorClass {
    let mut next: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return ErrorClass::of_io(io);
        }
        if let Some(r) = e.downcast_ref::<reqwest::Error>()
            && r.is_connect()
        {
            return ErrorClass::not_executed();
        }
        next = e.source();
    }
    ErrorClass::maybe_executed()
}

/// The failure of one try: a response whose status is the endpoint's
/// failure (kept, so that the caller gets it when no try is left), or a
/// transport error.
pub(crate) enum TryFailure<R> {
    /// A 502/503/504 (or 429) response.
    Status(StatusFailure<R>),
    /// The request or the response failed on the way.
    Transport(BoxError),
}

/// A response that counts as the endpoint's failure; the caller gets it
/// back when it is the last try's outcome.
pub struct StatusFailure<R> {
    /// The status.
    pub status: StatusCode,
    /// The endpoint that answered.
    pub endpoint: Arc<str>,
    /// The response.
    pub response: R,
}

impl<R> fmt::Debug for StatusFailure<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatusFailure")
            .field("status", &self.status)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl<R> fmt::Display for StatusFailure<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {} from `{}`", self.status, self.endpoint)
    }
}

impl<R> StdError for StatusFailure<R> {}

/// The classified error of one try, for the core's executor.
pub(crate) fn classified<R: Send + Sync + 'static>(
    failure: TryFailure<R>,
    verdict: Verdict,
) -> Classified {
    match failure {
        TryFailure::Status(s) => match verdict {
            Verdict::Busy { .. } => Classified::not_executed(s).not_against_endpoint(),
            _ => Classified::maybe_executed(s),
        },
        TryFailure::Transport(e) => {
            let class = transport_class(&*e);
            Classified {
                class,
                error: e,
                against_endpoint: true,
            }
        }
    }
}

/// The response kept in a call's error, when the last try ended with one.
pub(crate) fn take_response<R: Send + Sync + 'static>(
    error: crate::Error,
) -> Result<StatusFailure<R>, crate::Error> {
    use crate::Error;
    match error {
        Error::Backend {
            endpoint,
            operation,
            unapplied,
            class,
            source,
        } => match source.downcast::<StatusFailure<R>>() {
            Ok(failure) => Ok(*failure),
            Err(source) => Err(Error::Backend {
                endpoint,
                operation,
                unapplied,
                class,
                source,
            }),
        },
        Error::RetryExhausted {
            attempts,
            may_have_executed,
            last,
        } => take_response(*last).map_err(|last| Error::RetryExhausted {
            attempts,
            may_have_executed,
            last: Box::new(last),
        }),
        Error::RetryBudgetExhausted {
            attempts,
            may_have_executed,
            last,
        } => take_response(*last).map_err(|last| Error::RetryBudgetExhausted {
            attempts,
            may_have_executed,
            last: Box::new(last),
        }),
        other => Err(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(retry_after: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = retry_after {
            h.insert(http::header::RETRY_AFTER, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn gateway_errors_fail_the_endpoint_and_4xx_never_does() {
        let p = StatusPolicy::default();
        let v = |code: u16, ra| p.verdict(StatusCode::from_u16(code).unwrap(), &headers(ra));
        assert_eq!(v(503, None), Verdict::Failed { retry_after: None });
        assert_eq!(
            v(503, Some("2")),
            Verdict::Failed {
                retry_after: Some(Duration::from_secs(2))
            }
        );
        assert_eq!(v(500, None), Verdict::Answer);
        assert_eq!(v(404, None), Verdict::Answer);
        assert_eq!(v(400, None), Verdict::Answer);
        assert_eq!(v(429, None), Verdict::Answer);
        assert_eq!(
            v(429, Some("1")),
            Verdict::Busy {
                retry_after: Duration::from_secs(1)
            }
        );
        assert_eq!(v(429, Some("3600")), Verdict::Answer, "too long to honour");
        let all = StatusPolicy {
            all_5xx: true,
            ..StatusPolicy::default()
        };
        assert_eq!(
            all.verdict(StatusCode::INTERNAL_SERVER_ERROR, &headers(None)),
            Verdict::Failed { retry_after: None }
        );
    }

    #[test]
    fn methods_follow_rfc_9110() {
        for m in [
            Method::GET,
            Method::HEAD,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ] {
            assert!(may_repeat(&m, &HeaderMap::new()), "{m}");
        }
        assert!(!may_repeat(&Method::POST, &HeaderMap::new()));
        assert!(!may_repeat(&Method::PATCH, &HeaderMap::new()));
        let mut keyed = HeaderMap::new();
        keyed.insert(IDEMPOTENCY_KEY, "k-1".parse().unwrap());
        assert!(may_repeat(&Method::POST, &keyed));
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(
            retry_after(&headers(Some("7"))),
            Some(Duration::from_secs(7))
        );
        let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(60));
        assert_eq!(retry_after(&headers(Some(&past))), Some(Duration::ZERO));
        let soon = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        let d = retry_after(&headers(Some(&soon))).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        assert_eq!(retry_after(&headers(Some("soon"))), None);
    }

    #[test]
    fn refused_connections_were_not_sent() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(transport_class(&refused), ErrorClass::not_executed());
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(transport_class(&reset), ErrorClass::maybe_executed());
    }
}

//! [`FailoverLayer`] and [`FailoverService`]: the HTTP failover rules
//! around any `tower::Service<http::Request<B>>` whose body can be cloned
//! (a hyper client over `Full<Bytes>`, a tonic channel with a buffered
//! body, ...). Each try sends a copy of the request with its URI's scheme
//! and authority set to the endpoint picked for it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::uri::{Authority, Scheme, Uri};
use tower_layer::Layer;
use tower_service::Service;

use super::classify::{
    StatusFailure, StatusPolicy, TryFailure, Verdict, classified, may_repeat, take_response,
};
use super::fallback::ServedBy;
use super::metrics::ResponseMetrics;
use super::shared::pause_nanos;
use crate::core::retry::Idempotency;
use crate::core::{CallOptions, Classified, Failover, LiveEndpoint};
use crate::error::{BoxError, Error, Result};

/// A [`tower_layer::Layer`] that wraps a service in a [`FailoverService`]
/// over the endpoints of a [`Failover`].
///
/// ```no_run
/// use failover_pool::core::{Endpoint, Failover};
/// use failover_pool::http::FailoverLayer;
/// use tower_layer::Layer;
///
/// # fn demo<S>(hyper_client: S) -> failover_pool::Result<()> {
/// let failover = Failover::builder("users")
///     .endpoint(Endpoint::new("a", "10.0.0.1", 8080))
///     .endpoint(Endpoint::new("b", "10.0.0.2", 8080))
///     .build()?;
/// let service = FailoverLayer::new(failover).layer(hyper_client);
/// # let _ = service; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct FailoverLayer {
    failover: Failover,
    statuses: Arc<StatusPolicy>,
    responses: Arc<ResponseMetrics>,
}

impl FailoverLayer {
    /// A layer over `failover`'s endpoints, with the default
    /// [`StatusPolicy`].
    pub fn new(failover: Failover) -> Self {
        FailoverLayer {
            responses: Arc::new(ResponseMetrics::new(Arc::clone(failover.name()))),
            failover,
            statuses: Arc::new(StatusPolicy::default()),
        }
    }

    /// Which responses count as the endpoint's failure.
    pub fn statuses(mut self, policy: StatusPolicy) -> Self {
        self.statuses = Arc::new(policy);
        self
    }
}

impl<S> Layer<S> for FailoverLayer {
    type Service = FailoverService<S>;

    fn layer(&self, inner: S) -> FailoverService<S> {
        FailoverService {
            inner,
            failover: self.failover.clone(),
            statuses: Arc::clone(&self.statuses),
            responses: Arc::clone(&self.responses),
        }
    }
}

/// A service that sends each request to the endpoint its try picks, with
/// the rules of [the module](super): retries by RFC 9110, 502/503/504
/// and transport errors as the endpoint's failures, `Retry-After`
/// honoured. The response of the last try is returned when there was one
/// (with [`ServedBy`] in its extensions); otherwise the call's
/// [`Error`].
#[derive(Debug, Clone)]
pub struct FailoverService<S> {
    inner: S,
    failover: Failover,
    statuses: Arc<StatusPolicy>,
    responses: Arc<ResponseMetrics>,
}

impl<S, B, RB> Service<http::Request<B>> for FailoverService<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Clone + Send + Sync + 'static,
    RB: Send + Sync + 'static,
{
    type Response = http::Response<RB>;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<RB>>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        // Readiness is awaited per try, on a clone of the inner service.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let (inner, failover, statuses, responses) = (
            self.inner.clone(),
            self.failover.clone(),
            Arc::clone(&self.statuses),
            Arc::clone(&self.responses),
        );
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let repeatable = may_repeat(&parts.method, &parts.headers);
            let opts = CallOptions {
                idempotency: if repeatable {
                    Idempotency::Idempotent
                } else {
                    Idempotency::NotIdempotent
                },
                deadline: None,
            };
            let op = move |ep: Arc<LiveEndpoint>| {
                let request = addressed(&parts, &body, &ep);
                let mut service = inner.clone();
                let (statuses, responses) = (Arc::clone(&statuses), Arc::clone(&responses));
                async move {
                    let request = request?;
                    std::future::poll_fn(|cx| service.poll_ready(cx))
                        .await
                        .map_err(transport)?;
                    let response = service.call(request).await.map_err(transport)?;
                    let status = response.status();
                    responses.record(&ep.endpoint().id, status);
                    let verdict = statuses.verdict(status, response.headers());
                    tracing::debug!(%status, ?verdict, "http try answered");
                    match verdict {
                        Verdict::Answer => Ok(response),
                        Verdict::Failed { .. } | Verdict::Busy { .. } => {
                            if let Some(d) = verdict.pause() {
                                ep.pause_until(pause_nanos(d));
                            }
                            let failure = StatusFailure {
                                status,
                                endpoint: Arc::clone(&ep.endpoint().id),
                                response,
                            };
                            Err(classified(TryFailure::Status(failure), verdict))
                        }
                    }
                }
            };
            match failover.execute_with(opts, op).await {
                Ok(served) => {
                    let mut response = served.value;
                    response.extensions_mut().insert(ServedBy {
                        endpoint: Some(Arc::clone(&served.endpoint.endpoint().id)),
                        attempts: served.attempts,
                    });
                    Ok(response)
                }
                Err(error) => {
                    let attempts = match &error {
                        Error::RetryExhausted { attempts, .. }
                        | Error::RetryBudgetExhausted { attempts, .. } => *attempts,
                        _ => 1,
                    };
                    let last = take_response::<http::Response<RB>>(error)?;
                    let mut response = last.response;
                    response.extensions_mut().insert(ServedBy {
                        endpoint: Some(last.endpoint),
                        attempts,
                    });
                    Ok(response)
                }
            }
        })
    }
}

/// A transport error of a try.
fn transport(e: impl Into<BoxError>) -> Classified {
    classified::<()>(TryFailure::Transport(e.into()), Verdict::Answer)
}

/// A copy of the request addressed to `ep`: scheme and authority replaced,
/// path and query kept.
fn addressed<B: Clone>(
    parts: &http::request::Parts,
    body: &B,
    ep: &LiveEndpoint,
) -> std::result::Result<http::Request<B>, Classified> {
    let e = ep.endpoint();
    let invalid = |why: String| {
        Classified::application(Error::Config(format!(
            "cannot address endpoint `{}`: {why}",
            ep.id()
        )))
    };
    let host = if e.address.contains(':') {
        format!("[{}]:{}", e.address, e.port)
    } else {
        format!("{}:{}", e.address, e.port)
    };
    let authority = Authority::try_from(host).map_err(|err| invalid(err.to_string()))?;
    let scheme = if e.protocol.eq_ignore_ascii_case("https") {
        Scheme::HTTPS
    } else {
        Scheme::HTTP
    };
    let mut uri = parts.uri.clone().into_parts();
    uri.scheme = Some(scheme);
    uri.authority = Some(authority);
    if uri.path_and_query.is_none() {
        uri.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    let uri = Uri::from_parts(uri).map_err(|err| invalid(err.to_string()))?;
    let mut parts = parts.clone();
    parts.uri = uri;
    if let Some(host) = parts.headers.get_mut(http::header::HOST)
        && let Ok(value) = http::HeaderValue::from_str(&format!("{}:{}", e.address, e.port))
    {
        *host = value;
    }
    Ok(http::Request::from_parts(parts, body.clone()))
}

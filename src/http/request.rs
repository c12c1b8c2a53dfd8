//! [`RequestBuilder`]: a request built once, with reqwest's own builder
//! methods, and sent to the endpoint each try picks; [`Fetched`], a
//! response read to the end inside the try.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::classify::{StatusFailure, TryFailure, Verdict, classified, may_repeat, take_response};
use super::fallback::{Fallback, ServedBy};
use super::shared::{ClientInner, pause_nanos};
use crate::core::retry::Idempotency;
use crate::core::{CallOptions, Classified, LiveEndpoint, Served};
use crate::error::{Error, ErrorClass, Result};

/// The host of the URL a request is built against; every try replaces
/// scheme, host and port with its endpoint's.
const PLACEHOLDER: &str = "http://failover.invalid";

/// A request to a [`FailoverClient`](super::FailoverClient)'s service, built like a reqwest
/// request and sent with [`send`](Self::send) (or [`fetch`](Self::fetch)).
#[derive(Debug)]
#[must_use = "a request does nothing until it is sent"]
pub struct RequestBuilder {
    client: Arc<ClientInner>,
    method: Method,
    path: String,
    inner: reqwest::RequestBuilder,
    deadline: Option<Duration>,
    hedge: bool,
}

impl RequestBuilder {
    pub(crate) fn new(client: Arc<ClientInner>, method: Method, path: String) -> Self {
        let url = if path.starts_with('/') {
            format!("{PLACEHOLDER}{path}")
        } else {
            format!("{PLACEHOLDER}/{path}")
        };
        let inner = client.http.request(method.clone(), url);
        RequestBuilder {
            client,
            method,
            path,
            inner,
            deadline: None,
            hedge: true,
        }
    }

    fn map(mut self, f: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder) -> Self {
        self.inner = f(self.inner);
        self
    }

    /// Adds a header.
    pub fn header<K, V>(self, key: K, value: V) -> Self
    where
        HeaderName: TryFrom<K>,
        <HeaderName as TryFrom<K>>::Error: Into<http::Error>,
        HeaderValue: TryFrom<V>,
        <HeaderValue as TryFrom<V>>::Error: Into<http::Error>,
    {
        self.map(|b| b.header(key, value))
    }

    /// Adds headers.
    pub fn headers(self, headers: HeaderMap) -> Self {
        self.map(|b| b.headers(headers))
    }

    /// `Authorization: Bearer <token>` (marked sensitive).
    pub fn bearer_auth<T: std::fmt::Display>(self, token: T) -> Self {
        self.map(|b| b.bearer_auth(token))
    }

    /// `Authorization: Basic ...` (marked sensitive).
    pub fn basic_auth<U: std::fmt::Display, P: std::fmt::Display>(
        self,
        username: U,
        password: Option<P>,
    ) -> Self {
        self.map(|b| b.basic_auth(username, password))
    }

    /// Appends `query` to the URL's query string.
    pub fn query<T: Serialize + ?Sized>(self, query: &T) -> Self {
        self.map(|b| b.query(query))
    }

    /// A JSON body (and `Content-Type: application/json`).
    pub fn json<T: Serialize + ?Sized>(self, json: &T) -> Self {
        self.map(|b| b.json(json))
    }

    /// A form body (and its content type).
    pub fn form<T: Serialize + ?Sized>(self, form: &T) -> Self {
        self.map(|b| b.form(form))
    }

    /// A body; buffered, so that every try can send it.
    pub fn body(self, body: impl Into<Bytes>) -> Self {
        let body: Bytes = body.into();
        self.map(|b| b.body(body))
    }

    /// The time limit of each try, to the end of the response body with
    /// [`fetch`](Self::fetch), to its headers with [`send`](Self::send)
    /// (the body read afterwards stays under it too: reqwest's timeout).
    pub fn timeout(self, timeout: Duration) -> Self {
        self.map(|b| b.timeout(timeout))
    }

    /// The time limit of the whole call, across tries and backoff; no try
    /// starts when it has passed.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Sets `Idempotency-Key` to a fresh random key (UUID v4 format): the
    /// server can then recognise a repeated POST or PATCH, so the client
    /// retries it like an idempotent request.
    pub fn idempotency_key(self) -> Self {
        self.header(super::classify::IDEMPOTENCY_KEY, random_key())
    }

    /// Whether the client's hedging applies to this request (default
    /// `true`; hedging only ever applies to requests that may be repeated).
    pub fn hedge(mut self, hedge: bool) -> Self {
        self.hedge = hedge;
        self
    }

    /// Sends the request and returns the response once its headers
    /// arrived, like reqwest's `send`. A response that counts as the
    /// endpoint's failure (502/503/504, ...) is retried while the rules
    /// allow, and returned as it is when no try is left.
    ///
    /// # Errors
    ///
    /// [`Error::NoEndpoints`], [`Error::AllEndpointsDown`],
    /// [`Error::CircuitOpen`], [`Error::RetryExhausted`],
    /// [`Error::RetryBudgetExhausted`], [`Error::Timeout`] or
    /// [`Error::Backend`] (the try's error; for a request that may not be
    /// repeated, [`Error::may_have_executed`] tells whether it may have
    /// run); [`Error::Config`] for a request that cannot be built. With a
    /// [`Fallback`], its response instead of a failure to reach the
    /// service.
    pub async fn send(self) -> Result<reqwest::Response> {
        // Boxed: the call's state is a few KB, moved once instead of at
        // every await of the caller's future.
        let outcome = Box::pin(self.run(|r| async move { Ok(r) })).await?;
        Ok(match outcome {
            Outcome::Served(mut response, by) => {
                response.extensions_mut().insert(by);
                response
            }
            Outcome::Fallback(response, by) => {
                let mut response = reqwest::Response::from(response);
                response.extensions_mut().insert(by);
                response
            }
        })
    }

    /// Sends the request and reads the whole response body inside the
    /// try, so that a connection cut mid-body is the endpoint's failure
    /// and is retried like any other (for requests that may be repeated).
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub async fn fetch(self) -> Result<Fetched> {
        let outcome = Box::pin(self.run(Fetched::read)).await?;
        Ok(match outcome {
            Outcome::Served(fetched, by) => Fetched {
                served_by: by,
                ..fetched
            },
            Outcome::Fallback(response, by) => {
                let (parts, body) = response.into_parts();
                Fetched {
                    status: parts.status,
                    headers: parts.headers,
                    body,
                    served_by: by,
                }
            }
        })
    }

    /// Runs the call: one try per endpoint pick, `read` applied to an
    /// answer inside its try.
    async fn run<T, F, Fut>(self, read: F) -> Result<Outcome<T>>
    where
        T: Send + Sync + 'static,
        F: Fn(reqwest::Response) -> Fut + Clone,
        Fut: Future<Output = std::result::Result<T, reqwest::Error>>,
    {
        let RequestBuilder {
            client,
            method,
            path,
            inner,
            deadline,
            hedge,
        } = self;
        let template = inner
            .build()
            .map_err(|e| Error::Config(format!("invalid request: {}", crate::error::chain(&e))))?;
        let repeatable = may_repeat(template.method(), template.headers());
        let opts = CallOptions {
            idempotency: if repeatable {
                Idempotency::Idempotent
            } else {
                Idempotency::NotIdempotent
            },
            deadline,
        };
        let shared = &*client;
        let template = Arc::new(template);
        let op = {
            let read = read.clone();
            let (http, statuses) = (&shared.http, &shared.statuses);
            let responses = &shared.responses;
            move |ep: Arc<LiveEndpoint>| {
                let request = retargeted(&template, &ep);
                let read = read.clone();
                async move {
                    let request = request?;
                    let response = http.execute(request).await.map_err(transport)?;
                    let status = response.status();
                    let verdict = statuses.verdict(status, response.headers());
                    responses.record(&ep.endpoint().id, status);
                    tracing::debug!(%status, ?verdict, "http try answered");
                    match verdict {
                        Verdict::Answer => read(response).await.map_err(transport),
                        Verdict::Failed { .. } | Verdict::Busy { .. } => {
                            if let Some(d) = verdict.pause() {
                                ep.pause_until(pause_nanos(d));
                            }
                            Err(status_failure(response, &ep, verdict))
                        }
                    }
                }
            }
        };
        let result = match shared.hedge {
            Some(delay) if hedge && repeatable => {
                shared.failover.execute_hedged(opts, delay, op).await
            }
            _ => shared.failover.execute_with(opts, op).await,
        };
        match result {
            Ok(Served {
                value,
                endpoint,
                attempts,
            }) => Ok(Outcome::Served(
                value,
                ServedBy {
                    endpoint: Some(Arc::clone(&endpoint.endpoint().id)),
                    attempts,
                },
            )),
            Err(error) => {
                let attempts = attempts_of(&error);
                let error = match take_response::<reqwest::Response>(error) {
                    Ok(last) => {
                        let by = ServedBy {
                            endpoint: Some(Arc::clone(&last.endpoint)),
                            attempts,
                        };
                        let value = read(last.response).await.map_err(|e| {
                            Error::backend(&*last.endpoint, ErrorClass::maybe_executed(), e)
                        })?;
                        return Ok(Outcome::Served(value, by));
                    }
                    Err(error) => error,
                };
                match &shared.fallback {
                    Some(fallback) if Fallback::applies(&error, repeatable) => {
                        Ok(Outcome::Fallback(
                            fallback.response(&method, &path, &error),
                            ServedBy {
                                endpoint: None,
                                attempts,
                            },
                        ))
                    }
                    _ => Err(error),
                }
            }
        }
    }
}

/// What a call ended with: an endpoint's answer, or the fallback's.
enum Outcome<T> {
    Served(T, ServedBy),
    Fallback(http::Response<Bytes>, ServedBy),
}

/// A copy of `template` addressed to `ep`.
fn retargeted(
    template: &reqwest::Request,
    ep: &LiveEndpoint,
) -> std::result::Result<reqwest::Request, Classified> {
    let not_sent = |why: &str| {
        Classified::application(Error::Config(format!(
            "cannot address endpoint `{}`: {why}",
            ep.id()
        )))
    };
    let mut request = template
        .try_clone()
        .ok_or_else(|| not_sent("the body cannot be copied"))?;
    let e = ep.endpoint();
    let url = request.url_mut();
    let scheme = if e.protocol.eq_ignore_ascii_case("https") {
        "https"
    } else {
        "http"
    };
    if url.scheme() != scheme {
        url.set_scheme(scheme).map_err(|()| not_sent("scheme"))?;
    }
    match e.address.parse::<std::net::IpAddr>() {
        Ok(ip) => url.set_ip_host(ip).map_err(|()| not_sent("address"))?,
        Err(_) => url
            .set_host(Some(&e.address))
            .map_err(|err| not_sent(&err.to_string()))?,
    }
    url.set_port(Some(e.port)).map_err(|()| not_sent("port"))?;
    Ok(request)
}

/// A transport error of a try.
fn transport(e: reqwest::Error) -> Classified {
    classified::<()>(TryFailure::Transport(Box::new(e)), Verdict::Answer)
}

/// A response that is the endpoint's failure.
fn status_failure(response: reqwest::Response, ep: &LiveEndpoint, verdict: Verdict) -> Classified {
    let failure = StatusFailure {
        status: response.status(),
        endpoint: Arc::clone(&ep.endpoint().id),
        response,
    };
    classified(TryFailure::Status(failure), verdict)
}

/// The tries a failed call made.
fn attempts_of(error: &Error) -> u32 {
    match error {
        Error::RetryExhausted { attempts, .. } | Error::RetryBudgetExhausted { attempts, .. } => {
            *attempts
        }
        Error::NoEndpoints | Error::AllEndpointsDown { .. } => 0,
        _ => 1,
    }
}

/// A random key in UUID v4 format.
fn random_key() -> String {
    let (a, b) = (fastrand::u64(..), fastrand::u64(..));
    let b = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    let a = (a & 0xffff_ffff_ffff_0fff) | 0x0000_0000_0000_4000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

/// A response read to the end ([`RequestBuilder::fetch`]).
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// Who answered.
    pub served_by: ServedBy,
}

impl Fetched {
    async fn read(response: reqwest::Response) -> std::result::Result<Fetched, reqwest::Error> {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await?;
        Ok(Fetched {
            status,
            headers,
            body,
            served_by: ServedBy {
                endpoint: None,
                attempts: 0,
            },
        })
    }

    /// The body as JSON.
    ///
    /// # Errors
    ///
    /// When it is not `T` in JSON.
    pub fn json<T: DeserializeOwned>(&self) -> serde_json::Result<T> {
        serde_json::from_slice(&self.body)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_look_like_uuid_v4() {
        let k = random_key();
        assert_eq!(k.len(), 36, "{k}");
        let parts: Vec<&str> = k.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'), "{k}");
        assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"), "{k}");
        assert_ne!(random_key(), k);
    }
}

//! HTTP service calls with failover (feature `http`): [`FailoverClient`],
//! a reqwest client over the endpoint core, and [`FailoverLayer`], the
//! same failover around any `tower::Service<http::Request<B>>` (a hyper
//! client, a tonic channel).
//!
//! The rules, the same in both:
//!
//! * **What is the endpoint's failure**: connect errors, resets, timeouts
//!   and 502/503/504 ([`StatusPolicy`]: optionally every 5xx; a 429 with a
//!   `Retry-After` pauses the endpoint and moves on). A 4xx is the
//!   caller's answer: never retried, never held against the endpoint.
//! * **What is retried (RFC 9110)**: GET, HEAD, OPTIONS, TRACE, PUT and
//!   DELETE go to another endpoint after any failure of the endpoint; POST
//!   and PATCH only when the request certainly was not sent (connection
//!   refused) or carries an `Idempotency-Key`. Otherwise the error says
//!   whether the request may have run ([`Error::may_have_executed`](crate::Error::may_have_executed)).
//! * **Time**: a per-try timeout, an overall deadline (no try starts after
//!   it), a retry budget shared by all calls (no retry storm), optional
//!   hedging of idempotent requests ([`HedgeDelay`](crate::core::HedgeDelay)).
//! * When the last try got a response, the caller gets that response (a
//!   503 stays a 503); otherwise a typed error ([`Error::NoEndpoints`](crate::Error::NoEndpoints),
//!   `AllEndpointsDown`, `CircuitOpen`, `RetryBudgetExhausted`,
//!   `RetryExhausted`, `Timeout`), or the [`Fallback`] when one is set.
//!   [`served_by`] tells which endpoint answered and after how many tries.
//!
//! ```no_run
//! use failover_pool::http::FailoverClient;
//! use serde_json::json;
//!
//! # async fn demo() -> failover_pool::Result<()> {
//! let orders = FailoverClient::builder("orders")
//!     .url("http://10.0.0.1:8080")?
//!     .url("http://10.0.0.2:8080")?
//!     .build()?;
//! // Safe to retry on another endpoint: the server dedupes by the key.
//! let created = orders
//!     .post("/orders")
//!     .json(&json!({"sku": "A-1", "qty": 2}))
//!     .idempotency_key()
//!     .send()
//!     .await?;
//! # let _ = created; Ok(()) }
//! ```

mod classify;
mod client;
mod fallback;
mod metrics;
mod request;
mod shared;
mod tower;

pub use classify::{
    IDEMPOTENCY_KEY, StatusFailure, StatusPolicy, is_idempotent, may_repeat, retry_after,
};
pub use client::{FailoverClient, FailoverClientBuilder};
pub use fallback::{Fallback, FallbackFn, ServedBy, served_by};
pub use metrics::RESPONSES_TOTAL;
pub use request::{Fetched, RequestBuilder};
pub use tower::{FailoverLayer, FailoverService};

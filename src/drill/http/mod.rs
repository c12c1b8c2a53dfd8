//! Local HTTP backends for tests and drills of an HTTP failover client:
//! [`LocalHttpBackends`] runs real HTTP/1.1 servers (hyper) on `127.0.0.1`
//! whose behaviour is switched per backend with a [`BackendMode`], which
//! can be killed (listener closed, open connections cut) and restarted on
//! the same port, and which count what they did ([`BackendStats`]) and how
//! many times each request was executed.
//!
//! # Modes
//!
//! Every request is read whole (head and body) before anything else. What
//! happens next depends on the backend's mode and on whether the request is
//! a health check (`GET /health`):
//!
//! | mode | request | executed | `GET /health` |
//! |---|---|---|---|
//! | [`Ok`](BackendMode::Ok) | `200` JSON | yes | `200 ok` |
//! | [`Slow(d)`](BackendMode::Slow) | `200` JSON after `d` | yes, before the wait | `200 ok` after `d` |
//! | [`Hang`](BackendMode::Hang) | never answered | no | never answered |
//! | [`Status`](BackendMode::Status) | that status, `Retry-After` if set | no | the same |
//! | [`ResetMidBody`](BackendMode::ResetMidBody) | `200`, body cut by an aborted connection | yes | `200 ok` |
//! | [`DropAfterWork`](BackendMode::DropAfterWork) | connection closed, no response | yes | `200 ok` |
//! | [`EveryNth`](BackendMode::EveryNth) | the inner mode on every `n`-th request, else as `Ok` | accordingly | `200 ok` |
//!
//! The `200` JSON document is
//! `{"backend":"b0","method":"POST","path":"/x","body_len":5}`, with a
//! `"request_id"` member when the request carries an `x-request-id` header.
//! Every response carries an `x-backend: b0` header. Mode changes apply to
//! requests that arrive afterwards.
//!
//! # Executions
//!
//! A request is *executed* when the backend does its work: it is counted in
//! [`BackendStats::executed`] and, when it carries `x-request-id: <id>`,
//! in a ledger shared by all backends: [`LocalHttpBackends::executions`]
//! tells how many times an id was executed, [`LocalHttpBackends::duplicated`]
//! lists the ids executed more than once, which is what a retrying or
//! hedging client must avoid for non-idempotent requests. Note that
//! [`DropAfterWork`](BackendMode::DropAfterWork),
//! [`ResetMidBody`](BackendMode::ResetMidBody) and a
//! [`Slow`](BackendMode::Slow) request whose client gave up all leave an
//! execution behind the client did not see succeed.
//!
//! # Kill and restart
//!
//! [`kill`](LocalHttpBackends::kill) is a crash, and is complete when it
//! returns: the listening socket is closed (connects are refused), every
//! open connection, idle keep-alive ones included, is shut down (the peer
//! reads end-of-stream, requests in flight fail) and the tasks serving them
//! are aborted. [`restart`](LocalHttpBackends::restart) listens again on
//! the same port (the listener sets `SO_REUSEADDR`, so the closed
//! connections' `TIME_WAIT` does not stand in the way) with the mode back
//! to [`Ok`](BackendMode::Ok). Dropping the [`LocalHttpBackends`] kills
//! every backend.
//!
//! As after a real crash, a client that pooled a keep-alive connection to a
//! killed backend may not have noticed yet that it was closed: its next
//! request on that connection can fail (hyper reports an incomplete
//! message), even once the backend has been restarted.
//!
//! # Implementation
//!
//! Each backend is one accept task and one task per connection, on the
//! runtime [`LocalHttpBackends::start`] was called on. The request path
//! takes no lock shared between backends except the ledger's, and only for
//! requests that are executed and carry an id. Files: `backends.rs` (the
//! handle), `server.rs` (a running listener and its accept loop),
//! `connections.rs` (cutting connections), `handler.rs` (the modes acted
//! out), `body.rs` (whole and cut response bodies), `mode.rs`, `state.rs`,
//! `stats.rs` and `ledger.rs`.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::time::Duration;
//! use failover_pool::drill::http::{BackendMode, LocalHttpBackends};
//!
//! let backends = LocalHttpBackends::start(3).await?;
//! // point the client at `backends.urls()`, then:
//! backends.set_mode(0, BackendMode::status_retry_after(503, Duration::from_secs(2)));
//! backends.set_mode(1, BackendMode::every_nth(4, BackendMode::DropAfterWork));
//! backends.kill(2);
//! // ... run requests carrying `x-request-id` through the client ...
//! assert!(backends.duplicated().is_empty());
//! backends.restart(2).await?;
//! # Ok(())
//! # }
//! ```

mod backends;
mod body;
mod connections;
pub mod drill;
mod handler;
mod ledger;
mod mode;
mod server;
mod state;
mod stats;

pub use backends::LocalHttpBackends;
pub use mode::BackendMode;
pub use stats::BackendStats;

pub use drill::{
    HttpBucket, HttpDrillOptions, HttpDrillReport, HttpFault, HttpTimelineEvent, MethodErrors,
    run_http_drill, write_http_outputs,
};

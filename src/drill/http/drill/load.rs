//! The HTTP drill's open-loop load: one request started every `1/rate`
//! seconds, whatever became of the earlier ones, each in its own task and
//! recorded when it ends.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::http::{FailoverClient, served_by};

/// What kind of request a call was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Kind {
    Get,
    Put,
    Post,
    KeyedPost,
}

impl Kind {
    /// The kind of the `i`-th request: GET 6 in 10, PUT 1, POST 2, keyed
    /// POST 1.
    fn of(i: u64) -> Kind {
        match i % 10 {
            0..=5 => Kind::Get,
            6 => Kind::Put,
            7 | 8 => Kind::Post,
            _ => Kind::KeyedPost,
        }
    }

    /// Whether the client may send it twice (RFC 9110, or a key).
    pub(super) fn repeatable(self) -> bool {
        self != Kind::Post
    }

    /// The name in reports.
    pub(super) const fn as_str(self) -> &'static str {
        match self {
            Kind::Get => "GET",
            Kind::Put => "PUT",
            Kind::Post => "POST",
            Kind::KeyedPost => "POST+key",
        }
    }

    /// The `x-request-id` prefix of its requests.
    pub(super) const fn id_prefix(self) -> &'static str {
        match self {
            Kind::Get => "get",
            Kind::Put => "put",
            Kind::Post => "post",
            Kind::KeyedPost => "keyed",
        }
    }
}

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    /// An answer below 500, from this endpoint.
    Answered(Option<Arc<str>>),
    /// A 5xx answer.
    Status(u16),
    /// An error; whether it may have executed, and its text.
    Failed {
        may_have_executed: bool,
        text: String,
    },
}

/// One call.
#[derive(Debug, Clone)]
pub(super) struct Call {
    pub(super) kind: Kind,
    /// When it started, since the load's origin.
    pub(super) at: Duration,
    pub(super) took: Duration,
    pub(super) outcome: Outcome,
}

impl Call {
    pub(super) fn ok(&self) -> bool {
        matches!(self.outcome, Outcome::Answered(_))
    }
}

/// Runs the load from `origin` for `duration`; returns every call.
pub(super) async fn open_loop(
    client: &FailoverClient,
    rate: u32,
    origin: Instant,
    duration: Duration,
    progress: Arc<Mutex<(u64, u64)>>,
) -> Vec<Call> {
    let interval = Duration::from_secs(1) / rate;
    let mut tasks = JoinSet::new();
    let mut calls = Vec::new();
    let mut i = 0u64;
    loop {
        let at = interval * u32::try_from(i).unwrap_or(u32::MAX);
        if at >= duration {
            break;
        }
        tokio::time::sleep_until((origin + at).into()).await;
        let (client, progress) = (client.clone(), progress.clone());
        tasks.spawn(async move {
            let call = one(&client, Kind::of(i), i, origin).await;
            let mut p = progress.lock().unwrap_or_else(|e| e.into_inner());
            if call.ok() {
                p.0 += 1;
            } else {
                p.1 += 1;
            }
            call
        });
        i += 1;
        while let Some(done) = tasks.try_join_next() {
            calls.extend(done.ok());
        }
    }
    while let Some(done) = tasks.join_next().await {
        calls.extend(done.ok());
    }
    calls
}

/// Sends request `i` of `kind`.
async fn one(client: &FailoverClient, kind: Kind, i: u64, origin: Instant) -> Call {
    let request = match kind {
        Kind::Get => client.get(format!("/items/{}", i % 1000)),
        Kind::Put => client.put(format!("/items/{}", i % 1000)).body("v"),
        Kind::Post => client.post("/orders").body("new"),
        Kind::KeyedPost => client.post("/orders").body("new").idempotency_key(),
    };
    let started = Instant::now();
    let result = request
        .header("x-request-id", format!("{}-{i}", kind.id_prefix()))
        .send()
        .await;
    let outcome = match result {
        Ok(r) if r.status().as_u16() < 500 => {
            let by = served_by(&r).and_then(|s| s.endpoint.clone());
            // Read the body: the call is done when the caller has it.
            let _ = r.bytes().await;
            Outcome::Answered(by)
        }
        Ok(r) => Outcome::Status(r.status().as_u16()),
        Err(e) => Outcome::Failed {
            may_have_executed: e.may_have_executed(),
            text: crate::error::chain(&e),
        },
    };
    Call {
        kind,
        at: started.saturating_duration_since(origin),
        took: started.elapsed(),
        outcome,
    }
}

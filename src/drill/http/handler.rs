//! The request handler of a backend: reads the whole request, then acts out
//! the backend's [`BackendMode`] on it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::body::ReplyBody;
use super::mode::BackendMode;
use super::state::BackendState;

/// The header a request is identified by in the request ledger.
const REQUEST_ID: &str = "x-request-id";
/// The header naming the backend on every response.
const BACKEND: &str = "x-backend";

/// The handler's error: hyper closes the connection without answering.
#[derive(Debug)]
pub(super) struct CloseConnection(&'static str);

impl fmt::Display for CloseConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for CloseConnection {}

/// Serves one request on the backend `state`.
pub(super) async fn handle(
    state: Arc<BackendState>,
    request: Request<Incoming>,
) -> Result<Response<ReplyBody>, CloseConnection> {
    state.tally.received();
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(body) => body.to_bytes(),
        // The client went away mid-body: nothing to answer.
        Err(_) => return Err(CloseConnection("request body read failed")),
    };
    if parts.method == Method::GET && parts.uri.path() == "/health" {
        state.tally.health_check();
        return health(&state).await;
    }
    match state.next_request_mode() {
        BackendMode::Slow(delay) => {
            execute(&state, &parts);
            tokio::time::sleep(delay).await;
            Ok(reply_ok(&state, &parts, &body))
        }
        BackendMode::Hang => hang().await,
        BackendMode::Status { code, retry_after } => Ok(reply_status(&state, code, retry_after)),
        BackendMode::ResetMidBody => {
            execute(&state, &parts);
            let json = ok_json(&state, &parts, &body);
            Ok(reply(
                &state,
                StatusCode::OK,
                ReplyBody::cut(json),
                "application/json",
            ))
        }
        BackendMode::DropAfterWork => {
            execute(&state, &parts);
            Err(CloseConnection(
                "drill backend drops the connection after the work",
            ))
        }
        // `EveryNth` never comes out of `next_request_mode`.
        BackendMode::Ok | BackendMode::EveryNth { .. } => {
            execute(&state, &parts);
            Ok(reply_ok(&state, &parts, &body))
        }
    }
}

/// Answers `GET /health` as the backend's [`health_mode`](BackendState::health_mode) says.
async fn health(state: &BackendState) -> Result<Response<ReplyBody>, CloseConnection> {
    match state.health_mode() {
        BackendMode::Slow(delay) => tokio::time::sleep(delay).await,
        BackendMode::Hang => return hang().await,
        BackendMode::Status { code, retry_after } => {
            return Ok(reply_status(state, code, retry_after));
        }
        BackendMode::Ok
        | BackendMode::ResetMidBody
        | BackendMode::DropAfterWork
        | BackendMode::EveryNth { .. } => {}
    }
    Ok(reply(
        state,
        StatusCode::OK,
        ReplyBody::whole("ok"),
        "text/plain",
    ))
}

/// Never answers; the connection's end (or the backend's) drops this.
async fn hang() -> Result<Response<ReplyBody>, CloseConnection> {
    std::future::pending().await
}

/// Counts the request as executed, in the backend's counters and, when it
/// carries an id, in the request ledger.
fn execute(state: &BackendState, parts: &Parts) {
    state.tally.executed(parts.method.as_str());
    if let Some(id) = request_id(parts) {
        state.ledger.record(id);
    }
}

fn request_id(parts: &Parts) -> Option<&str> {
    parts.headers.get(REQUEST_ID)?.to_str().ok()
}

/// The JSON document of an executed request.
fn ok_json(state: &BackendState, parts: &Parts, body: &Bytes) -> Vec<u8> {
    let mut json = serde_json::json!({
        "backend": state.id(),
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "body_len": body.len(),
    });
    if let Some(id) = request_id(parts) {
        json["request_id"] = id.into();
    }
    json.to_string().into_bytes()
}

fn reply_ok(state: &BackendState, parts: &Parts, body: &Bytes) -> Response<ReplyBody> {
    let json = ok_json(state, parts, body);
    reply(
        state,
        StatusCode::OK,
        ReplyBody::whole(json),
        "application/json",
    )
}

fn reply_status(
    state: &BackendState,
    code: u16,
    retry_after: Option<Duration>,
) -> Response<ReplyBody> {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let json = serde_json::json!({ "backend": state.id(), "status": status.as_u16() });
    let mut response = reply(
        state,
        status,
        ReplyBody::whole(json.to_string()),
        "application/json",
    );
    if let Some(retry_after) = retry_after {
        let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// A response from this backend, counted as answered.
fn reply(
    state: &BackendState,
    status: StatusCode,
    body: ReplyBody,
    content_type: &'static str,
) -> Response<ReplyBody> {
    state.tally.answered(status.as_u16());
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(id) = HeaderValue::from_str(state.id()) {
        headers.insert(BACKEND, id);
    }
    response
}

//! The fake's HTTP handlers (see the parent module for what they follow).

use super::{Instance, Seen, Shared, State};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use serde_json::Value;
use std::time::{Duration, Instant};

/// `7s`, `1500ms`, `2m` → a duration (Go's syntax, the units Consul's
/// clients send).
fn parse_wait(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(60 * n)),
        _ => None,
    }
}

fn params(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), decode(v))
        })
        .collect()
}

fn decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn reply(status: StatusCode, index: Option<u64>, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .header("X-Consul-Knownleader", "true")
        .header("X-Consul-Lastcontact", "0");
    if let Some(i) = index {
        r = r.header("X-Consul-Index", i.to_string());
    }
    r.body(Full::new(Bytes::from(body))).unwrap()
}

pub(crate) async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let token = req
        .headers()
        .get("X-Consul-Token")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let response = answer(shared, &method, &path, &query, token.as_deref(), &body).await;
    shared.state.lock().unwrap().seen.push(Seen {
        method,
        path,
        query,
        token,
        held: started.elapsed(),
        status: response.status().as_u16(),
    });
    response
}

async fn answer(
    shared: &Shared,
    method: &str,
    path: &str,
    query: &str,
    token: Option<&str>,
    body: &[u8],
) -> Response<Full<Bytes>> {
    let params = params(query);
    let param = |k: &str| {
        params
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    {
        let s = shared.state.lock().unwrap();
        if s.token.is_some() && s.token.as_deref() != token {
            let text = if s.echo_token {
                format!("ACL not found (token {})", token.unwrap_or_default())
            } else {
                "ACL not found".to_owned()
            };
            return reply(StatusCode::FORBIDDEN, None, text);
        }
    }
    if let Some(name) = path.strip_prefix("/v1/health/service/") {
        if let Some(dc) = param("dc")
            && dc != shared.state.lock().unwrap().datacenter
        {
            return reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                None,
                "No path to datacenter".into(),
            );
        }
        let min_index: u64 = param("index").and_then(|i| i.parse().ok()).unwrap_or(0);
        if min_index > 0 {
            let wait = param("wait")
                .and_then(|w| parse_wait(&w))
                .unwrap_or(Duration::from_secs(300));
            let mut rx = shared.changed.subscribe();
            let deadline = tokio::time::Instant::now() + wait.min(Duration::from_secs(600));
            while shared.state.lock().unwrap().index <= min_index {
                if tokio::time::timeout_at(deadline, rx.changed())
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
        let s = shared.state.lock().unwrap();
        let passing = params.iter().any(|(k, v)| k == "passing" && v != "false");
        let tags: Vec<String> = params
            .iter()
            .filter(|(k, _)| k == "tag")
            .map(|(_, v)| v.clone())
            .collect();
        let list: Vec<Value> = s
            .instances
            .iter()
            .filter(|i| i.service == decode(name))
            .filter(|i| !passing || i.passing())
            .filter(|i| tags.iter().all(|t| i.tags.contains(t)))
            .map(|i| i.to_json(&s.datacenter, s.index))
            .collect();
        let index = if s.zero_index { 0 } else { s.index };
        return reply(StatusCode::OK, Some(index), Value::Array(list).to_string());
    }
    if method == "PUT" && path == "/v1/agent/service/register" {
        let reg: Value = serde_json::from_slice(body).unwrap();
        let id = reg["ID"].as_str().unwrap().to_owned();
        let mut instance = Instance::new(
            reg["Name"].as_str().unwrap(),
            &id,
            reg["Port"].as_u64().unwrap() as u16,
        );
        instance.node = "fake-agent".into();
        instance.address = reg["Address"].as_str().unwrap_or_default().to_owned();
        instance.tags = serde_json::from_value(reg["Tags"].clone()).unwrap_or_default();
        instance.meta = serde_json::from_value(reg["Meta"].clone()).unwrap_or_default();
        // Consul starts a registered check as critical.
        instance.checks = if reg.get("Check").is_some() {
            vec!["critical"]
        } else {
            vec![]
        };
        bump(shared, |s| {
            s.instances.retain(|i| i.id != id);
            s.instances.push(instance);
            s.registrations.insert(id, reg);
        });
        return reply(StatusCode::OK, None, String::new());
    }
    if let Some(id) = path.strip_prefix("/v1/agent/service/deregister/")
        && method == "PUT"
    {
        let id = decode(id);
        if !shared.state.lock().unwrap().registrations.contains_key(&id) {
            return reply(
                StatusCode::NOT_FOUND,
                None,
                format!("Unknown service ID {id:?}"),
            );
        }
        bump(shared, |s| {
            s.instances.retain(|i| i.id != id);
            s.registrations.remove(&id);
        });
        return reply(StatusCode::OK, None, String::new());
    }
    reply(StatusCode::NOT_FOUND, None, "not found".into())
}

fn bump(shared: &Shared, f: impl FnOnce(&mut State)) {
    let index = {
        let mut s = shared.state.lock().unwrap();
        f(&mut s);
        s.index += 1;
        s.index
    };
    shared.changed.send_replace(index);
}

//! An in-process fake of the Kubernetes API server's wire format for
//! EndpointSlices: LIST (`EndpointSliceList`) and WATCH (newline-delimited
//! watch events over a chunked HTTP/1.1 response), with label-selector
//! filtering, resourceVersions, BOOKMARKs, dropped watches, 410 Gone (as an
//! `ERROR` event or an HTTP 410) and an outage mode. Plain HTTP, one request
//! per connection (`Connection: close`).

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// One endpoint of a slice, as the test describes it.
#[derive(Debug, Clone)]
pub(crate) struct Ep {
    pub(crate) pod: &'static str,
    pub(crate) ip: &'static str,
    pub(crate) ready: bool,
    pub(crate) terminating: bool,
}

pub(crate) fn ready(pod: &'static str, ip: &'static str) -> Ep {
    Ep {
        pod,
        ip,
        ready: true,
        terminating: false,
    }
}

/// How an expired resourceVersion is answered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum GoneAs {
    ErrorEvent,
    Http410,
}

/// One request the server saw.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) target: String,
    pub(crate) authorization: Option<String>,
}

impl Seen {
    pub(crate) fn is_watch(&self) -> bool {
        self.target.contains("watch=1")
    }
    pub(crate) fn param(&self, name: &str) -> Option<String> {
        let q = self.target.split_once('?')?.1;
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| decode(v))
    }
}

#[derive(Debug, Default)]
struct State {
    rv: u64,
    /// name → (service, object)
    slices: BTreeMap<String, (String, Value)>,
    /// (rv, service, event)
    history: Vec<(u64, String, Value)>,
    /// Watches from a resourceVersion below this get 410.
    oldest: u64,
    gone_as: Option<GoneAs>,
    down: bool,
    seen: Vec<Seen>,
}

/// The fake server; dropping it stops nothing (the test runtime ends it).
#[derive(Debug, Clone)]
pub(crate) struct FakeApi {
    pub(crate) addr: SocketAddr,
    state: Arc<Mutex<State>>,
    /// Bumped on every change; watches wake on it.
    tick: Arc<watch::Sender<u64>>,
    /// Bumped to end every open watch.
    cut: Arc<watch::Sender<u64>>,
}

impl FakeApi {
    pub(crate) async fn start() -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = FakeApi {
            addr: listener.local_addr().unwrap(),
            state: Arc::default(),
            tick: Arc::new(watch::channel(0).0),
            cut: Arc::new(watch::channel(0).0),
        };
        api.state.lock().unwrap().rv = 100;
        let a = api.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let a = a.clone();
                tokio::spawn(async move {
                    let _ = a.serve(conn).await;
                });
            }
        });
        api
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Creates or replaces slice `name` of `service`.
    pub(crate) fn put_slice(
        &self,
        service: &str,
        name: &str,
        port_name: &str,
        port: u16,
        eps: &[Ep],
    ) {
        let mut st = self.state.lock().unwrap();
        st.rv += 1;
        let rv = st.rv;
        let kind = if st.slices.contains_key(name) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        let obj = slice_json(service, name, rv, port_name, port, eps);
        st.slices.insert(name.into(), (service.into(), obj.clone()));
        st.history
            .push((rv, service.into(), json!({"type": kind, "object": obj})));
        drop(st);
        self.tick.send_modify(|t| *t += 1);
    }

    pub(crate) fn delete_slice(&self, name: &str) {
        let mut st = self.state.lock().unwrap();
        st.rv += 1;
        let rv = st.rv;
        let (service, mut obj) = st.slices.remove(name).expect("no such slice");
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        st.history
            .push((rv, service, json!({"type": "DELETED", "object": obj})));
        drop(st);
        self.tick.send_modify(|t| *t += 1);
    }

    /// Sends a BOOKMARK at a new resourceVersion to every watch; returns it.
    pub(crate) fn bookmark(&self) -> u64 {
        let mut st = self.state.lock().unwrap();
        st.rv += 1;
        let rv = st.rv;
        let ev = json!({"type": "BOOKMARK", "object": {
            "kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
            "metadata": {"resourceVersion": rv.to_string(),
                         "annotations": {"k8s.io/initial-events-end": "true"}}}});
        st.history.push((rv, "*".into(), ev));
        drop(st);
        self.tick.send_modify(|t| *t += 1);
        rv
    }

    /// Ends every open watch (a clean end of the chunked stream).
    pub(crate) fn drop_watches(&self) {
        self.cut.send_modify(|t| *t += 1);
    }

    /// Forgets the history: a watch from any resourceVersion seen so far
    /// gets 410 Gone, answered as `how`.
    pub(crate) fn compact(&self, how: GoneAs) {
        let mut st = self.state.lock().unwrap();
        st.rv += 1;
        st.oldest = st.rv;
        st.gone_as = Some(how);
        st.history.clear();
    }

    /// While down, every connection is closed without an answer.
    pub(crate) fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
        if down {
            self.drop_watches();
        }
    }

    async fn serve(&self, conn: TcpStream) -> std::io::Result<()> {
        let mut conn = BufReader::new(conn);
        let mut line = String::new();
        conn.read_line(&mut line).await?;
        let target = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
        let mut authorization = None;
        loop {
            let mut h = String::new();
            if conn.read_line(&mut h).await? == 0 || h == "\r\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("authorization")
            {
                authorization = Some(v.trim().to_owned());
            }
        }
        let seen = Seen {
            target: target.clone(),
            authorization,
        };
        {
            let mut st = self.state.lock().unwrap();
            if st.down {
                return Ok(()); // closed without an answer
            }
            st.seen.push(seen.clone());
        }
        let mut conn = conn.into_inner();
        let service = seen
            .param("labelSelector")
            .and_then(|s| {
                s.strip_prefix("kubernetes.io/service-name=")
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        if !target.starts_with("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices") {
            return respond(
                &mut conn,
                404,
                &status(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                ),
            )
            .await;
        }
        if !seen.is_watch() {
            let body = {
                let st = self.state.lock().unwrap();
                let items: Vec<Value> = st
                    .slices
                    .values()
                    .filter(|(s, _)| *s == service)
                    .map(|(_, o)| o.clone())
                    .collect();
                json!({"kind": "EndpointSliceList", "apiVersion": "discovery.k8s.io/v1",
                       "metadata": {"resourceVersion": st.rv.to_string()}, "items": items})
            };
            return respond(&mut conn, 200, &body).await;
        }
        let from: u64 = seen
            .param("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let (oldest, gone_as) = {
            let st = self.state.lock().unwrap();
            (st.oldest, st.gone_as)
        };
        let expired = status(
            410,
            "Expired",
            &format!("too old resource version: {from} ({oldest})"),
        );
        if from < oldest && gone_as == Some(GoneAs::Http410) {
            return respond(&mut conn, 410, &expired).await;
        }
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").await?;
        if from < oldest {
            chunk(&mut conn, &json!({"type": "ERROR", "object": expired})).await?;
            return conn.write_all(b"0\r\n\r\n").await;
        }
        let mut tick = self.tick.subscribe();
        let mut cut = self.cut.subscribe();
        let mut sent = from;
        loop {
            let events: Vec<(u64, Value)> = {
                let st = self.state.lock().unwrap();
                st.history
                    .iter()
                    .filter(|(rv, s, _)| *rv > sent && (*s == service || s == "*"))
                    .map(|(rv, _, e)| (*rv, e.clone()))
                    .collect()
            };
            for (rv, ev) in events {
                chunk(&mut conn, &ev).await?;
                sent = rv;
            }
            tokio::select! {
                _ = tick.changed() => {}
                _ = cut.changed() => return conn.write_all(b"0\r\n\r\n").await,
            }
        }
    }
}

async fn chunk(conn: &mut TcpStream, v: &Value) -> std::io::Result<()> {
    let line = format!("{v}\n");
    conn.write_all(format!("{:x}\r\n{line}\r\n", line.len()).as_bytes())
        .await?;
    conn.flush().await
}

async fn respond(conn: &mut TcpStream, code: u16, body: &Value) -> std::io::Result<()> {
    let body = body.to_string();
    let head = format!(
        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await?;
    conn.write_all(body.as_bytes()).await?;
    conn.shutdown().await
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

/// An EndpointSlice shaped like the API reference's example.
fn slice_json(service: &str, name: &str, rv: u64, port_name: &str, port: u16, eps: &[Ep]) -> Value {
    let endpoints: Vec<Value> = eps.iter().map(|e| json!({
        "addresses": [e.ip],
        "conditions": {"ready": e.ready, "serving": e.ready || e.terminating, "terminating": e.terminating},
        "nodeName": "node-1",
        "zone": "zone-a",
        "targetRef": {"kind": "Pod", "namespace": "default", "name": e.pod, "uid": format!("uid-{}", e.pod)},
    })).collect();
    json!({
        "kind": "EndpointSlice",
        "apiVersion": "discovery.k8s.io/v1",
        "metadata": {
            "name": name, "namespace": "default", "generateName": format!("{service}-"),
            "uid": format!("uid-{name}"), "resourceVersion": rv.to_string(), "generation": 1,
            "labels": {"kubernetes.io/service-name": service,
                       "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": service,
                                 "uid": format!("uid-{service}"), "controller": true, "blockOwnerDeletion": true}],
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": port_name, "protocol": "TCP", "port": port, "appProtocol": "http"},
                  {"name": "metrics", "protocol": "TCP", "port": 9090}],
    })
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

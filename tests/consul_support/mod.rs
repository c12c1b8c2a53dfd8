//! An in-process fake of the parts of Consul's HTTP API that the `consul`
//! module uses, following the documented wire format:
//!
//! - `GET /v1/health/service/<name>` with `passing`, `tag` (all must match),
//!   `dc` (an unknown one answers 500 "No path to datacenter", as Consul
//!   does), `ns` and `near` (recorded), and blocking queries: with
//!   `index=N`, the answer waits while the fake's index is `<= N`, until it
//!   changes or `wait` passes (Consul's semantics, without its jitter);
//!   every answer carries `X-Consul-Index`;
//! - `PUT /v1/agent/service/register` and `/v1/agent/service/deregister/<id>`;
//! - the `X-Consul-Token` header, checked on every request (403 "ACL not
//!   found" otherwise).
//!
//! Answers are shaped like the examples in Consul's API docs.
#![allow(dead_code)]

pub(crate) mod logs;
mod server;

use failover_pool::core::{Endpoint, Failover};
use failover_pool::discovery::consul::{ConsulAgent, ConsulDiscovery};
use failover_pool::discovery::{Discovery, DiscoveryChange};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// One instance in the fake catalog.
#[derive(Debug, Clone)]
pub(crate) struct Instance {
    pub(crate) node: String,
    pub(crate) node_address: String,
    pub(crate) id: String,
    pub(crate) service: String,
    pub(crate) address: String,
    pub(crate) port: u16,
    pub(crate) tags: Vec<String>,
    pub(crate) meta: BTreeMap<String, String>,
    pub(crate) weights: (u32, u32),
    /// Statuses of the service's checks (the node's serfHealth is passing).
    pub(crate) checks: Vec<&'static str>,
}

impl Instance {
    pub(crate) fn new(service: &str, id: &str, port: u16) -> Self {
        Instance {
            node: format!("node-{id}"),
            node_address: "127.0.0.1".into(),
            id: id.into(),
            service: service.into(),
            address: "127.0.0.1".into(),
            port,
            tags: Vec::new(),
            meta: BTreeMap::new(),
            weights: (1, 1),
            checks: vec!["passing"],
        }
    }

    pub(crate) fn tags(mut self, tags: &[&str]) -> Self {
        self.tags = tags.iter().map(|t| t.to_string()).collect();
        self
    }

    pub(crate) fn checks(mut self, checks: &[&'static str]) -> Self {
        self.checks = checks.to_vec();
        self
    }

    fn passing(&self) -> bool {
        self.checks.iter().all(|c| *c == "passing")
    }

    fn to_json(&self, dc: &str, index: u64) -> Value {
        let mut checks = vec![json!({
            "Node": self.node, "CheckID": "serfHealth", "Name": "Serf Health Status",
            "Status": "passing", "Notes": "", "Output": "Agent alive and reachable",
            "ServiceID": "", "ServiceName": "", "ServiceTags": [], "Type": "",
            "Definition": {}, "CreateIndex": 7, "ModifyIndex": 7
        })];
        for (i, status) in self.checks.iter().enumerate() {
            checks.push(json!({
                "Node": self.node, "CheckID": format!("service:{}:{}", self.id, i + 1),
                "Name": format!("Service '{}' check", self.service), "Status": status,
                "Notes": "", "Output": "", "ServiceID": self.id, "ServiceName": self.service,
                "ServiceTags": self.tags, "Type": "http", "Definition": {},
                "CreateIndex": index, "ModifyIndex": index
            }));
        }
        json!({
            "Node": {
                "ID": "40e4a748-2192-161a-0510-9bf59fe950b5", "Node": self.node,
                "Address": self.node_address, "Datacenter": dc,
                "TaggedAddresses": {"lan": self.node_address, "wan": self.node_address},
                "Meta": {"instance_type": "t2.medium"}, "CreateIndex": 5, "ModifyIndex": 5
            },
            "Service": {
                "ID": self.id, "Service": self.service, "Tags": self.tags,
                "Address": self.address, "TaggedAddresses": {}, "Meta": self.meta,
                "Port": self.port,
                "Weights": {"Passing": self.weights.0, "Warning": self.weights.1},
                "EnableTagOverride": false, "Proxy": {}, "Connect": {},
                "CreateIndex": index, "ModifyIndex": index
            },
            "Checks": checks
        })
    }
}

/// A request the fake saw.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) query: String,
    pub(crate) token: Option<String>,
    /// How long the answer was held (blocking queries).
    pub(crate) held: Duration,
    pub(crate) status: u16,
}

/// The fake's state; change it through [`FakeConsul::update`].
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) index: u64,
    pub(crate) datacenter: String,
    pub(crate) token: Option<String>,
    pub(crate) instances: Vec<Instance>,
    pub(crate) registrations: BTreeMap<String, Value>,
    pub(crate) seen: Vec<Seen>,
    /// Answer `X-Consul-Index: 0` (the Consul bug the docs warn about).
    pub(crate) zero_index: bool,
    /// Echo the sent token in a 403 body (no real Consul does this: an
    /// adversarial check of the client's scrubbing).
    pub(crate) echo_token: bool,
}

pub(crate) struct Shared {
    pub(crate) state: Mutex<State>,
    pub(crate) changed: watch::Sender<u64>,
}

pub(crate) struct FakeConsul {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: Mutex<Option<JoinHandle<()>>>,
}

impl FakeConsul {
    /// A fake listening on a free loopback port, index 100.
    pub(crate) async fn start(token: Option<&str>, instances: Vec<Instance>) -> Self {
        let (changed, _) = watch::channel(100);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                index: 100,
                datacenter: "dc1".into(),
                token: token.map(str::to_owned),
                instances,
                registrations: BTreeMap::new(),
                seen: Vec::new(),
                zero_index: false,
                echo_token: false,
            }),
            changed,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fake = FakeConsul {
            addr,
            shared,
            server: Mutex::new(None),
        };
        fake.serve(listener);
        fake
    }

    pub(crate) fn address(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let shared = Arc::clone(&self.shared);
        let task = tokio::spawn(async move {
            // Aborting this task drops the listener and every connection.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = Arc::clone(&shared);
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let shared = Arc::clone(&shared);
                        async move {
                            Ok::<_, std::convert::Infallible>(server::handle(&shared, req).await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        *self.server.lock().unwrap() = Some(task);
    }

    /// Makes the agent unreachable: the listener closes and open
    /// connections (blocking queries included) are cut.
    pub(crate) async fn stop(&self) {
        if let Some(task) = self.server.lock().unwrap().take() {
            task.abort();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    /// Listens again on the same port.
    pub(crate) async fn restart(&self) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(self.addr).unwrap();
        self.serve(socket.listen(128).unwrap());
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap()
    }

    /// Changes the catalog and raises the index by one.
    pub(crate) fn update(&self, f: impl FnOnce(&mut State)) {
        let index = {
            let mut s = self.state();
            f(&mut s);
            s.index += 1;
            s.index
        };
        self.shared.changed.send_replace(index);
    }

    /// Changes the catalog and sets the index to `index` (lower than
    /// before: a snapshot restore, one of the cases where Consul's index
    /// goes backwards).
    pub(crate) fn restore(&self, index: u64, f: impl FnOnce(&mut State)) {
        {
            let mut s = self.state();
            f(&mut s);
            s.index = index;
        }
        self.shared.changed.send_replace(index);
    }

    /// The health queries seen so far.
    pub(crate) fn health_queries(&self) -> Vec<Seen> {
        let s = self.state();
        s.seen
            .iter()
            .filter(|r| r.path.starts_with("/v1/health/service/"))
            .cloned()
            .collect()
    }
}

// Helpers shared by the tests.

pub(crate) const TOKEN: &str = "s3cr3t-acl-9f8e7d6c";
pub(crate) const PATIENCE: Duration = Duration::from_secs(15);

pub(crate) fn agent(fake: &FakeConsul) -> ConsulAgent {
    ConsulAgent::new(&fake.address()).unwrap().with_token(TOKEN)
}

pub(crate) fn web(id: &str, port: u16) -> Instance {
    Instance::new("web", id, port)
}

pub(crate) async fn next(d: &ConsulDiscovery) -> Vec<Endpoint> {
    match tokio::time::timeout(PATIENCE, d.next_change()).await {
        Ok(Ok(DiscoveryChange::Replace(list))) => list,
        other => panic!("expected a list, got {other:?}"),
    }
}

pub(crate) fn ids(list: &[Endpoint]) -> Vec<&str> {
    list.iter().map(|e| &*e.id).collect()
}

pub(crate) fn set_ids(f: &Failover) -> Vec<String> {
    let snap = f.endpoints().snapshot();
    snap.endpoints().iter().map(|e| e.id().to_owned()).collect()
}

pub(crate) async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub(crate) fn assert_no_token_in_logs() {
    for line in logs::lines() {
        assert!(!line.contains(TOKEN), "token in a log line: {line}");
        assert!(!line.contains("wr0ng-t0k3n"), "token in a log line: {line}");
    }
}

//! LIST then WATCH of a Service's EndpointSlices, as a cancel-safe state
//! machine behind [`Watcher::next`].

use super::access::ClusterAccess;
use super::wire::{Mapping, Meta, Slice, SliceList, Status, WatchEvent, union};
use crate::core::discovery::DiscoveryChange;
use crate::core::endpoint::Endpoint;
use crate::error::{Error, ErrorClass, Result};
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// A watch line longer than this is an error (an EndpointSlice holds at most
/// 1000 endpoints, far below it).
const MAX_LINE: usize = 16 << 20;

/// Everything that survives between calls. Each field is written only after
/// the await that produced its new value completed, so dropping a
/// [`Watcher::next`] future loses nothing.
#[derive(Default)]
struct State {
    /// Endpoints of each slice, by slice name.
    slices: BTreeMap<String, Vec<Endpoint>>,
    /// The resourceVersion to watch from; `None` means LIST first.
    rv: Option<String>,
    /// The open watch response and its unread bytes.
    stream: Option<Stream>,
    /// The list last returned.
    last: Option<Vec<Endpoint>>,
    /// Watches in a row that ended at once without a line.
    quick_ends: u32,
}

struct Stream {
    response: reqwest::Response,
    buf: Vec<u8>,
    opened: Instant,
    lines: u64,
}

/// What one watch line did.
enum Flow {
    Changed,
    Nothing,
    Gone,
}

pub(super) struct Watcher {
    pub(super) access: ClusterAccess,
    pub(super) client: reqwest::Client,
    /// `{server}/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices`.
    pub(super) url: String,
    pub(super) selector: String,
    pub(super) mapping: Mapping,
    pub(super) watch_timeout: Duration,
    pub(super) request_timeout: Duration,
    state: Mutex<State>,
}

impl fmt::Debug for Watcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watcher")
            .field("access", &self.access)
            .field("url", &self.url)
            .field("selector", &self.selector)
            .field("port_name", &self.mapping.port_name)
            .field("watch_timeout", &self.watch_timeout)
            .finish_non_exhaustive()
    }
}

impl Watcher {
    pub(super) fn new(
        access: ClusterAccess,
        client: reqwest::Client,
        mapping: Mapping,
        watch_timeout: Duration,
        request_timeout: Duration,
    ) -> Self {
        let url = format!(
            "{}/apis/discovery.k8s.io/v1/namespaces/{}/endpointslices",
            access.server(),
            mapping.namespace
        );
        Watcher {
            selector: format!("kubernetes.io/service-name={}", mapping.service),
            access,
            client,
            url,
            mapping,
            watch_timeout,
            request_timeout,
            state: Mutex::new(State::default()),
        }
    }

    /// The next change: the listed endpoints first, then one
    /// [`DiscoveryChange::Replace`] per watch event that changed the union.
    pub(super) async fn next(&self) -> Result<DiscoveryChange> {
        let mut st = self.state.lock().await;
        loop {
            if st.stream.is_none() {
                let Some(rv) = st.rv.clone() else {
                    let (slices, rv) = self.list().await?;
                    st.slices = slices;
                    st.rv = Some(rv);
                    let list = union(&st.slices);
                    if st.last.as_ref() != Some(&list) {
                        st.last = Some(list.clone());
                        return Ok(DiscoveryChange::Replace(list));
                    }
                    continue;
                };
                match self.open_watch(&rv).await? {
                    Some(response) => {
                        st.stream = Some(Stream {
                            response,
                            buf: Vec::new(),
                            opened: Instant::now(),
                            lines: 0,
                        });
                    }
                    None => st.rv = None, // 410 Gone: list again
                }
                continue;
            }
            let line = match read_line(st.stream.as_mut().expect("checked above")).await {
                Ok(Some(line)) => line,
                Ok(None) => {
                    let s = st.stream.take().expect("checked above");
                    if s.lines == 0 && s.opened.elapsed() < Duration::from_secs(1) {
                        st.quick_ends += 1;
                        if st.quick_ends >= 3 {
                            st.quick_ends = 0;
                            return Err(self.error("watch", "the watch keeps closing at once"));
                        }
                    }
                    tracing::debug!(url = %self.url, "kubernetes watch ended; resuming");
                    continue;
                }
                Err(e) => {
                    st.stream = None;
                    return Err(self.error("watch", e));
                }
            };
            if let Some(s) = st.stream.as_mut() {
                s.lines += 1;
            }
            st.quick_ends = 0;
            match self.apply(&mut st, &line) {
                Ok(Flow::Changed) => {
                    let list = union(&st.slices);
                    if st.last.as_ref() != Some(&list) {
                        st.last = Some(list.clone());
                        return Ok(DiscoveryChange::Replace(list));
                    }
                }
                Ok(Flow::Nothing) => {}
                Ok(Flow::Gone) => {
                    tracing::debug!(url = %self.url, "kubernetes watch expired (410); listing again");
                    st.stream = None;
                    st.rv = None;
                }
                Err(e) => {
                    st.stream = None;
                    return Err(e);
                }
            }
        }
    }

    fn error(&self, op: &'static str, e: impl Into<crate::error::BoxError>) -> Error {
        Error::backend(self.access.server(), ErrorClass::not_executed(), e).during(
            if op == "list" {
                "kubernetes list"
            } else {
                "kubernetes watch"
            },
        )
    }

    fn request(&self) -> Result<reqwest::RequestBuilder> {
        let mut req = self
            .client
            .get(&self.url)
            .header("Accept", "application/json");
        if let Some(token) = self.access.bearer()? {
            req = req.bearer_auth(token);
        }
        Ok(req)
    }

    /// LISTs every slice of the service (following `continue`).
    async fn list(&self) -> Result<(BTreeMap<String, Vec<Endpoint>>, String)> {
        let mut slices = BTreeMap::new();
        let mut cont: Option<String> = None;
        loop {
            let mut q = vec![("labelSelector", self.selector.as_str())];
            if let Some(c) = &cont {
                q.push(("continue", c));
            }
            let resp = self
                .request()?
                .query(&q)
                .timeout(self.request_timeout)
                .send()
                .await
                .map_err(|e| self.error("list", e))?;
            let status = resp.status();
            let body = resp.bytes().await.map_err(|e| self.error("list", e))?;
            if !status.is_success() {
                return Err(self.status_error("list", status.as_u16(), &body));
            }
            let page: SliceList = serde_json::from_slice(&body)
                .map_err(|e| self.error("list", format!("bad EndpointSliceList: {e}")))?;
            for slice in page.items.unwrap_or_default() {
                self.insert(&mut slices, &slice);
            }
            match page.metadata.continue_token.filter(|c| !c.is_empty()) {
                Some(c) => cont = Some(c),
                None => {
                    let rv = page.metadata.resource_version.unwrap_or_default();
                    return Ok((slices, rv));
                }
            }
        }
    }

    /// Opens a watch from `rv`; `None` on 410 Gone.
    async fn open_watch(&self, rv: &str) -> Result<Option<reqwest::Response>> {
        let secs = self.watch_timeout.as_secs().max(1).to_string();
        let resp = self
            .request()?
            .query(&[
                ("labelSelector", self.selector.as_str()),
                ("watch", "1"),
                ("resourceVersion", rv),
                ("allowWatchBookmarks", "true"),
                ("timeoutSeconds", &secs),
            ])
            .timeout(self.watch_timeout + self.request_timeout)
            .send()
            .await
            .map_err(|e| self.error("watch", e))?;
        let status = resp.status().as_u16();
        if status == 410 {
            return Ok(None);
        }
        if !(200..300).contains(&status) {
            let body = resp.bytes().await.unwrap_or_default();
            return Err(self.status_error("watch", status, &body));
        }
        Ok(Some(resp))
    }

    fn status_error(&self, op: &'static str, status: u16, body: &[u8]) -> Error {
        let detail = serde_json::from_slice::<Status>(body)
            .map(|s| s.describe())
            .unwrap_or_else(|_| "no Status in the body".into());
        self.error(op, format!("HTTP {status}: {detail}"))
    }

    fn insert(&self, slices: &mut BTreeMap<String, Vec<Endpoint>>, slice: &Slice) {
        let name = slice.metadata.name.clone().unwrap_or_default();
        match self.mapping.endpoints(slice) {
            Ok(eps) => {
                slices.insert(name, eps);
            }
            Err(why) => {
                tracing::warn!(slice = %name, service = %self.mapping.service, "EndpointSlice skipped: {why}");
                slices.remove(&name);
            }
        }
    }

    /// Applies one watch line to the state.
    fn apply(&self, st: &mut State, line: &[u8]) -> Result<Flow> {
        let event: WatchEvent = serde_json::from_slice(line)
            .map_err(|e| self.error("watch", format!("bad watch event: {e}")))?;
        let obj = event.object;
        let meta = |o: &serde_json::Value| -> Meta {
            serde_json::from_value(o.get("metadata").cloned().unwrap_or_default())
                .unwrap_or_default()
        };
        match event.kind.as_str() {
            "ADDED" | "MODIFIED" | "DELETED" => {
                let slice: Slice = serde_json::from_value(obj)
                    .map_err(|e| self.error("watch", format!("bad EndpointSlice: {e}")))?;
                if let Some(rv) = &slice.metadata.resource_version {
                    st.rv = Some(rv.clone());
                }
                if event.kind == "DELETED" {
                    st.slices
                        .remove(slice.metadata.name.as_deref().unwrap_or_default());
                } else {
                    self.insert(&mut st.slices, &slice);
                }
                Ok(Flow::Changed)
            }
            "BOOKMARK" => {
                if let Some(rv) = meta(&obj).resource_version {
                    st.rv = Some(rv);
                }
                Ok(Flow::Nothing)
            }
            "ERROR" => {
                let status: Status = serde_json::from_value(obj).unwrap_or_default();
                if status.code == Some(410) {
                    Ok(Flow::Gone)
                } else {
                    Err(self.error("watch", status.describe()))
                }
            }
            other => Err(self.error("watch", format!("unknown watch event type `{other}`"))),
        }
    }
}

/// The next complete line of the stream (without its newline); `None` at
/// the end. Bytes are kept in the buffer only after a chunk arrived, so the
/// future can be dropped at any await.
async fn read_line(s: &mut Stream) -> std::result::Result<Option<Vec<u8>>, String> {
    loop {
        if let Some(pos) = s.buf.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = s.buf.drain(..=pos).collect();
            line.pop();
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Ok(Some(line));
        }
        if s.buf.len() > MAX_LINE {
            return Err("a watch line is too long".into());
        }
        match s.response.chunk().await {
            Ok(Some(chunk)) => s.buf.extend_from_slice(&chunk),
            Ok(None) if s.buf.iter().all(u8::is_ascii_whitespace) => return Ok(None),
            Ok(None) => return Ok(Some(std::mem::take(&mut s.buf))),
            Err(e) => return Err(crate::error::chain(&e)),
        }
    }
}

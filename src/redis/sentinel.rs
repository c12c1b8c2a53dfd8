//! [`SentinelTopology`]: Redis Sentinel as a topology source (majority
//! answers, events from every sentinel, periodic refresh).

use super::backend::RESPONSE_TIMEOUT;
use crate::core::redact::redact_url;
use crate::error::{Error, Result};
use crate::pool::{NodeSpec, SwitchFuture, TopologyFuture, TopologySource, TopologyView};
use ::redis::{AsyncConnectionConfig, Client, RedisError, Value};
use futures_util::StreamExt;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Sentinel events that may change the topology.
const EVENTS: &[&str] = &[
    "+switch-master",
    "+sdown",
    "-sdown",
    "+odown",
    "+convert-to-slave",
    "+role-change",
    "+slave",
];

type UrlFor = dyn Fn(&str, u16) -> String + Send + Sync;

/// How often the sentinels are asked while a change is settling.
const EAGER_POLL: Duration = Duration::from_millis(50);
/// How long after an event the sentinels are asked that often.
const EAGER_WINDOW: Duration = Duration::from_secs(3);

/// [`SentinelTopology`]: Redis Sentinel as a [`TopologySource`].
///
/// Sentinel clients usually trust one sentinel's answer and its pub/sub
/// messages, and miss a switch when that sentinel dies with the master or a
/// `+switch-master` message is lost. This source does neither:
/// - it asks **every** known sentinel (`SENTINEL GET-MASTER-ADDR-BY-NAME`,
///   `SENTINEL REPLICAS`, and `SENTINEL SENTINELS` to learn the others) and
///   names a writer only when a majority of the sentinels it knows agree;
/// - it listens to `+switch-master`, `+sdown`, `-sdown`, `+odown`,
///   `+convert-to-slave`, `+role-change` and `+slave` on every sentinel, and
///   **also** asks again every `refresh` (pub/sub loses messages);
/// - the writer it names is a hint: the pool sends it writes only once that
///   node reports itself master in its own probe, and fences a superseded
///   master whatever Sentinel says (see [`crate::redis`]).
///
/// ```no_run
/// use failover_pool::pool::PoolConfig;
/// use failover_pool::redis::{FailoverRedis, SentinelTopology};
///
/// # async fn demo() -> failover_pool::Result<()> {
/// let sentinels = SentinelTopology::new(
///     "mymaster",
///     &["redis://sentinel-1:26379", "redis://sentinel-2:26379", "redis://sentinel-3:26379"],
///     |host, port| format!("redis://:{}@{host}:{port}/0", std::env::var("REDIS_PASSWORD").unwrap_or_default()),
/// )?;
/// let redis = FailoverRedis::builder().source(sentinels).connect().await?;
/// # let _ = redis; Ok(()) }
/// ```
pub struct SentinelTopology {
    master_name: String,
    url_for: Box<UrlFor>,
    refresh: Duration,
    connection: AsyncConnectionConfig,
    state: Mutex<State>,
    changed: Arc<Notify>,
}

#[derive(Default)]
struct State {
    /// Sentinel addresses (`host:port`), configured and discovered.
    sentinels: BTreeSet<(String, u16)>,
    /// The sentinels with a listener task.
    listening: BTreeMap<(String, u16), JoinHandle<()>>,
    last: Option<TopologyView>,
    /// Until when to ask every [`EAGER_POLL`] (set by an event).
    eager_until: Option<Instant>,
}

impl fmt::Debug for SentinelTopology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f.debug_struct("SentinelTopology")
            .field("master_name", &self.master_name)
            .field("sentinels", &state.sentinels)
            .field("refresh", &self.refresh)
            .finish_non_exhaustive()
    }
}

impl Drop for SentinelTopology {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        for (_, task) in std::mem::take(&mut state.listening) {
            task.abort();
        }
    }
}

impl SentinelTopology {
    /// A source for the master `master_name` monitored by `sentinels`
    /// (`redis://host:port` each; more are discovered); data nodes are
    /// reached at `url_for(host, port)` (put their password and database
    /// there). Refreshes every second besides listening to events.
    ///
    /// # Errors
    /// [`Error::Config`] for no sentinel or a URL without a TCP address.
    pub fn new(
        master_name: impl Into<String>,
        sentinels: &[&str],
        url_for: impl Fn(&str, u16) -> String + Send + Sync + 'static,
    ) -> Result<Self> {
        if sentinels.is_empty() {
            return Err(Error::Config(
                "Sentinel needs at least one sentinel address".into(),
            ));
        }
        let mut set = BTreeSet::new();
        for url in sentinels {
            let spec = NodeSpec::from_url(url, 26379)?;
            let (host, port) = spec
                .id
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h.trim_matches(['[', ']']).to_owned(), p.parse().ok()?)))
                .ok_or_else(|| Error::Config(format!("bad sentinel URL `{}`", redact_url(url))))?;
            set.insert((host, port));
        }
        Ok(SentinelTopology {
            master_name: master_name.into(),
            url_for: Box::new(url_for),
            refresh: Duration::from_secs(1),
            connection: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(Duration::from_millis(500)))
                .set_response_timeout(Some(RESPONSE_TIMEOUT)),
            state: Mutex::new(State {
                sentinels: set,
                ..State::default()
            }),
            changed: Arc::new(Notify::new()),
        })
    }

    /// How often every sentinel is asked again, events or not (default 1 s).
    pub fn refresh(mut self, every: Duration) -> Self {
        self.refresh = every;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn client(host: &str, port: u16) -> std::result::Result<Client, RedisError> {
        Client::open(format!("redis://{}:{port}/", bracket(host)))
    }

    /// Starts a listener on every sentinel that has none (or whose one ended).
    fn listen_to_all(&self) {
        let mut state = self.lock();
        let sentinels: Vec<_> = state.sentinels.iter().cloned().collect();
        for s in sentinels {
            if state.listening.get(&s).is_some_and(|t| !t.is_finished()) {
                continue;
            }
            let changed = Arc::clone(&self.changed);
            let task = tokio::spawn(listen(s.clone(), changed));
            state.listening.insert(s, task);
        }
    }

    /// One answer of one sentinel: the master's address, replicas, other sentinels.
    async fn ask(&self, host: &str, port: u16) -> std::result::Result<Answer, RedisError> {
        let client = Self::client(host, port)?;
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&self.connection)
            .await?;
        let master: Option<(String, u16)> = ::redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(&self.master_name)
            .query_async::<Option<(String, u16)>>(&mut conn)
            .await?;
        let replicas = addresses(
            ::redis::cmd("SENTINEL")
                .arg("REPLICAS")
                .arg(&self.master_name)
                .query_async::<Value>(&mut conn)
                .await?,
        );
        let sentinels = addresses(
            ::redis::cmd("SENTINEL")
                .arg("SENTINELS")
                .arg(&self.master_name)
                .query_async::<Value>(&mut conn)
                .await?,
        );
        Ok(Answer {
            master,
            replicas,
            sentinels,
        })
    }

    /// Asks every known sentinel (concurrently) and builds the view.
    async fn poll(&self) -> Result<TopologyView> {
        let sentinels: Vec<_> = self.lock().sentinels.iter().cloned().collect();
        let answers =
            futures_util::future::join_all(sentinels.iter().map(|(h, p)| self.ask(h, *p))).await;
        let mut masters: BTreeMap<(String, u16), usize> = BTreeMap::new();
        let mut nodes: BTreeSet<(String, u16)> = BTreeSet::new();
        let mut answered = 0;
        let mut last_error = None;
        for a in answers {
            match a {
                Ok(a) => {
                    answered += 1;
                    if let Some(m) = a.master {
                        *masters.entry(m.clone()).or_default() += 1;
                        nodes.insert(m);
                    }
                    nodes.extend(a.replicas);
                    self.lock().sentinels.extend(a.sentinels);
                }
                Err(e) => last_error = Some(e),
            }
        }
        if answered == 0 {
            return Err(Error::backend(
                format!("sentinels of `{}`", self.master_name),
                crate::core::Classify::classify(last_error.as_ref().expect("a failure")),
                last_error.expect("a failure"),
            )
            .during("topology refresh"));
        }
        // A writer only when a majority of every sentinel known agrees.
        let quorum = sentinels.len() / 2 + 1;
        let writer = masters
            .into_iter()
            .find(|(_, votes)| *votes >= quorum)
            .map(|((h, p), _)| Arc::from(node_id(&h, p)));
        let nodes = nodes
            .into_iter()
            .map(|(h, p)| NodeSpec::new(node_id(&h, p), (self.url_for)(&h, p)))
            .collect();
        Ok(TopologyView { nodes, writer })
    }
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

fn node_id(host: &str, port: u16) -> String {
    format!("{}:{port}", bracket(host))
}

struct Answer {
    master: Option<(String, u16)>,
    replicas: Vec<(String, u16)>,
    sentinels: Vec<(String, u16)>,
}

/// The `ip`/`port` pairs of a `SENTINEL REPLICAS`/`SENTINELS` answer (a list
/// of flat field/value lists, or maps with RESP3), skipping entries flagged
/// down.
fn addresses(value: Value) -> Vec<(String, u16)> {
    let Value::Array(items) = value else {
        return Vec::new();
    };
    items
        .into_iter()
        .filter_map(|item| {
            let fields: Vec<(String, String)> = match item {
                Value::Array(flat) => flat
                    .chunks(2)
                    .filter_map(|kv| Some((text(&kv[0])?, text(kv.get(1)?)?)))
                    .collect(),
                Value::Map(pairs) => pairs
                    .iter()
                    .filter_map(|(k, v)| Some((text(k)?, text(v)?)))
                    .collect(),
                _ => return None,
            };
            let get = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.as_str());
            if get("flags").is_some_and(|f| f.contains("s_down") || f.contains("o_down")) {
                return None;
            }
            Some((get("ip")?.to_owned(), get("port")?.parse().ok()?))
        })
        .collect()
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// Listens to one sentinel's events, reconnecting with a pause, and wakes
/// the source on every event.
async fn listen((host, port): (String, u16), changed: Arc<Notify>) {
    loop {
        if let Ok(client) = SentinelTopology::client(&host, port)
            && let Ok(mut pubsub) = client.get_async_pubsub().await
            && pubsub.subscribe(EVENTS).await.is_ok()
        {
            let mut messages = pubsub.on_message();
            while messages.next().await.is_some() {
                changed.notify_one();
            }
        }
        // Disconnected: the periodic refresh covers the gap.
        changed.notify_one();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

impl TopologySource for SentinelTopology {
    fn name(&self) -> &str {
        "sentinel"
    }

    /// `SENTINEL FAILOVER`, asked of the known sentinels in turn until one
    /// accepts (Sentinel picks the replica; the pool follows it).
    fn switchover(&self, _from: &str, _to: &str) -> Option<SwitchFuture<'_>> {
        Some(Box::pin(async move {
            let sentinels: Vec<_> = self.lock().sentinels.iter().cloned().collect();
            let mut last = None;
            for (host, port) in sentinels {
                let asked = async {
                    let client = Self::client(&host, port)?;
                    let mut conn = client
                        .get_multiplexed_async_connection_with_config(&self.connection)
                        .await?;
                    ::redis::cmd("SENTINEL")
                        .arg("FAILOVER")
                        .arg(&self.master_name)
                        .query_async::<()>(&mut conn)
                        .await
                };
                match asked.await {
                    Ok(()) => {
                        self.changed.notify_one();
                        return Ok(());
                    }
                    Err(e) => last = Some((node_id(&host, port), e)),
                }
            }
            let (sentinel, e) = last.expect("a sentinel is always known");
            let class = crate::core::Classify::classify(&e);
            Err(Error::backend(sentinel, class, e).during("SENTINEL FAILOVER"))
        }))
    }

    fn next_view(&self) -> TopologyFuture<'_> {
        Box::pin(async move {
            loop {
                let (first, eager) = {
                    let state = self.lock();
                    let eager = state.eager_until.is_some_and(|t| Instant::now() < t);
                    (state.last.is_none(), eager)
                };
                if !first {
                    // After an event, ask again every 50 ms for a while: the
                    // sentinels agree on a new master one by one, and the
                    // majority may form a moment after the first message.
                    let wait = if eager { EAGER_POLL } else { self.refresh };
                    if tokio::time::timeout(wait, self.changed.notified())
                        .await
                        .is_ok()
                    {
                        self.lock().eager_until = Some(Instant::now() + EAGER_WINDOW);
                    }
                }
                self.listen_to_all();
                let view = self.poll().await?;
                let mut state = self.lock();
                if state.last.as_ref() != Some(&view) {
                    state.last = Some(view.clone());
                    return Ok(view);
                }
            }
        })
    }
}

//! [`ConsulDiscovery`]: the instances of one service, followed with
//! blocking queries on `/v1/health/service/<name>`.

use super::agent::{ConsulAgent, encode, go_duration};
use super::wire;
use crate::core::discovery::{Discovery, DiscoveryChange, DiscoveryFuture};
use crate::core::endpoint::Endpoint;
use crate::error::{Error, ErrorClass, Result};
use hyper::Method;
use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A [`Discovery`] of the instances of one Consul service.
///
/// The first [`Discovery::next_change`] asks
/// `GET /v1/health/service/<name>` without blocking and returns the list as
/// [`DiscoveryChange::Replace`]. Later calls send a blocking query
/// (`index` = the last `X-Consul-Index`, `wait`) that Consul answers when
/// the service changes or `wait` passes; an answer whose list equals the
/// last one is not a change, and the next blocking query is sent at once.
/// The request timeout is `wait + wait/16` (Consul's jitter) plus the
/// agent's timeout, so a long wait is never cut short.
///
/// Consul's rules for blocking queries are followed: an index that goes
/// backwards restarts the watch (index 0, a query that does not block), an
/// index of 0 is used as 1, and queries whose answers bring no change are
/// spaced at least [`ConsulDiscoveryBuilder::min_interval`] apart.
///
/// A failed query returns the error and changes nothing, so the driver
/// ([`spawn_discovery`](crate::discovery::spawn_discovery)) backs off and
/// keeps the last list, and the next call asks again with the same index.
/// An answer with no instances at all is reported as an error too (the last
/// list is kept) unless [`ConsulDiscoveryBuilder::allow_empty`] is set.
/// Dropping the future between calls loses nothing: the state changes only
/// when a call returns.
///
/// See [the module docs](super) for how an instance becomes an [`Endpoint`].
pub struct ConsulDiscovery {
    agent: ConsulAgent,
    service: String,
    query: String,
    wait: Duration,
    min_interval: Duration,
    allow_empty: bool,
    passing_only: bool,
    protocol: String,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The index for the next query (0: do not block).
    index: u64,
    /// The last list Consul answered (whether it was returned or refused as
    /// empty).
    seen: Option<Vec<Endpoint>>,
}

impl fmt::Debug for ConsulDiscovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsulDiscovery")
            .field("agent", &self.agent)
            .field("service", &self.service)
            .field("query", &self.query)
            .field("wait", &self.wait)
            .field("index", &self.last_index())
            .finish_non_exhaustive()
    }
}

/// Builds a [`ConsulDiscovery`]; see [`ConsulDiscovery::builder`].
#[derive(Debug, Clone)]
pub struct ConsulDiscoveryBuilder {
    agent: ConsulAgent,
    service: String,
    passing_only: bool,
    tags: Vec<String>,
    datacenter: Option<String>,
    namespace: Option<String>,
    near: Option<String>,
    filter: Option<String>,
    wait: Duration,
    min_interval: Duration,
    allow_empty: bool,
    protocol: String,
}

impl ConsulDiscovery {
    /// The default `wait` of a blocking query (2 minutes).
    pub const DEFAULT_WAIT: Duration = Duration::from_secs(120);

    /// Starts building a discovery of `service` through `agent`.
    pub fn builder(agent: ConsulAgent, service: impl Into<String>) -> ConsulDiscoveryBuilder {
        ConsulDiscoveryBuilder {
            agent,
            service: service.into(),
            passing_only: true,
            tags: Vec::new(),
            datacenter: None,
            namespace: None,
            near: None,
            filter: None,
            wait: Self::DEFAULT_WAIT,
            min_interval: Duration::from_millis(100),
            allow_empty: false,
            protocol: "tcp".into(),
        }
    }

    /// The service followed.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The agent asked.
    pub fn agent(&self) -> &ConsulAgent {
        &self.agent
    }

    /// The `X-Consul-Index` the next query will block on (0: the next query
    /// does not block).
    pub fn last_index(&self) -> u64 {
        self.state().index
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks Consul once: blocking on `index` when it is not 0.
    async fn query(&self, index: u64) -> Result<(u64, Vec<Endpoint>)> {
        let (path, timeout) = if index == 0 {
            (self.query.clone(), self.agent.timeout())
        } else {
            let sep = if self.query.contains('?') { '&' } else { '?' };
            let wait = go_duration(self.wait);
            let path = format!("{}{sep}index={index}&wait={wait}", self.query);
            (path, self.wait + self.wait / 16 + self.agent.timeout())
        };
        let op = "consul health query";
        let reply = self
            .agent
            .send(Method::GET, &path, None, timeout, op)
            .await?;
        let entries: Vec<wire::Entry> = serde_json::from_slice(&reply.body).map_err(|e| {
            let why = format!("unexpected answer: {}", self.agent.scrub(&e.to_string()));
            Error::backend(self.agent.label(), ErrorClass::not_executed(), why).during(op)
        })?;
        Ok((reply.index, wire::endpoints(entries, &self.protocol)))
    }

    async fn next(&self) -> Result<DiscoveryChange> {
        loop {
            let index = self.state().index;
            let started = Instant::now();
            let (answered, list) = self.query(index).await?;
            // Nothing below awaits before the state is updated and the call
            // returns (or moves on without a change): cancel-safe.
            let next_index = if answered < index {
                tracing::info!(
                    service = %self.service,
                    from = index,
                    to = answered,
                    "Consul index went backwards; restarting the watch"
                );
                0
            } else {
                answered.max(1)
            };
            let changed = {
                let mut state = self.state();
                state.index = next_index;
                let changed = state.seen.as_ref() != Some(&list);
                if changed {
                    state.seen = Some(list.clone());
                }
                changed
            };
            if !changed {
                let spent = started.elapsed();
                if spent < self.min_interval {
                    tokio::time::sleep(self.min_interval - spent).await;
                }
                continue;
            }
            if list.is_empty() && !self.allow_empty {
                return Err(Error::backend(
                    self.agent.label(),
                    ErrorClass::not_executed(),
                    format!(
                        "Consul lists no {}instances of `{}`; keeping the last known list",
                        if self.passing_only { "passing " } else { "" },
                        self.service
                    ),
                )
                .during("consul health query"));
            }
            return Ok(DiscoveryChange::Replace(list));
        }
    }
}

impl Discovery for ConsulDiscovery {
    fn name(&self) -> &str {
        "consul"
    }

    fn next_change(&self) -> DiscoveryFuture<'_> {
        Box::pin(self.next())
    }
}

impl ConsulDiscoveryBuilder {
    /// Only instances whose checks all pass (Consul's `passing`; default
    /// true). With false, every instance is listed with the health its
    /// checks give.
    pub fn passing_only(mut self, passing_only: bool) -> Self {
        self.passing_only = passing_only;
        self
    }

    /// Only instances with this tag (Consul's `tag`); several tags must all
    /// be present.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// The datacenter asked (`dc`; default: the agent's).
    pub fn datacenter(mut self, datacenter: impl Into<String>) -> Self {
        self.datacenter = Some(datacenter.into());
        self
    }

    /// The namespace (`ns`, Consul Enterprise).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Sorts instances by round-trip time from this node (`near`; `_agent`
    /// for the agent's own node).
    pub fn near(mut self, node: impl Into<String>) -> Self {
        self.near = Some(node.into());
        self
    }

    /// A filter expression (`filter`), such as `Service.Meta.version == "2"`.
    pub fn filter(mut self, expression: impl Into<String>) -> Self {
        self.filter = Some(expression.into());
        self
    }

    /// The `wait` of blocking queries (default
    /// [`ConsulDiscovery::DEFAULT_WAIT`]; between 1 s and Consul's limit of
    /// 10 minutes).
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// The least time between two queries when answers bring no change
    /// (default 100 ms): Consul asks clients to rate-limit, and an agent that
    /// answers every blocking query at once must not cause a busy loop.
    pub fn min_interval(mut self, interval: Duration) -> Self {
        self.min_interval = interval;
        self
    }

    /// Reports an answer with no instances as an empty list instead of an
    /// error (default false: an empty answer keeps the last list).
    pub fn allow_empty(mut self, allow: bool) -> Self {
        self.allow_empty = allow;
        self
    }

    /// The protocol of the endpoints (default `tcp`; `http` or `https` make
    /// HTTP health checks and clients use that scheme).
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocol = protocol.into();
        self
    }

    /// Validates the settings.
    ///
    /// # Errors
    /// [`Error::Config`] for an empty service name, or a `wait` outside
    /// 1 s ..= 10 min.
    pub fn build(self) -> Result<ConsulDiscovery> {
        if self.service.trim().is_empty() {
            return Err(Error::Config("the Consul service name is empty".into()));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(600)).contains(&self.wait) {
            return Err(Error::Config(format!(
                "the Consul blocking query wait must be between 1s and 10m, not {:?}",
                self.wait
            )));
        }
        let mut query = format!("/v1/health/service/{}", encode(&self.service));
        let mut param = |key: &str, value: &str| {
            query.push(if query.contains('?') { '&' } else { '?' });
            query.push_str(key);
            query.push('=');
            query.push_str(&encode(value));
        };
        if self.passing_only {
            param("passing", "true");
        }
        for tag in &self.tags {
            param("tag", tag);
        }
        for (key, value) in [
            ("dc", &self.datacenter),
            ("ns", &self.namespace),
            ("near", &self.near),
            ("filter", &self.filter),
        ] {
            if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
                param(key, v);
            }
        }
        Ok(ConsulDiscovery {
            agent: self.agent,
            service: self.service,
            query,
            wait: self.wait,
            min_interval: self.min_interval,
            allow_empty: self.allow_empty,
            passing_only: self.passing_only,
            protocol: self.protocol,
            state: Mutex::new(State::default()),
        })
    }
}

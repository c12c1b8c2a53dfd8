//! [`ConsulRegistration`]: registers this process's service with the local
//! agent (`/v1/agent/service/register`) and deregisters it when the
//! returned [`ConsulRegistrationGuard`] is done.

use super::agent::{ConsulAgent, encode, go_duration};
use crate::error::{Error, Result};
use hyper::Method;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

/// The health check Consul runs for a registered service.
///
/// ```
/// use failover_pool::discovery::consul::ConsulCheck;
/// use std::time::Duration;
///
/// let check = ConsulCheck::http("http://10.0.0.5:8080/health", Duration::from_secs(10), Duration::from_secs(2))
///     .deregister_critical_after(Duration::from_secs(600));
/// # let _ = check;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsulCheck {
    target: CheckTarget,
    interval: Duration,
    timeout: Duration,
    deregister_after: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum CheckTarget {
    Http(String),
    Tcp(String),
}

impl ConsulCheck {
    /// An HTTP check: Consul `GET`s `url` every `interval`; a 2xx passes, a
    /// 429 warns, anything else (or no answer within `timeout`) is critical.
    pub fn http(url: impl Into<String>, interval: Duration, timeout: Duration) -> Self {
        Self::new(CheckTarget::Http(url.into()), interval, timeout)
    }

    /// A TCP check: Consul connects to `host:port` every `interval`.
    pub fn tcp(address: impl Into<String>, interval: Duration, timeout: Duration) -> Self {
        Self::new(CheckTarget::Tcp(address.into()), interval, timeout)
    }

    fn new(target: CheckTarget, interval: Duration, timeout: Duration) -> Self {
        ConsulCheck {
            target,
            interval,
            timeout,
            deregister_after: None,
        }
    }

    /// Consul removes the service once this check has been critical this
    /// long (`DeregisterCriticalServiceAfter`; Consul reaps at most every
    /// 30 s and ignores values under a minute). This cleans up after a
    /// process that died without deregistering.
    pub fn deregister_critical_after(mut self, after: Duration) -> Self {
        self.deregister_after = Some(after);
        self
    }

    fn to_json(&self) -> Value {
        let mut check = Map::new();
        match &self.target {
            CheckTarget::Http(url) => check.insert("HTTP".into(), json!(url)),
            CheckTarget::Tcp(addr) => check.insert("TCP".into(), json!(addr)),
        };
        check.insert("Interval".into(), json!(go_duration(self.interval)));
        check.insert("Timeout".into(), json!(go_duration(self.timeout)));
        if let Some(after) = self.deregister_after {
            check.insert(
                "DeregisterCriticalServiceAfter".into(),
                json!(go_duration(after)),
            );
        }
        Value::Object(check)
    }
}

/// A service instance to register with a Consul agent.
///
/// [`register`](Self::register) sends `PUT /v1/agent/service/register`
/// (with `replace-existing-checks`, so registering again is harmless) and
/// returns a [`ConsulRegistrationGuard`] that deregisters the instance.
///
/// ```no_run
/// use failover_pool::discovery::consul::{ConsulAgent, ConsulCheck, ConsulRegistration};
/// use std::time::Duration;
///
/// # async fn run() -> failover_pool::Result<()> {
/// let agent = ConsulAgent::new("127.0.0.1:8500")?.with_token(std::env::var("CONSUL_HTTP_TOKEN").unwrap_or_default());
/// let guard = ConsulRegistration::new("users", "10.0.0.5", 8080)
///     .id("users-10-0-0-5")
///     .tag("v2")
///     .meta("version", "2.1.0")
///     .check(
///         ConsulCheck::http("http://10.0.0.5:8080/health", Duration::from_secs(10), Duration::from_secs(2))
///             .deregister_critical_after(Duration::from_secs(600)),
///     )
///     .register(&agent)
///     .await?;
/// // ... serve ...
/// guard.deregister().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsulRegistration {
    name: String,
    id: Option<String>,
    address: String,
    port: u16,
    tags: Vec<String>,
    meta: BTreeMap<String, String>,
    check: Option<ConsulCheck>,
    namespace: Option<String>,
}

impl ConsulRegistration {
    /// An instance of service `name` at `address:port`, with the id
    /// `<name>-<address>-<port>` unless [`id`](Self::id) sets one.
    pub fn new(name: impl Into<String>, address: impl Into<String>, port: u16) -> Self {
        ConsulRegistration {
            name: name.into(),
            id: None,
            address: address.into(),
            port,
            tags: Vec::new(),
            meta: BTreeMap::new(),
            check: None,
            namespace: None,
        }
    }

    /// Sets the instance id (unique on the agent).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Adds a tag (`primary`/`replica` name the role for discovery).
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Adds a metadata entry (Consul allows letters, digits, `-` and `_` in
    /// keys).
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.meta.insert(key.into(), value.into());
        self
    }

    /// Sets the health check Consul runs.
    pub fn check(mut self, check: ConsulCheck) -> Self {
        self.check = Some(check);
        self
    }

    /// Registers in this namespace (`ns`, Consul Enterprise).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// The instance id that will be registered.
    pub fn service_id(&self) -> String {
        self.id
            .clone()
            .unwrap_or_else(|| format!("{}-{}-{}", self.name, self.address, self.port))
    }

    /// The JSON body of `/v1/agent/service/register`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut body = json!({
            "ID": self.service_id(),
            "Name": self.name,
            "Address": self.address,
            "Port": self.port,
            "Tags": self.tags,
            "Meta": self.meta,
        });
        if let (Some(check), Value::Object(map)) = (&self.check, &mut body) {
            map.insert("Check".into(), check.to_json());
        }
        body
    }

    /// Registers the instance with `agent`.
    ///
    /// # Errors
    /// [`Error::Config`] for an empty name or address or port 0;
    /// [`Error::Backend`] when the agent refuses or cannot be reached.
    pub async fn register(&self, agent: &ConsulAgent) -> Result<ConsulRegistrationGuard> {
        if self.name.trim().is_empty() || self.address.trim().is_empty() || self.port == 0 {
            return Err(Error::Config(
                "a Consul registration needs a service name, an address and a port".into(),
            ));
        }
        let body = serde_json::to_vec(&self.to_json())
            .map_err(|e| Error::Config(format!("cannot encode the registration: {e}")))?;
        let path = format!(
            "/v1/agent/service/register?replace-existing-checks=true{}",
            ns_param('&', &self.namespace)
        );
        agent
            .send(
                Method::PUT,
                &path,
                Some(body),
                agent.timeout(),
                "consul register",
            )
            .await?;
        let id = self.service_id();
        tracing::info!(service = %self.name, id = %id, agent = %agent.label(), "registered with Consul");
        Ok(ConsulRegistrationGuard {
            agent: agent.clone(),
            id,
            namespace: self.namespace.clone(),
            armed: true,
        })
    }
}

fn ns_param(sep: char, namespace: &Option<String>) -> String {
    match namespace.as_deref().filter(|ns| !ns.is_empty()) {
        Some(ns) => format!("{sep}ns={}", encode(ns)),
        None => String::new(),
    }
}

/// A registered instance. [`deregister`](Self::deregister) removes it;
/// dropping the guard without that removes it best-effort (a task spawned
/// on the current Tokio runtime; without a runtime the instance stays until
/// its check's `DeregisterCriticalServiceAfter` reaps it).
#[derive(Debug)]
#[must_use = "dropping the guard deregisters the service"]
pub struct ConsulRegistrationGuard {
    agent: ConsulAgent,
    id: String,
    namespace: Option<String>,
    armed: bool,
}

impl ConsulRegistrationGuard {
    /// The registered instance id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Deregisters the instance (`PUT /v1/agent/service/deregister/<id>`).
    ///
    /// # Errors
    /// [`Error::Backend`] when the agent refuses or cannot be reached (the
    /// guard is spent either way: no second attempt on drop).
    pub async fn deregister(mut self) -> Result<()> {
        self.armed = false;
        deregister(&self.agent, &self.id, &self.namespace).await
    }
}

async fn deregister(agent: &ConsulAgent, id: &str, namespace: &Option<String>) -> Result<()> {
    let path = format!(
        "/v1/agent/service/deregister/{}{}",
        encode(id),
        ns_param('?', namespace)
    );
    agent
        .send(
            Method::PUT,
            &path,
            None,
            agent.timeout(),
            "consul deregister",
        )
        .await?;
    tracing::info!(id = %id, agent = %agent.label(), "deregistered from Consul");
    Ok(())
}

impl Drop for ConsulRegistrationGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (agent, id, namespace) = (
            self.agent.clone(),
            std::mem::take(&mut self.id),
            self.namespace.take(),
        );
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(e) = deregister(&agent, &id, &namespace).await {
                        tracing::warn!(id = %id, error = %crate::error::chain(&e), "deregistering from Consul on drop failed");
                    }
                });
            }
            Err(_) => tracing::warn!(
                id = %id,
                "registration guard dropped outside a Tokio runtime; the instance stays registered"
            ),
        }
    }
}

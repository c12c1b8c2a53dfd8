//! [`Endpoint`]: the static description of one server a call can go to, and
//! its [`Health`] and [`Role`].

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// What the health checks and outlier detection think of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Health {
    /// Never checked yet. Treated as usable (a new endpoint gets traffic).
    #[default]
    Unknown = 0,
    /// Passing its checks.
    Healthy = 1,
    /// Usable but impaired (slow, partially failing); health-based routing
    /// prefers healthy endpoints over degraded ones.
    Degraded = 2,
    /// Failing its checks: no traffic except in panic mode.
    Unhealthy = 3,
}

impl Health {
    /// Decodes the `repr(u8)` value; anything unknown maps to [`Health::Unknown`].
    pub const fn from_u8(v: u8) -> Self {
        match v {
            1 => Health::Healthy,
            2 => Health::Degraded,
            3 => Health::Unhealthy,
            _ => Health::Unknown,
        }
    }

    /// Whether traffic may be sent (everything but [`Health::Unhealthy`]).
    pub const fn is_usable(self) -> bool {
        !matches!(self, Health::Unhealthy)
    }

    /// Lowercase name, for labels and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Healthy => "healthy",
            Health::Degraded => "degraded",
            Health::Unhealthy => "unhealthy",
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The role a server has in a replicated setup, as the server reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Accepts writes.
    Primary,
    /// Read-only copy of a primary.
    Replica,
}

impl Role {
    /// Lowercase name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One server a call can be sent to.
///
/// `Endpoint` is plain data; the live state (health, in-flight calls, latency,
/// breaker) lives in [`LiveEndpoint`](crate::core::LiveEndpoint).
///
/// ```
/// use failover_pool::core::Endpoint;
/// let ep = Endpoint::new("web-1", "10.0.0.1", 8080)
///     .with_weight(3)
///     .with_tag("frontend")
///     .with_metadata("zone", "eu-1");
/// assert_eq!(ep.authority(), "10.0.0.1:8080");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Unique id within a set.
    pub id: Arc<str>,
    /// Service name (several endpoints share one).
    #[serde(default)]
    pub name: String,
    /// Host name or IP address.
    pub address: String,
    /// TCP port.
    pub port: u16,
    /// Protocol or scheme ("http", "https", "tcp", "postgres", "redis", ...).
    #[serde(default = "default_protocol")]
    pub protocol: String,
    /// Relative weight for weighted strategies; 0 is treated as 1.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Free-form tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Free-form key/value metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Initial health (discovery may know it, e.g. Consul's check status).
    #[serde(default)]
    pub health: Health,
    /// Role, where the endpoint has one.
    #[serde(default)]
    pub role: Option<Role>,
}

fn default_protocol() -> String {
    "tcp".to_owned()
}

fn default_weight() -> u32 {
    1
}

impl Endpoint {
    /// A new endpoint with weight 1, protocol "tcp" and unknown health.
    pub fn new(id: impl Into<Arc<str>>, address: impl Into<String>, port: u16) -> Self {
        let id = id.into();
        Endpoint {
            name: id.to_string(),
            id,
            address: address.into(),
            port,
            protocol: default_protocol(),
            weight: 1,
            tags: Vec::new(),
            metadata: BTreeMap::new(),
            health: Health::Unknown,
            role: None,
        }
    }

    /// Sets the service name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the protocol.
    pub fn with_protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocol = protocol.into();
        self
    }

    /// Sets the weight (0 is treated as 1).
    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// Adds a tag.
    pub fn with_tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Adds a metadata entry.
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Sets the initial health.
    pub fn with_health(mut self, health: Health) -> Self {
        self.health = health;
        self
    }

    /// Sets the role.
    pub fn with_role(mut self, role: Role) -> Self {
        self.role = Some(role);
        self
    }

    /// The weight used by weighted strategies (at least 1).
    pub fn effective_weight(&self) -> u32 {
        self.weight.max(1)
    }

    /// `address:port` (IPv6 addresses in brackets).
    pub fn authority(&self) -> String {
        if self.address.contains(':') && !self.address.starts_with('[') {
            format!("[{}]:{}", self.address, self.port)
        } else {
            format!("{}:{}", self.address, self.port)
        }
    }
}

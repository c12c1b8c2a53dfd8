//! Serde configuration of endpoint providers (`failover: providers:
//! {consul, kubernetes, static}`, each with `health_check` and `failover`
//! sections), validated into typed errors and turned into a [`Failover`]
//! builder. Durations are written as `"10s"`, `"250ms"`.
//!
//! ```
//! use failover_pool::config::{FailoverConfig, expand_env};
//!
//! let yaml = r#"
//! providers:
//!   static:
//!     enabled: true
//!     endpoints: ["http://user-service-1:8080", "http://user-service-2:8080"]
//!     health_check: { enabled: true, path: /health, interval: 10s, timeout: 3s }
//!     failover: { enabled: true, strategy: round-robin, max_retries: 3, retry_interval: 100ms, timeout: 30s }
//! "#;
//! let config: FailoverConfig = serde_yaml_ng::from_str(&expand_env(yaml).unwrap()).unwrap();
//! config.validate().unwrap();
//! let provider = config.providers.static_list.as_ref().unwrap();
//! assert_eq!(provider.failover.retry_policy().max_attempts, 4);
//! ```
//!
//! The parsing is format-agnostic (anything serde reads); the examples use
//! YAML. Each provider section builds a core [`FailoverBuilder`]:
//! [`StaticProviderConfig::builder`] here, `ConsulProviderConfig::builder`
//! with the `consul` feature and `KubernetesProviderConfig::builder` with
//! `kubernetes` (in their discovery modules); hand it to
//! [`Failover`]'s `build` or to `http::FailoverClient::from_core`.

#[cfg(feature = "consul")]
mod consul;
#[cfg(feature = "kubernetes")]
mod kubernetes;

use crate::core::breaker::BreakerConfig;
use crate::core::executor::{Failover, FailoverBuilder};
use crate::core::health::{HealthCheckConfig, OutlierConfig, TcpCheck};
use crate::core::redact::{MASK, redact_url};
use crate::core::retry::{Backoff, RetryPolicy};
use crate::core::strategy::StrategyKind;
use crate::discovery::StaticDiscovery;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// Replaces `${NAME}` (and `${NAME:-default}`) with environment variables,
/// so secrets can stay out of the file (`token: "${CONSUL_TOKEN}"`). A
/// variable that is unset and has no default is an error naming it.
pub fn expand_env(text: &str) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| Error::Config("unterminated `${` in configuration".into()))?;
        let spec = &after[..end];
        let (name, default) = match spec.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (spec, None),
        };
        match (std::env::var(name), default) {
            (Ok(v), _) => out.push_str(&v),
            (Err(_), Some(d)) => out.push_str(d),
            (Err(_), None) => {
                return Err(Error::Config(format!(
                    "environment variable `{name}` is not set"
                )));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The `failover:` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailoverConfig {
    /// Endpoint providers.
    #[serde(default)]
    pub providers: ProvidersConfig,
}

/// The providers, each optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvidersConfig {
    /// Consul service discovery.
    #[serde(default)]
    pub consul: Option<ConsulProviderConfig>,
    /// Kubernetes service discovery.
    #[serde(default)]
    pub kubernetes: Option<KubernetesProviderConfig>,
    /// A static list of endpoint URLs.
    #[serde(default, rename = "static")]
    pub static_list: Option<StaticProviderConfig>,
}

/// A provider's `health_check` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthCheckSection {
    /// Whether active checks run.
    pub enabled: bool,
    /// HTTP path to check (HTTP endpoints); TCP connect otherwise.
    pub path: Option<String>,
    /// Time between checks.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Timeout of one check.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Random share of the interval added to each wait.
    pub jitter: f64,
    /// Passes needed to become healthy.
    pub rise: u32,
    /// Failures needed to become unhealthy.
    pub fall: u32,
    /// Consul only: deregister a service critical for this long.
    #[serde(with = "humantime_serde")]
    pub deregister_after: Option<Duration>,
}

impl Default for HealthCheckSection {
    fn default() -> Self {
        let d = HealthCheckConfig::default();
        HealthCheckSection {
            enabled: d.enabled,
            path: d.path,
            interval: d.interval,
            timeout: d.timeout,
            jitter: d.jitter,
            rise: d.rise,
            fall: d.fall,
            deregister_after: None,
        }
    }
}

impl HealthCheckSection {
    /// The core health-check configuration.
    pub fn to_config(&self) -> HealthCheckConfig {
        HealthCheckConfig {
            enabled: self.enabled,
            interval: self.interval,
            timeout: self.timeout,
            jitter: self.jitter,
            rise: self.rise,
            fall: self.fall,
            path: self.path.clone(),
        }
    }
}

/// A provider's `failover` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FailoverSection {
    /// Whether failover (retries on other endpoints) is on; off means one attempt.
    pub enabled: bool,
    /// Load-balancing strategy (`round-robin`, `weighted`, `least-connections`,
    /// `random`, `p2c`, `active-passive`, `active-active`, `health-based`).
    pub strategy: StrategyKind,
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// First backoff delay (grows exponentially, with full jitter, capped at
    /// 20× this value).
    #[serde(with = "humantime_serde")]
    pub retry_interval: Duration,
    /// Time limit of each attempt.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Overall time limit of a call, across retries.
    #[serde(with = "humantime_serde")]
    pub deadline: Option<Duration>,
    /// Circuit breaker settings.
    pub circuit_breaker: BreakerConfig,
    /// Outlier detection settings.
    pub outlier: OutlierConfig,
}

impl Default for FailoverSection {
    fn default() -> Self {
        FailoverSection {
            enabled: true,
            strategy: StrategyKind::RoundRobin,
            max_retries: 2,
            retry_interval: Duration::from_millis(50),
            timeout: Duration::from_secs(30),
            deadline: None,
            circuit_breaker: BreakerConfig::default(),
            outlier: OutlierConfig::default(),
        }
    }
}

impl FailoverSection {
    /// The retry policy this section describes.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: if self.enabled {
                self.max_retries.saturating_add(1)
            } else {
                1
            },
            backoff: Backoff {
                initial: self.retry_interval,
                max: self.retry_interval.saturating_mul(20),
                ..Backoff::default()
            },
            attempt_timeout: Some(self.timeout),
            deadline: self.deadline,
            ..RetryPolicy::default()
        }
    }

    fn validate(&self, provider: &str) -> Result<()> {
        if self.retry_interval.is_zero() {
            return Err(Error::Config(format!(
                "providers.{provider}.failover.retry_interval must be > 0"
            )));
        }
        if self.timeout.is_zero() {
            return Err(Error::Config(format!(
                "providers.{provider}.failover.timeout must be > 0"
            )));
        }
        self.circuit_breaker.validate()?;
        self.outlier.validate()?;
        self.retry_policy().validate()
    }

    /// Applies this section to a [`Failover`] builder.
    pub fn apply(&self, builder: FailoverBuilder) -> FailoverBuilder {
        builder
            .strategy_arc(self.strategy.build())
            .retry(self.retry_policy())
            .breaker(self.circuit_breaker.clone())
            .outlier(self.outlier.clone())
    }
}

/// The `static` provider.
///
/// Its `Debug` output masks the credentials in endpoint URLs
/// ([`redact_url`]).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StaticProviderConfig {
    /// Whether the provider is used.
    pub enabled: bool,
    /// Service name (for events and metrics).
    pub service_name: Option<String>,
    /// Endpoint URLs (`http://host:port`, `postgres://…`, `tcp://host:port`).
    pub endpoints: Vec<String>,
    /// Active health checks.
    pub health_check: HealthCheckSection,
    /// Failover behaviour.
    pub failover: FailoverSection,
}

impl Default for StaticProviderConfig {
    fn default() -> Self {
        StaticProviderConfig {
            enabled: true,
            service_name: None,
            endpoints: Vec::new(),
            health_check: HealthCheckSection::default(),
            failover: FailoverSection::default(),
        }
    }
}

impl fmt::Debug for StaticProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let endpoints: Vec<_> = self.endpoints.iter().map(|u| redact_url(u)).collect();
        f.debug_struct("StaticProviderConfig")
            .field("enabled", &self.enabled)
            .field("service_name", &self.service_name)
            .field("endpoints", &endpoints)
            .field("health_check", &self.health_check)
            .field("failover", &self.failover)
            .finish()
    }
}

impl StaticProviderConfig {
    /// A [`Failover`] builder for this provider: endpoints from the URLs,
    /// the strategy, retries, breaker and outlier settings, and a TCP health
    /// check (an HTTP check on `path` for `http(s)` endpoints when the
    /// `http` feature is on).
    pub fn builder(&self) -> Result<FailoverBuilder> {
        let discovery = StaticDiscovery::from_urls(&self.endpoints)?;
        let name = self.service_name.clone().unwrap_or_else(|| "static".into());
        let mut builder = Failover::builder(name)
            .endpoints(discovery.endpoints().iter().cloned())
            .health_config(self.health_check.to_config());
        builder = self.failover.apply(builder);
        #[cfg(feature = "http")]
        let http = discovery
            .endpoints()
            .iter()
            .all(|e| e.protocol.starts_with("http"))
            && self.health_check.path.is_some();
        #[cfg(not(feature = "http"))]
        let http = false;
        if http {
            #[cfg(feature = "http")]
            {
                builder = builder.health_check(crate::core::health::HttpCheck::from_config(
                    &self.health_check.to_config(),
                ));
            }
        } else {
            builder = builder.health_check(TcpCheck);
        }
        Ok(builder)
    }
}

/// The `consul` provider.
///
/// Its `Debug` output masks the ACL token and the credentials in the
/// address ([`redact_url`]).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsulProviderConfig {
    /// Whether the provider is used.
    pub enabled: bool,
    /// Consul agent address (`localhost:8500` or a URL).
    pub address: String,
    /// ACL token.
    pub token: Option<String>,
    /// Datacenter.
    pub datacenter: Option<String>,
    /// Namespace (Consul Enterprise).
    pub namespace: Option<String>,
    /// Service to discover.
    pub service_name: String,
    /// Only passing instances (Consul's health filter).
    pub passing_only: bool,
    /// Active health checks done by this process, in addition to Consul's.
    pub health_check: HealthCheckSection,
    /// Failover behaviour.
    pub failover: FailoverSection,
}

impl Default for ConsulProviderConfig {
    fn default() -> Self {
        ConsulProviderConfig {
            enabled: false,
            address: "localhost:8500".into(),
            token: None,
            datacenter: None,
            namespace: None,
            service_name: String::new(),
            passing_only: true,
            health_check: HealthCheckSection::default(),
            failover: FailoverSection::default(),
        }
    }
}

impl fmt::Debug for ConsulProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsulProviderConfig")
            .field("enabled", &self.enabled)
            .field("address", &redact_url(&self.address))
            .field("token", &self.token.as_ref().map(|_| MASK))
            .field("datacenter", &self.datacenter)
            .field("namespace", &self.namespace)
            .field("service_name", &self.service_name)
            .field("passing_only", &self.passing_only)
            .field("health_check", &self.health_check)
            .field("failover", &self.failover)
            .finish()
    }
}

/// The `kubernetes` provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KubernetesProviderConfig {
    /// Whether the provider is used.
    pub enabled: bool,
    /// Kubeconfig path; in-cluster configuration when absent.
    pub config_path: Option<String>,
    /// Kubeconfig context.
    pub context: Option<String>,
    /// Namespace of the service.
    pub namespace: String,
    /// Service whose EndpointSlices are followed.
    pub service_name: String,
    /// Port name to use when the service has several.
    pub port_name: Option<String>,
    /// Active health checks.
    pub health_check: HealthCheckSection,
    /// Failover behaviour.
    pub failover: FailoverSection,
}

impl Default for KubernetesProviderConfig {
    fn default() -> Self {
        KubernetesProviderConfig {
            enabled: false,
            config_path: None,
            context: None,
            namespace: "default".into(),
            service_name: String::new(),
            port_name: None,
            health_check: HealthCheckSection::default(),
            failover: FailoverSection::default(),
        }
    }
}

impl FailoverConfig {
    /// Checks every enabled provider; errors name the field
    /// (`providers.static.endpoints`, …).
    pub fn validate(&self) -> Result<()> {
        let p = &self.providers;
        let enabled = [
            p.consul.as_ref().is_some_and(|c| c.enabled),
            p.kubernetes.as_ref().is_some_and(|c| c.enabled),
            p.static_list.as_ref().is_some_and(|c| c.enabled),
        ];
        if !enabled.contains(&true) {
            return Err(Error::Config(
                "no provider is enabled under providers".into(),
            ));
        }
        if let Some(s) = p.static_list.as_ref().filter(|s| s.enabled) {
            if s.endpoints.is_empty() {
                return Err(Error::Config("providers.static.endpoints is empty".into()));
            }
            StaticDiscovery::from_urls(&s.endpoints)?;
            s.health_check.to_config().validate()?;
            s.failover.validate("static")?;
        }
        if let Some(c) = p.consul.as_ref().filter(|c| c.enabled) {
            if c.service_name.is_empty() {
                return Err(Error::Config(
                    "providers.consul.service_name is empty".into(),
                ));
            }
            if c.address.is_empty() {
                return Err(Error::Config("providers.consul.address is empty".into()));
            }
            c.health_check.to_config().validate()?;
            c.failover.validate("consul")?;
        }
        if let Some(k) = p.kubernetes.as_ref().filter(|k| k.enabled) {
            if k.service_name.is_empty() {
                return Err(Error::Config(
                    "providers.kubernetes.service_name is empty".into(),
                ));
            }
            k.health_check.to_config().validate()?;
            k.failover.validate("kubernetes")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../examples/failover.yaml");

    #[test]
    fn the_example_config_parses_and_validates() {
        let text = expand_env(EXAMPLE).unwrap();
        let root: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        let cfg: FailoverConfig = serde_yaml_ng::from_value(root["failover"].clone()).unwrap();
        cfg.validate().unwrap();
        let consul = cfg.providers.consul.as_ref().unwrap();
        assert_eq!(consul.failover.strategy, StrategyKind::Priority);
        assert_eq!(
            consul.health_check.deregister_after,
            Some(Duration::from_secs(30))
        );
        let k = cfg.providers.kubernetes.as_ref().unwrap();
        assert_eq!(k.failover.strategy, StrategyKind::RoundRobin);
        let s = cfg.providers.static_list.as_ref().unwrap();
        assert_eq!(s.endpoints.len(), 3);
        assert_eq!(s.failover.retry_policy().max_attempts, 4);
    }

    #[test]
    fn errors_name_the_field() {
        let cfg: FailoverConfig =
            serde_yaml_ng::from_str("providers:\n  static:\n    endpoints: []\n").unwrap();
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("providers.static.endpoints"), "{e}");
        let e = serde_yaml_ng::from_str::<FailoverConfig>(
            "providers:\n  static:\n    endpoints: [a:1]\n    failover: { strategy: fastest }\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("fastest"), "{e}");
        let e =
            serde_yaml_ng::from_str::<FailoverConfig>("providers:\n  static:\n    timeout: 3s\n")
                .unwrap_err()
                .to_string();
        assert!(e.contains("unknown field"), "{e}");
        assert!(expand_env("${FAILOVER_POOL_SURELY_UNSET_VAR}").is_err());
        assert_eq!(
            expand_env("a${FAILOVER_POOL_SURELY_UNSET_VAR:-b}c").unwrap(),
            "abc"
        );
    }

    #[tokio::test]
    async fn static_provider_builds_a_working_manager() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let cfg: StaticProviderConfig = serde_yaml_ng::from_str(&format!(
            "endpoints: [\"tcp://127.0.0.1:{port}\"]\nhealth_check: {{ interval: 1s }}\nfailover: {{ strategy: p2c }}\n"
        ))
        .unwrap();
        let f = cfg.builder().unwrap().build().unwrap();
        assert_eq!(
            f.health_check(&format!("127.0.0.1:{port}")).await.unwrap(),
            crate::core::Health::Healthy
        );
    }
}

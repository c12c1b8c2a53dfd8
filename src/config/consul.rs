//! `providers.consul` configuration → a [`Failover`] builder over a
//! [`ConsulDiscovery`].

use super::ConsulProviderConfig;
use crate::core::executor::{Failover, FailoverBuilder};
use crate::core::health::TcpCheck;
use crate::discovery::consul::{ConsulAgent, ConsulDiscovery};
use crate::error::Result;

impl ConsulProviderConfig {
    /// The discovery a `consul` provider section describes: its address,
    /// token, datacenter, namespace, service and `passing_only`; endpoints
    /// get the protocol `http` when `health_check.path` is set, `tcp`
    /// otherwise.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) for an invalid address or an empty service name.
    pub(crate) fn discovery(&self) -> Result<ConsulDiscovery> {
        let mut agent = ConsulAgent::new(&self.address)?;
        if let Some(token) = &self.token {
            agent = agent.with_token(token.clone());
        }
        let mut builder = ConsulDiscovery::builder(agent, self.service_name.clone())
            .passing_only(self.passing_only)
            .protocol(if self.health_check.path.is_some() {
                "http"
            } else {
                "tcp"
            });
        if let Some(dc) = &self.datacenter {
            builder = builder.datacenter(dc.clone());
        }
        if let Some(ns) = &self.namespace {
            builder = builder.namespace(ns.clone());
        }
        builder.build()
    }

    /// A [`Failover`] builder for this provider: a [`ConsulDiscovery`]
    /// (from the address, token, datacenter, namespace and `passing_only`), the strategy, retries, breaker and
    /// outlier settings, and this process's own health checks (TCP, or HTTP
    /// on `health_check.path` when the `http` feature is on).
    ///
    /// ```
    /// use failover_pool::config::FailoverConfig;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> failover_pool::Result<()> {
    /// let yaml = r#"
    /// providers:
    ///   consul:
    ///     enabled: true
    ///     address: "127.0.0.1:8500"
    ///     service_name: users
    ///     health_check: { enabled: false }
    /// "#;
    /// let config: FailoverConfig = serde_yaml_ng::from_str(yaml).unwrap();
    /// config.validate()?;
    /// let failover = config.providers.consul.as_ref().unwrap().builder()?.build()?;
    /// assert_eq!(&**failover.name(), "users");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) for an invalid address or an
    /// empty service name.
    pub fn builder(&self) -> Result<FailoverBuilder> {
        let discovery = self.discovery()?;
        let mut builder = Failover::builder(self.service_name.clone())
            .discovery(discovery)
            .health_config(self.health_check.to_config());
        builder = self.failover.apply(builder);
        #[cfg(feature = "http")]
        if self.health_check.path.is_some() {
            return Ok(
                builder.health_check(crate::core::health::HttpCheck::from_config(
                    &self.health_check.to_config(),
                )),
            );
        }
        Ok(builder.health_check(TcpCheck))
    }
}

//! `providers.kubernetes` configuration → a [`Failover`] builder.

use super::KubernetesProviderConfig;
use crate::core::executor::{Failover, FailoverBuilder};
use crate::core::health::{HttpCheck, TcpCheck};
use crate::discovery::kubernetes::{ClusterAccess, KubernetesDiscovery};
use crate::error::{Error, Result};

impl KubernetesProviderConfig {
    /// A [`Failover`] builder for this provider: a [`KubernetesDiscovery`]
    /// of `service_name` in `namespace` (port `port_name`), reached through
    /// the kubeconfig at `config_path` and `context` (its current context
    /// when absent), or the in-cluster configuration when `config_path` is
    /// absent; the strategy, retries, breaker and outlier settings; and an
    /// HTTP health check on `health_check.path` (a TCP check without a
    /// path).
    ///
    /// # Errors
    /// [`Error::Config`] for an empty service name, a `context` without
    /// `config_path`, a kubeconfig that cannot be used, or (without
    /// `config_path`) when not running in a pod.
    pub fn builder(&self) -> Result<FailoverBuilder> {
        let access = match (&self.config_path, &self.context) {
            (Some(path), context) => ClusterAccess::from_kubeconfig(path, context.as_deref())?,
            (None, Some(_)) => {
                return Err(Error::Config(
                    "providers.kubernetes.context needs config_path".into(),
                ));
            }
            (None, None) => ClusterAccess::in_cluster()?,
        };
        let mut discovery = KubernetesDiscovery::builder(self.service_name.clone())
            .namespace(self.namespace.clone())
            .access(access);
        if let Some(port) = &self.port_name {
            discovery = discovery.port_name(port.clone());
        }
        let discovery = discovery.build()?;
        let config = self.health_check.to_config();
        let mut builder = Failover::builder(self.service_name.clone())
            .health_config(config.clone())
            .discovery(discovery);
        builder = self.failover.apply(builder);
        Ok(if config.path.is_some() {
            builder.health_check(HttpCheck::from_config(&config))
        } else {
            builder.health_check(TcpCheck)
        })
    }
}

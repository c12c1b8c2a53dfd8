//! Kubernetes discovery: the endpoints of a Service, read from its
//! `discovery.k8s.io/v1` EndpointSlices straight from the API server.
//!
//! [`KubernetesDiscovery`] LISTs the slices labelled
//! `kubernetes.io/service-name=<service>` in a namespace, joins them (a
//! Service's endpoints are usually split over several slices), then WATCHes
//! from the list's `resourceVersion` (`allowWatchBookmarks=true`). `ADDED`,
//! `MODIFIED` and `DELETED` events update the union and each change is
//! reported as one [`DiscoveryChange::Replace`](crate::discovery::DiscoveryChange::Replace) of the whole list;
//! `BOOKMARK`s only move the `resourceVersion`. A watch the server ends (its
//! `timeoutSeconds`, a dropped connection) is resumed from the last
//! `resourceVersion` seen; `410 Gone` (an `ERROR` event with code 410, or an
//! HTTP 410) makes it LIST again. Any other failure is returned as an error,
//! so the driver ([`spawn_discovery`](crate::discovery::spawn_discovery))
//! backs off and keeps the last list; the next call resumes the watch.
//!
//! **Endpoint mapping.** Each address of each slice endpoint becomes one
//! [`Endpoint`](crate::core::Endpoint): the port is the slice port named
//! `port_name`, or the slice's only port (a slice with several ports and no
//! `port_name`, or without that name, is skipped with a warning). The id is
//! the endpoint's `targetRef` name (the pod) when it has one address,
//! `address:port` otherwise; the protocol is the builder's, else `http`/`https`
//! from the port's `appProtocol`, else `tcp`. Metadata carries `namespace`,
//! `endpoint_slice`, `pod`, `node` and `zone`. Conditions:
//!
//! * `ready` (or absent) → [`Health::Healthy`](crate::core::Health::Healthy);
//! * not ready, not terminating → [`Health::Unhealthy`](crate::core::Health::Unhealthy)
//!   (kept in the set: no traffic except in panic mode, and it comes back
//!   when it turns ready);
//! * `terminating` (serving or not) → **left out of the list**. [`Health`]
//!   has no "draining" state and an unhealthy endpoint can still be picked
//!   in panic mode or turned healthy by an active check, so removal is the
//!   only way to be sure it gets no new calls. Removal does not cut calls
//!   off: a call in flight holds its endpoint and finishes normally.
//!
//! [`Health`]: crate::core::Health
//!
//! **Access** ([`ClusterAccess`]): in-cluster (service-account token, CA and
//! namespace from `/var/run/secrets/kubernetes.io/serviceaccount`, server
//! from `KUBERNETES_SERVICE_HOST`/`_PORT`; the token file is read again for
//! every request, so rotated tokens work), a kubeconfig file and context
//! (`server`, `certificate-authority[-data]`, and a `token`, `tokenFile` or
//! `client-certificate[-data]` + `client-key[-data]`; `exec` and
//! `auth-provider` plugins, basic auth and `insecure-skip-tls-verify` are
//! refused), or given by hand. HTTPS (rustls through reqwest) trusts only
//! the configured CA. A plain `http://` server URL is allowed, for
//! `kubectl proxy` and for tests. The bearer token never appears in `Debug`
//! output, logs or errors.
//!
//! The client is hand-rolled on reqwest rather than `kube` + `k8s-openapi`
//! (measured: see the README). It is tested against an in-process fake of
//! the API server's wire format (`tests/kubernetes_discovery.rs`), not a
//! real cluster.
//!
//! ```no_run
//! use failover_pool::core::Failover;
//! use failover_pool::discovery::kubernetes::{ClusterAccess, KubernetesDiscovery};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), failover_pool::Error> {
//! let discovery = KubernetesDiscovery::builder("user-service")
//!     .namespace("prod")
//!     .port_name("http")
//!     .access(ClusterAccess::in_cluster()?)
//!     .build()?;
//! let failover = Failover::builder("users").discovery(discovery).build()?;
//! # drop(failover);
//! # Ok(())
//! # }
//! ```
//!
//! From configuration, [`KubernetesProviderConfig::builder`](crate::config::KubernetesProviderConfig::builder)
//! builds the same thing from a `providers.kubernetes` section.

mod access;
mod kubeconfig;
mod watch;
mod wire;

pub use access::{ClusterAccess, SERVICE_ACCOUNT_DIR};

use crate::core::discovery::{Discovery, DiscoveryFuture};
use crate::error::{Error, Result};
use std::time::Duration;
use watch::Watcher;
use wire::Mapping;

/// Endpoints of a Kubernetes Service from its EndpointSlices (see the
/// [module docs](self)).
#[derive(Debug)]
pub struct KubernetesDiscovery {
    watcher: Watcher,
}

impl KubernetesDiscovery {
    /// A builder for the Service named `service`.
    pub fn builder(service: impl Into<String>) -> KubernetesDiscoveryBuilder {
        KubernetesDiscoveryBuilder {
            service: service.into(),
            namespace: None,
            port_name: None,
            protocol: None,
            access: None,
            watch_timeout: Duration::from_secs(290),
            request_timeout: Duration::from_secs(30),
        }
    }

    /// The Service followed.
    pub fn service(&self) -> &str {
        &self.watcher.mapping.service
    }

    /// Its namespace.
    pub fn namespace(&self) -> &str {
        &self.watcher.mapping.namespace
    }

    /// The API server's URL.
    pub fn server(&self) -> &str {
        self.watcher.access.server()
    }
}

impl Discovery for KubernetesDiscovery {
    fn name(&self) -> &str {
        "kubernetes"
    }

    fn next_change(&self) -> DiscoveryFuture<'_> {
        Box::pin(self.watcher.next())
    }
}

/// Builds a [`KubernetesDiscovery`].
#[derive(Debug, Clone)]
pub struct KubernetesDiscoveryBuilder {
    service: String,
    namespace: Option<String>,
    port_name: Option<String>,
    protocol: Option<String>,
    access: Option<ClusterAccess>,
    watch_timeout: Duration,
    request_timeout: Duration,
}

impl KubernetesDiscoveryBuilder {
    /// The Service's namespace (default: the access's namespace, else
    /// `default`).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Uses the slice port with this name (needed when the Service has
    /// several ports).
    pub fn port_name(mut self, name: impl Into<String>) -> Self {
        self.port_name = Some(name.into());
        self
    }

    /// Sets every endpoint's protocol (`http`, `https`, `tcp`, ...),
    /// overriding the port's `appProtocol`.
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocol = Some(protocol.into());
        self
    }

    /// How to reach the API server (default: [`ClusterAccess::in_cluster`]).
    pub fn access(mut self, access: ClusterAccess) -> Self {
        self.access = Some(access);
        self
    }

    /// Shorthand for an API server at `url` with no credentials (e.g.
    /// `kubectl proxy` at `http://127.0.0.1:8001`, or a test server).
    pub fn server(self, url: impl Into<String>) -> Self {
        self.access(ClusterAccess::new(url))
    }

    /// How long one watch request may last before it is resumed (the
    /// `timeoutSeconds` sent; default 290 s).
    pub fn watch_timeout(mut self, timeout: Duration) -> Self {
        self.watch_timeout = timeout;
        self
    }

    /// Time limit of a LIST request, and of connecting (default 30 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Builds the discovery; it does not contact the server yet.
    ///
    /// # Errors
    /// [`Error::Config`] for an empty service name, no access given outside
    /// a pod, a server URL that is not `http(s)://`, or a bad CA or client
    /// certificate.
    pub fn build(self) -> Result<KubernetesDiscovery> {
        if self.service.is_empty() {
            return Err(Error::Config("the Kubernetes service name is empty".into()));
        }
        if self.request_timeout.is_zero() || self.watch_timeout.is_zero() {
            return Err(Error::Config("Kubernetes timeouts must be > 0".into()));
        }
        let access = match self.access {
            Some(a) => a,
            None => ClusterAccess::in_cluster()?,
        };
        let namespace = self
            .namespace
            .or_else(|| access.namespace().map(str::to_owned))
            .unwrap_or_else(|| "default".into());
        let client = access.client(self.request_timeout)?;
        let mapping = Mapping {
            service: self.service,
            namespace,
            port_name: self.port_name,
            protocol: self.protocol,
        };
        Ok(KubernetesDiscovery {
            watcher: Watcher::new(
                access,
                client,
                mapping,
                self.watch_timeout,
                self.request_timeout,
            ),
        })
    }
}

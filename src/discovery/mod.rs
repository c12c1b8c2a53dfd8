//! Endpoint discovery providers: where the endpoint list comes from.
//!
//! The [`Discovery`] trait and its driver [`spawn_discovery`] belong to the
//! core ([`crate::core::discovery`]) and are re-exported here, next to the
//! providers: a fixed list ([`StaticDiscovery`]) answers once and then waits
//! forever; [`MockDiscovery`] is driven by your tests.
//! With the `kubernetes` feature, `kubernetes::KubernetesDiscovery` follows
//! a Service's EndpointSlices through the API server's watch; with the
//! `consul` feature, `consul::ConsulDiscovery` follows a Consul service with
//! blocking queries (and `consul::ConsulRegistration` registers one). Both
//! are tested against in-process fakes of the documented wire formats, as
//! no Consul agent or API server can run on the machines this is built on.
//!
//! [`spawn_discovery`] runs a discovery in the background and applies every
//! change to an [`EndpointSet`](crate::core::EndpointSet). When discovery
//! fails it logs, backs off and **keeps the last known endpoints**: an
//! unreachable Consul agent must not take every endpoint away.
//!
//! ```
//! use failover_pool::core::events::{EventBus, EventKind};
//! use failover_pool::core::{BreakerConfig, EndpointSet};
//! use failover_pool::discovery::{DiscoveryBackoff, StaticDiscovery, spawn_discovery};
//! use std::sync::Arc;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), failover_pool::Error> {
//! let discovery = StaticDiscovery::from_urls(&[
//!     "http://user-service-1:8080",
//!     "http://user-service-2:8080",
//! ])?;
//! let set = Arc::new(EndpointSet::new(Vec::new(), Arc::new(BreakerConfig::default()))?);
//! let events = EventBus::new("users", 64);
//! let mut rx = events.subscribe();
//! let _task = spawn_discovery(
//!     Arc::new(discovery),
//!     Arc::clone(&set),
//!     events,
//!     DiscoveryBackoff::default(),
//! );
//! let event = rx.recv().await.unwrap();
//! assert!(matches!(event.kind, EventKind::EndpointsChanged { .. }));
//! assert_eq!(set.snapshot().len(), 2);
//! # Ok(())
//! # }
//! ```

#[cfg(feature = "consul")]
pub mod consul;
#[cfg(feature = "kubernetes")]
pub mod kubernetes;
pub mod mock;
pub mod static_list;

pub use crate::core::discovery::{
    Discovery, DiscoveryBackoff, DiscoveryChange, DiscoveryFuture, apply_change, spawn_discovery,
};
#[cfg(feature = "consul")]
pub use consul::{ConsulAgent, ConsulDiscovery, ConsulRegistration};
#[cfg(feature = "kubernetes")]
pub use kubernetes::{ClusterAccess, KubernetesDiscovery, KubernetesDiscoveryBuilder};
pub use mock::{MockDiscovery, MockDiscoveryHandle};
pub use static_list::{StaticDiscovery, default_port, endpoint_from_url};

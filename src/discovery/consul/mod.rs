//! Consul: [`ConsulDiscovery`] follows the instances of a service with
//! blocking queries, [`ConsulRegistration`] registers this process's own
//! service with the local agent.
//!
//! # Discovery
//!
//! [`ConsulDiscovery`] reads `GET /v1/health/service/<name>` (with
//! `passing`, `tag`, `dc`, `ns`, `near` and `filter` as configured) and then
//! waits for changes with blocking queries (`index` and `wait`). Each
//! instance becomes an [`Endpoint`](crate::core::Endpoint):
//!
//! | Endpoint   | From Consul                                                           |
//! |------------|-----------------------------------------------------------------------|
//! | `id`       | `Service.ID`; `<Node>/<Service.ID>` when that ID is the service name (Consul's default) or shared by two nodes |
//! | `name`     | `Service.Service`                                                     |
//! | `address`  | `Service.Address`, or `Node.Address` when empty                       |
//! | `port`     | `Service.Port` (instances without one are skipped)                    |
//! | `weight`   | `Service.Weights.Passing` (`Weights.Warning` while degraded)          |
//! | `tags`     | `Service.Tags`                                                        |
//! | `metadata` | `Service.Meta`                                                        |
//! | `health`   | the checks: any critical → unhealthy, any warning → degraded, all passing → healthy |
//! | `role`     | tag `master`/`primary` → primary, `replica`/`standby`/`standby-leader` → replica (Patroni's tags) |
//!
//! so [`DiscoveredTopology`](crate::pool::DiscoveredTopology) names the
//! instance tagged `master` as the writer. While Consul cannot be reached
//! the discovery returns errors and the driver keeps the last known list.
//!
//! ```no_run
//! use failover_pool::core::Failover;
//! use failover_pool::discovery::consul::{ConsulAgent, ConsulDiscovery};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> failover_pool::Result<()> {
//! let agent = ConsulAgent::new("127.0.0.1:8500")?
//!     .with_token(std::env::var("CONSUL_HTTP_TOKEN").unwrap_or_default());
//! let discovery = ConsulDiscovery::builder(agent, "users")
//!     .tag("v2")
//!     .datacenter("dc1")
//!     .wait(Duration::from_secs(60))
//!     .protocol("http")
//!     .build()?;
//! let failover = Failover::builder("users").discovery(discovery).build()?;
//! let served = failover
//!     .execute_idempotent(|ep| async move { Ok::<_, std::io::Error>(ep.endpoint().authority()) })
//!     .await?;
//! println!("served by {}", served.value);
//! # Ok(()) }
//! ```
//!
//! A `consul` provider section in the configuration builds the same through
//! [`ConsulProviderConfig::builder`](crate::config::ConsulProviderConfig::builder).
//!
//! # Registration
//!
//! [`ConsulRegistration::register`] sends `PUT /v1/agent/service/register`
//! with an HTTP or TCP check and `DeregisterCriticalServiceAfter`, and
//! returns a guard that deregisters the instance.
//!
//! # Transport and tests
//!
//! Requests go over plain HTTP/1.1 (hyper) to the agent named by
//! [`ConsulAgent`], with the ACL token in the `X-Consul-Token` header; the
//! token never appears in `Debug` output, logs or errors. The `rs-consul`
//! crate is not used: its `get_service_nodes` answer drops the checks,
//! `Service.Meta` and `Service.Weights` this mapping needs, and it has no
//! agent registration.
//!
//! The tests of this module (`tests/consul_discovery.rs`) run against an
//! in-process fake of Consul's HTTP API that follows the documented wire
//! format (`X-Consul-Index`, blocking `index`/`wait`, `passing`, `tag`,
//! `dc`, the token header, agent registration); they do not run a real
//! Consul.

mod agent;
mod register;
mod watch;
mod wire;

pub use agent::ConsulAgent;
pub use register::{ConsulCheck, ConsulRegistration, ConsulRegistrationGuard};
pub use watch::{ConsulDiscovery, ConsulDiscoveryBuilder};

//! Active health checks and passive outlier detection.
//!
//! * **Active**: a [`HealthChecker`] runs a [`HealthCheck`] ([`TcpCheck`],
//!   `HttpCheck` with the `http` feature, or your own) against every endpoint
//!   of an [`EndpointSet`] every [`HealthCheckConfig::interval`] (plus
//!   jitter), and moves the endpoint's [`Health`] with rise/fall thresholds:
//!   an [`Unhealthy`](crate::core::Health::Unhealthy) endpoint needs
//!   [`rise`](HealthCheckConfig::rise) passes in a row to come back, a usable
//!   one needs [`fall`](HealthCheckConfig::fall) failures in a row to go down.
//!   An endpoint of [`Unknown`](crate::core::Health::Unknown) health takes the result of
//!   its first check at once.
//! * **Passive**: an [`OutlierDetector`] watches the outcome of real calls.
//!   [`OutlierDetector::on_result`] runs after every attempt (no lock, no
//!   allocation unless it ejects) and ejects an endpoint after
//!   [`consecutive_failures`](OutlierConfig::consecutive_failures) failures in
//!   a row; [`OutlierDetector::sweep`] runs every
//!   [`interval`](OutlierConfig::interval), ends expired ejections and ejects
//!   endpoints whose failure rate is too high. Ejections last
//!   `base_ejection × number of ejections`, capped at `max_ejection`, and never
//!   take out more than [`max_ejected_share`](OutlierConfig::max_ejected_share)
//!   of the endpoints.
//!
//! Both recompute the set's panic mode ([`EndpointSet::refresh_panic`]) after
//! they change an endpoint and emit [`EventKind::PanicMode`] when it flips;
//! give both the same threshold (the checker's
//! [`HealthChecker::with_panic_threshold`], the detector's
//! [`OutlierConfig::panic_threshold`]).
//!
//! Background loops are returned as a [`TaskHandle`], which aborts its task
//! when dropped.
//!
//! The concerns live in their own files: [`HealthCheck`] and the built-in
//! checks in `check.rs`, [`HealthChecker`] and its configuration in
//! `checker.rs`, [`OutlierDetector`] in `outlier.rs`, and the panic-mode
//! bookkeeping both share in `panic.rs`.
//!
//! [`EndpointSet`]: crate::core::EndpointSet
//! [`EndpointSet::refresh_panic`]: crate::core::EndpointSet::refresh_panic
//! [`Health`]: crate::core::Health
//! [`EventKind::PanicMode`]: crate::core::events::EventKind::PanicMode

mod check;
mod checker;
mod outlier;
mod panic;

#[cfg(feature = "http")]
pub use check::HttpCheck;
pub use check::{CheckFuture, HealthCheck, TcpCheck};
pub use checker::{CheckReport, HealthCheckConfig, HealthChecker};
pub use outlier::{OutlierConfig, OutlierDetector};
pub use panic::DEFAULT_PANIC_THRESHOLD;

/// Kept here too: background loops of this module return it.
pub use crate::core::task::TaskHandle;

#[cfg(test)]
mod test_support;

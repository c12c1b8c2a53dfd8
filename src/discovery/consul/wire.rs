//! The JSON of `/v1/health/service/<name>` and how one entry becomes an
//! [`Endpoint`].

use crate::core::endpoint::{Endpoint, Health, Role};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// One entry of the answer: a service instance, its node and their checks.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Entry {
    node: Node,
    service: Service,
    #[serde(default)]
    checks: Option<Vec<Check>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Node {
    node: String,
    #[serde(default)]
    address: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Service {
    #[serde(rename = "ID")]
    id: String,
    service: String,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    address: String,
    #[serde(default)]
    port: u16,
    #[serde(default)]
    meta: Option<BTreeMap<String, String>>,
    #[serde(default)]
    weights: Option<Weights>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Weights {
    #[serde(default = "one")]
    passing: u32,
    #[serde(default = "one")]
    warning: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Check {
    status: String,
}

/// The health Consul's checks give: any `critical` (or `maintenance`) →
/// unhealthy, else any `warning` → degraded, else (all `passing`) →
/// healthy; no checks at all → unknown.
fn health_of(checks: &[Check]) -> Health {
    let mut health = Health::Unknown;
    for check in checks {
        let h = match check.status.as_str() {
            "passing" => Health::Healthy,
            "warning" => Health::Degraded,
            _ => return Health::Unhealthy,
        };
        if health != Health::Degraded {
            health = h;
        }
    }
    health
}

/// The role Patroni's tags name: `master`/`primary` → primary,
/// `replica`/`standby`/`standby-leader` → replica (case does not matter).
pub(super) fn role_of(tags: &[String]) -> Option<Role> {
    let has = |names: &[&str]| {
        tags.iter()
            .any(|t| names.iter().any(|n| t.eq_ignore_ascii_case(n)))
    };
    if has(&["master", "primary"]) {
        Some(Role::Primary)
    } else if has(&["replica", "standby", "standby-leader", "standby_leader"]) {
        Some(Role::Replica)
    } else {
        None
    }
}

/// The endpoints of an answer, in Consul's order. Instances without a port
/// are skipped.
///
/// The id is the instance's `Service.ID`. Consul defaults that ID to the
/// service name, which is only unique per node, so such an ID, and any ID
/// that two nodes in the answer share, becomes `<node>/<Service.ID>`.
pub(super) fn endpoints(entries: Vec<Entry>, protocol: &str) -> Vec<Endpoint> {
    let mut count: HashMap<String, usize> = HashMap::new();
    for e in &entries {
        *count.entry(e.service.id.clone()).or_default() += 1;
    }
    entries
        .into_iter()
        .filter(|e| {
            if e.service.port == 0 {
                tracing::debug!(service = %e.service.service, id = %e.service.id, "Consul instance without a port skipped");
            }
            e.service.port != 0
        })
        .map(|e| {
            let qualify = e.service.id.is_empty()
                || e.service.id == e.service.service
                || count.get(&e.service.id).copied().unwrap_or(0) > 1;
            let id: Arc<str> = if qualify {
                format!("{}/{}", e.node.node, e.service.id).into()
            } else {
                e.service.id.into()
            };
            let health = health_of(e.checks.as_deref().unwrap_or_default());
            let weights = e.service.weights.unwrap_or(Weights {
                passing: 1,
                warning: 1,
            });
            let tags = e.service.tags.unwrap_or_default();
            let address = if e.service.address.is_empty() {
                e.node.address
            } else {
                e.service.address
            };
            let mut endpoint = Endpoint::new(id, address, e.service.port)
                .with_name(e.service.service)
                .with_protocol(protocol)
                .with_health(health)
                .with_weight(if health == Health::Degraded {
                    weights.warning
                } else {
                    weights.passing
                });
            endpoint.role = role_of(&tags);
            endpoint.tags = tags;
            endpoint.metadata = e.service.meta.unwrap_or_default();
            endpoint
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_an_entry_like_consuls_example() {
        // Shaped like the example answer in Consul's health API docs.
        let json = r#"[{
          "Node": {"ID": "40e4a748", "Node": "foobar", "Address": "10.1.10.12", "Datacenter": "dc1"},
          "Service": {"ID": "redis", "Service": "redis", "Tags": ["primary", "v1"], "Address": "",
                      "Meta": {"redis_version": "4.0"}, "Port": 8000,
                      "Weights": {"Passing": 10, "Warning": 1}},
          "Checks": [
            {"Node": "foobar", "CheckID": "service:redis", "Status": "passing", "ServiceID": "redis"},
            {"Node": "foobar", "CheckID": "serfHealth", "Status": "passing", "ServiceID": ""}
          ]
        }]"#;
        let entries: Vec<Entry> = serde_json::from_str(json).unwrap();
        let eps = endpoints(entries, "tcp");
        let ep = &eps[0];
        assert_eq!(&*ep.id, "foobar/redis");
        assert_eq!(
            (ep.address.as_str(), ep.port, ep.weight),
            ("10.1.10.12", 8000, 10)
        );
        assert_eq!(ep.health, Health::Healthy);
        assert_eq!(ep.role, Some(Role::Primary));
        assert_eq!(ep.metadata["redis_version"], "4.0");
    }

    #[test]
    fn health_from_checks() {
        let c = |s: &str| Check { status: s.into() };
        assert_eq!(health_of(&[]), Health::Unknown);
        assert_eq!(health_of(&[c("passing"), c("warning")]), Health::Degraded);
        assert_eq!(health_of(&[c("warning"), c("passing")]), Health::Degraded);
        assert_eq!(health_of(&[c("passing"), c("critical")]), Health::Unhealthy);
        assert_eq!(health_of(&[c("maintenance")]), Health::Unhealthy);
    }
}

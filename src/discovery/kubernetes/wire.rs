//! The parts of the `discovery.k8s.io/v1` wire format this provider reads:
//! `EndpointSliceList`, watch events and `Status`, and the mapping of slices
//! to [`Endpoint`]s.

use crate::core::endpoint::{Endpoint, Health};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};

/// `metadata` of an object or a list.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Meta {
    #[serde(default)]
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) resource_version: Option<String>,
    #[serde(default, rename = "continue")]
    pub(super) continue_token: Option<String>,
}

/// An `EndpointSliceList`.
#[derive(Debug, Deserialize)]
pub(super) struct SliceList {
    #[serde(default)]
    pub(super) metadata: Meta,
    #[serde(default)]
    pub(super) items: Option<Vec<Slice>>,
}

/// An `EndpointSlice` (only the fields used here).
#[derive(Debug, Default, Deserialize)]
pub(super) struct Slice {
    #[serde(default)]
    pub(super) metadata: Meta,
    #[serde(default)]
    ports: Option<Vec<SlicePort>>,
    #[serde(default)]
    endpoints: Option<Vec<SliceEndpoint>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SlicePort {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    app_protocol: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SliceEndpoint {
    #[serde(default)]
    addresses: Vec<String>,
    #[serde(default)]
    conditions: Conditions,
    #[serde(default)]
    target_ref: Option<TargetRef>,
    #[serde(default)]
    node_name: Option<String>,
    #[serde(default)]
    zone: Option<String>,
}

/// `conditions`: an absent `ready`/`serving` means ready, an absent
/// `terminating` means not terminating (as the API documents).
#[derive(Debug, Default, Deserialize)]
struct Conditions {
    #[serde(default)]
    ready: Option<bool>,
    #[serde(default)]
    terminating: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct TargetRef {
    #[serde(default)]
    name: Option<String>,
}

/// One line of a watch stream.
#[derive(Debug, Deserialize)]
pub(super) struct WatchEvent {
    #[serde(rename = "type")]
    pub(super) kind: String,
    pub(super) object: serde_json::Value,
}

/// A `Status` (the object of an `ERROR` event, or an error response body).
#[derive(Debug, Default, Deserialize)]
pub(super) struct Status {
    #[serde(default)]
    pub(super) code: Option<u16>,
    #[serde(default)]
    pub(super) reason: Option<String>,
    #[serde(default)]
    pub(super) message: Option<String>,
}

impl Status {
    /// `reason: message` for errors (never contains request headers).
    pub(super) fn describe(&self) -> String {
        let reason = self.reason.as_deref().unwrap_or("error");
        match &self.message {
            Some(m) => format!("{reason}: {m}"),
            None => reason.to_owned(),
        }
    }
}

/// What endpoints are built with.
#[derive(Debug, Clone)]
pub(super) struct Mapping {
    pub(super) service: String,
    pub(super) namespace: String,
    pub(super) port_name: Option<String>,
    pub(super) protocol: Option<String>,
}

impl Mapping {
    /// The endpoints of one slice; `Err` says why the slice is unusable
    /// (its port cannot be chosen).
    pub(super) fn endpoints(&self, slice: &Slice) -> Result<Vec<Endpoint>, String> {
        let ports = slice.ports.as_deref().unwrap_or_default();
        let port = match &self.port_name {
            Some(want) => ports
                .iter()
                .find(|p| p.name.as_deref() == Some(want.as_str()))
                .ok_or_else(|| format!("no port named `{want}`"))?,
            None if ports.len() == 1 => &ports[0],
            None => {
                return Err(format!(
                    "{} ports and no port_name to choose one",
                    ports.len()
                ));
            }
        };
        let number = port.port.ok_or("the chosen port has no number")?;
        let protocol = self
            .protocol
            .clone()
            .or_else(|| match port.app_protocol.as_deref() {
                Some("http" | "kubernetes.io/h2c") => Some("http".into()),
                Some("https") => Some("https".into()),
                _ => None,
            })
            .unwrap_or_else(|| "tcp".into());
        let slice_name = slice.metadata.name.clone().unwrap_or_default();
        let mut out = Vec::new();
        for ep in slice.endpoints.as_deref().unwrap_or_default() {
            if ep.conditions.terminating == Some(true) {
                continue; // draining: no new calls (see the module docs)
            }
            let health = if ep.conditions.ready.unwrap_or(true) {
                Health::Healthy
            } else {
                Health::Unhealthy
            };
            let target = ep.target_ref.as_ref().and_then(|t| t.name.clone());
            for address in &ep.addresses {
                let id = match &target {
                    Some(name) if ep.addresses.len() == 1 => name.clone(),
                    _ => authority(address, number),
                };
                let mut e = Endpoint::new(id, address.clone(), number)
                    .with_name(self.service.clone())
                    .with_protocol(protocol.clone())
                    .with_health(health)
                    .with_metadata("namespace", self.namespace.clone())
                    .with_metadata("endpoint_slice", slice_name.clone());
                for (k, v) in [
                    ("pod", &target),
                    ("node", &ep.node_name),
                    ("zone", &ep.zone),
                ] {
                    if let Some(v) = v {
                        e = e.with_metadata(k, v.clone());
                    }
                }
                out.push(e);
            }
        }
        Ok(out)
    }
}

fn authority(address: &str, port: u16) -> String {
    if address.contains(':') {
        format!("[{address}]:{port}")
    } else {
        format!("{address}:{port}")
    }
}

/// The union of all slices' endpoints, ordered by id, the first of two
/// equal ids kept (slices are visited in name order).
pub(super) fn union(slices: &BTreeMap<String, Vec<Endpoint>>) -> Vec<Endpoint> {
    let mut seen = HashSet::new();
    let mut out: Vec<Endpoint> = slices
        .values()
        .flatten()
        .filter(|e| seen.insert(e.id.clone()))
        .cloned()
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

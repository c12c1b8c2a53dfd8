//! Builds HTTP clients from the YAML provider configuration
//! (`examples/failover.yaml`, or the file given as the first argument):
//! every enabled provider (static, Consul, Kubernetes) becomes a
//! `FailoverClient`, and the endpoints each one has after two seconds are
//! printed. Secrets (`CONSUL_TOKEN`) are masked in everything printed.
//! Without a Consul agent on `localhost:8500` the Consul client keeps
//! retrying in the background and shows no endpoint.
//!
//! Run: `cargo run --features full --example from_config [path/to/failover.yaml]`

use failover_pool::config::{FailoverConfig, expand_env};
use failover_pool::core::FailoverBuilder;
use failover_pool::http::FailoverClient;
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/examples/failover.yaml").into());
    let text = expand_env(&std::fs::read_to_string(&path)?)?;
    let root: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)?;
    let config: FailoverConfig = serde_yaml_ng::from_value(root["failover"].clone())?;
    config.validate()?;
    println!("{path}: {:#?}", config.providers);

    let p = &config.providers;
    let mut built: Vec<(&str, FailoverBuilder)> = Vec::new();
    if let Some(s) = p.static_list.as_ref().filter(|s| s.enabled) {
        built.push(("static", s.builder()?));
    }
    if let Some(c) = p.consul.as_ref().filter(|c| c.enabled) {
        built.push(("consul", c.builder()?));
    }
    if let Some(k) = p.kubernetes.as_ref().filter(|k| k.enabled) {
        match k.builder() {
            Ok(b) => built.push(("kubernetes", b)),
            // Outside a cluster without a kubeconfig there is nothing to reach.
            Err(e) => println!("kubernetes: not built: {e}"),
        }
    }
    let clients: Vec<(&str, FailoverClient)> = built
        .into_iter()
        .map(|(name, core)| FailoverClient::from_core(core).build().map(|c| (name, c)))
        .collect::<Result<_, _>>()?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (name, client) in &clients {
        let ids: Vec<String> = (client.stats().endpoints.iter())
            .map(|e| format!("{} ({:?})", e.id, e.health))
            .collect();
        println!("{name}: {} endpoint(s): {}", ids.len(), ids.join(", "));
    }
    Ok(())
}

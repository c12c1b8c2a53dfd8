//! [`StaticDiscovery`]: a fixed list of endpoints, from [`Endpoint`]s or from
//! URLs such as `http://user-service-1:8080`.

use crate::core::discovery::{Discovery, DiscoveryChange, DiscoveryFuture};
use crate::core::endpoint::Endpoint;
use crate::core::redact::redact_url;
use crate::error::Error;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering::AcqRel};

/// A fixed endpoint list: the first [`Discovery::next_change`] returns it as
/// [`DiscoveryChange::Replace`], later calls never complete.
///
/// ```
/// use failover_pool::discovery::StaticDiscovery;
///
/// let d = StaticDiscovery::from_urls(&["http://user-service-1:8080", "https://api.example.com"])?;
/// let ids: Vec<&str> = d.endpoints().iter().map(|e| &*e.id).collect();
/// assert_eq!(ids, ["user-service-1:8080", "api.example.com:443"]);
/// assert_eq!(d.endpoints()[1].protocol, "https");
/// # Ok::<(), failover_pool::Error>(())
/// ```
#[derive(Debug)]
pub struct StaticDiscovery {
    endpoints: Vec<Endpoint>,
    delivered: AtomicBool,
}

impl StaticDiscovery {
    /// A discovery that reports exactly these endpoints.
    pub fn new(endpoints: Vec<Endpoint>) -> Self {
        StaticDiscovery {
            endpoints,
            delivered: AtomicBool::new(false),
        }
    }

    /// Parses URLs with [`endpoint_from_url`].
    ///
    /// # Errors
    /// [`Error::Config`] for an empty list, a URL that does not parse, or two
    /// URLs naming the same `host:port`.
    pub fn from_urls<S: AsRef<str>>(urls: &[S]) -> Result<Self, Error> {
        if urls.is_empty() {
            return Err(Error::Config("the static endpoint list is empty".into()));
        }
        let mut seen = HashSet::with_capacity(urls.len());
        let mut endpoints = Vec::with_capacity(urls.len());
        for url in urls {
            let ep = endpoint_from_url(url.as_ref())?;
            if !seen.insert(ep.id.clone()) {
                return Err(Error::Config(format!(
                    "endpoint `{}` is listed twice",
                    ep.id
                )));
            }
            endpoints.push(ep);
        }
        Ok(Self::new(endpoints))
    }

    /// The endpoints reported.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }
}

impl Discovery for StaticDiscovery {
    fn name(&self) -> &str {
        "static"
    }

    fn next_change(&self) -> DiscoveryFuture<'_> {
        if self.delivered.swap(true, AcqRel) {
            Box::pin(std::future::pending())
        } else {
            let list = self.endpoints.clone();
            Box::pin(async move { Ok(DiscoveryChange::Replace(list)) })
        }
    }
}

/// The default port of a scheme: `http` 80, `https` 443, `postgres` and
/// `postgresql` 5432, `redis` and `rediss` 6379.
pub fn default_port(scheme: &str) -> Option<u16> {
    match scheme.to_ascii_lowercase().as_str() {
        "http" => Some(80),
        "https" => Some(443),
        "postgres" | "postgresql" => Some(5432),
        "redis" | "rediss" => Some(6379),
        _ => None,
    }
}

/// Parses `scheme://[user[:password]@]host[:port][/path][?query]` into an
/// [`Endpoint`]: the protocol is the lowercased scheme, the port defaults by
/// scheme ([`default_port`]), the id is `host:port` (`[v6addr]:port` for IPv6).
/// User info, path and query are ignored (credentials are not kept).
///
/// ```
/// use failover_pool::discovery::endpoint_from_url;
///
/// let ep = endpoint_from_url("postgres://app:secret@db-1.internal/orders")?;
/// assert_eq!((&*ep.id, ep.address.as_str(), ep.port), ("db-1.internal:5432", "db-1.internal", 5432));
/// assert_eq!(ep.protocol, "postgres");
///
/// let v6 = endpoint_from_url("http://[::1]:9000")?;
/// assert_eq!((&*v6.id, v6.address.as_str()), ("[::1]:9000", "::1"));
///
/// assert!(endpoint_from_url("user-service:8080").is_err()); // no scheme
/// # Ok::<(), failover_pool::Error>(())
/// ```
///
/// # Errors
/// [`Error::Config`] naming the URL (its password masked, see
/// [`redact_url`]) when it has no scheme, no host, a port that is not a
/// number between 1 and 65535, or no port and a scheme without a default
/// port.
pub fn endpoint_from_url(url: &str) -> Result<Endpoint, Error> {
    parse_endpoint_url(url.trim())
        .map_err(|why| Error::Config(format!("invalid endpoint URL `{}`: {why}", redact_url(url))))
}

/// The endpoint `url` names, or why it names none.
fn parse_endpoint_url(url: &str) -> Result<Endpoint, String> {
    let (scheme, rest) = split_scheme(url)?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host_port)| host_port);
    let (host, port) = split_host_port(host_port)?;
    let port = match port {
        Some(p) => parse_port(p)?,
        None => default_port(&scheme)
            .ok_or_else(|| format!("no port given and scheme `{scheme}` has no default port"))?,
    };
    let mut endpoint = Endpoint::new("", host, port).with_protocol(scheme);
    let id: std::sync::Arc<str> = endpoint.authority().into();
    endpoint.name = id.to_string();
    endpoint.id = id;
    Ok(endpoint)
}

/// The lowercased scheme and what follows `://`.
fn split_scheme(url: &str) -> Result<(String, &str), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("expected scheme://host[:port], e.g. http://user-service-1:8080")?;
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return Err("invalid scheme".into());
    }
    Ok((scheme.to_ascii_lowercase(), rest))
}

/// The host (without IPv6 brackets) and the port text, if any, of
/// `host[:port]` or `[v6addr][:port]`.
fn split_host_port(host_port: &str) -> Result<(&str, Option<&str>), String> {
    let (host, port) = if let Some(inner) = host_port.strip_prefix('[') {
        let (host, after) = inner
            .split_once(']')
            .ok_or("unclosed `[` in an IPv6 address")?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or("unexpected text after the IPv6 address")?,
            ),
        };
        (host, port)
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    if !host_port.starts_with('[') && host.contains(':') {
        return Err("IPv6 addresses must be written in brackets, e.g. [::1]:8080".into());
    }
    Ok((host, port))
}

/// A port number between 1 and 65535.
fn parse_port(port: &str) -> Result<u16, String> {
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err("the port must be a number between 1 and 65535".into()),
        Ok(p) => Ok(p),
    }
}

//! The nodes of a pool: how one is named and reached ([`NodeSpec`]), and
//! its generations of pooled connections ([`PoolGeneration`]).
//!
//! A node's id is derived from its URL once, here, for every backend:
//! `host:port` of the one server the URL names (the backend's default port
//! when the URL has none). URLs keep their credentials for connecting, but
//! print masked ([`Redacted`]).

use crate::core::redact::{Redacted, redact_url};
use crate::error::{Error, Result};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::*};

/// One node: an id and how to reach it. Its `Debug` output masks credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// Unique id within a pool (derived: `host:port`).
    pub id: Arc<str>,
    /// Connection URL (`postgres://…`, `redis://…`), credentials included;
    /// it prints masked.
    pub url: Redacted,
}

impl fmt::Debug for NodeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeSpec")
            .field("id", &self.id)
            .field("url", &self.url)
            .finish()
    }
}

impl NodeSpec {
    /// A node with an explicit id.
    pub fn new(id: impl Into<Arc<str>>, url: impl Into<Redacted>) -> Self {
        NodeSpec {
            id: id.into(),
            url: url.into(),
        }
    }

    /// A node whose id is `host:port` of the one server `url` names, with
    /// `default_port` when it names none. Accepts URLs
    /// (`postgres://user:pw@db-a:5433/app`, `redis://[::1]/0`, a host in the
    /// query as in `postgres:///app?host=/run/postgresql`) and libpq
    /// `key=value` strings (`host=db-a port=5433 dbname=app`).
    ///
    /// ```
    /// use failover_pool::pool::NodeSpec;
    /// let n = NodeSpec::from_url("postgres://app:s3cret@db-a/app", 5432).unwrap();
    /// assert_eq!(&*n.id, "db-a:5432");
    /// assert_eq!(format!("{:?}", n), r#"NodeSpec { id: "db-a:5432", url: "postgres://app:***@db-a/app" }"#);
    /// assert_eq!(&*NodeSpec::from_url("host=db-b port=5433", 5432).unwrap().id, "db-b:5433");
    /// assert!(NodeSpec::from_url("postgres://a,b/app", 5432).is_err()); // one server per node
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`] (with the URL masked) when no single host and port
    /// can be read from it.
    pub fn from_url(url: &str, default_port: u16) -> Result<Self> {
        let (host, port) = host_port(url)
            .map_err(|why| Error::Config(format!("bad node URL `{}`: {why}", redact_url(url))))?;
        let port = match port {
            Some(p) => p.parse::<u16>().map_err(|_| {
                Error::Config(format!("bad port `{p}` in node URL `{}`", redact_url(url)))
            })?,
            None => default_port,
        };
        let host = if host.is_empty() {
            "localhost".to_owned()
        } else {
            host
        };
        let id = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Ok(NodeSpec::new(id, url))
    }

    /// [`NodeSpec::from_url`] for every URL; ids must be unique.
    pub fn from_urls<S: AsRef<str>>(urls: &[S], default_port: u16) -> Result<Vec<Self>> {
        let nodes = urls
            .iter()
            .map(|u| NodeSpec::from_url(u.as_ref(), default_port))
            .collect::<Result<Vec<_>>>()?;
        check_unique(&nodes)?;
        Ok(nodes)
    }
}

/// Fails when two nodes share an id.
pub(crate) fn check_unique(nodes: &[NodeSpec]) -> Result<()> {
    let mut seen = std::collections::HashSet::with_capacity(nodes.len());
    match nodes.iter().find(|n| !seen.insert(&n.id)) {
        Some(dup) => Err(Error::Config(format!(
            "duplicate node id `{}` (two URLs name the same server)",
            dup.id
        ))),
        None => Ok(()),
    }
}

/// The host and (unparsed) port a URL or libpq string names.
fn host_port(url: &str) -> std::result::Result<(String, Option<String>), &'static str> {
    let url = url.trim();
    let Some(scheme_end) = url.find("://") else {
        return conninfo_host_port(url);
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let query = rest[authority_end..]
        .split_once('?')
        .map_or("", |(_, q)| q.split('#').next().unwrap_or(""));
    let param = |key: &str| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| percent_decode(v))
    };
    if hostport.contains(',') || param("host").is_some_and(|h| h.contains(',')) {
        return Err("it names several servers; give each server its own URL");
    }
    let (host, port) = split_host_port(hostport)?;
    let host = if host.is_empty() {
        param("host").unwrap_or_default()
    } else {
        percent_decode(host)
    };
    Ok((host, port.map(str::to_owned).or_else(|| param("port"))))
}

fn split_host_port(s: &str) -> std::result::Result<(&str, Option<&str>), &'static str> {
    if let Some(v6) = s.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or("unclosed `[` in the host")?;
        let port = after.strip_prefix(':').filter(|p| !p.is_empty());
        return Ok((host, port));
    }
    Ok(match s.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() => (h, Some(p)),
        Some((h, _)) => (h, None),
        None => (s, None),
    })
}

fn conninfo_host_port(s: &str) -> std::result::Result<(String, Option<String>), &'static str> {
    let mut host = None;
    let mut port = None;
    for pair in s.split_whitespace() {
        if let Some((k, v)) = pair.split_once('=') {
            let v = v.trim_matches('\'').to_owned();
            match k {
                "host" | "hostaddr" if host.is_none() || k == "host" => host = Some(v),
                "port" => port = Some(v),
                _ => {}
            }
        }
    }
    if host.is_none() && port.is_none() {
        return Err("expected `scheme://host:port/…` or `host=… port=…`");
    }
    let host = host.unwrap_or_default();
    if host.contains(',') {
        return Err("it names several servers; give each server its own URL");
    }
    Ok((host, port))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Which generation of a node's connection pool a backend pool belongs to
/// (see [`Backend::pool`](crate::pool::Backend::pool)). A node gets a new
/// generation whenever its role, fencing or reachability changes; a pool of
/// an older generation must hand out and recycle nothing.
#[derive(Clone)]
pub struct PoolGeneration {
    id: u64,
    current: Arc<AtomicU64>,
}

impl PoolGeneration {
    pub(crate) fn first() -> Self {
        PoolGeneration {
            id: 1,
            current: Arc::new(AtomicU64::new(1)),
        }
    }

    /// Starts the next generation; this and every older one stop being current.
    pub(crate) fn next(&self) -> Self {
        let id = self.current.fetch_add(1, AcqRel) + 1;
        PoolGeneration {
            id,
            current: Arc::clone(&self.current),
        }
    }

    /// This generation's number (1 for a node's first pool).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether connections of this generation may still be used (one atomic load).
    pub fn is_current(&self) -> bool {
        self.current.load(Acquire) == self.id
    }
}

impl fmt::Debug for PoolGeneration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolGeneration")
            .field("id", &self.id)
            .field("current", &self.is_current())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(url: &str) -> String {
        NodeSpec::from_url(url, 5432).unwrap().id.to_string()
    }

    #[test]
    fn ids_from_every_url_form() {
        assert_eq!(id("postgres://u:p@db-a:5433/app"), "db-a:5433");
        assert_eq!(id("postgresql://db-a/app?sslmode=disable"), "db-a:5432");
        assert_eq!(id("postgres://[::1]:6000/app"), "[::1]:6000");
        assert_eq!(
            id("postgres://%2Frun%2Fpostgresql/app"),
            "/run/postgresql:5432"
        );
        assert_eq!(id("postgres:///app?host=/tmp&port=5999"), "/tmp:5999");
        assert_eq!(id("host=db-b port=5434 user=app password=x"), "db-b:5434");
        assert_eq!(id("postgres://u:p@db-a"), "db-a:5432");
        assert_eq!(id("postgres:///app"), "localhost:5432");
        assert_eq!(
            NodeSpec::from_url("redis://:pw@cache:6380/0", 6379)
                .unwrap()
                .id
                .as_ref(),
            "cache:6380"
        );
    }

    #[test]
    fn errors_mask_the_password() {
        for bad in [
            "postgres://u:hunter2@a,b/app",
            "postgres://u:hunter2@db:notaport/app",
            "password=hunter2 dbname=x",
        ] {
            let e = NodeSpec::from_url(bad, 5432).unwrap_err().to_string();
            assert!(!e.contains("hunter2"), "{e}");
        }
        let dup = NodeSpec::from_urls(&["postgres://a/x", "postgres://a:5432/y"], 5432);
        assert!(
            dup.unwrap_err()
                .to_string()
                .contains("duplicate node id `a:5432`")
        );
    }

    #[test]
    fn generations() {
        let g1 = PoolGeneration::first();
        assert!(g1.is_current());
        let g2 = g1.next();
        assert!(!g1.is_current());
        assert!(g2.is_current());
        assert_eq!(g2.id(), 2);
    }
}

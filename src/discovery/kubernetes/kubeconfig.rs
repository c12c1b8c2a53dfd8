//! A minimal kubeconfig reader: the context's cluster (`server`,
//! `certificate-authority[-data]`) and user (`token`, `tokenFile`,
//! `client-certificate[-data]` + `client-key[-data]`). `exec` and
//! `auth-provider` plugins, basic auth and `insecure-skip-tls-verify` are
//! refused with an error that says so.

use super::access::ClusterAccess;
use crate::error::{Error, Result};
use base64::Engine as _;
use serde::Deserialize;
use std::path::{Path, PathBuf};

impl ClusterAccess {
    /// Reads a kubeconfig (see the module docs for what is supported).
    ///
    /// # Errors
    /// [`Error::Config`] when the file cannot be read or parsed, names no
    /// such context, or uses an unsupported authentication.
    pub fn from_kubeconfig(path: impl AsRef<Path>, context: Option<&str>) -> Result<Self> {
        load(path.as_ref(), context)
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct KubeConfig {
    #[serde(default)]
    current_context: Option<String>,
    #[serde(default)]
    clusters: Vec<Named<Cluster>>,
    #[serde(default)]
    contexts: Vec<Named<Context>>,
    #[serde(default)]
    users: Vec<Named<User>>,
}

#[derive(Debug, Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "cluster", alias = "context", alias = "user")]
    value: T,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Cluster {
    server: String,
    #[serde(default)]
    certificate_authority: Option<String>,
    #[serde(default)]
    certificate_authority_data: Option<String>,
    #[serde(default)]
    insecure_skip_tls_verify: bool,
}

#[derive(Debug, Deserialize)]
struct Context {
    cluster: String,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct User {
    #[serde(default)]
    token: Option<String>,
    #[serde(default, rename = "tokenFile")]
    token_file: Option<String>,
    #[serde(default)]
    client_certificate: Option<String>,
    #[serde(default)]
    client_certificate_data: Option<String>,
    #[serde(default)]
    client_key: Option<String>,
    #[serde(default)]
    client_key_data: Option<String>,
    #[serde(default)]
    exec: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    auth_provider: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    username: Option<String>,
}

// Hand-written so that a token or key in the file never reaches a log.
impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User").finish_non_exhaustive()
    }
}

fn unsupported(what: &str) -> Error {
    Error::Config(format!(
        "kubeconfig: {what} is not supported by the kubernetes discovery \
         (use a token, a token file or a client certificate)"
    ))
}

/// Reads `path` and builds the access of `context` (or `current-context`).
pub(super) fn load(path: &Path, context: Option<&str>) -> Result<ClusterAccess> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("cannot read kubeconfig {}: {e}", path.display())))?;
    // serde_yaml_ng's messages quote positions, not values: no secret leaks.
    let cfg: KubeConfig = serde_yaml_ng::from_str(&text)
        .map_err(|e| Error::Config(format!("kubeconfig {}: {e}", path.display())))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let name = context
        .map(str::to_owned)
        .or(cfg.current_context.clone())
        .ok_or_else(|| {
            Error::Config("kubeconfig: no context given and no current-context".into())
        })?;
    let ctx = find(&cfg.contexts, &name, "context")?;
    let cluster = find(&cfg.clusters, &ctx.cluster, "cluster")?;
    if cluster.insecure_skip_tls_verify {
        return Err(unsupported("insecure-skip-tls-verify"));
    }
    let mut access = ClusterAccess::new(cluster.server.clone());
    if let Some(ca) = bytes(
        base,
        &cluster.certificate_authority,
        &cluster.certificate_authority_data,
    )? {
        access = access.with_ca_pem(ca);
    }
    if let Some(ns) = &ctx.namespace {
        access = access.with_namespace(ns.clone());
    }
    let default = User::default();
    let user = match &ctx.user {
        Some(u) => find(&cfg.users, u, "user")?,
        None => &default,
    };
    if user.exec.is_some() {
        return Err(unsupported("an exec credential plugin"));
    }
    if user.auth_provider.is_some() {
        return Err(unsupported("an auth-provider"));
    }
    if user.username.is_some() {
        return Err(unsupported("basic authentication"));
    }
    if let Some(t) = &user.token {
        access = access.with_token(t.clone());
    } else if let Some(f) = &user.token_file {
        access = access.with_token_file(resolve(base, f));
    }
    let cert = bytes(
        base,
        &user.client_certificate,
        &user.client_certificate_data,
    )?;
    let key = bytes(base, &user.client_key, &user.client_key_data)?;
    match (cert, key) {
        (Some(mut cert), Some(key)) => {
            cert.push(b'\n');
            cert.extend_from_slice(&key);
            access = access.with_client_identity_pem(cert);
        }
        (None, None) => {}
        _ => {
            return Err(Error::Config(
                "kubeconfig: a client certificate needs both certificate and key".into(),
            ));
        }
    }
    Ok(access)
}

fn find<'a, T>(list: &'a [Named<T>], name: &str, what: &str) -> Result<&'a T> {
    list.iter()
        .find(|n| n.name == name)
        .map(|n| &n.value)
        .ok_or_else(|| Error::Config(format!("kubeconfig: no {what} named `{name}`")))
}

fn resolve(base: &Path, file: &str) -> PathBuf {
    let p = Path::new(file);
    if p.is_absolute() {
        p.to_owned()
    } else {
        base.join(p)
    }
}

/// The contents of `file` (relative to the kubeconfig) or the base64 `data`.
fn bytes(base: &Path, file: &Option<String>, data: &Option<String>) -> Result<Option<Vec<u8>>> {
    if let Some(d) = data {
        let clean: String = d.chars().filter(|c| !c.is_whitespace()).collect();
        return base64::engine::general_purpose::STANDARD
            .decode(clean)
            .map(Some)
            .map_err(|_| Error::Config("kubeconfig: a `-data` field is not valid base64".into()));
    }
    match file {
        Some(f) => {
            let p = resolve(base, f);
            std::fs::read(&p)
                .map(Some)
                .map_err(|e| Error::Config(format!("cannot read {}: {e}", p.display())))
        }
        None => Ok(None),
    }
}

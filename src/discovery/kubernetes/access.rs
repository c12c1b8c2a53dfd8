//! [`ClusterAccess`]: where the API server is and how to authenticate to it
//! (in-cluster service account, a kubeconfig, or given by hand).

use crate::core::redact::MASK;
use crate::error::{Error, Result};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The service account directory mounted into every pod.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Where the bearer token comes from.
#[derive(Clone)]
enum Token {
    /// A token given as a string.
    Static(String),
    /// A file read again for every request (the kubelet rotates projected
    /// service-account tokens in place).
    File(PathBuf),
}

/// How to reach the Kubernetes API server: its URL, a bearer token (or a
/// client certificate) and the CA that signed its certificate.
///
/// `Debug` never shows the token, the CA or the client key: only whether
/// they are set (and a token file's path).
///
/// ```
/// use failover_pool::discovery::kubernetes::ClusterAccess;
/// let access = ClusterAccess::new("http://127.0.0.1:8001").with_token("s3cret-token");
/// assert_eq!(access.server(), "http://127.0.0.1:8001");
/// assert!(!format!("{access:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
pub struct ClusterAccess {
    server: String,
    token: Option<Token>,
    ca_pem: Option<Vec<u8>>,
    identity_pem: Option<Vec<u8>>,
    namespace: Option<String>,
}

impl fmt::Debug for ClusterAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let token = match &self.token {
            None => None,
            Some(Token::Static(_)) => Some(MASK.to_owned()),
            Some(Token::File(p)) => Some(format!("file {}", p.display())),
        };
        f.debug_struct("ClusterAccess")
            .field("server", &self.server)
            .field("token", &token)
            .field("ca", &self.ca_pem.is_some())
            .field("client_certificate", &self.identity_pem.is_some())
            .field("namespace", &self.namespace)
            .finish()
    }
}

impl ClusterAccess {
    /// An API server at `server` (`https://host:port`, or `http://` for a
    /// local proxy such as `kubectl proxy` or a test server), with no
    /// credentials yet. A trailing `/` is ignored.
    pub fn new(server: impl Into<String>) -> Self {
        let mut server = server.into();
        while server.ends_with('/') {
            server.pop();
        }
        ClusterAccess {
            server,
            token: None,
            ca_pem: None,
            identity_pem: None,
            namespace: None,
        }
    }

    /// Sends `Authorization: Bearer <token>`.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(Token::Static(token.into()));
        self
    }

    /// Sends the token read from `path` (read again for every request, so
    /// rotated tokens are picked up).
    pub fn with_token_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.token = Some(Token::File(path.into()));
        self
    }

    /// Trusts only these PEM CA certificates for the server's certificate.
    pub fn with_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// Presents a client certificate: PEM with the certificate (chain) and
    /// its private key.
    pub fn with_client_identity_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.identity_pem = Some(pem.into());
        self
    }

    /// Sets the default namespace (used when the discovery names none).
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// The in-cluster configuration: `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`,
    /// the service-account token and CA under [`SERVICE_ACCOUNT_DIR`], and
    /// the pod's namespace as the default.
    ///
    /// # Errors
    /// [`Error::Config`] outside a pod (the variables or files are missing).
    pub fn in_cluster() -> Result<Self> {
        Self::in_cluster_from(Path::new(SERVICE_ACCOUNT_DIR))
    }

    /// [`ClusterAccess::in_cluster`] with the service-account files in `dir`.
    ///
    /// # Errors
    /// [`Error::Config`] when a variable or `dir/ca.crt` is missing.
    pub fn in_cluster_from(dir: &Path) -> Result<Self> {
        let var = |name: &str| {
            std::env::var(name)
                .map_err(|_| Error::Config(format!("{name} is not set: not running in a pod?")))
        };
        let host = var("KUBERNETES_SERVICE_HOST")?;
        let port = var("KUBERNETES_SERVICE_PORT")?;
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        let ca = read(&dir.join("ca.crt"))?;
        let mut access = ClusterAccess::new(format!("https://{host}:{port}"))
            .with_ca_pem(ca)
            .with_token_file(dir.join("token"));
        if let Ok(ns) = std::fs::read_to_string(dir.join("namespace")) {
            access = access.with_namespace(ns.trim());
        }
        Ok(access)
    }

    /// The API server's URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The default namespace, if the configuration names one.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// The HTTP client for this server.
    pub(super) fn client(&self, connect_timeout: Duration) -> Result<reqwest::Client> {
        let https = self.server.starts_with("https://");
        if !https && !self.server.starts_with("http://") {
            return Err(Error::Config(format!(
                "Kubernetes API server `{}` is not an http(s) URL",
                self.server
            )));
        }
        let mut b = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .tcp_keepalive(Duration::from_secs(30))
            .no_proxy();
        if https {
            let ca = self.ca_pem.as_deref().ok_or_else(|| {
                Error::Config("an https API server needs a CA certificate".into())
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(ca)
                .map_err(|e| Error::Config(format!("bad Kubernetes CA certificate: {e}")))?;
            b = b.tls_certs_only(certs);
            if let Some(pem) = &self.identity_pem {
                let id = reqwest::Identity::from_pem(pem).map_err(|e| {
                    Error::Config(format!("bad Kubernetes client certificate: {e}"))
                })?;
                b = b.identity(id);
            }
        }
        b.build()
            .map_err(|e| Error::Config(format!("Kubernetes HTTP client: {e}")))
    }

    /// The bearer token to send now, if any. Errors never contain it.
    pub(super) fn bearer(&self) -> Result<Option<String>> {
        Ok(match &self.token {
            None => None,
            Some(Token::Static(t)) => Some(t.clone()),
            Some(Token::File(p)) => Some(String::from_utf8_lossy(&read(p)?).trim().to_owned()),
        })
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))
}

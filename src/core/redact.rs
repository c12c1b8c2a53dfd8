//! Hiding credentials before a URL or connection string is shown.
//!
//! Every place this crate prints a node or endpoint address (`Debug`,
//! `Display`, errors, events, `tracing` fields, the drill report) goes
//! through [`redact_url`] or [`Redacted`], so a password in a connection URL
//! never reaches a log line.
//!
//! What is hidden:
//! - the password of a URL's user info: `postgres://app:s3cret@db/app` →
//!   `postgres://app:***@db/app` (the user name stays: it helps debugging),
//!   also when the scheme is missing (`app:s3cret@db` → `app:***@db`);
//! - the value of query parameters and `key=value` pairs that carry secrets
//!   (`password`, `pass`, `pwd`, `passwd`, `sslpassword`, `token`, `secret`,
//!   `auth`, `access_token`, `api_key`, `apikey`), as in libpq's
//!   `host=db password=s3cret` or `redis://db/0?password=s3cret`.
//!
//! ```
//! use failover_pool::core::redact::redact_url;
//! assert_eq!(redact_url("postgres://app:s3cret@db:5432/app"), "postgres://app:***@db:5432/app");
//! assert_eq!(redact_url("redis://:s3cret@cache/0"), "redis://:***@cache/0");
//! assert_eq!(redact_url("host=db user=app password=s3cret"), "host=db user=app password=***");
//! assert_eq!(redact_url("postgres://db/app?sslmode=require&password=x"), "postgres://db/app?sslmode=require&password=***");
//! assert_eq!(redact_url("postgres://app@db/app"), "postgres://app@db/app");
//! ```

use std::borrow::Cow;
use std::fmt;

/// The mask that replaces a secret.
pub const MASK: &str = "***";

const SECRET_KEYS: &[&str] = &[
    "password",
    "pass",
    "pwd",
    "passwd",
    "sslpassword",
    "token",
    "secret",
    "auth",
    "access_token",
    "api_key",
    "apikey",
];

fn is_secret_key(key: &str) -> bool {
    SECRET_KEYS
        .iter()
        .any(|k| k.eq_ignore_ascii_case(key.trim()))
}

/// `url` with its credentials replaced by [`MASK`] (borrowed when there is
/// nothing to hide). Works on URLs (`scheme://user:password@host/...?k=v`)
/// and on libpq-style `key=value` connection strings.
pub fn redact_url(url: &str) -> Cow<'_, str> {
    let mut out: Option<String> = None;
    let mut rest_start = 0;
    // User info: between the authority's start and the last '@' before the path.
    if let Some((auth_start, authority_end)) = authority(url)
        && let Some(at) = url[auth_start..authority_end].rfind('@')
    {
        let userinfo = &url[auth_start..auth_start + at];
        if let Some(colon) = userinfo.find(':') {
            let mut s = String::with_capacity(url.len());
            s.push_str(&url[..auth_start + colon + 1]);
            s.push_str(MASK);
            s.push_str(&url[auth_start + at..authority_end]);
            out = Some(s);
            rest_start = authority_end;
        }
    }
    // Secret parameters: `k=v` separated by '&', ';', '?', '#' or whitespace.
    let rest = &url[rest_start..];
    let mut masked = String::new();
    let mut changed = false;
    let mut i = 0;
    let bytes = rest.as_bytes();
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'=' {
            // The key runs back to the previous separator.
            let key_start = rest[..i]
                .rfind(|ch: char| matches!(ch, '&' | ';' | '?' | '#' | '/') || ch.is_whitespace())
                .map_or(0, |p| p + 1);
            let key = &rest[key_start..i];
            let value = &rest[i + 1..];
            let value_end = if let Some(quoted) = value.strip_prefix('\'') {
                // libpq quoting: 'a b' (a quote inside is escaped as \').
                let mut end = rest.len();
                let mut escaped = false;
                for (p, ch) in quoted.char_indices() {
                    match ch {
                        '\\' if !escaped => escaped = true,
                        '\'' if !escaped => {
                            end = i + 2 + p + 1;
                            break;
                        }
                        _ => escaped = false,
                    }
                }
                end
            } else {
                value
                    .find(|ch: char| matches!(ch, '&' | ';' | '#') || ch.is_whitespace())
                    .map_or(rest.len(), |p| i + 1 + p)
            };
            masked.push('=');
            if is_secret_key(key) && value_end > i + 1 {
                masked.push_str(MASK);
                changed = true;
            } else {
                masked.push_str(&rest[i + 1..value_end]);
            }
            i = value_end;
            continue;
        }
        // Copy one whole UTF-8 character.
        let len = rest[i..].chars().next().map_or(1, char::len_utf8);
        masked.push_str(&rest[i..i + len]);
        i += len;
    }
    match (out, changed) {
        (None, false) => Cow::Borrowed(url),
        (None, true) => Cow::Owned(masked),
        (Some(mut head), true) => {
            head.push_str(&masked);
            Cow::Owned(head)
        }
        (Some(mut head), false) => {
            head.push_str(rest);
            Cow::Owned(head)
        }
    }
}

/// Where the authority (`[user[:password]@]host[:port]`) of `url` starts and
/// ends: after `scheme://` up to the path, query or fragment; or, when there
/// is no scheme (`app:s3cret@db:5432`), the first word, unless it is a
/// libpq-style `key=value` pair.
fn authority(url: &str) -> Option<(usize, usize)> {
    match url.find("://") {
        Some(scheme_end) => {
            let start = scheme_end + 3;
            let end = url[start..]
                .find(['/', '?', '#'])
                .map_or(url.len(), |i| start + i);
            Some((start, end))
        }
        None => {
            let end = url
                .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace())
                .unwrap_or(url.len());
            (!url[..end].contains('=')).then_some((0, end))
        }
    }
}

/// A URL or connection string that prints (`Debug` and `Display`) with its
/// credentials masked, for struct fields that keep the real value for
/// connecting. It (de)serializes as the plain string, credentials included,
/// so a configuration round-trips; never log a serialized configuration.
///
/// ```
/// use failover_pool::core::redact::Redacted;
/// let url = Redacted::new("postgres://app:s3cret@db/app");
/// assert_eq!(url.expose(), "postgres://app:s3cret@db/app");
/// assert_eq!(format!("{url}"), "postgres://app:***@db/app");
/// assert_eq!(format!("{url:?}"), "\"postgres://app:***@db/app\"");
/// ```
#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Redacted(String);

impl Redacted {
    /// Wraps a URL or connection string.
    pub fn new(url: impl Into<String>) -> Self {
        Redacted(url.into())
    }

    /// The real value, credentials included: only for connecting.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*redact_url(&self.0), f)
    }
}

impl From<&str> for Redacted {
    fn from(s: &str) -> Self {
        Redacted(s.to_owned())
    }
}

impl From<String> for Redacted {
    fn from(s: String) -> Self {
        Redacted(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_form() {
        let cases = [
            ("postgres://u:p@h/db", "postgres://u:***@h/db"),
            ("postgres://u:p@h", "postgres://u:***@h"),
            (
                "postgres://u:p%40x@h:1/db?x=1",
                "postgres://u:***@h:1/db?x=1",
            ),
            ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("http://h:8080/health", "http://h:8080/health"),
            (
                "postgres://h/db?user=u&password=pw&sslmode=disable",
                "postgres://h/db?user=u&password=***&sslmode=disable",
            ),
            ("host=h password='pw' port=5", "host=h password=*** port=5"),
            ("host=h PASSWORD=pw", "host=h PASSWORD=***"),
            (
                "host=h password='p w\\'x' port=5",
                "host=h password=*** port=5",
            ),
            ("http://u:pw@h/?token=abc#x", "http://u:***@h/?token=***#x"),
            ("päss://ü:pw@h", "päss://ü:***@h"),
            ("u:pw@h:5432/db", "u:***@h:5432/db"),
            ("u:pw@h", "u:***@h"),
            ("h:5432", "h:5432"),
            ("u@h", "u@h"),
            ("password=pw host=h", "password=*** host=h"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(redact_url(input), want, "{input}");
            assert!(!redact_url(input).contains("pw") || !input.contains("pw"));
        }
    }

    #[test]
    fn borrows_when_clean() {
        assert!(matches!(redact_url("postgres://u@h/db"), Cow::Borrowed(_)));
    }
}

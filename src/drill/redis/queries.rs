//! Commands on a [`LocalRedisCluster`]'s nodes, each under the query
//! timeout (a fresh connection per call, so a frozen node fails the call
//! instead of hanging it), and the replication queries and waits built on
//! them.

use std::collections::HashMap;
use std::time::Duration;

use ::redis::{AsyncConnectionConfig, ErrorKind, FromRedisValue, RedisError, Value};

use super::options::url;
use super::{ClusterError, LocalRedisCluster, RedisRole, Target};

/// Commands are shown in errors up to this many characters.
const SHOWN_COMMAND_CHARS: usize = 120;
/// How many keys one `SCAN` step asks for.
const SCAN_COUNT: &str = "1000";

impl LocalRedisCluster {
    /// Runs the command `args` (name first, e.g. `&["SET", "k", "v"]`) on
    /// node `index` and returns the raw reply.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Redis`] (connecting failed, or an error reply such
    /// as `READONLY`) or [`ClusterError::RedisTimeout`] (connecting or the
    /// command took longer than the query timeout).
    pub async fn exec(&self, index: usize, args: &[&str]) -> Result<Value, ClusterError> {
        self.query(index, args).await
    }

    /// Runs the command `args` on node `index` and converts the reply,
    /// e.g. `query::<Option<String>>(1, &["GET", "k"])`.
    ///
    /// # Errors
    ///
    /// As for [`exec`](Self::exec); a reply that does not convert to `T`
    /// is a [`ClusterError::Redis`].
    pub async fn query<T: FromRedisValue>(
        &self,
        index: usize,
        args: &[&str],
    ) -> Result<T, ClusterError> {
        self.query_target(Target::Node(index), args).await
    }

    /// [`query`](Self::query) on a node or a sentinel.
    pub(super) async fn query_target<T: FromRedisValue>(
        &self,
        target: Target,
        args: &[&str],
    ) -> Result<T, ClusterError> {
        let info = self.proc_info(target)?;
        command_on(&info.name, info.port, args, self.opts.query_timeout).await
    }

    /// Node `index`'s `INFO replication` section as a map (`role`,
    /// `master_replid`, `master_replid2`, `master_repl_offset`,
    /// `master_link_status`, ...).
    ///
    /// # Errors
    ///
    /// As for [`exec`](Self::exec).
    pub async fn info_replication(
        &self,
        index: usize,
    ) -> Result<HashMap<String, String>, ClusterError> {
        let text: String = self.query(index, &["INFO", "replication"]).await?;
        Ok(parse_info(&text))
    }

    /// Node `index`'s replication role as it reports it now.
    ///
    /// # Errors
    ///
    /// As for [`exec`](Self::exec); an `INFO` reply without the expected
    /// fields is a [`ClusterError::Redis`].
    pub async fn role(&self, index: usize) -> Result<RedisRole, ClusterError> {
        let info = self.proc_info(Target::Node(index))?;
        role_at(&info.name, info.port, self.opts.query_timeout).await
    }

    /// The number of keys in node `index`'s database 0 (`DBSIZE`).
    ///
    /// # Errors
    ///
    /// As for [`exec`](Self::exec).
    pub async fn dbsize(&self, index: usize) -> Result<u64, ClusterError> {
        self.query(index, &["DBSIZE"]).await
    }

    /// Every key on node `index` that starts with `prefix`, sorted
    /// (`SCAN ... MATCH <prefix>*`, never `KEYS`; glob characters in
    /// `prefix` are escaped).
    ///
    /// # Errors
    ///
    /// As for [`exec`](Self::exec), for any `SCAN` step.
    pub async fn keys_with_prefix(
        &self,
        index: usize,
        prefix: &str,
    ) -> Result<Vec<String>, ClusterError> {
        let info = self.proc_info(Target::Node(index))?;
        keys_at(&info.name, info.port, self.opts.query_timeout, prefix).await
    }

    /// Waits until node `index` reports itself a replica whose link to its
    /// master is up.
    ///
    /// # Errors
    ///
    /// [`ClusterError::NotReady`] after the start-up timeout,
    /// [`ClusterError::ServerExited`] when it dies meanwhile.
    pub async fn wait_link_up(&self, index: usize) -> Result<(), ClusterError> {
        self.wait_replica_offset(index, None).await
    }

    /// Waits until node `index` is a replica with its link up and (with
    /// `offset`) has processed its master's stream up to `offset`.
    async fn wait_replica_offset(
        &self,
        index: usize,
        offset: Option<i64>,
    ) -> Result<(), ClusterError> {
        let info = self.proc_info(Target::Node(index))?;
        let what = match offset {
            Some(o) => format!("its replication link to be up and at offset {o}"),
            None => "its replication link to be up".to_owned(),
        };
        self.poll_until(&info, &what, || async move {
            Ok(match self.role(index).await? {
                RedisRole::Replica {
                    link_up,
                    offset: at,
                    ..
                } => link_up && offset.is_none_or(|want| at >= want),
                RedisRole::Master { .. } => false,
            })
        })
        .await
    }
}

/// The replication role the server `name` on `port` reports.
pub(super) async fn role_at(
    name: &str,
    port: u16,
    timeout: Duration,
) -> Result<RedisRole, ClusterError> {
    let text: String = command_on(name, port, &["INFO", "replication"], timeout).await?;
    let info = parse_info(&text);
    role_from_info(&info).ok_or_else(|| ClusterError::Redis {
        node: name.to_owned(),
        command: "INFO replication".to_owned(),
        source: RedisError::from((
            ErrorKind::UnexpectedReturnType,
            "INFO replication lacks the role fields",
            format!("{info:?}"),
        )),
    })
}

/// Every key on the server `name` on `port` that starts with `prefix`,
/// sorted (`SCAN ... MATCH <prefix>*`, never `KEYS`; glob characters in
/// `prefix` escaped).
pub(super) async fn keys_at(
    name: &str,
    port: u16,
    timeout: Duration,
    prefix: &str,
) -> Result<Vec<String>, ClusterError> {
    let pattern = format!("{}*", escape_glob(prefix));
    let mut cursor = "0".to_owned();
    let mut keys = Vec::new();
    loop {
        let args = ["SCAN", &cursor, "MATCH", &pattern, "COUNT", SCAN_COUNT];
        let (next, batch): (String, Vec<String>) = command_on(name, port, &args, timeout).await?;
        keys.extend(batch);
        if next == "0" {
            break;
        }
        cursor = next;
    }
    keys.sort_unstable();
    keys.dedup();
    Ok(keys)
}

/// Connects to the server `name` on `port` and runs `args` on it, each
/// step limited to `timeout`.
pub(crate) async fn command_on<T: FromRedisValue>(
    name: &str,
    port: u16,
    args: &[&str],
    timeout: Duration,
) -> Result<T, ClusterError> {
    let shown = show_command(args);
    let timed_out = |command: &str| ClusterError::RedisTimeout {
        node: name.to_owned(),
        command: command.to_owned(),
        timeout,
    };
    // The client's own time limits (the same as ours) may fire first.
    let redis_err = |command: &str, source: RedisError| {
        if source.is_timeout() {
            timed_out(command)
        } else {
            ClusterError::Redis {
                node: name.to_owned(),
                command: command.to_owned(),
                source,
            }
        }
    };
    let Some((first, rest)) = args.split_first() else {
        return Err(redis_err(
            "",
            RedisError::from((ErrorKind::Client, "empty command")),
        ));
    };
    let client = ::redis::Client::open(url(port)).map_err(|e| redis_err("connect", e))?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    let connecting = client.get_multiplexed_async_connection_with_config(&config);
    let mut conn = match tokio::time::timeout(timeout, connecting).await {
        Ok(conn) => conn.map_err(|e| redis_err("connect", e))?,
        Err(_) => return Err(timed_out("connect")),
    };
    let mut cmd = ::redis::cmd(first);
    for arg in rest {
        cmd.arg(*arg);
    }
    match tokio::time::timeout(timeout, cmd.query_async::<T>(&mut conn)).await {
        Ok(reply) => reply.map_err(|e| redis_err(&shown, e)),
        Err(_) => Err(timed_out(&shown)),
    }
}

/// `args` joined by spaces, shortened to [`SHOWN_COMMAND_CHARS`].
fn show_command(args: &[&str]) -> String {
    let full = args.join(" ");
    if full.chars().count() <= SHOWN_COMMAND_CHARS {
        return full;
    }
    let mut shown: String = full.chars().take(SHOWN_COMMAND_CHARS).collect();
    shown.push_str("...");
    shown
}

/// An `INFO` reply as a map: `key:value` lines; headers and blank lines
/// skipped.
fn parse_info(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.trim_end().split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The role an `INFO replication` map describes.
fn role_from_info(info: &HashMap<String, String>) -> Option<RedisRole> {
    let int = |key: &str| info.get(key)?.parse::<i64>().ok();
    match info.get("role")?.as_str() {
        "master" => Some(RedisRole::Master {
            offset: int("master_repl_offset")?,
        }),
        "slave" => Some(RedisRole::Replica {
            master_port: info.get("master_port")?.parse().ok()?,
            link_up: info.get("master_link_status")? == "up",
            offset: int("slave_repl_offset").or_else(|| int("master_repl_offset"))?,
        }),
        _ => None,
    }
}

/// `prefix` with the `SCAN MATCH` glob characters escaped.
fn escape_glob(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len());
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_is_parsed() {
        let text = "# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\nmaster_port:4000\r\n\
                    master_link_status:up\r\nslave_repl_offset:42\r\nmaster_repl_offset:42\r\n";
        let info = parse_info(text);
        assert_eq!(info["master_host"], "127.0.0.1");
        assert_eq!(
            role_from_info(&info),
            Some(RedisRole::Replica {
                master_port: 4000,
                link_up: true,
                offset: 42
            })
        );
        let master = parse_info("role:master\nmaster_repl_offset:7\n");
        assert_eq!(
            role_from_info(&master),
            Some(RedisRole::Master { offset: 7 })
        );
        assert_eq!(role_from_info(&parse_info("role:sentinel\n")), None);
    }

    #[test]
    fn globs_are_escaped_and_commands_shortened() {
        assert_eq!(escape_glob("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
        let long = "x".repeat(500);
        let shown = show_command(&["SET", "k", &long]);
        assert!(shown.ends_with("...") && shown.len() < 130);
        assert_eq!(show_command(&["GET", "k"]), "GET k");
    }
}

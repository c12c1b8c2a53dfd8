//! The `sh -c` scripts the containers run. Every command is explicit, so
//! an official image (whose entrypoint only passes a non-server command
//! through) and a locally built one behave the same.
//!
//! Each script is written to be run again by a container restart: a
//! PostgreSQL data directory that exists is started as it is (crash
//! recovery, its role as it was), a sentinel keeps the configuration it
//! rewrote; a Redis node always comes back an empty master, like a local
//! one without persistence.

use std::fmt::Write as _;
use std::time::Duration;

/// The data directory inside a PostgreSQL container (outside any volume
/// the image declares, so it lives and dies with the container).
const PGDATA: &str = "/tmp/pgdata";

/// What a PostgreSQL node starts as.
pub(crate) enum PgStart<'a> {
    /// A primary: a fresh data directory (the image's template when it
    /// has one, else `initdb`).
    Primary,
    /// A standby cloned with `pg_basebackup` from `host:port`.
    Standby {
        /// The primary's address as seen from this container.
        host: &'a str,
        /// The primary's port.
        port: u16,
    },
}

/// The script of a PostgreSQL node `name` listening on `bind:port`, with
/// the drill's settings plus `extra`.
pub(crate) fn postgres(
    name: &str,
    bind: &str,
    port: u16,
    start: &PgStart<'_>,
    synchronous: bool,
    extra: &[(String, String)],
) -> String {
    let mut s = String::from("set -e\n");
    // Debian's packages keep the binaries off PATH.
    s.push_str(
        "for d in /usr/lib/postgresql/*/bin; do [ -x \"$d/postgres\" ] && PATH=\"$d:$PATH\"; done\n",
    );
    let _ = writeln!(s, "D={PGDATA}");
    s.push_str("if [ ! -s \"$D/PG_VERSION\" ]; then\n");
    match start {
        PgStart::Primary => {
            s.push_str(
                "  if [ -d /var/lib/postgresql/drill-template ]; then cp -a /var/lib/postgresql/drill-template \"$D\"\n  \
                 else initdb -D \"$D\" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null; fi\n  \
                 chmod 700 \"$D\"\n  \
                 printf 'host all all all trust\\nhost replication all all trust\\n' >> \"$D/pg_hba.conf\"\n",
            );
        }
        PgStart::Standby { host, port } => {
            let _ = writeln!(
                s,
                "  until pg_basebackup -h {host} -p {port} -U postgres -D \"$D\" -X stream -R -c fast --no-sync 2>/tmp/basebackup.log; do rm -rf \"$D\"; sleep 0.2; done"
            );
        }
    }
    s.push_str("fi\n");
    let mut settings: Vec<(&str, String)> = vec![
        ("listen_addresses", bind.to_owned()),
        ("port", port.to_string()),
        ("unix_socket_directories", "/tmp".to_owned()),
        ("cluster_name", name.to_owned()),
        ("max_connections", "60".to_owned()),
        ("shared_buffers", "16MB".to_owned()),
        ("wal_level", "replica".to_owned()),
        ("max_wal_senders", "10".to_owned()),
        ("max_replication_slots", "10".to_owned()),
        ("wal_keep_size", "256MB".to_owned()),
        ("hot_standby", "on".to_owned()),
        ("hot_standby_feedback", "on".to_owned()),
        ("wal_log_hints", "on".to_owned()),
        ("fsync", "off".to_owned()),
        ("wal_receiver_status_interval", "1s".to_owned()),
        ("wal_retrieve_retry_interval", "500ms".to_owned()),
        ("wal_receiver_timeout", "10s".to_owned()),
        ("wal_sender_timeout", "10s".to_owned()),
        ("recovery_target_timeline", "latest".to_owned()),
    ];
    if synchronous && matches!(start, PgStart::Primary) {
        settings.push(("synchronous_standby_names", "ANY 1 (*)".to_owned()));
    }
    s.push_str("exec postgres -D \"$D\"");
    for (k, v) in settings
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .chain(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    {
        let _ = write!(s, " -c {}", shell_quote(&format!("{k}={v}")));
    }
    s.push('\n');
    s
}

/// The script of a Redis data node: an empty master without persistence
/// on `bind:port` (the cluster makes replicas with `REPLICAOF`), with the
/// configuration directives `extra` as command-line options.
pub(crate) fn redis(bind: &str, port: u16, aof: bool, extra: &[(String, String)]) -> String {
    let appendonly = if aof { "yes" } else { "no" };
    let mut s = format!(
        "exec redis-server --bind {bind} --port {port} --protected-mode no --dir /tmp \
         --save '' --appendonly {appendonly}"
    );
    for (k, v) in extra {
        let _ = write!(s, " --{} {}", shell_quote(k), shell_quote(v));
    }
    s.push('\n');
    s
}

/// The timings of a sentinel.
pub(crate) struct SentinelConf<'a> {
    pub(crate) master_name: &'a str,
    pub(crate) master_host: &'a str,
    pub(crate) master_port: u16,
    pub(crate) quorum: usize,
    pub(crate) down_after: Duration,
    pub(crate) failover_timeout: Duration,
    /// `Some(ip)` to announce that address (the host network), `None` to
    /// let it announce its container address.
    pub(crate) announce_ip: Option<&'a str>,
}

/// The script of a sentinel on `bind:port`: writes its configuration once
/// (a restart keeps what it rewrote) and runs it.
pub(crate) fn sentinel(bind: &str, port: u16, conf: &SentinelConf<'_>) -> String {
    let millis = |d: Duration| d.as_millis().max(1);
    let name = conf.master_name;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "bind {bind}\nport {port}\nprotected-mode no\ndir /tmp"
    );
    if let Some(ip) = conf.announce_ip {
        let _ = writeln!(text, "sentinel announce-ip {ip}");
    }
    let _ = writeln!(
        text,
        "sentinel monitor {name} {} {} {}",
        conf.master_host, conf.master_port, conf.quorum
    );
    let _ = writeln!(
        text,
        "sentinel down-after-milliseconds {name} {}",
        millis(conf.down_after)
    );
    let _ = writeln!(
        text,
        "sentinel failover-timeout {name} {}",
        millis(conf.failover_timeout)
    );
    let _ = writeln!(text, "sentinel parallel-syncs {name} 1");
    format!(
        "[ -s /tmp/sentinel.conf ] || printf '%s' {} > /tmp/sentinel.conf\nexec redis-server /tmp/sentinel.conf --sentinel\n",
        shell_quote(&text)
    )
}

/// `s` as one single-quoted shell word.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_single_shell_words() {
        let script = postgres(
            "pg0",
            "127.0.0.1",
            5000,
            &PgStart::Primary,
            true,
            &[("log_line_prefix".to_owned(), "%m it's".to_owned())],
        );
        assert!(script.contains(" -c 'port=5000'"));
        assert!(script.contains(" -c 'synchronous_standby_names=ANY 1 (*)'"));
        assert!(script.contains(" -c 'log_line_prefix=%m it'\\''s'"));
        let standby = postgres(
            "pg1",
            "0.0.0.0",
            5001,
            &PgStart::Standby {
                host: "c-pg0",
                port: 5000,
            },
            true,
            &[],
        );
        assert!(standby.contains("pg_basebackup -h c-pg0 -p 5000"));
        assert!(!standby.contains("synchronous_standby_names"));
    }

    #[test]
    fn sentinel_config_is_written_once() {
        let conf = SentinelConf {
            master_name: "m",
            master_host: "127.0.0.1",
            master_port: 7000,
            quorum: 2,
            down_after: Duration::from_secs(1),
            failover_timeout: Duration::from_secs(5),
            announce_ip: Some("127.0.0.1"),
        };
        let script = sentinel("127.0.0.1", 26000, &conf);
        assert!(script.starts_with("[ -s /tmp/sentinel.conf ] ||"));
        assert!(script.contains("sentinel monitor m 127.0.0.1 7000 2"));
        assert!(script.contains("sentinel down-after-milliseconds m 1000"));
    }
}

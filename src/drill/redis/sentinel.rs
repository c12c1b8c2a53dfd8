//! The sentinels of a [`LocalRedisCluster`]: their configuration, starting
//! them and waiting until they know the whole cluster, their faults, and
//! asking them who the master is.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use ::redis::FromRedisValue;
use nix::sys::signal::Signal;

use super::server::quote;
use super::{ClusterError, LocalRedisCluster, QUORUM, Target};

/// A sentinel's view of one replica or sentinel (`SENTINEL REPLICAS` /
/// `SENTINEL SENTINELS` entries are field/value lists).
type Entry = HashMap<String, String>;

impl LocalRedisCluster {
    /// Writes sentinel `index`'s `sentinel.conf`: monitor node 0 under the
    /// master name with quorum 2, and the configured timings. The sentinel
    /// rewrites this file as it learns (its id, known replicas and
    /// sentinels, the current master), which is what a restart reads.
    fn write_sentinel_conf(&self, index: usize) -> Result<(), ClusterError> {
        let master_port = self.port(0);
        let (port, dir, config_path) = {
            let inner = self.lock();
            let s = &inner.sentinels[index];
            (s.port, s.dir.clone(), s.config_path.clone())
        };
        let name = &self.opts.master_name;
        let millis = |d: Duration| d.as_millis().max(1);
        let mut text = String::from("# Written by failover-pool's LocalRedisCluster.\n");
        let _ = writeln!(text, "bind 127.0.0.1\nport {port}");
        let _ = writeln!(text, "dir {}", quote(&dir.to_string_lossy()));
        let _ = writeln!(text, "protected-mode no\ndaemonize no\nlogfile \"\"");
        let _ = writeln!(text, "sentinel resolve-hostnames no");
        let _ = writeln!(text, "sentinel announce-hostnames no");
        let _ = writeln!(text, "sentinel announce-ip 127.0.0.1");
        let _ = writeln!(
            text,
            "sentinel monitor {name} 127.0.0.1 {master_port} {QUORUM}"
        );
        let _ = writeln!(
            text,
            "sentinel down-after-milliseconds {name} {}",
            millis(self.opts.down_after)
        );
        let _ = writeln!(
            text,
            "sentinel failover-timeout {name} {}",
            millis(self.opts.failover_timeout)
        );
        let _ = writeln!(text, "sentinel parallel-syncs {name} 1");
        std::fs::write(&config_path, text)
            .map_err(|e| ClusterError::io(format!("could not write {}", config_path.display()), e))
    }

    /// Starts every sentinel (in parallel) and waits until each one knows
    /// every replica (flagged plainly `slave`: connected, not down) and the
    /// other sentinels.
    pub(super) async fn start_sentinels(&self) -> Result<(), ClusterError> {
        let count = self.sentinel_count();
        let starts = (0..count).map(|k| async move {
            self.write_sentinel_conf(k)?;
            self.start_fresh(Target::Sentinel(k), None, || self.write_sentinel_conf(k))
                .await
        });
        futures_util::future::try_join_all(starts).await?;
        let replicas = self.len() - 1;
        let name = self.opts.master_name.as_str();
        let ready =
            (0..count).map(|k| async move {
                let info = self.proc_info(Target::Sentinel(k))?;
                let what = format!(
                    "it to know {replicas} replicas and {} other sentinels",
                    count - 1
                );
                self.poll_until(&info, &what, || async move {
                    let target = Target::Sentinel(k);
                    let known: Vec<Entry> = self
                        .query_target(target, &["SENTINEL", "REPLICAS", name])
                        .await?;
                    let peers: Vec<Entry> = self
                        .query_target(target, &["SENTINEL", "SENTINELS", name])
                        .await?;
                    Ok(flagged(&known, "slave") >= replicas
                        && flagged(&peers, "sentinel") + 1 >= count)
                })
                .await
            });
        futures_util::future::try_join_all(ready).await?;
        Ok(())
    }

    /// Runs the command `args` on sentinel `index`, e.g.
    /// `sentinel_query::<Vec<HashMap<String, String>>>(0, &["SENTINEL", "REPLICAS", "mymaster"])`.
    ///
    /// # Errors
    ///
    /// As for [`exec`](Self::exec); [`ClusterError::NoSuchSentinel`].
    pub async fn sentinel_query<T: FromRedisValue>(
        &self,
        index: usize,
        args: &[&str],
    ) -> Result<T, ClusterError> {
        self.query_target(Target::Sentinel(index), args).await
    }

    /// The master address sentinel `index` gives out now
    /// (`SENTINEL GET-MASTER-ADDR-BY-NAME`); `None` when it does not know
    /// the master name.
    ///
    /// # Errors
    ///
    /// As for [`sentinel_query`](Self::sentinel_query).
    pub async fn sentinel_master_addr(
        &self,
        index: usize,
    ) -> Result<Option<(String, u16)>, ClusterError> {
        let name = self.opts.master_name.as_str();
        self.sentinel_query(index, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", name])
            .await
    }

    /// Crashes sentinel `index` (`SIGKILL`).
    ///
    /// # Errors
    ///
    /// [`ClusterError::NoSuchSentinel`], [`ClusterError::InvalidState`]
    /// when it is not running, [`ClusterError::Signal`].
    pub fn kill_sentinel(&self, index: usize) -> Result<(), ClusterError> {
        self.kill_target(Target::Sentinel(index))
    }

    /// Hangs sentinel `index` (`SIGSTOP`); it neither answers nor votes.
    ///
    /// # Errors
    ///
    /// As for [`kill_sentinel`](Self::kill_sentinel).
    pub fn freeze_sentinel(&self, index: usize) -> Result<(), ClusterError> {
        self.signal_target(Target::Sentinel(index), Signal::SIGSTOP, "freeze", true)
    }

    /// Undoes [`freeze_sentinel`](Self::freeze_sentinel) (`SIGCONT`).
    ///
    /// # Errors
    ///
    /// As for [`kill_sentinel`](Self::kill_sentinel).
    pub fn thaw_sentinel(&self, index: usize) -> Result<(), ClusterError> {
        self.signal_target(Target::Sentinel(index), Signal::SIGCONT, "thaw", false)
    }

    /// Starts sentinel `index` again after
    /// [`kill_sentinel`](Self::kill_sentinel), on the same port and from
    /// the configuration it last rewrote (same id, the master it last knew),
    /// and waits until it answers `PING`.
    ///
    /// # Errors
    ///
    /// [`ClusterError::InvalidState`] when it is running, otherwise as for
    /// start-up.
    pub async fn restart_sentinel(&self, index: usize) -> Result<(), ClusterError> {
        let target = Target::Sentinel(index);
        self.ensure_stopped(target)?;
        self.spawn_server(target, None)?;
        self.wait_ping(target).await
    }
}

/// How many entries carry exactly the flags `flags` (no `disconnected`,
/// `s_down`, ... beside it).
fn flagged(entries: &[Entry], flags: &str) -> usize {
    entries
        .iter()
        .filter(|e| e.get("flags").is_some_and(|f| f == flags))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_flags_count() {
        let entry = |flags: &str| Entry::from([("flags".to_owned(), flags.to_owned())]);
        let entries = [
            entry("slave"),
            entry("s_down,slave,disconnected"),
            entry("slave"),
        ];
        assert_eq!(flagged(&entries, "slave"), 2);
    }
}

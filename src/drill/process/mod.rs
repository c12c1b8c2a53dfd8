//! Process helpers for drill clusters: finding the PostgreSQL and Redis
//! server binaries, picking free loopback ports, running commands as the
//! server user with a time limit, and signalling a server with all its
//! children. Both [`pg`](super::pg) and [`redis`](super::redis) clusters
//! use them, and every server they start has a watchdog, every cluster a
//! janitor (see the [`drill`](super) module docs).
//!
//! PostgreSQL refuses to run as root, so when the current process is root
//! every PostgreSQL command runs as the `postgres` user ([`ServerUser`]);
//! Redis runs as whoever starts it.
//!
//! Note on process groups: a postmaster started with
//! `process_group(0)` leads its own process group, but every child it forks
//! (backends, checkpointer, WAL sender/receiver, ...) calls `setsid()` and so
//! leads a group of its own. [`ProcessGroup::signal_tree`] therefore signals
//! the postmaster's group *and* the group of each of its children, which is
//! what a crash (`SIGKILL`) or a hang (`SIGSTOP`) of the whole server needs.

mod command;
mod group;
mod host;
mod server;
mod user;
mod watchdog;

pub use self::command::{describe, log_tail, run};
pub use self::group::ProcessGroup;
pub(crate) use self::group::wait_blocking;
pub use self::host::{default_base_dir, find_bin_dir, find_redis_server, free_port, free_ports};
pub(crate) use self::server::ServerProcess;
pub use self::user::ServerUser;
pub(crate) use self::watchdog::{spawn_janitor, spawn_watchdog};

//! The pool's events as the drill's timeline: [`PoolEvents`] collects
//! them from the pool's broadcast channel and turns each into a
//! [`TimelineEvent`] with node names (`pg0`, ...) instead of addresses
//! ([`Names`]).

use std::time::SystemTime;

use tokio::sync::broadcast::{self, error::TryRecvError};

use crate::core::events::{Event, EventKind};
use crate::drill::report::TimelineEvent;

/// The pool's events received so far, as timeline entries.
#[derive(Debug)]
pub(super) struct PoolEvents {
    rx: broadcast::Receiver<Event>,
    /// The drill's start: event times are measured from it.
    t0: SystemTime,
    names: Names,
    events: Vec<TimelineEvent>,
    /// Events lost to a full broadcast buffer.
    lagged: u64,
}

impl PoolEvents {
    /// Collects from `rx`, with times relative to now (the drill's start).
    pub(super) fn new(rx: broadcast::Receiver<Event>, names: Names) -> Self {
        PoolEvents {
            rx,
            t0: SystemTime::now(),
            names,
            events: Vec::new(),
            lagged: 0,
        }
    }

    /// The node names the events are written with.
    pub(super) fn names(&self) -> &Names {
        &self.names
    }

    /// Moves the pool's pending events into the timeline.
    pub(super) fn drain(&mut self) {
        loop {
            match self.rx.try_recv() {
                Ok(e) => self.events.push(timeline_event(&e, self.t0, &self.names)),
                Err(TryRecvError::Lagged(n)) => self.lagged += n,
                Err(TryRecvError::Empty | TryRecvError::Closed) => return,
            }
        }
    }

    /// A note for the report when events were missed.
    pub(super) fn lagged_note(&self) -> Option<String> {
        (self.lagged > 0).then(|| {
            format!(
                "{} pool events were missed (event buffer overflow)",
                self.lagged
            )
        })
    }

    /// The timeline entries collected.
    pub(super) fn into_events(self) -> Vec<TimelineEvent> {
        self.events
    }
}

/// Node ids (`127.0.0.1:<port>`, proxies included) to names (`pg0`, ...).
#[derive(Debug, Clone, Default)]
pub(super) struct Names {
    /// (id, name), longest id first.
    ids: Vec<(String, String)>,
}

impl Names {
    /// Adds the node listening on `port` (a server or its proxy).
    pub(super) fn add(&mut self, port: u16, name: &str) {
        self.ids
            .push((format!("127.0.0.1:{port}"), name.to_owned()));
        self.ids
            .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
    }

    /// The name of node `id`, else `id` itself.
    pub(super) fn name(&self, id: &str) -> String {
        self.ids
            .iter()
            .find(|(i, _)| i == id)
            .map_or_else(|| id.to_owned(), |(_, n)| n.clone())
    }

    /// `text` with every node id replaced by its name.
    pub(super) fn rewrite(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for (id, name) in &self.ids {
            text = text.replace(id.as_str(), name);
        }
        text
    }
}

/// A pool event as a timeline entry, with node names instead of addresses.
fn timeline_event(e: &Event, t0: SystemTime, names: &Names) -> TimelineEvent {
    let n = |id: &str| names.name(id);
    let (kind, detail, node): (&str, String, Option<String>) = match &e.kind {
        EventKind::NodeUp { node, role } => {
            ("NodeUp", format!("{} up as {role}", n(node)), Some(n(node)))
        }
        EventKind::NodeDown { node, reason } => (
            "NodeDown",
            format!("{} down: {reason}", n(node)),
            Some(n(node)),
        ),
        EventKind::RoleChanged { node, from, to } => (
            "RoleChanged",
            format!(
                "{}: {} -> {to}",
                n(node),
                from.map_or("unknown", |r| r.as_str())
            ),
            Some(n(node)),
        ),
        EventKind::FailoverStarted { old_writer, reason } => (
            "FailoverStarted",
            format!(
                "writer {} lost: {reason}",
                old_writer.as_deref().map_or_else(|| "none".into(), n)
            ),
            old_writer.as_deref().map(n),
        ),
        EventKind::FailoverFinished {
            new_writer,
            duration,
        } => (
            "FailoverFinished",
            format!(
                "new writer {} after {} ms",
                n(new_writer),
                duration.as_millis()
            ),
            Some(n(new_writer)),
        ),
        EventKind::Promoted { node, duration } => (
            "Promoted",
            format!("pool promoted {} in {} ms", n(node), duration.as_millis()),
            Some(n(node)),
        ),
        EventKind::Fenced { node, reason } => (
            "Fenced",
            format!("{} fenced: {reason}", n(node)),
            Some(n(node)),
        ),
        EventKind::Unfenced { node } => {
            ("Unfenced", format!("{} unfenced", n(node)), Some(n(node)))
        }
        EventKind::SplitBrainDetected { nodes, winner } => (
            "SplitBrainDetected",
            format!(
                "{} claim to be primary; {} keeps the writes",
                nodes.iter().map(|id| n(id)).collect::<Vec<_>>().join(", "),
                n(winner)
            ),
            Some(n(winner)),
        ),
        EventKind::TopologyChanged { epoch, writer } => (
            "TopologyChanged",
            format!(
                "epoch {epoch}, writer {}",
                writer.as_deref().map_or_else(|| "none".into(), n)
            ),
            writer.as_deref().map(n),
        ),
        EventKind::EndpointsChanged {
            added,
            removed,
            updated,
        } => {
            let list = |ids: &[std::sync::Arc<str>]| {
                ids.iter().map(|id| n(id)).collect::<Vec<_>>().join(", ")
            };
            let parts: Vec<String> = [("added", added), ("removed", removed), ("updated", updated)]
                .into_iter()
                .filter(|(_, ids)| !ids.is_empty())
                .map(|(what, ids)| format!("{what} {}", list(ids)))
                .collect();
            (
                "NodesChanged",
                format!("the topology source {}", parts.join("; ")),
                None,
            )
        }
        other => ("Other", format!("{other:?}"), None),
    };
    TimelineEvent {
        t_ms: e.at.duration_since(t0).unwrap_or_default().as_millis() as u64,
        kind: kind.to_owned(),
        detail: names.rewrite(&detail),
        node,
        source: "pool".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_replace_longest_ids_first() {
        let mut names = Names::default();
        names.add(4000, "pg0");
        names.add(40001, "pg1");
        assert_eq!(
            names.rewrite("127.0.0.1:40001 and 127.0.0.1:4000"),
            "pg1 and pg0"
        );
        assert_eq!(names.name("127.0.0.1:4000"), "pg0");
        assert_eq!(names.name("other"), "other");
    }
}

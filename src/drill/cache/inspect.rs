//! What the two sides of a cache hold, read straight from the servers
//! (`GET` and `PEXPIRETIME` of every key under the prefix, through the
//! `redis` crate, never through the cache), and the verdict on it: keys
//! that differ between the sides, deleted values that came back, expiries
//! that were extended, acknowledged values that are missing.

use std::collections::BTreeMap;

use bytes::Bytes;
use redis::Value;

use super::load::LastOp;
use crate::cache::{EntryKind, Header, Stored};
use crate::drill::ClusterError;
use crate::drill::redis::LocalRedisCluster;

/// Keys named per finding in a [`Verdict`].
const SAMPLES: usize = 10;

/// One key as a side holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The stored string.
    pub raw: Bytes,
    /// Its `PEXPIRETIME`: Unix milliseconds, `-1` without an expiry.
    pub pexpiretime: i64,
}

impl Held {
    /// The entry header, when the string has one.
    pub fn header(&self) -> Option<Header> {
        Header::decode(&self.raw)
    }

    /// The string, parsed as the cache parses it.
    pub fn stored(&self) -> Stored {
        Stored::parse(Some(self.raw.clone()))
    }
}

/// Everything node `index` of `cluster` holds under `prefix`, by full key
/// (one connection, `GET` and `PEXPIRETIME` pipelined 500 keys at a time).
///
/// # Errors
///
/// When the node cannot be scanned or read.
pub async fn held(
    cluster: &LocalRedisCluster,
    index: usize,
    prefix: &str,
) -> Result<BTreeMap<String, Held>, ClusterError> {
    let keys = cluster.keys_with_prefix(index, prefix).await?;
    let node = cluster.node(index).name;
    let failed = |command: &str| {
        let (node, command) = (node.clone(), command.to_owned());
        move |source| ClusterError::Redis {
            node,
            command,
            source,
        }
    };
    let client = redis::Client::open(cluster.url(index)).map_err(failed("connect"))?;
    let mut conn = (client.get_multiplexed_async_connection().await).map_err(failed("connect"))?;
    let mut out = BTreeMap::new();
    for chunk in keys.chunks(500) {
        let mut pipe = redis::pipe();
        for k in chunk {
            pipe.cmd("GET").arg(k).cmd("PEXPIRETIME").arg(k);
        }
        let replies: Vec<Value> =
            (pipe.query_async(&mut conn).await).map_err(failed("GET + PEXPIRETIME"))?;
        for (k, pair) in chunk.iter().zip(replies.chunks(2)) {
            let (Value::BulkString(raw), Value::Int(at)) = (&pair[0], &pair[1]) else {
                continue; // gone (expired or deleted) since the scan
            };
            let held = Held {
                raw: Bytes::copy_from_slice(raw),
                pexpiretime: *at,
            };
            out.insert(k.clone(), held);
        }
    }
    Ok(out)
}

/// What the sides hold, compared with each other and with the last
/// acknowledged operation of every key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Keys looked at: the union of both sides' keys and the workload's.
    pub keys_checked: u64,
    /// Keys on one side only, or with other bytes or another expiry.
    pub divergent_keys: u64,
    /// Keys whose last acknowledged operation was a delete but where a
    /// side holds a value.
    pub resurrected_deletes: u64,
    /// Keys a side holds longer than the entry's absolute expiry (or the
    /// acknowledged one), or without an expiry.
    pub ttls_extended: u64,
    /// Keys whose last acknowledged value a side does not hold (missing,
    /// or an older version).
    pub lost_acked_writes: u64,
    /// Examples, one line each: the finding and the key.
    pub samples: Vec<String>,
}

impl Verdict {
    fn note(&mut self, what: &str, key: &str) {
        if self.samples.len() < SAMPLES {
            self.samples.push(format!("{what}: {key}"));
        }
    }
}

/// Compares the two sides' contents (`a`, `b`, by full key) with each
/// other and with `last` (by key without the prefix).
pub fn check(
    a: &BTreeMap<String, Held>,
    b: &BTreeMap<String, Held>,
    prefix: &str,
    last: &BTreeMap<String, LastOp>,
) -> Verdict {
    let mut v = Verdict::default();
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    let full: Vec<String> = last.keys().map(|k| format!("{prefix}{k}")).collect();
    keys.extend(full.iter());
    keys.sort();
    keys.dedup();
    v.keys_checked = keys.len() as u64;
    for key in keys {
        let sides = [a.get(key), b.get(key)];
        if sides[0] != sides[1] {
            v.divergent_keys += 1;
            v.note("differs between the sides", key);
        }
        let op = key.strip_prefix(prefix).and_then(|k| last.get(k));
        if sides.iter().flatten().any(|h| extended(h, op)) {
            v.ttls_extended += 1;
            v.note("expiry extended", key);
        }
        match op {
            Some(LastOp::Deleted { .. })
                if sides
                    .iter()
                    .flatten()
                    .any(|h| h.stored().payload().is_some()) =>
            {
                v.resurrected_deletes += 1;
                v.note("deleted value present", key);
            }
            Some(LastOp::Set { ack, .. }) => {
                let holds = |h: Option<&Held>| {
                    h.and_then(Held::header).is_some_and(|hd| {
                        hd.version > ack.version
                            || (hd.version == ack.version && hd.kind == EntryKind::Value)
                    })
                };
                if !sides.iter().all(|h| holds(*h)) {
                    v.lost_acked_writes += 1;
                    v.note("acknowledged value missing", key);
                }
            }
            _ => {}
        }
    }
    v
}

/// Whether `held` outlives its entry's expiry: no expiry at all, a key
/// expiry later than the header's, or the acknowledged entry with a later
/// expiry than the acknowledgement's.
fn extended(held: &Held, op: Option<&LastOp>) -> bool {
    let Some(header) = held.header() else {
        return false;
    };
    if held.pexpiretime < 0 || held.pexpiretime as u64 > header.expires_at {
        return true;
    }
    op.is_some_and(|op| {
        let ack = op.ack();
        header.version == ack.version && header.expires_at > ack.expires_at
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{Version, WriteAck};

    fn entry(kind: EntryKind, hlc: u64, expires_at: u64) -> Held {
        let header = Header {
            kind,
            version: Version { hlc, writer: 1 },
            expires_at,
        };
        let mut raw = header.encode().to_vec();
        raw.extend_from_slice(b"\x01");
        Held {
            raw: raw.into(),
            pexpiretime: expires_at as i64,
        }
    }

    fn ack(hlc: u64, expires_at: u64) -> WriteAck {
        WriteAck {
            version: Version { hlc, writer: 1 },
            expires_at,
            queued_for: None,
        }
    }

    #[test]
    fn equal_sides_holding_the_last_operations_pass() {
        let side: BTreeMap<String, Held> = [
            ("p:set".to_owned(), entry(EntryKind::Value, 5, 1000)),
            ("p:del".to_owned(), entry(EntryKind::Tombstone, 6, 900)),
        ]
        .into();
        let last: BTreeMap<String, LastOp> = [
            (
                "set".to_owned(),
                LastOp::Set {
                    value: 1,
                    ack: ack(5, 1000),
                },
            ),
            ("del".to_owned(), LastOp::Deleted { ack: ack(6, 900) }),
            ("gone".to_owned(), LastOp::Deleted { ack: ack(7, 900) }),
        ]
        .into();
        let v = check(&side, &side, "p:", &last);
        assert_eq!(v.keys_checked, 3);
        assert_eq!(
            v,
            Verdict {
                keys_checked: 3,
                ..Verdict::default()
            }
        );
    }

    #[test]
    fn each_finding_is_counted() {
        let last: BTreeMap<String, LastOp> = [
            (
                "lost".to_owned(),
                LastOp::Set {
                    value: 1,
                    ack: ack(5, 1000),
                },
            ),
            ("back".to_owned(), LastOp::Deleted { ack: ack(6, 900) }),
            (
                "longer".to_owned(),
                LastOp::Set {
                    value: 1,
                    ack: ack(7, 1000),
                },
            ),
        ]
        .into();
        let mut longer = entry(EntryKind::Value, 7, 1000);
        longer.pexpiretime = 2000;
        let a: BTreeMap<String, Held> = [
            ("p:lost".to_owned(), entry(EntryKind::Value, 5, 1000)),
            ("p:back".to_owned(), entry(EntryKind::Value, 4, 1000)),
            ("p:longer".to_owned(), longer),
        ]
        .into();
        let b: BTreeMap<String, Held> = [
            ("p:lost".to_owned(), entry(EntryKind::Value, 3, 1000)),
            ("p:back".to_owned(), entry(EntryKind::Tombstone, 6, 900)),
            ("p:longer".to_owned(), entry(EntryKind::Value, 7, 1000)),
        ]
        .into();
        let v = check(&a, &b, "p:", &last);
        assert_eq!(v.divergent_keys, 3, "{v:?}");
        assert_eq!(v.lost_acked_writes, 1, "{v:?}");
        assert_eq!(v.resurrected_deletes, 1, "{v:?}");
        assert_eq!(v.ttls_extended, 1, "{v:?}");
        assert_eq!(v.samples.len(), 6);
    }
}

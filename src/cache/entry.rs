//! How an entry is stored on a side: a 23-byte header and the payload, in
//! one Redis string, and the Lua script that writes it only when it is newer
//! than what the side holds.
//!
//! # Layout
//! ```text
//! offset  size  field
//!      0     2  magic 0xC1 0xCA (0xC1 starts no MessagePack value and no UTF-8 text)
//!      2     1  kind: 1 value, 2 tombstone (a delete)
//!      3     8  version: hybrid logical clock, big-endian
//!     11     4  version: writer id, big-endian
//!     15     8  absolute expiry, Unix milliseconds, big-endian
//!     23     …  payload (values only): the caller's bytes, or MessagePack for typed calls
//! ```
//! The version sits big-endian right after the kind so that the order of
//! its 12 bytes is the order of versions: the script reads them as two
//! 48-bit halves with `struct.unpack` and compares those in turn (Lua's
//! numbers are doubles and cannot hold 64 bits, but hold 48 exactly; its
//! string comparison follows the server's locale). The expiry is also set
//! on the key itself (`SET … PXAT`), so Redis removes the entry on time;
//! the copy in the header lets a replay or a reconciliation write the same
//! absolute expiry again without asking the server (`PEXPIRETIME`).
//!
//! # Values without a header
//! A string under the cache's prefix that does not start with the header
//! (written by another client) is *foreign*: reads return it as it is
//! (`get_raw` gives its bytes, `get` decodes them as MessagePack and fails
//! with [`CacheError::Decode`](super::CacheError::Decode) when they are not);
//! every cache write replaces it (it is older than any version); read repair
//! and reconciliation never copy or remove it. A key of another Redis type
//! is replaced by a cache write the same way.

use super::version::Version;
use bytes::{BufMut, Bytes};

/// Length of the header in front of every entry.
pub const HEADER_LEN: usize = 23;
const MAGIC: [u8; 2] = [0xC1, 0xCA];
const KIND_VALUE: u8 = 1;
const KIND_TOMBSTONE: u8 = 2;

/// What a delete leaves: a value or a tombstone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A value.
    Value,
    /// A tombstone: the key was deleted at this version.
    Tombstone,
}

/// A stored entry's header, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// Value or tombstone.
    pub kind: EntryKind,
    /// Its version.
    pub version: Version,
    /// When it expires, Unix milliseconds.
    pub expires_at: u64,
}

impl Header {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..2].copy_from_slice(&MAGIC);
        out[2] = match self.kind {
            EntryKind::Value => KIND_VALUE,
            EntryKind::Tombstone => KIND_TOMBSTONE,
        };
        out[3..11].copy_from_slice(&self.version.hlc.to_be_bytes());
        out[11..15].copy_from_slice(&self.version.writer.to_be_bytes());
        out[15..23].copy_from_slice(&self.expires_at.to_be_bytes());
        out
    }

    /// The header at the start of `bytes`, or `None` when they do not start
    /// with one (a foreign value).
    pub fn decode(bytes: &[u8]) -> Option<Header> {
        let h = bytes.get(..HEADER_LEN)?;
        if h[..2] != MAGIC {
            return None;
        }
        let kind = match h[2] {
            KIND_VALUE => EntryKind::Value,
            KIND_TOMBSTONE => EntryKind::Tombstone,
            _ => return None,
        };
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&h[i..i + 8]);
            u64::from_be_bytes(b)
        };
        let mut w = [0u8; 4];
        w.copy_from_slice(&h[11..15]);
        Some(Header {
            kind,
            version: Version {
                hlc: u64_at(3),
                writer: u32::from_be_bytes(w),
            },
            expires_at: u64_at(15),
        })
    }
}

/// What a side holds under a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// Nothing.
    Missing,
    /// A versioned value (its payload) or tombstone.
    Entry {
        /// The header.
        header: Header,
        /// The whole stored string, header included (what a copy writes).
        raw: Bytes,
    },
    /// A string without the header (see [the module docs](self#values-without-a-header)).
    Foreign(Bytes),
}

impl Stored {
    /// Parses what `GET` returned.
    pub fn parse(value: Option<Bytes>) -> Stored {
        match value {
            None => Stored::Missing,
            Some(raw) => match Header::decode(&raw) {
                Some(header) => Stored::Entry { header, raw },
                None => Stored::Foreign(raw),
            },
        }
    }

    /// The version, for versioned entries.
    pub fn version(&self) -> Option<Version> {
        match self {
            Stored::Entry { header, .. } => Some(header.version),
            _ => None,
        }
    }

    /// The value a read returns: a value's payload or a foreign string;
    /// `None` for a tombstone or nothing.
    pub fn payload(&self) -> Option<Bytes> {
        match self {
            Stored::Entry { header, raw } if header.kind == EntryKind::Value => {
                Some(raw.slice(HEADER_LEN..))
            }
            Stored::Foreign(raw) => Some(raw.clone()),
            _ => None,
        }
    }
}

/// An entry ready to be written: header and payload in one buffer.
pub(crate) fn build(header: &Header, payload: &[u8]) -> Bytes {
    let mut buf = Vec::with_capacity(HEADER_LEN + payload.len());
    buf.put_slice(&header.encode());
    buf.put_slice(payload);
    Bytes::from(buf)
}

/// The compare-and-set script every cache write goes through (its
/// arguments are described at its top), for a client that writes entries
/// as the cache does.
pub const CAS_LUA: &str = r"
-- failover-pool cache: write an entry only if it is newer than what is there.
-- KEYS[1] the key; ARGV[1] the entry (23-byte header + payload);
-- ARGV[2] its absolute expiry (Unix ms); ARGV[3] '1' to write only when no
-- live value is there. Returns 1 written (an entry whose expiry has passed
-- removes the key instead: SET with a past PXAT deletes it), 0 kept (what is
-- there is as new or newer), -1 kept (a live value is there).
-- The header is read with struct.unpack: magic, kind, and the 12 version
-- bytes as two 48-bit big-endian halves (exact in Lua's doubles), compared
-- in order: the order of the bytes.
local cur = redis.pcall('GETRANGE', KEYS[1], 0, 22)
if type(cur) ~= 'string' then cur = '' end
if #cur == 23 then
  local magic, kind, c1, c2 = struct.unpack('>I2BI6I6', cur)
  if magic == 49610 then
    if ARGV[3] == '1' and kind == 1 then return -1 end
    local n1, n2 = struct.unpack('>I6I6', ARGV[1], 4)
    if n1 < c1 or (n1 == c1 and n2 <= c2) then return 0 end
  elseif ARGV[3] == '1' then
    return -1
  end
elseif ARGV[3] == '1' and cur ~= '' then
  return -1
end
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
return 1
";

/// The compare-and-set script: writes the entry (`SET … PXAT` its
/// absolute expiry) only when the side holds nothing, a foreign value, or
/// an entry with an older version, all in one server-side step; an entry
/// whose expiry has passed removes an older one instead of being written.
/// Sent as `EVALSHA` (loaded on `NOSCRIPT` by [`redis::Script`]).
pub(crate) fn cas_script() -> ::redis::Script {
    ::redis::Script::new(CAS_LUA)
}

/// The script's call for one entry: `EVALSHA` with the key and arguments
/// (built once per write and sent to both sides; [`Side::cas`] loads the
/// script on `NOSCRIPT`, as [`redis::Script`] does).
///
/// [`Side::cas`]: super::side::Side::cas
pub(crate) fn cas_cmd(
    script: &::redis::Script,
    key: &[u8],
    entry: &[u8],
    expires_at: u64,
    nx: bool,
) -> ::redis::Cmd {
    // Sized once: the arguments, and room for the hash and the numbers.
    let mut cmd = ::redis::Cmd::with_capacity(7, 96 + key.len() + entry.len());
    cmd.arg("EVALSHA")
        .arg(script.get_hash())
        .arg(1)
        .arg(key)
        .arg(entry)
        .arg(expires_at)
        .arg(if nx { "1" } else { "0" });
    cmd
}

/// What the script answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CasReply {
    /// Written.
    Written,
    /// Kept: the side has this version or a newer one.
    Kept,
    /// Kept: a live value is there (set-if-absent).
    Exists,
    /// The entry had expired: the older one there was removed. Not
    /// answered by [`CAS_LUA`] any more (its `SET` with an expiry already
    /// passed removes the key, answered as [`Written`](Self::Written));
    /// still understood.
    Removed,
}

impl CasReply {
    pub(crate) fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            1 => CasReply::Written,
            0 => CasReply::Kept,
            -1 => CasReply::Exists,
            2 => CasReply::Removed,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_round_trips_and_foreign_strings_are_told_apart() {
        let h = Header {
            kind: EntryKind::Tombstone,
            version: Version {
                hlc: 0x0102_0304_0506_0708,
                writer: 0xAABB_CCDD,
            },
            expires_at: 1_700_000_000_123,
        };
        let raw = build(&h, b"payload");
        assert_eq!(Header::decode(&raw), Some(h));
        let Stored::Entry { header, raw } = Stored::parse(Some(raw)) else {
            panic!("not parsed as an entry");
        };
        assert_eq!(header, h);
        assert_eq!(&raw[HEADER_LEN..], b"payload");
        assert_eq!(
            Stored::parse(Some(Bytes::from_static(b"hello"))),
            Stored::Foreign(Bytes::from_static(b"hello"))
        );
        assert_eq!(Stored::parse(None), Stored::Missing);
    }

    #[test]
    fn header_bytes_order_like_versions() {
        let at = |hlc, writer| {
            Header {
                kind: EntryKind::Value,
                version: Version { hlc, writer },
                expires_at: 1,
            }
            .encode()
        };
        assert!(at(1 << 40, 9)[3..15] < at((1 << 40) + 1, 0)[3..15]);
        assert!(at(5, 1)[3..15] < at(5, 2)[3..15]);
    }
}

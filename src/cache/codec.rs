//! The serde format of typed values: MessagePack (`rmp-serde`), structs
//! written as maps with their field names.
//!
//! # Why MessagePack
//! - **Compact**: binary, with small integers and short strings in one or
//!   two bytes of overhead; typically half the size of JSON.
//! - **Self-describing**: every value carries its type, so everything serde
//!   can express works — `Option`s and `#[serde(skip_serializing_if)]`,
//!   untagged and internally tagged enums, `serde_json::Value` fields —
//!   unlike the positional formats (postcard, bincode), which cannot
//!   deserialize what they cannot predict.
//! - **Survives a rolling deploy**: with field names in the data, a new
//!   version of a struct can add fields (with `#[serde(default)]`) and drop
//!   fields while the old version still reads and writes the same keys.
//! - **Readable elsewhere**: every language has a MessagePack library, so
//!   a service in another language can share the cache (strip the 23-byte
//!   header described in [`entry`](super::entry)).
//! - **Maintained**: `rmp-serde` is the reference serde implementation of
//!   the format, released regularly, with no unsafe code in its serde layer.

use super::entry::{HEADER_LEN, Header};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A typed value as an entry (header, then MessagePack) in one buffer.
pub(crate) fn encode<T: Serialize + ?Sized>(
    header: &Header,
    value: &T,
) -> Result<Bytes, rmp_serde::encode::Error> {
    let mut buf = Vec::with_capacity(HEADER_LEN + 64);
    buf.extend_from_slice(&header.encode());
    rmp_serde::encode::write_named(&mut buf, value)?;
    Ok(Bytes::from(buf))
}

/// A typed value as MessagePack, as the cache stores it after the header.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    rmp_serde::to_vec_named(value)
}

/// A typed value from a payload (the bytes after the header).
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, rmp_serde::decode::Error> {
    rmp_serde::from_slice(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::entry::EntryKind;
    use crate::cache::version::Version;
    use serde::Deserialize;

    #[derive(Serialize)]
    struct V1 {
        id: u32,
        name: String,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    struct V2 {
        id: u32,
        #[serde(default)]
        tags: Vec<String>,
    }

    #[test]
    fn a_struct_can_gain_and_lose_fields() {
        let header = Header {
            kind: EntryKind::Value,
            version: Version::ZERO,
            expires_at: 1,
        };
        let raw = encode(
            &header,
            &V1 {
                id: 7,
                name: "x".into(),
            },
        )
        .unwrap();
        let v2: V2 = decode(&raw[HEADER_LEN..]).unwrap();
        assert_eq!(
            v2,
            V2 {
                id: 7,
                tags: vec![]
            }
        );
    }
}

//! The durable encoding: MessagePack with field names (`to_vec_named`), so records can gain
//! fields, inside a versioned envelope.

pub use crate::error::CodecError;
use engine::ports::StreamEvent;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// Format version of journal records.
pub const JOURNAL_VERSION: u8 = 1;

/// One stream's events of one flush.
#[derive(Serialize, Deserialize)]
pub struct JournalRecord {
    /// Format version.
    pub v: u8,
    /// The events; the first has the key's sequence number, the rest follow.
    pub events: Vec<StreamEvent>,
}

/// Durable records (journal, event records): fields by name, so they can evolve freely.
/// [`JournalRecord`] by reference: the same encoding, without copying the events.
#[derive(Serialize)]
pub struct JournalRecordRef<'a> {
    /// Format version.
    pub v: u8,
    pub events: &'a [StreamEvent],
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    Ok(rmp_serde::to_vec_named(value)?)
}

/// Derived data (read-model rows, pool snapshots): fields by position, smaller and faster.
/// They can always be rebuilt from the journal, and `decode` reads both forms.
pub fn encode_compact<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    Ok(rmp_serde::to_vec(value)?)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    Ok(rmp_serde::from_slice(bytes)?)
}

/// The number of events in an encoded journal record, without decoding them.
pub fn record_len(bytes: &[u8]) -> Result<u64, CodecError> {
    #[derive(Deserialize)]
    struct Header {
        events: Count,
    }
    struct Count(u64);
    impl<'de> Deserialize<'de> for Count {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Visitor;
            impl<'de> serde::de::Visitor<'de> for Visitor {
                type Value = Count;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a sequence of events")
                }
                fn visit_seq<A: serde::de::SeqAccess<'de>>(
                    self,
                    mut seq: A,
                ) -> Result<Count, A::Error> {
                    let mut n = 0;
                    while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                        n += 1;
                    }
                    Ok(Count(n))
                }
            }
            d.deserialize_seq(Visitor)
        }
    }
    decode::<Header>(bytes).map(|h| h.events.0)
}

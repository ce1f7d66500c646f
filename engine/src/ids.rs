//! Identifier newtypes. Ids never cross a boundary as bare `Uuid`s or strings, so an
//! event id cannot be passed where a registration id is expected.

use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new time-ordered (UUIDv7) id: keys sort by creation time.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// The raw 16 bytes, big-endian, as used in storage keys.
            pub fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }
    };
}

id_type!(
    /// An event (a concert, a conference): owns ticket types and pools.
    EventId
);
id_type!(
    /// A ticket pool: a quota of seats that one or more ticket types draw from.
    PoolId
);
id_type!(
    /// A ticket type (product) of an event, drawing from one pool.
    TicketTypeId
);
id_type!(
    /// A registration: a hold of seats that is later confirmed, canceled or expired.
    RegistrationId
);
id_type!(
    /// One issued ticket (one seat of a confirmed registration).
    TicketId
);
id_type!(
    /// A user account.
    UserId
);

/// A journal stream: the unit of single-writer ordering. Each actor owns one stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum StreamId {
    /// The lifecycle and settings of one event, written by its `EventActor`.
    Event(EventId),
    /// The seat decisions of one pool, written by its `PoolActor`.
    Pool(PoolId),
    /// One user account: profile, credentials, sessions. Written with optimistic
    /// concurrency (expected sequence number), not by an actor: accounts are not contended.
    User(UserId),
    /// One organizer's invoice ledger: its documents, whose numbers are their sequence
    /// numbers. Written with optimistic concurrency, like accounts.
    Ledger(UserId),
    /// One event's bank-statement exceptions and their resolutions. Written with optimistic
    /// concurrency.
    Statements(EventId),
}

impl StreamId {
    /// 17-byte storage key: a kind tag then the id, so streams of one kind are contiguous.
    pub fn key(&self) -> [u8; 17] {
        let (tag, id) = match self {
            StreamId::Event(id) => (b'e', id.as_bytes()),
            StreamId::Pool(id) => (b'p', id.as_bytes()),
            StreamId::User(id) => (b'u', id.as_bytes()),
            StreamId::Ledger(id) => (b'l', id.as_bytes()),
            StreamId::Statements(id) => (b'b', id.as_bytes()),
        };
        let mut key = [0u8; 17];
        key[0] = tag;
        key[1..].copy_from_slice(id);
        key
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamId::Event(id) => write!(f, "event-{id}"),
            StreamId::Pool(id) => write!(f, "pool-{id}"),
            StreamId::User(id) => write!(f, "user-{id}"),
            StreamId::Ledger(id) => write!(f, "ledger-{id}"),
            StreamId::Statements(id) => write!(f, "statements-{id}"),
        }
    }
}
id_type!(
    /// A check-in list of an event: which ticket types enter at which gates, and when.
    CheckInListId
);
id_type!(
    /// A place on a ticket type's waiting list.
    WaitlistEntryId
);

/// A UUIDv7 at `at` whose random part is derived from `input` (FNV-1a, twice with different
/// salts): the same input at the same time gives the same id, so a message decided twice
/// (projected again, a step repeated after a crash) is written with the same keys.
pub fn derived_id(at: chrono::DateTime<chrono::Utc>, input: &[u8]) -> uuid::Uuid {
    let fold = |salt: u64| {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ salt;
        for b in input {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h
    };
    let mut random = [0u8; 10];
    random[..8].copy_from_slice(&fold(1).to_be_bytes());
    random[8..].copy_from_slice(&fold(2).to_be_bytes()[..2]);
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
}

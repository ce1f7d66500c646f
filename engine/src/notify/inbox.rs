//! The in-app inbox: each account's notifications, newest first, with an unread count. The
//! in-app channel's worker writes an entry per message (a repeated delivery of a message
//! writes nothing: the entry there, read or not, stays); the account lists its entries and
//! marks them read. Each inbox keeps its newest entries up to a bound (the store's), so
//! counting the unread ones is a bounded scan.

use crate::ids::UserId;
use crate::ports::StoreError;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One notification in an account's inbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxEntry {
    /// The message's id (UUIDv7: entries sort by creation).
    pub id: Uuid,
    pub user_id: UserId,
    /// The message's kind (`confirmed`, `waitlist_offer`, ...).
    pub kind: String,
    pub title: String,
    pub body: String,
    /// The page of the ticketing front it points to.
    pub link: Option<String>,
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "chrono::serde::ts_milliseconds_option")]
    pub read_at: Option<DateTime<Utc>>,
}

/// What changed in an inbox (what the `notifications:{user}` topic pushes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InboxChange {
    /// A new entry.
    Added(Uuid),
    /// Entries were marked read.
    Read,
}

/// Which entries to mark read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Marking {
    One(Uuid),
    All,
}

/// The inboxes' store.
pub trait Inbox: Send + Sync {
    /// Adds `entry` unless its inbox has it already (`false`: nothing written), keeping that
    /// inbox's newest entries up to the store's bound.
    fn inbox_add(&self, entry: &InboxEntry) -> Result<bool, StoreError>;

    /// Up to `limit` entries of `user`'s inbox older than `before` (all: `None`), newest
    /// first.
    fn inbox_page(
        &self,
        user: UserId,
        before: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<InboxEntry>, StoreError>;

    /// One entry.
    fn inbox_entry(&self, user: UserId, id: Uuid) -> Result<Option<InboxEntry>, StoreError>;

    /// How many of `user`'s entries are unread.
    fn inbox_unread(&self, user: UserId) -> Result<usize, StoreError>;

    /// Marks unread entries read at `at`; how many were marked (an unknown or already read
    /// entry: 0).
    fn inbox_mark_read(
        &self,
        user: UserId,
        which: Marking,
        at: DateTime<Utc>,
    ) -> Result<usize, StoreError>;
}

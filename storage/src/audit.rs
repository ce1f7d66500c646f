//! The audit log: who did what to which event, when, with which outcome. Entries are keyed
//! by event (nil for actions outside any event) and time, so an event's log is one range
//! scan. They are written to the same store as everything else and become durable with the
//! journal's next group commit (one write-ahead log for all keyspaces).

use crate::codec::{decode, encode_compact};
use crate::error::err;
use crate::store::Db;
use engine::ids::EventId;
use engine::ports::StoreError;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

/// One audited action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When (milliseconds since the epoch).
    pub at_ms: i64,
    /// The acting account.
    pub actor: uuid::Uuid,
    /// Its roles at the time (from its token).
    pub actor_roles: Vec<String>,
    /// What: method and route template, e.g. `POST /api/v1/events/{id}/publish`.
    pub action: String,
    /// The concrete path acted on.
    pub target: String,
    /// The event concerned, if any.
    pub event_id: Option<uuid::Uuid>,
    /// The request id (also in the response and the logs).
    pub request_id: String,
    /// HTTP status of the answer.
    pub status: u16,
}

/// Tie-breaker for entries of the same millisecond.
static SEQ: AtomicU64 = AtomicU64::new(0);

fn key(event: Option<EventId>, at_ms: i64, seq: u64) -> [u8; 32] {
    let mut key = [0u8; 32];
    if let Some(e) = event {
        key[..16].copy_from_slice(e.as_bytes());
    }
    key[16..24].copy_from_slice(&(at_ms.max(0) as u64).to_be_bytes());
    key[24..].copy_from_slice(&seq.to_be_bytes());
    key
}

impl Db {
    /// Records an audit entry.
    pub fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let event = entry.event_id.map(EventId);
        let k = key(event, entry.at_ms, SEQ.fetch_add(1, Ordering::Relaxed));
        let v = encode_compact(entry).map_err(err)?;
        self.audit.insert(k, v).map_err(err)
    }

    /// Entries of `event` (or of no event), oldest first, after the cursor (the 16-byte tail
    /// of the previous page's last key, hex-free: time and sequence), at most `limit`.
    pub fn audit(
        &self,
        event: Option<EventId>,
        after: Option<[u8; 16]>,
        limit: usize,
    ) -> Result<(Vec<AuditEntry>, Option<[u8; 16]>), StoreError> {
        let prefix = key(event, 0, 0);
        let mut start = prefix.to_vec();
        if let Some(cursor) = after {
            start[16..].copy_from_slice(&cursor);
            start.push(0); // strictly after
        }
        let mut end = prefix[..16].to_vec();
        end.extend_from_slice(&[0xff; 16]);
        let mut items = Vec::new();
        let mut last = None;
        for guard in self.audit.range(start..=end) {
            let (k, v) = guard.into_inner().map_err(err)?;
            if items.len() == limit {
                return Ok((items, last));
            }
            items.push(decode(&v).map_err(err)?);
            let mut tail = [0u8; 16];
            tail.copy_from_slice(&k[16..32]);
            last = Some(tail);
        }
        Ok((items, None))
    }
}

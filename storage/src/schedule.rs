//! The reminder schedule (`schedule`: due ms (8) + event (16) + offset secs (4) → the start
//! it was scheduled for and the cursor of the registrations already queued). The read model
//! writes it with the event changes that move it (see `projection/webhooks.rs`'s event
//! effects); `engine::notify::reminders` drains it from its head.

use crate::codec::{decode, encode};
use crate::error::{CodecError, err};
use crate::store::Db;
use chrono::{DateTime, Utc};
use engine::ids::{EventId, RegistrationId};
use engine::model::{EventRecord, EventStatus, RegistrationStatus};
use engine::notify::Channels;
use engine::notify::ScheduledReminder;
use engine::ports::{Store, StoreError};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An entry's value.
#[derive(Debug, Serialize, Deserialize)]
struct Row {
    #[serde(with = "chrono::serde::ts_milliseconds")]
    starts_at: DateTime<Utc>,
    after: Option<RegistrationId>,
}

pub(crate) type Key = [u8; 28];

fn key(due: DateTime<Utc>, event: EventId, offset: u32) -> Key {
    let mut key = [0u8; 28];
    let millis = u64::try_from(due.timestamp_millis()).unwrap_or(0);
    key[..8].copy_from_slice(&millis.to_be_bytes());
    key[8..24].copy_from_slice(event.as_bytes());
    key[24..].copy_from_slice(&offset.to_be_bytes());
    key
}

fn reminder_key(r: &ScheduledReminder) -> Key {
    key(r.due_at, r.event_id, r.offset_secs)
}

/// The schedule entries `record` wants (none unless it is published): key and start.
pub(crate) fn entries(record: &EventRecord, defaults: &[u32]) -> Vec<(Key, DateTime<Utc>)> {
    if record.status != EventStatus::Published {
        return Vec::new();
    }
    let offsets = record.reminder_offsets_secs.as_deref().unwrap_or(defaults);
    offsets
        .iter()
        .map(|offset| {
            let due = record.starts_at - chrono::Duration::seconds(i64::from(*offset));
            (key(due, record.id, *offset), record.starts_at)
        })
        .collect()
}

/// The due time of an entry's key.
pub(crate) fn due_of(key: &Key) -> DateTime<Utc> {
    let millis = u64::from_be_bytes(key[..8].try_into().unwrap_or_default());
    DateTime::from_timestamp_millis(i64::try_from(millis).unwrap_or(0)).unwrap_or_default()
}

impl Db {
    /// A new entry into `batch`.
    pub(crate) fn stage_schedule(
        &self,
        batch: &mut fjall::OwnedWriteBatch,
        key: &Key,
        starts_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        match starts_at {
            Some(starts_at) => batch.insert(
                &self.schedule,
                key.to_vec(),
                encode(&Row {
                    starts_at,
                    after: None,
                })
                .map_err(err)?,
            ),
            None => batch.remove(&self.schedule, key.to_vec()),
        }
        Ok(())
    }

    pub(crate) fn first_reminder(&self) -> Result<Option<ScheduledReminder>, StoreError> {
        let Some(guard) = self.schedule.iter().next() else {
            return Ok(None);
        };
        let (k, value) = guard.into_inner().map_err(err)?;
        let bad = || StoreError::from(CodecError::Key("schedule"));
        let k: Key = k[..].try_into().map_err(|_| bad())?;
        let row: Row = decode(&value)?;
        let event = Uuid::from_slice(&k[8..24]).map_err(|_| bad())?;
        Ok(Some(ScheduledReminder {
            event_id: EventId(event),
            offset_secs: u32::from_be_bytes(k[24..].try_into().map_err(|_| bad())?),
            due_at: due_of(&k),
            starts_at: row.starts_at,
            after: row.after,
        }))
    }

    pub(crate) fn queue_reminders(
        &self,
        reminder: &ScheduledReminder,
        limit: usize,
        channels: Channels,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let page = self.registrations_by_event(
            reminder.event_id,
            Some(RegistrationStatus::Confirmed),
            reminder.after,
            limit,
        )?;
        let mut batch = self.db.batch();
        for view in &page.items {
            let message = engine::notify::reminder_message(
                &view.attendee.email,
                view.user_id,
                reminder.event_id,
                view.id,
                reminder.offset_secs,
                reminder.starts_at,
                reminder.due_at,
            );
            let deliveries = engine::notify::plan(&message, now, channels);
            self.stage_deliveries(&mut batch, &message, &deliveries)?;
        }
        let k = reminder_key(reminder);
        // The page's cursor (past what a bounded scan looked at, even with nothing found).
        match page.next {
            Some(next) => batch.insert(
                &self.schedule,
                k.to_vec(),
                encode(&Row {
                    starts_at: reminder.starts_at,
                    after: Some(next),
                })
                .map_err(err)?,
            ),
            None => batch.remove(&self.schedule, k.to_vec()),
        }
        batch.commit().map_err(err)?;
        self.delivery_state.committed();
        Ok(page.items.len())
    }

    pub(crate) fn drop_reminder(&self, reminder: &ScheduledReminder) -> Result<(), StoreError> {
        self.schedule
            .remove(reminder_key(reminder).to_vec())
            .map_err(err)
    }
}

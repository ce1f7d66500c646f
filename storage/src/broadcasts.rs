//! Managers' broadcasts (`broadcasts`: event (16) + broadcast id (16) → the broadcast with
//! its fan-out cursor) and the ones still queueing (`broadcast_queue`: broadcast id (16) →
//! event (16)): `engine::notify::broadcasts` drains the queue from its head.

use crate::codec::{decode, encode};
use crate::error::{CodecError, err};
use crate::store::Db;
use chrono::{DateTime, Utc};
use engine::ids::EventId;
use engine::model::RegistrationStatus;
use engine::notify::Channels;
use engine::notify::broadcasts::Broadcast;
use engine::ports::{Store, StoreError};
use std::sync::Mutex;
use uuid::Uuid;

/// Additions one at a time, so two cannot both pass the daily bound.
static ADD: Mutex<()> = Mutex::new(());

fn key(event: EventId, id: Uuid) -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..16].copy_from_slice(event.as_bytes());
    key[16..].copy_from_slice(id.as_bytes());
    key
}

impl Db {
    /// Stores `broadcast` and queues its fan-out, unless the event already had `per_day`
    /// broadcasts in the 24 hours before it: then nothing is written, and the answer is when
    /// the oldest of those was sent (the next may go a day after it).
    pub fn broadcast_add(
        &self,
        broadcast: &Broadcast,
        per_day: usize,
    ) -> Result<Result<(), DateTime<Utc>>, StoreError> {
        let _one = ADD
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let since = broadcast.created_at - chrono::Duration::days(1);
        let recent = self.sent_since(broadcast.event_id, since, per_day)?;
        if recent.len() >= per_day {
            return Ok(Err(recent
                .last()
                .map_or(broadcast.created_at, |b| b.created_at)));
        }
        let mut batch = self.db.batch();
        self.stage_fanout(&mut batch, broadcast)?;
        batch.commit().map_err(err)?;
        Ok(Ok(()))
    }

    /// `broadcast` and its queue entry into `batch`.
    pub(crate) fn stage_fanout(
        &self,
        batch: &mut fjall::OwnedWriteBatch,
        broadcast: &Broadcast,
    ) -> Result<(), StoreError> {
        batch.insert(
            &self.broadcasts,
            key(broadcast.event_id, broadcast.id).to_vec(),
            encode(broadcast).map_err(err)?,
        );
        batch.insert(
            &self.broadcast_queue,
            broadcast.id.as_bytes().to_vec(),
            broadcast.event_id.as_bytes().to_vec(),
        );
        Ok(())
    }

    /// The event's broadcasts before `before` (all: none), newest first, at most `limit`.
    pub fn broadcasts_of(
        &self,
        event: EventId,
        before: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<Broadcast>, StoreError> {
        let start = key(event, Uuid::nil());
        let end = key(event, before.unwrap_or(Uuid::max()));
        let mut out = Vec::new();
        for guard in self.broadcasts.range(start..end).rev().take(limit) {
            let (_, value) = guard.into_inner().map_err(err)?;
            out.push(decode(&value)?);
        }
        Ok(out)
    }

    /// The managers' broadcasts of `event` since `since` (not the change notices), newest
    /// first, at most `limit`.
    fn sent_since(
        &self,
        event: EventId,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Broadcast>, StoreError> {
        let range = key(event, Uuid::nil())..=key(event, Uuid::max());
        let mut out = Vec::new();
        for guard in self.broadcasts.range(range).rev() {
            let (_, value) = guard.into_inner().map_err(err)?;
            let broadcast: Broadcast = decode(&value)?;
            if broadcast.created_at <= since || out.len() >= limit {
                break;
            }
            if broadcast.change.is_none() {
                out.push(broadcast);
            }
        }
        Ok(out)
    }

    pub(crate) fn read_broadcast(
        &self,
        event: EventId,
        id: Uuid,
    ) -> Result<Option<Broadcast>, StoreError> {
        match self.broadcasts.get(key(event, id)).map_err(err)? {
            Some(value) => Ok(Some(decode(&value)?)),
            None => Ok(None),
        }
    }

    pub(crate) fn first_queued_broadcast(&self) -> Result<Option<Broadcast>, StoreError> {
        let Some(guard) = self.broadcast_queue.iter().next() else {
            return Ok(None);
        };
        let (id, event) = guard.into_inner().map_err(err)?;
        let bad = || StoreError::from(CodecError::Key("broadcast_queue"));
        let id = Uuid::from_slice(&id).map_err(|_| bad())?;
        let event = EventId(Uuid::from_slice(&event).map_err(|_| bad())?);
        match self.read_broadcast(event, id)? {
            Some(broadcast) => Ok(Some(broadcast)),
            None => {
                // Its record is gone (cannot happen: both are written together); forget it.
                self.broadcast_queue
                    .remove(id.as_bytes().to_vec())
                    .map_err(err)?;
                Ok(None)
            }
        }
    }

    pub(crate) fn queue_broadcast(
        &self,
        broadcast: &Broadcast,
        limit: usize,
        channels: Channels,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let page = self.registrations_by_event(
            broadcast.event_id,
            Some(RegistrationStatus::Confirmed),
            broadcast.after,
            limit,
        )?;
        let mut batch = self.db.batch();
        for view in &page.items {
            let message = broadcast.message(&view.attendee.email, view.user_id, view.id);
            let deliveries = engine::notify::plan(&message, now, channels);
            self.stage_deliveries(&mut batch, &message, &deliveries)?;
        }
        let mut next = broadcast.clone();
        next.queued += page.items.len() as u64;
        // The page's cursor (past what a bounded scan looked at, even with nothing found).
        match page.next {
            Some(after) => next.after = Some(after),
            None => {
                next.finished_at = Some(now);
                batch.remove(&self.broadcast_queue, broadcast.id.as_bytes().to_vec());
            }
        }
        batch.insert(
            &self.broadcasts,
            key(broadcast.event_id, broadcast.id).to_vec(),
            encode(&next).map_err(err)?,
        );
        batch.commit().map_err(err)?;
        self.delivery_state.committed();
        Ok(page.items.len())
    }
}

//! What an event-stream event changes beyond the event's record: its reminder schedule
//! (entries due at the start minus each reminder offset, while it is published) and the
//! webhook deliveries of `event.published`, `event.changed` and `event.canceled`. Both come
//! from the record before and after the event, in the batch that journals it.

use super::Overlay;
use crate::codec::decode;
use crate::error::err;
use crate::schedule;
use crate::store::Db;
use chrono::{DateTime, Utc};
use engine::ids::EventId;
use engine::model::{EventEvent, EventRecord, EventStatus};
use engine::notify::broadcasts::{Broadcast, NOTIFIED_FIELDS};
use engine::ports::StoreError;
use engine::webhooks::{EventData, Happening, HookData, HookType};
use fjall::OwnedWriteBatch;

impl Overlay {
    /// Applies `event`'s effects on the schedule and the webhooks.
    pub(crate) fn event_effects(
        &mut self,
        db: &Db,
        event_id: EventId,
        event: &EventEvent,
    ) -> Result<(), StoreError> {
        let at = match event {
            EventEvent::Created { owner, .. } => {
                // Later events of this batch start from it (the store does not have it yet).
                db.hooks.learn_owner(event_id, *owner);
                if let Some(record) = EventRecord::from_created(event) {
                    self.event_records.insert(event_id, record);
                }
                return Ok(());
            }
            EventEvent::Published { at }
            | EventEvent::Canceled { at }
            | EventEvent::Completed { at }
            | EventEvent::Updated { at, .. } => *at,
            _ => return Ok(()),
        };
        let before = match self.event_records.get(&event_id) {
            Some(record) => record.clone(),
            None => {
                // Created in this very batch: nothing is scheduled or subscribed yet.
                let Some(bytes) = db.events.get(event_id.as_bytes()).map_err(err)? else {
                    return Ok(());
                };
                decode::<EventRecord>(&bytes)?
            }
        };
        let mut after = before.clone();
        after.apply(after.version + 1, event);
        self.reschedule(db, &before, &after, at);
        self.tell_change(&before, &after, at);
        let (hook, changed) = match event {
            EventEvent::Published { .. } => (Some(HookType::EventPublished), Vec::new()),
            EventEvent::Canceled { .. } => (Some(HookType::EventCanceled), Vec::new()),
            EventEvent::Updated { patch, .. } => (Some(HookType::EventChanged), patch.fields()),
            _ => (None, Vec::new()),
        };
        let data = HookData::Event(EventData {
            event_id,
            title: after.title.clone(),
            status: after.status.as_str().to_owned(),
            starts_at: after.starts_at,
            ends_at: after.ends_at,
            version: after.version,
            changed,
        });
        self.event_records.insert(event_id, after);
        if let Some(kind) = hook
            && db.hooks.active()
        {
            let happening = Happening {
                kind,
                event_id,
                subject: event_id.0,
                at,
                data,
            };
            self.hook(db, happening)?;
        }
        Ok(())
    }

    /// The schedule entries `before` had and `after` has not are removed; the new ones still
    /// ahead of `at` are added (an entry that stays keeps its progress).
    fn reschedule(
        &mut self,
        db: &Db,
        before: &EventRecord,
        after: &EventRecord,
        at: DateTime<Utc>,
    ) {
        let defaults = db.delivery_state.reminder_offsets();
        let old = schedule::entries(before, &defaults);
        let new = schedule::entries(after, &defaults);
        for (key, _) in &old {
            if !new.iter().any(|(k, _)| k == key) {
                self.schedule.push((*key, None));
            }
        }
        for (key, starts_at) in &new {
            if !old.iter().any(|(k, _)| k == key) && schedule::due_of(key) > at {
                self.schedule.push((*key, Some(*starts_at)));
            }
        }
    }

    /// A published event's time or place changed: its attendees are told (a fan-out like a
    /// broadcast, started in this batch).
    fn tell_change(&mut self, before: &EventRecord, after: &EventRecord, at: DateTime<Utc>) {
        if after.status != EventStatus::Published || before.status != EventStatus::Published {
            return;
        }
        let fields: Vec<String> = NOTIFIED_FIELDS
            .into_iter()
            .filter(|field| match *field {
                "starts_at" => before.starts_at != after.starts_at,
                "ends_at" => before.ends_at != after.ends_at,
                _ => before.venue != after.venue,
            })
            .map(str::to_owned)
            .collect();
        if !fields.is_empty() {
            self.fanouts.push(Broadcast::event_changed(
                after.id,
                after.version,
                fields,
                at,
            ));
        }
    }

    /// The batch's schedule changes and fan-outs into the write batch.
    pub(super) fn write_schedule(
        &mut self,
        db: &Db,
        batch: &mut OwnedWriteBatch,
    ) -> Result<(), StoreError> {
        for (key, starts_at) in self.schedule.drain(..) {
            db.stage_schedule(batch, &key, starts_at)?;
        }
        for fanout in self.fanouts.drain(..) {
            db.stage_fanout(batch, &fanout)?;
        }
        Ok(())
    }
}

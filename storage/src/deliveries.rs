//! Deliveries: one row per message and channel (`deliveries`), the messages they carry
//! (`messages`), a queue per channel in due order (`delivery_queue`), and indexes of the dead
//! ones (`deliveries_dead`) and of the finished ones by when they finished
//! (`deliveries_done`, for pruning). The queue holds exactly the queued rows: every change of
//! a row replaces its entry in the same write.
//!
//! Changes of an existing row are conditional: under the row's lock (striped), the stored
//! row must still be the one the caller read, so an admin's replay racing the worker, or two
//! replays, cannot both apply (the loser is told, and a stale queue entry cannot arise).

use crate::codec::{decode, encode};
use crate::error::{CodecError, err};
use crate::store::Db;
use chrono::{DateTime, Utc};
use engine::notify::{Channel, Delivery, DeliveryStatus};
use engine::outbox::OutboxMessage;
use engine::ports::StoreError;
use fjall::OwnedWriteBatch;
use std::collections::HashSet;
use uuid::Uuid;

/// `deliveries` and `deliveries_dead`: message (16) + channel (1).
fn row_key(message: &Uuid, channel: Channel) -> [u8; 17] {
    let mut key = [0u8; 17];
    key[..16].copy_from_slice(message.as_bytes());
    key[16] = channel.code();
    key
}

fn millis(at: DateTime<Utc>) -> u64 {
    u64::try_from(at.timestamp_millis()).unwrap_or(0)
}

/// `delivery_queue`: channel (1) + due time in ms (8) + message (16).
fn queue_key(channel: Channel, due: DateTime<Utc>, message: &Uuid) -> [u8; 25] {
    let mut key = [0u8; 25];
    key[0] = channel.code();
    key[1..9].copy_from_slice(&millis(due).to_be_bytes());
    key[9..].copy_from_slice(message.as_bytes());
    key
}

/// `deliveries_done`: finished in ms (8) + message (16) + channel (1).
fn done_key(delivery: &Delivery) -> [u8; 25] {
    let mut key = [0u8; 25];
    key[..8].copy_from_slice(&millis(delivery.updated_at).to_be_bytes());
    key[8..24].copy_from_slice(delivery.message_id.as_bytes());
    key[24] = delivery.channel.code();
    key
}

fn queue_message(key: &[u8]) -> Result<Uuid, StoreError> {
    key.get(9..25)
        .and_then(|b| Uuid::from_slice(b).ok())
        .ok_or_else(|| CodecError::Key("delivery_queue").into())
}

fn queue_due(key: &[u8]) -> Result<DateTime<Utc>, StoreError> {
    key.get(1..9)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .and_then(|ms| DateTime::from_timestamp_millis(i64::try_from(ms).ok()?))
        .ok_or_else(|| CodecError::Key("delivery_queue").into())
}

/// The queue's range for `channel`, due from `floor_ms` up to `until`.
fn queue_range(
    channel: Channel,
    floor_ms: u64,
    until: DateTime<Utc>,
) -> std::ops::RangeInclusive<[u8; 25]> {
    let mut start = [0u8; 25];
    start[0] = channel.code();
    start[1..9].copy_from_slice(&floor_ms.to_be_bytes());
    start..=queue_key(channel, until, &Uuid::max())
}

/// Whether `a` and `b` are the same version of a row (times as stored: to the millisecond).
fn same(a: &Delivery, b: &Delivery) -> bool {
    a.status == b.status
        && a.attempts == b.attempts
        && millis(a.due_at) == millis(b.due_at)
        && millis(a.updated_at) == millis(b.updated_at)
}

/// A finished status: the row stays for a while (status queries), then is pruned.
fn finished(status: DeliveryStatus) -> bool {
    !matches!(status, DeliveryStatus::Queued | DeliveryStatus::Failed)
}

impl Db {
    /// The channels that have a delivery worker: the read model plans its messages' deliveries
    /// on these only (set before the engine starts; default: e-mail and in-app).
    pub fn set_channels(&self, channels: engine::notify::Channels) {
        self.delivery_state.set_channels(channels);
    }

    /// Reminders of events that set none of their own, in seconds before the start.
    pub fn set_reminder_offsets(&self, offsets: Vec<u32>) {
        self.delivery_state.set_reminder_offsets(offsets);
    }

    /// Entries kept per in-app inbox (default 200).
    pub fn set_inbox_max(&self, max: usize) {
        self.delivery_state.set_inbox_max(max);
    }

    /// Counts each channel's queued rows (once, when the store opens).
    pub(crate) fn count_queued(&self) -> Result<(), StoreError> {
        for channel in Channel::ALL {
            let n = self
                .delivery_queue
                .range(queue_range(channel, 0, DateTime::<Utc>::MAX_UTC))
                .count();
            self.delivery_state.count(channel, n as i64);
        }
        Ok(())
    }

    /// A message and its new deliveries into `batch` (the relay's fan-out, or the read
    /// model's confirmation messages); counted as queued at once (a batch that then fails to
    /// commit stops the journal writer, and the count is taken afresh at the next start).
    pub(crate) fn stage_deliveries(
        &self,
        batch: &mut OwnedWriteBatch,
        message: &OutboxMessage,
        deliveries: &[Delivery],
    ) -> Result<(), StoreError> {
        if deliveries.is_empty() {
            return Ok(());
        }
        batch.insert(
            &self.messages,
            message.id.as_bytes().to_vec(),
            encode(message).map_err(err)?,
        );
        for delivery in deliveries {
            let delta = self.stage_row(batch, delivery)?;
            self.delivery_state.count(delivery.channel, delta);
        }
        Ok(())
    }

    /// A delivery's row, with its queue entry or index as its status wants. Returns the
    /// change of the channel's queued count, for the caller to apply once committed.
    pub(crate) fn stage_row(
        &self,
        batch: &mut OwnedWriteBatch,
        delivery: &Delivery,
    ) -> Result<i64, StoreError> {
        let key = row_key(&delivery.message_id, delivery.channel);
        batch.insert(
            &self.deliveries,
            key.to_vec(),
            encode(delivery).map_err(err)?,
        );
        match delivery.status {
            DeliveryStatus::Queued => {
                self.delivery_state
                    .queued_at(delivery.channel, millis(delivery.due_at));
                batch.insert(
                    &self.delivery_queue,
                    queue_key(delivery.channel, delivery.due_at, &delivery.message_id).to_vec(),
                    Vec::new(),
                );
                return Ok(1);
            }
            DeliveryStatus::Failed => batch.insert(&self.deliveries_dead, key.to_vec(), Vec::new()),
            _ => batch.insert(
                &self.deliveries_done,
                done_key(delivery).to_vec(),
                Vec::new(),
            ),
        }
        Ok(0)
    }

    /// Removes a row's queue entry or index entry from `batch`; the queued count's change.
    pub(crate) fn unstage_row(&self, batch: &mut OwnedWriteBatch, delivery: &Delivery) -> i64 {
        let key = row_key(&delivery.message_id, delivery.channel);
        match delivery.status {
            DeliveryStatus::Queued => {
                batch.remove(
                    &self.delivery_queue,
                    queue_key(delivery.channel, delivery.due_at, &delivery.message_id).to_vec(),
                );
                return -1;
            }
            DeliveryStatus::Failed => batch.remove(&self.deliveries_dead, key.to_vec()),
            _ => batch.remove(&self.deliveries_done, done_key(delivery).to_vec()),
        }
        0
    }

    pub(crate) fn fan_out_message(
        &self,
        message: &OutboxMessage,
        deliveries: &[Delivery],
    ) -> Result<(), StoreError> {
        let mut batch = self.db.batch();
        self.stage_deliveries(&mut batch, message, deliveries)?;
        batch.remove(&self.outbox, message.id.as_bytes().to_vec());
        batch.commit().map_err(err)?;
        self.delivery_state.committed();
        Ok(())
    }

    #[allow(clippy::type_complexity)]
    pub(crate) fn due_deliveries(
        &self,
        channel: Channel,
        until: DateTime<Utc>,
        limit: usize,
        skip: &HashSet<Uuid>,
    ) -> Result<Vec<(Delivery, Result<OutboxMessage, StoreError>)>, StoreError> {
        let mut items = Vec::new();
        let started_ms = millis(Utc::now());
        let (floor, seen) = self.delivery_state.floor(channel);
        // The first live entry's due time (none found: nothing is due before `until`).
        let mut first_live: Option<u64> = None;
        for guard in self
            .delivery_queue
            .range(queue_range(channel, floor, until))
        {
            if items.len() >= limit {
                break;
            }
            let key = guard.key().map_err(err)?;
            let id = queue_message(&key)?;
            if skip.contains(&id) {
                first_live.get_or_insert(millis(queue_due(&key)?));
                continue;
            }
            let delivery = match self.delivery_row(&id, channel) {
                Ok(Some(d))
                    if d.status == DeliveryStatus::Queued
                        && queue_key(channel, d.due_at, &id)[..] == key[..] =>
                {
                    d
                }
                outcome => {
                    // An entry whose row is gone, unreadable or elsewhere cannot be sent:
                    // dropped, so it cannot hold up the queue.
                    tracing::error!(%id, row = ?outcome.map(|r| r.map(|d| d.status)), "stale delivery queue entry dropped");
                    self.delivery_queue.remove(key.to_vec()).map_err(err)?;
                    self.delivery_state.count(channel, -1);
                    continue;
                }
            };
            first_live.get_or_insert(millis(delivery.due_at));
            let message = match self.messages.get(id.as_bytes()).map_err(err)? {
                Some(bytes) => decode(&bytes).map_err(StoreError::from),
                None => Err(StoreError::Inconsistent(format!("message {id} missing"))),
            };
            items.push((delivery, message));
        }
        let first = first_live.unwrap_or_else(|| millis(until));
        self.delivery_state
            .raise_floor(channel, seen, first, started_ms);
        Ok(items)
    }

    pub(crate) fn delivery_row(
        &self,
        message: &Uuid,
        channel: Channel,
    ) -> Result<Option<Delivery>, StoreError> {
        match self
            .deliveries
            .get(row_key(message, channel))
            .map_err(err)?
        {
            Some(bytes) => Ok(Some(decode(&bytes).map_err(err)?)),
            None => Ok(None),
        }
    }

    pub(crate) fn first_due(&self, channel: Channel) -> Result<Option<DateTime<Utc>>, StoreError> {
        let until = DateTime::<Utc>::MAX_UTC;
        let (floor, _) = self.delivery_state.floor(channel);
        match self
            .delivery_queue
            .range(queue_range(channel, floor, until))
            .next()
        {
            Some(guard) => Ok(Some(queue_due(&guard.key().map_err(err)?)?)),
            None => Ok(None),
        }
    }

    /// The channel's queued rows (counted as they change), and the oldest creation among
    /// the next due (retries wait further back in the queue: this is the age of what is
    /// about to go, not of the oldest retry).
    pub(crate) fn backlog(
        &self,
        channel: Channel,
    ) -> Result<(usize, Option<DateTime<Utc>>), StoreError> {
        let (floor, _) = self.delivery_state.floor(channel);
        let range = queue_range(channel, floor, DateTime::<Utc>::MAX_UTC);
        let mut oldest: Option<DateTime<Utc>> = None;
        for guard in self.delivery_queue.range(range).take(16) {
            let id = queue_message(&guard.key().map_err(err)?)?;
            if let Ok(Some(d)) = self.delivery_row(&id, channel) {
                oldest = Some(oldest.map_or(d.created_at, |o| o.min(d.created_at)));
            }
        }
        Ok((self.delivery_state.queued(channel), oldest))
    }

    /// Replaces `before` by `after` if the stored row is still `before`; `false` if it is not
    /// (someone else changed it first: nothing written).
    pub(crate) fn update_delivery(
        &self,
        before: &Delivery,
        after: &Delivery,
    ) -> Result<bool, StoreError> {
        let _row = self.delivery_state.lock(&before.message_id);
        let stored = self.delivery_row(&before.message_id, before.channel)?;
        if !stored.as_ref().is_some_and(|stored| same(stored, before)) {
            return Ok(false);
        }
        let mut batch = self.db.batch();
        let delta = self.unstage_row(&mut batch, before) + self.stage_row(&mut batch, after)?;
        if finished(after.status) && !self.message_needed(&after.message_id, Some(after.channel))? {
            // Done with: its body (and any single-use token in it) is not kept.
            batch.remove(&self.messages, after.message_id.as_bytes().to_vec());
        }
        batch.commit().map_err(err)?;
        self.delivery_state.committed();
        self.delivery_state.count(after.channel, delta);
        Ok(true)
    }

    /// Whether another delivery of `message` than `except` is queued or dead (and so needs
    /// the message's body).
    fn message_needed(&self, message: &Uuid, except: Option<Channel>) -> Result<bool, StoreError> {
        for channel in Channel::ALL {
            if Some(channel) == except {
                continue;
            }
            if let Some(d) = self.delivery_row(message, channel)?
                && !finished(d.status)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub(crate) fn dead(
        &self,
        after: Option<(Uuid, Channel)>,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let start = match after {
            Some((id, channel)) => {
                let mut key = row_key(&id, channel).to_vec();
                key.push(0);
                key
            }
            None => Vec::new(),
        };
        let mut items = Vec::new();
        for guard in self.deliveries_dead.range(start..) {
            if items.len() >= limit {
                break;
            }
            let key = guard.key().map_err(err)?;
            let id = key
                .get(..16)
                .and_then(|b| Uuid::from_slice(b).ok())
                .ok_or(CodecError::Key("deliveries_dead"))?;
            let channel = key
                .get(16)
                .and_then(|c| Channel::from_code(*c))
                .ok_or(CodecError::Key("deliveries_dead"))?;
            match self.delivery_row(&id, channel)? {
                Some(d) if d.status == DeliveryStatus::Failed => items.push(d),
                _ => self.deliveries_dead.remove(key.to_vec()).map_err(err)?,
            }
        }
        Ok(items)
    }

    pub(crate) fn discard(&self, message: Uuid, channel: Channel) -> Result<bool, StoreError> {
        let _row = self.delivery_state.lock(&message);
        let Some(row) = self.delivery_row(&message, channel)? else {
            return Ok(false);
        };
        if row.status != DeliveryStatus::Failed {
            return Ok(false);
        }
        let key = row_key(&message, channel);
        let mut batch = self.db.batch();
        batch.remove(&self.deliveries, key.to_vec());
        batch.remove(&self.deliveries_dead, key.to_vec());
        if !self.message_needed(&message, Some(channel))? {
            batch.remove(&self.messages, message.as_bytes().to_vec());
        }
        batch.commit().map_err(err)?;
        self.delivery_state.committed();
        Ok(true)
    }

    /// Removes up to `limit` finished rows that finished before `before`; how many.
    pub(crate) fn prune(&self, before: DateTime<Utc>, limit: usize) -> Result<usize, StoreError> {
        let end = millis(before).to_be_bytes();
        let mut pruned = 0;
        for guard in self.deliveries_done.range(..end.to_vec()).take(limit) {
            let key = guard.key().map_err(err)?;
            let (Some(id), Some(channel)) = (
                key.get(8..24).and_then(|b| Uuid::from_slice(b).ok()),
                key.get(24).and_then(|c| Channel::from_code(*c)),
            ) else {
                self.deliveries_done.remove(key.to_vec()).map_err(err)?;
                continue;
            };
            let _row = self.delivery_state.lock(&id);
            let mut batch = self.db.batch();
            batch.remove(&self.deliveries_done, key.to_vec());
            // Only the row this entry stands for (a later change has its own entry).
            if let Some(d) = self.delivery_row(&id, channel)?
                && finished(d.status)
                && done_key(&d)[..] == key[..]
            {
                batch.remove(&self.deliveries, row_key(&id, channel).to_vec());
                pruned += 1;
            }
            batch.commit().map_err(err)?;
            self.delivery_state.committed();
        }
        // The webhook log's entries go with their deliveries.
        let log = self.prune_webhook_log(before, limit.saturating_sub(pruned))?;
        Ok(pruned + log)
    }

    pub(crate) fn kept_message(&self, id: Uuid) -> Result<Option<OutboxMessage>, StoreError> {
        match self.messages.get(id.as_bytes()).map_err(err)? {
            Some(bytes) => Ok(Some(decode(&bytes).map_err(err)?)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DbOptions;
    use engine::message::MessageKind;
    use engine::ports::Store;

    fn none() -> HashSet<Uuid> {
        HashSet::new()
    }

    fn db() -> (Db, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        (Db::open(dir.path(), &DbOptions::default()).unwrap(), dir)
    }

    fn message(at: DateTime<Utc>) -> OutboxMessage {
        let kind = MessageKind::VerifyEmail {
            token: "secret".into(),
            expires_at: at,
        };
        OutboxMessage::new("ann@example.com", None, kind, at)
    }

    #[test]
    fn the_queue_holds_exactly_the_queued_rows_in_due_order() {
        let (db, _dir) = db();
        let now = Utc::now();
        let (a, b) = (message(now), message(now));
        let da = Delivery::queued(&a, Channel::Email, now + chrono::Duration::seconds(5));
        let db_ = Delivery::queued(&b, Channel::Email, now);
        db.fan_out(&a, std::slice::from_ref(&da)).unwrap();
        db.fan_out(&b, std::slice::from_ref(&db_)).unwrap();
        // Due by now: only b; by later: b then a (due order, not creation order).
        let due = db.deliveries_due(Channel::Email, now, 10, &none()).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].0.message_id, b.id);
        assert_eq!(due[0].1.as_ref().unwrap().id, b.id);
        let later = now + chrono::Duration::seconds(10);
        let ids: Vec<Uuid> = db
            .deliveries_due(Channel::Email, later, 10, &none())
            .unwrap()
            .into_iter()
            .map(|(d, _)| d.message_id)
            .collect();
        assert_eq!(ids, [b.id, a.id]);
        assert_eq!(
            db.next_delivery_due(Channel::Email).unwrap(),
            Some(trunc(db_.due_at))
        );
        assert_eq!(db.delivery_backlog(Channel::Email).unwrap().0, 2);

        // A retry moves b's entry (no stale one stays behind); sent, it leaves the queue and
        // its message (with the token) is dropped.
        let mut retry = db_.clone();
        retry.attempts = 1;
        retry.due_at = later;
        assert!(db.delivery_update(&db_, &retry).unwrap());
        assert!(
            !db.delivery_update(&db_, &retry).unwrap(),
            "a stale before changes nothing"
        );
        assert_eq!(
            db.deliveries_due(Channel::Email, now, 10, &none())
                .unwrap()
                .len(),
            0
        );
        let mut sent = retry.clone();
        sent.status = DeliveryStatus::Sent;
        db.delivery_update(&retry, &sent).unwrap();
        assert_eq!(db.delivery_backlog(Channel::Email).unwrap().0, 1);
        assert!(db.notify_message(b.id).unwrap().is_none(), "no token kept");
        assert_eq!(
            db.delivery(b.id, Channel::Email).unwrap().unwrap().status,
            DeliveryStatus::Sent
        );
    }

    #[test]
    fn a_dead_delivery_keeps_its_message_until_discarded_and_a_replay_queues_it_again() {
        let (db, _dir) = db();
        let now = Utc::now();
        let m = message(now);
        let queued = Delivery::queued(&m, Channel::Email, now);
        db.fan_out(&m, std::slice::from_ref(&queued)).unwrap();
        let mut dead = queued.clone();
        dead.status = DeliveryStatus::Failed;
        dead.attempts = 3;
        db.delivery_update(&queued, &dead).unwrap();
        assert_eq!(db.delivery_backlog(Channel::Email).unwrap().0, 0);
        let listed = db.dead_deliveries(None, 10).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].message_id, listed[0].attempts), (m.id, 3));
        assert!(
            db.notify_message(m.id).unwrap().is_some(),
            "kept for a replay"
        );
        assert!(
            db.dead_deliveries(Some((m.id, Channel::Email)), 10)
                .unwrap()
                .is_empty()
        );

        let mut again = dead.clone();
        again.status = DeliveryStatus::Queued;
        again.attempts = 0;
        db.delivery_update(&dead, &again).unwrap();
        assert!(db.dead_deliveries(None, 10).unwrap().is_empty());
        assert_eq!(
            db.deliveries_due(Channel::Email, now, 10, &none())
                .unwrap()
                .len(),
            1
        );
        assert!(
            !db.delivery_discard(m.id, Channel::Email).unwrap(),
            "only a dead one"
        );

        db.delivery_update(&again, &dead).unwrap();
        assert!(db.delivery_discard(m.id, Channel::Email).unwrap());
        assert!(db.delivery(m.id, Channel::Email).unwrap().is_none());
        assert!(db.notify_message(m.id).unwrap().is_none());
        assert!(db.dead_deliveries(None, 10).unwrap().is_empty());
    }

    #[test]
    fn in_flight_messages_are_passed_over_and_the_count_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let now = Utc::now();
        let (a, b) = (message(now), message(now));
        {
            let db = Db::open(dir.path(), &DbOptions::default()).unwrap();
            for m in [&a, &b] {
                db.fan_out(m, &[Delivery::queued(m, Channel::Email, now)])
                    .unwrap();
            }
            let skip: HashSet<Uuid> = [a.id].into();
            let due = db.deliveries_due(Channel::Email, now, 1, &skip).unwrap();
            assert_eq!(due.len(), 1);
            assert_eq!(
                due[0].0.message_id, b.id,
                "the limit counts only what is not in flight"
            );
            db.persist().unwrap();
        }
        let db = Db::open(dir.path(), &DbOptions::default()).unwrap();
        assert_eq!(db.delivery_backlog(Channel::Email).unwrap().0, 2);
    }

    #[test]
    fn finished_deliveries_are_pruned_after_their_retention_and_queued_ones_never() {
        let (db, _dir) = db();
        let now = Utc::now();
        let (a, b) = (message(now), message(now));
        let (qa, qb) = (
            Delivery::queued(&a, Channel::Email, now),
            Delivery::queued(&b, Channel::Email, now),
        );
        db.fan_out(&a, std::slice::from_ref(&qa)).unwrap();
        db.fan_out(&b, std::slice::from_ref(&qb)).unwrap();
        let mut sent = qa.clone();
        sent.status = DeliveryStatus::Sent;
        sent.updated_at = now;
        assert!(db.delivery_update(&qa, &sent).unwrap());
        assert_eq!(
            db.prune_deliveries(now, 10).unwrap(),
            0,
            "not older than the cut"
        );
        let later = now + chrono::Duration::seconds(1);
        assert_eq!(db.prune_deliveries(later, 10).unwrap(), 1);
        assert!(db.delivery(a.id, Channel::Email).unwrap().is_none());
        assert!(
            db.delivery(b.id, Channel::Email).unwrap().is_some(),
            "queued: kept"
        );
        assert_eq!(db.prune_deliveries(later, 10).unwrap(), 0);
    }

    #[test]
    fn scans_start_past_what_was_sent_and_still_find_an_earlier_entry_staged_later() {
        let (db, _dir) = db();
        let now = Utc::now();
        let sec = chrono::Duration::seconds;
        let (a, b) = (message(now), message(now));
        for (m, due) in [(&a, now - sec(5)), (&b, now - sec(4))] {
            db.fan_out(m, &[Delivery::queued(m, Channel::Email, due)])
                .unwrap();
        }
        for (d, _) in db.deliveries_due(Channel::Email, now, 10, &none()).unwrap() {
            let mut sent = d.clone();
            sent.status = DeliveryStatus::Sent;
            assert!(db.delivery_update(&d, &sent).unwrap());
        }
        assert!(
            db.deliveries_due(Channel::Email, now, 10, &none())
                .unwrap()
                .is_empty()
        );
        let (floor, _) = db.delivery_state.floor(Channel::Email);
        assert!(
            floor > millis(now - sec(4)),
            "the floor rose past the sent ones"
        );
        // Staged below the floor (a confirmation's time can lag the scans): found.
        let c = message(now);
        db.fan_out(&c, &[Delivery::queued(&c, Channel::Email, now - sec(10))])
            .unwrap();
        let due = db.deliveries_due(Channel::Email, now, 10, &none()).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].0.message_id, c.id);
    }

    #[test]
    fn an_entry_staged_before_a_scan_and_committed_after_it_is_still_found() {
        let (db, _dir) = db();
        let now = Utc::now();
        let c = message(now);
        let queued = Delivery::queued(&c, Channel::Email, now - chrono::Duration::seconds(10));
        let mut batch = db.db.batch();
        db.stage_deliveries(&mut batch, &c, std::slice::from_ref(&queued))
            .unwrap();
        // The scan cannot see it yet, and raises the floor past it.
        assert!(
            db.deliveries_due(Channel::Email, now, 10, &none())
                .unwrap()
                .is_empty()
        );
        assert!(db.delivery_state.floor(Channel::Email).0 > millis(queued.due_at));
        batch.commit().unwrap();
        db.delivery_state.committed();
        let due = db.deliveries_due(Channel::Email, now, 10, &none()).unwrap();
        assert_eq!(due.len(), 1, "the commit put the floor back under it");
    }

    /// Due times are kept to the millisecond.
    fn trunc(at: DateTime<Utc>) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap()
    }
}

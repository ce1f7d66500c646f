//! Deliveries: one row per message and channel (`deliveries`), the messages they carry
//! (`messages`), a queue per channel in due order (`delivery_queue`) and an index of the dead
//! ones (`deliveries_dead`). The queue holds exactly the queued rows: every change of a row
//! replaces its queue entry in the same write.

use crate::codec::{decode, encode};
use crate::error::{CodecError, err};
use crate::store::Db;
use chrono::{DateTime, Utc};
use engine::notify::{Channel, Delivery, DeliveryStatus};
use engine::outbox::OutboxMessage;
use engine::ports::StoreError;
use fjall::OwnedWriteBatch;
use uuid::Uuid;

/// `deliveries` and `deliveries_dead`: message (16) + channel (1).
fn row_key(message: &Uuid, channel: Channel) -> [u8; 17] {
    let mut key = [0u8; 17];
    key[..16].copy_from_slice(message.as_bytes());
    key[16] = channel.code();
    key
}

/// `delivery_queue`: channel (1) + due time in ms (8) + message (16).
fn queue_key(channel: Channel, due: DateTime<Utc>, message: &Uuid) -> [u8; 25] {
    let mut key = [0u8; 25];
    key[0] = channel.code();
    let millis = u64::try_from(due.timestamp_millis()).unwrap_or(0);
    key[1..9].copy_from_slice(&millis.to_be_bytes());
    key[9..].copy_from_slice(message.as_bytes());
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

/// The queue's range for `channel`, due up to `until`.
fn queue_range(channel: Channel, until: DateTime<Utc>) -> std::ops::RangeInclusive<[u8; 25]> {
    let mut start = [0u8; 25];
    start[0] = channel.code();
    let mut end = queue_key(channel, until, &Uuid::max());
    end[0] = channel.code();
    start..=end
}

impl Db {
    /// A message and its deliveries into `batch` (the relay's fan-out, or the read model's
    /// confirmation messages).
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
            self.stage_row(batch, delivery)?;
        }
        Ok(())
    }

    /// A delivery's row, with its queue entry or dead index as its status wants.
    fn stage_row(
        &self,
        batch: &mut OwnedWriteBatch,
        delivery: &Delivery,
    ) -> Result<(), StoreError> {
        let key = row_key(&delivery.message_id, delivery.channel);
        batch.insert(
            &self.deliveries,
            key.to_vec(),
            encode(delivery).map_err(err)?,
        );
        match delivery.status {
            DeliveryStatus::Queued => batch.insert(
                &self.delivery_queue,
                queue_key(delivery.channel, delivery.due_at, &delivery.message_id).to_vec(),
                Vec::new(),
            ),
            DeliveryStatus::Failed => batch.insert(&self.deliveries_dead, key.to_vec(), Vec::new()),
            _ => {}
        }
        Ok(())
    }

    pub(crate) fn fan_out_message(
        &self,
        message: &OutboxMessage,
        deliveries: &[Delivery],
    ) -> Result<(), StoreError> {
        let mut batch = self.db.batch();
        self.stage_deliveries(&mut batch, message, deliveries)?;
        batch.remove(&self.outbox, message.id.as_bytes().to_vec());
        batch.commit().map_err(err)
    }

    #[allow(clippy::type_complexity)]
    pub(crate) fn due_deliveries(
        &self,
        channel: Channel,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(Delivery, Result<OutboxMessage, StoreError>)>, StoreError> {
        let mut items = Vec::new();
        for guard in self
            .delivery_queue
            .range(queue_range(channel, until))
            .take(limit)
        {
            let key = guard.key().map_err(err)?;
            let id = queue_message(&key)?;
            let Some(delivery) = self.delivery_row(&id, channel)? else {
                // A queue entry without its row (cannot happen: they are written together).
                tracing::error!(%id, "queued delivery without its row; dropped from the queue");
                self.delivery_queue.remove(key.to_vec()).map_err(err)?;
                continue;
            };
            let message = match self.messages.get(id.as_bytes()).map_err(err)? {
                Some(bytes) => decode(&bytes).map_err(StoreError::from),
                None => Err(StoreError::Inconsistent(format!("message {id} missing"))),
            };
            items.push((delivery, message));
        }
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
        match self
            .delivery_queue
            .range(queue_range(channel, until))
            .next()
        {
            Some(guard) => Ok(Some(queue_due(&guard.key().map_err(err)?)?)),
            None => Ok(None),
        }
    }

    pub(crate) fn backlog(
        &self,
        channel: Channel,
        count_max: usize,
    ) -> Result<(usize, Option<DateTime<Utc>>), StoreError> {
        let range = queue_range(channel, DateTime::<Utc>::MAX_UTC);
        let count = self
            .delivery_queue
            .range(range.clone())
            .take(count_max)
            .count();
        // The oldest message among the first due (retries are later in the queue, so the
        // head is the oldest new message in the common case).
        let mut oldest: Option<DateTime<Utc>> = None;
        for guard in self.delivery_queue.range(range).take(16) {
            let id = queue_message(&guard.key().map_err(err)?)?;
            if let Some(d) = self.delivery_row(&id, channel)? {
                oldest = Some(oldest.map_or(d.created_at, |o| o.min(d.created_at)));
            }
        }
        Ok((count, oldest))
    }

    pub(crate) fn update_delivery(
        &self,
        before: &Delivery,
        after: &Delivery,
    ) -> Result<(), StoreError> {
        let mut batch = self.db.batch();
        let key = row_key(&before.message_id, before.channel);
        if before.status == DeliveryStatus::Queued {
            batch.remove(
                &self.delivery_queue,
                queue_key(before.channel, before.due_at, &before.message_id).to_vec(),
            );
        }
        if before.status == DeliveryStatus::Failed && after.status != DeliveryStatus::Failed {
            batch.remove(&self.deliveries_dead, key.to_vec());
        }
        self.stage_row(&mut batch, after)?;
        if !matches!(
            after.status,
            DeliveryStatus::Queued | DeliveryStatus::Failed
        ) && !self.message_needed(&after.message_id, Some(after.channel))?
        {
            // Delivered: its body (and any single-use token in it) is not kept.
            batch.remove(&self.messages, after.message_id.as_bytes().to_vec());
        }
        batch.commit().map_err(err)
    }

    /// Whether another delivery of `message` than `except` is queued or dead (and so needs
    /// the message's body).
    fn message_needed(&self, message: &Uuid, except: Option<Channel>) -> Result<bool, StoreError> {
        for channel in Channel::ALL {
            if Some(channel) == except {
                continue;
            }
            if let Some(d) = self.delivery_row(message, channel)?
                && matches!(d.status, DeliveryStatus::Queued | DeliveryStatus::Failed)
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
        for guard in self.deliveries_dead.range(start..).take(limit) {
            let key = guard.key().map_err(err)?;
            let id = key
                .get(..16)
                .and_then(|b| Uuid::from_slice(b).ok())
                .ok_or(CodecError::Key("deliveries_dead"))?;
            let channel = key
                .get(16)
                .and_then(|c| Channel::from_code(*c))
                .ok_or(CodecError::Key("deliveries_dead"))?;
            if let Some(d) = self.delivery_row(&id, channel)? {
                items.push(d);
            }
        }
        Ok(items)
    }

    pub(crate) fn discard(&self, message: Uuid, channel: Channel) -> Result<bool, StoreError> {
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
        Ok(true)
    }

    pub(crate) fn kept_message(&self, id: Uuid) -> Result<Option<OutboxMessage>, StoreError> {
        match self.messages.get(id.as_bytes()).map_err(err)? {
            Some(bytes) => Ok(Some(decode(&bytes).map_err(err)?)),
            None => Ok(None),
        }
    }
}

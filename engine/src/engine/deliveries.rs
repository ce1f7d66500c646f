//! The facade's delivery side: what admins see and do with deliveries (a message's status
//! per channel, the dead letters, replay, discard).

use super::Engine;
use crate::error::{DomainError, EngineError, EngineResult};
use crate::notify::{Channel, Delivery, DeliveryStatus};
use uuid::Uuid;

impl Engine {
    /// A message's deliveries, one per channel it went to.
    pub fn deliveries_of(&self, message: Uuid) -> EngineResult<Vec<Delivery>> {
        let mut items = Vec::new();
        for channel in Channel::ALL {
            if let Some(d) = self
                .ctx
                .store
                .delivery(message, channel)
                .map_err(EngineError::Store)?
            {
                items.push(d);
            }
        }
        Ok(items)
    }

    /// Wakes `channel`'s worker: deliveries were queued for it outside the engine.
    pub fn wake(&self, channel: Channel) {
        self.wakes.wake(channel);
    }

    /// Dead deliveries after `after`, in message order, at most `limit`.
    pub fn dead_deliveries(
        &self,
        after: Option<(Uuid, Channel)>,
        limit: usize,
    ) -> EngineResult<Vec<Delivery>> {
        self.ctx
            .store
            .dead_deliveries(after, limit)
            .map_err(EngineError::Store)
    }

    /// Queues a dead delivery again, due now, with its attempts counted afresh.
    pub fn replay_delivery(&self, message: Uuid, channel: Channel) -> EngineResult<Delivery> {
        let dead = self.dead_delivery(message, channel)?;
        let mut queued = dead.clone();
        let now = self.ctx.clock.now();
        queued.status = DeliveryStatus::Queued;
        queued.attempts = 0;
        queued.due_at = now;
        queued.updated_at = now;
        let applied = self
            .ctx
            .store
            .delivery_update(&dead, &queued)
            .map_err(EngineError::Store)?;
        if !applied {
            // Changed since it was read (a concurrent replay or discard).
            return Err(self.dead_delivery(message, channel).err().unwrap_or(
                DomainError::DeliveryNotDead(crate::notify::DeliveryStatus::Queued.as_str()).into(),
            ));
        }
        self.wakes.wake(channel);
        Ok(queued)
    }

    /// Replays up to `limit` dead deliveries (of `kind` only, if given), oldest message
    /// first: after an outage or a configuration error fixed. Returns how many.
    pub fn replay_dead(&self, kind: Option<&str>, limit: usize) -> EngineResult<usize> {
        let mut replayed = 0;
        let mut after = None;
        while replayed < limit {
            let page = self.dead_deliveries(after, 500)?;
            let Some(last) = page.last() else {
                break;
            };
            after = Some((last.message_id, last.channel));
            for dead in page {
                if replayed >= limit {
                    break;
                }
                if kind.is_some_and(|k| k != dead.kind) {
                    continue;
                }
                // One replayed or discarded meanwhile is passed over.
                if self.replay_delivery(dead.message_id, dead.channel).is_ok() {
                    replayed += 1;
                }
            }
        }
        Ok(replayed)
    }

    /// Removes a dead delivery for good (and its message, once nothing needs it).
    pub fn discard_delivery(&self, message: Uuid, channel: Channel) -> EngineResult<()> {
        self.dead_delivery(message, channel)?;
        let discarded = self
            .ctx
            .store
            .delivery_discard(message, channel)
            .map_err(EngineError::Store)?;
        if !discarded {
            // Replayed or discarded since it was read.
            self.dead_delivery(message, channel)?;
        }
        Ok(())
    }

    fn dead_delivery(&self, message: Uuid, channel: Channel) -> EngineResult<Delivery> {
        let delivery = self
            .ctx
            .store
            .delivery(message, channel)
            .map_err(EngineError::Store)?
            .ok_or(DomainError::DeliveryNotFound)?;
        if delivery.status != DeliveryStatus::Failed {
            return Err(DomainError::DeliveryNotDead(delivery.status.as_str()).into());
        }
        Ok(delivery)
    }
}

impl Engine {
    /// A provider's report about a message it was handed (delivered, bounced): recorded on its
    /// delivery if that is sent, or still queued (the report came before the worker wrote the
    /// outcome of its send, or a send timed out here but reached the provider: no retry is
    /// needed then). A report about a dead, finished or unknown delivery is ignored (`false`);
    /// a bounce after a delivery report wins (it came later).
    pub fn delivery_reported(
        &self,
        message: Uuid,
        channel: Channel,
        status: DeliveryStatus,
        detail: Option<String>,
    ) -> EngineResult<bool> {
        // A concurrent change of the row (another report) is read again, a few times.
        for _ in 0..3 {
            let Some(row) = self
                .ctx
                .store
                .delivery(message, channel)
                .map_err(EngineError::Store)?
            else {
                return Ok(false);
            };
            let applies = matches!(
                (row.status, status),
                (
                    DeliveryStatus::Sent | DeliveryStatus::Queued,
                    DeliveryStatus::Delivered | DeliveryStatus::Bounced
                ) | (DeliveryStatus::Delivered, DeliveryStatus::Bounced)
            );
            if !applies {
                return Ok(false);
            }
            let mut next = row.clone();
            next.status = status;
            next.updated_at = self.ctx.clock.now();
            if detail.is_some() {
                next.last_error = detail.clone();
            }
            if self
                .ctx
                .store
                .delivery_update(&row, &next)
                .map_err(EngineError::Store)?
            {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

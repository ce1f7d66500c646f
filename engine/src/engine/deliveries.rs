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
        self.ctx
            .store
            .delivery_update(&dead, &queued)
            .map_err(EngineError::Store)?;
        self.wakes.wake(channel);
        Ok(queued)
    }

    /// Removes a dead delivery for good (and its message, once nothing needs it).
    pub fn discard_delivery(&self, message: Uuid, channel: Channel) -> EngineResult<()> {
        self.dead_delivery(message, channel)?;
        self.ctx
            .store
            .delivery_discard(message, channel)
            .map_err(EngineError::Store)?;
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

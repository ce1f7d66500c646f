//! The facade's event side: creating and changing events and their ticket types (decided by
//! the event actor), reading them, and their availability (published by the pools on a watch
//! channel, read without sending a message).

use super::{Engine, GLOBAL_SCOPE};
use crate::actors::event_actor::EventMsg;
use crate::actors::{Availability, EventShared, call};
use crate::error::{DomainError, EngineError, EngineResult};
use crate::ids::{EventId, StreamId, TicketTypeId, UserId};
use crate::model::{
    EventEvent, EventPatch, EventRecord, EventStatus, NewEvent, NewTicketType, TicketType,
};
use crate::pool::IdempotencyToken;
use crate::ports::{EventQuery, Page, Snapshot, StreamEvent};
use std::sync::Arc;
use tokio::sync::watch;

/// Availability of one ticket type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TicketTypeAvailability {
    pub ticket_type: TicketType,
    /// Seats of its pool in total.
    pub capacity: u32,
    /// Seats held.
    pub held: u32,
    /// Seats confirmed.
    pub confirmed: u32,
    /// Seats set aside by vouchers.
    pub reserved: u32,
    /// Seats available to anyone.
    pub available: u32,
}

/// Availability of an event, with the version it was published at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventAvailability {
    pub event_id: EventId,
    pub status: EventStatus,
    /// Grows with every change; clients drop snapshots older than one they have.
    pub version: u64,
    /// Per ticket type.
    pub ticket_types: Vec<TicketTypeAvailability>,
}

impl Engine {
    /// Creates a draft event. A key seen before returns the event it created (or 422 for
    /// another request), durably: the key is recorded in the same batch as the event.
    pub async fn create_event(
        &self,
        new: NewEvent,
        owner: Option<UserId>,
        idempotency: Option<IdempotencyToken>,
    ) -> EngineResult<EventRecord> {
        if let Some(id) = self.idempotent(GLOBAL_SCOPE, idempotency)? {
            return self.event(EventId(id));
        }
        new.validate()?;
        let id = EventId::new();
        let hold_ttl_secs = new
            .hold_ttl_secs
            .unwrap_or(self.ctx.config.hold_ttl_default_secs);
        let event = EventEvent::Created {
            id,
            settings: new,
            hold_ttl_secs,
            at: self.ctx.clock.now(),
            idempotency,
            owner,
        };
        // Created cannot fail to produce a record: it is the Created variant.
        let record = EventRecord::from_created(&event)
            .ok_or_else(|| EngineError::Unavailable("bad event".into()))?;
        self.ctx
            .journal
            .append_and_wait(
                StreamId::Event(id),
                1,
                vec![StreamEvent::Event(event)],
                Some(Snapshot::Event(Box::new(record.clone()))),
                Vec::new(),
            )
            .await
            .map_err(EngineError::Journal)?;
        metrics::counter!("regengine_engine_events_created_total").increment(1);
        Ok(record)
    }

    /// Changes an event's settings.
    pub async fn update_event(&self, id: EventId, patch: EventPatch) -> EngineResult<EventRecord> {
        let h = self.handle(id).await?;
        call(&h.actor, &h.gate, self.ctx.config.call_timeout, |r| {
            EventMsg::Update(Box::new(patch), r)
        })
        .await
    }

    /// Gives `user` a role in an event (co-organizer or staff), or removes it (`None`).
    pub async fn set_event_member(
        &self,
        id: EventId,
        user: UserId,
        role: Option<crate::model::EventRole>,
    ) -> EngineResult<EventRecord> {
        let h = self.handle(id).await?;
        call(&h.actor, &h.gate, self.ctx.config.call_timeout, |r| {
            EventMsg::SetMember(user, role, r)
        })
        .await
    }

    /// Rotates the event's ticket-signing key: every ticket's code changes, and codes signed
    /// with an older key are refused from now on.
    pub async fn rotate_ticket_key(&self, id: EventId) -> EngineResult<EventRecord> {
        let h = self.handle(id).await?;
        call(&h.actor, &h.gate, self.ctx.config.call_timeout, |r| {
            EventMsg::RotateTicketKey(r)
        })
        .await
    }

    /// Publishes, cancels or completes an event.
    pub async fn transition_event(
        &self,
        id: EventId,
        to: EventStatus,
    ) -> EngineResult<EventRecord> {
        let h = self.handle(id).await?;
        call(&h.actor, &h.gate, self.ctx.config.call_timeout, |r| {
            EventMsg::Transition(to, r)
        })
        .await
    }

    /// Adds a ticket type to an event.
    pub async fn create_ticket_type(
        &self,
        id: EventId,
        new: NewTicketType,
        idempotency: Option<IdempotencyToken>,
    ) -> EngineResult<(EventRecord, TicketType)> {
        if let Some(tt) = self.idempotent(id, idempotency)? {
            let record = self.event(id)?;
            let ticket_type = record
                .ticket_type(TicketTypeId(tt))
                .cloned()
                .ok_or(DomainError::TicketTypeNotFound)?;
            return Ok((record, ticket_type));
        }
        new.validate()?;
        let h = self.handle(id).await?;
        let (record, tt) = call(&h.actor, &h.gate, self.ctx.config.call_timeout, |r| {
            EventMsg::CreateTicketType(new, idempotency, r)
        })
        .await?;
        let ticket_type = record
            .ticket_type(tt)
            .cloned()
            .ok_or(DomainError::TicketTypeNotFound)?;
        Ok((record, ticket_type))
    }

    /// An event, from its read model.
    pub fn event(&self, id: EventId) -> EngineResult<EventRecord> {
        self.ctx
            .store
            .event(id)
            .map_err(EngineError::Store)?
            .ok_or(DomainError::EventNotFound.into())
    }

    /// Events passing `query`.
    pub fn events(&self, query: &EventQuery) -> EngineResult<Page<EventRecord, EventId>> {
        self.ctx
            .store
            .events(query, self.ctx.clock.now())
            .map_err(EngineError::Store)
    }

    /// An event's record: the active event's, in memory (no store read, no decoding), else the
    /// read model's. Scanning checks the scanner's rights with it per scan.
    pub fn event_record(&self, id: EventId) -> EngineResult<Arc<EventRecord>> {
        match self.active(id) {
            Some(h) => Ok(h.shared.record()),
            None => self.event(id).map(Arc::new),
        }
    }

    /// Current availability of an event's ticket types. Sends no message.
    pub async fn availability(&self, id: EventId) -> EngineResult<EventAvailability> {
        let h = self.handle(id).await?;
        let snapshot = h.shared.availability.borrow().clone();
        Ok(availability_view(&h.shared.record(), &snapshot))
    }

    /// A receiver that changes whenever the event's availability does. Holding it keeps the
    /// event active.
    pub async fn subscribe(&self, id: EventId) -> EngineResult<AvailabilityFeed> {
        let h = self.handle(id).await?;
        Ok(AvailabilityFeed {
            rx: h.shared.availability.subscribe(),
            shared: Arc::downgrade(&h.shared),
        })
    }
}

/// Availability changes of one event, for push to subscribers.
///
/// The feed holds the event's shared state weakly: when the event actor stops (it failed,
/// or the server is shutting down) the feed ends, and the subscriber subscribes again.
pub struct AvailabilityFeed {
    rx: watch::Receiver<Availability>,
    shared: std::sync::Weak<EventShared>,
}

impl AvailabilityFeed {
    /// The current availability, or `None` if the event stopped.
    pub fn current(&mut self) -> Option<EventAvailability> {
        let shared = self.shared.upgrade()?;
        let snapshot = self.rx.borrow_and_update().clone();
        Some(availability_view(&shared.record(), &snapshot))
    }

    /// Waits for the next change. `false` when the event stopped.
    pub async fn changed(&mut self) -> bool {
        self.rx.changed().await.is_ok()
    }
}

fn availability_view(record: &EventRecord, snapshot: &Availability) -> EventAvailability {
    let ticket_types = record
        .ticket_types
        .iter()
        .map(|tt| {
            let counts = snapshot.pools.get(&tt.pool_id).copied().unwrap_or_else(|| {
                crate::pool::PoolCounts {
                    capacity: record.pool(tt.pool_id).map_or(0, |p| p.capacity),
                    ..Default::default()
                }
            });
            TicketTypeAvailability {
                ticket_type: tt.clone(),
                capacity: counts.capacity,
                held: counts.held,
                confirmed: counts.confirmed,
                reserved: counts.reserved,
                available: counts.available(),
            }
        })
        .collect();
    EventAvailability {
        event_id: record.id,
        status: snapshot.status.unwrap_or(record.status),
        version: snapshot.version,
        ticket_types,
    }
}

//! The facade's check-in side: check-in lists, scans (decided by the ticket's pool, exactly
//! once per ticket and list), the routes of tickets to their pools (cached: a route never
//! changes once issued), and what scanners read (statistics, revocations, the scan feed).

use super::Engine;
use crate::actors::call;
use crate::actors::event_actor::EventMsg;
use crate::error::{DomainError, EngineError, EngineResult, FieldError};
use crate::ids::{CheckInListId, EventId, TicketId};
use crate::model::{CheckInList, EventRecord, RegistrationStatus};
use crate::pool::scan::{Direction, ListRules, ScanNotice, ScanResult};
use crate::pool::{Admission, GATE_LEN_MAX, PoolCommand, PoolOutcome, ScanCommand};
use crate::ports::{CheckInStats, RegistrationView, Revocation, TicketRoute, TicketView};
use chrono::{DateTime, Utc};

/// A scan, as the gateway parsed it.
#[derive(Clone, Debug)]
pub struct ScanRequest {
    /// The event scanning.
    pub event_id: EventId,
    /// The ticket (from its verified code).
    pub ticket_id: TicketId,
    /// The check-in list (`None`: the default list).
    pub list_id: Option<CheckInListId>,
    /// Entry or exit.
    pub direction: Direction,
    /// 1 to `GATE_LEN_MAX` characters (checked by `Engine::scan`).
    pub gate: Option<String>,
    /// For an uploaded offline scan: when it was made.
    pub scanned_at: Option<DateTime<Utc>>,
    /// The scanner's nonce (the same nonce is applied once).
    pub nonce: Option<[u8; 16]>,
}

impl Engine {
    /// Every scan decided at the event from now on (once durable), for scanners that keep
    /// their local state current. Bounded: a listener that falls behind gets `Lagged`. Ends
    /// (`Closed`) when the event is passivated or restarts: subscribe again.
    pub async fn subscribe_scans(
        &self,
        id: EventId,
    ) -> EngineResult<tokio::sync::broadcast::Receiver<ScanNotice>> {
        let h = self.handle(id).await?;
        Ok(h.shared.scans.subscribe())
    }

    /// Adds a check-in list to an event (managers decide who may; the list's ticket types
    /// must be the event's).
    pub async fn create_checkin_list(
        &self,
        id: EventId,
        new: impl FnOnce(&EventRecord) -> Result<CheckInList, Vec<FieldError>>,
    ) -> EngineResult<(EventRecord, CheckInList)> {
        let h = self.handle(id).await?;
        let list = new(&h.shared.record()).map_err(DomainError::Validation)?;
        let list_id = list.id;
        let record = call(&h.actor, &h.gate, self.ctx.config.call_timeout, |r| {
            EventMsg::CreateCheckInList(Box::new(list), r)
        })
        .await?;
        let list = record
            .checkin_lists
            .iter()
            .find(|l| l.id == list_id)
            .cloned()
            .ok_or_else(|| EngineError::Unavailable("list not recorded".into()))?;
        Ok((record, list))
    }

    /// Scans a ticket in or out on a check-in list (the default list without `list_id`): the
    /// ticket's pool decides, exactly once per ticket and list. A duplicate is an answer
    /// (`ScanResult::Duplicate`, with the admission that stands), not an error.
    pub async fn scan(
        &self,
        req: ScanRequest,
    ) -> EngineResult<(TicketRoute, ScanResult, Admission)> {
        if let Some(g) = &req.gate
            && (g.trim().is_empty() || g.chars().count() > GATE_LEN_MAX)
        {
            return Err(DomainError::Validation(vec![FieldError::new(
                "gate",
                format!("must be 1 to {GATE_LEN_MAX} characters"),
            )])
            .into());
        }
        let ticket = self.ticket_route(req.ticket_id)?;
        if ticket.event_id != req.event_id {
            return Err(DomainError::WrongEvent.into());
        }
        let h = self.handle(req.event_id).await?;
        let rules = match req.list_id {
            None => ListRules::default_list(),
            Some(id) => h
                .shared
                .record()
                .checkin_lists
                .iter()
                .find(|l| l.id == id)
                .map(CheckInList::rules)
                .ok_or(DomainError::CheckInListNotFound)?,
        };
        let command = PoolCommand::Scan(Box::new(ScanCommand {
            registration_id: ticket.registration_id,
            ticket_id: req.ticket_id,
            ticket_index: ticket.index,
            ticket_type_id: ticket.ticket_type_id,
            list: rules,
            direction: req.direction,
            gate: req.gate,
            scanned_at: req.scanned_at,
            nonce: req.nonce,
        }));
        let result = self.call_pool(&h, ticket.pool_id, command).await;
        match result {
            Ok(PoolOutcome::Scanned { result, first }) => Ok((ticket, result, first)),
            // The pool forgets canceled registrations: a ticket it does not know, of a
            // registration the read model shows canceled, is a revoked ticket.
            Err(EngineError::Domain(DomainError::TicketNotFound))
                if self.registration(ticket.registration_id)?.status
                    == RegistrationStatus::Canceled =>
            {
                Err(DomainError::TicketRevoked.into())
            }
            Err(e) => Err(e),
            _ => Err(EngineError::Unavailable("unexpected outcome".into())),
        }
    }

    /// A ticket, from its read model.
    pub fn ticket(&self, id: TicketId) -> EngineResult<TicketView> {
        self.ctx
            .store
            .ticket(id)
            .map_err(EngineError::Store)?
            .ok_or(DomainError::TicketNotFound.into())
    }

    /// Where a ticket's scans go: from memory when known, else from its read model.
    pub fn ticket_route(&self, id: TicketId) -> EngineResult<TicketRoute> {
        if let Some(route) = self.routes.get(&id) {
            return Ok(route);
        }
        let route = TicketRoute::from(&self.ticket(id)?);
        self.routes.put(id, route);
        Ok(route)
    }

    /// Keeps the routes of a confirmed registration's tickets in memory (doors prep), so
    /// their scans read nothing from the store.
    pub fn remember_routes(&self, registration: &RegistrationView) {
        for (index, &id) in registration.tickets.iter().enumerate() {
            let route = TicketRoute {
                id,
                registration_id: registration.id,
                event_id: registration.event_id,
                pool_id: registration.pool_id,
                ticket_type_id: registration.ticket_type_id,
                // At most PER_ORDER_MAX (100) tickets per registration.
                index: index as u16,
            };
            self.routes.put(id, route);
        }
    }

    /// The id of the event's current ticket-signing key (`None` for an unknown event): from
    /// the active event's record in memory, else from the store. Scanning asks this per scan.
    pub fn ticket_key(&self, id: EventId) -> EngineResult<Option<u8>> {
        match self.event_record(id) {
            Ok(record) => Ok(Some(record.ticket_key)),
            Err(EngineError::Domain(DomainError::EventNotFound)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The event's check-in statistics (admissions, duplicates, exits, per gate, per minute).
    pub fn checkin_stats(&self, event: EventId) -> EngineResult<CheckInStats> {
        self.ctx
            .store
            .checkin_stats(event)
            .map_err(EngineError::Store)
    }

    /// The event's revoked tickets after version `since` (at most `limit`), with the latest
    /// version.
    pub fn revocations(
        &self,
        event: EventId,
        since: u64,
        limit: usize,
    ) -> EngineResult<(Vec<Revocation>, u64)> {
        self.ctx
            .store
            .revocations(event, since, limit)
            .map_err(EngineError::Store)
    }
}

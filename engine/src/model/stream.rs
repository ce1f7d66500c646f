//! The event stream: the domain events of an event (`EventEvent`) and how its record is
//! built from them, live and on replay.

use super::{
    CheckInList, EventPatch, EventRecord, EventRole, EventStatus, IdempotencyToken, NewEvent,
    PoolDef, TicketType,
};
use crate::error::DomainError;
use crate::ids::{EventId, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Domain events of an event stream. Applied by `EventRecord::apply` both live and on replay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventEvent {
    /// The event was created as a draft.
    Created {
        id: EventId,
        settings: NewEvent,
        /// The TTL in force (settings or engine default).
        hold_ttl_secs: u32,
        at: DateTime<Utc>,
        /// The client's idempotency key, if it sent one.
        #[serde(default)]
        idempotency: Option<IdempotencyToken>,
        /// Who created it.
        #[serde(default)]
        owner: Option<UserId>,
    },
    /// Settings changed.
    Updated {
        /// What changed.
        patch: EventPatch,
        at: DateTime<Utc>,
    },
    /// An account was given a role in the event (or a new one), or lost it (`role: None`).
    MemberSet {
        user: UserId,
        /// Its role from now on; none removes it.
        role: Option<EventRole>,
        at: DateTime<Utc>,
    },
    /// The ticket-signing key was rotated: codes signed with older keys stop working.
    TicketKeyRotated {
        /// The new key's id.
        key: u8,
        at: DateTime<Utc>,
    },
    /// A check-in list was created.
    CheckInListCreated {
        list: CheckInList,
        at: DateTime<Utc>,
    },
    /// Put on sale.
    Published { at: DateTime<Utc> },
    /// Called off.
    Canceled { at: DateTime<Utc> },
    /// Over.
    Completed { at: DateTime<Utc> },
    /// A ticket type was added, with its new pool if it did not share one.
    TicketTypeCreated {
        ticket_type: TicketType,
        /// The pool created for it, if any.
        new_pool: Option<PoolDef>,
        at: DateTime<Utc>,
        /// The client's idempotency key, if it sent one.
        #[serde(default)]
        idempotency: Option<IdempotencyToken>,
    },
}

impl EventRecord {
    /// The record an event stream starts with, from its first event.
    pub fn from_created(event: &EventEvent) -> Option<Self> {
        match event {
            EventEvent::Created {
                id,
                settings,
                hold_ttl_secs,
                at,
                owner,
                ..
            } => Some(EventRecord {
                id: *id,
                title: settings.title.clone(),
                description: settings.description.clone(),
                venue: settings.venue.clone(),
                category: settings.category.clone(),
                starts_at: settings.starts_at,
                ends_at: settings.ends_at,
                hold_ttl_secs: *hold_ttl_secs,
                refund_until: settings.refund_until,
                bank_transfer: settings.bank_transfer.clone(),
                invoicing: settings.invoicing.clone(),
                reminder_offsets_secs: settings.reminder_offsets_secs.clone(),
                branding: settings.branding.clone(),
                locale: settings.locale.clone(),
                status: EventStatus::Draft,
                created_at: *at,
                updated_at: *at,
                ticket_types: Vec::new(),
                pools: Vec::new(),
                version: 1,
                owner: *owner,
                members: Vec::new(),
                ticket_key: 1,
                checkin_lists: Vec::new(),
            }),
            _ => None,
        }
    }

    /// A settings change: what the patch sets replaces what the record had.
    fn apply_patch(&mut self, p: super::EventPatch) {
        if let Some(v) = p.title {
            self.title = v;
        }
        if let Some(v) = p.description {
            self.description = v;
        }
        if let Some(v) = p.venue {
            self.venue = Some(v);
        }
        if let Some(v) = p.category {
            self.category = Some(v);
        }
        if let Some(v) = p.starts_at {
            self.starts_at = v;
        }
        if let Some(v) = p.ends_at {
            self.ends_at = v;
        }
        if let Some(v) = p.hold_ttl_secs {
            self.hold_ttl_secs = v;
        }
        if let Some(v) = p.refund_until {
            self.refund_until = Some(v);
        }
        if let Some(v) = p.bank_transfer {
            self.bank_transfer = Some(v);
        }
        if let Some(v) = p.invoicing {
            self.invoicing = Some(v);
        }
        if let Some(v) = p.reminder_offsets_secs {
            self.reminder_offsets_secs = Some(v);
        }
        if let Some(v) = p.branding {
            self.branding = Some(v);
        }
        if let Some(v) = p.locale {
            self.locale = Some(v);
        }
    }

    /// Applies a later event of the stream (sequence `seq`).
    pub fn apply(&mut self, seq: u64, event: &EventEvent) {
        match event {
            EventEvent::Created { .. } => {}
            EventEvent::Updated { patch, at } => {
                self.apply_patch(patch.clone());
                self.updated_at = *at;
            }
            EventEvent::MemberSet { user, role, at } => {
                match (self.members.binary_search_by_key(user, |(u, _)| *u), role) {
                    (Ok(i), Some(role)) => self.members[i].1 = *role,
                    (Ok(i), None) => {
                        self.members.remove(i);
                    }
                    (Err(i), Some(role)) => self.members.insert(i, (*user, *role)),
                    (Err(_), None) => {}
                }
                self.updated_at = *at;
            }
            EventEvent::TicketKeyRotated { key, at } => {
                self.ticket_key = *key;
                self.updated_at = *at;
            }
            EventEvent::CheckInListCreated { list, at } => {
                self.checkin_lists.push(list.clone());
                self.updated_at = *at;
            }
            EventEvent::Published { at } => self.transition(EventStatus::Published, *at),
            EventEvent::Canceled { at } => self.transition(EventStatus::Canceled, *at),
            EventEvent::Completed { at } => self.transition(EventStatus::Completed, *at),
            EventEvent::TicketTypeCreated {
                ticket_type,
                new_pool,
                at,
                ..
            } => {
                if let Some(pool) = new_pool {
                    self.pools.push(*pool);
                }
                self.ticket_types.push(ticket_type.clone());
                self.updated_at = *at;
            }
        }
        self.version = seq;
    }

    fn transition(&mut self, to: EventStatus, at: DateTime<Utc>) {
        self.status = to;
        self.updated_at = at;
    }

    /// Whether the lifecycle allows `to` from the current status.
    pub fn check_transition(
        &self,
        to: EventStatus,
        action: &'static str,
    ) -> Result<(), DomainError> {
        let allowed = matches!(
            (self.status, to),
            (EventStatus::Draft, EventStatus::Published)
                | (EventStatus::Draft, EventStatus::Canceled)
                | (EventStatus::Published, EventStatus::Canceled)
                | (EventStatus::Published, EventStatus::Completed)
        );
        if allowed {
            Ok(())
        } else {
            Err(DomainError::InvalidTransition {
                from: self.status,
                action,
            })
        }
    }
}

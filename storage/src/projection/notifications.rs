//! Messages the read model decides itself: a confirmed registration's tickets go to its
//! attendee, a canceled one is told, and a hold the pool found unpaid (`PaymentDue`) is
//! sent its payment link. They are written with the change (so the sale's path pays no outbox
//! room for them and never waits on one), as deliveries for the channels' workers.

use super::Overlay;
use crate::codec::decode;
use crate::error::err;
use crate::store::Db;
use chrono::{DateTime, Utc};
use engine::ids::{EventId, RegistrationId};
use engine::model::{EventRecord, EventStatus};
use engine::notify::AttendeeNotice;
use engine::ports::StoreError;
use fjall::OwnedWriteBatch;

impl Overlay {
    /// The confirmation message of a registration just confirmed.
    pub(super) fn confirmation_notice(
        &mut self,
        db: &Db,
        registration_id: RegistrationId,
    ) -> Result<(), StoreError> {
        let Some(at) = self.registration(db, registration_id)?.confirmed_at else {
            return Ok(());
        };
        self.attendee_notice(db, registration_id, at, AttendeeNotice::Confirmed)
    }

    /// The payment link of a hold the pool found still unpaid `at` (its worker skips it if
    /// the hold is paid or ended by the time its turn comes), unless its event is no longer
    /// on sale (canceled or over: paying would be refused).
    pub(super) fn payment_due_notice(
        &mut self,
        db: &Db,
        registration_id: RegistrationId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let event_id = self.registration(db, registration_id)?.event_id;
        if self.event_status(db, event_id)? != Some(EventStatus::Published) {
            return Ok(());
        }
        self.attendee_notice(db, registration_id, at, AttendeeNotice::PaymentDue)
    }

    /// The cancellation message of a confirmed registration just canceled, unless its event
    /// was canceled (the event's cancellation tells everyone itself).
    pub(super) fn cancellation_notice(
        &mut self,
        db: &Db,
        registration_id: RegistrationId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let view = self.registration(db, registration_id)?;
        let (confirmed, event_id) = (view.confirmed_at.is_some(), view.event_id);
        if !confirmed || self.event_status(db, event_id)? == Some(EventStatus::Canceled) {
            return Ok(());
        }
        self.attendee_notice(db, registration_id, at, AttendeeNotice::Canceled)
    }

    /// The registration's attendee's `notice` at `at`, with its deliveries (due then), into
    /// this batch.
    fn attendee_notice(
        &mut self,
        db: &Db,
        registration_id: RegistrationId,
        at: DateTime<Utc>,
        notice: AttendeeNotice,
    ) -> Result<(), StoreError> {
        let view = self.registration(db, registration_id)?;
        let message = engine::notify::attendee_message(
            notice,
            &view.attendee.email,
            view.user_id,
            view.event_id,
            registration_id,
            at,
        );
        let deliveries = engine::notify::plan(&message, at, db.delivery_state.channels());
        self.notices.push((message, deliveries));
        Ok(())
    }

    /// The event's status as this batch leaves it (none: unknown).
    fn event_status(
        &mut self,
        db: &Db,
        event_id: EventId,
    ) -> Result<Option<EventStatus>, StoreError> {
        if let Some(record) = self.event_records.get(&event_id) {
            return Ok(Some(record.status));
        }
        let Some(bytes) = db.events.get(event_id.as_bytes()).map_err(err)? else {
            return Ok(None);
        };
        let record: EventRecord = decode(&bytes)?;
        let status = record.status;
        // Kept: a mass cancellation reads the event once per batch.
        self.event_records.insert(event_id, record);
        Ok(Some(status))
    }

    /// The batch's messages and their deliveries into the write batch.
    pub(super) fn write_notices(
        &mut self,
        db: &Db,
        batch: &mut OwnedWriteBatch,
    ) -> Result<(), StoreError> {
        for (message, deliveries) in self.notices.drain(..) {
            db.stage_deliveries(batch, &message, &deliveries)?;
        }
        Ok(())
    }
}

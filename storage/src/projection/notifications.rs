//! Messages the read model decides itself: a confirmed registration's tickets go to its
//! attendee. They are written with the confirmation (so the sale's path pays no outbox room
//! for them and never waits on one), as deliveries ready for the channels' workers.

use super::Overlay;
use crate::store::Db;
use engine::ids::RegistrationId;
use engine::ports::StoreError;
use fjall::OwnedWriteBatch;

impl Overlay {
    /// The confirmation message of a registration just confirmed.
    pub(super) fn confirmation_notice(
        &mut self,
        db: &Db,
        registration_id: RegistrationId,
    ) -> Result<(), StoreError> {
        let view = self.registration(db, registration_id)?;
        let Some(at) = view.confirmed_at else {
            return Ok(());
        };
        let message = engine::notify::confirmation_message(
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

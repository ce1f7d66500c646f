//! Invoices in the read models: the documents of the ledger streams, and the invoice jobs that
//! tell the invoice relay which registrations may be due one (a priced confirmation, money
//! refunded), written in the batch of the pool decision.

use super::Overlay;
use crate::codec::encode;
use crate::keys;
use crate::store::Db;
use engine::ids::RegistrationId;
use engine::invoice::LedgerEvent;
use engine::ports::StoreError;
use fjall::OwnedWriteBatch;

impl Overlay {
    /// A ledger event: the document it issued.
    pub fn project_ledger(&mut self, event: LedgerEvent) {
        match event {
            LedgerEvent::Issued(document) => self.documents.push(*document),
        }
    }

    /// An invoice job for a registration that was confirmed at a price (an invoice may be
    /// due, or a credit note after a refund). Each job has its own id, so the relay removes
    /// only the jobs it read, never one written after it read them.
    pub(super) fn invoice_job(
        &mut self,
        db: &Db,
        registration_id: RegistrationId,
    ) -> Result<(), StoreError> {
        let view = self.registration(db, registration_id)?;
        let priced = view.price.as_ref().is_some_and(|p| p.total_minor > 0);
        if priced && view.confirmed_at.is_some() {
            self.invoice_jobs
                .push((uuid::Uuid::now_v7(), registration_id));
        }
        Ok(())
    }

    /// The invoice jobs and documents of the batch into the write batch.
    pub(super) fn write_invoices(
        &mut self,
        db: &Db,
        batch: &mut OwnedWriteBatch,
    ) -> Result<(), StoreError> {
        for (id, registration) in self.invoice_jobs.drain(..) {
            batch.insert(
                &db.invoice_jobs,
                id.as_bytes().to_vec(),
                registration.as_bytes().to_vec(),
            );
        }
        for document in self.documents.drain(..) {
            batch.insert(
                &db.ledger,
                keys::ledger(&document.organizer, document.number).to_vec(),
                document.registration_id.as_bytes().to_vec(),
            );
            batch.insert(
                &db.documents,
                keys::document(&document.registration_id, document.number).to_vec(),
                encode(&document)?,
            );
        }
        Ok(())
    }
}

//! Bank-statement exceptions in the read models: one row per statement line, its resolution
//! written onto it.

use super::Overlay;
use crate::keys;
use crate::store::Db;
use engine::ports::StoreError;

impl Overlay {
    /// A statements-stream event: an exception recorded, or its resolution on its row.
    pub fn project_statements(
        &mut self,
        db: &Db,
        event_id: engine::ids::EventId,
        event: engine::statement::StatementEvent,
    ) -> Result<(), StoreError> {
        use engine::statement::StatementEvent;
        match event {
            StatementEvent::ExceptionRecorded(row) => {
                let key = keys::statement_exception(&event_id, &row.line_id);
                self.statement_exceptions.insert(key, *row);
            }
            StatementEvent::ExceptionResolved {
                line_id,
                resolution,
            } => {
                let key = keys::statement_exception(&event_id, &line_id);
                let row = match self.statement_exceptions.remove(&key) {
                    Some(row) => Some(row),
                    None => db
                        .statement_exceptions
                        .get(&key)
                        .map_err(crate::error::err)?
                        .map(|bytes| crate::codec::decode(&bytes))
                        .transpose()?,
                };
                // Never expected (resolutions are decided on a recorded row); a batch is not
                // failed for it: the journal keeps the event, the read model skips it.
                let Some(mut row) = row else {
                    tracing::error!(line = %line_id, event = %event_id, "resolution of an unknown statement exception");
                    return Ok(());
                };
                row.resolution = Some(resolution);
                self.statement_exceptions.insert(key, row);
            }
        }
        Ok(())
    }
}

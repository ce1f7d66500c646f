//! What the pool actors count: every decided command, by command and result
//! (`regengine_engine_commands_total`), and holds per event and pool
//! (`regengine_event_holds_total`, a per-event series: it leaves the scrape when no hold came
//! for a while, which a rate reads as none).

use crate::pool::{PoolCommand, PoolOutcome};

/// The `command` label of a pool command.
pub(super) fn command_kind(command: &PoolCommand) -> &'static str {
    match command {
        PoolCommand::Hold(_) => "hold",
        PoolCommand::Confirm(_) => "confirm",
        PoolCommand::Cancel(_) => "cancel",
        PoolCommand::Scan(_) => "scan",
        PoolCommand::CreateVoucher(_) => "create_voucher",
        PoolCommand::DeactivateVoucher(_) => "deactivate_voucher",
        PoolCommand::JoinWaitlist(_) => "join_waitlist",
        PoolCommand::LeaveWaitlist { .. } => "leave_waitlist",
        PoolCommand::WaitlistPosition(_) => "waitlist_position",
        PoolCommand::ExpireDue => "expire",
        PoolCommand::CloseCanceledEvent(_) => "close_canceled",
        PoolCommand::StartPayment(_) => "start_payment",
        PoolCommand::PaymentPending { .. } => "payment_pending",
        PoolCommand::Report(..) => "payment_report",
        PoolCommand::MarkPaid { .. } => "mark_paid",
        PoolCommand::Refund(_) => "refund",
        PoolCommand::RefundSettled { .. } => "refund_settled",
    }
}

/// Counts one decided command by its kind and result; a hold also under its pool's
/// `event_labels` (event and pool).
pub(super) fn count(
    kind: &'static str,
    outcome: &Result<PoolOutcome, crate::error::DomainError>,
    event_labels: &[metrics::Label],
) {
    let result = match outcome {
        Ok(PoolOutcome::Held { replayed: true, .. }) => "replayed",
        Ok(PoolOutcome::Reported {
            duplicate: true, ..
        }) => "duplicate",
        Ok(PoolOutcome::Reported {
            ignored: Some(_), ..
        }) => "ignored",
        Ok(PoolOutcome::Scanned { result, .. }) => match result {
            crate::pool::scan::ScanResult::Admitted => "admitted",
            crate::pool::scan::ScanResult::Exited => "exited",
            crate::pool::scan::ScanResult::Duplicate => "duplicate",
        },
        Ok(_) => "ok",
        Err(crate::error::DomainError::SoldOut { .. }) => "sold_out",
        Err(crate::error::DomainError::AlreadyCheckedIn { .. }) => "duplicate",
        Err(_) => "refused",
    };
    metrics::counter!("regengine_engine_commands_total", "command" => kind, "result" => result)
        .increment(1);
    if kind == "hold" {
        let labels: Vec<metrics::Label> = event_labels
            .iter()
            .cloned()
            .chain([metrics::Label::from_static_parts("result", result)])
            .collect();
        metrics::counter!("regengine_event_holds_total", labels).increment(1);
    }
}

//! Errors of the engine. Domain refusals are values sent back through reply ports; they
//! never stop an actor. `EngineError` adds the transport-level outcomes of a call.

use crate::values::{EventStatus, RegistrationStatus};
use chrono::{DateTime, Utc};
use thiserror::Error;

/// One invalid field of a command, reported back to the client as a whole list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The field name as the client sent it (`quantity`, `attendee.email`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// A field error.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A refusal decided by the domain: the command was understood and is not allowed.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum DomainError {
    /// The command's fields failed validation.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// No such event.
    #[error("event not found")]
    EventNotFound,
    /// No such ticket type in this event.
    #[error("ticket type not found")]
    TicketTypeNotFound,
    /// No such pool in this event.
    #[error("pool not found")]
    PoolNotFound,
    /// No such registration.
    #[error("registration not found")]
    RegistrationNotFound,
    /// No such ticket.
    #[error("ticket not found")]
    TicketNotFound,
    /// The registration has no such invoice or credit note (an invoice is issued once a priced
    /// registration is paid).
    #[error("no such document: an invoice is issued once a priced registration is paid")]
    InvoiceNotFound,
    /// No such statement exception in this event.
    #[error("no such statement exception in this event")]
    ExceptionNotFound,
    /// The statement exception was resolved already.
    #[error("the statement exception was resolved already")]
    AlreadyResolved,
    /// No such delivery (message and channel).
    #[error("no such delivery")]
    DeliveryNotFound,
    /// No such webhook endpoint (or not one the caller manages).
    #[error("no such webhook endpoint")]
    WebhookEndpointNotFound,
    /// No such broadcast of this event.
    #[error("broadcast not found")]
    BroadcastNotFound,
    /// The webhook endpoint is disabled: enable it first.
    #[error("the webhook endpoint is disabled: enable it first")]
    WebhookEndpointDisabled,
    /// No such notification in the caller's inbox.
    #[error("no such notification")]
    NotificationNotFound,
    /// Only a dead delivery can be replayed or discarded.
    #[error("the delivery is {0}, not dead: only a dead delivery can be replayed or discarded")]
    DeliveryNotDead(&'static str),
    /// A credit cannot pay the registration (what is wrong with it).
    #[error("the credit cannot pay the registration: {0}")]
    AmountMismatch(String),
    /// The event's lifecycle does not allow this transition.
    #[error("event is {from:?}; cannot {action}")]
    InvalidTransition {
        /// The current status.
        from: EventStatus,
        /// The refused action.
        action: &'static str,
    },
    /// The event is not open for this operation (not published, canceled, completed).
    #[error("event is {0:?}")]
    EventNotOpen(EventStatus),
    /// Not enough seats left in the pool.
    #[error("sold out: {available} seat(s) left")]
    SoldOut {
        /// Seats still available when the request was decided.
        available: u32,
    },
    /// The registration's status does not allow this operation.
    #[error("registration is {status:?}; cannot {action}")]
    InvalidRegistrationState {
        /// The current status.
        status: RegistrationStatus,
        /// The refused action.
        action: &'static str,
    },
    /// The hold expired before it was confirmed.
    #[error("hold expired at {expired_at}")]
    HoldExpired {
        /// When the hold expired.
        expired_at: DateTime<Utc>,
    },
    /// The ticket was already admitted.
    #[error("already checked in at {at}")]
    AlreadyCheckedIn {
        /// When the first admission happened.
        at: DateTime<Utc>,
        /// At which gate it happened, if the scanner named one.
        gate: Option<String>,
    },
    /// The ticket belongs to a canceled registration.
    #[error("ticket revoked")]
    TicketRevoked,
    /// The ticket belongs to another event.
    #[error("ticket belongs to another event")]
    WrongEvent,
    /// The same idempotency key was used with a different request.
    #[error("idempotency key reused with a different request")]
    IdempotencyMismatch,
    /// The account already has as many seats of this ticket type as it may.
    #[error("at most {max} seat(s) per account; {held} already held or confirmed")]
    AccountLimitReached {
        /// The ticket type's `max_per_account`.
        max: u16,
        /// Seats the account already has.
        held: u32,
    },
    /// No such user account.
    #[error("user not found")]
    UserNotFound,
    /// Another account already uses this e-mail address.
    #[error("e-mail address already registered")]
    EmailTaken,
    /// A verification or reset token that is unknown, used, replaced or expired.
    #[error("the link is invalid, already used or expired")]
    InvalidToken,
    /// The address is verified already.
    #[error("the e-mail address is verified already")]
    EmailAlreadyVerified,
    /// The check-in list does not open before this time.
    #[error("check-in opens at {opens_at}")]
    NotYetValid {
        /// When it opens.
        opens_at: chrono::DateTime<chrono::Utc>,
    },
    /// The check-in list closed at this time.
    #[error("check-in closed at {closes_at}")]
    CheckInClosed {
        /// When it closed.
        closes_at: chrono::DateTime<chrono::Utc>,
    },
    /// The ticket's type, or the gate, is not on the check-in list.
    #[error("this ticket is not admitted at this gate")]
    NotAllowedAtGate,
    /// An exit scan of a ticket that never entered.
    #[error("the ticket was never admitted on this list")]
    NotCheckedIn,
    /// No such check-in list.
    #[error("check-in list not found")]
    CheckInListNotFound,
    /// A configured limit was reached (ticket types per event, ...).
    #[error("limit reached: {0}")]
    LimitReached(&'static str),
    /// The voucher cannot be redeemed for this hold (`unknown`, `deactivated`,
    /// `not_yet_valid`, `expired`, `wrong_ticket_type`).
    #[error("voucher not valid: {reason}")]
    VoucherNotValid {
        /// Why.
        reason: &'static str,
    },
    /// The voucher has fewer uses left than seats asked for.
    #[error("voucher used up: {remaining} use(s) left")]
    VoucherUsedUp {
        /// Uses left.
        remaining: u32,
    },
    /// The event already has a voucher with this code.
    #[error("a voucher with this code exists")]
    VoucherExists,
    /// No such voucher.
    #[error("voucher not found")]
    VoucherNotFound,
    /// Seats can be bought now: no need to wait.
    #[error("not sold out: {available} seat(s) available")]
    NotSoldOut {
        /// Seats available.
        available: u32,
    },
    /// The account already waits for this ticket type.
    #[error("already on this ticket type's waiting list")]
    AlreadyWaiting,
    /// No such waiting entry (or it is no longer waiting).
    #[error("waiting list entry not found")]
    WaitlistEntryNotFound,
    /// The ticket type is not on sale now.
    #[error("not on sale: {reason}")]
    NotOnSale {
        /// `not_started` or `ended`.
        reason: &'static str,
        /// When sales start (not started) or ended.
        at: chrono::DateTime<chrono::Utc>,
    },
    /// The registration costs money and has not been paid.
    #[error("payment required: {total_minor} {currency} due")]
    PaymentRequired {
        /// What is due, in minor units.
        total_minor: i64,
        /// Its currency.
        currency: String,
    },
    /// The registration costs nothing: there is nothing to pay or refund.
    #[error("nothing to pay")]
    NothingToPay,
    /// The registration is paid already.
    #[error("already paid")]
    AlreadyPaid,
    /// No payment is known for this registration.
    #[error("payment not found")]
    PaymentNotFound,
    /// A refund larger than what is captured and not yet refunded.
    #[error("at most {refundable_minor} can be refunded")]
    RefundTooLarge {
        /// What can still be refunded, in minor units.
        refundable_minor: i64,
    },
    /// A paid registration canceled by its buyer outside the event's refund window.
    #[error("refunds for cancellations ended {until:?}")]
    RefundWindowClosed {
        /// When the window closed (`None`: the event has none).
        until: Option<DateTime<Utc>>,
    },
    /// The provider refused to capture: the buyer has not approved the payment (yet).
    #[error("the payment is not approved")]
    PaymentNotApproved,
    /// The payment provider is not configured on this server.
    #[error("payment provider {0} is not configured")]
    ProviderNotConfigured(&'static str),
}

/// The outcome of a call into the engine that did not succeed.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum EngineError {
    /// The domain refused the command.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The actor's admission bound is full: retry later. Nothing was decided.
    #[error("overloaded")]
    Overloaded,
    /// The call did not answer in time. The command may or may not have been applied;
    /// retry with the same idempotency key.
    #[error("timed out")]
    Timeout,
    /// The actor failed or is restarting, or the journal stopped. Retry later.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A store read failed; the request fails, the process goes on.
    #[error("storage failure")]
    Store(#[from] crate::failure::StoreError),
    /// A durable write failed (not a stop, not a conflict): the process is stopping.
    #[error("storage failure")]
    Journal(#[source] crate::failure::JournalError),
    /// An invariant of the engine broke, or the host's randomness failed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl EngineError {
    /// Whether a client may retry the same request later with a chance of success.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            EngineError::Overloaded | EngineError::Timeout | EngineError::Unavailable(_)
        )
    }
}

/// Shorthand for engine call results.
pub type EngineResult<T> = Result<T, EngineError>;

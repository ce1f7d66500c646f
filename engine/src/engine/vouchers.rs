//! The facade's voucher side: creation (codes unique per event), queries, deactivation.
//! Redemption is part of the hold (`Engine::hold`), decided by the pool actor.

use super::Engine;
use crate::error::{DomainError, EngineError, EngineResult, FieldError};
use crate::ids::{EventId, PoolId, TicketTypeId, WaitlistEntryId};
use crate::model::{EventRecord, PRICE_MINOR_MAX, TicketType};
use crate::pool::voucher::{VOUCHER_CODE_LEN, VOUCHER_USES_MAX, Voucher, VoucherDef};
use crate::pool::{PoolCommand, PoolOutcome};
use crate::ports::{Page, VoucherView};
use crate::pricing::Discount;
use chrono::{DateTime, Utc};

/// A voucher to create, as the caller sent it (unvalidated).
#[derive(Clone, Debug)]
pub struct NewVoucher {
    /// The code; a random one when absent.
    pub code: Option<String>,
    /// Ticket types it is for (all in one pool).
    pub ticket_types: Vec<TicketTypeId>,
    /// Percent off each seat (1..=100).
    pub percent_off: Option<i64>,
    /// Minor units off each seat.
    pub amount_off_minor: Option<i64>,
    /// Seats it may be used for.
    pub max_uses: i64,
    /// Not redeemable before.
    pub valid_from: Option<DateTime<Utc>>,
    /// Not redeemable from then on.
    pub valid_until: Option<DateTime<Utc>>,
    /// Set its seats aside from general sale.
    pub reserve_seats: bool,
}

/// Alphabet of generated codes: no 0/O, 1/I/L.
const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
/// Length of generated codes.
const GENERATED_CODE_LEN: usize = 10;
/// Times a timed-out creation's pool is asked again before its code claim is released.
const BARRIER_ATTEMPTS: usize = 12;

/// Normalises a code as buyers type it (trimmed, upper case); `None` if it cannot be one.
pub fn normalize_code(code: &str) -> Option<String> {
    let code = code.trim().to_ascii_uppercase();
    (VOUCHER_CODE_LEN.contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_'))
    .then_some(code)
}

fn generated_code() -> String {
    // A v4 UUID is 122 random bits from the OS; 10 of its bytes make the code.
    let random = uuid::Uuid::new_v4();
    random.as_bytes()[..GENERATED_CODE_LEN]
        .iter()
        .map(|b| CODE_ALPHABET[usize::from(*b) % CODE_ALPHABET.len()] as char)
        .collect()
}

/// Validates a voucher to create against its event, reporting every problem at once: its
/// definition, and the one pool its ticket types share (which decides its uses).
fn voucher_def(
    record: &EventRecord,
    new: &NewVoucher,
    now: DateTime<Utc>,
) -> EngineResult<(VoucherDef, PoolId)> {
    let mut errors = Vec::new();
    let code = checked_code(new, &mut errors);
    let types: Vec<_> = new
        .ticket_types
        .iter()
        .map(|id| record.ticket_type(*id))
        .collect();
    let pool_id = shared_pool(new, &types, &mut errors);
    let discount = checked_discount(new, &types, &mut errors);
    check_uses_and_validity(new, now, &mut errors);
    let (Some(code), Some(pool_id), true) = (code, pool_id, errors.is_empty()) else {
        return Err(DomainError::Validation(errors).into());
    };
    let mut ticket_types = new.ticket_types.clone();
    ticket_types.sort();
    ticket_types.dedup();
    let def = VoucherDef {
        code,
        ticket_types,
        discount,
        max_uses: new.max_uses as u32,
        valid_from: new.valid_from,
        valid_until: new.valid_until,
        reserve_seats: new.reserve_seats,
    };
    Ok((def, pool_id))
}

/// The code asked for, normalised, or a generated one.
fn checked_code(new: &NewVoucher, errors: &mut Vec<FieldError>) -> Option<String> {
    let code = match &new.code {
        None => Some(generated_code()),
        Some(c) => normalize_code(c),
    };
    if code.is_none() {
        errors.push(FieldError::new(
            "code",
            format!(
                "must be {} to {} characters of A-Z, 0-9, - and _",
                VOUCHER_CODE_LEN.start(),
                VOUCHER_CODE_LEN.end()
            ),
        ));
    }
    code
}

/// The one pool of the voucher's ticket types (`types`: each looked up in the event).
fn shared_pool(
    new: &NewVoucher,
    types: &[Option<&TicketType>],
    errors: &mut Vec<FieldError>,
) -> Option<PoolId> {
    let mut pools: Vec<_> = types.iter().flatten().map(|t| t.pool_id).collect();
    pools.sort();
    pools.dedup();
    if new.ticket_types.is_empty() || types.iter().any(Option::is_none) {
        errors.push(FieldError::new(
            "ticket_type_ids",
            "must name one or more ticket types of this event",
        ));
    } else if pools.len() != 1 {
        errors.push(FieldError::new(
            "ticket_type_ids",
            "must all share one pool (a voucher's uses are decided with that pool's seats)",
        ));
    }
    pools.first().copied()
}

/// The discount asked for: a percentage or a fixed amount (then in one currency), or none.
fn checked_discount(
    new: &NewVoucher,
    types: &[Option<&TicketType>],
    errors: &mut Vec<FieldError>,
) -> Option<Discount> {
    let discount = match (new.percent_off, new.amount_off_minor) {
        (None, None) => None,
        (Some(p), None) if (1..=100).contains(&p) => Some(Discount::Percent(p as u8)),
        (None, Some(a)) if (1..=PRICE_MINOR_MAX).contains(&a) => Some(Discount::Fixed(a)),
        (Some(_), Some(_)) => {
            errors.push(FieldError::new(
                "percent_off",
                "give at most one of percent_off and amount_off_minor",
            ));
            None
        }
        (Some(_), None) => {
            errors.push(FieldError::new("percent_off", "must be between 1 and 100"));
            None
        }
        (None, Some(_)) => {
            errors.push(FieldError::new(
                "amount_off_minor",
                format!("must be between 1 and {PRICE_MINOR_MAX}"),
            ));
            None
        }
    };
    if let Some(Discount::Fixed(_)) = discount {
        let mut currencies: Vec<_> = types.iter().flatten().map(|t| &t.currency).collect();
        currencies.sort();
        currencies.dedup();
        if currencies.len() > 1 {
            errors.push(FieldError::new(
                "amount_off_minor",
                "a fixed amount needs ticket types of one currency",
            ));
        }
    }
    discount
}

/// `max_uses` in range; a validity that ends after it starts, and in the future.
fn check_uses_and_validity(new: &NewVoucher, now: DateTime<Utc>, errors: &mut Vec<FieldError>) {
    if !(1..=i64::from(VOUCHER_USES_MAX)).contains(&new.max_uses) {
        errors.push(FieldError::new(
            "max_uses",
            format!("must be between 1 and {VOUCHER_USES_MAX}"),
        ));
    }
    if let (Some(from), Some(until)) = (new.valid_from, new.valid_until)
        && until <= from
    {
        errors.push(FieldError::new("valid_until", "must be after valid_from"));
    } else if new.valid_until.is_some_and(|until| until <= now) {
        errors.push(FieldError::new("valid_until", "must be in the future"));
    }
}

impl Engine {
    /// Creates a voucher. Codes are unique in the event: a code is claimed among creations
    /// in flight, then checked against the durable voucher index, which the pool's append
    /// writes in the same batch; the claim is released only after that.
    pub async fn create_voucher(
        &self,
        event_id: EventId,
        new: NewVoucher,
    ) -> EngineResult<VoucherView> {
        let h = self.handle(event_id).await?;
        let (def, pool_id) = voucher_def(&h.shared.record(), &new, self.ctx.clock.now())?;
        let claim = format!("{event_id}/{}", def.code);
        if !self.voucher_codes.insert(claim.clone()) {
            return Err(DomainError::VoucherExists.into());
        }
        let result = self.create_voucher_claimed(event_id, pool_id, def).await;
        match &result {
            // The creation may still be in the pool's mailbox or journal queue: the claim is
            // kept until a later command of the same pool has been answered (its answer waits
            // behind the pool's earlier appends), so no other pool can take the code meanwhile.
            Err(EngineError::Timeout | EngineError::Unavailable(_)) => {
                let engine = self.clone();
                tokio::spawn(async move {
                    engine.release_after_barrier(event_id, pool_id, claim).await
                });
            }
            _ => {
                self.voucher_codes.remove(&claim);
            }
        }
        result
    }

    /// Releases a code claim once `pool` has answered a command sent after the creation.
    async fn release_after_barrier(&self, event_id: EventId, pool_id: PoolId, claim: String) {
        for _ in 0..BARRIER_ATTEMPTS {
            // Decides nothing; a place that does not exist answers "not found".
            let probe = PoolCommand::WaitlistPosition(WaitlistEntryId::new());
            match self.pool_command(event_id, pool_id, probe).await {
                Err(
                    EngineError::Timeout | EngineError::Unavailable(_) | EngineError::Overloaded,
                ) => {
                    tokio::time::sleep(self.ctx.config.call_timeout).await;
                }
                _ => {
                    self.voucher_codes.remove(&claim);
                    return;
                }
            }
        }
        // Never answered: keep the claim (the code stays refused until restart), never a
        // duplicate.
        tracing::warn!(claim, "voucher code claim kept: its pool did not answer");
    }

    async fn create_voucher_claimed(
        &self,
        event_id: EventId,
        pool_id: PoolId,
        def: VoucherDef,
    ) -> EngineResult<VoucherView> {
        match self.voucher(event_id, &def.code) {
            Ok(_) => return Err(DomainError::VoucherExists.into()),
            Err(EngineError::Domain(DomainError::VoucherNotFound)) => {}
            Err(e) => return Err(e),
        }
        let code = def.code.clone();
        self.voucher_command(event_id, pool_id, PoolCommand::CreateVoucher(Box::new(def)))
            .await?;
        // Durable, and projected in the same batch.
        self.voucher(event_id, &code)
    }

    /// Deactivates a voucher: it cannot be redeemed again, and its reserved seats go back
    /// to general sale. Registrations made with it keep their price.
    pub async fn deactivate_voucher(
        &self,
        event_id: EventId,
        code: &str,
    ) -> EngineResult<VoucherView> {
        let view = self.voucher(event_id, code)?;
        let command = PoolCommand::DeactivateVoucher(view.voucher.def.code.clone());
        self.voucher_command(event_id, view.pool_id, command)
            .await?;
        self.voucher(event_id, code)
    }

    async fn voucher_command(
        &self,
        event_id: EventId,
        pool_id: crate::ids::PoolId,
        command: PoolCommand,
    ) -> EngineResult<Box<Voucher>> {
        match self.pool_command(event_id, pool_id, command).await? {
            PoolOutcome::Voucher(v) => Ok(v),
            _ => Err(EngineError::Unavailable("unexpected outcome".into())),
        }
    }

    /// The event's voucher `code` (as buyers type it), from its read model.
    pub fn voucher(&self, event_id: EventId, code: &str) -> EngineResult<VoucherView> {
        let code = normalize_code(code).ok_or(DomainError::VoucherNotFound)?;
        self.ctx
            .store
            .voucher(event_id, &code)
            .map_err(EngineError::Store)?
            .ok_or(DomainError::VoucherNotFound.into())
    }

    /// The event's vouchers in code order.
    pub fn vouchers(
        &self,
        event_id: EventId,
        after: Option<&str>,
        limit: usize,
    ) -> EngineResult<Page<VoucherView, String>> {
        self.event(event_id)?;
        self.ctx
            .store
            .vouchers(event_id, after, limit)
            .map_err(EngineError::Store)
    }
}

impl Engine {
    /// What `quantity` seats of `ticket_type_id` would cost, with `voucher` if given: the same
    /// calculation a hold makes. Not binding: the voucher is checked against its read model,
    /// and only a hold decides a use (and the price it records).
    pub fn quote(
        &self,
        event_id: EventId,
        ticket_type_id: TicketTypeId,
        quantity: i64,
        voucher: Option<&str>,
    ) -> EngineResult<crate::pricing::Price> {
        let record = self.event(event_id)?;
        let tt = record.ticket_type(ticket_type_id).ok_or_else(|| {
            DomainError::Validation(vec![FieldError::new(
                "ticket_type_id",
                "no such ticket type in this event",
            )])
        })?;
        if quantity < i64::from(tt.min_per_order) || quantity > i64::from(tt.max_per_order) {
            return Err(DomainError::Validation(vec![FieldError::new(
                "quantity",
                format!(
                    "must be between {} and {} (the ticket type's order limits)",
                    tt.min_per_order, tt.max_per_order
                ),
            )])
            .into());
        }
        // Checked above against max_per_order (at most PER_ORDER_MAX).
        let quantity = quantity as u16;
        let redeemed = match voucher {
            None => None,
            Some(code) => {
                let unknown = DomainError::VoucherNotValid { reason: "unknown" };
                let code = normalize_code(code).ok_or(unknown.clone())?;
                let view = self
                    .ctx
                    .store
                    .voucher(event_id, &code)
                    .map_err(EngineError::Store)?
                    .ok_or(unknown)?;
                let v = &view.voucher;
                if !v.active {
                    return Err(DomainError::VoucherNotValid {
                        reason: "deactivated",
                    }
                    .into());
                }
                if let Some(reason) = v.def.refusal(tt.id, self.ctx.clock.now()) {
                    return Err(DomainError::VoucherNotValid { reason }.into());
                }
                if u32::from(quantity) > v.remaining() {
                    return Err(DomainError::VoucherUsedUp {
                        remaining: v.remaining(),
                    }
                    .into());
                }
                Some((code, v.def.discount))
            }
        };
        Ok(crate::pricing::quote(
            tt.price_minor,
            &tt.currency,
            quantity,
            redeemed.as_ref().map(|(code, d)| (code.as_str(), *d)),
        )
        .taxed(Some(tt.tax_rule(&record))))
    }
}

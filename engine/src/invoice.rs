//! Invoices and credit notes: what a document says, and which document a registration is
//! due. Pure: the facade (`engine/invoices.rs`) reads the state, asks [`due`], and appends the
//! result to the organizer's ledger stream, whose sequence number is the document's number.
//!
//! A document is built from what the journal recorded: the price and VAT decided with the
//! hold (`Price`), the money the pool recorded (`Payment`), and the settings in force when it is
//! issued (seller, buyer). It carries all of it, so it reads the same forever.
//!
//! - An **invoice** is due once for a priced registration that was confirmed (by a payment or
//!   a manager's mark-paid): a line for the seats of its ticket type, a line for a voucher's
//!   discount, a VAT row, and totals equal to the price the buyer paid.
//! - A **credit note** is due for money refunded and not yet credited: the refund of the whole
//!   invoice mirrors its lines, a partial refund is one line at the invoice's VAT rate.
//!   Credit notes never credit more than their invoice.

pub(crate) mod document;

pub use document::{Document, DocumentKind, LedgerEvent, Line, Party, VatRow, display_number};

use crate::ids::UserId;
use crate::model::EventRecord;
use crate::ports::RegistrationView;
use crate::pricing::{Tax, TaxRule};
use chrono::{DateTime, Utc};

/// What a document is issued from, besides the registration: the event, and the seller when
/// the event names none (the organizer's account).
pub struct Context<'a> {
    pub event: &'a EventRecord,
    pub organizer: UserId,
    /// The organizer's account name and e-mail, for events without invoicing settings.
    pub fallback_seller: Party,
    pub now: DateTime<Utc>,
}

/// The next document `view` is due, given the documents it has (`existing`), numbered 0 (the
/// ledger numbers it); none when it has every document it should.
pub fn due(view: &RegistrationView, existing: &[Document], cx: &Context<'_>) -> Option<Document> {
    let price = view.price.as_ref().filter(|p| p.total_minor > 0)?;
    let invoice = existing
        .iter()
        .find(|d| d.kind == DocumentKind::Invoice && d.registration_id == view.id);
    let Some(invoice) = invoice else {
        return view
            .confirmed_at
            .is_some()
            .then(|| invoice_of(view, price, cx));
    };
    let notes: Vec<&Document> = existing
        .iter()
        .filter(|d| {
            d.kind
                == (DocumentKind::CreditNote {
                    corrects: invoice.number,
                })
        })
        .collect();
    let credited: i64 = notes.iter().map(|d| -d.gross_minor).sum();
    // Only the sale's money: a double payment's refund credits nothing.
    let refunded = view
        .payment
        .as_ref()
        .map_or(0, |p| p.refunded_of_first_capture())
        .min(invoice.gross_minor);
    (refunded > credited).then(|| credit_note(invoice, &notes, refunded - credited, cx.now))
}

fn invoice_of(
    view: &RegistrationView,
    price: &crate::pricing::Price,
    cx: &Context<'_>,
) -> Document {
    let tax = price.tax.unwrap_or_else(|| {
        Tax::of(
            price.total_minor,
            TaxRule {
                rate_bp: 0,
                included: true,
            },
        )
    });
    let rate = tax.rate_bp;
    let ticket_type = cx
        .event
        .ticket_type(view.ticket_type_id)
        .map_or_else(|| "Ticket".to_owned(), |t| t.name.clone());
    let quantity = i64::from(price.quantity);
    let mut lines = vec![Line {
        description: format!("{ticket_type} – {}", cx.event.title),
        quantity,
        unit_minor: price.unit_minor,
        amount_minor: price.subtotal_minor,
        vat_rate_bp: rate,
    }];
    if price.discount_minor > 0 {
        lines.push(Line {
            description: format!("Voucher {}", price.voucher.as_deref().unwrap_or("")),
            quantity,
            unit_minor: -price.discount_minor / quantity.max(1),
            amount_minor: -price.discount_minor,
            vat_rate_bp: rate,
        });
    }
    Document {
        number: 0,
        organizer: cx.organizer,
        kind: DocumentKind::Invoice,
        registration_id: view.id,
        event_id: view.event_id,
        event_title: cx.event.title.clone(),
        event_starts_at: cx.event.starts_at,
        issued_at: cx.now,
        seller: seller(cx),
        buyer: buyer(view),
        currency: price.currency.clone(),
        prices_include_vat: tax.included,
        lines,
        vat: vec![VatRow {
            rate_bp: rate,
            net_minor: tax.net_minor,
            vat_minor: tax.vat_minor,
            gross_minor: price.total_minor,
        }],
        net_minor: tax.net_minor,
        vat_minor: tax.vat_minor,
        gross_minor: price.total_minor,
        paid_by: view
            .payment
            .as_ref()
            .map(|p| p.provider.as_str().to_owned()),
    }
}

/// The event's seller, else the organizer's account.
fn seller(cx: &Context<'_>) -> Party {
    cx.event.invoicing.as_ref().map_or_else(
        || cx.fallback_seller.clone(),
        |i| Party {
            name: i.seller_name.clone(),
            address: i.seller_address.clone(),
            vat_id: i.seller_vat_id.clone(),
            // The organizer's account e-mail is not the business's: only what it set.
            email: String::new(),
        },
    )
}

/// The buyer's billing details if given at checkout, else the attendee.
fn buyer(view: &RegistrationView) -> Party {
    match view.payment.as_ref().and_then(|p| p.billing.clone()) {
        Some(billing) => Party {
            email: view.attendee.email.clone(),
            ..billing
        },
        None => Party {
            name: view.attendee.name.clone(),
            email: view.attendee.email.clone(),
            ..Party::default()
        },
    }
}

/// A credit note of `amount` (gross, > 0) against `invoice`, after the `notes` already issued
/// for it: the invoice's lines negated when it credits the whole invoice at once, else one
/// refund line at the invoice's VAT rate. The note that completes the refund takes what is
/// left of the invoice's net and VAT, so an invoice and its notes always net to zero.
fn credit_note(
    invoice: &Document,
    notes: &[&Document],
    amount: i64,
    now: DateTime<Utc>,
) -> Document {
    let whole = notes.is_empty();
    let mut note = invoice.clone();
    note.number = 0;
    note.kind = DocumentKind::CreditNote {
        corrects: invoice.number,
    };
    note.issued_at = now;
    if whole && amount == invoice.gross_minor {
        for line in &mut note.lines {
            line.quantity = -line.quantity;
            line.amount_minor = -line.amount_minor;
        }
        for row in &mut note.vat {
            *row = VatRow {
                rate_bp: row.rate_bp,
                net_minor: -row.net_minor,
                vat_minor: -row.vat_minor,
                gross_minor: -row.gross_minor,
            };
        }
    } else {
        let rate = invoice.vat.first().map_or(0, |r| r.rate_bp);
        let mut tax = Tax::of(
            amount,
            TaxRule {
                rate_bp: rate,
                included: true,
            },
        );
        let credited: i64 = notes.iter().map(|d| -d.gross_minor).sum();
        if credited + amount == invoice.gross_minor {
            let net_left = invoice.net_minor + notes.iter().map(|d| d.net_minor).sum::<i64>();
            tax.net_minor = net_left;
            tax.vat_minor = amount - net_left;
        }
        let shown = if invoice.prices_include_vat {
            amount
        } else {
            tax.net_minor
        };
        note.lines = vec![Line {
            description: format!("Refund, invoice {}", invoice.display_number()),
            quantity: 1,
            unit_minor: -shown,
            amount_minor: -shown,
            vat_rate_bp: rate,
        }];
        note.vat = vec![VatRow {
            rate_bp: rate,
            net_minor: -tax.net_minor,
            vat_minor: -tax.vat_minor,
            gross_minor: -amount,
        }];
    }
    note.net_minor = note.vat.iter().map(|r| r.net_minor).sum();
    note.vat_minor = note.vat.iter().map(|r| r.vat_minor).sum();
    note.gross_minor = note.vat.iter().map(|r| r.gross_minor).sum();
    note
}

#[cfg(test)]
mod tests;

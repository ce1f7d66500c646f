use super::*;
use crate::ids::{EventId, PoolId, RegistrationId, TicketTypeId};
use crate::model::{Attendee, EventStatus, InvoiceSettings, RegistrationStatus, TicketType};
use crate::payment::{PaymentState, Provider};
use crate::pool::payment::{Capture, Payment};
use crate::pricing::{Discount, quote};

fn event(prices_include_vat: bool) -> EventRecord {
    let at = Utc::now();
    let mut record = EventRecord::from_created(&crate::model::EventEvent::Created {
        id: EventId::new(),
        settings: crate::model::NewEvent {
            title: "RustConf".into(),
            description: String::new(),
            venue: None,
            category: None,
            starts_at: at,
            ends_at: at + chrono::Duration::hours(8),
            hold_ttl_secs: None,
            refund_until: None,
            bank_transfer: None,
            invoicing: Some(InvoiceSettings {
                seller_name: "Conf GmbH".into(),
                seller_address: vec!["Hauptstr. 1".into(), "10115 Berlin".into()],
                seller_vat_id: "DE123456789".into(),
                prices_include_vat,
            }),
            reminder_offsets_secs: None,
            branding: None,
            locale: None,
        },
        hold_ttl_secs: 600,
        at,
        idempotency: None,
        owner: None,
    })
    .expect("a created event");
    record.status = EventStatus::Published;
    record.ticket_types.push(TicketType {
        id: TicketTypeId::new(),
        name: "Standard".into(),
        price_minor: 8500,
        currency: "EUR".into(),
        pool_id: PoolId::new(),
        max_per_order: 10,
        max_per_account: None,
        created_at: at,
        min_per_order: 1,
        sales_start: None,
        sales_end: None,
        vat_rate_bp: 1900,
    });
    record
}

/// A confirmed registration of `quantity` seats at `unit`, paid, of which `refunded` went back.
fn paid(
    record: &EventRecord,
    unit: i64,
    quantity: u16,
    voucher: bool,
    refunded: i64,
) -> RegistrationView {
    let tt = &record.ticket_types[0];
    let discount = voucher.then_some(("SPRING", Some(Discount::Percent(10))));
    let price = quote(unit, "EUR", quantity, discount).taxed(Some(tt.tax_rule(record)));
    let mut view = RegistrationView::held(crate::ports::NewHold {
        id: RegistrationId::new(),
        event_id: record.id,
        pool_id: tt.pool_id,
        ticket_type_id: tt.id,
        quantity,
        attendee: Attendee::new("Ada Lovelace", "ada@example.com").expect("valid"),
        user_id: None,
        expires_at: Utc::now(),
        at: Utc::now(),
        price: Some(price.clone()),
        waitlist_entry: None,
    });
    view.status = RegistrationStatus::Confirmed;
    view.confirmed_at = Some(Utc::now());
    view.payment = Some(Payment {
        provider: Provider::Stripe,
        attempt: 1,
        provider_ref: Some("pi_1".into()),
        amount_minor: price.total_minor,
        currency: "EUR".into(),
        attempt_state: PaymentState::Succeeded,
        captures: vec![Capture {
            provider: Provider::Stripe,
            provider_ref: "pi_1".into(),
            amount_minor: price.total_minor,
            refunded_reported_minor: refunded,
        }],
        refunds: Vec::new(),
        disputed: false,
        seen: Default::default(),
        quantity,
        account: None,
        max_per_account: None,
        ended: None,
        buyer_email: String::new(),
        voucher: None,
        remind_at_ms: None,
        billing: None,
    });
    view
}

fn cx(record: &EventRecord) -> Context<'_> {
    Context {
        event: record,
        organizer: UserId::new(),
        fallback_seller: Party {
            name: "Olga".into(),
            email: "org@example.com".into(),
            ..Party::default()
        },
        now: Utc::now(),
    }
}

/// Issues everything due, numbering from 1 as the ledger would.
fn issue_all(view: &RegistrationView, cx: &Context<'_>, docs: &mut Vec<Document>) {
    while let Some(mut doc) = due(view, docs, cx) {
        doc.number = docs.len() as u64 + 1;
        docs.push(doc);
        assert!(docs.len() < 10, "documents keep coming");
    }
}

fn lines_total(d: &Document) -> i64 {
    d.lines.iter().map(|l| l.amount_minor).sum()
}

#[test]
fn a_gross_invoice_adds_up_to_what_was_paid() {
    let record = event(true);
    let view = paid(&record, 8500, 2, true, 0);
    let cx = cx(&record);
    let mut docs = Vec::new();
    issue_all(&view, &cx, &mut docs);
    assert_eq!(docs.len(), 1, "one invoice, nothing else");
    let inv = &docs[0];
    assert_eq!(inv.kind, DocumentKind::Invoice);
    assert_eq!(inv.display_number(), "INV-000001");
    // 2 × 85.00 − 2 × 8.50 = 153.00 gross; 153 / 1.19 = 128.57 net, 24.43 VAT.
    assert_eq!(inv.lines.len(), 2);
    assert_eq!(lines_total(inv), 15_300);
    assert_eq!(
        (inv.net_minor, inv.vat_minor, inv.gross_minor),
        (12_857, 2_443, 15_300)
    );
    assert_eq!(inv.seller.name, "Conf GmbH");
    assert_eq!(inv.buyer.email, "ada@example.com");
    assert_eq!(inv.paid_by.as_deref(), Some("stripe"));
}

#[test]
fn a_net_invoice_adds_vat_on_top() {
    let record = event(false);
    let view = paid(&record, 10_000, 2, false, 0);
    let mut docs = Vec::new();
    issue_all(&view, &cx(&record), &mut docs);
    let inv = &docs[0];
    assert!(!inv.prices_include_vat);
    assert_eq!(lines_total(inv), 20_000, "lines are net");
    assert_eq!(
        (inv.net_minor, inv.vat_minor, inv.gross_minor),
        (20_000, 3_800, 23_800)
    );
    assert_eq!(
        inv.gross_minor,
        view.payment.as_ref().unwrap().captured_minor()
    );
}

#[test]
fn nothing_is_due_unconfirmed_free_or_done() {
    let record = event(true);
    let cx = cx(&record);
    let mut held = paid(&record, 8500, 1, false, 0);
    held.confirmed_at = None;
    assert_eq!(due(&held, &[], &cx), None, "never confirmed: no invoice");
    let free = paid(&record, 0, 1, false, 0);
    assert_eq!(due(&free, &[], &cx), None, "free: no invoice");
}

#[test]
fn a_whole_refund_mirrors_the_invoice() {
    let record = event(true);
    let view = paid(&record, 8500, 2, true, 15_300);
    let mut docs = Vec::new();
    issue_all(&view, &cx(&record), &mut docs);
    assert_eq!(docs.len(), 2);
    let note = &docs[1];
    assert_eq!(note.kind, DocumentKind::CreditNote { corrects: 1 });
    assert_eq!(note.number, 2);
    assert_eq!(note.lines.len(), 2);
    assert_eq!(lines_total(note), -15_300);
    assert_eq!(
        (note.net_minor, note.vat_minor, note.gross_minor),
        (-12_857, -2_443, -15_300)
    );
}

#[test]
fn partial_refunds_credit_each_amount_once_and_never_more_than_the_invoice() {
    let record = event(true);
    let cx = cx(&record);
    let mut view = paid(&record, 8500, 2, false, 5_000);
    let mut docs = Vec::new();
    issue_all(&view, &cx, &mut docs);
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[1].gross_minor, -5_000);
    assert_eq!(lines_total(&docs[1]), -5_000);
    // The rest goes back later: one more note for it; a provider reporting more than was paid
    // credits only the invoice.
    view.payment.as_mut().unwrap().captures[0].refunded_reported_minor = 99_999;
    issue_all(&view, &cx, &mut docs);
    assert_eq!(docs.len(), 3);
    assert_eq!(docs[2].gross_minor, -12_000);
    let credited: i64 = docs[1..].iter().map(|d| d.gross_minor).sum();
    assert_eq!(credited, -docs[0].gross_minor);
    assert_eq!(due(&view, &docs, &cx), None);
}

#[test]
fn the_notes_of_an_invoice_net_its_vat_to_zero() {
    // 100.00 gross at 19 %: 84.03 net, 15.97 VAT. Two refunds of 50.00 must credit exactly that.
    let record = event(true);
    let cx = cx(&record);
    let mut view = paid(&record, 10_000, 1, false, 5_000);
    let mut docs = Vec::new();
    issue_all(&view, &cx, &mut docs);
    view.payment.as_mut().unwrap().captures[0].refunded_reported_minor = 10_000;
    issue_all(&view, &cx, &mut docs);
    assert_eq!(docs.len(), 3);
    assert_eq!((docs[0].net_minor, docs[0].vat_minor), (8_403, 1_597));
    let net: i64 = docs.iter().map(|d| d.net_minor).sum();
    let vat: i64 = docs.iter().map(|d| d.vat_minor).sum();
    let gross: i64 = docs.iter().map(|d| d.gross_minor).sum();
    assert_eq!((net, vat, gross), (0, 0, 0), "{docs:#?}");
}

#[test]
fn refunding_a_double_payment_credits_nothing() {
    let record = event(true);
    let cx = cx(&record);
    let mut view = paid(&record, 8500, 1, false, 0);
    // The buyer paid twice; the second capture was refunded in full.
    view.payment.as_mut().unwrap().captures.push(Capture {
        provider: Provider::Stripe,
        provider_ref: "pi_2".into(),
        amount_minor: 8500,
        refunded_reported_minor: 8500,
    });
    let mut docs = Vec::new();
    issue_all(&view, &cx, &mut docs);
    assert_eq!(docs.len(), 1, "the invoice only: {docs:#?}");
}

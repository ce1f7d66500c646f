//! Example bodies for the OpenAPI document, one per request and response type, pointed at by
//! the types' `#[schema(examples(...))]`. They tell one story so that ids match across
//! operations: Ada Lovelace holds two seats for a concert on 12 June 2027, confirms them,
//! and is admitted at gate A. Money is integer minor units (EUR cents). A leaf: it imports
//! nothing of the HTTP layer (the resources import it). `openapi/tests.rs` checks that every
//! operation has examples and that each fits its schema.

use serde_json::{Value, json};

const EVENT_ID: &str = "01a4006c-e1c0-75c2-af53-e7a38911d277";
const TICKET_TYPE_ID: &str = "01a40073-4a60-788d-88d7-3e52775065e2";
const POOL_ID: &str = "01a40079-b300-7151-baf5-d4dbafdd5d24";
const USER_ID: &str = "01a40080-1ba0-71c7-90a1-17932cfa3578";
const REGISTRATION_ID: &str = "01a40086-8440-7e27-8fcb-ce0c87b12e2e";
const TICKET_ID: &str = "01a4008c-ece0-7c0b-84b6-c0a99b782f77";
const TICKET_2_ID: &str = "01a40093-5580-7e86-8a7c-a9a33abadd96";
const LIST_ID: &str = "01a40099-be20-7a9d-8797-e8ffcc0131fd";
const WAITLIST_ID: &str = "01a400a0-26c0-7492-a786-d8f5a645434d";
const ORGANIZER_ID: &str = "01a400a6-8f60-7a44-be7c-3ed7e93ca0b3";
const STAFF_ID: &str = "01a400ac-f800-726b-b6aa-8a297e57518a";
/// The shape of a real code (`T2` + base32 of payload and signature); its signature is made
/// up, so the server refuses it as a forged code.
const TICKET_CODE: &str = "T2AIAQDJAANTQ4A5OCV5J6PI4JCHJHOANEACGOZYD4BOCLNQFJTN4C65YBUQAHGSTAPCGYRVZ6KJ3VAZPCBWRZJRUUJGSIH2GOSKOT3OHNJCGG6GXRYYIQ3TE2UBFWCY5H3MZM66QPJCAECH2THKISGPIQV7QYYUJFD5QGMDW7ISRXBXL5YH2ESQ6STG7AC";
const TICKET_NUMBER: &str = "UOER-1-000001-6";
const TICKET_2_NUMBER: &str = "UOER-1-000002-4";
const CREATED_AT: &str = "2027-03-01T09:30:00Z";
const HELD_AT: &str = "2027-04-02T10:15:00Z";
const CONFIRMED_AT: &str = "2027-04-02T10:17:42Z";
const ADMITTED_AT: &str = "2027-06-12T18:42:10Z";

// Events.

pub(super) fn create_event() -> Value {
    json!({
        "title": "Midsummer Night Concert",
        "description": "The city orchestra plays Mendelssohn under the stars.",
        "venue": "Riverside Amphitheatre, Hall B",
        "category": "music",
        "starts_at": "2027-06-12T19:00:00Z",
        "ends_at": "2027-06-12T22:30:00Z",
        "hold_ttl_secs": 600,
        "refund_until": "2027-06-05T23:59:59Z",
        "branding": {
            "name": "City Orchestra",
            "color": "#7c2d12",
            "logo_url": "https://cdn.example.org/orchestra.png",
        },
        "locale": "de",
    })
}

pub(super) fn update_event() -> Value {
    json!({"venue": "Riverside Amphitheatre, Main Stage", "ends_at": "2027-06-12T23:00:00Z"})
}

pub(super) fn create_ticket_type() -> Value {
    json!({
        "name": "Standing",
        "price_minor": 4500,
        "currency": "EUR",
        "capacity": 2000,
        "max_per_order": 6,
        "max_per_account": 10,
        "min_per_order": 1,
        "sales_start": "2027-04-01T08:00:00Z",
        "sales_end": "2027-06-12T17:00:00Z",
    })
}

pub(super) fn ticket_type() -> Value {
    json!({
        "id": TICKET_TYPE_ID,
        "name": "Standing",
        "price_minor": 4500,
        "currency": "EUR",
        "pool_id": POOL_ID,
        "capacity": 2000,
        "max_per_order": 6,
        "max_per_account": 10,
        "min_per_order": 1,
        "sales_start": "2027-04-01T08:00:00Z",
        "sales_end": "2027-06-12T17:00:00Z",
        "vat_rate_bp": 1900,
        "created_at": "2027-03-01T09:41:12Z",
    })
}

pub(super) fn event() -> Value {
    json!({
        "id": EVENT_ID,
        "title": "Midsummer Night Concert",
        "description": "The city orchestra plays Mendelssohn under the stars.",
        "venue": "Riverside Amphitheatre, Hall B",
        "category": "music",
        "starts_at": "2027-06-12T19:00:00Z",
        "ends_at": "2027-06-12T22:30:00Z",
        "hold_ttl_secs": 600,
        "refund_until": "2027-06-05T23:59:59Z",
        "branding": {
            "name": "City Orchestra",
            "color": "#7c2d12",
            "logo_url": "https://cdn.example.org/orchestra.png",
        },
        "locale": "de",
        "status": "published",
        "created_at": CREATED_AT,
        "updated_at": "2027-03-20T14:05:31Z",
        "ticket_types": [ticket_type()],
        "version": 7,
    })
}

pub(super) fn event_page() -> Value {
    json!({"items": [event()], "next_cursor": EVENT_ID})
}

pub(super) fn ticket_type_availability() -> Value {
    json!({
        "ticket_type_id": TICKET_TYPE_ID,
        "name": "Standing",
        "capacity": 2000,
        "held": 37,
        "confirmed": 1412,
        "reserved": 50,
        "available": 501,
    })
}

pub(super) fn availability() -> Value {
    json!({
        "event_id": EVENT_ID,
        "status": "published",
        "version": 1893,
        "ticket_types": [ticket_type_availability()],
    })
}

pub(super) fn member_body() -> Value {
    json!({"role": "staff"})
}

pub(super) fn member() -> Value {
    json!({"user_id": STAFF_ID, "role": "staff"})
}

// Registrations and tickets.

pub(super) fn attendee() -> Value {
    json!({"name": "Ada Lovelace", "email": "ada@example.org"})
}

pub(super) fn create_registration() -> Value {
    json!({
        "ticket_type_id": TICKET_TYPE_ID,
        "quantity": 2,
        "attendee": attendee(),
        "voucher": "EARLYBIRD20",
    })
}

pub(super) fn price() -> Value {
    json!({
        "currency": "EUR",
        "unit_price_minor": 4500,
        "quantity": 2,
        "subtotal_minor": 9000,
        "discount_minor": 1800,
        "total_minor": 7200,
        "voucher": "EARLYBIRD20",
        "vat": {"rate_bp": 1900, "included": true, "net_minor": 6050, "vat_minor": 1150},
    })
}

pub(super) fn issued_ticket() -> Value {
    json!({"id": TICKET_ID, "number": TICKET_NUMBER, "code": TICKET_CODE})
}

pub(super) fn registration() -> Value {
    json!({
        "id": REGISTRATION_ID,
        "event_id": EVENT_ID,
        "ticket_type_id": TICKET_TYPE_ID,
        "quantity": 2,
        "status": "confirmed",
        "attendee": attendee(),
        "created_at": HELD_AT,
        "expires_at": "2027-04-02T10:25:00Z",
        "updated_at": CONFIRMED_AT,
        "tickets": [
            issued_ticket(),
            {"id": TICKET_2_ID, "number": TICKET_2_NUMBER, "code": TICKET_CODE},
        ],
        "price": price(),
        "waitlist_entry_id": null,
        "payment": payment_succeeded(),
    })
}

pub(super) fn registration_page() -> Value {
    json!({"items": [registration()], "next_cursor": REGISTRATION_ID})
}

pub(super) fn ticket() -> Value {
    json!({
        "id": TICKET_ID,
        "registration_id": REGISTRATION_ID,
        "event_id": EVENT_ID,
        "ticket_type_id": TICKET_TYPE_ID,
        "number": TICKET_NUMBER,
        "code": TICKET_CODE,
        "issued_at": CONFIRMED_AT,
        "checked_in_at": ADMITTED_AT,
        "gate": "A",
    })
}

pub(super) fn verify_body() -> Value {
    json!({"ticket_code": TICKET_CODE})
}

pub(super) fn ticket_check() -> Value {
    json!({
        "result": "valid",
        "event_id": EVENT_ID,
        "ticket_id": TICKET_ID,
        "ticket_type_id": TICKET_TYPE_ID,
        "number": TICKET_NUMBER,
        "checked_in_at": null,
        "gate": null,
    })
}

pub(super) fn ticket_key() -> Value {
    json!({"key": 1, "public_key": "LeSuG18RQk1ptBqxd9caOJ8QYujEyYSwwflvC6RJd4w", "status": "active"})
}

pub(super) fn ticket_keys() -> Value {
    json!({"algorithm": "Ed25519", "current": 1, "keys": [ticket_key()]})
}

pub(super) fn revocation() -> Value {
    json!({
        "version": 3,
        "ticket_id": "01a400b3-60a0-7d1e-9b42-58c1f0e7a3d6",
        "registration_id": "01a400b9-c940-7f83-a0d5-2b9e6c4f18a7",
        "revoked_at": "2027-05-18T16:02:44Z",
    })
}

pub(super) fn revocation_page() -> Value {
    json!({"version": 3, "items": [revocation()], "next_since": null})
}

// Check-in.

pub(super) fn prepared() -> Value {
    json!({"tickets": 1412, "remembered": 1412, "elapsed_ms": 850})
}

pub(super) fn pack_entry() -> Value {
    json!({
        "lookup": "q3T1xYb0bJ8H2a7kN4WcQm5ZrE9uVf6sLdGpAo1iKhM",
        "data": "3m9Kx0PqR2sT7vWyZb4cDe8fGhJk1LnOpQrStUvWxYz0AbCdEfGhIjKlMnOpQrStUvWxYz",
    })
}

pub(super) fn offline_pack() -> Value {
    json!({
        "event_id": EVENT_ID,
        "scheme": "regengine-offline-v1",
        "key_id": 1,
        "revocations_version": 3,
        "entries": [pack_entry()],
        "next": REGISTRATION_ID,
    })
}

pub(super) fn create_list() -> Value {
    json!({
        "name": "Main entrance",
        "ticket_type_ids": [TICKET_TYPE_ID],
        "gates": ["A", "B"],
        "allow_reentry": true,
        "opens_at": "2027-06-12T17:30:00Z",
        "closes_at": "2027-06-12T21:00:00Z",
    })
}

pub(super) fn list() -> Value {
    json!({
        "id": LIST_ID,
        "name": "Main entrance",
        "ticket_type_ids": [TICKET_TYPE_ID],
        "gates": ["A", "B"],
        "allow_reentry": true,
        "opens_at": "2027-06-12T17:30:00Z",
        "closes_at": "2027-06-12T21:00:00Z",
    })
}

pub(super) fn list_page() -> Value {
    json!({"items": [list()]})
}

pub(super) fn scan() -> Value {
    json!({
        "ticket_code": TICKET_CODE,
        "gate": "A",
        "list_id": LIST_ID,
        "direction": "entry",
        "nonce": "gate-a-scanner-2-000417",
    })
}

pub(super) fn check_in() -> Value {
    json!({
        "result": "admitted",
        "ticket_id": TICKET_ID,
        "registration_id": REGISTRATION_ID,
        "ticket_type_id": TICKET_TYPE_ID,
        "admitted_at": ADMITTED_AT,
        "gate": "A",
    })
}

pub(super) fn offline_scan() -> Value {
    json!({
        "ticket_code": TICKET_CODE,
        "scanned_at": ADMITTED_AT,
        "gate": "A",
        "list_id": LIST_ID,
        "direction": "entry",
        "nonce": "gate-a-scanner-2-000418",
    })
}

pub(super) fn offline_upload() -> Value {
    json!({"scans": [offline_scan()]})
}

pub(super) fn offline_result() -> Value {
    json!({
        "result": "admitted",
        "ticket_id": TICKET_ID,
        "first_checked_in_at": ADMITTED_AT,
        "first_gate": "A",
    })
}

pub(super) fn offline_report() -> Value {
    json!({"items": [offline_result()], "admitted": 1, "duplicates": 0})
}

pub(super) fn gate_count() -> Value {
    json!({"gate": "A", "admitted": 804})
}

pub(super) fn minute_count() -> Value {
    json!({"minute": "2027-06-12T18:42:00Z", "admitted": 57})
}

pub(super) fn stats() -> Value {
    json!({
        "admitted": 1297,
        "duplicates": 12,
        "exits": 64,
        "per_gate": [gate_count(), {"gate": "B", "admitted": 493}],
        "per_minute": [minute_count()],
    })
}

// Accounts.

pub(super) fn signup() -> Value {
    json!({"email": "ada@example.org", "password": "correct horse battery staple", "name": "Ada Lovelace"})
}

pub(super) fn login() -> Value {
    json!({"email": "ada@example.org", "password": "correct horse battery staple"})
}

const REFRESH_TOKEN: &str =
    "rt1.AaQAgBugcceQoReTLPo1eJXsm8iX_xC88l8-i9CFJYWn9W0zfWk4Kjmids3APw20KpWSiVtk2kIt_U6-B4HAkA";

pub(super) fn refresh() -> Value {
    json!({"refresh_token": REFRESH_TOKEN})
}

pub(super) fn token_pair() -> Value {
    json!({
        "access_token": "eyJ0eXAiOiJhdCtqd3QiLCJhbGciOiJIUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiIwMWE0MDA4MC0xYmEwLTcxYzctOTBhMS0xNzkzMmNmYTM1NzgiLCJyb2xlcyI6WyJhdHRlbmRlZSJdLCJpc3MiOiJyZWdlbmdpbmUiLCJhdWQiOiJyZWdlbmdpbmUtYXBpIiwiZXhwIjoxODExMDYyODAwLCJuYmYiOjE4MTEwNjE5MDB9.03j8MNAxwzVqGK3_bhdAYu6wW5JPKrCx-Ist29tD-Jw",
        "token_type": "Bearer",
        "expires_in": 900,
        "refresh_token": REFRESH_TOKEN,
    })
}

pub(super) fn channel_prefs() -> Value {
    json!({"email": true, "sms": false, "push": true})
}

pub(super) fn preferences() -> Value {
    json!({
        "locale": "en-GB",
        "time_zone": "Europe/London",
        "transactional": channel_prefs(),
        "reminders": channel_prefs(),
        "marketing": {"email": false, "sms": false, "push": false},
    })
}

pub(super) fn user() -> Value {
    json!({
        "id": USER_ID,
        "email": "ada@example.org",
        "email_verified": true,
        "name": "Ada Lovelace",
        "phone": "+44 20 7946 0958",
        "organization": null,
        "roles": ["attendee"],
        "profile_complete": false,
        "missing_fields": ["organization"],
        "preferences": preferences(),
        "sessions": 2,
        "created_at": "2027-02-14T11:03:27Z",
        "updated_at": "2027-03-02T08:45:10Z",
    })
}

pub(super) fn update_me() -> Value {
    json!({"phone": "+44 20 7946 0958", "organization": null})
}

pub(super) fn roles() -> Value {
    json!({"roles": ["organizer", "attendee"]})
}

pub(super) fn password_change() -> Value {
    json!({"current_password": "correct horse battery staple", "new_password": "tr0mbone-lantern-velvet"})
}

pub(super) fn token() -> Value {
    json!({"token": "ev1.AaQAgBugcceQoReTLPo1eLTpdyvqNWedAEBDEnRlO8jhq1TfRIPB5cmygBqMpEpI"})
}

pub(super) fn reset_request() -> Value {
    json!({"email": "ada@example.org"})
}

pub(super) fn reset_confirm() -> Value {
    json!({"token": "pr1.AaQAgBugcceQoReTLPo1eLZHpSe3gkLZnAWZvN3gpC4OKcOyVgLpY6Xar9Bd5jPP", "new_password": "tr0mbone-lantern-velvet"})
}

// Organizer tools, audit, vouchers, waiting list.

pub(super) fn bulk_body() -> Value {
    json!({"registration_ids": [REGISTRATION_ID, "01a400b9-c940-7f83-a0d5-2b9e6c4f18a7"]})
}

pub(super) fn bulk_item() -> Value {
    json!({"id": REGISTRATION_ID, "result": "canceled", "status": "canceled"})
}

pub(super) fn bulk_result() -> Value {
    json!({"items": [
        bulk_item(),
        {"id": "01a400b9-c940-7f83-a0d5-2b9e6c4f18a7", "result": "not_found", "status": null},
    ]})
}

pub(super) fn audit_entry() -> Value {
    json!({
        "at": "2027-03-20T14:05:31Z",
        "actor": ORGANIZER_ID,
        "actor_roles": ["organizer"],
        "action": "POST /api/v1/events/{id}/publish",
        "target": format!("/api/v1/events/{EVENT_ID}/publish"),
        "event_id": EVENT_ID,
        "request_id": "5c0f8a2e-71d4-4b9a-8e36-d2f1a7c4b905",
        "status": 200,
    })
}

pub(super) fn audit_page() -> Value {
    json!({"items": [audit_entry()], "next_cursor": "01a4023c5e8f7a9b0c1d2e3f4a5b6c7d"})
}

pub(super) fn create_voucher() -> Value {
    json!({
        "code": "EARLYBIRD20",
        "ticket_type_ids": [TICKET_TYPE_ID],
        "percent_off": 20,
        "max_uses": 200,
        "valid_from": "2027-04-01T08:00:00Z",
        "valid_until": "2027-04-30T23:59:59Z",
        "reserve_seats": false,
    })
}

pub(super) fn voucher() -> Value {
    json!({
        "code": "EARLYBIRD20",
        "event_id": EVENT_ID,
        "pool_id": POOL_ID,
        "ticket_type_ids": [TICKET_TYPE_ID],
        "percent_off": 20,
        "amount_off_minor": null,
        "max_uses": 200,
        "uses": 46,
        "reserved_seats": 0,
        "reserve_seats": false,
        "valid_from": "2027-04-01T08:00:00Z",
        "valid_until": "2027-04-30T23:59:59Z",
        "active": true,
        "created_at": "2027-03-15T10:00:00Z",
        "updated_at": CONFIRMED_AT,
    })
}

pub(super) fn voucher_page() -> Value {
    json!({"items": [voucher()], "next_cursor": "EARLYBIRD20"})
}

pub(super) fn receipt_line() -> Value {
    json!({
        "ticket_type_id": TICKET_TYPE_ID,
        "description": "Standing",
        "quantity": 2,
        "unit_price_minor": 4500,
        "discount_minor": 1800,
        "total_minor": 7200,
    })
}

pub(super) fn receipt() -> Value {
    json!({
        "registration_id": REGISTRATION_ID,
        "event_id": EVENT_ID,
        "event_title": "Midsummer Night Concert",
        "status": "confirmed",
        "confirmed_at": CONFIRMED_AT,
        "attendee": attendee(),
        "currency": "EUR",
        "lines": [receipt_line()],
        "voucher": "EARLYBIRD20",
        "subtotal_minor": 9000,
        "discount_minor": 1800,
        "total_minor": 7200,
        "ticket_numbers": [TICKET_NUMBER, TICKET_2_NUMBER],
    })
}

pub(super) fn join_waitlist() -> Value {
    json!({"ticket_type_id": TICKET_TYPE_ID, "quantity": 2, "attendee": attendee()})
}

pub(super) fn waitlist_place() -> Value {
    json!({
        "id": WAITLIST_ID,
        "event_id": EVENT_ID,
        "ticket_type_id": TICKET_TYPE_ID,
        "quantity": 2,
        "status": "waiting",
        "position": 14,
        "registration_id": null,
        "offer_expires_at": null,
        "joined_at": "2027-05-30T20:11:05Z",
        "updated_at": "2027-05-30T20:11:05Z",
    })
}

pub(super) fn start_payment() -> Value {
    json!({"provider": "stripe", "billing": {
        "name": "Analytical Engines Ltd", "address": ["12 St James's Square", "London SW1Y 4JH"],
        "vat_id": "GB123456789"}})
}

const PAYMENT_INTENT: &str = "pi_3QhY8sLkdIwHu7ix0RzT9bMx";

pub(super) fn payment() -> Value {
    json!({
        "provider": "stripe",
        "state": "pending",
        "attempt": 1,
        "amount_minor": 7200,
        "currency": "EUR",
        "provider_ref": PAYMENT_INTENT,
        "captures": [],
        "captured_minor": 0,
        "refunded_minor": 0,
        "refunding_minor": 0,
        "disputed": false,
        "refunds": [],
    })
}

fn payment_succeeded() -> Value {
    json!({
        "provider": "stripe",
        "state": "partially_refunded",
        "attempt": 1,
        "amount_minor": 7200,
        "currency": "EUR",
        "provider_ref": PAYMENT_INTENT,
        "captures": [{
            "provider": "stripe",
            "provider_ref": PAYMENT_INTENT,
            "amount_minor": 7200,
            "refunded_reported_minor": 3600,
        }],
        "captured_minor": 7200,
        "refunded_minor": 3600,
        "refunding_minor": 0,
        "disputed": false,
        "refunds": [{
            "id": "0195f3c1-7d2a-7c41-9a8e-2b7e5d1c9f30",
            "amount_minor": 3600,
            "state": "succeeded",
            "reason": "requested",
        }],
    })
}

pub(super) fn payment_started() -> Value {
    json!({
        "registration_id": REGISTRATION_ID,
        "payment": payment(),
        "client_secret": format!("{PAYMENT_INTENT}_secret_k2Xw9TqL0cVbN3hR"),
        "approve_url": null,
        "hold_expires_at": "2027-04-02T10:35:00Z",
        "bank": null,
    })
}

pub(super) fn refund_request() -> Value {
    json!({"amount_minor": 3600})
}

pub(super) fn webhook_received() -> Value {
    json!({"result": "applied", "reason": null})
}

pub(super) fn payment_page() -> Value {
    json!({
        "items": [{
            "registration_id": REGISTRATION_ID,
            "registration_status": "confirmed",
            "attendee_email": "ada@example.org",
            "payment": payment_succeeded(),
        }],
        "next_cursor": REGISTRATION_ID,
    })
}

pub(super) fn revenue_summary() -> Value {
    json!({
        "event_id": EVENT_ID,
        "lines": [{
            "currency": "EUR", "provider": "stripe", "payments": 1412, "captured_minor": 10166400,
            "refunded_minor": 36000, "refunding_minor": 0, "net_minor": 10130400,
            "outstanding_minor": 14400, "disputed": 0,
        }],
        "confirmed_paid": 1407,
        "confirmed_totals_minor": {"EUR": 10130400},
    })
}

pub(super) fn cancellation() -> Value {
    json!({
        "event_id": EVENT_ID,
        "event_status": "canceled",
        "registrations_live": 0,
        "refunds_requested": 12,
        "refunds_succeeded": 1395,
        "refunds_failed": 0,
        "refunded_minor": {"EUR": 10044000},
        "refundable_minor": {},
        "done": false,
    })
}

pub(super) fn statement_result() -> Value {
    json!({
        "lines": 3,
        "applied": 1,
        "duplicates": 1,
        "exceptions": [{
            "line_id": "2026-12-02-0007",
            "reason": "partial",
            "reference": "RF41K3D9Q2ZP7X0M5B1C8V4N6T",
            "registration_id": REGISTRATION_ID,
            "amount_minor": 3600,
            "currency": "EUR",
            "expected_minor": 7200,
            "name": "Ada Lovelace",
            "date": "2026-12-02",
            "recorded_at": "2026-12-02T16:20:00Z",
            "resolution": null,
        }],
    })
}

pub(super) fn documents() -> Value {
    let base = format!("/api/v1/registrations/{REGISTRATION_ID}/invoices");
    json!({
        "registration_id": REGISTRATION_ID,
        "documents": [{
            "number": 41,
            "display_number": "INV-000041",
            "kind": "invoice",
            "corrects": null,
            "issued_at": "2027-05-02T10:15:00Z",
            "currency": "EUR",
            "net_minor": 6050,
            "vat_minor": 1150,
            "gross_minor": 7200,
            "pdf": format!("{base}/41.pdf"),
            "html": format!("{base}/41.html"),
            "registration_id": REGISTRATION_ID,
            "event_id": EVENT_ID,
            "buyer": "Ada Lovelace",
        }, {
            "number": 57,
            "display_number": "INV-000057",
            "kind": "credit_note",
            "corrects": 41,
            "issued_at": "2027-05-20T08:00:00Z",
            "currency": "EUR",
            "net_minor": -2521,
            "vat_minor": -479,
            "gross_minor": -3000,
            "pdf": format!("{base}/57.pdf"),
            "html": format!("{base}/57.html"),
            "registration_id": REGISTRATION_ID,
            "event_id": EVENT_ID,
            "buyer": "Ada Lovelace",
        }],
    })
}

pub(super) fn ledger_page() -> Value {
    let mut page = documents();
    let items = page["documents"].take();
    json!({"items": items, "next": 57})
}

pub(super) fn resolve_exception() -> Value {
    json!({
        "action": "apply",
        "registration_id": REGISTRATION_ID,
        "note": "Paid 80.00 instead of 72.00; 8.00 returned by transfer on 2026-12-03",
    })
}

pub(super) fn exception_list() -> Value {
    json!({
        "exceptions": [{
            "line_id": "2026-12-02-0007",
            "reason": "over",
            "reference": "RF41K3D9Q2ZP7X0M5B1C8V4N6T",
            "registration_id": REGISTRATION_ID,
            "amount_minor": 8000,
            "currency": "EUR",
            "expected_minor": 7200,
            "name": "Ada Lovelace",
            "date": "2026-12-02",
            "recorded_at": "2026-12-02T16:20:00Z",
            "resolution": null,
        }],
    })
}

pub(super) fn statement_exception() -> Value {
    json!({
        "line_id": "2026-12-02-0007",
        "reason": "over",
        "reference": "RF41K3D9Q2ZP7X0M5B1C8V4N6T",
        "registration_id": REGISTRATION_ID,
        "amount_minor": 8000,
        "currency": "EUR",
        "expected_minor": 7200,
        "name": "Ada Lovelace",
        "date": "2026-12-02",
        "recorded_at": "2026-12-02T16:20:00Z",
        "resolution": {
            "action": "apply",
            "registration_id": REGISTRATION_ID,
            "to_refund_minor": 800,
            "note": "8.00 returned by transfer",
            "by": REGISTRATION_ID,
            "at": "2026-12-03T09:00:00Z",
        },
    })
}

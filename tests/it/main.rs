//! End-to-end tests: each starts the real `gateway` binary on `127.0.0.1:0` with its own
//! data directory and talks to it over HTTP and WebSocket like any client.

mod auth;
mod authz;
mod bad_input;
mod bank_transfer;
mod broadcasts;
mod check_in;
mod checkin_storm;
mod configuration;
mod connections;
mod crash;
mod edges;
mod event_cancel;
mod expiry;
mod flash_sale;
mod hardening;
mod idempotency_scope;
mod inbox;
mod invoices;
mod mail;
mod notify;
mod ops;
mod overload_log;
mod passivation;
mod payment_due;
mod payments;
mod paypal;
mod rate_limit;
mod reminders;
mod sendgrid;
mod sms;
mod tickets;
mod vouchers;
mod waitlist;
mod webhooks;
mod websocket;

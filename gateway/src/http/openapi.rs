//! The OpenAPI 3.1 document at `/openapi.json` and Swagger UI at `/docs` (assets vendored
//! into the binary: nothing is downloaded at build or view time).

use super::AppState;
use super::auth::account::{
    ChannelPrefsDto, PreferencesDto, RolesBody, SignupBody, UpdateMe, UserDto,
};
use super::auth::{LoginBody, RefreshBody, TokenPair};
use super::error::{Problem, ProblemField};
use super::events::{
    AvailabilityDto, CreateEvent, CreateTicketType, EventDto, EventPage, MemberBody, MemberDto,
    TicketTypeAvailabilityDto, TicketTypeDto, UpdateEvent,
};
use super::registrations::tickets::TicketDto;
use super::registrations::{
    AttendeeDto, CreateRegistration, IssuedTicket, RegistrationDto, RegistrationPage,
};
use axum::Router;
use utoipa::openapi::RefOr;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

/// The document: every operation (`paths`, which follow the handlers' modules) and body type
/// (`components`), completed by [`BearerAuth`] with the answers of the stack.
#[derive(OpenApi)]
#[openapi(
    info(title = "Registration engine API", version = "0.1.0",
        description = "Flash-sale ticketing: events, ticket types, holds, confirmation, check-in. Errors are RFC 9457 problem+json."),
    paths(
        super::events::create_event, super::events::list_events, super::events::get_event, super::events::update_event,
        super::events::publish_event, super::events::cancel_event, super::events::complete_event,
        super::events::create_ticket_type, super::events::availability,
        super::registrations::create_registration, super::registrations::list_event_registrations,
        super::registrations::list_registrations_by_email, super::registrations::get_registration,
        super::registrations::confirm_registration, super::registrations::cancel_registration,
        super::checkin::check_in, super::registrations::tickets::get_ticket,
        super::checkin::create_list, super::checkin::list_lists, super::checkin::offline::upload_offline,
        super::checkin::stats, super::checkin::prepare, super::checkin::offline::offline_pack,
        super::ws::upgrade, super::ops::healthz, super::ops::readyz, super::ops::metrics,
        super::auth::account::signup, super::auth::login, super::auth::refresh, super::auth::logout,
        super::auth::account::me, super::auth::account::update_me, super::auth::account::set_roles, super::auth::account::change_password,
        super::registrations::my_registrations,
        super::events::list_members, super::events::set_member, super::events::remove_member,
        super::audit::event_audit, super::audit::global_audit,
        super::auth::account::verify_email, super::auth::account::resend_verification,
        super::auth::account::request_password_reset, super::auth::account::confirm_password_reset,
        super::registrations::tickets::ticket_qr_svg, super::registrations::tickets::ticket_qr_png,
        super::registrations::tickets::verify_ticket, super::registrations::tickets::ticket_keys,
        super::registrations::tickets::rotate_ticket_key, super::registrations::tickets::revocations,
        super::organizer::bulk_cancel, super::organizer::bulk_resend,
        super::organizer::export_registrations, super::organizer::export_tickets,
        super::vouchers::create_voucher, super::vouchers::list_vouchers, super::vouchers::get_voucher,
        super::vouchers::deactivate_voucher, super::vouchers::receipt, super::vouchers::quote,
        super::waitlist::join, super::waitlist::get_place, super::waitlist::leave,
        super::payments::start_payment, super::payments::mark_paid, super::payments::refund,
        super::payments::webhooks::stripe_webhook, super::payments::webhooks::paypal_webhook,
        super::payments::capture_payment, super::payments::report::list_payments,
        super::payments::report::summary, super::payments::report::export_payments,
        super::payments::report::cancellation, super::payments::bank::upload,
        super::payments::invoices::list_documents, super::payments::invoices::invoice_pdf,
        super::payments::invoices::invoice_html, super::payments::invoices::document_file,
        super::payments::bank::list_exceptions, super::payments::bank::resolve,
        super::payments::invoices::my_ledger, super::payments::invoices::my_ledger_csv,
        super::deliveries::list_dead, super::deliveries::message_deliveries,
        super::deliveries::replay, super::deliveries::discard, super::deliveries::replay_all, super::reports::sendgrid_events, super::reports::twilio_status,
        super::inbox::list, super::inbox::read_one, super::inbox::read_all,
        super::webhooks::create, super::webhooks::list, super::webhooks::read, super::webhooks::update,
        super::webhooks::remove, super::webhooks::rotate, super::webhooks::log, super::webhooks::replay,
        super::unsubscribe::unsubscribe, super::previews::preview,
        super::broadcasts::preview, super::broadcasts::send, super::broadcasts::list, super::broadcasts::read,
    ),
    components(schemas(
        Problem, ProblemField, CreateEvent, UpdateEvent, EventDto, EventPage, CreateTicketType, TicketTypeDto,
        AvailabilityDto, TicketTypeAvailabilityDto, CreateRegistration, AttendeeDto, RegistrationDto, RegistrationPage,
        IssuedTicket, super::checkin::CheckInBody, super::checkin::CheckInDto, TicketDto,
        super::checkin::CreateList, super::checkin::ListDto, super::checkin::ListPage,
        super::checkin::offline::OfflineScan, super::checkin::offline::OfflineUpload, super::checkin::OfflineResult,
        super::checkin::offline::OfflineReport, super::checkin::StatsDto, super::checkin::GateCount,
        super::checkin::MinuteCount, super::checkin::PreparedDto, super::checkin::offline::OfflinePack,
        super::checkin::offline::PackEntry,
        SignupBody, LoginBody, RefreshBody, TokenPair, UserDto, UpdateMe, PreferencesDto, ChannelPrefsDto, RolesBody,
        super::auth::account::PasswordChange, MemberBody, MemberDto, super::audit::AuditPage, super::audit::AuditEntryDto,
        super::auth::account::TokenBody, super::auth::account::ResetRequest, super::auth::account::ResetConfirm, super::auth::account::RoleName,
        super::registrations::tickets::VerifyBody, super::registrations::tickets::TicketCheckDto,
        super::registrations::tickets::TicketKeyDto, super::registrations::tickets::TicketKeysDto,
        super::registrations::tickets::RevocationDto, super::registrations::tickets::RevocationPage,
        super::organizer::BulkBody, super::organizer::BulkItem, super::organizer::BulkResult,
        super::vouchers::CreateVoucher, super::vouchers::VoucherDto, super::vouchers::VoucherPage,
        super::vouchers::ReceiptDto, super::vouchers::ReceiptLine, super::registrations::PriceDto,
        super::waitlist::JoinBody, super::waitlist::WaitlistDto,
        super::payments::StartPaymentBody, super::payments::PaymentDto, super::payments::RefundDto, super::payments::dto::CaptureDto, super::events::BankTransferDto,
        super::payments::PaymentStartedDto, super::payments::RefundBody, super::payments::webhooks::WebhookReceived,
        super::payments::report::PaymentItem, super::payments::report::PaymentPage,
        super::payments::report::RevenueLine, super::payments::report::RevenueSummary,
        super::payments::report::CancellationDto, super::payments::BankInstructions,
        super::payments::bank::StatementResult, super::payments::bank::StatementException,
        super::payments::invoices::DocumentDto, super::payments::invoices::DocumentList,
        super::payments::bank::ExceptionList, super::payments::bank::ResolveBody,
        super::payments::bank::ResolutionDto, super::payments::bank::ActionDto,
        super::payments::BillingDto, super::payments::invoices::LedgerPage,
        super::events::InvoicingDto, super::events::BrandingDto, super::registrations::VatDto,
        super::deliveries::DeliveryDto, super::deliveries::DeliveryPage,
        super::deliveries::ReplayAll, super::deliveries::Replayed, super::reports::EventsReceived,
        super::inbox::NotificationDto, super::inbox::NotificationPage, super::inbox::Marked,
        super::webhooks::CreateEndpoint, super::webhooks::UpdateEndpoint, super::webhooks::EndpointDto,
        super::webhooks::EndpointList, super::webhooks::HookDeliveryDto, super::webhooks::HookDeliveryPage,
        super::webhooks::RotatedSecret, super::unsubscribe::Unsubscribed, super::previews::PreviewDto,
        super::broadcasts::SendBroadcast, super::broadcasts::BroadcastDto, super::broadcasts::BroadcastPage,
    )),
    modifiers(&BearerAuth),
    tags((name = "auth"), (name = "audit"), (name = "events"), (name = "registrations"), (name = "check-in"), (name = "vouchers"), (name = "payments"), (name = "notifications"), (name = "webhooks"), (name = "realtime"), (name = "ops")),
)]
pub struct ApiDoc;

/// Declares the `bearer` security scheme (access tokens from `/api/v1/auth/login`), and on
/// every operation the answers the stack can give whatever the handler: 429 (rate limits) and
/// 503 (overload) on the API, and 401/403 with `security` on the protected ones.
struct BearerAuth;

fn problem(description: &str) -> utoipa::openapi::RefOr<utoipa::openapi::Response> {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
        .into()
}

/// Whether an operation has path parameters, and query parameters.
fn parameters_in(op: &utoipa::openapi::path::Operation) -> (bool, bool) {
    use utoipa::openapi::path::ParameterIn;
    let params = op.parameters.iter().flatten().filter_map(|p| match p {
        RefOr::T(p) => Some(&p.parameter_in),
        RefOr::Ref(_) => None,
    });
    let (mut path, mut query) = (false, false);
    for place in params {
        path |= matches!(place, ParameterIn::Path);
        query |= matches!(place, ParameterIn::Query);
    }
    (path, query)
}

/// Moves a `Problem` body from `application/json` to `application/problem+json`.
fn as_problem_json(response: &mut utoipa::openapi::Response) {
    let is_problem = response.content.get("application/json").is_some_and(|c| {
        matches!(c, RefOr::T(c) if matches!(&c.schema, Some(RefOr::Ref(r)) if r.ref_location.ends_with("/Problem")))
    });
    if is_problem && let Some(content) = response.content.shift_remove("application/json") {
        response
            .content
            .insert("application/problem+json".to_owned(), content);
    }
}

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/api/") {
                continue;
            }
            let operations = [
                ("GET", &mut item.get),
                ("POST", &mut item.post),
                ("PUT", &mut item.put),
                ("PATCH", &mut item.patch),
                ("DELETE", &mut item.delete),
            ];
            for (method, operation) in operations {
                if let Some(op) = operation.as_mut() {
                    add_stack_answers(method, path, op);
                }
            }
        }
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Adds to one API operation the answers of the stack in front of its handler: its error
/// bodies as problem+json, the refusals of malformed inputs (by the kinds of input it takes),
/// rate limits and overload, and unless it is public, 401/403 and its `security`.
fn add_stack_answers(method: &str, path: &str, op: &mut utoipa::openapi::path::Operation) {
    use utoipa::openapi::security::SecurityRequirement;
    let (has_path, has_query) = parameters_in(op);
    let has_body = op.request_body.is_some();
    let responses = &mut op.responses.responses;
    // Every error answer is problem+json (the handlers' annotations say `body = Problem`,
    // which utoipa lists as application/json).
    for response in responses.values_mut() {
        if let RefOr::T(response) = response {
            as_problem_json(response);
        }
    }
    let mut add = |code: &str, description: &str| {
        responses
            .entry(code.to_owned())
            .or_insert_with(|| problem(description));
    };
    if has_path {
        add("400", "invalid_path_parameter: an id that is not a UUID");
    }
    if has_query {
        add("400", "invalid_query: a query parameter of the wrong type");
    }
    if has_body {
        add("400", "malformed_json: the body is not JSON");
        add("413", "payload_too_large: the body exceeds the limit");
        add(
            "415",
            "unsupported_media_type: the body is not application/json",
        );
        add("422", "invalid_body or validation_failed: per-field errors");
    }
    if path == "/api/v1/ws" {
        add("400", "not a WebSocket upgrade request");
    }
    add(
        "429",
        "rate_limited: over a rate limit; retry after Retry-After",
    );
    add("503", "overloaded or unavailable; retry after Retry-After");
    let public = super::policy::PUBLIC.contains(&format!("{method} {path}").as_str());
    if public && method == "GET" {
        // Public reads serve anonymous callers, but a token that is sent must be valid.
        add("401", "unauthorized: an invalid access token was sent");
    }
    if !public {
        add("401", "unauthorized: no valid access token");
        add("403", "forbidden: the token's account may not do this");
        op.security = Some(vec![SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

pub(super) fn router() -> Router<AppState> {
    Router::new().merge(SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
}

#[cfg(test)]
mod tests;

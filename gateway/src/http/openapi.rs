//! The OpenAPI 3.1 document at `/openapi.json` and Swagger UI at `/docs` (assets vendored
//! into the binary: nothing is downloaded at build or view time).

use super::AppState;
use super::auth::{
    ChannelPrefsDto, LoginBody, PreferencesDto, RefreshBody, RolesBody, SignupBody, TokenPair,
    UpdateMe, UserDto,
};
use super::error::{Problem, ProblemField};
use super::events::{
    AvailabilityDto, CreateEvent, CreateTicketType, EventDto, EventPage, MemberBody, MemberDto,
    TicketTypeAvailabilityDto, TicketTypeDto, UpdateEvent,
};
use super::registrations::{
    AttendeeDto, CheckInBody, CheckInDto, CreateRegistration, IssuedTicket, RegistrationDto,
    RegistrationPage, TicketDto,
};
use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

/// The API description.
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
        super::registrations::check_in, super::registrations::get_ticket,
        super::ws::upgrade, super::ops::healthz, super::ops::readyz, super::ops::metrics,
        super::auth::signup, super::auth::login, super::auth::refresh, super::auth::logout,
        super::auth::me, super::auth::update_me, super::auth::set_roles,
        super::registrations::my_registrations,
        super::events::list_members, super::events::set_member, super::events::remove_member,
        super::audit::event_audit, super::audit::global_audit,
    ),
    components(schemas(
        Problem, ProblemField, CreateEvent, UpdateEvent, EventDto, EventPage, CreateTicketType, TicketTypeDto,
        AvailabilityDto, TicketTypeAvailabilityDto, CreateRegistration, AttendeeDto, RegistrationDto, RegistrationPage,
        IssuedTicket, CheckInBody, CheckInDto, TicketDto,
        SignupBody, LoginBody, RefreshBody, TokenPair, UserDto, UpdateMe, PreferencesDto, ChannelPrefsDto, RolesBody,
        MemberBody, MemberDto, super::audit::AuditPage, super::audit::AuditEntryDto,
    )),
    modifiers(&BearerAuth),
    tags((name = "auth"), (name = "audit"), (name = "events"), (name = "registrations"), (name = "check-in"), (name = "realtime"), (name = "ops")),
)]
pub struct ApiDoc;

/// Declares the `bearer` security scheme (access tokens from `/api/v1/auth/login`).
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
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

pub(super) fn router() -> Router<AppState> {
    Router::new().merge(SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
}

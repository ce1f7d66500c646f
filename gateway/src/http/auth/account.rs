//! One's own account: sign-up, profile and preferences, password change, e-mail
//! verification and password reset; and the admins' role assignment.

use super::{Authenticated, hashing};
use crate::auth::{LinkPurpose, PASSWORD_BYTES_MAX, PASSWORD_LEN_MIN};
use crate::http::AppState;
use crate::http::error::{ApiError, ApiResult, Problem};
use crate::http::extract::{ApiJson, PathId};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use engine::accounts::{ChannelPrefs, NewUser, Preferences, ProfilePatch, Role, UserRecord};
use engine::error::{DomainError, FieldError};
use engine::ids::UserId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/auth/signup", post(signup))
        .route("/api/v1/users/me", get(me).patch(update_me))
        .route("/api/v1/users/me/password", post(change_password))
        .route("/api/v1/users/me/verification", post(resend_verification))
        .route("/api/v1/auth/verify-email", post(verify_email))
        .route("/api/v1/auth/password-reset", post(request_password_reset))
        .route(
            "/api/v1/auth/password-reset/confirm",
            post(confirm_password_reset),
        )
        .route("/api/v1/users/{id}/roles", put(set_roles))
}

/// Body of `POST /api/v1/auth/signup`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(examples(crate::http::examples::signup))]
#[serde(deny_unknown_fields)]
pub struct SignupBody {
    /// E-mail address (unique; compared case-insensitively).
    pub email: String,
    /// At least 10 characters, at most 256 bytes.
    #[schema(min_length = 10, max_length = 256)]
    pub password: String,
    /// Display name.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
}

/// Notification channels of one category.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(examples(crate::http::examples::channel_prefs))]
#[serde(deny_unknown_fields)]
pub struct ChannelPrefsDto {
    /// By e-mail.
    pub email: bool,
    /// By SMS.
    pub sms: bool,
    /// By push notification.
    pub push: bool,
}

/// What the user is told about and how, in which language and time zone.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(examples(crate::http::examples::preferences))]
#[serde(deny_unknown_fields)]
pub struct PreferencesDto {
    /// BCP 47 language tag.
    pub locale: String,
    /// IANA time zone.
    pub time_zone: String,
    /// Confirmations, tickets, waiting-list offers.
    pub transactional: ChannelPrefsDto,
    /// Reminders and event changes.
    pub reminders: ChannelPrefsDto,
    /// News and offers.
    pub marketing: ChannelPrefsDto,
}

impl From<&ChannelPrefs> for ChannelPrefsDto {
    fn from(c: &ChannelPrefs) -> Self {
        Self {
            email: c.email,
            sms: c.sms,
            push: c.push,
        }
    }
}

impl From<ChannelPrefsDto> for ChannelPrefs {
    fn from(c: ChannelPrefsDto) -> Self {
        Self {
            email: c.email,
            sms: c.sms,
            push: c.push,
        }
    }
}

/// One's own account.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(crate::http::examples::user))]
pub struct UserDto {
    id: Uuid,
    email: String,
    email_verified: bool,
    name: String,
    phone: Option<String>,
    organization: Option<String>,
    roles: Vec<String>,
    /// Whether name, phone and organization are all set.
    profile_complete: bool,
    /// Profile fields still missing.
    missing_fields: Vec<String>,
    preferences: PreferencesDto,
    /// Signed-in devices (refresh-token families).
    sessions: usize,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<&UserRecord> for UserDto {
    fn from(u: &UserRecord) -> Self {
        let missing: Vec<String> = u.profile.missing().into_iter().map(String::from).collect();
        let p = &u.preferences;
        Self {
            id: u.id.0,
            email: u.email.clone(),
            email_verified: u.email_verified,
            name: u.profile.name.clone(),
            phone: u.profile.phone.clone(),
            organization: u.profile.organization.clone(),
            roles: u.roles.iter().map(|r| r.as_str().to_owned()).collect(),
            profile_complete: missing.is_empty(),
            missing_fields: missing,
            preferences: PreferencesDto {
                locale: p.locale.clone(),
                time_zone: p.time_zone.clone(),
                transactional: (&p.transactional).into(),
                reminders: (&p.reminders).into(),
                marketing: (&p.marketing).into(),
            },
            sessions: u.sessions.len(),
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

/// Body of `PATCH /api/v1/users/me`: absent fields stay; `null` clears phone or organization.
/// E-mail, roles and password cannot be changed here.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(examples(crate::http::examples::update_me))]
#[serde(deny_unknown_fields)]
pub struct UpdateMe {
    /// Display name.
    pub name: Option<String>,
    /// Phone number, or `null` to clear.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub phone: Option<Option<String>>,
    /// Organisation, or `null` to clear.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub organization: Option<Option<String>>,
    /// The whole preferences object.
    pub preferences: Option<PreferencesDto>,
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// The validation errors of a new password sent as `field`.
fn password_errors(field: &str, password: &str) -> Vec<FieldError> {
    if password.chars().count() < PASSWORD_LEN_MIN || password.len() > PASSWORD_BYTES_MAX {
        vec![FieldError::new(
            field,
            format!("must be {PASSWORD_LEN_MIN} characters to {PASSWORD_BYTES_MAX} bytes"),
        )]
    } else {
        vec![]
    }
}

/// Create an account (role `attendee`).
#[utoipa::path(post, path = "/api/v1/auth/signup", tag = "auth", request_body = SignupBody,
    responses((status = 201, body = UserDto), (status = 400, body = Problem),
        (status = 409, body = Problem, description = "email_taken"), (status = 415, body = Problem),
        (status = 422, body = Problem), (status = 503, body = Problem)))]
pub(crate) async fn signup(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<SignupBody>,
) -> ApiResult<impl IntoResponse> {
    // Validate everything cheap before the expensive hash.
    let mut errors = password_errors("password", &body.password);
    let new = NewUser::new(&body.email, &body.name, String::new(), vec![Role::Attendee]);
    let mut new = match new {
        Ok(new) if errors.is_empty() => new,
        Ok(_) => return Err(DomainError::Validation(errors).into()),
        Err(more) => {
            errors.extend(more);
            return Err(DomainError::Validation(errors).into());
        }
    };
    new.password_hash = state
        .auth
        .hash_password(body.password)
        .await
        .map_err(hashing)?;
    let link = state
        .auth
        .mint_link(LinkPurpose::VerifyEmail, new.id)
        .map_err(ApiError::Internal)?;
    let user = state.engine.signup(new, Some(link)).await?;
    metrics::counter!("regengine_auth_signups_total").increment(1);
    Ok((StatusCode::CREATED, Json(UserDto::from(&user))))
}

/// One's own account, with the profile completeness check.
#[utoipa::path(get, path = "/api/v1/users/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = UserDto), (status = 401, body = Problem)))]
pub(crate) async fn me(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
) -> ApiResult<Json<UserDto>> {
    let user = state.engine.user(principal.user_id).map_err(|e| match e {
        engine::error::EngineError::Domain(DomainError::UserNotFound) => {
            ApiError::Unauthorized("account gone")
        }
        other => other.into(),
    })?;
    Ok(Json(UserDto::from(&user)))
}

/// Change one's own profile and preferences.
#[utoipa::path(patch, path = "/api/v1/users/me", tag = "auth", security(("bearer" = [])),
    request_body = UpdateMe,
    responses((status = 200, body = UserDto), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 415, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
pub(crate) async fn update_me(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiJson(body): ApiJson<UpdateMe>,
) -> ApiResult<Json<UserDto>> {
    let patch = ProfilePatch {
        name: body.name,
        phone: body.phone,
        organization: body.organization,
        preferences: body.preferences.map(|p| Preferences {
            locale: p.locale,
            time_zone: p.time_zone,
            transactional: p.transactional.into(),
            reminders: p.reminders.into(),
            marketing: p.marketing.into(),
        }),
    };
    let user = state
        .engine
        .update_profile(principal.user_id, patch)
        .await?;
    Ok(Json(UserDto::from(&user)))
}

/// Body of `PUT /api/v1/users/{id}/roles`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(examples(crate::http::examples::roles))]
#[serde(deny_unknown_fields)]
pub struct RolesBody {
    /// The whole new set: any of `admin`, `organizer`, `staff`, `attendee`.
    #[schema(value_type = Vec<RoleName>)]
    pub roles: Vec<Role>,
}

/// A role's name (documentation of `Role` on the wire).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum RoleName {
    /// Everything.
    Admin,
    /// Creates and manages events.
    Organizer,
    /// Checks tickets in at assigned events.
    Staff,
    /// Buys tickets.
    Attendee,
}

/// Replace an account's roles (admins only).
#[utoipa::path(put, path = "/api/v1/users/{id}/roles", tag = "auth", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = RolesBody,
    responses((status = 200, body = UserDto), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 415, body = Problem),
        (status = 422, body = Problem), (status = 503, body = Problem)))]
pub(crate) async fn set_roles(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(id): PathId<UserId>,
    ApiJson(body): ApiJson<RolesBody>,
) -> ApiResult<Json<UserDto>> {
    crate::http::policy::require_any(&principal, &[])?;
    let user = state.engine.set_roles(id, body.roles).await?;
    tracing::info!(admin = %principal.user_id, user = %id, roles = ?user.roles, "roles changed");
    Ok(Json(UserDto::from(&user)))
}

/// Body of `POST /api/v1/users/me/password`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(examples(crate::http::examples::password_change))]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// The password in use.
    pub current_password: String,
    /// The new one: at least 10 characters, at most 256 bytes.
    #[schema(min_length = 10, max_length = 256)]
    pub new_password: String,
}

/// Change one's password. Every session (refresh token) of the account ends; access tokens
/// already issued run out within their short lifetime.
#[utoipa::path(post, path = "/api/v1/users/me/password", tag = "auth", security(("bearer" = [])),
    request_body = PasswordChange,
    responses((status = 204), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 415, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
pub(crate) async fn change_password(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiJson(body): ApiJson<PasswordChange>,
) -> ApiResult<StatusCode> {
    let errors = password_errors("new_password", &body.new_password);
    if !errors.is_empty() {
        return Err(DomainError::Validation(errors).into());
    }
    // Guessing the current password here costs the same budget as at the login.
    state
        .limiter
        .check(
            crate::ratelimit::Budget::LoginPerAccount,
            principal.user_id.as_bytes(),
        )
        .await
        .map_err(ApiError::RateLimited)?;
    let user = state.engine.user(principal.user_id)?;
    let ok = state
        .auth
        .verify_password(body.current_password, Some(user.password_hash))
        .await
        .map_err(hashing)?;
    if !ok {
        return Err(ApiError::InvalidCredentials);
    }
    let hash = state
        .auth
        .hash_password(body.new_password)
        .await
        .map_err(hashing)?;
    state
        .engine
        .change_password(principal.user_id, hash)
        .await?;
    tracing::info!(user = %principal.user_id, "password changed; sessions ended");
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `POST /api/v1/auth/verify-email`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(examples(crate::http::examples::token))]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    /// The token from the e-mailed link.
    pub token: String,
}

/// Confirm an e-mail address with the token of the link sent at sign-up (or the latest one
/// asked for). A token works once, until it expires or a newer link replaces it.
#[utoipa::path(post, path = "/api/v1/auth/verify-email", tag = "auth", request_body = TokenBody,
    responses((status = 204), (status = 400, body = Problem, description = "invalid_token"),
        (status = 415, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
pub(crate) async fn verify_email(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<TokenBody>,
) -> ApiResult<StatusCode> {
    let (user, digest) = state
        .auth
        .parse_link(LinkPurpose::VerifyEmail, &body.token)
        .ok_or(DomainError::InvalidToken)?;
    state
        .engine
        .verify_email(user, digest)
        .await
        .map_err(unknown_account_is_invalid_token)?;
    metrics::counter!("regengine_auth_emails_verified_total").increment(1);
    Ok(StatusCode::NO_CONTENT)
}

/// A token naming an account that does not exist is just an invalid token.
fn unknown_account_is_invalid_token(e: engine::error::EngineError) -> ApiError {
    match e {
        engine::error::EngineError::Domain(DomainError::UserNotFound) => {
            DomainError::InvalidToken.into()
        }
        other => other.into(),
    }
}

/// Send a new verification link to one's own address (it replaces the previous one).
#[utoipa::path(post, path = "/api/v1/users/me/verification", tag = "auth", security(("bearer" = [])),
    responses((status = 202), (status = 401, body = Problem),
        (status = 409, body = Problem, description = "email_already_verified"), (status = 503, body = Problem)))]
pub(crate) async fn resend_verification(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
) -> ApiResult<StatusCode> {
    let user = state.engine.user(principal.user_id)?;
    state
        .limiter
        .check(
            crate::ratelimit::Budget::MailPerAddress,
            user.email.as_bytes(),
        )
        .await
        .map_err(ApiError::RateLimited)?;
    let link = state
        .auth
        .mint_link(LinkPurpose::VerifyEmail, user.id)
        .map_err(ApiError::Internal)?;
    state
        .engine
        .request_email_verification(user.id, link)
        .await?;
    Ok(StatusCode::ACCEPTED)
}

/// Body of `POST /api/v1/auth/password-reset`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(examples(crate::http::examples::reset_request))]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    /// The account's e-mail address.
    pub email: String,
}

/// Ask for a password-reset link. The answer is 202 whether or not an account has this
/// address (it does not tell who has an account); if one does, the link goes to it.
#[utoipa::path(post, path = "/api/v1/auth/password-reset", tag = "auth", request_body = ResetRequest,
    responses((status = 202), (status = 400, body = Problem), (status = 415, body = Problem),
        (status = 422, body = Problem), (status = 503, body = Problem)))]
pub(crate) async fn request_password_reset(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ResetRequest>,
) -> ApiResult<StatusCode> {
    let mut errors = Vec::new();
    let email = engine::model::normalize_email(&body.email, "email", &mut errors);
    if !errors.is_empty() {
        return Err(DomainError::Validation(errors).into());
    }
    state
        .limiter
        .check(crate::ratelimit::Budget::MailPerAddress, email.as_bytes())
        .await
        .map_err(ApiError::RateLimited)?;
    // The work runs after the answer, so an address with an account takes no longer to
    // answer than one without. Bounded: beyond `RESETS_IN_FLIGHT_MAX`, 503.
    let permit = state
        .resets_in_flight
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Overloaded)?;
    let auth = state.auth.clone();
    let engine = state.engine.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let sent = engine
            .request_password_reset(&email, |user| {
                auth.mint_link(LinkPurpose::ResetPassword, user)
            })
            .await;
        match sent {
            Ok(true) => {
                metrics::counter!("regengine_auth_password_resets_requested_total").increment(1)
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "password reset request failed"),
        }
    });
    Ok(StatusCode::ACCEPTED)
}

/// Body of `POST /api/v1/auth/password-reset/confirm`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(examples(crate::http::examples::reset_confirm))]
#[serde(deny_unknown_fields)]
pub struct ResetConfirm {
    /// The token from the e-mailed link.
    pub token: String,
    /// The new password: at least 10 characters, at most 256 bytes.
    #[schema(min_length = 10, max_length = 256)]
    pub new_password: String,
}

/// Set a new password with the token of a reset link. The token works once; every session of
/// the account ends, and the address counts as verified.
#[utoipa::path(post, path = "/api/v1/auth/password-reset/confirm", tag = "auth", request_body = ResetConfirm,
    responses((status = 204), (status = 400, body = Problem, description = "invalid_token"),
        (status = 415, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
pub(crate) async fn confirm_password_reset(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ResetConfirm>,
) -> ApiResult<StatusCode> {
    let errors = password_errors("new_password", &body.new_password);
    if !errors.is_empty() {
        return Err(DomainError::Validation(errors).into());
    }
    let (user_id, digest) = state
        .auth
        .parse_link(LinkPurpose::ResetPassword, &body.token)
        .ok_or(DomainError::InvalidToken)?;
    // Check the token before paying for a hash; the engine checks it again when it commits.
    let user = state
        .engine
        .user(user_id)
        .map_err(unknown_account_is_invalid_token)?;
    let now = state.engine.clock().now();
    if !user
        .reset_token
        .as_ref()
        .is_some_and(|t| t.accepts(&digest, now))
    {
        return Err(DomainError::InvalidToken.into());
    }
    let hash = state
        .auth
        .hash_password(body.new_password)
        .await
        .map_err(hashing)?;
    state
        .engine
        .reset_password(user_id, digest, hash)
        .await
        .map_err(unknown_account_is_invalid_token)?;
    tracing::info!(user = %user_id, "password reset; sessions ended");
    metrics::counter!("regengine_auth_password_resets_total").increment(1);
    Ok(StatusCode::NO_CONTENT)
}

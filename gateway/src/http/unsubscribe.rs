//! One-click unsubscribe (RFC 8058): the mail client POSTs `List-Unsubscribe=One-Click` to
//! the URL of a mail's `List-Unsubscribe` header; its signed token names the account and the
//! category whose e-mail is turned off. No session: the token is the authority. A GET does
//! nothing (mail scanners fetch links).

use super::AppState;
use super::error::{ApiResult, Problem};
use super::extract::ApiQuery;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use engine::error::DomainError;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/api/v1/unsubscribe", post(unsubscribe))
}

/// The token from the header's URL.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UnsubscribeParams {
    #[param(max_length = 100)]
    token: String,
}

/// What was turned off.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(unsubscribed_example))]
pub struct Unsubscribed {
    /// The category (`reminders`, `marketing`) whose e-mail is now off for the account.
    unsubscribed: String,
}

fn unsubscribed_example() -> serde_json::Value {
    serde_json::json!({"unsubscribed": "reminders"})
}

/// Turns e-mail off for the category the token names (one click from the mail client; the
/// body, `List-Unsubscribe=One-Click`, is not needed). Repeating it changes nothing more.
#[utoipa::path(post, path = "/api/v1/unsubscribe", tag = "notifications", params(UnsubscribeParams),
    responses((status = 200, body = Unsubscribed), (status = 400, description = "invalid_token", body = Problem),
        (status = 404, body = Problem)))]
pub(crate) async fn unsubscribe(
    State(state): State<AppState>,
    ApiQuery(p): ApiQuery<UnsubscribeParams>,
) -> ApiResult<Json<Unsubscribed>> {
    let (user, category) = state
        .unsubscribe
        .verify(&p.token)
        .ok_or(DomainError::InvalidToken)?;
    state.engine.unsubscribe(user, category).await?;
    Ok(Json(Unsubscribed {
        unsubscribed: category.as_str().to_owned(),
    }))
}

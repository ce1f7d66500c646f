//! Extractors that report rejections as problem+json: a JSON body extractor that tells
//! syntax errors (400) from shape errors with the offending field (422), and a path id
//! extractor that rejects malformed UUIDs with 400.

use super::error::ApiError;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts};
use engine::error::FieldError;
use serde::de::DeserializeOwned;

/// A JSON body. Requires `Content-Type: application/json`; at most `http.body_bytes_max`
/// bytes (larger: 413).
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<super::AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &super::AppState) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| {
                let m = m.trim().to_ascii_lowercase();
                m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
            });
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = super::body::read(req.into_body(), state.body_bytes_max).await?;
        object(&bytes)?;
        parse(&bytes).map(ApiJson)
    }
}

/// Parses a JSON body into `T`, classifying errors.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(v) => v,
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                return Err(ApiError::MalformedJson(inner.to_string()));
            }
            // A shape error found before a syntax error later in the body: syntax wins.
            if let Err(syntax) = serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                return Err(ApiError::MalformedJson(syntax.to_string()));
            }
            let field = if path == "." || path.is_empty() {
                "body".to_owned()
            } else {
                path
            };
            return Err(ApiError::InvalidBody(vec![FieldError::new(
                field,
                strip_position(&inner.to_string()),
            )]));
        }
    };
    // Trailing characters after the document are a syntax error.
    de.end()
        .map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    Ok(value)
}

/// Every request body of this API is a JSON object: serde would otherwise read a struct from
/// an array of its fields in order (`[null, null]` for two optional fields).
fn object(bytes: &[u8]) -> Result<(), ApiError> {
    if bytes.trim_ascii_start().starts_with(b"{") {
        return Ok(());
    }
    if let Err(syntax) = serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
        return Err(ApiError::MalformedJson(syntax.to_string()));
    }
    Err(ApiError::InvalidBody(vec![FieldError::new(
        "body",
        "must be a JSON object",
    )]))
}

fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// A UUID path parameter (the last one of the route).
pub struct PathId<T>(pub T);

impl<S: Send + Sync, T: From<uuid::Uuid>> FromRequestParts<S> for PathId<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(raw): axum::extract::Path<String> =
            axum::extract::Path::from_request_parts(parts, state)
                .await
                .map_err(|e| ApiError::InvalidPath(e.body_text()))?;
        raw.parse::<uuid::Uuid>()
            .map(|id| PathId(T::from(id)))
            .map_err(|_| ApiError::InvalidPath(format!("`{raw}` is not a UUID")))
    }
}

/// Two UUID path parameters, in route order.
pub struct PathIds<A, B>(pub A, pub B);

impl<S: Send + Sync, A: From<uuid::Uuid>, B: From<uuid::Uuid>> FromRequestParts<S>
    for PathIds<A, B>
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path((a, b)): axum::extract::Path<(String, String)> =
            axum::extract::Path::from_request_parts(parts, state)
                .await
                .map_err(|e| ApiError::InvalidPath(e.body_text()))?;
        let parse = |raw: &str| {
            raw.parse::<uuid::Uuid>()
                .map_err(|_| ApiError::InvalidPath(format!("`{raw}` is not a UUID")))
        };
        Ok(PathIds(A::from(parse(&a)?), B::from(parse(&b)?)))
    }
}

/// A UUID path parameter followed by a text one (`/events/{id}/vouchers/{code}`).
pub struct PathIdText<A>(pub A, pub String);

impl<S: Send + Sync, A: From<uuid::Uuid>> FromRequestParts<S> for PathIdText<A> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path((a, b)): axum::extract::Path<(String, String)> =
            axum::extract::Path::from_request_parts(parts, state)
                .await
                .map_err(|e| ApiError::InvalidPath(e.body_text()))?;
        let id = a
            .parse::<uuid::Uuid>()
            .map_err(|_| ApiError::InvalidPath(format!("`{a}` is not a UUID")))?;
        Ok(PathIdText(A::from(id), b))
    }
}

/// Query parameters, rejected with problem+json.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e| ApiError::InvalidQuery(e.body_text()))
    }
}

/// A listing's page size: `given`, else `default`; 400 unless 1..=`max`.
pub(crate) fn page_limit(
    given: Option<usize>,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    let limit = given.unwrap_or(default);
    if (1..=max).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::InvalidQuery(format!(
            "limit must be between 1 and {max}"
        )))
    }
}

/// Cuts `items` (read as `limit + 1`, to know whether more follow) to `limit`; the cursor of
/// the next page (`cursor` of the last item kept), if there is one.
pub(crate) fn next_page<T, C>(
    items: &mut Vec<T>,
    limit: usize,
    cursor: impl Fn(&T) -> C,
) -> Option<C> {
    let more = items.len() > limit;
    items.truncate(limit);
    if more { items.last().map(cursor) } else { None }
}

//! Invoices and credit notes over HTTP: the list of a registration's documents, and each as
//! PDF or HTML (its holder and the event's managers). Documents are issued by the invoice relay
//! once a priced registration is paid or refunded; asking for the invoice issues what is due
//! at once, so a buyer back from paying never waits for the relay.

use super::super::AppState;
use super::super::auth::Authenticated;
use super::super::error::{ApiError, ApiResult, Problem};
use super::super::extract::PathId;
use super::super::policy::visible_registration;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use engine::error::DomainError;
use engine::ids::RegistrationId;
use engine::invoice::{Document, DocumentKind};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/registrations/{id}/invoices", get(list_documents))
        .route("/api/v1/registrations/{id}/invoice.pdf", get(invoice_pdf))
        .route("/api/v1/registrations/{id}/invoice.html", get(invoice_html))
        .route(
            "/api/v1/registrations/{id}/invoices/{file}",
            get(document_file),
        )
        .route("/api/v1/users/me/invoices", get(my_ledger))
        .route("/api/v1/users/me/invoices.csv", get(my_ledger_csv))
}

/// An issued invoice or credit note.
#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentDto {
    /// Its number in the organizer's sequence (invoices and credit notes share it, no gaps).
    number: u64,
    /// As printed: `INV-000042`.
    display_number: String,
    /// `invoice` or `credit_note`.
    kind: String,
    /// For a credit note: the number of the invoice it corrects.
    corrects: Option<u64>,
    issued_at: DateTime<Utc>,
    /// ISO 4217 code.
    currency: String,
    net_minor: i64,
    vat_minor: i64,
    /// What was paid (an invoice) or is credited (a credit note, negative).
    gross_minor: i64,
    /// The PDF.
    pdf: String,
    /// The HTML page.
    html: String,
    registration_id: Uuid,
    event_id: Uuid,
    /// Who it is made out to.
    buyer: String,
}

/// A registration's documents, in number order.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(super::super::examples::documents))]
pub struct DocumentList {
    registration_id: Uuid,
    documents: Vec<DocumentDto>,
}

fn document_dto(d: &Document) -> DocumentDto {
    let base = format!(
        "/api/v1/registrations/{}/invoices/{}",
        d.registration_id, d.number
    );
    let (kind, corrects) = match d.kind {
        DocumentKind::Invoice => ("invoice", None),
        DocumentKind::CreditNote { corrects } => ("credit_note", Some(corrects)),
    };
    DocumentDto {
        number: d.number,
        display_number: d.display_number(),
        kind: kind.to_owned(),
        corrects,
        issued_at: d.issued_at,
        currency: d.currency.clone(),
        net_minor: d.net_minor,
        vat_minor: d.vat_minor,
        gross_minor: d.gross_minor,
        pdf: format!("{base}.pdf"),
        html: format!("{base}.html"),
        registration_id: d.registration_id.0,
        event_id: d.event_id.0,
        buyer: d.buyer.name.clone(),
    }
}

/// The invoice and credit notes issued for a registration (its holder and the event's
/// managers). Empty until the registration is paid: the invoice relay issues the invoice
/// within a second of the payment, and a credit note for each refund.
#[utoipa::path(get, path = "/api/v1/registrations/{id}/invoices", tag = "payments", params(("id" = Uuid, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = DocumentList), (status = 400, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem)))]
pub(crate) async fn list_documents(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(id): PathId<RegistrationId>,
) -> ApiResult<Json<DocumentList>> {
    visible_registration(&state, &principal, id)?;
    let documents = state.engine.documents(id)?;
    Ok(Json(DocumentList {
        registration_id: id.0,
        documents: documents.iter().map(document_dto).collect(),
    }))
}

/// The registration's invoice, issued now if it is due and the relay has not issued it yet.
async fn the_invoice(state: &AppState, id: RegistrationId) -> ApiResult<Document> {
    let find = |docs: Vec<Document>| docs.into_iter().find(|d| d.kind == DocumentKind::Invoice);
    if let Some(d) = find(state.engine.documents(id)?) {
        return Ok(d);
    }
    // Issued now, or by the relay meanwhile: read again either way.
    state.engine.issue_documents(&[id]).await?;
    find(state.engine.documents(id)?).ok_or(ApiError::Domain(DomainError::InvoiceNotFound))
}

/// The registration's invoice as PDF (its holder and the event's managers): seller and buyer,
/// a line per ticket type (and the voucher's discount), VAT per rate, totals. 404
/// `invoice_not_found` while the registration is not paid (or is free).
#[utoipa::path(get, path = "/api/v1/registrations/{id}/invoice.pdf", tag = "payments", params(("id" = Uuid, Path)),
    security(("bearer" = [])),
    responses((status = 200, content_type = "application/pdf", body = Vec<u8>), (status = 400, body = Problem),
        (status = 403, body = Problem), (status = 404, description = "registration_not_found or invoice_not_found", body = Problem),
        (status = 503, body = Problem)))]
pub(crate) async fn invoice_pdf(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(id): PathId<RegistrationId>,
) -> ApiResult<Response> {
    visible_registration(&state, &principal, id)?;
    render(the_invoice(&state, id).await?, Format::Pdf).await
}

/// The registration's invoice as an HTML page (its holder and the event's managers).
#[utoipa::path(get, path = "/api/v1/registrations/{id}/invoice.html", tag = "payments", params(("id" = Uuid, Path)),
    security(("bearer" = [])),
    responses((status = 200, content_type = "text/html", body = String), (status = 400, body = Problem),
        (status = 403, body = Problem), (status = 404, description = "registration_not_found or invoice_not_found", body = Problem),
        (status = 503, body = Problem)))]
pub(crate) async fn invoice_html(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(id): PathId<RegistrationId>,
) -> ApiResult<Response> {
    visible_registration(&state, &principal, id)?;
    render(the_invoice(&state, id).await?, Format::Html).await
}

/// One of the registration's documents (an invoice or a credit note) by number, as
/// `{number}.pdf` or `{number}.html` (its holder and the event's managers).
#[utoipa::path(get, path = "/api/v1/registrations/{id}/invoices/{file}", tag = "payments",
    params(("id" = Uuid, Path), ("file" = String, Path, description = "`{number}.pdf` or `{number}.html`")),
    security(("bearer" = [])),
    responses((status = 200, content_type = "application/pdf", body = Vec<u8>), (status = 400, body = Problem),
        (status = 403, body = Problem), (status = 404, description = "registration_not_found or invoice_not_found", body = Problem)))]
pub(crate) async fn document_file(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Path((id, file)): Path<(String, String)>,
) -> ApiResult<Response> {
    let id = Uuid::parse_str(&id)
        .map(RegistrationId)
        .map_err(|_| ApiError::InvalidPath(format!("`{id}` is not a valid id")))?;
    let (number, format) = match file.rsplit_once('.') {
        Some((n, "pdf")) => (n, Format::Pdf),
        Some((n, "html")) => (n, Format::Html),
        _ => {
            return Err(ApiError::InvalidPath(
                "the file must be `{number}.pdf` or `{number}.html`".into(),
            ));
        }
    };
    let number: u64 = number
        .parse()
        .map_err(|_| ApiError::InvalidPath(format!("`{number}` is not a document number")))?;
    visible_registration(&state, &principal, id)?;
    let document = state
        .engine
        .documents(id)?
        .into_iter()
        .find(|d| d.number == number)
        .ok_or(ApiError::Domain(DomainError::InvoiceNotFound))?;
    render(document, format).await
}

#[derive(Clone, Copy)]
enum Format {
    Pdf,
    Html,
}

/// Renders off the async workers (a PDF takes milliseconds of CPU).
async fn render(d: Document, format: Format) -> ApiResult<Response> {
    tokio::task::spawn_blocking(move || render_now(&d, format))
        .await
        .map_err(|e| ApiError::Internal(format!("rendering a document: {e}")))?
}

fn render_now(d: &Document, format: Format) -> ApiResult<Response> {
    let name = format!(
        "{}.{}",
        d.display_number(),
        match format {
            Format::Pdf => "pdf",
            Format::Html => "html",
        }
    );
    let disposition = format!("inline; filename=\"{name}\"");
    Ok(match format {
        Format::Pdf => {
            let bytes = integrations::documents::pdf(d)
                .map_err(|e| ApiError::Internal(format!("rendering {name}: {e}")))?;
            (
                [
                    (header::CONTENT_TYPE, "application/pdf".to_owned()),
                    (header::CONTENT_DISPOSITION, disposition),
                ],
                bytes,
            )
                .into_response()
        }
        Format::Html => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8".to_owned()),
                (header::CONTENT_DISPOSITION, disposition),
            ],
            integrations::documents::html(d),
        )
            .into_response(),
    })
}

/// Paging of an organizer's ledger.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LedgerParams {
    /// Documents numbered after this one (default 0: from the first).
    #[param(minimum = 0)]
    after: Option<i64>,
    /// Page size, 1..=1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// A page of an organizer's ledger.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(super::super::examples::ledger_page))]
pub struct LedgerPage {
    items: Vec<DocumentDto>,
    /// `after` for the next page; absent on the last.
    next: Option<u64>,
}

fn ledger_params(p: &LedgerParams) -> ApiResult<(u64, usize)> {
    let limit = p.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::InvalidQuery("limit must be 1..=1000".into()));
    }
    let after = u64::try_from(p.after.unwrap_or(0))
        .map_err(|_| ApiError::InvalidQuery("after must be 0 or more".into()))?;
    Ok((after, limit))
}

/// The signed-in organizer's invoices and credit notes, in number order (1, 2, 3, … without
/// gaps: the books' sequence), paged by number.
#[utoipa::path(get, path = "/api/v1/users/me/invoices", tag = "payments", params(LedgerParams),
    security(("bearer" = [])),
    responses((status = 200, body = LedgerPage), (status = 400, body = Problem), (status = 401, body = Problem)))]
pub(crate) async fn my_ledger(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    super::super::extract::ApiQuery(params): super::super::extract::ApiQuery<LedgerParams>,
) -> ApiResult<Json<LedgerPage>> {
    let (after, limit) = ledger_params(&params)?;
    let docs = state.engine.ledger(principal.user_id, after, limit + 1)?;
    let next = (docs.len() > limit).then(|| docs[limit - 1].number);
    Ok(Json(LedgerPage {
        items: docs.iter().take(limit).map(document_dto).collect(),
        next,
    }))
}

const LEDGER_COLUMNS: &[&str] = &[
    "number",
    "display_number",
    "kind",
    "corrects",
    "issued_at",
    "registration_id",
    "event_id",
    "event_title",
    "buyer",
    "buyer_vat_id",
    "currency",
    "net_minor",
    "vat_minor",
    "gross_minor",
];

/// The signed-in organizer's ledger as CSV for the books (a page: `after`, `limit` up to
/// 1000).
#[utoipa::path(get, path = "/api/v1/users/me/invoices.csv", tag = "payments", params(LedgerParams),
    security(("bearer" = [])),
    responses((status = 200, content_type = "text/csv", body = String,
        example = "number,display_number,kind,corrects,issued_at,registration_id,event_id,event_title,buyer,buyer_vat_id,currency,net_minor,vat_minor,gross_minor\r\n41,INV-000041,invoice,,2027-05-02T10:15:00Z,01a40086-8440-7e27-8fcb-ce0c87b12e2e,01a40086-8440-7e27-8fcb-ce0c87b12e2f,Night at the Opera,Ada Lovelace,,EUR,6050,1150,7200\r\n"),
        (status = 400, body = Problem), (status = 401, body = Problem)))]
pub(crate) async fn my_ledger_csv(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    super::super::extract::ApiQuery(params): super::super::extract::ApiQuery<LedgerParams>,
) -> ApiResult<Response> {
    let (after, limit) = ledger_params(&params)?;
    let docs = state.engine.ledger(principal.user_id, after, limit)?;
    let mut csv = super::super::organizer::row(LEDGER_COLUMNS);
    for d in &docs {
        let (kind, corrects) = match d.kind {
            DocumentKind::Invoice => ("invoice", String::new()),
            DocumentKind::CreditNote { corrects } => ("credit_note", corrects.to_string()),
        };
        csv.push_str(&super::super::organizer::row(&[
            &d.number.to_string(),
            &d.display_number(),
            kind,
            &corrects,
            &d.issued_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            &d.registration_id.to_string(),
            &d.event_id.to_string(),
            &d.event_title,
            &d.buyer.name,
            &d.buyer.vat_id,
            &d.currency,
            &d.net_minor.to_string(),
            &d.vat_minor.to_string(),
            &d.gross_minor.to_string(),
        ]));
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"invoices.csv\"".to_owned(),
            ),
        ],
        csv,
    )
        .into_response())
}

//! GET and POST /api/v1/audit/logs, GET /audit/verify, /audit/export (admin:read).

use actix_web::web::Bytes;
use actix_web::{HttpResponse, get, post, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::query::{self, Filters, RawFilters};
use super::record::AuditRecord;
use super::verify::{Verification, verify};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::startup::AppState;

#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    pub data: Vec<AuditRecord>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The raw body of a search (filters as JSON, on GET or POST).
pub struct GetBody(Bytes);

impl actix_web::FromRequest for GetBody {
    type Error = actix_web::Error;
    type Future = futures_util::future::MapOk<<Bytes as actix_web::FromRequest>::Future, fn(Bytes) -> GetBody>;

    fn from_request(req: &actix_web::HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        use futures_util::TryFutureExt;
        Bytes::from_request(req, payload).map_ok(GetBody as fn(Bytes) -> GetBody)
    }
}

/// Filters from the query string, completed by a JSON body if one was sent.
fn filters(q: RawFilters, GetBody(body): &GetBody) -> ApiResult<RawFilters> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(q);
    }
    Ok(q.or(RawFilters::from_json(body)?))
}

async fn search(state: &AppState, principal: &Principal, raw: &RawFilters) -> ApiResult<HttpResponse> {
    let f = Filters::parse(raw)?;
    let mut conn = state.conn().await?;
    let data = query::page(&mut conn, principal.org_id, &f).await?;
    let next_cursor = if data.len() as i64 == f.limit { data.last().map(query::encode_cursor) } else { None };
    Ok(HttpResponse::Ok().json(AuditPage { data, next_cursor }))
}

/// Searches the org's audit log, newest first. Filters may also be sent as
/// a JSON body (as in the seed's curl example).
#[utoipa::path(tag = "audit", params(RawFilters),
    responses((status = 200, body = AuditPage), (status = 400), (status = 403)),
    security(("bearer" = ["admin:read"])))]
#[get("/audit/logs")]
pub async fn logs(
    state: web::Data<AppState>,
    principal: Principal,
    q: web::Query<RawFilters>,
    body: GetBody,
) -> ApiResult<HttpResponse> {
    search(&state, &principal, &filters(q.into_inner(), &body)?).await
}

/// The same search with the filters as a JSON body: the seed's
/// `curl /api/v1/audit/logs -d '{...}'` is a POST. Query-string filters
/// are accepted too, and win over the body's.
#[utoipa::path(tag = "audit", request_body = RawFilters,
    responses((status = 200, body = AuditPage), (status = 400), (status = 403)),
    security(("bearer" = ["admin:read"])))]
#[post("/audit/logs")]
pub async fn search_logs(
    state: web::Data<AppState>,
    principal: Principal,
    q: web::Query<RawFilters>,
    body: GetBody,
) -> ApiResult<HttpResponse> {
    search(&state, &principal, &filters(q.into_inner(), &body)?).await
}

/// Re-verifies the org's hash chain.
#[utoipa::path(tag = "audit", responses((status = 200, body = Verification)),
    security(("bearer" = ["admin:read"])))]
#[get("/audit/verify")]
pub async fn verify_chain(state: web::Data<AppState>, principal: Principal) -> ApiResult<HttpResponse> {
    let mut conn = state.conn().await?;
    Ok(HttpResponse::Ok().json(verify(&mut conn, principal.org_id).await?))
}

#[derive(Clone, Copy)]
enum Format {
    Csv,
    Jsonl,
}

const CSV_HEADER: [&str; 13] = [
    "id",
    "seq",
    "timestamp",
    "org_id",
    "user_id",
    "user_email",
    "action",
    "resource_type",
    "resource_id",
    "ip_address",
    "user_agent",
    "metadata",
    "hash",
];

/// A CSV cell that a spreadsheet would run as a formula (OWASP "CSV
/// injection": `=`, `+`, `-`, `@`, tab, CR first) gets a leading `'`. Only
/// the CSV export is escaped; JSON Lines and the API carry stored values.
fn cell(v: String) -> String {
    match v.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => format!("'{v}"),
        _ => v,
    }
}

fn encode(format: Format, rows: &[AuditRecord], header: bool) -> Result<Bytes, ApiError> {
    match format {
        Format::Jsonl => {
            let mut out = Vec::with_capacity(rows.len() * 400);
            for r in rows {
                serde_json::to_writer(&mut out, r).map_err(|e| ApiError::Internal(e.into()))?;
                out.push(b'\n');
            }
            Ok(Bytes::from(out))
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(Vec::with_capacity(rows.len() * 400));
            let fail = |e: csv::Error| ApiError::Internal(e.into());
            if header {
                w.write_record(CSV_HEADER).map_err(fail)?;
            }
            for r in rows {
                let opt = |v: &Option<String>| v.clone().unwrap_or_default();
                w.write_record([
                    r.id.to_string(),
                    r.seq.to_string(),
                    super::chain::timestamp(r.occurred_at),
                    r.org_id.to_string(),
                    r.user_id.map(|u| u.to_string()).unwrap_or_default(),
                    cell(opt(&r.user_email)),
                    r.action.clone(),
                    cell(r.resource_type.clone()),
                    cell(opt(&r.resource_id)),
                    opt(&r.ip_address),
                    cell(opt(&r.user_agent)),
                    r.metadata.to_string(),
                    hex::encode(&r.hash),
                ])
                .map_err(fail)?;
            }
            w.into_inner().map(Bytes::from).map_err(|e| ApiError::Internal(anyhow::anyhow!("csv: {e}")))
        }
    }
}

/// Streams the filtered log as CSV or JSON Lines, newest first, in pages of
/// 1000 rows: memory stays constant however many records match. `limit`
/// and `cursor` do not apply.
#[utoipa::path(tag = "audit", params(RawFilters),
    responses((status = 200, content_type = "text/csv"), (status = 400), (status = 403)),
    security(("bearer" = ["admin:read"])))]
#[get("/audit/export")]
pub async fn export(
    state: web::Data<AppState>,
    principal: Principal,
    q: web::Query<RawFilters>,
    body: GetBody,
) -> ApiResult<HttpResponse> {
    let raw = filters(q.into_inner(), &body)?;
    let format = match raw.format.as_deref() {
        None | Some("csv") => Format::Csv,
        Some("jsonl") => Format::Jsonl,
        Some(other) => return Err(ApiError::bad_field("format", format!("{other:?}: use csv or jsonl"))),
    };
    let mut f = Filters::parse(&RawFilters { limit: None, cursor: None, ..raw })?;
    f.limit = 1000;
    let org = principal.org_id;
    let db = state.db.clone();
    // State: (filters for the next page, first page?, finished?).
    let stream = futures_util::stream::unfold((f, true, false), move |(mut f, first, done)| {
        let db = db.clone();
        async move {
            if done {
                return None;
            }
            let rows = async {
                let mut conn = db.get().await?;
                Ok::<_, ApiError>(query::page(&mut conn, org, &f).await?)
            }
            .await;
            let rows = match rows {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "audit export page failed");
                    return Some((Err(actix_web::Error::from(e)), (f, false, true)));
                }
            };
            let last = rows.len() < f.limit as usize;
            let chunk = encode(format, &rows, first);
            f.cursor = rows.last().map(|r| (r.occurred_at, r.seq));
            Some((chunk.map_err(actix_web::Error::from), (f, false, last)))
        }
    });
    let (content_type, ext) = match format {
        Format::Csv => ("text/csv; charset=utf-8", "csv"),
        Format::Jsonl => ("application/x-ndjson", "jsonl"),
    };
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("content-disposition", format!("attachment; filename=\"audit.{ext}\"")))
        .streaming(stream))
}

//! Reports in JSON, CSV or XLSX; periods; the journal export.

use actix_web::http::header::{self, ContentDisposition, DispositionParam, DispositionType};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::NaiveDate;
use futures_util::StreamExt;
use serde::Deserialize;
use uuid::Uuid;

use super::bad_query;
use crate::api::extract::{blocking, write, Caller, IdempotencyKey, Json};
use crate::api::problem::Problem;
use crate::domain::report::Report;
use crate::error::Error;
use crate::service::periods::{self, CloseInput, PeriodView, SignOffInput};
use crate::service::reports::{self as svc, Params};
use crate::store::periods::Period;
use crate::store::Db;

/// Whether `/api/v1/public/disclosure` answers without a token (operator's choice).
#[derive(Debug, Clone, Copy, Default)]
pub struct PublicDisclosure(pub bool);

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// First business day (YYYY-MM-DD, UTC).
    pub from: Option<NaiveDate>,
    /// Last business day, inclusive.
    pub to: Option<NaiveDate>,
    /// Stock on hand at the end of this day.
    pub as_of: Option<NaiveDate>,
    pub warehouse_id: Option<Uuid>,
    pub item_id: Option<Uuid>,
    pub lot_id: Option<Uuid>,
    pub donor_id: Option<Uuid>,
    pub recipient_id: Option<Uuid>,
    /// Distribution summary: `province`, `city` or `county` (default).
    pub region_level: Option<String>,
    /// Expiry: the horizon in days (default 30).
    pub within_days: Option<i64>,
    /// `json` (default), `csv` or `xlsx`; or send an Accept header.
    pub format: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
    Xlsx,
}

const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

fn format(req: &HttpRequest, asked: Option<&str>) -> Result<Format, Problem> {
    match asked {
        Some("json") => Ok(Format::Json),
        Some("csv") => Ok(Format::Csv),
        Some("xlsx") => Ok(Format::Xlsx),
        Some(_) => Err(bad_query("format", "must be json, csv or xlsx")),
        None => {
            let accept = req
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            Ok(if accept.contains("text/csv") {
                Format::Csv
            } else if accept.contains("spreadsheetml") {
                Format::Xlsx
            } else {
                Format::Json
            })
        }
    }
}

/// A rendered report: what the response carries.
struct Rendered {
    content_type: &'static str,
    /// The file name offered for download (CSV and XLSX).
    file: Option<String>,
    body: Vec<u8>,
}

/// Runs a report and renders it on a blocking thread: a big report's rows are built and
/// serialised there, not on the async workers that answer every other request.
async fn run_and_render(
    db: web::Data<Db>,
    actor: Option<crate::domain::access::Principal>,
    name: String,
    p: Params,
    fmt: Format,
) -> Result<HttpResponse, Error> {
    let r = blocking(move || {
        let out = render(&svc::run(&db, actor.as_ref(), &name, &p)?, fmt);
        // The report's rows are freed now, on whichever thread ran it; glibc keeps freed
        // memory in that thread's arena, and reports on other threads then take more, so
        // the process grew by each big report run on a new thread (the all-donors
        // statement of a busy month three times: 76, 120, 137 MB). Give it back.
        release_freed_memory();
        out
    })
    .await?;
    let mut res = HttpResponse::Ok();
    res.content_type(r.content_type);
    if let Some(name) = r.file {
        res.insert_header(ContentDisposition {
            disposition: DispositionType::Attachment,
            parameters: vec![DispositionParam::Filename(name)],
        });
    }
    Ok(res.body(r.body))
}

fn render(report: &Report, fmt: Format) -> Result<Rendered, Error> {
    let file = |ext: &str| {
        Some(format!(
            "{}-{}.{ext}",
            report.report,
            report.computed_at.format("%Y%m%dT%H%M%SZ")
        ))
    };
    Ok(match fmt {
        Format::Json => Rendered {
            content_type: "application/json",
            file: None,
            body: serde_json::to_vec(report).map_err(|e| Error::Internal(format!("json: {e}")))?,
        },
        Format::Csv => Rendered {
            content_type: "text/csv; charset=utf-8",
            file: file("csv"),
            body: crate::domain::report::to_csv(report).into_bytes(),
        },
        Format::Xlsx => Rendered {
            content_type: XLSX,
            file: file("xlsx"),
            body: crate::export::xlsx::render(report)
                .map_err(|e| Error::Internal(format!("xlsx: {e}")))?,
        },
    })
}

/// Returns the pages of freed heap memory to the system (glibc's `malloc_trim`, which walks
/// every thread's arena); elsewhere the allocator is left to itself.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages to the kernel; it touches no live memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn params(q: &ReportQuery) -> Params {
    Params {
        from: q.from,
        to: q.to,
        as_of: q.as_of,
        warehouse_id: q.warehouse_id,
        item_id: q.item_id,
        lot_id: q.lot_id,
        donor_id: q.donor_id,
        recipient_id: q.recipient_id,
        region_level: q.region_level.clone(),
        within_days: q.within_days,
    }
}

/// One report. `name` is one of: stock-on-hand, stock-card (item_id, warehouse_id, from, to;
/// optional lot_id), donor-statement (optional donor_id, from, to), recipient-statement
/// (recipient_id), distribution-summary (from, to, region_level, item_id),
/// pledge-reconciliation, valuation-rollforward (from, to), expiry (within_days),
/// disclosure (from, to). Every report states its period, when it was computed and the
/// audit head of the ledger state it reflects.
#[utoipa::path(get, path = "/api/v1/reports/{name}", tag = "reports", security(("bearer" = [])),
    params(("name" = String, Path), ReportQuery),
    responses((status = 200, description = "The report (JSON, CSV with BOM, or XLSX)", body = Report),
              (status = 400, description = "Bad parameter or format", body = Problem),
              (status = 404, description = "No such report", body = Problem),
              (status = 422, description = "A required parameter is missing", body = Problem)))]
pub async fn report(
    req: HttpRequest,
    caller: Caller,
    db: web::Data<Db>,
    name: web::Path<String>,
    q: web::Query<ReportQuery>,
) -> Result<HttpResponse, actix_web::Error> {
    let fmt = format(&req, q.format.as_deref())?;
    if let (Some(f), Some(t)) = (q.from, q.to) {
        if t < f {
            return Err(bad_query("to", "is before from").into());
        }
    }
    let (name, p) = (name.into_inner(), params(&q));
    Ok(run_and_render(db, Some(caller.principal), name, p, fmt).await?)
}

/// The public disclosure of donations and their use, without a token, when the operator
/// has switched it on (`--public-disclosure`); 404 otherwise.
#[utoipa::path(get, path = "/api/v1/public/disclosure", tag = "reports",
    params(ReportQuery),
    responses((status = 200, description = "The disclosure report", body = Report),
              (status = 404, description = "Not published on this server", body = Problem)))]
pub async fn public_disclosure(
    req: HttpRequest,
    db: web::Data<Db>,
    public: web::Data<PublicDisclosure>,
    q: web::Query<ReportQuery>,
) -> Result<HttpResponse, actix_web::Error> {
    if !public.0 {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
            "the public disclosure is not published on this server",
        )
        .into());
    }
    let fmt = format(&req, q.format.as_deref())?;
    if let (Some(f), Some(t)) = (q.from, q.to) {
        if t < f {
            return Err(bad_query("to", "is before from").into());
        }
    }
    let p = Params {
        from: q.from,
        to: q.to,
        ..Default::default()
    };
    Ok(run_and_render(db, None, "disclosure".into(), p, fmt).await?)
}

/// The journal as an hledger / ledger file, streamed: items are commodities, locations
/// accounts, estimated values prices. `hledger -f journal balance ^stock` gives stock on hand.
#[utoipa::path(get, path = "/api/v1/export/journal", tag = "reports", security(("bearer" = [])),
    responses((status = 200, description = "text/plain journal", content_type = "text/plain")))]
pub async fn journal(caller: Caller, db: web::Data<Db>) -> Result<HttpResponse, Error> {
    let d = db.clone();
    let start =
        std::sync::Arc::new(blocking(move || svc::journal_start(&d, &caller.principal)).await?);
    let header = web::Bytes::from(start.header());
    let pages = futures_util::stream::try_unfold(0i64, move |after| {
        let (db, start) = (db.clone(), start.clone());
        async move {
            let page = blocking(move || svc::journal_page(&db, &start, after)).await?;
            Ok::<_, Error>(page.map(|(text, next)| (web::Bytes::from(text), next)))
        }
    });
    let body = futures_util::stream::once(async move { Ok::<_, Error>(header) }).chain(pages);
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .insert_header(ContentDisposition {
            disposition: DispositionType::Attachment,
            parameters: vec![DispositionParam::Filename("relief-ledger.journal".into())],
        })
        .streaming(body))
}

/// Closed periods, oldest first.
#[utoipa::path(get, path = "/api/v1/periods", tag = "reports", security(("bearer" = [])),
    responses((status = 200, description = "Closed periods", body = Vec<Period>)))]
pub async fn list_periods(caller: Caller, db: web::Data<Db>) -> Result<HttpResponse, Error> {
    let l = blocking(move || periods::list(&db, &caller.principal)).await?;
    Ok(HttpResponse::Ok().json(l))
}

#[utoipa::path(get, path = "/api/v1/periods/{id}", tag = "reports", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, description = "The period and its closing stock", body = PeriodView)))]
pub async fn get_period(
    caller: Caller,
    db: web::Data<Db>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, Error> {
    let id = id.into_inner();
    let p = blocking(move || periods::get(&db, &caller.principal, id)).await?;
    Ok(HttpResponse::Ok().json(p))
}

/// Closes the period through a day: records closing stock and the audit head. No movement
/// or value may be dated into it afterwards.
#[utoipa::path(post, path = "/api/v1/periods", tag = "reports", security(("bearer" = [])), request_body = CloseInput,
    responses((status = 201, description = "Closed", body = PeriodView),
              (status = 409, description = "Already closed", body = Problem),
              (status = 422, description = "Not ended yet", body = Problem)))]
pub async fn close_period(
    req: HttpRequest,
    caller: Caller,
    key: IdempotencyKey,
    body: Json<CloseInput>,
) -> Result<HttpResponse, Error> {
    let body = body.0;
    let echo = body.clone();
    write(
        &req,
        caller,
        key,
        &echo,
        StatusCode::CREATED,
        async move |db, ctx| periods::close(db, ctx, body).await,
    )
    .await
}

/// An auditor's sign-off of a closed period.
#[utoipa::path(post, path = "/api/v1/periods/{id}/sign-off", tag = "reports", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = SignOffInput,
    responses((status = 200, description = "Signed off", body = PeriodView), (status = 409, description = "Already signed off", body = Problem)))]
pub async fn sign_off(
    req: HttpRequest,
    caller: Caller,
    key: IdempotencyKey,
    id: web::Path<Uuid>,
    body: Json<SignOffInput>,
) -> Result<HttpResponse, Error> {
    let (id, body) = (id.into_inner(), body.0);
    let echo = body.clone();
    write(
        &req,
        caller,
        key,
        &echo,
        StatusCode::OK,
        async move |db, ctx| periods::sign_off(db, ctx, id, body).await,
    )
    .await
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/reports/{name}", web::get().to(report))
        .route(
            "/api/v1/public/disclosure",
            web::get().to(public_disclosure),
        )
        .route("/api/v1/export/journal", web::get().to(journal))
        .service(
            web::resource("/api/v1/periods")
                .route(web::get().to(list_periods))
                .route(web::post().to(close_period)),
        )
        .route("/api/v1/periods/{id}", web::get().to(get_period))
        .route("/api/v1/periods/{id}/sign-off", web::post().to(sign_off));
}

//! The supply ledger: pledges, receipts, shipments, transfers, adjustments, stock counts,
//! lots, stock, movements and the integrity check.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::bad_query;
use crate::api::extract::{blocking, write, Caller, IdempotencyKey, Json};
use crate::api::problem::Problem;
use crate::domain::ledger::document::*;
use crate::domain::ledger::lot::Lot;
use crate::domain::ledger::movement::Movement;
use crate::error::Error;
use crate::service::ledger::documents as svc;
use crate::service::ledger::reads::{self, IntegrityReport, LotTrace, StockReport};
use crate::service::ledger::DocumentView;
use crate::service::{Listing, DEFAULT_PAGE, MAX_PAGE};
use crate::store::ledger::{DocFilter, MoveFilter, StockFilter};
use crate::store::Db;

fn limit(l: Option<i64>) -> Result<i64, Problem> {
    let l = l.unwrap_or(DEFAULT_PAGE);
    if (1..=MAX_PAGE).contains(&l) {
        Ok(l)
    } else {
        Err(bad_query(
            "limit",
            format!("must be between 1 and {MAX_PAGE}"),
        ))
    }
}

fn cursor(c: &Option<String>) -> Result<Option<Uuid>, Problem> {
    c.as_deref()
        .map(|c| {
            Uuid::parse_str(c).map_err(|_| bad_query("cursor", "is not a cursor this API returned"))
        })
        .transpose()
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DocQuery {
    /// e.g. `open`, `draft`, `dispatched`, `delivered`, `posted`.
    pub status: Option<String>,
    pub donor_id: Option<Uuid>,
    pub recipient_id: Option<Uuid>,
    pub pledge_id: Option<Uuid>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// List and get for one document type.
macro_rules! doc_reads {
    ($list:ident, $get:ident, $doc_type:expr, $tag:tt, $collection:tt, $member:tt) => {
        #[utoipa::path(get, path = $collection, tag = $tag, security(("bearer" = [])), params(DocQuery),
            responses((status = 200, description = "A page of documents, oldest first", body = Listing<Document>)))]
        pub async fn $list(caller: Caller, db: web::Data<Db>, q: web::Query<DocQuery>) -> Result<HttpResponse, actix_web::Error> {
            let q = q.into_inner();
            let f = DocFilter {
                doc_type: Some($doc_type),
                status: q.status,
                donor_id: q.donor_id,
                recipient_id: q.recipient_id,
                pledge_id: q.pledge_id,
                warehouses: None,
                after: cursor(&q.cursor)?,
                limit: limit(q.limit)?,
            };
            let l = blocking(move || reads::list_documents(&db, &caller.principal, f)).await?;
            Ok(HttpResponse::Ok().json(l))
        }

        #[utoipa::path(get, path = $member, tag = $tag, security(("bearer" = [])), params(("id" = Uuid, Path)),
            responses((status = 200, description = "The document with its lines, movements and audit events", body = DocumentView),
                      (status = 403, description = "At another warehouse", body = Problem),
                      (status = 404, description = "No such document", body = Problem)))]
        pub async fn $get(caller: Caller, db: web::Data<Db>, id: web::Path<Uuid>) -> Result<HttpResponse, Error> {
            let id = id.into_inner();
            let d = blocking(move || reads::get_document(&db, &caller.principal, $doc_type, id)).await?;
            Ok(HttpResponse::Ok().insert_header(("etag", d.document.etag())).json(d))
        }
    };
}

doc_reads!(
    list_pledges,
    get_pledge,
    DocType::Pledge,
    "pledges",
    "/api/v1/pledges",
    "/api/v1/pledges/{id}"
);
doc_reads!(
    list_receipts,
    get_receipt,
    DocType::Receipt,
    "receipts",
    "/api/v1/receipts",
    "/api/v1/receipts/{id}"
);
doc_reads!(
    list_shipments,
    get_shipment,
    DocType::Shipment,
    "shipments",
    "/api/v1/shipments",
    "/api/v1/shipments/{id}"
);
doc_reads!(
    list_transfers,
    get_transfer,
    DocType::Transfer,
    "transfers",
    "/api/v1/transfers",
    "/api/v1/transfers/{id}"
);
doc_reads!(
    list_adjustments,
    get_adjustment,
    DocType::Adjustment,
    "adjustments",
    "/api/v1/adjustments",
    "/api/v1/adjustments/{id}"
);

/// A write that takes a body and answers with a document view.
macro_rules! doc_write {
    ($(#[$meta:meta])* $name:ident, $input:ty, $status:expr, |$db:ident, $ctx:ident, $body:ident| $call:expr) => {
        $(#[$meta])*
        pub async fn $name(req: HttpRequest, caller: Caller, key: IdempotencyKey, body: Json<$input>) -> Result<HttpResponse, Error> {
            let $body = body.0;
            let echo = $body.clone();
            write(&req, caller, key, &echo, $status, async move |$db, $ctx| $call.await).await
        }
    };
    ($(#[$meta:meta])* $name:ident, id, $input:ty, |$db:ident, $ctx:ident, $id:ident, $body:ident| $call:expr) => {
        $(#[$meta])*
        pub async fn $name(req: HttpRequest, caller: Caller, key: IdempotencyKey, id: web::Path<Uuid>, body: Json<$input>) -> Result<HttpResponse, Error> {
            let ($id, $body) = (id.into_inner(), body.0);
            let echo = $body.clone();
            write(&req, caller, key, &echo, StatusCode::OK, async move |$db, $ctx| $call.await).await
        }
    };
}

doc_write!(
    /// Records a donor's promise. Holds no stock. Quantities in any unit of the item.
    #[utoipa::path(post, path = "/api/v1/pledges", tag = "pledges", security(("bearer" = [])), request_body = PledgeInput,
        params(("Idempotency-Key" = Option<String>, Header)),
        responses((status = 201, description = "Created (open)", body = DocumentView), (status = 422, description = "Invalid fields", body = Problem)))]
    create_pledge, PledgeInput, StatusCode::CREATED, |db, ctx, b| svc::create_pledge(db, ctx, b)
);
doc_write!(
    /// Cancels what is still outstanding of a pledge.
    #[utoipa::path(post, path = "/api/v1/pledges/{id}/cancel", tag = "pledges", security(("bearer" = [])), request_body = StepInput,
        params(("id" = Uuid, Path)),
        responses((status = 200, description = "Cancelled", body = DocumentView), (status = 409, description = "Not open", body = Problem)))]
    cancel_pledge, id, StepInput, |db, ctx, id, b| svc::cancel_pledge(db, ctx, id, b)
);
doc_write!(
    /// Goods arrive at a warehouse from a donor, optionally against pledge lines. Each line
    /// becomes a lot. Over-receiving a pledge line is refused (409); receive the excess on a
    /// line without `pledge_line_no`.
    #[utoipa::path(post, path = "/api/v1/receipts", tag = "receipts", security(("bearer" = [])), request_body = ReceiptInput,
        params(("Idempotency-Key" = Option<String>, Header)),
        responses((status = 201, description = "Posted", body = DocumentView),
                  (status = 403, description = "Not the clerk's warehouse", body = Problem),
                  (status = 409, description = "Over-receipt, or the pledge is closed", body = Problem),
                  (status = 422, description = "Invalid fields", body = Problem)))]
    post_receipt, ReceiptInput, StatusCode::CREATED, |db, ctx, b| svc::post_receipt(db, ctx, b)
);
doc_write!(
    /// Creates a shipment as a draft, or dispatches it at once with `"dispatch": true`.
    #[utoipa::path(post, path = "/api/v1/shipments", tag = "shipments", security(("bearer" = [])), request_body = ShipmentInput,
        params(("Idempotency-Key" = Option<String>, Header)),
        responses((status = 201, description = "Created", body = DocumentView),
                  (status = 409, description = "Not enough usable stock (names the item and the shortfall)", body = Problem),
                  (status = 422, description = "Invalid fields", body = Problem)))]
    create_shipment, ShipmentInput, StatusCode::CREATED, |db, ctx, b| svc::create_shipment(db, ctx, b)
);
doc_write!(
    /// Allocates lots and moves the goods into transit.
    #[utoipa::path(post, path = "/api/v1/shipments/{id}/dispatch", tag = "shipments", security(("bearer" = [])), request_body = StepInput,
        params(("id" = Uuid, Path)),
        responses((status = 200, description = "Dispatched", body = DocumentView), (status = 409, description = "Not a draft, or not enough stock", body = Problem)))]
    dispatch_shipment, id, StepInput, |db, ctx, id, b| svc::dispatch_shipment(db, ctx, id, b)
);
doc_write!(
    /// Records delivery: who signed, when, and any shortfall (written off to loss).
    #[utoipa::path(post, path = "/api/v1/shipments/{id}/deliver", tag = "shipments", security(("bearer" = [])), request_body = DeliverInput,
        params(("id" = Uuid, Path)),
        responses((status = 200, description = "Delivered", body = DocumentView), (status = 409, description = "Not dispatched", body = Problem)))]
    deliver_shipment, id, DeliverInput, |db, ctx, id, b| svc::deliver_shipment(db, ctx, id, b)
);
doc_write!(
    /// Brings a dispatched shipment back to its warehouse.
    #[utoipa::path(post, path = "/api/v1/shipments/{id}/return", tag = "shipments", security(("bearer" = [])), request_body = StepInput,
        params(("id" = Uuid, Path)),
        responses((status = 200, description = "Returned", body = DocumentView), (status = 409, description = "Not dispatched", body = Problem)))]
    return_shipment, id, StepInput, |db, ctx, id, b| svc::return_shipment(db, ctx, id, b)
);
doc_write!(
    /// Cancels a draft.
    #[utoipa::path(post, path = "/api/v1/shipments/{id}/cancel", tag = "shipments", security(("bearer" = [])), request_body = StepInput,
        params(("id" = Uuid, Path)),
        responses((status = 200, description = "Cancelled", body = DocumentView), (status = 409, description = "Not a draft", body = Problem)))]
    cancel_shipment, id, StepInput, |db, ctx, id, b| svc::cancel_shipment(db, ctx, id, b)
);
doc_write!(
    /// Sends goods to another warehouse: they go into transit until received.
    #[utoipa::path(post, path = "/api/v1/transfers", tag = "transfers", security(("bearer" = [])), request_body = TransferInput,
        params(("Idempotency-Key" = Option<String>, Header)),
        responses((status = 201, description = "Dispatched", body = DocumentView), (status = 409, description = "Not enough stock", body = Problem)))]
    create_transfer, TransferInput, StatusCode::CREATED, |db, ctx, b| svc::create_transfer(db, ctx, b)
);
doc_write!(
    /// The destination warehouse receives a transfer.
    #[utoipa::path(post, path = "/api/v1/transfers/{id}/receive", tag = "transfers", security(("bearer" = [])), request_body = StepInput,
        params(("id" = Uuid, Path)),
        responses((status = 200, description = "Received", body = DocumentView), (status = 409, description = "Not in transit", body = Problem)))]
    receive_transfer, id, StepInput, |db, ctx, id, b| svc::receive_transfer(db, ctx, id, b)
);
doc_write!(
    /// Writes stock off or back on, with a reason. Damaged, expired and lost take away
    /// (negative quantities); found adds; count corrections and other go either way.
    #[utoipa::path(post, path = "/api/v1/adjustments", tag = "adjustments", security(("bearer" = [])), request_body = AdjustmentInput,
        params(("Idempotency-Key" = Option<String>, Header)),
        responses((status = 201, description = "Posted", body = DocumentView), (status = 409, description = "Not enough stock", body = Problem)))]
    post_adjustment, AdjustmentInput, StatusCode::CREATED, |db, ctx, b| svc::post_adjustment(db, ctx, b)
);
doc_write!(
    /// Records counted quantities per lot; the differences from the books become a
    /// count-correction adjustment, which is returned.
    #[utoipa::path(post, path = "/api/v1/stock-counts", tag = "adjustments", security(("bearer" = [])), request_body = StockCountInput,
        params(("Idempotency-Key" = Option<String>, Header)),
        responses((status = 201, description = "The count's adjustment", body = DocumentView)))]
    stock_count, StockCountInput, StatusCode::CREATED, |db, ctx, b| svc::stock_count(db, ctx, b)
);

macro_rules! reverse_route {
    ($name:ident, $doc_type:expr, $tag:tt, $path:tt) => {
        doc_write!(
            /// Undoes the document with a new, linked document of opposite movements. Refused
            /// if it would drive stock negative, or if the document was already reversed.
            #[utoipa::path(post, path = $path, tag = $tag, security(("bearer" = [])), request_body = StepInput,
                params(("id" = Uuid, Path)),
                responses((status = 200, description = "The reversal", body = DocumentView),
                          (status = 409, description = "Already reversed, or stock would go negative", body = Problem),
                          (status = 422, description = "Reason missing", body = Problem)))]
            $name, id, StepInput, |db, ctx, id, b| svc::reverse(db, ctx, $doc_type, id, b)
        );
    };
}

reverse_route!(
    reverse_receipt,
    DocType::Receipt,
    "receipts",
    "/api/v1/receipts/{id}/reverse"
);
reverse_route!(
    reverse_shipment,
    DocType::Shipment,
    "shipments",
    "/api/v1/shipments/{id}/reverse"
);
reverse_route!(
    reverse_transfer,
    DocType::Transfer,
    "transfers",
    "/api/v1/transfers/{id}/reverse"
);
reverse_route!(
    reverse_adjustment,
    DocType::Adjustment,
    "adjustments",
    "/api/v1/adjustments/{id}/reverse"
);

// ---------------------------------------------------------------- lots

/// A lot's trace: donor and pledge it came from, every movement, where each unit is now.
#[utoipa::path(get, path = "/api/v1/lots/{id}", tag = "stock", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, description = "The trace", body = LotTrace), (status = 404, description = "No such lot", body = Problem)))]
pub async fn lot_trace(
    caller: Caller,
    db: web::Data<Db>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, Error> {
    let id = id.into_inner();
    let t = blocking(move || reads::lot_trace(&db, &caller.principal, id)).await?;
    Ok(HttpResponse::Ok().json(t))
}

/// Puts a lot on hold (a recall): it cannot be shipped or transferred until released.
#[utoipa::path(post, path = "/api/v1/lots/{id}/hold", tag = "stock", security(("bearer" = [])), params(("id" = Uuid, Path)),
    request_body = HoldInput, responses((status = 200, description = "On hold", body = Lot), (status = 409, description = "Already on hold", body = Problem)))]
pub async fn hold_lot(
    req: HttpRequest,
    caller: Caller,
    key: IdempotencyKey,
    id: web::Path<Uuid>,
    body: Json<HoldInput>,
) -> Result<HttpResponse, Error> {
    let (id, body) = (id.into_inner(), body.0);
    let echo = body.clone();
    write(
        &req,
        caller,
        key,
        &echo,
        StatusCode::OK,
        async move |db, ctx| svc::set_hold(db, ctx, id, Some(body)).await,
    )
    .await
}

/// Releases a held lot.
#[utoipa::path(post, path = "/api/v1/lots/{id}/release", tag = "stock", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, description = "Released", body = Lot), (status = 409, description = "Not on hold", body = Problem)))]
pub async fn release_lot(
    req: HttpRequest,
    caller: Caller,
    key: IdempotencyKey,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, Error> {
    let id = id.into_inner();
    write(
        &req,
        caller,
        key,
        &serde_json::Value::Null,
        StatusCode::OK,
        async move |db, ctx| svc::set_hold(db, ctx, id, None).await,
    )
    .await
}

// ---------------------------------------------------------------- stock and journal

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StockQuery {
    pub warehouse_id: Option<Uuid>,
    pub item_id: Option<Uuid>,
    pub lot_id: Option<Uuid>,
    /// Stock at this instant (RFC 3339) or at the end of this day (YYYY-MM-DD), from the journal.
    pub as_of: Option<String>,
}

fn parse_as_of(s: &str) -> Result<DateTime<Utc>, Problem> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let d: chrono::NaiveDate = s
        .parse()
        .map_err(|_| bad_query("as_of", "must be an RFC 3339 time or a YYYY-MM-DD date"))?;
    Ok(d.and_hms_micro_opt(23, 59, 59, 999_999)
        .expect("valid time")
        .and_utc())
}

/// Stock on hand by location, item and lot, with estimated values and totals.
#[utoipa::path(get, path = "/api/v1/stock", tag = "stock", security(("bearer" = [])), params(StockQuery),
    responses((status = 200, description = "Stock on hand", body = StockReport)))]
pub async fn stock(
    caller: Caller,
    db: web::Data<Db>,
    q: web::Query<StockQuery>,
) -> Result<HttpResponse, actix_web::Error> {
    let q = q.into_inner();
    let as_of = q.as_of.as_deref().map(parse_as_of).transpose()?;
    let f = StockFilter {
        warehouses: q.warehouse_id.map(|w| vec![w]),
        item_id: q.item_id,
        lot_id: q.lot_id,
    };
    let r = blocking(move || reads::stock(&db, &caller.principal, f, as_of)).await?;
    Ok(HttpResponse::Ok().json(r))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MovementQuery {
    pub item_id: Option<Uuid>,
    pub lot_id: Option<Uuid>,
    /// A warehouse, donor, recipient, or (transit) document id.
    pub location_id: Option<Uuid>,
    pub document_id: Option<Uuid>,
    /// Business time from (inclusive), RFC 3339.
    pub from: Option<DateTime<Utc>>,
    /// Business time to (exclusive), RFC 3339.
    pub to: Option<DateTime<Utc>>,
    /// The `next_cursor` of the previous page (a journal sequence number).
    pub cursor: Option<i64>,
    pub limit: Option<i64>,
}

/// The journal: movements in the order they were recorded.
#[utoipa::path(get, path = "/api/v1/movements", tag = "stock", security(("bearer" = [])), params(MovementQuery),
    responses((status = 200, description = "A page of movements", body = Listing<Movement>)))]
pub async fn movements(
    caller: Caller,
    db: web::Data<Db>,
    q: web::Query<MovementQuery>,
) -> Result<HttpResponse, actix_web::Error> {
    let q = q.into_inner();
    if let (Some(f), Some(t)) = (q.from, q.to) {
        if t < f {
            return Err(bad_query("to", "is before from").into());
        }
    }
    let f = MoveFilter {
        item_id: q.item_id,
        lot_id: q.lot_id,
        location_id: q.location_id,
        warehouses: None,
        document_id: q.document_id,
        from: q.from,
        to: q.to,
        after_seq: q.cursor,
        limit: limit(q.limit)?,
    };
    let l = blocking(move || reads::movements(&db, &caller.principal, f)).await?;
    Ok(HttpResponse::Ok().json(l))
}

/// Recomputes every balance from the movements and checks the ledger's invariants.
#[utoipa::path(get, path = "/api/v1/ledger/integrity", tag = "audit", security(("bearer" = [])),
    responses((status = 200, description = "The result (ok or not)", body = IntegrityReport)))]
pub async fn integrity(caller: Caller, db: web::Data<Db>) -> Result<HttpResponse, Error> {
    let r = blocking(move || reads::integrity(&db, &caller.principal)).await?;
    Ok(HttpResponse::Ok().json(r))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    let post = web::post;
    cfg.service(
        web::resource("/api/v1/pledges")
            .route(web::get().to(list_pledges))
            .route(post().to(create_pledge)),
    )
    .route("/api/v1/pledges/{id}", web::get().to(get_pledge))
    .route("/api/v1/pledges/{id}/cancel", post().to(cancel_pledge))
    .service(
        web::resource("/api/v1/receipts")
            .route(web::get().to(list_receipts))
            .route(post().to(post_receipt)),
    )
    .route("/api/v1/receipts/{id}", web::get().to(get_receipt))
    .route("/api/v1/receipts/{id}/reverse", post().to(reverse_receipt))
    .service(
        web::resource("/api/v1/shipments")
            .route(web::get().to(list_shipments))
            .route(post().to(create_shipment)),
    )
    .route("/api/v1/shipments/{id}", web::get().to(get_shipment))
    .route(
        "/api/v1/shipments/{id}/dispatch",
        post().to(dispatch_shipment),
    )
    .route(
        "/api/v1/shipments/{id}/deliver",
        post().to(deliver_shipment),
    )
    .route("/api/v1/shipments/{id}/return", post().to(return_shipment))
    .route("/api/v1/shipments/{id}/cancel", post().to(cancel_shipment))
    .route(
        "/api/v1/shipments/{id}/reverse",
        post().to(reverse_shipment),
    )
    .service(
        web::resource("/api/v1/transfers")
            .route(web::get().to(list_transfers))
            .route(post().to(create_transfer)),
    )
    .route("/api/v1/transfers/{id}", web::get().to(get_transfer))
    .route(
        "/api/v1/transfers/{id}/receive",
        post().to(receive_transfer),
    )
    .route(
        "/api/v1/transfers/{id}/reverse",
        post().to(reverse_transfer),
    )
    .service(
        web::resource("/api/v1/adjustments")
            .route(web::get().to(list_adjustments))
            .route(post().to(post_adjustment)),
    )
    .route("/api/v1/adjustments/{id}", web::get().to(get_adjustment))
    .route(
        "/api/v1/adjustments/{id}/reverse",
        post().to(reverse_adjustment),
    )
    .route("/api/v1/stock-counts", post().to(stock_count))
    .route("/api/v1/lots/{id}", web::get().to(lot_trace))
    .route("/api/v1/lots/{id}/hold", post().to(hold_lot))
    .route("/api/v1/lots/{id}/release", post().to(release_lot))
    .route("/api/v1/stock", web::get().to(stock))
    .route("/api/v1/movements", web::get().to(movements))
    .route("/api/v1/ledger/integrity", web::get().to(integrity));
}

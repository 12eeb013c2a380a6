//! The audit trail: events, head and verification (admins and auditors).

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::bad_query;
use crate::api::extract::{blocking, Caller};
use crate::api::problem::Problem;
use crate::domain::audit::AuditEvent;
use crate::error::Error;
use crate::service::audit::{self as svc, Head, VerifyReport};
use crate::service::{Listing, DEFAULT_PAGE, MAX_PAGE};
use crate::store::audit::EventFilter;
use crate::store::Db;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// `donor`, `item`, `user`, …
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    /// `donor.create`, `token.revoke`, …
    pub action: Option<String>,
    pub actor_id: Option<String>,
    /// Events after this sequence number (the `next_cursor` of the previous page).
    pub cursor: Option<i64>,
    /// 1 to 500, 50 if absent.
    pub limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/audit/events", tag = "audit", security(("bearer" = [])),
    params(EventQuery), responses((status = 200, description = "Events in sequence order", body = Listing<AuditEvent>),
                                  (status = 403, description = "Admins and auditors only", body = Problem)))]
pub async fn events(
    caller: Caller,
    db: web::Data<Db>,
    q: web::Query<EventQuery>,
) -> Result<HttpResponse, actix_web::Error> {
    let q = q.into_inner();
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(bad_query("limit", format!("must be between 1 and {MAX_PAGE}")).into());
    }
    let f = EventFilter {
        entity_type: q.entity_type,
        entity_id: q.entity_id,
        action: q.action,
        actor_id: q.actor_id,
        after_seq: q.cursor,
    };
    let l = blocking(move || svc::events(&db, &caller.principal, &f, limit)).await?;
    Ok(HttpResponse::Ok().json(l))
}

/// The latest event: record it to tie a report or a paper copy to a verifiable state.
#[utoipa::path(get, path = "/api/v1/audit/head", tag = "audit", security(("bearer" = [])),
    responses((status = 200, description = "Sequence and hash of the latest event", body = Head)))]
pub async fn head(caller: Caller, db: web::Data<Db>) -> Result<HttpResponse, Error> {
    let h = blocking(move || svc::head(&db, &caller.principal)).await?;
    Ok(HttpResponse::Ok().json(h))
}

/// Recomputes every hash of the chain and names the first event that does not verify.
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit", security(("bearer" = [])),
    responses((status = 200, description = "The verification result (valid or not)", body = VerifyReport)))]
pub async fn verify(caller: Caller, db: web::Data<Db>) -> Result<HttpResponse, Error> {
    let r = blocking(move || svc::verify(&db, &caller.principal)).await?;
    Ok(HttpResponse::Ok().json(r))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/audit/events", web::get().to(events))
        .route("/api/v1/audit/head", web::get().to(head))
        .route("/api/v1/audit/verify", web::get().to(verify));
}

//! Items (with their value history), warehouses, donors and recipients.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use uuid::Uuid;

use super::{bad_query, record, PageParams};
use crate::api::extract::{blocking, Caller, IfMatch, Json};
use crate::api::problem::Problem;
use crate::domain::catalog::{Item, ItemInput, ItemValue, ItemValueInput};
use crate::domain::codes;
use crate::domain::parties::{
    Donor, DonorInput, Recipient, RecipientInput, Warehouse, WarehouseInput,
};
use crate::error::Error;
use crate::service::master as svc;
use crate::service::Listing;
use crate::store::master::{ItemFilter, PartyFilter};
use crate::store::Db;

/// The four operations every master record has, with their OpenAPI descriptions.
macro_rules! master_handlers {
    ($module:ident, $t:ident, $input:ident, $tag:tt, $collection:tt, $member:tt) => {
        pub mod $module {
            use super::*;

            #[utoipa::path(post, path = $collection, tag = $tag, request_body = $input,
                security(("bearer" = [])),
                responses(
                    (status = 201, description = "Created; ETag holds its version", body = $t),
                    (status = 401, description = "No valid token", body = Problem),
                    (status = 403, description = "Role may not do this", body = Problem),
                    (status = 409, description = "A unique value is taken", body = Problem),
                    (status = 422, description = "Invalid fields, all named", body = Problem)))]
            pub async fn create(
                caller: Caller,
                db: web::Data<Db>,
                body: Json<$input>,
            ) -> Result<HttpResponse, Error> {
                let ctx = caller.ctx();
                let r: $t = svc::create::<$t>(&db, &ctx, body.0).await?;
                let location = format!("{}/{}", $collection, r.meta.id);
                Ok(record(StatusCode::CREATED, &r.meta, &r, Some(location)))
            }

            #[utoipa::path(get, path = $member, tag = $tag, security(("bearer" = [])),
                params(("id" = Uuid, Path)),
                responses(
                    (status = 200, description = "The record; ETag holds its version", body = $t),
                    (status = 403, description = "Outside the caller's scope", body = Problem),
                    (status = 404, description = "No such record", body = Problem)))]
            pub async fn get(
                caller: Caller,
                db: web::Data<Db>,
                id: web::Path<Uuid>,
            ) -> Result<HttpResponse, Error> {
                let id = id.into_inner();
                let r: $t = blocking(move || svc::get::<$t>(&db, &caller.principal, id)).await?;
                Ok(record(StatusCode::OK, &r.meta, &r, None))
            }

            /// Changes fields by JSON merge patch (RFC 7396). Requires If-Match.
            #[utoipa::path(patch, path = $member, tag = $tag, security(("bearer" = [])),
                params(("id" = Uuid, Path), ("If-Match" = String, Header, description = "The ETag last read")),
                request_body(content = Object, content_type = "application/merge-patch+json"),
                responses(
                    (status = 200, description = "Changed", body = $t),
                    (status = 404, description = "No such record", body = Problem),
                    (status = 409, description = "Archived, or a unique value is taken", body = Problem),
                    (status = 412, description = "Changed since it was read", body = Problem),
                    (status = 422, description = "Invalid fields", body = Problem),
                    (status = 428, description = "If-Match missing", body = Problem)))]
            pub async fn patch(
                caller: Caller,
                db: web::Data<Db>,
                id: web::Path<Uuid>,
                if_match: IfMatch,
                body: Json<serde_json::Value>,
            ) -> Result<HttpResponse, Error> {
                let (id, ctx) = (id.into_inner(), caller.ctx());
                let r: $t = svc::patch::<$t>(&db, &ctx, id, if_match.0.as_deref(), body.0).await?;
                Ok(record(StatusCode::OK, &r.meta, &r, None))
            }

            /// Archives the record (nothing is ever deleted). If-Match is honoured when sent.
            #[utoipa::path(delete, path = $member, tag = $tag, security(("bearer" = [])),
                params(("id" = Uuid, Path)),
                responses(
                    (status = 200, description = "Archived", body = $t),
                    (status = 404, description = "No such record", body = Problem),
                    (status = 409, description = "Already archived", body = Problem),
                    (status = 412, description = "Changed since it was read", body = Problem)))]
            pub async fn archive(
                caller: Caller,
                db: web::Data<Db>,
                id: web::Path<Uuid>,
                if_match: IfMatch,
            ) -> Result<HttpResponse, Error> {
                let (id, ctx) = (id.into_inner(), caller.ctx());
                let r: $t =
                    svc::archive::<$t>(&db, &ctx, id, if_match.0.as_deref()).await?;
                Ok(record(StatusCode::OK, &r.meta, &r, None))
            }

            pub fn routes(cfg: &mut web::ServiceConfig, list: actix_web::Route) {
                cfg.service(web::resource($collection).route(list).route(web::post().to(create)))
                    .service(
                        web::resource(concat!($collection, "/{id}"))
                            .route(web::get().to(get))
                            .route(web::patch().to(patch))
                            .route(web::delete().to(archive)),
                    );
            }
        }
    };
}

master_handlers!(
    items,
    Item,
    ItemInput,
    "catalog",
    "/api/v1/items",
    "/api/v1/items/{id}"
);
master_handlers!(
    warehouses,
    Warehouse,
    WarehouseInput,
    "warehouses",
    "/api/v1/warehouses",
    "/api/v1/warehouses/{id}"
);
master_handlers!(
    donors,
    Donor,
    DonorInput,
    "donors",
    "/api/v1/donors",
    "/api/v1/donors/{id}"
);
master_handlers!(
    recipients,
    Recipient,
    RecipientInput,
    "recipients",
    "/api/v1/recipients",
    "/api/v1/recipients/{id}"
);

fn region(prefix: &Option<String>) -> Result<Option<String>, Problem> {
    prefix
        .as_deref()
        .map(|p| codes::region_prefix(p).map_err(|e| bad_query("region", e.to_string())))
        .transpose()
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ItemQuery {
    pub category: Option<crate::domain::catalog::Category>,
    pub code: Option<String>,
    /// Part of the name.
    pub q: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub include_archived: Option<bool>,
}

#[utoipa::path(get, path = "/api/v1/items", tag = "catalog", security(("bearer" = [])),
    params(ItemQuery), responses((status = 200, description = "A page of items", body = Listing<Item>)))]
pub async fn list_items(
    caller: Caller,
    db: web::Data<Db>,
    q: web::Query<ItemQuery>,
) -> Result<HttpResponse, actix_web::Error> {
    let q = q.into_inner();
    let page = PageParams {
        limit: q.limit,
        cursor: q.cursor,
        include_archived: q.include_archived,
    }
    .page()?;
    let f = ItemFilter {
        category: q.category.map(|c| crate::store::enum_str(&c)),
        code: q.code,
        name_contains: q.q,
    };
    let l = blocking(move || svc::list_items(&db, &caller.principal, &f, &page)).await?;
    Ok(HttpResponse::Ok().json(l))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WarehouseQuery {
    /// Region code prefix: 2 (province), 4 (city) or 6 (county) digits.
    pub region: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub include_archived: Option<bool>,
}

/// Clerks see only the warehouses they are assigned to.
#[utoipa::path(get, path = "/api/v1/warehouses", tag = "warehouses", security(("bearer" = [])),
    params(WarehouseQuery), responses((status = 200, description = "A page of warehouses", body = Listing<Warehouse>)))]
pub async fn list_warehouses(
    caller: Caller,
    db: web::Data<Db>,
    q: web::Query<WarehouseQuery>,
) -> Result<HttpResponse, actix_web::Error> {
    let q = q.into_inner();
    let page = PageParams {
        limit: q.limit,
        cursor: q.cursor,
        include_archived: q.include_archived,
    }
    .page()?;
    let region = region(&q.region)?;
    let l =
        blocking(move || svc::list_warehouses(&db, &caller.principal, region.as_deref(), &page))
            .await?;
    Ok(HttpResponse::Ok().json(l))
}

/// The page and filter a donor or recipient list asks for.
fn party_list<K: serde::Serialize>(
    kind: Option<K>,
    region_prefix: &Option<String>,
    name_contains: Option<String>,
    page: PageParams,
) -> Result<(crate::store::master::Page, PartyFilter), Problem> {
    let filter = PartyFilter {
        kind: kind.map(|k| crate::store::enum_str(&k)),
        region_prefix: region(region_prefix)?,
        name_contains,
    };
    Ok((page.page()?, filter))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DonorQuery {
    pub kind: Option<crate::domain::parties::DonorKind>,
    /// Region code prefix: 2, 4 or 6 digits.
    pub region: Option<String>,
    /// Part of the name.
    pub q: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub include_archived: Option<bool>,
}

#[utoipa::path(get, path = "/api/v1/donors", tag = "donors", security(("bearer" = [])),
    params(DonorQuery), responses((status = 200, description = "A page of donors", body = Listing<Donor>)))]
pub async fn list_donors(
    caller: Caller,
    db: web::Data<Db>,
    q: web::Query<DonorQuery>,
) -> Result<HttpResponse, actix_web::Error> {
    let q = q.into_inner();
    let (page, f) = party_list(
        q.kind,
        &q.region,
        q.q,
        PageParams {
            limit: q.limit,
            cursor: q.cursor,
            include_archived: q.include_archived,
        },
    )?;
    let l = blocking(move || svc::list_donors(&db, &caller.principal, &f, &page)).await?;
    Ok(HttpResponse::Ok().json(l))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RecipientQuery {
    pub kind: Option<crate::domain::parties::RecipientKind>,
    /// Region code prefix: 2, 4 or 6 digits.
    pub region: Option<String>,
    /// Part of the name.
    pub q: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub include_archived: Option<bool>,
}

#[utoipa::path(get, path = "/api/v1/recipients", tag = "recipients", security(("bearer" = [])),
    params(RecipientQuery), responses((status = 200, description = "A page of recipients", body = Listing<Recipient>)))]
pub async fn list_recipients(
    caller: Caller,
    db: web::Data<Db>,
    q: web::Query<RecipientQuery>,
) -> Result<HttpResponse, actix_web::Error> {
    let q = q.into_inner();
    let (page, f) = party_list(
        q.kind,
        &q.region,
        q.q,
        PageParams {
            limit: q.limit,
            cursor: q.cursor,
            include_archived: q.include_archived,
        },
    )?;
    let l = blocking(move || svc::list_recipients(&db, &caller.principal, &f, &page)).await?;
    Ok(HttpResponse::Ok().json(l))
}

/// An item's value history, newest first.
#[utoipa::path(get, path = "/api/v1/items/{id}/values", tag = "catalog", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "Value history", body = Vec<ItemValue>),
              (status = 404, description = "No such item", body = Problem)))]
pub async fn list_values(
    caller: Caller,
    db: web::Data<Db>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, Error> {
    let id = id.into_inner();
    let v = blocking(move || crate::service::catalog::values(&db, &caller.principal, id)).await?;
    Ok(HttpResponse::Ok().json(v))
}

/// Records the estimated value of one base unit from a date on. History is never rewritten.
#[utoipa::path(post, path = "/api/v1/items/{id}/values", tag = "catalog", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = ItemValueInput,
    responses((status = 201, description = "Recorded", body = ItemValue),
              (status = 404, description = "No such item", body = Problem),
              (status = 422, description = "Invalid fields", body = Problem)))]
pub async fn add_value(
    caller: Caller,
    db: web::Data<Db>,
    id: web::Path<Uuid>,
    body: Json<ItemValueInput>,
) -> Result<HttpResponse, Error> {
    let (id, ctx) = (id.into_inner(), caller.ctx());
    let v = crate::service::catalog::add_value(&db, &ctx, id, body.0).await?;
    Ok(HttpResponse::Created().json(v))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    items::routes(cfg, web::get().to(list_items));
    cfg.service(
        web::resource("/api/v1/items/{id}/values")
            .route(web::get().to(list_values))
            .route(web::post().to(add_value)),
    );
    warehouses::routes(cfg, web::get().to(list_warehouses));
    donors::routes(cfg, web::get().to(list_donors));
    recipients::routes(cfg, web::get().to(list_recipients));
}

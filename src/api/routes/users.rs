//! Users and tokens (admins), and the caller's own identity.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use uuid::Uuid;

use super::{record, PageParams};
use crate::api::extract::{blocking, Caller, IfMatch, Json};
use crate::api::problem::Problem;
use crate::domain::access::{ApiToken, Principal, User, UserInput};
use crate::error::Error;
use crate::service::users::{self as svc, CreatedUser, IssuedToken, TokenInput};
use crate::service::Listing;
use crate::store::Db;

/// Who the token belongs to.
#[utoipa::path(get, path = "/api/v1/me", tag = "users", security(("bearer" = [])),
    responses((status = 200, description = "The caller", body = Principal),
              (status = 401, description = "No valid token", body = Problem)))]
pub async fn me(caller: Caller) -> HttpResponse {
    HttpResponse::Ok().json(caller.principal)
}

#[utoipa::path(get, path = "/api/v1/users", tag = "users", security(("bearer" = [])),
    params(PageParams), responses((status = 200, description = "A page of users", body = Listing<User>)))]
pub async fn list(
    caller: Caller,
    db: web::Data<Db>,
    q: web::Query<PageParams>,
) -> Result<HttpResponse, actix_web::Error> {
    let page = q.page()?;
    let l = blocking(move || svc::list_users(&db, &caller.principal, &page)).await?;
    Ok(HttpResponse::Ok().json(l))
}

/// Creates a user with a first token, which is shown in this response only.
#[utoipa::path(post, path = "/api/v1/users", tag = "users", security(("bearer" = [])),
    request_body = UserInput,
    responses((status = 201, description = "Created", body = CreatedUser),
              (status = 409, description = "Name taken", body = Problem),
              (status = 422, description = "Invalid fields", body = Problem)))]
pub async fn create(
    caller: Caller,
    db: web::Data<Db>,
    body: Json<UserInput>,
) -> Result<HttpResponse, Error> {
    let ctx = caller.ctx();
    let c = svc::create_user(&db, &ctx, body.0).await?;
    let location = format!("/api/v1/users/{}", c.user.meta.id);
    Ok(record(
        StatusCode::CREATED,
        &c.user.meta,
        &c,
        Some(location),
    ))
}

#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "The user", body = User), (status = 404, description = "No such user", body = Problem)))]
pub async fn get(
    caller: Caller,
    db: web::Data<Db>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, Error> {
    let id = id.into_inner();
    let u = blocking(move || svc::get_user(&db, &caller.principal, id)).await?;
    Ok(record(StatusCode::OK, &u.meta, &u, None))
}

/// Changes a user's name, role or warehouses by JSON merge patch. Requires If-Match.
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("If-Match" = String, Header)),
    request_body(content = Object, content_type = "application/merge-patch+json"),
    responses((status = 200, description = "Changed", body = User),
              (status = 412, description = "Changed since it was read", body = Problem),
              (status = 428, description = "If-Match missing", body = Problem)))]
pub async fn patch(
    caller: Caller,
    db: web::Data<Db>,
    id: web::Path<Uuid>,
    if_match: IfMatch,
    body: Json<serde_json::Value>,
) -> Result<HttpResponse, Error> {
    let (id, ctx) = (id.into_inner(), caller.ctx());
    let u = svc::patch_user(&db, &ctx, id, if_match.0.as_deref(), body.0).await?;
    Ok(record(StatusCode::OK, &u.meta, &u, None))
}

/// Deactivates a user and revokes every token they hold, at once.
#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "Deactivated", body = User),
              (status = 409, description = "Already deactivated, or yourself", body = Problem)))]
pub async fn deactivate(
    caller: Caller,
    db: web::Data<Db>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, Error> {
    let (id, ctx) = (id.into_inner(), caller.ctx());
    let u = svc::deactivate_user(&db, &ctx, id).await?;
    Ok(record(StatusCode::OK, &u.meta, &u, None))
}

#[utoipa::path(get, path = "/api/v1/users/{id}/tokens", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "The user's tokens, without secrets", body = Vec<ApiToken>)))]
pub async fn list_tokens(
    caller: Caller,
    db: web::Data<Db>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, Error> {
    let id = id.into_inner();
    let t = blocking(move || svc::list_tokens(&db, &caller.principal, id)).await?;
    Ok(HttpResponse::Ok().json(t))
}

/// Issues a new token. The secret is in this response only.
#[utoipa::path(post, path = "/api/v1/users/{id}/tokens", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = TokenInput,
    responses((status = 201, description = "Issued", body = IssuedToken)))]
pub async fn create_token(
    caller: Caller,
    db: web::Data<Db>,
    id: web::Path<Uuid>,
    body: Json<TokenInput>,
) -> Result<HttpResponse, Error> {
    let (id, ctx) = (id.into_inner(), caller.ctx());
    let t = svc::create_token(&db, &ctx, id, body.0).await?;
    Ok(HttpResponse::Created().json(t))
}

/// Revokes a token; it stops working with the next request.
#[utoipa::path(delete, path = "/api/v1/users/{id}/tokens/{token_id}", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("token_id" = Uuid, Path)),
    responses((status = 200, description = "Revoked", body = ApiToken),
              (status = 404, description = "No such token", body = Problem)))]
pub async fn revoke_token(
    caller: Caller,
    db: web::Data<Db>,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, Error> {
    let ((user, token), ctx) = (path.into_inner(), caller.ctx());
    let t = svc::revoke_token(&db, &ctx, user, token).await?;
    Ok(HttpResponse::Ok().json(t))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/me", web::get().to(me))
        .service(
            web::resource("/api/v1/users")
                .route(web::get().to(list))
                .route(web::post().to(create)),
        )
        .service(
            web::resource("/api/v1/users/{id}")
                .route(web::get().to(get))
                .route(web::patch().to(patch))
                .route(web::delete().to(deactivate)),
        )
        .service(
            web::resource("/api/v1/users/{id}/tokens")
                .route(web::get().to(list_tokens))
                .route(web::post().to(create_token)),
        )
        .route(
            "/api/v1/users/{id}/tokens/{token_id}",
            web::delete().to(revoke_token),
        );
}

use actix_web::{web, HttpResponse};

use crate::api::extract::blocking;
use crate::store::Db;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "Alive")))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// Readiness: the database answers.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "Ready"), (status = 503, description = "Database unreachable")))]
pub async fn readyz(db: web::Data<Db>) -> HttpResponse {
    let db = db.into_inner();
    let ok = blocking(move || {
        db.read(|c| {
            diesel::connection::SimpleConnection::batch_execute(c, "SELECT 1")?;
            Ok(())
        })
    })
    .await;
    match ok {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({"status": "ready"})),
        Err(e) => HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({"status": "unavailable", "detail": e.to_string()})),
    }
}

//! HTTP: routes, extractors, errors and the OpenAPI document. Handlers are thin; rules live
//! in `domain` and `service`.

pub mod extract;
pub mod openapi;
pub mod problem;
pub mod routes;

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::http::StatusCode;
use actix_web::{middleware, web, App, HttpResponse, HttpServer};
use utoipa::OpenApi;

use crate::store::Db;
use problem::Problem;

/// Largest request body accepted, in bytes.
pub const MAX_BODY: usize = 256 * 1024;

/// Registers every route. Shared by the server and nothing else, so tests hit the same app.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(routes::health::healthz))
        .route("/readyz", web::get().to(routes::health::readyz))
        .route("/api/v1/openapi.json", web::get().to(openapi_json))
        .route("/docs", web::get().to(docs));
    routes::users::routes(cfg);
    routes::master::routes(cfg);
    routes::audit::routes(cfg);
    routes::ledger::routes(cfg);
    routes::reports::routes(cfg);
}

async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(openapi::ApiDoc::openapi())
}

async fn docs() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(openapi::DOCS_PAGE)
}

/// actix answers a wrong method on a known path with an empty 405; say it as a problem.
fn method_not_allowed<B>(
    res: actix_web::dev::ServiceResponse<B>,
) -> actix_web::Result<middleware::ErrorHandlerResponse<B>> {
    let (req, _) = res.into_parts();
    let problem = Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        format!("{} is not allowed on {}", req.method(), req.path()),
    );
    let res = actix_web::dev::ServiceResponse::new(req, problem.response()).map_into_right_body();
    Ok(middleware::ErrorHandlerResponse::Response(res))
}

async fn not_found() -> HttpResponse {
    Problem::new(
        StatusCode::NOT_FOUND,
        "not-found",
        "Not found",
        "no such route",
    )
    .response()
}

/// What the operator chooses for a server.
#[derive(Debug, Clone)]
pub struct Settings {
    /// HTTP worker threads (default: one per core).
    pub workers: Option<usize>,
    /// Serve `/api/v1/public/disclosure` without a token.
    pub public_disclosure: bool,
    /// Failed authentications allowed per client address and per presented token, per minute.
    pub auth_failures_per_minute: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            workers: None,
            public_disclosure: false,
            auth_failures_per_minute: 30,
        }
    }
}

/// Starts the HTTP server on a bound listener. The returned server stops gracefully on
/// SIGINT/SIGTERM, finishing requests in flight (up to 30 s).
pub fn serve(listener: TcpListener, db: Db, settings: Settings) -> std::io::Result<Server> {
    // Blocking threads run reads (and authentication, a read), each on one of the pool's
    // connections: more threads than connections would only wait for one, and every thread
    // kept alive holds its stack and a share of the allocator's arenas.
    let reads_at_once = db.pool_size() as usize;
    let db = web::Data::new(db);
    let public = web::Data::new(routes::reports::PublicDisclosure(
        settings.public_disclosure,
    ));
    let guard = web::Data::new(extract::AuthGuard::new(settings.auth_failures_per_minute));
    let in_flight = web::Data::new(extract::InFlight::default());
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(db.clone())
            .app_data(in_flight.clone())
            .app_data(public.clone())
            .app_data(guard.clone())
            .app_data(web::PayloadConfig::new(MAX_BODY))
            .app_data(web::QueryConfig::default().error_handler(extract::query_error))
            .app_data(web::PathConfig::default().error_handler(extract::path_error))
            .wrap(
                middleware::ErrorHandlers::new()
                    .handler(StatusCode::METHOD_NOT_ALLOWED, method_not_allowed),
            )
            .wrap(middleware::from_fn(extract::request_id_middleware))
            .configure(configure)
            .default_service(web::to(not_found))
    })
    .shutdown_timeout(30)
    .listen(listener)?;
    let workers = settings.workers.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    server = server
        .workers(workers)
        .worker_max_blocking_threads(reads_at_once.div_ceil(workers).max(1));
    Ok(server.run())
}

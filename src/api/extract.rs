//! Request extractors: the caller (token → principal), strict JSON bodies, If-Match,
//! and the request id.

use std::future::Future;
use std::pin::Pin;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use serde::de::DeserializeOwned;
use tracing::Instrument;

use super::problem::Problem;
use crate::domain::access::Principal;
use crate::error::Error;
use crate::service::Ctx;
use crate::store::Db;

/// Runs blocking database work off the async workers.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    web::block(f)
        .await
        .map_err(|e| Error::Internal(format!("worker failed: {e}")))?
}

// ---------------------------------------------------------------- request id

#[derive(Debug, Clone)]
pub struct RequestId(pub String);

pub const REQUEST_ID: &str = "x-request-id";

/// Gives each request an id (the client's `X-Request-Id` if it is sane), returns it in the
/// response header, logs the request in a span that carries it, and records it in audit events.
pub async fn request_id_middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.path());
    let started = std::time::Instant::now();
    let mut res = next.call(req).instrument(span.clone()).await?;
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID), v);
    }
    span.in_scope(|| {
        tracing::info!(
            status = res.status().as_u16(),
            micros = started.elapsed().as_micros() as u64,
            "request handled"
        )
    });
    Ok(res)
}

// ---------------------------------------------------------------- caller

/// Rate-limits failed authentication, per client address and per presented token. A client
/// or token over its limit is refused with 429 and Retry-After for every attempt, right or
/// wrong, until the window passes, so guessing gains nothing.
pub struct AuthGuard {
    per_client: governor::DefaultKeyedRateLimiter<String>,
    per_token: governor::DefaultKeyedRateLimiter<String>,
    blocked: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

impl AuthGuard {
    pub fn new(per_minute: u32) -> Self {
        let n = std::num::NonZeroU32::new(per_minute.max(1)).expect("at least one");
        let quota = governor::Quota::per_minute(n);
        AuthGuard {
            per_client: governor::RateLimiter::keyed(quota),
            per_token: governor::RateLimiter::keyed(quota),
            blocked: Default::default(),
        }
    }

    /// Seconds to wait, if any of these keys is blocked.
    fn blocked_for(&self, keys: &[String]) -> Option<u64> {
        let now = std::time::Instant::now();
        let mut blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        blocked.retain(|_, until| *until > now);
        keys.iter()
            .filter_map(|k| blocked.get(k))
            .map(|until| until.duration_since(now).as_secs() + 1)
            .max()
    }

    /// Counts a failure; returns the wait if it crossed a limit. A client or token over
    /// its limit is then refused for a whole minute.
    fn failed(&self, client: &str, token: Option<&str>) -> Option<u64> {
        const BLOCK: std::time::Duration = std::time::Duration::from_secs(60);
        let mut over = vec![];
        let client_key = format!("client:{client}");
        if self.per_client.check_key(&client_key).is_err() {
            over.push(client_key);
        }
        if let Some(t) = token {
            let token_key = format!("token:{t}");
            if self.per_token.check_key(&token_key).is_err() {
                over.push(token_key);
            }
        }
        if over.is_empty() {
            return None;
        }
        let mut blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        for key in over {
            blocked.insert(key, std::time::Instant::now() + BLOCK);
        }
        Some(BLOCK.as_secs())
    }
}

/// The authenticated caller and the request they are making.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub request_id: String,
}

impl Caller {
    pub fn ctx(&self) -> Ctx {
        Ctx::new(self.principal.clone(), Some(self.request_id.clone()))
    }
}

// ---------------------------------------------------------------- idempotency

/// The `Idempotency-Key` header, if sent: 1 to 255 visible ASCII characters.
pub struct IdempotencyKey(pub Option<String>);

impl FromRequest for IdempotencyKey {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, actix_web::Error>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let v = req
            .headers()
            .get("idempotency-key")
            .map(|v| v.to_str().map(str::to_string));
        std::future::ready(match v {
            None => Ok(IdempotencyKey(None)),
            Some(Ok(k))
                if !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                Ok(IdempotencyKey(Some(k)))
            }
            Some(_) => Err(Problem::field(
                StatusCode::BAD_REQUEST,
                "bad-header",
                "Bad header",
                "Idempotency-Key",
                "must be 1 to 255 visible ASCII characters".into(),
            )
            .into()),
        })
    }
}

/// Keys being processed by this node. A second request with a key still in flight is
/// refused (409) rather than queued; across nodes the write lock orders them and the
/// second replays the first's response.
#[derive(Default)]
pub struct InFlight(std::sync::Mutex<std::collections::HashSet<(uuid::Uuid, String)>>);

struct InFlightGuard {
    registry: web::Data<InFlight>,
    key: (uuid::Uuid, String),
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.registry
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

/// Runs a write for a handler: builds the context (with the Idempotency-Key and a hash of
/// the request), keeps duplicate in-flight keys out, and answers `status` with the result.
pub async fn write<B, T>(
    req: &HttpRequest,
    caller: Caller,
    key: IdempotencyKey,
    body: &B,
    status: StatusCode,
    op: impl AsyncFnOnce(&Db, &Ctx) -> Result<T, Error>,
) -> Result<actix_web::HttpResponse, Error>
where
    B: serde::Serialize,
    T: serde::Serialize + Send + 'static,
{
    let db = req
        .app_data::<web::Data<Db>>()
        .cloned()
        .ok_or_else(|| Error::Internal("no database configured".into()))?;
    let mut ctx = caller.ctx();
    let mut _guard = None;
    if let Some(k) = key.0 {
        let body = serde_json::to_value(body).expect("inputs serialize");
        let canonical = format!(
            "{} {}\n{}",
            req.method(),
            req.path(),
            crate::domain::audit::canonical_json(&body)
        );
        ctx.idempotency = Some(crate::service::Idempotency {
            key: k.clone(),
            request_hash: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(canonical.as_bytes())),
            success_status: status.as_u16(),
        });
        let registry = req
            .app_data::<web::Data<InFlight>>()
            .cloned()
            .ok_or_else(|| Error::Internal("no in-flight registry".into()))?;
        let id = (ctx.actor.user_id, k);
        if !registry
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone())
        {
            return Err(Error::IdempotencyInFlight);
        }
        _guard = Some(InFlightGuard { registry, key: id });
    }
    let out = op(&db, &ctx).await?;
    Ok(actix_web::HttpResponse::build(status).json(out))
}

impl FromRequest for Caller {
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let db = req.app_data::<web::Data<Db>>().cloned();
        let request_id = req
            .extensions()
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default();
        let bearer = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(|t| t.trim().to_string());
        let guard = req.app_data::<web::Data<AuthGuard>>().cloned();
        let client = req
            .peer_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_default();
        Box::pin(async move {
            // Limits are keyed by a hash of the token, never the token itself.
            let token_key = bearer
                .as_deref()
                .map(|b| crate::domain::access::token::hash(b)[..16].to_string());
            let keys: Vec<String> = std::iter::once(format!("client:{client}"))
                .chain(token_key.iter().map(|t| format!("token:{t}")))
                .collect();
            if let Some(wait) = guard.as_ref().and_then(|g| g.blocked_for(&keys)) {
                return Err(Error::RateLimited { retry_after: wait });
            }
            let outcome = match bearer {
                None => Err(Error::Unauthorized(
                    "send an API token as 'Authorization: Bearer <token>'",
                )),
                Some(bearer) => {
                    let db = db.ok_or_else(|| Error::Internal("no database configured".into()))?;
                    blocking(move || crate::service::users::authenticate(&db, &bearer)).await
                }
            };
            match outcome {
                Ok(principal) => Ok(Caller {
                    principal,
                    request_id,
                }),
                Err(Error::Unauthorized(why)) => {
                    let over = guard
                        .as_ref()
                        .and_then(|g| g.failed(&client, token_key.as_deref()));
                    if let Some(wait) = over {
                        tracing::warn!(client = %client, "failed authentications over the limit");
                        return Err(Error::RateLimited { retry_after: wait });
                    }
                    Err(Error::Unauthorized(why))
                }
                Err(other) => Err(other),
            }
        })
    }
}

// ---------------------------------------------------------------- If-Match

/// The If-Match header, if sent.
pub struct IfMatch(pub Option<String>);

impl FromRequest for IfMatch {
    type Error = Error;
    type Future = std::future::Ready<Result<Self, Error>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let v = req
            .headers()
            .get(header::IF_MATCH)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        std::future::ready(Ok(IfMatch(v)))
    }
}

// ---------------------------------------------------------------- JSON bodies

/// A JSON body, parsed strictly: the content type must be JSON, the size is capped by the
/// app's `PayloadConfig`, unknown fields are refused, and an error names the field's path.
pub struct Json<T>(pub T);

fn is_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|ct| {
            let essence = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            essence == "application/json" || essence.ends_with("+json")
        })
        .unwrap_or(false)
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => Problem::field(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation-error",
                "The request has invalid fields",
                if path == "." { "" } else { &path },
                strip_position(&inner.to_string()),
            ),
            _ => Problem::new(
                StatusCode::BAD_REQUEST,
                "malformed-json",
                "Malformed JSON",
                inner.to_string(),
            ),
        }
    })?;
    Ok(value)
}

/// serde_json appends "at line 1 column 20"; the field path says more to a client.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, actix_web::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let json = is_json(req);
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            if !json {
                return Err(Problem::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported-media-type",
                    "Unsupported media type",
                    "send the body as application/json",
                )
                .into());
            }
            let bytes = bytes.await.map_err(|e| {
                let status = e.as_response_error().status_code();
                if status == StatusCode::PAYLOAD_TOO_LARGE {
                    Problem::new(
                        status,
                        "payload-too-large",
                        "Body too large",
                        format!("the body is larger than {} bytes", super::MAX_BODY),
                    )
                } else {
                    Problem::new(status, "bad-request", "Bad request", e.to_string())
                }
            })?;
            Ok(Json(parse_json(&bytes)?))
        })
    }
}

// ---------------------------------------------------------------- query errors

/// Turns a query-string error into a problem that names the parameter when it can.
pub fn query_error(err: actix_web::error::QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    let msg = err.to_string();
    let field = msg
        .split('`')
        .nth(1)
        .filter(|_| msg.contains("field `"))
        .unwrap_or("query")
        .to_string();
    Problem::field(
        StatusCode::BAD_REQUEST,
        "bad-query",
        "Bad query parameter",
        &field,
        msg.replace("Query deserialize error: ", ""),
    )
    .into()
}

pub fn path_error(err: actix_web::error::PathError, _: &HttpRequest) -> actix_web::Error {
    Problem::new(
        StatusCode::NOT_FOUND,
        "not-found",
        "Not found",
        format!("the path does not name a record: {err}"),
    )
    .into()
}

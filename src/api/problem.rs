//! RFC 9457 problem details: every error the API returns has this shape and a stable `type`.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::validation::{FieldError, FieldErrors};
use crate::error::Error;

pub const CONTENT_TYPE: &str = "application/problem+json";

/// An error response (`application/problem+json`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// Stable identifier of the kind of error, e.g. `/problems/validation-error`.
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Every bad field, for validation errors.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Insufficient stock adds `item_id`, `requested` and `available` (see `Shortage`).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    #[schema(ignore)]
    pub shortage: Option<Box<Shortage>>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Shortage {
    pub item_id: uuid::Uuid,
    pub requested: String,
    pub available: String,
}

impl Problem {
    pub fn new(status: StatusCode, kind: &str, title: &str, detail: impl Into<String>) -> Self {
        Problem {
            type_: format!("/problems/{kind}"),
            title: title.to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: vec![],
            shortage: None,
        }
    }

    pub fn with_errors(mut self, errors: FieldErrors) -> Self {
        self.errors = errors.0;
        self
    }

    pub fn response(&self) -> HttpResponse {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut res = HttpResponse::build(status);
        res.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE)));
        if status == StatusCode::UNAUTHORIZED {
            res.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        res.body(serde_json::to_string(self).expect("problems serialize"))
    }

    pub fn field(status: StatusCode, kind: &str, title: &str, field: &str, detail: String) -> Self {
        let mut e = FieldErrors::new();
        e.add(field, detail.clone());
        Problem::new(status, kind, title, format!("{field}: {detail}")).with_errors(e)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.title, self.detail)
    }
}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
    fn error_response(&self) -> HttpResponse {
        self.response()
    }
}

impl From<&Error> for Problem {
    fn from(e: &Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error as D};
        match e {
            Error::Validation(errors) => {
                let fields: Vec<&str> = errors.0.iter().map(|f| f.field.as_str()).collect();
                Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation-error",
                    "The request has invalid fields",
                    format!("invalid: {}", fields.join(", ")),
                )
                .with_errors(errors.clone())
            }
            Error::NotFound { .. } => Problem::new(
                StatusCode::NOT_FOUND,
                "not-found",
                "Not found",
                e.to_string(),
            ),
            Error::Forbidden(f) => Problem::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "Forbidden",
                f.to_string(),
            ),
            Error::Unauthorized(why) => Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Authentication required",
                *why,
            ),
            Error::Conflict { field, detail } => {
                let p = Problem::new(StatusCode::CONFLICT, "conflict", "Conflict", detail.clone());
                match field {
                    Some(f) => {
                        let mut errs = FieldErrors::new();
                        errs.add(f.clone(), detail.clone());
                        p.with_errors(errs)
                    }
                    None => p,
                }
            }
            Error::PreconditionFailed { .. } => Problem::new(
                StatusCode::PRECONDITION_FAILED,
                "precondition-failed",
                "The record has changed",
                format!("{e}; fetch it again and retry"),
            ),
            Error::PreconditionRequired => Problem::new(
                StatusCode::PRECONDITION_REQUIRED,
                "precondition-required",
                "If-Match required",
                e.to_string(),
            ),
            Error::Db(D::DatabaseError(DatabaseErrorKind::UniqueViolation, info)) => Problem::new(
                StatusCode::CONFLICT,
                "conflict",
                "Conflict",
                format!(
                    "a record with the same unique value exists ({})",
                    info.message()
                ),
            ),
            Error::Pool(_) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Database unavailable",
                "no database connection became free in time; retry",
            ),
            Error::InsufficientStock {
                field,
                item_id,
                requested,
                available,
                detail,
            } => {
                let mut errs = FieldErrors::new();
                errs.add(field.clone(), detail.clone());
                let mut p = Problem::new(
                    StatusCode::CONFLICT,
                    "insufficient-stock",
                    "Not enough stock",
                    detail.clone(),
                )
                .with_errors(errs);
                p.shortage = Some(Box::new(Shortage {
                    item_id: *item_id,
                    requested: requested.clone(),
                    available: available.clone(),
                }));
                p
            }
            Error::IdempotencyMismatch => Problem::field(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency-Key reused",
                "Idempotency-Key",
                "was used before with a different request; use a new key".into(),
            ),
            Error::IdempotencyInFlight => Problem::new(
                StatusCode::CONFLICT,
                "idempotency-key-in-flight",
                "Request in progress",
                "a request with this Idempotency-Key is still being processed; retry later",
            ),
            Error::RateLimited { .. } => Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many failed authentications",
                e.to_string(),
            ),
            Error::Replay { status, .. } => Problem::new(
                StatusCode::from_u16(*status).unwrap_or(StatusCode::OK),
                "replay",
                "Replayed",
                "replayed response",
            ),
            Error::Db(_) | Error::Internal(_) => {
                tracing::error!(error = %e, "internal error");
                Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Internal error",
                    "the request failed and nothing was written; the server log has the details",
                )
            }
        }
    }
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        Problem::from(self).status_code()
    }
    fn error_response(&self) -> HttpResponse {
        if let Error::Replay { status, body } = self {
            // The first response to this Idempotency-Key, as it was.
            return HttpResponse::build(StatusCode::from_u16(*status).unwrap_or(StatusCode::OK))
                .content_type("application/json")
                .insert_header(("idempotent-replayed", "true"))
                .body(body.clone());
        }
        let mut res = Problem::from(self).response();
        if let Error::RateLimited { retry_after } = self {
            res.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_str(&retry_after.to_string()).expect("digits"),
            );
        }
        res
    }
}

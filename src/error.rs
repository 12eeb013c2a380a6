//! The one error type of the service layer. `api::problem` turns each variant into an
//! RFC 9457 problem; nothing here knows about HTTP.

use crate::domain::access::Forbidden;
use crate::domain::validation::FieldErrors;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the request has invalid fields")]
    Validation(FieldErrors),
    #[error("{entity} {id} does not exist")]
    NotFound { entity: &'static str, id: String },
    #[error(transparent)]
    Forbidden(#[from] Forbidden),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{detail}")]
    Conflict {
        field: Option<String>,
        detail: String,
    },
    #[error("the record has changed: its current version is {current}")]
    PreconditionFailed { current: String },
    #[error("send the record's ETag in If-Match to change it")]
    PreconditionRequired,
    #[error("database error: {0}")]
    Db(#[from] diesel::result::Error),
    #[error("no database connection: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    #[error("{0}")]
    Internal(String),
    /// Not enough stock: names the item and the shortfall.
    #[error("{detail}")]
    InsufficientStock {
        field: String,
        item_id: uuid::Uuid,
        requested: String,
        available: String,
        detail: String,
    },
    /// An Idempotency-Key seen before with this request: answer as the first time.
    #[error("replayed response")]
    Replay { status: u16, body: String },
    #[error("the Idempotency-Key was used with a different request")]
    IdempotencyMismatch,
    #[error("a request with this Idempotency-Key is still being processed")]
    IdempotencyInFlight,
    /// Too many failed authentications from this client or with this token.
    #[error("too many failed authentications; retry after {retry_after} s")]
    RateLimited { retry_after: u64 },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<FieldErrors> for Error {
    fn from(e: FieldErrors) -> Self {
        Error::Validation(e)
    }
}

impl Error {
    pub fn field(field: &str, detail: impl Into<String>) -> Self {
        let mut e = FieldErrors::new();
        e.add(field, detail);
        Error::Validation(e)
    }

    pub fn conflict(field: &str, detail: impl Into<String>) -> Self {
        Error::Conflict {
            field: Some(field.to_string()),
            detail: detail.into(),
        }
    }

    pub fn not_found(entity: &'static str, id: impl ToString) -> Self {
        Error::NotFound {
            entity,
            id: id.to_string(),
        }
    }
}

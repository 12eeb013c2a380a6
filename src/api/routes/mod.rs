//! Handlers: each turns HTTP into a service call and back, nothing more.

pub mod audit;
pub mod health;
pub mod ledger;
pub mod master;
pub mod reports;
pub mod users;

use actix_web::http::header::{ETAG, LOCATION};
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde::Deserialize;
use uuid::Uuid;

use super::problem::Problem;
use crate::domain::record::Meta;
use crate::service::{DEFAULT_PAGE, MAX_PAGE};
use crate::store::master::Page;

/// A record with its ETag (and, on creation, its Location).
pub fn record<T: serde::Serialize>(
    status: StatusCode,
    meta: &Meta,
    body: &T,
    location: Option<String>,
) -> HttpResponse {
    let mut res = HttpResponse::build(status);
    res.insert_header((ETAG, meta.etag()));
    if let Some(l) = location {
        res.insert_header((LOCATION, l));
    }
    res.json(body)
}

/// Paging parameters every list takes.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Records per page: 1 to 500, 50 if absent.
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Include archived records.
    pub include_archived: Option<bool>,
}

impl PageParams {
    pub fn page(&self) -> Result<Page, Problem> {
        let limit = self.limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(Problem::field(
                StatusCode::BAD_REQUEST,
                "bad-query",
                "Bad query parameter",
                "limit",
                format!("must be between 1 and {MAX_PAGE}"),
            ));
        }
        let after = match &self.cursor {
            None => None,
            Some(c) => Some(Uuid::parse_str(c).map_err(|_| {
                Problem::field(
                    StatusCode::BAD_REQUEST,
                    "bad-query",
                    "Bad query parameter",
                    "cursor",
                    "is not a cursor this API returned".into(),
                )
            })?),
        };
        Ok(Page {
            after,
            limit,
            include_archived: self.include_archived.unwrap_or(false),
        })
    }
}

pub fn bad_query(field: &str, detail: impl Into<String>) -> Problem {
    Problem::field(
        StatusCode::BAD_REQUEST,
        "bad-query",
        "Bad query parameter",
        field,
        detail.into(),
    )
}

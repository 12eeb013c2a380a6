//! Operations: one function per thing a user can do. A write is *validate* (check the input
//! and the current state, returning a typed error), *generate* (build the rows to write with
//! pure domain code) and *apply* (one transaction that writes them together with the audit
//! event). Handlers call these; so does the command line.

pub mod audit;
pub mod catalog;
pub mod ledger;
pub mod master;
pub mod periods;
pub mod reports;
pub mod users;

use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::domain::access::Principal;
use crate::domain::audit::{AuditEvent, NewEvent};
use crate::domain::canonical::to_canonical;
use crate::error::{Error, Result};
use crate::store::{self, DbConn};

/// Who is acting, in which request, and when. Every audit event is built from one.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub actor: Principal,
    pub request_id: Option<String>,
    pub now: DateTime<Utc>,
    /// Set when the client sent an Idempotency-Key.
    pub idempotency: Option<Idempotency>,
}

/// An Idempotency-Key, the hash of the request it came with, and the status a fresh
/// success answers with.
#[derive(Debug, Clone)]
pub struct Idempotency {
    pub key: String,
    pub request_hash: String,
    pub success_status: u16,
}

/// How long a key is remembered.
pub const IDEMPOTENCY_HOURS: i64 = 24;

impl Ctx {
    pub fn new(actor: Principal, request_id: Option<String>) -> Self {
        Self {
            actor,
            request_id,
            // The store keeps microseconds; so does every value handed back to a client.
            now: Utc::now().trunc_subsecs(6),
            idempotency: None,
        }
    }

    /// `Db::write` with Idempotency-Key handling in the same transaction: a key seen with
    /// the same request replays the stored response (`Error::Replay`, which writes nothing);
    /// with another request it is refused; a fresh success stores its response with the
    /// change, so a retry after a crash finds either both or neither.
    pub async fn write<T, F>(&self, db: &crate::store::Db, mut f: F) -> Result<T>
    where
        T: Serialize + Send + 'static,
        F: FnMut(&Ctx, &mut DbConn) -> Result<T> + Send + 'static,
    {
        use crate::store::ledger::{find_idempotent, save_idempotent, StoredResponse};
        // The write runs on the writer thread, which needs its own copy of who is acting.
        let ctx = self.clone();
        db.write(move |conn| {
            let Some(idem) = &ctx.idempotency else {
                return f(&ctx, conn);
            };
            let user = ctx.actor.user_id;
            if let Some(prev) = find_idempotent(conn, user, &idem.key)? {
                let live = ctx.now - prev.created_at < chrono::Duration::hours(IDEMPOTENCY_HOURS);
                if live && prev.request_hash == idem.request_hash {
                    return Err(Error::Replay {
                        status: prev.status,
                        body: prev.body,
                    });
                }
                if live {
                    return Err(Error::IdempotencyMismatch);
                }
            }
            let out = f(&ctx, conn)?;
            save_idempotent(
                conn,
                user,
                &idem.key,
                &StoredResponse {
                    request_hash: idem.request_hash.clone(),
                    status: idem.success_status,
                    body: serde_json::to_string(&out).expect("responses serialize"),
                    created_at: ctx.now,
                },
            )?;
            Ok(out)
        })
        .await
    }

    /// Appends the audit event of a change; call inside the change's `Db::write`.
    pub fn audit<T: Serialize>(
        &self,
        conn: &mut DbConn,
        action: &str,
        entity_type: &str,
        entity_id: Uuid,
        before: Option<&T>,
        after: Option<&T>,
    ) -> Result<AuditEvent> {
        store::audit::append(
            conn,
            self.event(action, entity_type, entity_id, before, after),
        )
    }

    /// The audit event of a change by this request's actor, not yet sealed into the chain.
    pub fn event<T: Serialize>(
        &self,
        action: &str,
        entity_type: &str,
        entity_id: Uuid,
        before: Option<&T>,
        after: Option<&T>,
    ) -> NewEvent {
        NewEvent {
            occurred_at: self.now,
            actor_id: self.actor.user_id.to_string(),
            actor_name: self.actor.name.clone(),
            actor_role: self.actor.role.to_string(),
            action: action.to_string(),
            entity_type: entity_type.to_string(),
            entity_id: entity_id.to_string(),
            request_id: self.request_id.clone(),
            before: before.map(to_canonical),
            after: after.map(to_canonical),
        }
    }
}

/// A record's input form with an RFC 7396 merge patch applied, read back as strictly as a
/// request body (unknown fields refused, errors named by path). The caller then validates
/// it exactly like a new record, so one set of rules covers create and update.
pub fn patched<I: Serialize + serde::de::DeserializeOwned>(
    current: &I,
    patch: &serde_json::Value,
) -> Result<I> {
    if !patch.is_object() {
        return Err(Error::field("", "a merge patch must be a JSON object"));
    }
    let mut doc = serde_json::to_value(current).expect("inputs serialize");
    crate::domain::record::merge_patch(&mut doc, patch);
    serde_path_to_error::deserialize(doc)
        .map_err(|e| Error::field(&e.path().to_string(), e.inner().to_string()))
}

/// Checks an If-Match header value against a record's current ETag.
pub fn check_if_match(if_match: Option<&str>, current_etag: &str) -> Result<()> {
    match if_match {
        None => Err(Error::PreconditionRequired),
        Some(v) if v.trim() == "*" => Ok(()),
        Some(v) => {
            let matches = v
                .split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == current_etag);
            if matches {
                Ok(())
            } else {
                Err(Error::PreconditionFailed {
                    current: current_etag.to_string(),
                })
            }
        }
    }
}

/// Page sizes: the default, and the most a client may ask for.
pub const DEFAULT_PAGE: i64 = 50;
pub const MAX_PAGE: i64 = 500;

/// A list page and the cursor to the next one, if there is more.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Listing<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Listing<T> {
    /// Builds a page from up to `limit + 1` fetched rows: the extra row only says there is more.
    pub fn from_rows(mut rows: Vec<T>, limit: i64, cursor_of: impl Fn(&T) -> String) -> Self {
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let next_cursor = if more {
            rows.last().map(cursor_of)
        } else {
            None
        };
        Listing {
            items: rows,
            next_cursor,
        }
    }
}

/// Runs a service call to its end on the calling thread, for callers that are not async
/// tasks: the CLI, the benchmark's generator, tests. A request awaits the call instead.
pub fn wait<T>(call: impl std::future::Future<Output = T>) -> T {
    thread_local! {
        // Nothing here needs timers or sockets: a write's future only waits on the writer.
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime");
    }
    RUNTIME.with(|rt| rt.block_on(call))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_rules() {
        assert!(matches!(
            check_if_match(None, "\"2\""),
            Err(Error::PreconditionRequired)
        ));
        assert!(check_if_match(Some("\"2\""), "\"2\"").is_ok());
        assert!(check_if_match(Some("W/\"2\""), "\"2\"").is_ok());
        assert!(check_if_match(Some("\"1\", \"2\""), "\"2\"").is_ok());
        assert!(check_if_match(Some("*"), "\"2\"").is_ok());
        assert!(matches!(
            check_if_match(Some("\"1\""), "\"2\""),
            Err(Error::PreconditionFailed { .. })
        ));
    }
}

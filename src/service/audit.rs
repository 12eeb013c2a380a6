//! Reading and verifying the audit trail.

use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::access::{Action, Principal};
use crate::domain::audit::{AuditEvent, ChainBreak};
use crate::error::Result;
use crate::store::audit::{self as db, EventFilter};
use crate::store::Db;

#[derive(Debug, Serialize, ToSchema)]
pub struct Head {
    /// Sequence number of the latest event; 0 when the trail is empty.
    pub seq: i64,
    pub hash: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyReport {
    pub valid: bool,
    /// Events that verified, from the first.
    pub verified_events: i64,
    /// The hash of the last verified event: compare it with a head you recorded earlier.
    pub head_hash: String,
    pub first_break: Option<ChainBreak>,
}

pub fn head(db: &Db, actor: &Principal) -> Result<Head> {
    actor.require(Action::ReadAudit)?;
    let head = db.read(db::head)?;
    Ok(match head {
        Some((seq, hash)) => Head { seq, hash },
        None => Head {
            seq: 0,
            hash: crate::domain::audit::GENESIS_HASH.to_string(),
        },
    })
}

pub fn events(
    db: &Db,
    actor: &Principal,
    filter: &EventFilter,
    limit: i64,
) -> Result<super::Listing<AuditEvent>> {
    actor.require(Action::ReadAudit)?;
    let rows = db.read(|c| db::list(c, filter, limit + 1))?;
    Ok(super::Listing::from_rows(rows, limit, |e| {
        e.seq.to_string()
    }))
}

/// Recomputes the chain. Used by the API and by `relief-ledger verify` (no server needed).
pub fn verify_db(db: &Db) -> Result<VerifyReport> {
    let v = db.read(db::verify)?;
    Ok(VerifyReport {
        valid: v.first_break.is_none(),
        verified_events: v.verified,
        head_hash: v.head_hash,
        first_break: v.first_break,
    })
}

pub fn verify(db: &Db, actor: &Principal) -> Result<VerifyReport> {
    actor.require(Action::ReadAudit)?;
    verify_db(db)
}

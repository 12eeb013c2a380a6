//! The audit table: append within the caller's write transaction, read, and verify.

use diesel::prelude::*;

use super::schema::audit_events as t;
use super::DbConn;
use crate::domain::audit::{AuditEvent, ChainBreak, ChainVerifier, NewEvent};
use crate::error::Result;

#[derive(Queryable, Selectable, Insertable, serde::Serialize)]
#[diesel(table_name = t, treat_none_as_default_value = false)]
pub(super) struct Row {
    seq: i64,
    occurred_at: String,
    actor_id: String,
    actor_name: String,
    actor_role: String,
    action: String,
    entity_type: String,
    entity_id: String,
    request_id: Option<String>,
    before: Option<String>,
    after: Option<String>,
    prev_hash: String,
    hash: String,
}

impl From<Row> for AuditEvent {
    fn from(r: Row) -> Self {
        AuditEvent {
            seq: r.seq,
            occurred_at: r.occurred_at,
            actor_id: r.actor_id,
            actor_name: r.actor_name,
            actor_role: r.actor_role,
            action: r.action,
            entity_type: r.entity_type,
            entity_id: r.entity_id,
            request_id: r.request_id,
            before: r.before,
            after: r.after,
            prev_hash: r.prev_hash,
            hash: r.hash,
        }
    }
}

/// The latest event's sequence number and hash. The writer reads it once per group and
/// keeps it after that (`store::group`).
pub fn head(conn: &mut DbConn) -> Result<Option<(i64, String)>> {
    if let Some(known) = super::group::audit_head() {
        return Ok(known);
    }
    let found = read_head(conn)?;
    super::group::set_audit_head(found.clone());
    Ok(found)
}

fn read_head(conn: &mut DbConn) -> Result<Option<(i64, String)>> {
    let c = match conn {
        // One round trip; a bound LIMIT costs PostgreSQL nothing.
        DbConn::Postgres(c) => {
            return Ok(t::table
                .select((t::seq, t::hash))
                .order(t::seq.desc())
                .first(c)
                .optional()?)
        }
        DbConn::Sqlite(c) => c,
    };
    // `max()` then a point read, rather than ORDER BY … LIMIT ?: SQLite re-prepares a
    // statement whose LIMIT is a bound parameter on every run.
    let last: Option<i64> = t::table.select(diesel::dsl::max(t::seq)).get_result(c)?;
    let Some(seq) = last else { return Ok(None) };
    Ok(Some(
        t::table.find(seq).select((t::seq, t::hash)).get_result(c)?,
    ))
}

/// Appends an event after the current head. Must run inside `Db::write`, whose lock makes
/// reading the head and inserting after it one step; the primary key on `seq` would refuse
/// a fork even if it did not.
pub fn append(conn: &mut DbConn, event: NewEvent) -> Result<AuditEvent> {
    super::batch::settle(conn)?;
    let row = sealed(conn, event)?;
    let n = on!(conn, |c| diesel::insert_into(t::table)
        .values(&row)
        .execute(c))?;
    super::group::wrote(n);
    Ok(appended(row))
}

/// An event sealed after the current head, as the row to insert in this transaction (the
/// caller inserts it, then calls `appended`).
pub(super) fn sealed(conn: &mut DbConn, event: NewEvent) -> Result<Row> {
    let prev = head(conn)?;
    let ev = event.seal(prev.as_ref().map(|(s, h)| (*s, h.as_str())));
    // The sealed event moves into the row and back out, rather than being copied field by
    // field: its before/after JSON runs to kilobytes, and this is in every write.
    Ok(Row {
        seq: ev.seq,
        occurred_at: ev.occurred_at,
        actor_id: ev.actor_id,
        actor_name: ev.actor_name,
        actor_role: ev.actor_role,
        action: ev.action,
        entity_type: ev.entity_type,
        entity_id: ev.entity_id,
        request_id: ev.request_id,
        before: ev.before,
        after: ev.after,
        prev_hash: ev.prev_hash,
        hash: ev.hash,
    })
}

/// A sealed event's row has been inserted: it is the chain's new head.
pub(super) fn appended(row: Row) -> AuditEvent {
    super::group::set_audit_head(Some((row.seq, row.hash.clone())));
    AuditEvent::from(row)
}

#[derive(Debug, Default, Clone)]
pub struct EventFilter {
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    pub action: Option<String>,
    pub actor_id: Option<String>,
    pub after_seq: Option<i64>,
}

pub fn list(conn: &mut DbConn, f: &EventFilter, limit: i64) -> Result<Vec<AuditEvent>> {
    let mut q = t::table.select(Row::as_select()).into_boxed();
    if let Some(v) = &f.entity_type {
        q = q.filter(t::entity_type.eq(v.clone()));
    }
    if let Some(v) = &f.entity_id {
        q = q.filter(t::entity_id.eq(v.clone()));
    }
    if let Some(v) = &f.action {
        q = q.filter(t::action.eq(v.clone()));
    }
    if let Some(v) = &f.actor_id {
        q = q.filter(t::actor_id.eq(v.clone()));
    }
    if let Some(v) = f.after_seq {
        q = q.filter(t::seq.gt(v));
    }
    let rows: Vec<Row> = q.order(t::seq.asc()).limit(limit).load(conn)?;
    Ok(rows.into_iter().map(AuditEvent::from).collect())
}

/// Outcome of recomputing the whole chain.
pub struct Verification {
    pub verified: i64,
    pub head_hash: String,
    pub first_break: Option<ChainBreak>,
}

/// Recomputes every hash in sequence order, reading in pages so memory stays flat however
/// long the trail is.
pub fn verify(conn: &mut DbConn) -> Result<Verification> {
    const PAGE: i64 = 2000;
    let mut verifier = ChainVerifier::default();
    let mut after = 0i64;
    loop {
        let rows: Vec<Row> = t::table
            .select(Row::as_select())
            .filter(t::seq.gt(after))
            .order(t::seq.asc())
            .limit(PAGE)
            .load(conn)?;
        let n = rows.len() as i64;
        for row in rows {
            after = row.seq;
            if let Err(b) = verifier.push(&AuditEvent::from(row)) {
                return Ok(Verification {
                    verified: verifier.count(),
                    head_hash: verifier.head_hash().to_string(),
                    first_break: Some(b),
                });
            }
        }
        if n < PAGE {
            break;
        }
    }
    Ok(Verification {
        verified: verifier.count(),
        head_hash: verifier.head_hash().to_string(),
        first_break: None,
    })
}

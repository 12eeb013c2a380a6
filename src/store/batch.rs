//! PostgreSQL: the postings of a group sent as one statement.
//!
//! Each statement on the writer's connection is a round trip, and on the machines measured a
//! round trip costs both sides a sleep and a wake-up: about as much CPU as a quarter of a
//! posting's own work in the server (docs/performance-history.md). Most writes need no other
//! statement: what they read the writer already knows (`store::group`). So a posting is
//! kept here (`keep`) instead of being sent, as if it had been written: the audit chain's
//! head, the movement numbers and the stock the writer knows move with it. The group's
//! postings go as one statement (kept prepared for each count of stock positions it takes
//! from) when the group commits, or as soon as a write needs anything else of the database
//! (`settle`).
//!
//! What keeps this safe:
//! * A write's answer waits for its group's COMMIT anyway: a posting kept is acknowledged
//!   only once it is written and committed.
//! * Every other statement a write runs goes after the postings kept (`settle`, called by
//!   the store functions a write may need). A statement that runs without it is seen
//!   (`Detector`, on every statement of the writer's connection): the group then starts
//!   over with every posting sent as it comes, as on SQLite.
//! * If the statement fails in any way, or one of its stock guards does not hold, nothing
//!   of the group stands: it starts over the same way, and a write that fails then fails
//!   alone. A write refused after it sent earlier writes' postings is not blamed for their
//!   rows (`earlier_sent`); one that sent its own and failed is.
//! * A posting that takes from stock or a lot that a posting kept creates is not kept: the
//!   postings kept are sent first (one statement sees only the stock as it was before it).
//!   That is for speed: the guards would refuse such a statement, and the group would
//!   start over.

use std::cell::RefCell;

use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel::prelude::*;
use uuid::Uuid;

use super::DbConn;
use crate::domain::ledger::location::Location;
use crate::error::{Error, Result};

/// One posting, its rows as JSON objects, in the order of `TABLES`.
pub(super) struct Kept {
    pub rows: [Vec<String>; 6],
    /// Positions opened in the posting's own transit for lots that exist already: lot,
    /// document, item, quantity in thousandths.
    pub transit: Vec<(String, String, String, i64)>,
    /// Stock taken, summed per position.
    pub takes: Vec<(Uuid, Location, i64)>,
    /// Lots the posting creates, and the positions it opens.
    pub creates: Vec<Uuid>,
    pub opens: Vec<(Uuid, Location)>,
}

/// Positions taken from that one statement carries at most: each binds nine parameters,
/// and PostgreSQL takes at most 65 535.
const MAX_TAKES: usize = 1_000;

/// The tables a posting inserts into, in the order of `Kept::rows`.
pub(super) const TABLES: [&str; 6] = [
    "documents",
    "lots",
    "document_lines",
    "movements",
    "balances",
    "audit_events",
];

#[derive(Default)]
struct State {
    /// Whether postings may be kept in this group (PostgreSQL, until the group starts over).
    on: bool,
    /// The postings kept, each with the write that kept it (`job`).
    kept: Vec<(u64, Kept)>,
    /// The write running, counted from the group's start.
    job: u64,
    /// Rows the write running has sent for postings that earlier writes kept: its own
    /// failure must not be blamed for them (`earlier_sent`).
    earlier_sent: i64,
    /// Inside a write: a statement that is not the batch's own, while postings are kept.
    armed: bool,
    sending: bool,
    /// Running statements that read or write nothing a posting writes (`aside`).
    aside: bool,
    stale: bool,
    /// Postings sent, and the statements that carried them.
    sent: (u64, u64),
}

thread_local! {
    static STATE: RefCell<State> = RefCell::default();
}

/// Postings sent since the group began, and the statements that carried them.
pub(super) fn sent() -> (u64, u64) {
    STATE.with_borrow(|s| s.sent)
}

/// A group begins: postings may be kept if `on`.
pub(super) fn begin(on: bool) {
    STATE.with_borrow_mut(|s| {
        *s = State {
            on,
            ..State::default()
        }
    });
}

/// Postings kept and not sent.
pub(super) fn kept() -> usize {
    STATE.with_borrow(|s| s.kept.len())
}

/// The write running failed having written nothing: the postings it kept go with it.
/// Whether there were any.
pub(super) fn drop_this_writes() -> bool {
    STATE.with_borrow_mut(|s| {
        let (before, job) = (s.kept.len(), s.job);
        s.kept.retain(|(owner, _)| *owner != job);
        s.kept.len() < before
    })
}

/// Whether this group keeps postings at all (PostgreSQL, until it starts over): asked
/// before a posting's rows are made into JSON for nothing.
pub(super) fn keeping() -> bool {
    STATE.with_borrow(|s| s.on)
}

/// Whether `k` may wait with the others: it must not take from stock, or open a transit
/// for a lot, that a posting kept creates (one statement sees the stock as it was before
/// it), nor take the statement past `MAX_TAKES`.
pub(super) fn may_keep(k: &Kept) -> bool {
    STATE.with_borrow(|s| {
        let others = || s.kept.iter().map(|(_, o)| o);
        s.on && others().map(|o| o.takes.len()).sum::<usize>() + k.takes.len() <= MAX_TAKES
            && k.takes.iter().all(|(lot, at, _)| {
                others().all(|o| !o.creates.contains(lot) && !o.opens.contains(&(*lot, *at)))
            })
            && k.transit
                .iter()
                .all(|(lot, ..)| others().all(|o| o.creates.iter().all(|c| c.to_string() != *lot)))
    })
}

pub(super) fn keep(k: Kept) {
    STATE.with_borrow_mut(|s| {
        let job = s.job;
        s.kept.push((job, k));
    });
}

/// Rows the write running has sent for postings earlier writes kept (see `State`).
pub(super) fn earlier_sent() -> i64 {
    STATE.with_borrow(|s| s.earlier_sent)
}

/// Runs the postings kept, if any, so that what follows sees them. Store functions that a
/// write may call with postings kept call this first.
pub(super) fn settle(conn: &mut DbConn) -> Result<()> {
    match conn {
        DbConn::Postgres(c) if kept() > 0 => send(c),
        _ => Ok(()),
    }
}

/// Runs `f`, whose statements read or write only tables no posting writes (master records,
/// periods, idempotency keys, tokens): they may run while postings are kept, unsent. A
/// master record read for the first time (a recipient, in a ledger of 15 000) then costs
/// one round trip, not two and an early send.
pub(super) fn aside<T>(f: impl FnOnce() -> T) -> T {
    let was = STATE.with_borrow_mut(|s| std::mem::replace(&mut s.aside, true));
    let out = f();
    STATE.with_borrow_mut(|s| s.aside = was);
    out
}

/// Whether a statement ran without `settle` while postings were kept, or sending them
/// failed: the group must start over. Cleared.
pub(super) fn stale() -> bool {
    STATE.with_borrow_mut(|s| std::mem::take(&mut s.stale))
}

/// A write is running (`true`) or has returned.
pub(super) fn arm(on: bool) {
    STATE.with_borrow_mut(|s| {
        s.armed = on;
        if on {
            s.job += 1;
            s.earlier_sent = 0;
        }
    });
}

/// The group starts over: nothing is kept, every posting goes as it comes.
pub(super) fn off() {
    STATE.with_borrow_mut(|s| *s = State::default());
}

/// Sees every statement of the writer's PostgreSQL connection.
pub(super) struct Detector;

impl Instrumentation for Detector {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::StartQuery { .. } = event {
            STATE.with_borrow_mut(|s| {
                if s.armed && !s.sending && !s.aside && !s.kept.is_empty() {
                    s.stale = true;
                }
            });
        }
    }
}

/// Sends the postings kept as one statement. If it fails they are gone from the
/// transaction, whatever else the failure looks like (an error of libpq's own sends nothing
/// and aborts nothing): the group must start over, and is told so as by the detector.
fn send(c: &mut diesel::PgConnection) -> Result<()> {
    let (job, kept) = STATE.with_borrow_mut(|s| {
        s.sending = true;
        (s.job, std::mem::take(&mut s.kept))
    });
    let earlier = kept.iter().all(|(owner, _)| *owner != job);
    let kept: Vec<Kept> = kept.into_iter().map(|(_, k)| k).collect();
    let out = send_all(c, &kept);
    STATE.with_borrow_mut(|s| {
        s.sending = false;
        match &out {
            Ok(rows) => {
                s.sent.0 += kept.len() as u64;
                s.sent.1 += 1;
                if earlier {
                    s.earlier_sent += *rows as i64;
                }
            }
            Err(_) => s.stale = true,
        }
    });
    out.map(drop)
}

/// Sends `kept`; returns the rows written, as told to `group::wrote`.
fn send_all(c: &mut diesel::PgConnection, kept: &[Kept]) -> Result<usize> {
    let array = |part: &dyn Fn(&Kept) -> &[String]| {
        let mut out = String::from("[");
        for row in kept.iter().flat_map(|k| part(k).iter()) {
            if out.len() > 1 {
                out.push(',');
            }
            out.push_str(row);
        }
        out.push(']');
        out
    };
    let tables: Vec<String> = (0..TABLES.len())
        .map(|i| array(&|k: &Kept| &k.rows[i][..]))
        .collect();
    // Each table's columns as its rows name them, listed in the statement: a column they do
    // not name gets its default, as in the statements that write one posting.
    let columns: Vec<Vec<String>> = (0..TABLES.len())
        .map(|i| {
            kept.iter()
                .find_map(|k| k.rows[i].first())
                .map(|row| {
                    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(row)
                        .map(|m| m.keys().cloned().collect())
                })
                .transpose()
                .map(Option::unwrap_or_default)
        })
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Internal(format!("a kept row is not a JSON object: {e}")))?;
    let transit: Vec<serde_json::Value> = kept
        .iter()
        .flat_map(|k| &k.transit)
        .map(|(lot, doc, item, q)| {
            serde_json::json!({"lot_id": lot, "location_id": doc, "item_id": item, "quantity_milli": q})
        })
        .collect();
    // Summed per position over the postings: both of two takes hold exactly when the
    // position holds their sum.
    let mut takes: Vec<(Uuid, Location, i64)> = vec![];
    for (lot, at, q) in kept.iter().flat_map(|k| &k.takes) {
        match takes.iter_mut().find(|t| t.0 == *lot && t.1 == *at) {
            Some(t) => t.2 += q,
            None => takes.push((*lot, *at, *q)),
        }
    }
    let takes: Vec<(String, &'static str, String, i64)> = takes
        .iter()
        .map(|(lot, at, q)| (lot.to_string(), at.kind.as_str(), at.id.to_string(), *q))
        .collect();
    let statement = Postings {
        tables: &tables,
        columns: &columns,
        transit: serde_json::to_string(&transit).expect("JSON"),
        takes: takes
            .iter()
            .map(|(lot, kind, place, q)| super::ledger::guarded_take(lot, kind, place, *q))
            .collect(),
    };
    let (matched, opened): (Vec<i64>, i64) = statement.get_result(c)?;
    let matched: i64 = matched.iter().sum();
    let transit_rows = transit.len() as i64;
    if matched != takes.len() as i64 || opened != transit_rows {
        return Err(Error::Internal(format!(
            "a group's postings did not hold together: {matched} of {} stock positions \
             taken from, {opened} of {transit_rows} transits opened",
            takes.len()
        )));
    }
    // Each part inserts all its rows or fails the statement, and each take matched one
    // row: what this wrote, for the writer to check a failure against.
    let rows: usize = kept
        .iter()
        .map(|k| k.rows.iter().map(Vec::len).sum::<usize>())
        .sum();
    let rows = rows + transit.len() + takes.len();
    super::group::wrote(rows);
    Ok(rows)
}

/// The statement: each table's rows from a JSON array, in the column order of the table
/// (`json_populate_recordset` over the table's row type); then the transits opened, each
/// taking its lot's FEFO key from the lot by its primary key, as `OpenTransit` does; then
/// for each position taken from, the two guarded parts of a take (`TakeFromBalance`,
/// `EmptyBalance`), as point statements on the position's primary key rather than a join
/// with a list, whose plan could turn to scanning the table; then how many positions were
/// taken from and transits opened. Its text changes only with the count of positions taken
/// from, and it is kept prepared for each.
struct Postings<'a> {
    tables: &'a [String],
    columns: &'a [Vec<String>],
    transit: String,
    /// Each position's guarded take (`ledger::guarded_take`).
    takes: Vec<(super::ledger::PgPart<'a>, super::ledger::PgPart<'a>)>,
}

impl diesel::query_builder::Query for Postings<'_> {
    type SqlType = (
        diesel::sql_types::Array<diesel::sql_types::BigInt>,
        diesel::sql_types::BigInt,
    );
}

impl RunQueryDsl<diesel::PgConnection> for Postings<'_> {}

impl diesel::query_builder::QueryId for Postings<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for Postings<'_> {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        use diesel::sql_types::Text;
        for (i, ((table, rows), columns)) in
            TABLES.iter().zip(self.tables).zip(self.columns).enumerate()
        {
            // The names come from the row structs' fields, quoted as identifiers.
            let columns = columns
                .iter()
                .map(|c| format!("\"{}\"", c.replace('"', "\"\"")))
                .collect::<Vec<_>>()
                .join(", ");
            out.push_sql(if i == 0 { "WITH " } else { ", " });
            if columns.is_empty() {
                out.push_sql(&format!("new_{table} AS (SELECT 1)"));
                continue;
            }
            out.push_sql(&format!(
                "new_{table} AS (INSERT INTO {table} ({columns}) SELECT {columns} FROM \
                 json_populate_recordset(NULL::{table}, "
            ));
            out.push_bind_param::<Text, str>(rows)?;
            out.push_sql("::json))");
        }
        out.push_sql(
            ", new_transit AS (INSERT INTO balances \
             (lot_id, location_kind, location_id, item_id, quantity_milli, fefo) \
             SELECT t.lot_id, 'transit', t.location_id, t.item_id, t.quantity_milli, (SELECT ",
        );
        out.push_sql(super::ledger::LOT_FEFO_KEY);
        out.push_sql(" FROM lots WHERE lots.id = t.lot_id) FROM json_to_recordset(");
        out.push_bind_param::<Text, str>(&self.transit)?;
        out.push_sql(
            "::json) AS t(lot_id text, location_id text, item_id text, quantity_milli bigint) \
             RETURNING 1)",
        );
        for (i, (take, empty)) in self.takes.iter().enumerate() {
            out.push_sql(&format!(", take_{i} AS ("));
            take.walk_ast(out.reborrow())?;
            out.push_sql(&format!("), empty_{i} AS ("));
            empty.walk_ast(out.reborrow())?;
            out.push_sql(")");
        }
        // A flat array rather than one long sum, whose nesting grows with the takes.
        out.push_sql(" SELECT ARRAY[");
        for i in 0..self.takes.len() {
            out.push_sql(&format!(
                "{}(SELECT count(*) FROM take_{i}) + (SELECT count(*) FROM empty_{i})",
                if i == 0 { "" } else { ", " }
            ));
        }
        out.push_sql("]::bigint[], (SELECT count(*) FROM new_transit)");
        Ok(())
    }
}

//! What the writer thread remembers between the statements of its groups, so that a write
//! does not read again what the writer already knows.
//!
//! * Within a group (one transaction, which holds the only write lock): the audit chain's
//!   head and the last movement number, which the group's own writes move, and the stock
//!   positions read (a shipment's allocation reads the positions its plan check would read
//!   again); a position is forgotten as soon as a write changes it. A write that fails
//!   puts back the head and number it found (`write_undone`) and the positions are
//!   forgotten; all is forgotten when the group starts over or ends (another node or
//!   process may write before the next one).
//! * Across groups: master records (items and their values, warehouses, donors,
//!   recipients, the latest closed period). Kept while `master_generation.n` is what it
//!   was: triggers on those tables add one to it in the transaction of any change, by this
//!   service or anyone else, and each group reads it once after taking the write lock. A
//!   group that itself changes master data stops using the cache at that point, and it is
//!   emptied, so a rollback cannot leave a change in it that never committed.
//!
//! On PostgreSQL this saves a round trip per record a write reads (five or six a document);
//! on SQLite a point read and the row's conversion. It is off on every other thread: reads
//! outside the writer see the database as it is.

use std::cell::RefCell;
use std::collections::HashMap;

use diesel::prelude::*;
use uuid::Uuid;

use super::periods::Period;
use super::schema::master_generation;
use super::DbConn;
use crate::domain::catalog::{Item, ItemValue};
use crate::domain::ledger::location::Location;
use crate::domain::parties::{Donor, Recipient, Warehouse};
use crate::error::Result;

/// Records of one kind kept at most; past it the kind starts afresh (a province has ~20 000
/// parties, a few MB).
const MAX_PER_KIND: usize = 50_000;

#[derive(Default)]
pub(super) struct Master {
    pub items: HashMap<Uuid, Item>,
    /// Each item's value history, newest effective date first (as `master::item_values`).
    pub values: HashMap<Uuid, Vec<ItemValue>>,
    pub warehouses: HashMap<Uuid, Warehouse>,
    pub donors: HashMap<Uuid, Donor>,
    pub recipients: HashMap<Uuid, Recipient>,
    /// The latest closed period: known (`Some`), possibly none (`Some(None)`).
    pub latest_period: Option<Option<Period>>,
}

/// Keeps a record, starting the kind afresh when it is full.
pub(super) fn keep<T>(map: &mut HashMap<Uuid, T>, id: Uuid, record: T) {
    if map.len() >= MAX_PER_KIND {
        map.clear();
    }
    map.insert(id, record);
}

#[derive(Default)]
struct State {
    /// On the writer thread, between `begin` and `end`.
    in_group: bool,
    /// This group changed master data: the cache is not used until the group ends.
    master_changed: bool,
    /// The generation the cached master records belong to.
    generation: Option<i64>,
    master: Master,
    audit_head: Option<Option<(i64, String)>>,
    last_movement: Option<i64>,
    /// Stock positions by (lot, place), in thousandths; `None`: known to be empty.
    positions: HashMap<(Uuid, Location), Option<i64>>,
    /// PostgreSQL's count of rows written when the group began, plus the rows its writes
    /// since said they inserted, changed or deleted (`wrote`).
    written: i64,
}

impl State {
    /// Whether master records may be taken from the cache here and now.
    fn caching(&self) -> bool {
        self.in_group && !self.master_changed
    }

    fn forget_group(&mut self) {
        self.audit_head = None;
        self.last_movement = None;
        self.positions.clear();
        self.written = 0;
    }
}

thread_local! {
    static STATE: RefCell<State> = RefCell::default();
}

/// A group has begun (its transaction holds the write lock): check the cache is current,
/// and on PostgreSQL read where its count of rows written starts (`written`).
pub(super) fn begin(conn: &mut DbConn) -> Result<()> {
    let (now, written): (i64, i64) = match conn {
        DbConn::Sqlite(c) => (
            master_generation::table
                .select(master_generation::n)
                .get_result(c)?,
            0,
        ),
        // In the same round trip: PostgreSQL's count holds, besides this transaction's rows,
        // those of the connection's earlier transactions that it has not yet reported to
        // its statistics (it does so between transactions, at most once a second), so it
        // does not start at zero.
        DbConn::Postgres(c) => master_generation::table
            .select((
                master_generation::n,
                diesel::dsl::sql::<diesel::sql_types::BigInt>(super::PG_ROWS_WRITTEN),
            ))
            .get_result(c)?,
    };
    STATE.with_borrow_mut(|s| {
        if s.generation != Some(now) {
            s.master = Master::default();
            s.generation = Some(now);
        }
        s.in_group = true;
        s.master_changed = false;
        s.forget_group();
        // A server that does not count (-1) leaves a count no failed write can match.
        s.written = if written < 0 { i64::MIN / 2 } else { written };
    });
    Ok(())
}

/// The group has committed or rolled back.
pub(super) fn end() {
    STATE.with_borrow_mut(|s| {
        s.in_group = false;
        s.forget_group();
    });
}

/// What a write may move of what the group remembers, taken before the write runs.
pub(super) struct Mark {
    audit_head: Option<Option<(i64, String)>>,
    last_movement: Option<i64>,
    written: i64,
}

pub(super) fn mark() -> Mark {
    STATE.with_borrow(|s| Mark {
        audit_head: s.audit_head.clone(),
        last_movement: s.last_movement,
        written: s.written,
    })
}

/// A write failed and the transaction is as it was before the write (it was never written
/// to): the chain's head, the last movement number and the rows written are again what they
/// were, and need not be read again (two round trips on PostgreSQL). The stock positions are
/// forgotten: the write may have read back one it had changed.
pub(super) fn write_undone(mark: Mark) {
    STATE.with_borrow_mut(|s| {
        s.audit_head = mark.audit_head;
        s.last_movement = mark.last_movement;
        s.written = mark.written;
        s.positions.clear();
    });
}

/// Master data is being changed in this transaction (called by every store function that
/// writes it; the triggers cover everyone else).
pub(super) fn master_changing() {
    STATE.with_borrow_mut(|s| {
        if s.in_group {
            s.master_changed = true;
        }
        s.master = Master::default();
        s.generation = None;
    });
}

/// Runs `f` on the cached master records, if the cache may be used here and now.
pub(super) fn master<R>(f: impl FnOnce(&mut Master) -> R) -> Option<R> {
    STATE.with_borrow_mut(|s| s.caching().then(|| f(&mut s.master)))
}

/// The audit head as this group last left it, if known.
pub(super) fn audit_head() -> Option<Option<(i64, String)>> {
    STATE.with_borrow(|s| s.in_group.then(|| s.audit_head.clone()).flatten())
}

pub(super) fn set_audit_head(head: Option<(i64, String)>) {
    STATE.with_borrow_mut(|s| {
        if s.in_group {
            s.audit_head = Some(head);
        }
    });
}

/// The last movement number as this group last left it, if known.
pub(super) fn last_movement() -> Option<i64> {
    STATE.with_borrow(|s| s.last_movement.filter(|_| s.in_group))
}

pub(super) fn set_last_movement(seq: i64) {
    STATE.with_borrow_mut(|s| {
        if s.in_group {
            s.last_movement = Some(seq);
        }
    });
}

/// A write has inserted, changed or deleted `rows` rows (every store function that writes
/// says so, from what its statement reports). On PostgreSQL a write that fails is found to
/// have left nothing behind when the connection's own count of rows written is where the
/// group began plus what the writes before it said (`store::left_clean`). Saying less than was written is safe, only
/// slower (the group's next failure starts it over); saying more never is: it could hide
/// the rows of a write that failed.
pub(super) fn wrote(rows: usize) {
    STATE.with_borrow_mut(|s| s.written += rows as i64);
}

/// The rows written as the group's writes said (`wrote`), from where PostgreSQL's count
/// stood when the group began (`begin`).
pub(super) fn written() -> i64 {
    STATE.with_borrow(|s| s.written)
}

/// A stock position as this group last read it, if it has and nothing changed it since.
pub(super) fn position(lot: Uuid, at: Location) -> Option<Option<i64>> {
    STATE.with_borrow(|s| {
        s.in_group
            .then(|| s.positions.get(&(lot, at)).copied())
            .flatten()
    })
}

pub(super) fn keep_position(lot: Uuid, at: Location, quantity: Option<i64>) {
    STATE.with_borrow_mut(|s| {
        if s.in_group {
            s.positions.insert((lot, at), quantity);
        }
    });
}

/// A write is about to change a position.
pub(super) fn position_changing(lot: Uuid, at: Location) {
    STATE.with_borrow_mut(|s| {
        s.positions.remove(&(lot, at));
    });
}

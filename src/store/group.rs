//! What the writer thread remembers between the statements of its groups, so that a write
//! does not read again what the writer already knows.
//!
//! * Within a group (one transaction, which holds the only write lock): the audit chain's
//!   head and the last movement number, read once when the group begins and moved by the
//!   group's own writes, and the stock positions read (a shipment's allocation reads the
//!   positions its plan check would read again); a position is forgotten as soon as a write
//!   changes it. A write that fails puts back the head and number it found (`write_undone`)
//!   and the positions are forgotten; all is forgotten when the group starts over or ends
//!   (another node or process may write before the next one).
//! * Across groups: master records (items and their values, warehouses, donors,
//!   recipients, the latest closed period). Kept while `master_generation.n` is what it
//!   was: triggers on those tables add one to it in the transaction of any change, by this
//!   service or anyone else, and each group reads it once after taking the write lock. A
//!   group that itself changes master data stops using the cache at that point, and it is
//!   emptied, so a rollback cannot leave a change in it that never committed.
//! * Across groups: each warehouse's stock of an item in FEFO order, as far as shipments
//!   have read it (`Shelf`), kept current by this writer's own postings. Kept as it is
//!   while the audit chain's head, read when a group begins, is the one this writer's last
//!   commit left: every write that moves stock or changes a lot, by any node or process,
//!   appends to the chain in its own transaction, so an unchanged head means that no one
//!   else has. When the head has moved, the movements numbered since this writer's last
//!   are the others', and are applied to the shelves as its own are (`ledger::moved_since`);
//!   if a lot changed meanwhile, or there were many, the shelves are read again.
//!   Forgotten with any transaction that does not commit after changing it, and when a lot
//!   changes.
//!
//! On PostgreSQL this saves a round trip per record a write reads (five or six a document)
//! and one per item a shipment takes; on SQLite a point read and the row's conversion. It
//! is off on every other thread: reads outside the writer see the database as it is.

use std::cell::RefCell;
use std::collections::HashMap;

use diesel::prelude::*;
use uuid::Uuid;

use super::periods::Period;
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
    /// Each (warehouse, item)'s stock in FEFO order as far as it has been read, kept across
    /// groups while no one else writes (see `Shelf`).
    shelves: HashMap<(Uuid, Uuid), Shelf>,
    /// The audit chain's head the shelves are current with (the one this writer's last
    /// commit left, or the one a group caught up to): they stay so while the chain's head is
    /// still there when a group begins.
    shelves_head: Option<Option<(i64, String)>>,
    /// The last movement number at that head: what others moved since is numbered after it.
    shelves_movement: Option<i64>,
    /// This transaction has changed the shelves: if it does not commit, they are wrong.
    shelves_changed: bool,
    /// PostgreSQL's count of rows written when the group began, plus the rows its writes
    /// since said they inserted, changed or deleted (`wrote`).
    written: i64,
}

impl State {
    /// Whether master records may be taken from the cache here and now.
    fn caching(&self) -> bool {
        self.in_group && !self.master_changed
    }

    fn forget_shelves(&mut self) {
        self.shelves.clear();
        self.shelves_head = None;
        self.shelves_movement = None;
        self.shelves_changed = false;
    }

    /// Where the others' writes since this writer's last commit start, if its shelves can
    /// catch up with them rather than be read again (`ledger::moved_since`): only forward
    /// (a chain or journal that went back, a database restored under the node, is read
    /// again).
    fn catch_up_from(&self, head: &Option<(i64, String)>, last: i64) -> Option<(i64, i64)> {
        let seq = |h: &Option<(i64, String)>| h.as_ref().map_or(0, |(seq, _)| *seq);
        let known = seq(self.shelves_head.as_ref()?);
        let movement = self.shelves_movement?;
        let forward = seq(head) > known && last >= movement;
        let worth_it = !self.shelves_changed && !self.shelves.is_empty();
        (forward && worth_it).then_some((known, movement))
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

/// A group has begun (its transaction holds the write lock): in one query, check the cache
/// is current, take the audit chain's head and the last movement number the group's writes
/// will follow, and on PostgreSQL read where its count of rows written starts (`written`).
pub(super) fn begin(conn: &mut DbConn) -> Result<()> {
    type Found = (i64, i64, Option<i64>, Option<String>, Option<i64>);
    let (now, written, seq, hash, moved): Found = match conn {
        DbConn::Sqlite(c) => GroupStart("0").get_result(c)?,
        // PostgreSQL's count holds, besides this transaction's rows, those of the
        // connection's earlier transactions that it has not yet reported to its statistics
        // (it does so between transactions, at most once a second), so it does not start
        // at zero.
        DbConn::Postgres(c) => GroupStart(super::PG_ROWS_WRITTEN).get_result(c)?,
    };
    let head = seq.zip(hash);
    // Another writer has written since this one's last commit: its stock movements, applied
    // to the shelves as this writer's own are, save reading them again (with two writers
    // taking turns, every group would otherwise start with no shelves).
    let caught_up = match STATE.with_borrow(|s| s.catch_up_from(&head, moved.unwrap_or(0))) {
        Some((event, movement)) => super::ledger::moved_since(conn, event, movement)?,
        None => None,
    };
    super::batch::begin(matches!(conn, DbConn::Postgres(_)));
    STATE.with_borrow_mut(|s| {
        if s.generation != Some(now) {
            s.master = Master::default();
            s.generation = Some(now);
        }
        // Every write that moves stock or changes a lot, by this service or another process
        // or node, appends to the chain in its transaction: a head that is still the one
        // this writer committed last means that no one has moved stock since.
        if s.shelves_changed || s.shelves_head.as_ref() != Some(&head) {
            match caught_up {
                Some(theirs) => {
                    for (warehouse, lot, quantity, key) in theirs {
                        let (item, id) = (lot.item_id, lot.id);
                        let new = (quantity > 0).then_some((&lot, key));
                        move_on_shelf(&mut s.shelves, warehouse, item, id, quantity, new);
                    }
                    // The shelves are now as of this head: a group that starts over (and
                    // begins again without ending) must not apply the same movements twice.
                    s.shelves_head = Some(head.clone());
                    s.shelves_movement = Some(moved.unwrap_or(0));
                }
                None => s.forget_shelves(),
            }
        }
        s.in_group = true;
        s.master_changed = false;
        s.forget_group();
        s.audit_head = Some(head);
        s.last_movement = Some(moved.unwrap_or(0));
        // A server that does not count (-1) leaves a count no failed write can match.
        s.written = if written < 0 { i64::MIN / 2 } else { written };
    });
    Ok(())
}

/// What a group reads first, in one statement: the master generation, where the count of
/// rows written starts (the expression given: SQLite counts on the connection instead, `0`),
/// and, by scalar subqueries on the two primary keys as `audit::head` and
/// `ledger::last_seq` read them, the audit chain's head and the last movement number. One
/// round trip on PostgreSQL instead of three. A statement type with a static query id, so
/// that the writer's connection prepares it once: built from `sql` fragments, which diesel
/// never caches, it was prepared for every group, 1.9 % of the SQLite writer's time (perf,
/// 20k). The expression is the same on every connection of a backend, so one cache entry
/// per connection is right.
struct GroupStart(&'static str);

impl diesel::query_builder::QueryId for GroupStart {
    type QueryId = GroupStart;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<DB: diesel::backend::Backend> diesel::query_builder::QueryFragment<DB> for GroupStart {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, DB>,
    ) -> QueryResult<()> {
        out.push_sql("SELECT n, ");
        out.push_sql(self.0);
        out.push_sql(
            ", (SELECT max(seq) FROM audit_events), \
             (SELECT hash FROM audit_events WHERE seq = (SELECT max(seq) FROM audit_events)), \
             (SELECT max(seq) FROM movements) FROM master_generation",
        );
        Ok(())
    }
}

impl diesel::query_builder::Query for GroupStart {
    type SqlType = (
        diesel::sql_types::BigInt,
        diesel::sql_types::BigInt,
        diesel::sql_types::Nullable<diesel::sql_types::BigInt>,
        diesel::sql_types::Nullable<diesel::sql_types::Text>,
        diesel::sql_types::Nullable<diesel::sql_types::BigInt>,
    );
}

impl<C> RunQueryDsl<C> for GroupStart {}

/// The group has committed, or rolled back (`committed` false).
pub(super) fn end(committed: bool) {
    STATE.with_borrow_mut(|s| {
        if committed {
            s.shelves_head = s.audit_head.clone();
            s.shelves_movement = s.last_movement;
            s.shelves_changed = false;
        } else {
            s.forget_shelves();
        }
        s.in_group = false;
        s.forget_group();
    });
    super::batch::off();
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
        // With the rows of postings that earlier writes kept and this one sent.
        s.written = mark.written + super::batch::earlier_sent();
        s.positions.clear();
        // Postings it kept (`store::batch`) go with it, and the stock they moved is read
        // again.
        if super::batch::drop_this_writes() {
            s.shelves.clear();
        }
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

/// What the writer knows of the stock of one item in one warehouse, in FEFO order: the
/// positions whose FEFO key is at most `upto` (all of them when `complete`), with their lots
/// and quantities in thousandths. A shipment's allocation reads stock in that order, a page at
/// a time, until what it wants is covered (`ledger::available_at`); what it read is kept
/// here, and the postings of this writer keep it current (`shelf_moved`), so the next
/// shipment of the item there reads nothing. Kept across groups while the audit chain's head
/// is the one this writer committed, or caught up with the movements others made since
/// (`begin`); forgotten with any transaction that does not commit, and whenever a lot
/// changes (`lots_changing`).
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Shelf {
    pub rows: Vec<(crate::domain::ledger::lot::Lot, i64, String)>,
    pub upto: String,
    pub complete: bool,
}

/// Positions one shelf keeps at most: the front of its FEFO order, where shipments take.
/// Past it the tail is let go (`Shelf::trim`) and read again if a shipment gets that far.
/// Unbounded, a shelf read to its end took in every lot received after it (a lot without
/// an expiry date sorts last), and under a steady write load the server grew by ~1 MB every
/// few seconds, to 99 MB in three minutes (docs/performance-history.md).
const MAX_PER_SHELF: usize = 64;

/// Positions kept at most across all shelves (each a lot and its key, a few hundred bytes);
/// past it they start afresh.
const MAX_SHELVED: usize = 20_000;

impl Shelf {
    /// Keeps the first `MAX_PER_SHELF` rows. They are still every position up to the last
    /// of them, which becomes `upto`; what lay beyond is no longer known.
    fn trim(&mut self) {
        if self.rows.len() > MAX_PER_SHELF {
            self.rows.truncate(MAX_PER_SHELF);
            if let Some((_, _, key)) = self.rows.last() {
                self.upto = key.clone();
            }
            self.complete = false;
        }
    }
}

/// The shelf of `item` at `warehouse` as far as it is known, if the writer may use it here.
/// `until` is told each row in order and says when enough is taken: the rows are cloned up
/// to that one only, and the answer says whether it was reached.
pub(super) fn shelf(
    warehouse: Uuid,
    item: Uuid,
    mut until: impl FnMut(&crate::domain::ledger::lot::Lot, i64) -> bool,
) -> Option<(Shelf, bool)> {
    STATE.with_borrow(|s| {
        let shelf = s.shelves.get(&(warehouse, item)).filter(|_| s.in_group)?;
        let mut rows = vec![];
        let mut reached = false;
        for (lot, q, key) in &shelf.rows {
            rows.push((lot.clone(), *q, key.clone()));
            if until(lot, *q) {
                reached = true;
                break;
            }
        }
        let known = Shelf {
            rows,
            upto: shelf.upto.clone(),
            complete: shelf.complete,
        };
        Some((known, reached))
    })
}

/// The whole of a shelf as known, for the check of debug builds (`ledger::available_at`).
#[cfg(debug_assertions)]
pub(super) fn whole_shelf(warehouse: Uuid, item: Uuid) -> Option<Shelf> {
    STATE.with_borrow(|s| s.shelves.get(&(warehouse, item)).cloned())
}

/// Rows read from the database after the shelf's end (or from its start, if it is not
/// known), in FEFO order; `complete` if they are the last ones.
pub(super) fn shelve(
    warehouse: Uuid,
    item: Uuid,
    read: &[(crate::domain::ledger::lot::Lot, i64, String)],
    complete: bool,
) {
    STATE.with_borrow_mut(|s| {
        if !s.in_group {
            return;
        }
        if s.shelves.values().map(|sh| sh.rows.len()).sum::<usize>() + read.len() > MAX_SHELVED {
            s.shelves.clear();
        }
        let shelf = s.shelves.entry((warehouse, item)).or_default();
        shelf.rows.extend(read.iter().cloned());
        if let Some((_, _, key)) = read.last() {
            shelf.upto = key.clone();
        }
        shelf.complete = complete;
        shelf.trim();
    });
}

/// A posting has moved `quantity` (thousandths) of `lot` of `item` out of (`-`) or into a
/// warehouse. `new` is the lot and its FEFO key when the lot came with the posting; a lot
/// that is not, and is not on the shelf, makes the shelf be read again. So does anything
/// that does not add up (a take from a position the shelf does not hold).
pub(super) fn shelf_moved(
    warehouse: Uuid,
    item: Uuid,
    lot: Uuid,
    quantity: i64,
    new: Option<(&crate::domain::ledger::lot::Lot, String)>,
) {
    STATE.with_borrow_mut(|s| {
        if !s.in_group {
            return;
        }
        s.shelves_changed = true;
        move_on_shelf(&mut s.shelves, warehouse, item, lot, quantity, new);
    });
}

/// `shelf_moved`'s change to the shelf, also made for other writers' movements. A lot that
/// comes in and is not on the shelf is put in its FEFO place when `new` gives it and the
/// place lies within what the shelf knows: the shelf holds every position up to `upto`, so
/// the lot had none there. Other writers' movements give every lot that comes in; the
/// writer's own postings only the lots they create.
fn move_on_shelf(
    shelves: &mut HashMap<(Uuid, Uuid), Shelf>,
    warehouse: Uuid,
    item: Uuid,
    lot: Uuid,
    quantity: i64,
    new: Option<(&crate::domain::ledger::lot::Lot, String)>,
) {
    let Some(shelf) = shelves.get_mut(&(warehouse, item)) else {
        return;
    };
    // The rows are in FEFO order, each lot's key its own: a lot whose key is known is
    // looked for where that key sorts, not by a scan of the whole shelf (a receipt's new
    // lot is on no shelf, and shelves grow with the stock; this function was 1.7-1.9 % of
    // the SQLite writer's samples, perf at 20k and 1M, and 1.4 % at 20k after).
    let found = match &new {
        Some((_, key)) => {
            let at = shelf.rows.partition_point(|(_, _, k)| k < key);
            shelf
                .rows
                .get(at)
                .filter(|(l, _, _)| l.id == lot)
                .map(|_| at)
        }
        None => shelf.rows.iter().position(|(l, _, _)| l.id == lot),
    };
    let keep = match found {
        Some(i) => {
            let q = shelf.rows[i].1 + quantity;
            if q == 0 {
                shelf.rows.remove(i);
            } else {
                shelf.rows[i].1 = q;
            }
            q >= 0
        }
        // Beyond what is known of the shelf: it stays as it is.
        None if quantity > 0 => match new {
            Some((l, key)) if shelf.complete || key <= shelf.upto => {
                let at = shelf.rows.partition_point(|(_, _, k)| *k < key);
                shelf.rows.insert(at, (l.clone(), quantity, key));
                shelf.trim();
                true
            }
            Some(_) => true,
            None => false,
        },
        None => !shelf.complete,
    };
    if !keep {
        shelves.remove(&(warehouse, item));
    }
}

/// A lot is changing (its hold): what the shelves say of it is no longer so.
pub(super) fn lots_changing() {
    STATE.with_borrow_mut(|s| {
        s.shelves.clear();
        s.shelves_changed = true;
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ledger::lot::sample;

    fn shelf_of(keys: &[(&str, Uuid, i64)], item: Uuid, complete: bool) -> Shelf {
        Shelf {
            rows: keys
                .iter()
                .map(|(k, id, q)| (sample(*id, item, None), *q, k.to_string()))
                .collect(),
            upto: keys
                .last()
                .map(|(k, _, _)| k.to_string())
                .unwrap_or_default(),
            complete,
        }
    }

    fn quantities(s: &HashMap<(Uuid, Uuid), Shelf>, at: (Uuid, Uuid)) -> Vec<(String, i64)> {
        s[&at]
            .rows
            .iter()
            .map(|(_, q, k)| (k.clone(), *q))
            .collect()
    }

    #[test]
    fn a_lot_is_found_by_its_key_or_put_in_its_fefo_place_once() {
        let (wh, item) = (Uuid::now_v7(), Uuid::now_v7());
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let mut shelves = HashMap::new();
        shelves.insert(
            (wh, item),
            shelf_of(&[("1a", a, 5), ("1c", c, 7)], item, true),
        );
        let lot_b = sample(b, item, None);

        // New to the shelf: in its place between the two, once.
        move_on_shelf(&mut shelves, wh, item, b, 3, Some((&lot_b, "1b".into())));
        let three = vec![("1a".into(), 5), ("1b".into(), 3), ("1c".into(), 7)];
        assert_eq!(quantities(&shelves, (wh, item)), three);
        // The same lot coming in again (another writer's transfer in): added to, not doubled.
        move_on_shelf(&mut shelves, wh, item, b, 2, Some((&lot_b, "1b".into())));
        let more = vec![("1a".into(), 5), ("1b".into(), 5), ("1c".into(), 7)];
        assert_eq!(quantities(&shelves, (wh, item)), more);
        // A take, by id alone: the position goes when it is emptied.
        move_on_shelf(&mut shelves, wh, item, c, -7, None);
        assert_eq!(
            quantities(&shelves, (wh, item)),
            vec![("1a".into(), 5), ("1b".into(), 5)]
        );
        // A take the shelf cannot account for: the shelf is forgotten, to be read again.
        move_on_shelf(&mut shelves, wh, item, a, -6, None);
        assert!(!shelves.contains_key(&(wh, item)));
    }

    #[test]
    fn a_shelf_keeps_only_its_front_and_knows_it_no_further() {
        let (wh, item) = (Uuid::now_v7(), Uuid::now_v7());
        let keys: Vec<(String, Uuid)> = (0..MAX_PER_SHELF)
            .map(|i| (format!("1{i:04}"), Uuid::now_v7()))
            .collect();
        let rows: Vec<(&str, Uuid, i64)> =
            keys.iter().map(|(k, id)| (k.as_str(), *id, 1)).collect();
        let mut shelves = HashMap::new();
        shelves.insert((wh, item), shelf_of(&rows, item, true));

        // A lot received into a complete, full shelf lands at its end: it is let go, and the
        // shelf no longer claims to know everything.
        let late = Uuid::now_v7();
        let lot = sample(late, item, None);
        move_on_shelf(
            &mut shelves,
            wh,
            item,
            late,
            3,
            Some((&lot, "19999".into())),
        );
        let shelf = &shelves[&(wh, item)];
        assert_eq!(shelf.rows.len(), MAX_PER_SHELF);
        assert!(!shelf.complete);
        assert_eq!(shelf.upto, keys[MAX_PER_SHELF - 1].0);
        assert!(shelf.rows.iter().all(|(l, _, _)| l.id != late));

        // One that sorts first pushes the last row off, and `upto` comes back to cover
        // exactly the rows kept.
        let early = Uuid::now_v7();
        let lot = sample(early, item, None);
        move_on_shelf(&mut shelves, wh, item, early, 2, Some((&lot, "0".into())));
        let shelf = &shelves[&(wh, item)];
        assert_eq!(shelf.rows.len(), MAX_PER_SHELF);
        assert_eq!(shelf.rows[0].0.id, early);
        assert_eq!(shelf.upto, keys[MAX_PER_SHELF - 2].0);
        assert_eq!(shelf.rows.last().unwrap().2, shelf.upto);
    }

    #[test]
    fn a_new_lot_past_what_an_incomplete_shelf_knows_is_left_off_it() {
        let (wh, item) = (Uuid::now_v7(), Uuid::now_v7());
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let mut shelves = HashMap::new();
        shelves.insert((wh, item), shelf_of(&[("1a", a, 5)], item, false));
        let lot_b = sample(b, item, None);
        move_on_shelf(&mut shelves, wh, item, b, 3, Some((&lot_b, "1b".into())));
        assert_eq!(quantities(&shelves, (wh, item)), vec![("1a".into(), 5)]);
    }
}

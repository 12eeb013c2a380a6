//! Reading the ledger: documents, stock (now or as of a date), the journal, lot traces,
//! and the integrity check that recomputes everything from the movements.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{view, DocumentView};
use crate::domain::access::{Action, Principal, Role};
use crate::domain::decimal::{Money, Quantity, UnitValue};
use crate::domain::ledger::document::{DocType, Document};
use crate::domain::ledger::location::{Location, LocationKind};
use crate::domain::ledger::lot::Lot;
use crate::domain::ledger::movement::Movement;
use crate::domain::report::Amount;
use crate::error::{Error, Result};
use crate::service::Listing;
use crate::store::ledger::{self as db, DocFilter, MoveFilter, StockFilter};
use crate::store::{self, master, Db, DbConn};

/// The warehouses a reader is limited to: a clerk's, or none (everything).
fn scope(actor: &Principal) -> Option<Vec<Uuid>> {
    (actor.role == Role::Clerk).then(|| actor.warehouses.clone())
}

fn visible(actor: &Principal, doc: &Document) -> Result<()> {
    if doc.doc_type == DocType::Pledge {
        return Ok(());
    }
    let mine = [doc.warehouse_id, doc.to_warehouse_id]
        .into_iter()
        .flatten()
        .any(|w| actor.may_see_warehouse(w));
    if mine {
        Ok(())
    } else {
        actor
            .require_warehouse(doc.warehouse_id.unwrap_or_default())
            .map_err(Error::from)
    }
}

pub fn get_document(
    dbh: &Db,
    actor: &Principal,
    doc_type: DocType,
    id: Uuid,
) -> Result<DocumentView> {
    actor.require(Action::ReadLedger)?;
    dbh.read(|conn| {
        let doc = db::get_document(conn, id)?
            .filter(|d| d.doc_type == doc_type)
            .ok_or_else(|| Error::not_found(doc_type.as_str(), id))?;
        visible(actor, &doc)?;
        view(conn, doc, Utc::now().date_naive())
    })
}

pub fn list_documents(dbh: &Db, actor: &Principal, mut f: DocFilter) -> Result<Listing<Document>> {
    actor.require(Action::ReadLedger)?;
    if f.doc_type != Some(DocType::Pledge) {
        f.warehouses = scope(actor);
    }
    let limit = f.limit;
    f.limit += 1;
    let today = Utc::now().date_naive();
    let mut rows = dbh.read(|c| db::list_documents(c, &f))?;
    for d in &mut rows {
        d.status = crate::domain::ledger::plan::shown_status(d, today);
    }
    Ok(Listing::from_rows(rows, limit, |d| d.id.to_string()))
}

pub fn movements(dbh: &Db, actor: &Principal, mut f: MoveFilter) -> Result<Listing<Movement>> {
    actor.require(Action::ReadLedger)?;
    f.warehouses = scope(actor);
    let limit = f.limit;
    f.limit += 1;
    let rows = dbh.read(|c| db::list_movements(c, &f))?;
    Ok(Listing::from_rows(rows, limit, |m| m.seq.to_string()))
}

// ---------------------------------------------------------------- stock

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StockRow {
    pub location: Location,
    pub item_id: Uuid,
    pub item_code: String,
    pub lot_id: Uuid,
    pub lot_number: Option<String>,
    pub expiry_date: Option<NaiveDate>,
    pub on_hold: bool,
    pub donor_id: Uuid,
    #[schema(value_type = String)]
    pub quantity: Quantity,
    pub unit: String,
    /// Estimated value of one base unit on the report date.
    #[schema(value_type = String)]
    pub unit_value: UnitValue,
    #[schema(value_type = String)]
    pub value: Money,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StockTotal {
    pub item_id: Uuid,
    pub item_code: String,
    #[schema(value_type = String)]
    pub quantity: Quantity,
    pub unit: String,
    #[schema(value_type = String)]
    pub value: Money,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StockReport {
    /// Stock at the end of this instant (now, if not asked for a date).
    pub as_of: DateTime<Utc>,
    pub rows: Vec<StockRow>,
    pub totals: Vec<StockTotal>,
    #[schema(value_type = String)]
    pub total_value: Money,
}

/// Stock on hand by location, item and lot, valued at the estimated value in effect on the
/// report date. Now: from the balances; `as_of`: summed from the movements up to then.
pub fn stock(
    dbh: &Db,
    actor: &Principal,
    mut f: StockFilter,
    as_of: Option<DateTime<Utc>>,
) -> Result<StockReport> {
    actor.require(Action::ReadLedger)?;
    if let Some(mine) = scope(actor) {
        f.warehouses = Some(match f.warehouses {
            Some(asked) => {
                for w in &asked {
                    actor.require_warehouse(*w)?;
                }
                asked
            }
            None => mine,
        });
    }
    let at = as_of.unwrap_or_else(Utc::now);
    // One state of the database for the positions, their lots and the values: they are
    // read by separate statements (`db::stock`).
    dbh.snapshot(|conn| {
        let mut balances = match as_of {
            None => db::stock(conn, &f)?,
            Some(t) => stock_as_of(conn, &f, t)?,
        };
        balances.sort_unstable_by_key(db::BalanceRow::order);
        let items: Vec<Uuid> = balances.iter().map(|b| b.item_id).collect();
        let values = db::values_on(conn, &items, at.date_naive())?;
        let mut item_info: HashMap<Uuid, (String, String)> = HashMap::new();
        let mut rows = vec![];
        let mut totals: BTreeMap<Uuid, (Quantity, Money)> = BTreeMap::new();
        let mut total_value = Money::ZERO;
        for b in balances {
            let quantity = b.quantity;
            if let std::collections::hash_map::Entry::Vacant(slot) = item_info.entry(b.item_id) {
                let it = master::get_item(conn, b.item_id)?
                    .ok_or_else(|| Error::not_found("item", b.item_id))?;
                slot.insert((it.code, it.base_unit));
            }
            let (code, unit) = item_info[&b.item_id].clone();
            let (unit_value, value, _) = values.price(b.item_id, quantity);
            let t = totals
                .entry(b.item_id)
                .or_insert((Quantity::ZERO, Money::ZERO));
            t.0 = t.0.checked_add(quantity).expect("bounded");
            t.1 =
                t.1.checked_add(value)
                    .ok_or_else(|| Error::Internal("value overflow".into()))?;
            total_value = total_value
                .checked_add(value)
                .ok_or_else(|| Error::Internal("value overflow".into()))?;
            rows.push(StockRow {
                location: b.location,
                item_id: b.item_id,
                item_code: code,
                lot_id: b.lot_id,
                lot_number: b.lot_number,
                expiry_date: b.expiry_date,
                on_hold: b.on_hold,
                donor_id: b.donor_id,
                quantity,
                unit,
                unit_value,
                value,
            });
        }
        let totals = totals
            .into_iter()
            .map(|(item_id, (quantity, value))| {
                let (item_code, unit) = item_info[&item_id].clone();
                StockTotal {
                    item_id,
                    item_code,
                    quantity,
                    unit,
                    value,
                }
            })
            .collect();
        Ok(StockReport {
            as_of: at,
            rows,
            totals,
            total_value,
        })
    })
}

fn stock_as_of(
    conn: &mut DbConn,
    f: &StockFilter,
    t: DateTime<Utc>,
) -> Result<Vec<db::BalanceRow>> {
    // Times are stored to the microsecond, so "up to and including t" is "before t + 1 µs".
    let positions = positions_at(conn, t + chrono::Duration::microseconds(1))?;
    let held: Vec<((Uuid, Location), Quantity)> = positions
        .into_iter()
        .filter(|((lot, loc), (item, a))| {
            loc.holds_stock()
                && a.qty > 0
                && f.warehouses
                    .as_ref()
                    .is_none_or(|ws| loc.kind == LocationKind::Warehouse && ws.contains(&loc.id))
                && f.item_id.is_none_or(|i| i == *item)
                && f.lot_id.is_none_or(|l| l == *lot)
        })
        .map(|(key, (_, a))| (key, a.quantity()))
        .collect();
    let ids: Vec<Uuid> = held.iter().map(|((lot, _), _)| *lot).collect();
    let lots = db::get_lots(conn, &ids)?;
    Ok(held
        .into_iter()
        .map(|((lot, loc), q)| db::BalanceRow::of(&lots[&lot], loc, q))
        .collect())
}

/// Per (lot, stock location): the lot's item and the amount there.
pub type Positions = HashMap<(Uuid, Location), (Uuid, Amount)>;

/// Stock positions per (lot, warehouse or transit location) at instant `t`: the latest
/// closing position at or before `t`, plus the movements since. The cost is what was in
/// stock at that close and what happened since, not the length of the history: donors',
/// recipients' and loss positions, which only grow, are neither stored at a close nor kept
/// here (every report takes stock positions only).
pub fn positions_at(conn: &mut DbConn, t: DateTime<Utc>) -> Result<Positions> {
    let (mut pos, since) = closing_positions(conn, t)?;
    db::each_movement_between(conn, since, Some(t), |m| {
        fold_stock(&mut pos, &m);
        Ok(())
    })?;
    Ok(pos)
}

/// `positions_at` for one item: the movements since the close are read through the
/// (item_id, occurred_at) index, so a stock card's opening balance costs the item's
/// movements, not everyone's.
pub fn item_positions_at(conn: &mut DbConn, t: DateTime<Utc>, item: Uuid) -> Result<Positions> {
    let (mut pos, since) = closing_positions(conn, t)?;
    pos.retain(|_, (i, _)| *i == item);
    let moves = db::list_movements(
        conn,
        &db::MoveFilter {
            item_id: Some(item),
            from: since,
            to: Some(t),
            limit: i64::MAX,
            ..Default::default()
        },
    )?;
    for m in moves {
        fold_stock(&mut pos, &m);
    }
    Ok(pos)
}

/// The stock positions stored by the latest close at or before `t`, and that close's end.
fn closing_positions(
    conn: &mut DbConn,
    t: DateTime<Utc>,
) -> Result<(Positions, Option<DateTime<Utc>>)> {
    let (mut pos, since) = match store::periods::latest_until(conn, t)? {
        Some(p) => (store::periods::balances(conn, p.id)?, Some(p.closed_until)),
        None => (HashMap::new(), None),
    };
    pos.retain(|(_, loc), _| loc.holds_stock());
    Ok((pos, since))
}

fn fold_stock(pos: &mut Positions, m: &Movement) {
    let a = Amount::of(m);
    for (loc, sign) in [(m.from, -1), (m.to, 1)] {
        if loc.holds_stock() {
            pos.entry((m.lot_id, loc))
                .or_insert((m.item_id, Amount::default()))
                .1
                .add(a, sign);
        }
    }
}

// ---------------------------------------------------------------- lot trace

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Whereabouts {
    pub location: Location,
    /// The warehouse's, recipient's or donor's name, where there is one.
    pub name: Option<String>,
    #[schema(value_type = String)]
    pub quantity: Quantity,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LotTrace {
    pub lot: Lot,
    pub donor_name: String,
    pub item_code: String,
    /// Every movement of the lot, in order.
    pub movements: Vec<Movement>,
    /// Where the lot's units are now: warehouses and transit (on hand), recipients
    /// (delivered) and loss (written off).
    pub whereabouts: Vec<Whereabouts>,
}

pub fn lot_trace(dbh: &Db, actor: &Principal, id: Uuid) -> Result<LotTrace> {
    actor.require(Action::ReadLedger)?;
    dbh.read(|conn| {
        let lot = db::get_lot(conn, id)?.ok_or_else(|| Error::not_found("lot", id))?;
        let movements = db::list_movements(
            conn,
            &MoveFilter {
                lot_id: Some(id),
                limit: i64::MAX,
                ..Default::default()
            },
        )?;
        let mut at: BTreeMap<Location, Quantity> = BTreeMap::new();
        for m in &movements {
            let f = at.entry(m.from).or_insert(Quantity::ZERO);
            *f = f.checked_sub(m.quantity).expect("bounded");
            let t = at.entry(m.to).or_insert(Quantity::ZERO);
            *t = t.checked_add(m.quantity).expect("bounded");
        }
        let mut whereabouts = vec![];
        for (location, quantity) in at {
            if location.kind == LocationKind::Donor || quantity.is_zero() {
                continue;
            }
            let name = match location.kind {
                LocationKind::Warehouse | LocationKind::Loss => {
                    master::get_warehouse(conn, location.id)?.map(|w| w.name)
                }
                LocationKind::Recipient => {
                    master::get_recipient(conn, location.id)?.map(|r| r.name)
                }
                _ => None,
            };
            whereabouts.push(Whereabouts {
                location,
                name,
                quantity,
            });
        }
        let donor_name = master::get_donor(conn, lot.donor_id)?
            .map(|d| d.name)
            .unwrap_or_default();
        let item_code = master::get_item(conn, lot.item_id)?
            .map(|i| i.code)
            .unwrap_or_default();
        Ok(LotTrace {
            lot,
            donor_name,
            item_code,
            movements,
            whereabouts,
        })
    })
}

// ---------------------------------------------------------------- integrity

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IntegrityReport {
    /// True when every check passed.
    pub ok: bool,
    pub movements: i64,
    /// Stock positions stored (one per lot and warehouse or transit that holds some).
    pub balances: i64,
    /// Stored positions that differ from the sum of their movements or are filed under
    /// another item than their movements, and positions the movements leave that are not
    /// stored.
    pub mismatched_balances: Vec<String>,
    /// Items whose stored stock is not what came in from donors less what went out to
    /// recipients and write-offs.
    pub unbalanced_items: Vec<String>,
    /// Warehouse or transit positions that the movements leave below zero.
    pub negative_stock: Vec<String>,
    /// Movements from or to a donor of a lot that another donor gave (the first 100).
    pub misattributed_movements: Vec<String>,
}

/// Recomputes every stock position from the movements and checks the ledger's invariants:
/// stored positions equal movements, each item's stock is what came in less what went out,
/// no warehouse or transit location holds less than nothing, and goods move from (or back
/// to) only the donor who gave their lot.
pub fn integrity(dbh: &Db, actor: &Principal) -> Result<IntegrityReport> {
    actor.require(Action::CheckLedger)?;
    integrity_of(dbh)
}

pub fn integrity_of(dbh: &Db) -> Result<IntegrityReport> {
    dbh.read(|conn| {
        // Positions as the movements leave them, and per item what crossed the ledger's
        // edge: in from donors (+), out to recipients and write-offs (-).
        let mut computed: HashMap<(Uuid, Location), (Uuid, i64)> = HashMap::new();
        let mut crossed: BTreeMap<Uuid, i64> = BTreeMap::new();
        let mut count = 0i64;
        // A donor's goods are their lots (the journal by place reads a donor's movements
        // through them): goods come from, or go back to, only the donor who gave the lot.
        let lot_donors = db::lot_donors(conn)?;
        let mut misattributed = vec![];
        db::each_movement(conn, |m| {
            count += 1;
            let q = m.quantity.to_scaled();
            for (loc, signed) in [(m.from, -q), (m.to, q)] {
                if loc.kind == LocationKind::Donor && misattributed.len() < 100 {
                    match lot_donors.get(&m.lot_id) {
                        Some(d) if *d == loc.id => {}
                        Some(d) => misattributed.push(format!(
                            "movement {}: moves donor {}'s goods, its lot was given by {d}",
                            m.seq, loc.id
                        )),
                        None => misattributed
                            .push(format!("movement {}: lot {} has no donor", m.seq, m.lot_id)),
                    }
                }
                if loc.holds_stock() {
                    computed.entry((m.lot_id, loc)).or_insert((m.item_id, 0)).1 += signed;
                } else {
                    *crossed.entry(m.item_id).or_default() -= signed;
                }
            }
            Ok(())
        })?;
        let stored = db::all_balances(conn)?;
        let mut report = IntegrityReport {
            ok: true,
            movements: count,
            balances: stored.len() as i64,
            mismatched_balances: vec![],
            unbalanced_items: vec![],
            negative_stock: vec![],
            misattributed_movements: misattributed,
        };
        let mut seen = std::collections::HashSet::new();
        let mut per_item: BTreeMap<Uuid, i64> = BTreeMap::new();
        for (lot, item, loc, q) in &stored {
            seen.insert((*lot, *loc));
            let (moved_item, want) = computed.get(&(*lot, *loc)).copied().unwrap_or((*item, 0));
            if want != q.to_scaled() {
                report.mismatched_balances.push(format!(
                    "lot {lot} at {loc}: stored {q}, movements say {}",
                    Quantity::from_scaled(want)
                ));
            }
            // Allocation picks lots by the position's item: a position filed under another
            // item would hand out the wrong goods.
            if moved_item != *item {
                report.mismatched_balances.push(format!(
                    "lot {lot} at {loc}: stored as item {item}, its movements are item {moved_item}"
                ));
            }
            *per_item.entry(*item).or_default() += q.to_scaled();
        }
        for ((lot, loc), (_, q)) in &computed {
            if *q < 0 {
                report
                    .negative_stock
                    .push(format!("lot {lot} at {loc}: {}", Quantity::from_scaled(*q)));
            }
            if *q != 0 && !seen.contains(&(*lot, *loc)) {
                report.mismatched_balances.push(format!(
                    "lot {lot} at {loc}: no balance row, movements say {}",
                    Quantity::from_scaled(*q)
                ));
            }
        }
        for (lot, loc) in db::positions_out_of_fefo_order(conn)? {
            report.mismatched_balances.push(format!(
                "lot {lot} at {loc}: its place in FEFO order is not its lot's"
            ));
        }
        let items: std::collections::BTreeSet<Uuid> =
            per_item.keys().chain(crossed.keys()).copied().collect();
        for item in items {
            let (stock, net_in) = (
                per_item.get(&item).copied().unwrap_or(0),
                crossed.get(&item).copied().unwrap_or(0),
            );
            if stock != net_in {
                report.unbalanced_items.push(format!(
                    "item {item}: {} in stock, {} came in net",
                    Quantity::from_scaled(stock),
                    Quantity::from_scaled(net_in)
                ));
            }
        }
        report.ok = report.mismatched_balances.is_empty()
            && report.unbalanced_items.is_empty()
            && report.negative_stock.is_empty()
            && report.misattributed_movements.is_empty();
        Ok(report)
    })
}

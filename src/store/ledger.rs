//! Ledger tables: documents and lines, lots, movements, balances, idempotency keys.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use super::schema::{
    audit_events, balances, document_lines, documents, donors, idempotency_keys, lots, movements,
    recipients, warehouses,
};
use super::{enum_str, parse_enum, parse_json, parse_ts, parse_uuid, to_json, ts, DbConn};
use crate::domain::decimal::{Money, Quantity, UnitValue};
use crate::domain::ledger::document::{DocType, Document, Line};
use crate::domain::ledger::location::{Location, LocationKind};
use crate::domain::ledger::lot::{unusable_reason, Lot};
use crate::domain::ledger::movement::Movement;
use crate::domain::ledger::plan::{Available, ValueBook};
use crate::error::{Error, Result};

/// Inserts rows: one multi-row INSERT on PostgreSQL (one round trip), one cached single-row
/// INSERT per row on SQLite, where a multi-row statement would be parsed afresh every time
/// (its text depends on the row count) and costs more than the rows themselves. diesel's
/// backend-neutral connection has no batch insert, so this dispatches to the concrete one.
macro_rules! batch_insert {
    ($conn:expr, $table:expr, $rows:expr) => {
        match $conn {
            DbConn::Sqlite(c) => $rows.iter().try_fold(0usize, |n, row| {
                diesel::insert_into($table)
                    .values(row)
                    .execute(c)
                    .map(|k| n + k)
            }),
            DbConn::Postgres(c) => diesel::insert_into($table).values($rows).execute(c),
        }
    };
}

/// A multi-row insert as a part of `OneStatement`. Up to four rows it inserts a
/// fixed-size array, whose statement diesel may prepare once and keep (it keeps none with a
/// `Vec` of rows, whose count could be anything): a posting's one statement then has as many
/// texts as it has shapes of rows, a few dozen, each parsed and planned once on a
/// connection instead of on every run (docs/performance-history.md).
macro_rules! cte_insert {
    ($table:expr, $rows:expr) => {{
        let rows = $rows;
        let part: PgPart = match rows.len() {
            1 => Box::new(
                diesel::insert_into($table).values(<&[_; 1]>::try_from(&rows[..]).unwrap()),
            ),
            2 => Box::new(
                diesel::insert_into($table).values(<&[_; 2]>::try_from(&rows[..]).unwrap()),
            ),
            3 => Box::new(
                diesel::insert_into($table).values(<&[_; 3]>::try_from(&rows[..]).unwrap()),
            ),
            4 => Box::new(
                diesel::insert_into($table).values(<&[_; 4]>::try_from(&rows[..]).unwrap()),
            ),
            _ => Box::new(diesel::insert_into($table).values(rows)),
        };
        part
    }};
}

fn opt_uuid(s: Option<&str>) -> Result<Option<Uuid>> {
    s.map(parse_uuid).transpose()
}

fn parse_date(s: &str) -> Result<NaiveDate> {
    s.parse()
        .map_err(|e| Error::Internal(format!("bad date '{s}' in database: {e}")))
}

fn opt_date(s: Option<&str>) -> Result<Option<NaiveDate>> {
    s.map(parse_date).transpose()
}

// ---------------------------------------------------------------- documents

#[derive(Queryable, Selectable, Insertable, AsChangeset, serde::Serialize)]
#[diesel(table_name = documents, treat_none_as_null = true, treat_none_as_default_value = false)]
struct DocRow {
    id: String,
    doc_type: String,
    status: String,
    warehouse_id: Option<String>,
    to_warehouse_id: Option<String>,
    donor_id: Option<String>,
    recipient_id: Option<String>,
    pledge_id: Option<String>,
    occurred_at: String,
    details: String,
    reverses_id: Option<String>,
    reversed_by_id: Option<String>,
    created_by: String,
    created_at: String,
    updated_at: String,
    version: i64,
}

#[derive(Queryable, Selectable, Insertable, serde::Serialize)]
#[diesel(table_name = document_lines, treat_none_as_default_value = false)]
struct LineRow {
    document_id: String,
    line_no: i32,
    item_id: String,
    lot_id: Option<String>,
    quantity_milli: i64,
    unit: String,
    unit_quantity: String,
    pledge_line_no: Option<i32>,
    declared_value_cents: Option<i64>,
    details: String,
}

impl From<&Document> for DocRow {
    fn from(d: &Document) -> Self {
        let s = |u: Option<Uuid>| u.map(|u| u.to_string());
        DocRow {
            id: d.id.to_string(),
            doc_type: d.doc_type.as_str().to_string(),
            status: enum_str(&d.status),
            warehouse_id: s(d.warehouse_id),
            to_warehouse_id: s(d.to_warehouse_id),
            donor_id: s(d.donor_id),
            recipient_id: s(d.recipient_id),
            pledge_id: s(d.pledge_id),
            occurred_at: ts(d.occurred_at),
            details: to_json(&d.details),
            reverses_id: s(d.reverses_id),
            reversed_by_id: s(d.reversed_by_id),
            created_by: d.created_by.to_string(),
            created_at: ts(d.created_at),
            updated_at: ts(d.updated_at),
            version: d.version,
        }
    }
}

fn line_row(doc: Uuid, l: &Line) -> LineRow {
    LineRow {
        document_id: doc.to_string(),
        line_no: l.line_no,
        item_id: l.item_id.to_string(),
        lot_id: l.lot_id.map(|u| u.to_string()),
        quantity_milli: l.quantity.to_scaled(),
        unit: l.unit.clone(),
        unit_quantity: l.unit_quantity.clone(),
        pledge_line_no: l.pledge_line_no,
        declared_value_cents: l.declared_value.map(Money::to_scaled),
        details: to_json(&l.details),
    }
}

fn document(r: DocRow, lines: Vec<LineRow>) -> Result<Document> {
    Ok(Document {
        id: parse_uuid(&r.id)?,
        doc_type: parse_enum(&r.doc_type)?,
        status: parse_enum(&r.status)?,
        warehouse_id: opt_uuid(r.warehouse_id.as_deref())?,
        to_warehouse_id: opt_uuid(r.to_warehouse_id.as_deref())?,
        donor_id: opt_uuid(r.donor_id.as_deref())?,
        recipient_id: opt_uuid(r.recipient_id.as_deref())?,
        pledge_id: opt_uuid(r.pledge_id.as_deref())?,
        occurred_at: parse_ts(&r.occurred_at)?,
        details: parse_json(&r.details)?,
        reverses_id: opt_uuid(r.reverses_id.as_deref())?,
        reversed_by_id: opt_uuid(r.reversed_by_id.as_deref())?,
        created_by: parse_uuid(&r.created_by)?,
        created_at: parse_ts(&r.created_at)?,
        updated_at: parse_ts(&r.updated_at)?,
        version: r.version,
        lines: lines
            .into_iter()
            .map(|l| {
                Ok(Line {
                    line_no: l.line_no,
                    item_id: parse_uuid(&l.item_id)?,
                    lot_id: opt_uuid(l.lot_id.as_deref())?,
                    quantity: Quantity::from_scaled(l.quantity_milli),
                    unit: l.unit,
                    unit_quantity: l.unit_quantity,
                    pledge_line_no: l.pledge_line_no,
                    declared_value: l.declared_value_cents.map(Money::from_scaled),
                    details: parse_json(&l.details)?,
                })
            })
            .collect::<Result<_>>()?,
    })
}

/// Writes a document's new state (status, details, links). Lines never change.
pub fn update_document(conn: &mut DbConn, d: &Document) -> Result<()> {
    super::batch::settle(conn)?;
    let row = DocRow::from(d);
    let n = on!(conn, |c| diesel::update(documents::table.find(&row.id))
        .set(&row)
        .execute(c))?;
    super::group::wrote(n);
    Ok(())
}

pub fn get_document(conn: &mut DbConn, id: Uuid) -> Result<Option<Document>> {
    super::batch::settle(conn)?;
    let id = id.to_string();
    let Some(row) = on!(conn, |c| documents::table
        .find(&id)
        .select(DocRow::as_select())
        .get_result::<DocRow>(c)
        .optional())?
    else {
        return Ok(None);
    };
    let lines: Vec<LineRow> = on!(conn, |c| document_lines::table
        .filter(document_lines::document_id.eq(&id))
        .select(LineRow::as_select())
        .order(document_lines::line_no.asc())
        .load(c))?;
    document(row, lines).map(Some)
}

#[derive(Debug, Default, Clone)]
pub struct DocFilter {
    pub doc_type: Option<DocType>,
    pub status: Option<String>,
    pub donor_id: Option<Uuid>,
    pub recipient_id: Option<Uuid>,
    pub pledge_id: Option<Uuid>,
    /// Documents at any of these warehouses (source or destination); `None` means all.
    pub warehouses: Option<Vec<Uuid>>,
    pub after: Option<Uuid>,
    pub limit: i64,
}

pub fn list_documents(conn: &mut DbConn, f: &DocFilter) -> Result<Vec<Document>> {
    let mut q = documents::table.select(DocRow::as_select()).into_boxed();
    if let Some(t) = f.doc_type {
        q = q.filter(documents::doc_type.eq(t.as_str()));
    }
    if let Some(s) = &f.status {
        q = q.filter(documents::status.eq(s.clone()));
    }
    if let Some(d) = f.donor_id {
        q = q.filter(documents::donor_id.eq(d.to_string()));
    }
    if let Some(r) = f.recipient_id {
        q = q.filter(documents::recipient_id.eq(r.to_string()));
    }
    if let Some(p) = f.pledge_id {
        q = q.filter(documents::pledge_id.eq(p.to_string()));
    }
    if let Some(ws) = &f.warehouses {
        let ids: Vec<String> = ws.iter().map(Uuid::to_string).collect();
        q = q.filter(
            documents::warehouse_id
                .eq_any(ids.clone())
                .or(documents::to_warehouse_id.eq_any(ids)),
        );
    }
    if let Some(a) = f.after {
        q = q.filter(documents::id.gt(a.to_string()));
    }
    let rows: Vec<DocRow> = q.order(documents::id.asc()).limit(f.limit).load(conn)?;
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let mut lines: HashMap<String, Vec<LineRow>> = HashMap::new();
    let all: Vec<LineRow> = document_lines::table
        .filter(document_lines::document_id.eq_any(ids))
        .select(LineRow::as_select())
        .order((
            document_lines::document_id.asc(),
            document_lines::line_no.asc(),
        ))
        .load(conn)?;
    for l in all {
        lines.entry(l.document_id.clone()).or_default().push(l);
    }
    rows.into_iter()
        .map(|r| {
            let ls = lines.remove(&r.id).unwrap_or_default();
            document(r, ls)
        })
        .collect()
}

/// What a receipt line gives against a pledge: the pledge, its line, the base quantity, and
/// whether the receipt is reversed or is itself a reversal (then it does not count).
#[diesel::dsl::auto_type]
fn received_cols() -> _ {
    (
        documents::pledge_id,
        document_lines::pledge_line_no,
        document_lines::quantity_milli,
        documents::reversed_by_id
            .is_not_null()
            .or(documents::reverses_id.is_not_null()),
    )
}

type ReceivedRow = (Option<String>, Option<i32>, i64, bool);

/// Sums receipt lines per pledge and line, leaving out reversed and reversing receipts.
/// That is done here rather than in SQL: SQLite's planner, given `reversed_by_id IS NULL`,
/// searched the unique index on that column (every document that stands) instead of the
/// pledge's few receipts.
fn add_received(rows: Vec<ReceivedRow>, to: &mut HashMap<Uuid, HashMap<i32, i64>>) -> Result<()> {
    for (pledge, line, q, reversed) in rows {
        if let (Some(p), Some(l), false) = (pledge, line, reversed) {
            *to.entry(parse_uuid(&p)?).or_default().entry(l).or_default() += q;
        }
    }
    Ok(())
}

fn as_quantities(lines: HashMap<i32, i64>) -> HashMap<i32, Quantity> {
    lines
        .into_iter()
        .map(|(l, q)| (l, Quantity::from_scaled(q)))
        .collect()
}

/// Base quantities received against each line of a pledge, by receipts that stand
/// (neither reversed nor reversals). One prepared statement: receipts against a pledge
/// run it.
pub fn pledge_received(conn: &mut DbConn, pledge: Uuid) -> Result<HashMap<i32, Quantity>> {
    super::batch::settle(conn)?;
    let key = pledge.to_string();
    let rows: Vec<ReceivedRow> = on!(conn, |c| document_lines::table
        .inner_join(documents::table)
        .filter(documents::pledge_id.eq(&key))
        .filter(documents::doc_type.eq(DocType::Receipt.as_str()))
        .select(received_cols())
        .load(c))?;
    let mut out = HashMap::new();
    add_received(rows, &mut out)?;
    Ok(as_quantities(out.remove(&pledge).unwrap_or_default()))
}

/// `pledge_received` for many pledges in one query, for the reports that list them all (on
/// PostgreSQL one query a pledge was a round trip a pledge). Pledges nothing was received
/// against are absent.
pub fn pledges_received(
    conn: &mut DbConn,
    pledges: &[Uuid],
) -> Result<HashMap<Uuid, HashMap<i32, Quantity>>> {
    super::batch::settle(conn)?;
    let mut out = HashMap::new();
    for chunk in pledges.chunks(500) {
        let ids: Vec<String> = chunk.iter().map(Uuid::to_string).collect();
        let rows: Vec<ReceivedRow> = document_lines::table
            .inner_join(documents::table)
            .filter(documents::pledge_id.eq_any(&ids))
            .filter(documents::doc_type.eq(DocType::Receipt.as_str()))
            .select(received_cols())
            .load(conn)?;
        add_received(rows, &mut out)?;
    }
    Ok(out
        .into_iter()
        .map(|(p, lines)| (p, as_quantities(lines)))
        .collect())
}

// ---------------------------------------------------------------- lots

#[derive(Queryable, Selectable, Insertable, AsChangeset, serde::Serialize)]
#[diesel(table_name = lots, treat_none_as_null = true, treat_none_as_default_value = false)]
struct LotRow {
    id: String,
    item_id: String,
    lot_number: Option<String>,
    expiry_date: Option<String>,
    manufactured_on: Option<String>,
    donor_id: String,
    pledge_id: Option<String>,
    pledge_line_no: Option<i32>,
    receipt_id: String,
    earmark: Option<String>,
    on_hold: bool,
    hold_reason: Option<String>,
    created_at: String,
    version: i64,
}

impl From<&Lot> for LotRow {
    fn from(l: &Lot) -> Self {
        LotRow {
            id: l.id.to_string(),
            item_id: l.item_id.to_string(),
            lot_number: l.lot_number.clone(),
            expiry_date: l.expiry_date.map(|d| d.to_string()),
            manufactured_on: l.manufactured_on.map(|d| d.to_string()),
            donor_id: l.donor_id.to_string(),
            pledge_id: l.pledge_id.map(|u| u.to_string()),
            pledge_line_no: l.pledge_line_no,
            receipt_id: l.receipt_id.to_string(),
            earmark: l.earmark.as_ref().map(to_json),
            on_hold: l.on_hold,
            hold_reason: l.hold_reason.clone(),
            created_at: ts(l.created_at),
            version: l.version,
        }
    }
}

impl TryFrom<LotRow> for Lot {
    type Error = Error;
    fn try_from(r: LotRow) -> Result<Self> {
        Ok(Lot {
            id: parse_uuid(&r.id)?,
            item_id: parse_uuid(&r.item_id)?,
            lot_number: r.lot_number,
            expiry_date: opt_date(r.expiry_date.as_deref())?,
            manufactured_on: opt_date(r.manufactured_on.as_deref())?,
            donor_id: parse_uuid(&r.donor_id)?,
            pledge_id: opt_uuid(r.pledge_id.as_deref())?,
            pledge_line_no: r.pledge_line_no,
            receipt_id: parse_uuid(&r.receipt_id)?,
            earmark: r.earmark.as_deref().map(parse_json).transpose()?,
            on_hold: r.on_hold,
            hold_reason: r.hold_reason,
            created_at: parse_ts(&r.created_at)?,
            version: r.version,
        })
    }
}

/// Writes a lot's hold. Only the hold can change once a lot exists: its expiry and creation
/// are copied into every balance row as its FEFO key (`change_balance`), so this writes no
/// other column.
pub fn update_lot_hold(conn: &mut DbConn, l: &Lot) -> Result<()> {
    super::batch::settle(conn)?;
    let n = on!(conn, |c| diesel::update(lots::table.find(l.id.to_string()))
        .set((
            lots::on_hold.eq(l.on_hold),
            lots::hold_reason.eq(l.hold_reason.as_deref()),
            lots::version.eq(l.version),
        ))
        .execute(c))?;
    super::group::wrote(n);
    super::group::lots_changing();
    Ok(())
}

pub fn get_lot(conn: &mut DbConn, id: Uuid) -> Result<Option<Lot>> {
    super::batch::settle(conn)?;
    let id = id.to_string();
    on!(conn, |c| lots::table
        .find(&id)
        .select(LotRow::as_select())
        .get_result::<LotRow>(c)
        .optional())?
    .map(Lot::try_from)
    .transpose()
}

/// A donor's lots (through the index on lots.donor_id).
pub fn lots_of_donor(conn: &mut DbConn, donor: Uuid) -> Result<Vec<Lot>> {
    let rows: Vec<LotRow> = lots::table
        .filter(lots::donor_id.eq(donor.to_string()))
        .select(LotRow::as_select())
        .load(conn)?;
    rows.into_iter().map(Lot::try_from).collect()
}

/// The movements of these lots with business time in [from, to), in journal order.
pub fn movements_of_lots(
    conn: &mut DbConn,
    lots_: &[Uuid],
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> Result<Vec<Movement>> {
    let mut out = vec![];
    for chunk in lots_.chunks(500) {
        let ids: Vec<String> = chunk.iter().map(Uuid::to_string).collect();
        let mut q = movements::table
            .filter(movements::lot_id.eq_any(ids))
            .into_boxed();
        if let Some(f) = from {
            q = q.filter(movements::occurred_at.ge(ts(f)));
        }
        if let Some(t) = to {
            q = q.filter(movements::occurred_at.lt(ts(t)));
        }
        let rows: Vec<MoveRow> = q.select(MoveRow::as_select()).load(conn)?;
        for r in rows {
            out.push(Movement::try_from(r)?);
        }
    }
    out.sort_by_key(|m| m.seq);
    Ok(out)
}

/// Current balances of these lots at stock-holding locations.
pub fn stock_of_lots(
    conn: &mut DbConn,
    lots_: &[Uuid],
) -> Result<Vec<(Uuid, Uuid, Location, Quantity)>> {
    let mut out = vec![];
    for chunk in lots_.chunks(500) {
        let ids: Vec<String> = chunk.iter().map(Uuid::to_string).collect();
        let rows: Vec<BalanceCols> = balances::table
            .filter(balances::lot_id.eq_any(ids))
            .select(BALANCE_COLS)
            .load(conn)?;
        for row in rows {
            out.push(balance(row)?);
        }
    }
    Ok(out)
}

/// A balance row as (lot, item, location, quantity).
type BalanceCols = (String, String, String, String, i64);
const BALANCE_COLS: (
    balances::lot_id,
    balances::item_id,
    balances::location_kind,
    balances::location_id,
    balances::quantity_milli,
) = (
    balances::lot_id,
    balances::item_id,
    balances::location_kind,
    balances::location_id,
    balances::quantity_milli,
);

fn balance((lot, item, k, id, q): BalanceCols) -> Result<(Uuid, Uuid, Location, Quantity)> {
    Ok((
        parse_uuid(&lot)?,
        parse_uuid(&item)?,
        location(&k, &id)?,
        Quantity::from_scaled(q),
    ))
}

/// Every lot's donor: reports attribute movements to donors through their lots.
pub fn lot_donors(conn: &mut DbConn) -> Result<HashMap<Uuid, Uuid>> {
    let rows: Vec<(String, String)> = lots::table.select((lots::id, lots::donor_id)).load(conn)?;
    rows.into_iter()
        .map(|(l, d)| Ok((parse_uuid(&l)?, parse_uuid(&d)?)))
        .collect()
}

/// The donors of the lots that moved in [from, to): what a report over a period needs to
/// attribute its movements to donors. Read through the period's movements
/// (`movements_time`), so it costs what the period holds, not every lot ever received.
/// Without a start the period is the whole history, and so are its lots (`lot_donors`).
pub fn lot_donors_moved_between(
    conn: &mut DbConn,
    from: Option<DateTime<Utc>>,
    to: DateTime<Utc>,
) -> Result<HashMap<Uuid, Uuid>> {
    let Some(from) = from else {
        return lot_donors(conn);
    };
    let moved = movements::table
        .select(movements::lot_id)
        .filter(movements::occurred_at.ge(ts(from)))
        .filter(movements::occurred_at.lt(ts(to)));
    let rows: Vec<(String, String)> = lots::table
        .filter(lots::id.eq_any(moved))
        .select((lots::id, lots::donor_id))
        .load(conn)?;
    rows.into_iter()
        .map(|(l, d)| Ok((parse_uuid(&l)?, parse_uuid(&d)?)))
        .collect()
}

/// The lots with these ids that exist, any number of them (read 500 at a time, as the
/// other lot lookups here: SQLite binds an `IN` list one parameter an id).
pub fn get_lots(conn: &mut DbConn, ids: &[Uuid]) -> Result<HashMap<Uuid, Lot>> {
    super::batch::settle(conn)?;
    let mut out = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let rows: Vec<LotRow> = lots::table
            .filter(lots::id.eq_any(chunk.iter().map(Uuid::to_string).collect::<Vec<_>>()))
            .select(LotRow::as_select())
            .load(conn)?;
        for r in rows {
            let l = Lot::try_from(r)?;
            out.insert(l.id, l);
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------- balances

/// The stock at a warehouse that an allocation may draw on, in the order `plan::allocate`
/// takes it (earliest expiry first, lots without expiry last, then oldest), read only as far
/// as it is needed: per item, lots are read until those certainly usable on `on` (not held,
/// not expired, not earmarked) cover what is wanted. Held, expired and earmarked lots met
/// on the way come too, for `allocate` to judge; lots named by a line always come. So a
/// shipment reads a few lots, however many the warehouse holds; when stock is short it
/// reads them all, which is what the refusal must report.
pub fn available_at(
    conn: &mut DbConn,
    warehouse: Uuid,
    wanted: &[(Uuid, Quantity)],
    named: &[Uuid],
    on: NaiveDate,
) -> Result<Vec<Available>> {
    let mut picked: Vec<Available> = vec![];
    for item in dedup(&wanted.iter().map(|(i, _)| *i).collect::<Vec<_>>()) {
        let need: i64 = wanted
            .iter()
            .filter(|(i, _)| *i == item)
            .map(|(_, q)| q.to_scaled())
            .sum();
        // Whether this row, certainly usable, brings what is so to the need.
        let mut sure = 0i64;
        let mut covers = |lot: &Lot, q: i64| {
            // Usable whoever the recipient is: the domain's rule, and no earmark at all.
            let usable = unusable_reason(lot, on, None).is_none() && lot.earmark.is_none();
            if usable {
                sure += q;
            }
            usable && sure >= need
        };
        let mut take = |lot: Lot, q: i64| {
            super::group::keep_position(lot.id, Location::warehouse(warehouse), Some(q));
            picked.push(Available {
                lot,
                quantity: Quantity::from_scaled(q),
            });
        };
        // First what the writer knows of this shelf, then pages read after its end.
        let mut after = String::new();
        if let Some((known, covered)) = super::group::shelf(warehouse, item, &mut covers) {
            #[cfg(debug_assertions)]
            check_shelf(conn, warehouse, item)?;
            for (lot, q, _) in known.rows {
                take(lot, q);
            }
            if covered || known.complete {
                continue;
            }
            after = known.upto;
        }
        let mut size = FEFO_PAGE;
        loop {
            let page = stock_page(conn, warehouse, item, &after, size)?;
            let full = page.len() as i64 == size;
            super::group::shelve(warehouse, item, &page, !full);
            // Past the first page the stock is unusual (expired, held, earmarked or short):
            // read on in bigger pages, so a refusal costs few round trips.
            size = FEFO_PAGE * 8;
            let mut covered = false;
            for (lot, q, key) in page {
                after = key;
                covered = covers(&lot, q);
                take(lot, q);
                if covered {
                    break;
                }
            }
            if covered || !full {
                break;
            }
        }
    }
    for lot in named {
        if picked.iter().any(|a| a.lot.id == *lot) {
            continue;
        }
        let at = balances_of(conn, &[(*lot, Location::warehouse(warehouse))])?;
        if let Some(q) = at.values().next().filter(|q| **q > Quantity::ZERO) {
            let found = get_lot(conn, *lot)?
                .ok_or_else(|| Error::Internal(format!("balance of unknown lot {lot}")))?;
            picked.push(Available {
                lot: found,
                quantity: *q,
            });
        }
    }
    Ok(picked)
}

/// Lots a shipment's stock read takes in its first page (see `available_at`).
const FEFO_PAGE: i64 = 8;

/// The next `size` positions of `item` in `warehouse` after FEFO key `after`, with their lots
/// and FEFO keys, in FEFO order (an index scan, migration 000007; the key is unique per place
/// and item). A page rather than the whole shelf: a shipment usually needs one or two lots of
/// the dozens a warehouse may hold, and reading them all was a fifth of PostgreSQL's
/// statement time (docs/performance-history.md).
fn stock_page(
    conn: &mut DbConn,
    warehouse: Uuid,
    item: Uuid,
    after: &str,
    size: i64,
) -> Result<Vec<(Lot, i64, String)>> {
    super::batch::settle(conn)?;
    let (place, item) = (warehouse.to_string(), item.to_string());
    let rows: Vec<(LotRow, i64, String)> = on!(conn, |c| balances::table
        .inner_join(lots::table)
        .filter(balances::location_kind.eq(LocationKind::Warehouse.as_str()))
        .filter(balances::location_id.eq(&place))
        .filter(balances::item_id.eq(&item))
        .filter(balances::fefo.gt(after))
        .select((
            LotRow::as_select(),
            balances::quantity_milli,
            balances::fefo
        ))
        .order(balances::fefo.asc())
        .limit(size)
        .load(c))?;
    rows.into_iter()
        .map(|(lot, q, key)| Ok((Lot::try_from(lot)?, q, key)))
        .collect()
}

/// Stock moved into (positive) or out of a warehouse: (warehouse, lot, thousandths, the lot's
/// FEFO key).
pub(super) type ShelfMove = (Uuid, Lot, i64, String);

/// Most movements of other writers a group catches up with (`moved_since`); past it the
/// writer reads its shelves again instead.
const CATCH_UP: i64 = 2_000;

/// What other writers (another node, another process) did to the warehouses' stock since
/// this writer's last commit, for a group that finds the audit chain's head moved
/// (`group::begin`): each movement numbered after `after_movement` that leaves or enters a
/// warehouse (deliveries from transit do not touch a shelf), in order, as (warehouse, lot, thousandths moved, FEFO key), negative when it
/// leaves. `None` when that is not the whole story: a lot changed (an audit event on a lot
/// after `after_event`; its hold is the one thing of a lot that changes), or there were more
/// than `CATCH_UP` movements. Every change of stock is a movement, numbered under the write
/// lock in commit order, so the movements after this writer's last are exactly the others'.
pub(super) fn moved_since(
    conn: &mut DbConn,
    after_event: i64,
    after_movement: i64,
) -> Result<Option<Vec<ShelfMove>>> {
    let lot_changed: Option<i64> = audit_events::table
        .filter(audit_events::seq.gt(after_event))
        .filter(audit_events::entity_type.eq("lot"))
        .select(audit_events::seq)
        .first(conn)
        .optional()?;
    if lot_changed.is_some() {
        return Ok(None);
    }
    type Row = (LotRow, String, String, String, String, i64);
    let warehouse = LocationKind::Warehouse.as_str();
    let rows: Vec<Row> = movements::table
        .inner_join(lots::table)
        .filter(movements::seq.gt(after_movement))
        .filter(
            movements::from_kind
                .eq(warehouse)
                .or(movements::to_kind.eq(warehouse)),
        )
        .select((
            LotRow::as_select(),
            movements::from_kind,
            movements::from_id,
            movements::to_kind,
            movements::to_id,
            movements::quantity_milli,
        ))
        .order(movements::seq.asc())
        .limit(CATCH_UP + 1)
        .load(conn)?;
    if rows.len() as i64 > CATCH_UP {
        return Ok(None);
    }
    let mut moved = vec![];
    for (row, from_kind, from_id, to_kind, to_id, q) in rows {
        let key = fefo_key(&row);
        let lot = Lot::try_from(row)?;
        if from_kind == warehouse {
            moved.push((parse_uuid(&from_id)?, lot.clone(), -q, key.clone()));
        }
        if to_kind == warehouse {
            moved.push((parse_uuid(&to_id)?, lot, q, key));
        }
    }
    Ok(Some(moved))
}

/// Debug builds (the tests) check what the writer knows of a shelf against the database
/// each time it is used: a posting that moved stock without telling its shelf fails them.
#[cfg(debug_assertions)]
fn check_shelf(conn: &mut DbConn, warehouse: Uuid, item: Uuid) -> Result<()> {
    let Some(known) = super::group::whole_shelf(warehouse, item) else {
        return Ok(());
    };
    let mut read = stock_page(conn, warehouse, item, "", i64::MAX)?;
    if !known.complete {
        read.retain(|(_, _, key)| *key <= known.upto);
    }
    if read != known.rows {
        return Err(Error::Internal(format!(
            "the writer's shelf of item {item} at {warehouse} is not the database's: \
             {:?} against {:?}",
            known.rows, read
        )));
    }
    Ok(())
}

fn dedup<T: Clone + PartialEq>(v: &[T]) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(v.len());
    for x in v {
        if !out.contains(x) {
            out.push(x.clone());
        }
    }
    out
}

/// The balance of each (lot, location) pair asked for; absent pairs are zero.
pub fn balances_of(
    conn: &mut DbConn,
    keys: &[(Uuid, Location)],
) -> Result<HashMap<(Uuid, Location), Quantity>> {
    let mut out = HashMap::new();
    // Point reads on the (lot, location) key, one cached statement for any number of keys.
    for (lot, loc) in dedup(keys) {
        let q = match super::group::position(lot, loc) {
            Some(known) => known,
            None => {
                super::batch::settle(conn)?;
                let (lot_id, place) = (lot.to_string(), loc.id.to_string());
                let q: Option<i64> = on!(conn, |c| balances::table
                    .filter(balances::lot_id.eq(&lot_id))
                    .filter(balances::location_kind.eq(loc.kind.as_str()))
                    .filter(balances::location_id.eq(&place))
                    .select(balances::quantity_milli)
                    .get_result(c)
                    .optional())?;
                super::group::keep_position(lot, loc, q);
                q
            }
        };
        if let Some(q) = q {
            out.insert((lot, loc), Quantity::from_scaled(q));
        }
    }
    Ok(out)
}

fn location(kind: &str, id: &str) -> Result<Location> {
    Ok(Location {
        kind: LocationKind::parse(kind)
            .ok_or_else(|| Error::Internal(format!("bad location kind '{kind}' in database")))?,
        id: parse_uuid(id)?,
    })
}

/// The trait impls of a statement written by hand as a struct of its binds: a static query id,
/// so that each connection prepares it once and keeps it (diesel caches neither an
/// `sql_query` nor an UPDATE), and SQL text for either backend (`push_bind_param` writes `?`
/// on SQLite and `$n` on PostgreSQL).
macro_rules! hand_written_statement {
    ($name:ident, |$this:ident, $out:ident| $walk:block) => {
        impl diesel::query_builder::QueryId for $name<'_> {
            type QueryId = $name<'static>;
            const HAS_STATIC_QUERY_ID: bool = true;
        }

        impl<DB> diesel::query_builder::QueryFragment<DB> for $name<'_>
        where
            DB: diesel::backend::Backend,
            str: diesel::serialize::ToSql<diesel::sql_types::Text, DB>,
            i64: diesel::serialize::ToSql<diesel::sql_types::BigInt, DB>,
        {
            fn walk_ast<'b>(
                &'b $this,
                mut $out: diesel::query_builder::AstPass<'_, 'b, DB>,
            ) -> QueryResult<()> {
                // Not every statement binds both kinds.
                #[allow(unused_imports)]
                use diesel::sql_types::{BigInt, Text};
                $walk
            }
        }
    };
}

/// A lot's place in FEFO order, over a row of `lots` (migration 000007): lots without an
/// expiry date last, then by expiry, creation and id. Every statement that writes or checks
/// a position's `fefo` uses this; `fefo_key` is the same in Rust.
pub(super) const LOT_FEFO_KEY: &str = "(CASE WHEN lots.expiry_date IS NULL THEN '1' \
                            ELSE '0' || lots.expiry_date END) || lots.created_at || lots.id";

/// Adds to a balance, creating it if new with its lot's place in FEFO order (`fefo`, see
/// migration 000007), which only the lot knows: hence INSERT … SELECT from the lot rather
/// than VALUES. Written by hand because diesel's DSL does not spell an upsert from a SELECT,
/// and as a statement type with a static query id rather than an `sql_query` (which diesel
/// never caches), so that each connection prepares it once: preparing it on every run was
/// 7.7% of the server's CPU under write load (docs/performance-history.md).
struct UpsertBalance<'a> {
    lot: &'a str,
    kind: &'a str,
    place: &'a str,
    item: &'a str,
    delta: i64,
}

hand_written_statement!(UpsertBalance, |self, out| {
    out.push_sql(
        "INSERT INTO balances \
         (lot_id, location_kind, location_id, item_id, quantity_milli, fefo) SELECT ",
    );
    out.push_bind_param::<Text, str>(self.lot)?;
    out.push_sql(", ");
    out.push_bind_param::<Text, str>(self.kind)?;
    out.push_sql(", ");
    out.push_bind_param::<Text, str>(self.place)?;
    out.push_sql(", ");
    out.push_bind_param::<Text, str>(self.item)?;
    out.push_sql(", ");
    out.push_bind_param::<BigInt, i64>(&self.delta)?;
    out.push_sql(", ");
    out.push_sql(LOT_FEFO_KEY);
    out.push_sql(" FROM lots WHERE id = ");
    out.push_bind_param::<Text, str>(self.lot)?;
    out.push_sql(
        " ON CONFLICT (lot_id, location_kind, location_id) \
         DO UPDATE SET quantity_milli = balances.quantity_milli + excluded.quantity_milli",
    );
    Ok(())
});

/// The positions a new document opens in its own transit (a shipment or transfer
/// dispatched as it is created) for lots that exist already: they cannot exist yet, so all
/// of them are one INSERT, each taking its lot's FEFO key from the lot as `UpsertBalance`
/// does, instead of one upsert per lot. On PostgreSQL it is a part of the posting's one
/// statement. A lot that does not exist leaves the key NULL, which the table refuses.
struct OpenTransit {
    document: String,
    /// Lot, item, quantity in thousandths.
    rows: Vec<(String, String, i64)>,
}

impl diesel::query_builder::QueryId for OpenTransit {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<DB> diesel::query_builder::QueryFragment<DB> for OpenTransit
where
    DB: diesel::backend::Backend,
    str: diesel::serialize::ToSql<diesel::sql_types::Text, DB>,
    i64: diesel::serialize::ToSql<diesel::sql_types::BigInt, DB>,
{
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, DB>,
    ) -> QueryResult<()> {
        use diesel::sql_types::{BigInt, Text};
        // Its text changes with the count of rows: kept prepared for the few counts a
        // shipment has, as `cte_insert!` does.
        if self.rows.len() > 4 {
            out.unsafe_to_cache_prepared();
        }
        out.push_sql(
            "INSERT INTO balances \
             (lot_id, location_kind, location_id, item_id, quantity_milli, fefo) VALUES ",
        );
        for (i, (lot, item, q)) in self.rows.iter().enumerate() {
            out.push_sql(if i == 0 { "(" } else { ", (" });
            out.push_bind_param::<Text, str>(lot)?;
            out.push_sql(", 'transit', ");
            out.push_bind_param::<Text, str>(&self.document)?;
            out.push_sql(", ");
            out.push_bind_param::<Text, str>(item)?;
            out.push_sql(", ");
            out.push_bind_param::<BigInt, i64>(q)?;
            out.push_sql(", (SELECT ");
            out.push_sql(LOT_FEFO_KEY);
            out.push_sql(" FROM lots WHERE id = ");
            out.push_bind_param::<Text, str>(lot)?;
            out.push_sql("))");
        }
        Ok(())
    }
}

/// One stock position, as the WHERE clause of a statement that changes it.
#[derive(Clone, Copy)]
struct Position<'a> {
    lot: &'a str,
    kind: &'a str,
    place: &'a str,
}

impl Position<'_> {
    fn push_where<'b, DB>(
        &'b self,
        out: &mut diesel::query_builder::AstPass<'_, 'b, DB>,
    ) -> QueryResult<()>
    where
        DB: diesel::backend::Backend,
        str: diesel::serialize::ToSql<diesel::sql_types::Text, DB>,
    {
        use diesel::sql_types::Text;
        out.push_sql(" WHERE lot_id = ");
        out.push_bind_param::<Text, str>(self.lot)?;
        out.push_sql(" AND location_kind = ");
        out.push_bind_param::<Text, str>(self.kind)?;
        out.push_sql(" AND location_id = ");
        out.push_bind_param::<Text, str>(self.place)
    }
}

/// Takes `take` from a position that holds more: the stock guard of a decrease, in the
/// UPDATE itself so that it holds whatever ran before. By hand for the same reason as
/// `UpsertBalance`: diesel never caches an UPDATE statement, and preparing this one on every
/// run was 2.6% of the writer's time (docs/performance-history.md).
struct TakeFromBalance<'a> {
    at: Position<'a>,
    take: i64,
}

hand_written_statement!(TakeFromBalance, |self, out| {
    out.push_sql("UPDATE balances SET quantity_milli = quantity_milli - ");
    out.push_bind_param::<BigInt, i64>(&self.take)?;
    self.at.push_where(&mut out)?;
    out.push_sql(" AND quantity_milli > ");
    out.push_bind_param::<BigInt, i64>(&self.take)?;
    Ok(())
});

/// Takes a position's whole quantity, `take`, by deleting it: a position at zero is no
/// position (migration 000011), and the CHECK on `balances` refuses a row at zero.
struct EmptyBalance<'a> {
    at: Position<'a>,
    take: i64,
}

hand_written_statement!(EmptyBalance, |self, out| {
    out.push_sql("DELETE FROM balances");
    self.at.push_where(&mut out)?;
    out.push_sql(" AND quantity_milli = ");
    out.push_bind_param::<BigInt, i64>(&self.take)?;
    Ok(())
});

/// What a write hears when a position holds less than it takes (in thousandths).
fn short_of(lot: Uuid, at: Location, take: i64) -> Error {
    Error::Conflict {
        field: None,
        detail: format!(
            "lot {lot} has less than {} at {at}",
            Quantity::from_scaled(take)
        ),
    }
}

/// Moves the stock position a movement changes on one side. Only stock-holding places
/// (warehouses, transits) have positions: what left a donor or reached a recipient is the
/// sum of their movements, which the reports read. A decrease takes from a position that
/// holds more, or empties one that holds exactly as much, and fails otherwise: the stock
/// guard is in the statements themselves, so it holds whatever ran before. An increase is
/// one upsert, since it often creates the position (a new lot, a document's transit).
fn change_balance(conn: &mut DbConn, m: &Movement, loc: Location, delta: i64) -> Result<()> {
    if !loc.holds_stock() {
        return Ok(());
    }
    let known = super::group::position(m.lot_id, loc);
    super::group::position_changing(m.lot_id, loc);
    let (lot, place) = (m.lot_id.to_string(), loc.id.to_string());
    if delta < 0 {
        let take = -delta;
        let at = Position {
            lot: &lot,
            kind: loc.kind.as_str(),
            place: &place,
        };
        // Trying first the statement that will not match is a statement for nothing: a
        // shipment often empties a lot (FEFO), which the position its allocation read
        // shows, and a delivery empties its shipment's transit. Either way both guards are
        // tried before the write is refused.
        let empties = match known {
            Some(Some(q)) => q == take,
            _ => loc.kind == LocationKind::Transit,
        };
        for empty in [empties, !empties] {
            let n = if empty {
                on!(conn, |c| c
                    .execute_returning_count(&EmptyBalance { at, take }))?
            } else {
                on!(conn, |c| c
                    .execute_returning_count(&TakeFromBalance { at, take }))?
            };
            if n == 1 {
                super::group::wrote(n);
                return Ok(());
            }
        }
        return Err(short_of(m.lot_id, loc, take));
    }
    let item = m.item_id.to_string();
    let upsert = UpsertBalance {
        lot: &lot,
        kind: loc.kind.as_str(),
        place: &place,
        item: &item,
        delta,
    };
    let n = on!(conn, |c| c.execute_returning_count(&upsert))?;
    super::group::wrote(n);
    if n != 1 {
        return Err(Error::Internal(format!("a movement of unknown lot {lot}")));
    }
    Ok(())
}

// ---------------------------------------------------------------- movements

#[derive(Queryable, Selectable, Insertable, serde::Serialize)]
#[diesel(table_name = movements, treat_none_as_default_value = false)]
struct MoveRow {
    seq: i64,
    document_id: String,
    document_type: String,
    line_no: i32,
    item_id: String,
    lot_id: String,
    quantity_milli: i64,
    from_kind: String,
    from_id: String,
    to_kind: String,
    to_id: String,
    unit_value_e4: i64,
    value_cents: i64,
    value_id: Option<String>,
    occurred_at: String,
    recorded_at: String,
    recorded_by: String,
    reverses_seq: Option<i64>,
}

impl TryFrom<MoveRow> for Movement {
    type Error = Error;
    fn try_from(r: MoveRow) -> Result<Self> {
        Ok(Movement {
            seq: r.seq,
            document_id: parse_uuid(&r.document_id)?,
            document_type: parse_enum(&r.document_type)?,
            line_no: r.line_no,
            item_id: parse_uuid(&r.item_id)?,
            lot_id: parse_uuid(&r.lot_id)?,
            quantity: Quantity::from_scaled(r.quantity_milli),
            from: location(&r.from_kind, &r.from_id)?,
            to: location(&r.to_kind, &r.to_id)?,
            unit_value: UnitValue::from_scaled(r.unit_value_e4),
            value: Money::from_scaled(r.value_cents),
            value_id: opt_uuid(r.value_id.as_deref())?,
            occurred_at: parse_ts(&r.occurred_at)?,
            recorded_at: parse_ts(&r.recorded_at)?,
            recorded_by: parse_uuid(&r.recorded_by)?,
            reverses_seq: r.reverses_seq,
        })
    }
}

/// Numbers movements after the last one. Runs inside `Db::write`, whose lock makes
/// `max(seq) + 1` safe; `post` writes them.
pub fn number_movements(conn: &mut DbConn, ms: &mut [Movement]) -> Result<()> {
    // A posting without movements (a pledge, a draft) reads nothing.
    if ms.is_empty() {
        return Ok(());
    }
    let mut seq = last_seq(conn)?;
    for m in ms.iter_mut() {
        seq += 1;
        m.seq = seq;
    }
    Ok(())
}

impl From<&Movement> for MoveRow {
    fn from(m: &Movement) -> Self {
        MoveRow {
            seq: m.seq,
            document_id: m.document_id.to_string(),
            document_type: m.document_type.as_str().to_string(),
            line_no: m.line_no,
            item_id: m.item_id.to_string(),
            lot_id: m.lot_id.to_string(),
            quantity_milli: m.quantity.to_scaled(),
            from_kind: m.from.kind.as_str().to_string(),
            from_id: m.from.id.to_string(),
            to_kind: m.to.kind.as_str().to_string(),
            to_id: m.to.id.to_string(),
            unit_value_e4: m.unit_value.to_scaled(),
            value_cents: m.value.to_scaled(),
            value_id: m.value_id.map(|u| u.to_string()),
            occurred_at: ts(m.occurred_at),
            recorded_at: ts(m.recorded_at),
            recorded_by: m.recorded_by.to_string(),
            reverses_seq: m.reverses_seq,
        }
    }
}

/// What a posting writes beside its stock positions: the new document with its lines (none
/// when the document exists and was updated), new lots, the movements (numbered by
/// `number_movements`) and the audit event that covers them.
pub struct Posting<'a> {
    pub new_document: Option<&'a Document>,
    pub lots: &'a [Lot],
    pub movements: &'a [Movement],
    pub event: crate::domain::audit::NewEvent,
}

/// A stock position that a posting creates for a lot that is new with it (a receipt's lots
/// in its warehouse): it cannot exist yet, so it is inserted with the posting's other rows
/// (on PostgreSQL in their one statement) instead of by one upsert a line afterwards, a
/// round trip each.
// Every column bound, never DEFAULT: a statement whose text could change with the values is
// one diesel does not keep prepared.
#[derive(Insertable, serde::Serialize)]
#[diesel(table_name = balances, treat_none_as_default_value = false)]
struct NewPosition {
    lot_id: String,
    location_kind: String,
    location_id: String,
    item_id: String,
    quantity_milli: i64,
    fefo: String,
}

/// A lot's place in FEFO order, as `LOT_FEFO_KEY` writes it in SQL. The integrity check holds
/// the two to each other (`positions_out_of_fefo_order`).
fn fefo_key(lot: &LotRow) -> String {
    match &lot.expiry_date {
        None => format!("1{}{}", lot.created_at, lot.id),
        Some(e) => format!("0{e}{}{}", lot.created_at, lot.id),
    }
}

/// The positions `movements` create for `new_lots` (summed per position), and whether each
/// movement's increase is among them.
fn new_positions(
    movements: &[Movement],
    new_lots: &[Lot],
    rows: &[LotRow],
) -> (Vec<NewPosition>, Vec<bool>) {
    let mut created: Vec<NewPosition> = vec![];
    let mut covered = Vec::with_capacity(movements.len());
    for m in movements {
        let lot = new_lots.iter().position(|l| l.id == m.lot_id);
        let Some(row) = lot.map(|i| &rows[i]).filter(|_| m.to.holds_stock()) else {
            covered.push(false);
            continue;
        };
        covered.push(true);
        let (kind, place) = (m.to.kind.as_str(), m.to.id.to_string());
        let q = m.quantity.to_scaled();
        match created
            .iter_mut()
            .find(|n| n.lot_id == row.id && n.location_kind == kind && n.location_id == place)
        {
            Some(n) => n.quantity_milli += q,
            None => created.push(NewPosition {
                lot_id: row.id.clone(),
                location_kind: kind.to_string(),
                location_id: place,
                item_id: row.item_id.clone(),
                quantity_milli: q,
                fefo: fefo_key(row),
            }),
        }
    }
    (created, covered)
}

/// The positions `movements` open in the transit of `document`, new with the posting, for
/// lots not new with it (those are `new_positions`), summed per lot; marks the movements
/// whose increase they cover.
fn open_transit(
    document: Option<Uuid>,
    movements: &[Movement],
    covered: &mut [bool],
) -> Option<OpenTransit> {
    let doc = document?;
    let mut rows: Vec<(String, String, i64)> = vec![];
    for (m, covered) in movements.iter().zip(covered.iter_mut()) {
        if *covered || m.to != Location::transit(doc) {
            continue;
        }
        *covered = true;
        let (lot, q) = (m.lot_id.to_string(), m.quantity.to_scaled());
        match rows.iter_mut().find(|r| r.0 == lot) {
            Some(r) => r.2 += q,
            None => rows.push((lot, m.item_id.to_string(), q)),
        }
    }
    (!rows.is_empty()).then(|| OpenTransit {
        document: doc.to_string(),
        rows,
    })
}

/// The stock `movements` take from stock-holding places, summed per position (lot, place),
/// in the order first met, to be taken all at once before any increase: `None` if one of
/// them adds to a position that one of them takes from (a reversal of a delivered shipment
/// puts stock back into its transit and takes it out again), which must go in the
/// movements' order. PostgreSQL cannot change one row twice in one statement, so a posting
/// that takes from a position twice (two lines of one lot) takes the sum once; the guard
/// holds as well, since both takes succeed together exactly when the position holds
/// their sum.
fn takes(movements: &[Movement]) -> Option<Vec<(Uuid, Location, i64)>> {
    let adds_to_a_take = movements.iter().any(|m| {
        m.from.holds_stock()
            && movements
                .iter()
                .any(|other| other.lot_id == m.lot_id && other.to == m.from)
    });
    if adds_to_a_take {
        return None;
    }
    let mut out: Vec<(Uuid, Location, i64)> = vec![];
    for m in movements.iter().filter(|m| m.from.holds_stock()) {
        let q = m.quantity.to_scaled();
        match out.iter_mut().find(|t| t.0 == m.lot_id && t.1 == m.from) {
            Some(t) => t.2 += q,
            None => out.push((m.lot_id, m.from, q)),
        }
    }
    Some(out)
}

/// Most rows of one table in one statement: PostgreSQL allows 65 535 bind parameters, and
/// a posting's one statement with this many lots (14 each), lines (10), movements (18),
/// positions opened (6, or 5 in a transit) and positions taken from (9; neither ever more
/// than the movements) binds at most 28 500.
const ROWS_PER_STATEMENT: usize = 500;

/// Writes a posting and moves the stock positions its movements change (the guard that
/// refuses an overdraft is in the statements that take stock). On PostgreSQL the inserts
/// and the takes go as one statement (`WITH new_doc AS (INSERT …), …, take_0 AS (UPDATE
/// …), empty_0 AS (DELETE …), new_event AS (INSERT …) SELECT …`): one round trip instead
/// of one per table and one per position taken from, in a write whose time is its round
/// trips (docs/performance-history.md); only increases of positions that exist already follow it.
/// PostgreSQL checks the foreign keys at the end of that statement, so its parts may refer
/// to one another. SQLite runs them one by one, each a cached prepared statement, as does
/// PostgreSQL for a posting with more rows than `ROWS_PER_STATEMENT`. A PostgreSQL posting
/// that needs no statement after it is usually not sent at all but kept, and goes with its
/// group's other postings in one statement (`store::batch`).
pub fn post(conn: &mut DbConn, p: Posting<'_>) -> Result<crate::domain::audit::AuditEvent> {
    let doc = p.new_document.map(DocRow::from);
    let lines: Vec<LineRow> = p
        .new_document
        .map(|d| d.lines.iter().map(|l| line_row(d.id, l)).collect())
        .unwrap_or_default();
    let lots: Vec<LotRow> = p.lots.iter().map(LotRow::from).collect();
    let moves: Vec<MoveRow> = p.movements.iter().map(MoveRow::from).collect();
    let (created, mut inserted) = new_positions(p.movements, p.lots, &lots);
    let transit = open_transit(p.new_document.map(|d| d.id), p.movements, &mut inserted);
    let event = super::audit::sealed(conn, p.event)?;
    let in_one_statement = matches!(conn, DbConn::Postgres(_))
        && lines.len().max(lots.len()).max(moves.len()) <= ROWS_PER_STATEMENT;
    let taken = takes(p.movements).filter(|_| in_one_statement);
    // Kept to go with the group's other postings in one statement (`store::batch`), when
    // nothing of it needs a statement of its own: every increase opens a position.
    let opens_all = p
        .movements
        .iter()
        .zip(&inserted)
        .all(|(m, i)| *i || !m.to.holds_stock());
    if let Some(taken) = taken
        .as_ref()
        .filter(|_| opens_all && super::batch::keeping())
    {
        fn json<T: serde::Serialize>(row: &T) -> String {
            serde_json::to_string(row).expect("rows serialize")
        }
        let kept = super::batch::Kept {
            rows: [
                doc.iter().map(json).collect(),
                lots.iter().map(json).collect(),
                lines.iter().map(json).collect(),
                moves.iter().map(json).collect(),
                created.iter().map(json).collect(),
                vec![json(&event)],
            ],
            transit: transit
                .iter()
                .flat_map(|t| {
                    t.rows
                        .iter()
                        .map(|(lot, item, q)| (lot.clone(), t.document.clone(), item.clone(), *q))
                })
                .collect(),
            takes: taken.clone(),
            creates: p.lots.iter().map(|l| l.id).collect(),
            opens: p
                .movements
                .iter()
                .zip(&inserted)
                .filter(|(_, i)| **i)
                .map(|(m, _)| (m.lot_id, m.to))
                .collect(),
        };
        if super::batch::may_keep(&kept) {
            for (lot, at, _) in taken {
                super::group::position_changing(*lot, *at);
            }
            super::batch::keep(kept);
            return Ok(posted(p.movements, p.lots, &lots, event));
        }
    }
    super::batch::settle(conn)?;
    match conn {
        DbConn::Postgres(c) if in_one_statement => {
            let taken = taken.as_deref().unwrap_or_default();
            let keys: Vec<(String, String)> = taken
                .iter()
                .map(|(lot, at, _)| (lot.to_string(), at.id.to_string()))
                .collect();
            let mut ctes: Vec<(String, PgPart)> = vec![];
            if let Some(d) = &doc {
                ctes.push((
                    "new_doc".into(),
                    Box::new(diesel::insert_into(documents::table).values(d)),
                ));
            }
            if !lots.is_empty() {
                ctes.push(("new_lots".into(), cte_insert!(lots::table, &lots)));
            }
            if !lines.is_empty() {
                ctes.push((
                    "new_lines".into(),
                    cte_insert!(document_lines::table, &lines),
                ));
            }
            if !moves.is_empty() {
                ctes.push(("new_moves".into(), cte_insert!(movements::table, &moves)));
            }
            if !created.is_empty() {
                ctes.push((
                    "new_positions".into(),
                    cte_insert!(balances::table, &created),
                ));
            }
            if let Some(t) = &transit {
                ctes.push(("new_transit".into(), Box::new(t)));
            }
            // The decreases: for each position two guarded parts, of which at most one
            // matches (it holds more than the take, or exactly as much). The statement says
            // which positions matched neither; its other parts write regardless, and the
            // writer, finding rows written by a write that failed, starts its group over
            // without it (`store::left_clean`).
            for (i, (&(lot, place, take), (lot_id, place_id))) in
                taken.iter().zip(&keys).enumerate()
            {
                super::group::position_changing(lot, place);
                let (take_part, empty_part) =
                    guarded_take(lot_id, place.kind.as_str(), place_id, take);
                ctes.push((format!("take_{i}"), take_part));
                ctes.push((format!("empty_{i}"), empty_part));
            }
            ctes.push((
                "new_event".into(),
                Box::new(diesel::insert_into(audit_events::table).values(&event)),
            ));
            let statement = OneStatement {
                ctes,
                takes: taken.len(),
            };
            let matched: Vec<i64> = statement.get_result(c)?;
            if let Some(i) = matched.iter().position(|&n| n != 1) {
                let (lot, at, take) = taken[i];
                return Err(short_of(lot, at, take));
            }
            // Each part inserts all its rows or fails the statement, and each take matched
            // one row: what this wrote, for the writer to check a failure against.
            super::group::wrote(
                usize::from(doc.is_some())
                    + lots.len()
                    + lines.len()
                    + moves.len()
                    + created.len()
                    + transit.as_ref().map_or(0, |t| t.rows.len())
                    + taken.len()
                    + 1,
            );
        }
        _ => {
            use super::group::wrote;
            if let Some(d) = &doc {
                wrote(on!(conn, |c| diesel::insert_into(documents::table)
                    .values(d)
                    .execute(c))?);
            }
            for chunk in lots.chunks(ROWS_PER_STATEMENT) {
                wrote(batch_insert!(conn, lots::table, chunk)?);
            }
            for chunk in lines.chunks(ROWS_PER_STATEMENT) {
                wrote(batch_insert!(conn, document_lines::table, chunk)?);
            }
            for chunk in moves.chunks(ROWS_PER_STATEMENT) {
                wrote(batch_insert!(conn, movements::table, chunk)?);
            }
            for chunk in created.chunks(ROWS_PER_STATEMENT) {
                wrote(batch_insert!(conn, balances::table, chunk)?);
            }
            if let Some(t) = &transit {
                wrote(on!(conn, |c| c.execute_returning_count(t))?);
            }
            wrote(on!(conn, |c| diesel::insert_into(audit_events::table)
                .values(&event)
                .execute(c))?);
        }
    }
    for (m, inserted) in p.movements.iter().zip(inserted) {
        let q = m.quantity.to_scaled();
        if taken.is_none() {
            change_balance(conn, m, m.from, -q)?;
        }
        if !inserted {
            change_balance(conn, m, m.to, q)?;
        }
    }
    Ok(posted(p.movements, p.lots, &lots, event))
}

/// A posting is written (or kept to be, `store::batch`): what the writer remembers moves
/// with it.
fn posted(
    movements: &[Movement],
    new_lots: &[Lot],
    rows: &[LotRow],
    event: super::audit::Row,
) -> crate::domain::audit::AuditEvent {
    for m in movements {
        let q = m.quantity.to_scaled();
        if m.from.kind == LocationKind::Warehouse {
            super::group::shelf_moved(m.from.id, m.item_id, m.lot_id, -q, None);
        }
        if m.to.kind == LocationKind::Warehouse {
            let new = new_lots.iter().zip(rows).find(|(l, _)| l.id == m.lot_id);
            let new = new.map(|(l, row)| (l, fefo_key(row)));
            super::group::shelf_moved(m.to.id, m.item_id, m.lot_id, q, new);
        }
    }
    if let Some(last) = movements.last() {
        super::group::set_last_movement(last.seq);
    }
    super::audit::appended(event)
}

/// Statements that PostgreSQL runs as one, in one round trip and one snapshot: each a
/// data-modifying `WITH name AS (…)`, then a SELECT of what each of the first `takes`
/// positions' guarded parts (`take_i`, `empty_i`, see `post`) changed: 1 if either matched.
/// Prepared and kept when every part is (see `cte_insert!`); the statement cache keys it
/// by its text.
struct OneStatement<'a> {
    ctes: Vec<(String, PgPart<'a>)>,
    takes: usize,
}

impl diesel::query_builder::Query for OneStatement<'_> {
    type SqlType = diesel::sql_types::Array<diesel::sql_types::BigInt>;
}

impl RunQueryDsl<diesel::PgConnection> for OneStatement<'_> {}

impl diesel::query_builder::QueryId for OneStatement<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for OneStatement<'_> {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        for (i, (name, part)) in self.ctes.iter().enumerate() {
            out.push_sql(if i == 0 { "WITH " } else { ", " });
            out.push_sql(name);
            out.push_sql(" AS (");
            part.walk_ast(out.reborrow())?;
            out.push_sql(") ");
        }
        out.push_sql("SELECT ARRAY[");
        for i in 0..self.takes {
            if i > 0 {
                out.push_sql(", ");
            }
            out.push_sql(&format!(
                "(SELECT count(*) FROM take_{i}) + (SELECT count(*) FROM empty_{i})"
            ));
        }
        out.push_sql("]::bigint[]");
        Ok(())
    }
}

/// A data-modifying statement as a part of `OneStatement` whose rows another part counts.
struct Returning1<T>(T);

impl<T: diesel::query_builder::QueryFragment<diesel::pg::Pg>>
    diesel::query_builder::QueryFragment<diesel::pg::Pg> for Returning1<T>
{
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        self.0.walk_ast(out.reborrow())?;
        out.push_sql(" RETURNING 1");
        Ok(())
    }
}

pub(super) type PgPart<'a> = Box<dyn diesel::query_builder::QueryFragment<diesel::pg::Pg> + 'a>;

/// The two guarded parts that take `take` from one position in a statement of parts
/// (`OneStatement`, `store::batch`): `TakeFromBalance` and `EmptyBalance`, each returning
/// a row if it matched; at most one does, and neither when the position holds less.
pub(super) fn guarded_take<'a>(
    lot: &'a str,
    kind: &'a str,
    place: &'a str,
    take: i64,
) -> (PgPart<'a>, PgPart<'a>) {
    let at = Position { lot, kind, place };
    (
        Box::new(Returning1(TakeFromBalance { at, take })),
        Box::new(Returning1(EmptyBalance { at, take })),
    )
}

/// How many movements there are, and the last one's number.
pub fn movement_stats(conn: &mut DbConn) -> Result<(i64, i64)> {
    let count: i64 = movements::table.count().get_result(conn)?;
    Ok((count, last_seq(conn)?))
}

/// The last movement's number (0 for none). `max()` rather than ORDER BY … LIMIT: SQLite
/// re-prepares a statement whose LIMIT is a bound parameter on every run.
fn last_seq(conn: &mut DbConn) -> Result<i64> {
    if let Some(known) = super::group::last_movement() {
        return Ok(known);
    }
    let last: Option<i64> = on!(conn, |c| movements::table
        .select(diesel::dsl::max(movements::seq))
        .get_result(c))?;
    Ok(last.unwrap_or(0))
}

pub fn document_movements(conn: &mut DbConn, doc: Uuid) -> Result<Vec<Movement>> {
    super::batch::settle(conn)?;
    let doc = doc.to_string();
    let rows: Vec<MoveRow> = on!(conn, |c| movements::table
        .filter(movements::document_id.eq(&doc))
        .select(MoveRow::as_select())
        .order(movements::seq.asc())
        .load(c))?;
    rows.into_iter().map(Movement::try_from).collect()
}

#[derive(Debug, Default, Clone)]
pub struct MoveFilter {
    pub item_id: Option<Uuid>,
    pub lot_id: Option<Uuid>,
    /// Movements into or out of this location id (warehouse, donor, recipient, document).
    pub location_id: Option<Uuid>,
    /// Movements touching any of these warehouses; `None` means all.
    pub warehouses: Option<Vec<Uuid>>,
    pub document_id: Option<Uuid>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub after_seq: Option<i64>,
    pub limit: i64,
}

/// The conditions of the journal's partial indexes by place, as their migration wrote them:
/// SQLite uses a partial index only for a query that repeats its condition.
const PARTY_FROM: &str = "movements.from_kind IN ('recipient', 'transit')";
const PARTY_TO: &str = "movements.to_kind IN ('recipient', 'transit')";

/// What an id in the journal's place filter names, which decides how its movements are read.
enum Place {
    Warehouse,
    Donor,
    /// A recipient, or a document (its transit).
    Party,
}

/// Recipients first: the recipient statement asks for one each time, so on PostgreSQL it
/// costs one round trip, not four.
fn place_of(conn: &mut DbConn, id: &str) -> Result<Option<Place>> {
    use diesel::dsl::{exists, select};
    if select(exists(recipients::table.find(id))).get_result(conn)? {
        return Ok(Some(Place::Party));
    }
    if select(exists(warehouses::table.find(id))).get_result(conn)? {
        return Ok(Some(Place::Warehouse));
    }
    if select(exists(donors::table.find(id))).get_result(conn)? {
        return Ok(Some(Place::Donor));
    }
    let transit: bool = select(exists(documents::table.find(id))).get_result(conn)?;
    Ok(transit.then_some(Place::Party))
}

pub fn list_movements(conn: &mut DbConn, f: &MoveFilter) -> Result<Vec<Movement>> {
    let mut q = movements::table.select(MoveRow::as_select()).into_boxed();
    if let Some(v) = f.item_id {
        q = q.filter(movements::item_id.eq(v.to_string()));
    }
    if let Some(v) = f.lot_id {
        q = q.filter(movements::lot_id.eq(v.to_string()));
    }
    if let Some(v) = f.location_id {
        let id = v.to_string();
        let either_side = movements::from_id
            .eq(id.clone())
            .or(movements::to_id.eq(id.clone()));
        q = match place_of(conn, &id)? {
            // The partial indexes on each side (migration 000013), named by their condition.
            Some(Place::Party) => q.filter(
                diesel::dsl::sql::<diesel::sql_types::Bool>(PARTY_FROM)
                    .and(movements::from_id.eq(id.clone()))
                    .or(diesel::dsl::sql::<diesel::sql_types::Bool>(PARTY_TO)
                        .and(movements::to_id.eq(id.clone()))),
            ),
            // Only a donor's own lots come from (or go back to) them.
            Some(Place::Donor) => q.filter(
                movements::lot_id
                    .eq_any(
                        lots::table
                            .filter(lots::donor_id.eq(id.clone()))
                            .select(lots::id),
                    )
                    .and(either_side),
            ),
            // A large share of the journal: read in its order, through the primary key.
            Some(Place::Warehouse) => q.filter(either_side),
            None => return Ok(vec![]),
        };
    }
    if let Some(ws) = &f.warehouses {
        let ids: Vec<String> = ws.iter().map(Uuid::to_string).collect();
        let wh = LocationKind::Warehouse.as_str();
        q = q.filter(
            movements::from_kind
                .eq(wh)
                .and(movements::from_id.eq_any(ids.clone()))
                .or(movements::to_kind.eq(wh).and(movements::to_id.eq_any(ids))),
        );
    }
    if let Some(v) = f.document_id {
        q = q.filter(movements::document_id.eq(v.to_string()));
    }
    if let Some(v) = f.from {
        q = q.filter(movements::occurred_at.ge(ts(v)));
    }
    if let Some(v) = f.to {
        q = q.filter(movements::occurred_at.lt(ts(v)));
    }
    if let Some(v) = f.after_seq {
        q = q.filter(movements::seq.gt(v));
    }
    let rows: Vec<MoveRow> = q.order(movements::seq.asc()).limit(f.limit).load(conn)?;
    rows.into_iter().map(Movement::try_from).collect()
}

/// Every movement in journal order, a page at a time, to `visit` (reports, integrity checks).
pub fn each_movement(conn: &mut DbConn, visit: impl FnMut(Movement) -> Result<()>) -> Result<()> {
    each_movement_between(conn, None, None, visit)
}

/// The movements with business time in [from, to), a page at a time, in business-time
/// order. Pages are keyed on (occurred_at, seq), which the `movements_time` index serves
/// in order: no sort, and memory stays flat however long the journal is.
pub fn each_movement_between(
    conn: &mut DbConn,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    mut visit: impl FnMut(Movement) -> Result<()>,
) -> Result<()> {
    const PAGE: i64 = 5000;
    let mut after: Option<(String, i64)> = None;
    loop {
        let mut q = movements::table.into_boxed();
        match &after {
            Some((at, seq)) => {
                q = q.filter(movements::occurred_at.ge(at.clone())).filter(
                    movements::occurred_at
                        .gt(at.clone())
                        .or(movements::seq.gt(*seq)),
                );
            }
            None => {
                if let Some(f) = from {
                    q = q.filter(movements::occurred_at.ge(ts(f)));
                }
            }
        }
        if let Some(t) = to {
            q = q.filter(movements::occurred_at.lt(ts(t)));
        }
        let rows: Vec<MoveRow> = q
            .select(MoveRow::as_select())
            .order((movements::occurred_at.asc(), movements::seq.asc()))
            .limit(PAGE)
            .load(conn)?;
        let n = rows.len() as i64;
        for r in rows {
            after = Some((r.occurred_at.clone(), r.seq));
            visit(Movement::try_from(r)?)?;
        }
        if n < PAGE {
            return Ok(());
        }
    }
}

/// One stock position, with what is shown of its lot.
#[derive(Debug, Clone)]
pub struct BalanceRow {
    pub lot_id: Uuid,
    pub item_id: Uuid,
    pub lot_number: Option<String>,
    pub expiry_date: Option<NaiveDate>,
    pub donor_id: Uuid,
    pub on_hold: bool,
    pub location: Location,
    pub quantity: Quantity,
}

/// Stock's order: by place (warehouses, the first kind, before goods in transit), item and
/// lot. One rule for every list of positions, whatever shape its rows have.
pub fn stock_order(location: Location, item: Uuid, lot: Uuid) -> (Location, Uuid, Uuid) {
    (location, item, lot)
}

impl BalanceRow {
    /// `stock_order` of this position.
    pub fn order(&self) -> (Location, Uuid, Uuid) {
        stock_order(self.location, self.item_id, self.lot_id)
    }

    pub fn of(lot: &Lot, location: Location, quantity: Quantity) -> Self {
        BalanceRow {
            lot_id: lot.id,
            item_id: lot.item_id,
            lot_number: lot.lot_number.clone(),
            expiry_date: lot.expiry_date,
            donor_id: lot.donor_id,
            on_hold: lot.on_hold,
            location,
            quantity,
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct StockFilter {
    pub warehouses: Option<Vec<Uuid>>,
    pub item_id: Option<Uuid>,
    pub lot_id: Option<Uuid>,
}

/// The filters of a `StockFilter` on a boxed query over `balances`, alone or joined.
macro_rules! filter_stock {
    ($q:expr, $f:expr) => {{
        let (mut q, f): (_, &StockFilter) = ($q, $f);
        if let Some(ws) = &f.warehouses {
            q = q
                .filter(balances::location_kind.eq(LocationKind::Warehouse.as_str()))
                .filter(
                    balances::location_id
                        .eq_any(ws.iter().map(Uuid::to_string).collect::<Vec<_>>()),
                );
        }
        if let Some(i) = f.item_id {
            q = q.filter(balances::item_id.eq(i.to_string()));
        }
        if let Some(l) = f.lot_id {
            q = q.filter(balances::lot_id.eq(l.to_string()));
        }
        q
    }};
}

/// Current stock on hand (warehouse and transit balances above zero), in no set order: each
/// caller sorts once, in its own order (`BalanceRow::order` for stock's).
///
/// Every row of `balances` is stock (migration 000011), so with no filter the positions are
/// the whole table, read in key order: a filter on the kind, or an `ORDER BY` of the
/// answer's, made SQLite walk `balances_in_stock` and look each row up by key
/// (docs/performance.md, "Query plans").
///
/// On SQLite each position's lot comes in the same statement, looked up by key as the
/// table is scanned. On PostgreSQL the positions are read first and their lots after, by
/// key: in a join its planner would hash the whole `lots` table (every lot ever received)
/// once `balances` is small and compact, 41 ms against 14 ms for the positions' own lots on
/// the benchmark's 1M ledger.
pub fn stock(conn: &mut DbConn, f: &StockFilter) -> Result<Vec<BalanceRow>> {
    super::batch::settle(conn)?;
    match conn {
        DbConn::Sqlite(_) => {
            let q = balances::table
                .inner_join(lots::table)
                .select((
                    balances::location_kind,
                    balances::location_id,
                    balances::quantity_milli,
                    lots::id,
                    lots::item_id,
                    lots::lot_number,
                    lots::expiry_date,
                    lots::donor_id,
                    lots::on_hold,
                ))
                // The key's order: SQLite then scans the table rather than the index.
                .order((
                    balances::lot_id,
                    balances::location_kind,
                    balances::location_id,
                ))
                .into_boxed();
            type Row = (
                String,
                String,
                i64,
                String,
                String,
                Option<String>,
                Option<String>,
                String,
                bool,
            );
            let rows: Vec<Row> = filter_stock!(q, f).load(conn)?;
            rows.into_iter()
                .map(|(k, id, qm, lot, item, number, expiry, donor, on_hold)| {
                    Ok(BalanceRow {
                        lot_id: parse_uuid(&lot)?,
                        item_id: parse_uuid(&item)?,
                        lot_number: number,
                        expiry_date: opt_date(expiry.as_deref())?,
                        donor_id: parse_uuid(&donor)?,
                        on_hold,
                        location: location(&k, &id)?,
                        quantity: Quantity::from_scaled(qm),
                    })
                })
                .collect()
        }
        DbConn::Postgres(_) => stock_then_lots(conn, f),
    }
}

/// `stock`'s positions, then their lots by key.
fn stock_then_lots(conn: &mut DbConn, f: &StockFilter) -> Result<Vec<BalanceRow>> {
    let q = balances::table
        .select((
            balances::lot_id,
            balances::location_kind,
            balances::location_id,
            balances::quantity_milli,
        ))
        .into_boxed();
    let rows: Vec<(String, String, String, i64)> = filter_stock!(q, f).load(conn)?;
    let positions = rows
        .into_iter()
        .map(|(lot, k, id, qm)| Ok((parse_uuid(&lot)?, location(&k, &id)?, qm)))
        .collect::<Result<Vec<_>>>()?;
    let mut ids: Vec<Uuid> = positions.iter().map(|(lot, _, _)| *lot).collect();
    ids.sort_unstable();
    ids.dedup();
    let lots = get_lots(conn, &ids)?;
    positions
        .into_iter()
        .map(|(lot, location, qm)| {
            // A position's lot is a foreign key: one missing means a broken store.
            let lot = lots.get(&lot).ok_or_else(|| {
                Error::Internal(format!("a stock position of an unknown lot {lot}"))
            })?;
            Ok(BalanceRow::of(lot, location, Quantity::from_scaled(qm)))
        })
        .collect()
}

/// Every stock position as (lot, item, quantity), a page at a time in key order, to
/// `visit`: for reports that sum stock by something of the lot's, without holding every
/// position (123 359 on the benchmark's 1M ledger after its write rounds) or its lot.
pub fn each_stock_position(
    conn: &mut DbConn,
    mut visit: impl FnMut(Uuid, Uuid, Quantity) -> Result<()>,
) -> Result<()> {
    use diesel::sql_types::{Bool, Text};
    // Debug builds (the tests) read two at a time, so that every test crosses pages.
    const PAGE: i64 = if cfg!(debug_assertions) { 2 } else { 5000 };
    let mut after: Option<(String, String, String)> = None;
    loop {
        // Not filtered on the kind in SQL (every row is stock since migration 000011): with
        // that filter SQLite reads the in-stock index and sorts every position for each page.
        let mut q = balances::table
            .select((
                balances::lot_id,
                balances::location_kind,
                balances::location_id,
                balances::item_id,
                balances::quantity_milli,
            ))
            .order((
                balances::lot_id,
                balances::location_kind,
                balances::location_id,
            ))
            .limit(PAGE)
            .into_boxed();
        if let Some((lot, kind, id)) = after.take() {
            // A row-value comparison: the primary key serves it on both backends.
            q = q.filter(
                diesel::dsl::sql::<Bool>(
                    "(balances.lot_id, balances.location_kind, balances.location_id) > (",
                )
                .bind::<Text, _>(lot)
                .sql(", ")
                .bind::<Text, _>(kind)
                .sql(", ")
                .bind::<Text, _>(id)
                .sql(")"),
            );
        }
        let rows: Vec<(String, String, String, String, i64)> = q.load(conn)?;
        let n = rows.len() as i64;
        for (lot, kind, id, item, qm) in rows {
            if location(&kind, &id)?.holds_stock() {
                visit(
                    parse_uuid(&lot)?,
                    parse_uuid(&item)?,
                    Quantity::from_scaled(qm),
                )?;
            }
            after = Some((lot, kind, id));
        }
        if n < PAGE {
            return Ok(());
        }
    }
}

/// Each lot's donor, by key, for lots a report meets that it has not read yet.
pub fn donors_of_lots(conn: &mut DbConn, ids: &[Uuid]) -> Result<HashMap<Uuid, Uuid>> {
    let mut out = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let rows: Vec<(String, String)> = lots::table
            .filter(lots::id.eq_any(chunk.iter().map(Uuid::to_string).collect::<Vec<_>>()))
            .select((lots::id, lots::donor_id))
            .load(conn)?;
        for (id, donor) in rows {
            out.insert(parse_uuid(&id)?, parse_uuid(&donor)?);
        }
    }
    Ok(out)
}

/// Every balance row, for the integrity check.
pub fn all_balances(conn: &mut DbConn) -> Result<Vec<(Uuid, Uuid, Location, Quantity)>> {
    let rows: Vec<BalanceCols> = balances::table.select(BALANCE_COLS).load(conn)?;
    rows.into_iter().map(balance).collect()
}

/// Positions whose place in FEFO order (`balances.fefo`) is not their lot's, for the
/// integrity check: allocation would hand them out of turn. Catches a key that `fefo_key`
/// wrote differently from `LOT_FEFO_KEY`.
pub fn positions_out_of_fefo_order(conn: &mut DbConn) -> Result<Vec<(Uuid, Location)>> {
    let rows: Vec<(String, String, String)> = balances::table
        .inner_join(lots::table)
        .filter(diesel::dsl::sql::<diesel::sql_types::Bool>(&format!(
            "balances.fefo <> {LOT_FEFO_KEY}"
        )))
        .select((
            balances::lot_id,
            balances::location_kind,
            balances::location_id,
        ))
        .load(conn)?;
    rows.into_iter()
        .map(|(lot, kind, id)| Ok((parse_uuid(&lot)?, location(&kind, &id)?)))
        .collect()
}

// ---------------------------------------------------------------- values

/// The value in effect on `on` for each item, by the domain's rule
/// (`catalog::value_in_effect`) over the item's history. The writer keeps the histories
/// while master data is unchanged (`store::group`); anything it lacks is read at once
/// (`master::value_histories`).
pub fn values_on(conn: &mut DbConn, items: &[Uuid], on: NaiveDate) -> Result<ValueBook> {
    use crate::domain::catalog::value_in_effect;
    let mut book = ValueBook::default();
    let mut missing = vec![];
    for item in dedup(items) {
        let kept =
            super::group::master(|m| m.values.get(&item).map(|h| value_in_effect(h, on).cloned()));
        match kept.flatten() {
            Some(found) => book.0.extend(found.map(|v| (item, v))),
            None => missing.push(item),
        }
    }
    for (item, history) in super::master::value_histories(conn, &missing)? {
        book.0
            .extend(value_in_effect(&history, on).map(|v| (item, v.clone())));
        super::group::master(|m| super::group::keep(&mut m.values, item, history));
    }
    Ok(book)
}

// ---------------------------------------------------------------- idempotency

/// A stored response to replay.
#[derive(Debug, Clone)]
pub struct StoredResponse {
    pub request_hash: String,
    pub status: u16,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

pub fn find_idempotent(conn: &mut DbConn, user: Uuid, key: &str) -> Result<Option<StoredResponse>> {
    super::batch::settle(conn)?;
    let user = user.to_string();
    let row: Option<(String, i32, String, String)> = on!(conn, |c| idempotency_keys::table
        .find((&user, key))
        .select((
            idempotency_keys::request_hash,
            idempotency_keys::response_status,
            idempotency_keys::response_body,
            idempotency_keys::created_at,
        ))
        .get_result(c)
        .optional())?;
    row.map(|(h, s, b, c)| {
        Ok(StoredResponse {
            request_hash: h,
            status: s as u16,
            body: b,
            created_at: parse_ts(&c)?,
        })
    })
    .transpose()
}

pub fn save_idempotent(conn: &mut DbConn, user: Uuid, key: &str, r: &StoredResponse) -> Result<()> {
    super::batch::settle(conn)?;
    let gone = diesel::delete(idempotency_keys::table.find((user.to_string(), key.to_string())))
        .execute(conn)?;
    super::group::wrote(gone);
    let n = diesel::insert_into(idempotency_keys::table)
        .values((
            idempotency_keys::user_id.eq(user.to_string()),
            idempotency_keys::idem_key.eq(key.to_string()),
            idempotency_keys::request_hash.eq(r.request_hash.clone()),
            idempotency_keys::response_status.eq(r.status as i32),
            idempotency_keys::response_body.eq(r.body.clone()),
            idempotency_keys::created_at.eq(ts(r.created_at)),
        ))
        .execute(conn)?;
    super::group::wrote(n);
    Ok(())
}

/// Forgets keys older than `before`.
pub fn purge_idempotent(conn: &mut DbConn, before: DateTime<Utc>) -> Result<usize> {
    let n =
        diesel::delete(idempotency_keys::table.filter(idempotency_keys::created_at.lt(ts(before))))
            .execute(conn)?;
    super::group::wrote(n);
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mv(lot: Uuid, from: Location, to: Location, milli: i64) -> Movement {
        crate::domain::ledger::movement::sample(lot, from, to, Quantity::from_scaled(milli))
    }

    fn lot(id: Uuid, expiry: Option<&str>) -> Lot {
        crate::domain::ledger::lot::sample(id, Uuid::nil(), expiry)
    }

    #[test]
    fn a_posting_opens_one_position_per_new_lot_and_place_and_leaves_the_rest() {
        let (new, old) = (Uuid::now_v7(), Uuid::now_v7());
        let (donor, wh) = (
            Location::donor(Uuid::now_v7()),
            Location::warehouse(Uuid::now_v7()),
        );
        let new_lots = [lot(new, Some("2027-03-01"))];
        let rows: Vec<LotRow> = new_lots.iter().map(LotRow::from).collect();
        let moves = [
            mv(new, donor, wh, 1_000),
            mv(new, donor, wh, 500),
            mv(old, donor, wh, 7),
        ];
        let (created, covered) = new_positions(&moves, &new_lots, &rows);
        assert_eq!(covered, [true, true, false]);
        assert_eq!(created.len(), 1);
        assert_eq!(created[0].quantity_milli, 1_500);
        assert_eq!(created[0].location_id, wh.id.to_string());
        assert!(
            created[0].fefo.starts_with("02027-03-01"),
            "{}",
            created[0].fefo
        );
        assert!(created[0].fefo.ends_with(&new.to_string()));
        let no_expiry = LotRow::from(&lot(new, None));
        assert!(
            fefo_key(&no_expiry).starts_with('1'),
            "undated lots go last"
        );
    }

    #[test]
    fn a_new_document_opens_its_own_transit_once_per_lot() {
        let (doc, other) = (Uuid::now_v7(), Uuid::now_v7());
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let wh = Location::warehouse(Uuid::now_v7());
        let moves = [
            mv(a, wh, Location::transit(doc), 2_000),
            mv(b, wh, Location::transit(doc), 1_000),
            mv(a, wh, Location::transit(doc), 250),
            mv(a, wh, Location::transit(other), 9),
        ];
        let mut covered = vec![false; moves.len()];
        let t = open_transit(Some(doc), &moves, &mut covered).unwrap();
        assert_eq!(covered, [true, true, true, false]);
        assert_eq!(t.document, doc.to_string());
        assert_eq!(
            t.rows,
            [
                (a.to_string(), Uuid::nil().to_string(), 2_250),
                (b.to_string(), Uuid::nil().to_string(), 1_000),
            ]
        );
        let mut none = vec![false; moves.len()];
        assert!(
            open_transit(None, &moves, &mut none).is_none(),
            "an existing document's transit may exist"
        );
    }

    #[test]
    fn a_posting_takes_once_from_each_position_the_sum_of_its_takes() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let (wh, other, donor, rcp) = (
            Location::warehouse(Uuid::now_v7()),
            Location::warehouse(Uuid::now_v7()),
            Location::donor(Uuid::now_v7()),
            Location::recipient(Uuid::now_v7()),
        );
        let moves = [
            mv(a, wh, rcp, 30_000),
            mv(b, wh, rcp, 5_000),
            mv(a, wh, rcp, 20_000),
            mv(a, other, rcp, 1_000),
            mv(b, donor, other, 7_000),
        ];
        assert_eq!(
            takes(&moves),
            Some(vec![(a, wh, 50_000), (b, wh, 5_000), (a, other, 1_000)]),
            "summed per lot and place, in the order first met; nothing from a donor"
        );
        let transit = Location::transit(Uuid::now_v7());
        let put_back_and_taken_again = [mv(a, rcp, transit, 1_000), mv(a, transit, wh, 1_000)];
        assert_eq!(takes(&put_back_and_taken_again), None);
        let another_lot = [mv(b, rcp, transit, 1_000), mv(a, transit, wh, 1_000)];
        assert!(takes(&another_lot).is_some());
        assert_eq!(
            takes(&[mv(a, wh, wh, 1_000)]),
            None,
            "from and to one place"
        );
    }
}

//! Ledger writes: pledges, receipts, shipments, transfers, adjustments, stock counts,
//! lot holds and reversals.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    alloc_error, apply, base_quantity, created_view, load_items, money, new_document, view,
    DocumentView,
};
use crate::domain::access::Action;
use crate::domain::catalog::Item;
use crate::domain::decimal::Quantity;
use crate::domain::ledger::document::*;
use crate::domain::ledger::location::Location;
use crate::domain::ledger::lot::Lot;
use crate::domain::ledger::movement::{reversal_of, Movement};
use crate::domain::ledger::plan::{
    allocate, business_time, movement, pledge_status, split_delivery, Stamp, Want,
};
use crate::domain::parties::Recipient;
use crate::domain::validation::{opt_text, text, FieldErrors};
use crate::error::{Error, Result};
use crate::service::Ctx;
use crate::store::{ledger as db, master, Db, DbConn};

/// At most this many lines in one document.
pub const MAX_LINES: usize = 200;

fn stamp(ctx: &Ctx) -> Stamp {
    Stamp {
        now: ctx.now,
        by: ctx.actor.user_id,
    }
}

fn when(ctx: &Ctx, field: &str, requested: Option<DateTime<Utc>>) -> Result<DateTime<Utc>> {
    business_time(requested, ctx.now).map_err(|m| Error::field(field, m))
}

fn posting_at(ctx: &Ctx, warehouse: Uuid) -> Result<()> {
    ctx.actor.require(Action::PostStock)?;
    Ok(ctx.actor.require_warehouse(warehouse)?)
}

fn lines_count(e: &mut FieldErrors, n: usize, allow_empty: bool) {
    if n == 0 && !allow_empty {
        e.add("lines", "must have at least one line");
    } else if n > MAX_LINES {
        e.add("lines", format!("must have at most {MAX_LINES} lines"));
    }
}

fn active_warehouse(conn: &mut DbConn, field: &str, id: Uuid, e: &mut FieldErrors) -> Result<()> {
    match master::get_warehouse(conn, id)? {
        None => e.add(field, format!("warehouse {id} does not exist")),
        Some(w) if w.meta.archived_at.is_some() => {
            e.add(field, format!("warehouse {id} is archived"))
        }
        Some(_) => {}
    }
    Ok(())
}

fn active_recipient(
    conn: &mut DbConn,
    field: &str,
    id: Uuid,
    e: &mut FieldErrors,
) -> Result<Option<Recipient>> {
    Ok(match master::get_recipient(conn, id)? {
        None => {
            e.add(field, format!("recipient {id} does not exist"));
            None
        }
        Some(r) if r.meta.archived_at.is_some() => {
            e.add(field, format!("recipient {id} is archived"));
            None
        }
        Some(r) => Some(r),
    })
}

fn active_donor(conn: &mut DbConn, field: &str, id: Uuid, e: &mut FieldErrors) -> Result<()> {
    match master::get_donor(conn, id)? {
        None => e.add(field, format!("donor {id} does not exist")),
        Some(d) if d.meta.archived_at.is_some() => e.add(field, format!("donor {id} is archived")),
        Some(_) => {}
    }
    Ok(())
}

/// Loads a document of the expected type, or 404.
fn load(conn: &mut DbConn, doc_type: DocType, id: Uuid) -> Result<Document> {
    db::get_document(conn, id)?
        .filter(|d| d.doc_type == doc_type)
        .ok_or_else(|| Error::not_found(doc_type.as_str(), id))
}

fn expect_status(doc: &Document, allowed: &[DocStatus], doing: &str) -> Result<()> {
    if let Some(by) = doc.reversed_by_id {
        return Err(Error::conflict(
            "status",
            format!(
                "cannot {doing} {} {}: it was reversed by {by}",
                doc.doc_type.as_str(),
                doc.id
            ),
        ));
    }
    if allowed.contains(&doc.status) {
        Ok(())
    } else {
        Err(Error::conflict(
            "status",
            format!(
                "cannot {doing} {} {}: it is {:?}",
                doc.doc_type.as_str(),
                doc.id,
                doc.status
            )
            .to_lowercase(),
        ))
    }
}

fn next_version(doc: &Document, ctx: &Ctx) -> Document {
    Document {
        version: doc.version + 1,
        updated_at: ctx.now,
        ..doc.clone()
    }
}

fn today(ctx: &Ctx) -> chrono::NaiveDate {
    ctx.now.date_naive()
}

// ---------------------------------------------------------------- pledges

pub async fn create_pledge(dbh: &Db, ctx: &Ctx, input: PledgeInput) -> Result<DocumentView> {
    ctx.actor.require(Action::ManagePledges)?;
    ctx.write(dbh, move |ctx, conn| {
        let mut e = FieldErrors::new();
        active_donor(conn, "donor_id", input.donor_id, &mut e)?;
        lines_count(&mut e, input.lines.len(), false);
        let note = opt_text(&mut e, "note", input.note.as_deref(), 500);
        if let Some(m) = &input.earmark {
            m.validate("earmark", &mut e);
            for (i, r) in m.recipient_ids.iter().enumerate() {
                active_recipient(conn, &format!("earmark.recipient_ids[{i}]"), *r, &mut e)?;
            }
        }
        let ids: Vec<(String, Uuid)> = input
            .lines
            .iter()
            .enumerate()
            .map(|(i, l)| (format!("lines[{i}].item_id"), l.item_id))
            .collect();
        let items = load_items(conn, &ids, &mut e)?;
        let mut lines = vec![];
        for (i, l) in input.lines.iter().enumerate() {
            let f = format!("lines[{i}]");
            let declared = money(
                &format!("{f}.declared_value"),
                l.declared_value.as_deref(),
                &mut e,
            );
            let Some(item) = items.get(&l.item_id) else {
                continue;
            };
            if let Some((q, unit, entered)) =
                base_quantity(item, &f, &l.quantity, l.unit.as_deref(), false, &mut e)
            {
                lines.push(Line {
                    line_no: i as i32 + 1,
                    item_id: l.item_id,
                    lot_id: None,
                    quantity: q,
                    unit,
                    unit_quantity: entered,
                    pledge_line_no: None,
                    declared_value: declared,
                    details: Default::default(),
                });
            }
        }
        e.finish(|| ())?;
        let mut doc = new_document(DocType::Pledge, DocStatus::Open, ctx, ctx.now);
        doc.donor_id = Some(input.donor_id);
        doc.details = Details {
            note,
            expected_date: input.expected_date,
            earmark: input.earmark.clone(),
            ..Default::default()
        };
        doc.lines = lines;
        apply(conn, ctx, "pledge.create", &doc, None, &[], &mut [])?;
        view(conn, doc, today(ctx))
    })
    .await
}

pub async fn cancel_pledge(
    dbh: &Db,
    ctx: &Ctx,
    id: Uuid,
    input: StepInput,
) -> Result<DocumentView> {
    ctx.actor.require(Action::ManagePledges)?;
    ctx.write(dbh, move |ctx, conn| {
        let doc = load(conn, DocType::Pledge, id)?;
        expect_status(
            &doc,
            &[DocStatus::Open, DocStatus::PartiallyReceived],
            "cancel",
        )?;
        let mut e = FieldErrors::new();
        let why = opt_text(&mut e, "reason", input.reason.as_deref(), 500);
        e.finish(|| ())?;
        let mut next = next_version(&doc, ctx);
        next.status = DocStatus::Cancelled;
        next.details.cancelled_at = Some(ctx.now);
        next.details.why = why;
        apply(conn, ctx, "pledge.cancel", &next, Some(&doc), &[], &mut [])?;
        view(conn, next, today(ctx))
    })
    .await
}

/// Re-derives a pledge's status after receipts against it changed, and records a change.
fn refresh_pledge(conn: &mut DbConn, ctx: &Ctx, pledge_id: Uuid) -> Result<()> {
    let pledge = load(conn, DocType::Pledge, pledge_id)?;
    let received = db::pledge_received(conn, pledge_id)?;
    let pledged: Vec<(i32, Quantity)> = pledge
        .lines
        .iter()
        .map(|l| (l.line_no, l.quantity))
        .collect();
    let status = pledge_status(&pledged, &received, pledge.status == DocStatus::Cancelled);
    if status != pledge.status {
        let mut next = next_version(&pledge, ctx);
        next.status = status;
        apply(
            conn,
            ctx,
            "pledge.progress",
            &next,
            Some(&pledge),
            &[],
            &mut [],
        )?;
    }
    Ok(())
}

// ---------------------------------------------------------------- receipts

pub async fn post_receipt(dbh: &Db, ctx: &Ctx, input: ReceiptInput) -> Result<DocumentView> {
    posting_at(ctx, input.warehouse_id)?;
    let at = when(ctx, "occurred_at", input.occurred_at)?;
    ctx.write(dbh, move |ctx, conn| {
        let mut e = FieldErrors::new();
        active_warehouse(conn, "warehouse_id", input.warehouse_id, &mut e)?;
        active_donor(conn, "donor_id", input.donor_id, &mut e)?;
        lines_count(&mut e, input.lines.len(), false);
        let note = opt_text(&mut e, "note", input.note.as_deref(), 500);
        let pledge = match input.pledge_id {
            None => None,
            Some(p) => match db::get_document(conn, p)?.filter(|d| d.doc_type == DocType::Pledge) {
                None => {
                    e.add("pledge_id", format!("pledge {p} does not exist"));
                    None
                }
                Some(d) if d.donor_id != Some(input.donor_id) => {
                    e.add("pledge_id", "the pledge is another donor's");
                    None
                }
                Some(d) => Some(d),
            },
        };
        let ids: Vec<(String, Uuid)> =
            input.lines.iter().enumerate().map(|(i, l)| (format!("lines[{i}].item_id"), l.item_id)).collect();
        let items = load_items(conn, &ids, &mut e)?;
        let mut planned: Vec<(usize, &Item, Quantity, String, String)> = vec![];
        for (i, l) in input.lines.iter().enumerate() {
            let f = format!("lines[{i}]");
            money(&format!("{f}.declared_value"), l.declared_value.as_deref(), &mut e);
            opt_text(&mut e, &format!("{f}.lot_number"), l.lot_number.as_deref(), 64);
            let Some(item) = items.get(&l.item_id) else { continue };
            if item.tracks_lots && l.lot_number.as_deref().is_none_or(|n| n.trim().is_empty()) {
                e.add(format!("{f}.lot_number"), format!("item {} tracks lots: give the lot number", item.code));
            }
            if item.tracks_expiry && l.expiry_date.is_none() {
                e.add(format!("{f}.expiry_date"), format!("item {} tracks expiry: give the expiry date", item.code));
            }
            if let (Some(m), Some(x)) = (l.manufactured_on, l.expiry_date) {
                if m > x {
                    e.add(format!("{f}.expiry_date"), "is before the manufacture date");
                }
            }
            match (l.pledge_line_no, &pledge) {
                (Some(_), None) if input.pledge_id.is_none() => {
                    e.add(format!("{f}.pledge_line_no"), "needs pledge_id on the receipt")
                }
                (Some(n), Some(p)) => match p.lines.iter().find(|pl| pl.line_no == n) {
                    None => e.add(format!("{f}.pledge_line_no"), format!("the pledge has no line {n}")),
                    Some(pl) if pl.item_id != l.item_id => {
                        e.add(format!("{f}.pledge_line_no"), format!("pledge line {n} is for another item"))
                    }
                    Some(_) => {}
                },
                _ => {}
            }
            if let Some((q, unit, entered)) = base_quantity(item, &f, &l.quantity, l.unit.as_deref(), false, &mut e) {
                planned.push((i, item, q, unit, entered));
            }
        }
        e.finish(|| ())?;

        // Against a pledge: it must be open, and no pledge line may be over-received. The
        // excess of a generous donor is welcome on a line of its own, without pledge_line_no.
        if let Some(p) = &pledge {
            if matches!(p.status, DocStatus::Cancelled | DocStatus::Fulfilled) {
                return Err(Error::conflict("pledge_id", format!("the pledge is {:?}", p.status).to_lowercase()));
            }
            let mut got = db::pledge_received(conn, p.id)?;
            for (i, _, q, _, _) in &planned {
                let Some(n) = input.lines[*i].pledge_line_no else { continue };
                let pledged = p.lines.iter().find(|pl| pl.line_no == n).expect("checked").quantity;
                let total = got.get(&n).copied().unwrap_or(Quantity::ZERO).checked_add(*q).expect("bounded");
                if total > pledged {
                    let before = got.get(&n).copied().unwrap_or(Quantity::ZERO);
                    let outstanding = pledged.checked_sub(before).unwrap_or(Quantity::ZERO);
                    return Err(Error::conflict(
                        &format!("lines[{i}].quantity"),
                        format!(
                            "pledge line {n} has {outstanding} outstanding; receiving {q} would exceed it by {}. \
                             Receive the excess on a line without pledge_line_no.",
                            total.checked_sub(pledged).expect("total > pledged")
                        ),
                    ));
                }
                got.insert(n, total);
            }
        }

        let mut doc = new_document(DocType::Receipt, DocStatus::Posted, ctx, at);
        doc.warehouse_id = Some(input.warehouse_id);
        doc.donor_id = Some(input.donor_id);
        doc.pledge_id = input.pledge_id;
        doc.details.note = note;
        let values = db::values_on(conn, &items.keys().copied().collect::<Vec<_>>(), at.date_naive())?;
        let mut lots = vec![];
        let mut movements = vec![];
        for (i, item, q, unit, entered) in planned {
            let l = &input.lines[i];
            let line_no = i as i32 + 1;
            let lot = Lot {
                id: Uuid::now_v7(),
                item_id: item.meta.id,
                lot_number: l.lot_number.as_deref().map(str::trim).filter(|n| !n.is_empty()).map(str::to_string),
                expiry_date: l.expiry_date,
                manufactured_on: l.manufactured_on,
                donor_id: input.donor_id,
                pledge_id: l.pledge_line_no.and(input.pledge_id),
                pledge_line_no: l.pledge_line_no,
                receipt_id: doc.id,
                earmark: l.pledge_line_no.and(pledge.as_ref()).and_then(|p| p.details.earmark.clone()),
                on_hold: false,
                hold_reason: None,
                created_at: ctx.now,
                version: 1,
            };
            doc.lines.push(Line {
                line_no,
                item_id: item.meta.id,
                lot_id: Some(lot.id),
                quantity: q,
                unit,
                unit_quantity: entered,
                pledge_line_no: l.pledge_line_no,
                declared_value: l.declared_value.as_deref().and_then(|v| crate::domain::decimal::Money::parse(v).ok()),
                details: LineDetails {
                    lot_number: lot.lot_number.clone(),
                    expiry_date: l.expiry_date,
                    manufactured_on: l.manufactured_on,
                    counted: None,
                },
            });
            movements.push(movement(
                &doc,
                line_no,
                item.meta.id,
                lot.id,
                q,
                Location::donor(input.donor_id),
                Location::warehouse(input.warehouse_id),
                at,
                &values,
                stamp(ctx),
            ));
            lots.push(lot);
        }
        let event = apply(conn, ctx, "receipt.post", &doc, None, &lots, &mut movements)?;
        if let Some(p) = input.pledge_id {
            refresh_pledge(conn, ctx, p)?;
        }
        Ok(created_view(doc, movements, event, today(ctx)))
    }).await
}

// ---------------------------------------------------------------- shipments and transfers

/// Validates outgoing lines (shipments, transfers) into document lines.
fn out_lines(
    conn: &mut DbConn,
    lines: &[OutLineInput],
    e: &mut FieldErrors,
) -> Result<(Vec<Line>, HashMap<Uuid, Item>)> {
    lines_count(e, lines.len(), false);
    let ids: Vec<(String, Uuid)> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| (format!("lines[{i}].item_id"), l.item_id))
        .collect();
    let items = load_items(conn, &ids, e)?;
    let mut out = vec![];
    for (i, l) in lines.iter().enumerate() {
        let f = format!("lines[{i}]");
        let Some(item) = items.get(&l.item_id) else {
            continue;
        };
        if let Some(lot) = l.lot_id {
            match db::get_lot(conn, lot)? {
                None => e.add(format!("{f}.lot_id"), format!("lot {lot} does not exist")),
                Some(x) if x.item_id != l.item_id => e.add(
                    format!("{f}.lot_id"),
                    format!("lot {lot} is of another item"),
                ),
                Some(_) => {}
            }
        }
        if let Some((q, unit, entered)) =
            base_quantity(item, &f, &l.quantity, l.unit.as_deref(), false, e)
        {
            out.push(Line {
                line_no: i as i32 + 1,
                item_id: l.item_id,
                lot_id: l.lot_id,
                quantity: q,
                unit,
                unit_quantity: entered,
                pledge_line_no: None,
                declared_value: None,
                details: Default::default(),
            });
        }
    }
    Ok((out, items))
}

/// Allocates lots for a document's lines at its source warehouse and moves them into transit.
fn dispatch_movements(
    conn: &mut DbConn,
    ctx: &Ctx,
    doc: &Document,
    at: DateTime<Utc>,
    recipient: Option<&Recipient>,
) -> Result<Vec<Movement>> {
    let warehouse = doc.warehouse_id.expect("outgoing documents have a source");
    let item_ids: Vec<Uuid> = doc.lines.iter().map(|l| l.item_id).collect();
    let wanted: Vec<(Uuid, Quantity)> = doc
        .lines
        .iter()
        .filter(|l| l.lot_id.is_none())
        .map(|l| (l.item_id, l.quantity))
        .collect();
    let named: Vec<Uuid> = doc.lines.iter().filter_map(|l| l.lot_id).collect();
    let stock = db::available_at(conn, warehouse, &wanted, &named, at.date_naive())?;
    let wants: Vec<Want> = doc
        .lines
        .iter()
        .map(|l| Want {
            line_no: l.line_no,
            item_id: l.item_id,
            quantity: l.quantity,
            lot_id: l.lot_id,
        })
        .collect();
    let allocations = match allocate(&wants, &stock, at.date_naive(), recipient) {
        Ok(a) => a,
        Err(e) => {
            // The items, for their codes in the refusal: read only when there is one.
            let items: HashMap<Uuid, Item> = item_ids
                .iter()
                .filter_map(|i| master::get_item(conn, *i).transpose())
                .map(|r| r.map(|it| (it.meta.id, it)))
                .collect::<Result<_>>()?;
            return Err(alloc_error(e, &items));
        }
    };
    let values = db::values_on(conn, &item_ids, at.date_naive())?;
    Ok(allocations
        .into_iter()
        .map(|a| {
            movement(
                doc,
                a.line_no,
                a.item_id,
                a.lot_id,
                a.quantity,
                Location::warehouse(warehouse),
                Location::transit(doc.id),
                at,
                &values,
                stamp(ctx),
            )
        })
        .collect())
}

/// What a document still has in transit, by the movements that put it there and took it out.
fn in_transit(conn: &mut DbConn, doc: &Document) -> Result<Vec<Movement>> {
    let transit = Location::transit(doc.id);
    let moves = db::document_movements(conn, doc.id)?;
    let mut left: HashMap<(i32, Uuid), Quantity> = HashMap::new();
    let mut order = vec![];
    for m in &moves {
        if m.to == transit {
            let e = left.entry((m.line_no, m.lot_id)).or_insert(Quantity::ZERO);
            *e = e.checked_add(m.quantity).expect("bounded");
            order.push(m.clone());
        } else if m.from == transit {
            let e = left.entry((m.line_no, m.lot_id)).or_insert(Quantity::ZERO);
            *e = e.checked_sub(m.quantity).expect("bounded");
        }
    }
    Ok(order
        .into_iter()
        .filter_map(|m| {
            let q = left.remove(&(m.line_no, m.lot_id))?;
            (q > Quantity::ZERO).then_some(Movement { quantity: q, ..m })
        })
        .collect())
}

/// Everything a document still has in transit, bound for one place (a return, a transfer's arrival).
fn whole_transit_to(
    conn: &mut DbConn,
    doc: &Document,
    to: Location,
) -> Result<Vec<(Movement, Quantity, Location)>> {
    Ok(in_transit(conn, doc)?
        .into_iter()
        .map(|m| {
            let q = m.quantity;
            (m, q, to)
        })
        .collect())
}

/// Moves what is in transit onward, valued on the day it arrives.
fn from_transit(
    conn: &mut DbConn,
    ctx: &Ctx,
    doc: &Document,
    parts: &[(Movement, Quantity, Location)],
    at: DateTime<Utc>,
) -> Result<Vec<Movement>> {
    let items: Vec<Uuid> = parts.iter().map(|(m, _, _)| m.item_id).collect();
    let values = db::values_on(conn, &items, at.date_naive())?;
    Ok(parts
        .iter()
        .filter(|(_, q, _)| !q.is_zero())
        .map(|(m, q, to)| {
            movement(
                doc,
                m.line_no,
                m.item_id,
                m.lot_id,
                *q,
                Location::transit(doc.id),
                *to,
                at,
                &values,
                stamp(ctx),
            )
        })
        .collect())
}

pub async fn create_shipment(dbh: &Db, ctx: &Ctx, input: ShipmentInput) -> Result<DocumentView> {
    posting_at(ctx, input.warehouse_id)?;
    let at = when(ctx, "occurred_at", input.occurred_at)?;
    ctx.write(dbh, move |ctx, conn| {
        let mut e = FieldErrors::new();
        active_warehouse(conn, "warehouse_id", input.warehouse_id, &mut e)?;
        let recipient = active_recipient(conn, "recipient_id", input.recipient_id, &mut e)?;
        let note = opt_text(&mut e, "note", input.note.as_deref(), 500);
        let (lines, _) = out_lines(conn, &input.lines, &mut e)?;
        e.finish(|| ())?;
        let mut doc = new_document(DocType::Shipment, DocStatus::Draft, ctx, at);
        doc.warehouse_id = Some(input.warehouse_id);
        doc.recipient_id = Some(input.recipient_id);
        doc.details.note = note;
        doc.lines = lines;
        let mut movements = vec![];
        if input.dispatch {
            movements = dispatch_movements(conn, ctx, &doc, at, recipient.as_ref())?;
            doc.status = DocStatus::Dispatched;
            doc.details.dispatched_at = Some(at);
        }
        let event = apply(
            conn,
            ctx,
            "shipment.create",
            &doc,
            None,
            &[],
            &mut movements,
        )?;
        Ok(created_view(doc, movements, event, today(ctx)))
    })
    .await
}

pub async fn dispatch_shipment(
    dbh: &Db,
    ctx: &Ctx,
    id: Uuid,
    input: StepInput,
) -> Result<DocumentView> {
    ctx.actor.require(Action::PostStock)?;
    let at = when(ctx, "occurred_at", input.occurred_at)?;
    ctx.write(dbh, move |ctx, conn| {
        let doc = load(conn, DocType::Shipment, id)?;
        ctx.actor
            .require_warehouse(doc.warehouse_id.expect("shipments have a warehouse"))?;
        expect_status(&doc, &[DocStatus::Draft], "dispatch")?;
        let recipient =
            master::get_recipient(conn, doc.recipient_id.expect("shipments have a recipient"))?;
        let mut next = next_version(&doc, ctx);
        let mut movements = dispatch_movements(conn, ctx, &next, at, recipient.as_ref())?;
        next.status = DocStatus::Dispatched;
        next.details.dispatched_at = Some(at);
        apply(
            conn,
            ctx,
            "shipment.dispatch",
            &next,
            Some(&doc),
            &[],
            &mut movements,
        )?;
        view(conn, next, today(ctx))
    })
    .await
}

pub async fn deliver_shipment(
    dbh: &Db,
    ctx: &Ctx,
    id: Uuid,
    input: DeliverInput,
) -> Result<DocumentView> {
    ctx.actor.require(Action::PostStock)?;
    let at = when(ctx, "delivered_at", input.delivered_at)?;
    ctx.write(dbh, move |ctx, conn| {
        let doc = load(conn, DocType::Shipment, id)?;
        let warehouse = doc.warehouse_id.expect("shipments have a warehouse");
        ctx.actor.require_warehouse(warehouse)?;
        expect_status(&doc, &[DocStatus::Dispatched], "deliver")?;
        let mut e = FieldErrors::new();
        let signed_by = text(&mut e, "signed_by", &input.signed_by, 100);
        let mut short: HashMap<i32, Quantity> = HashMap::new();
        let mut shortfalls = vec![];
        for (i, s) in input.shortfalls.iter().enumerate() {
            let f = format!("shortfalls[{i}]");
            if !doc.lines.iter().any(|l| l.line_no == s.line_no) {
                e.add(
                    format!("{f}.line_no"),
                    format!("the shipment has no line {}", s.line_no),
                );
            }
            let reason = text(&mut e, &format!("{f}.reason"), &s.reason, 500);
            if let Some(q) = e.check(
                &format!("{f}.quantity"),
                Quantity::parse_positive(&s.quantity),
            ) {
                let t = short.entry(s.line_no).or_insert(Quantity::ZERO);
                *t = t.checked_add(q).expect("bounded");
                shortfalls.push(Shortfall {
                    line_no: s.line_no,
                    quantity: q,
                    reason,
                });
            }
        }
        e.finish(|| ())?;
        let transit = in_transit(conn, &doc)?;
        let split =
            split_delivery(&transit, &short).map_err(|m| Error::conflict("shortfalls", m))?;
        let recipient = Location::recipient(doc.recipient_id.expect("shipments have a recipient"));
        let mut parts = vec![];
        for (m, delivered, lost) in split {
            parts.push((m.clone(), delivered, recipient));
            parts.push((m, lost, Location::loss(warehouse)));
        }
        let mut next = next_version(&doc, ctx);
        let mut movements = from_transit(conn, ctx, &next, &parts, at)?;
        next.status = DocStatus::Delivered;
        next.details.signed_by = Some(signed_by);
        next.details.delivered_at = Some(at);
        next.details.shortfalls = shortfalls;
        apply(
            conn,
            ctx,
            "shipment.deliver",
            &next,
            Some(&doc),
            &[],
            &mut movements,
        )?;
        view(conn, next, today(ctx))
    })
    .await
}

pub async fn return_shipment(
    dbh: &Db,
    ctx: &Ctx,
    id: Uuid,
    input: StepInput,
) -> Result<DocumentView> {
    ctx.actor.require(Action::PostStock)?;
    let at = when(ctx, "occurred_at", input.occurred_at)?;
    ctx.write(dbh, move |ctx, conn| {
        let doc = load(conn, DocType::Shipment, id)?;
        let warehouse = doc.warehouse_id.expect("shipments have a warehouse");
        ctx.actor.require_warehouse(warehouse)?;
        expect_status(&doc, &[DocStatus::Dispatched], "return")?;
        let mut e = FieldErrors::new();
        let why = opt_text(&mut e, "reason", input.reason.as_deref(), 500);
        e.finish(|| ())?;
        let parts = whole_transit_to(conn, &doc, Location::warehouse(warehouse))?;
        let mut next = next_version(&doc, ctx);
        let mut movements = from_transit(conn, ctx, &next, &parts, at)?;
        next.status = DocStatus::Returned;
        next.details.returned_at = Some(at);
        next.details.why = why;
        apply(
            conn,
            ctx,
            "shipment.return",
            &next,
            Some(&doc),
            &[],
            &mut movements,
        )?;
        view(conn, next, today(ctx))
    })
    .await
}

pub async fn cancel_shipment(
    dbh: &Db,
    ctx: &Ctx,
    id: Uuid,
    input: StepInput,
) -> Result<DocumentView> {
    ctx.actor.require(Action::PostStock)?;
    ctx.write(dbh, move |ctx, conn| {
        let doc = load(conn, DocType::Shipment, id)?;
        ctx.actor
            .require_warehouse(doc.warehouse_id.expect("shipments have a warehouse"))?;
        expect_status(&doc, &[DocStatus::Draft], "cancel")?;
        let mut e = FieldErrors::new();
        let why = opt_text(&mut e, "reason", input.reason.as_deref(), 500);
        e.finish(|| ())?;
        let mut next = next_version(&doc, ctx);
        next.status = DocStatus::Cancelled;
        next.details.cancelled_at = Some(ctx.now);
        next.details.why = why;
        apply(
            conn,
            ctx,
            "shipment.cancel",
            &next,
            Some(&doc),
            &[],
            &mut [],
        )?;
        view(conn, next, today(ctx))
    })
    .await
}

pub async fn create_transfer(dbh: &Db, ctx: &Ctx, input: TransferInput) -> Result<DocumentView> {
    posting_at(ctx, input.warehouse_id)?;
    let at = when(ctx, "occurred_at", input.occurred_at)?;
    ctx.write(dbh, move |ctx, conn| {
        let mut e = FieldErrors::new();
        active_warehouse(conn, "warehouse_id", input.warehouse_id, &mut e)?;
        active_warehouse(conn, "to_warehouse_id", input.to_warehouse_id, &mut e)?;
        if input.warehouse_id == input.to_warehouse_id {
            e.add("to_warehouse_id", "must differ from warehouse_id");
        }
        let note = opt_text(&mut e, "note", input.note.as_deref(), 500);
        let (lines, _) = out_lines(conn, &input.lines, &mut e)?;
        e.finish(|| ())?;
        let mut doc = new_document(DocType::Transfer, DocStatus::Dispatched, ctx, at);
        doc.warehouse_id = Some(input.warehouse_id);
        doc.to_warehouse_id = Some(input.to_warehouse_id);
        doc.details.note = note;
        doc.details.dispatched_at = Some(at);
        doc.lines = lines;
        let mut movements = dispatch_movements(conn, ctx, &doc, at, None)?;
        let event = apply(
            conn,
            ctx,
            "transfer.dispatch",
            &doc,
            None,
            &[],
            &mut movements,
        )?;
        Ok(created_view(doc, movements, event, today(ctx)))
    })
    .await
}

pub async fn receive_transfer(
    dbh: &Db,
    ctx: &Ctx,
    id: Uuid,
    input: StepInput,
) -> Result<DocumentView> {
    ctx.actor.require(Action::PostStock)?;
    let at = when(ctx, "occurred_at", input.occurred_at)?;
    ctx.write(dbh, move |ctx, conn| {
        let doc = load(conn, DocType::Transfer, id)?;
        let to = doc.to_warehouse_id.expect("transfers have a destination");
        ctx.actor.require_warehouse(to)?;
        expect_status(&doc, &[DocStatus::Dispatched], "receive")?;
        let parts = whole_transit_to(conn, &doc, Location::warehouse(to))?;
        let mut next = next_version(&doc, ctx);
        let mut movements = from_transit(conn, ctx, &next, &parts, at)?;
        next.status = DocStatus::Received;
        next.details.received_at = Some(at);
        apply(
            conn,
            ctx,
            "transfer.receive",
            &next,
            Some(&doc),
            &[],
            &mut movements,
        )?;
        view(conn, next, today(ctx))
    })
    .await
}

// ---------------------------------------------------------------- adjustments and counts

/// Builds an adjustment's lines and movements from signed changes per lot.
#[allow(clippy::too_many_arguments)]
fn adjustment(
    conn: &mut DbConn,
    ctx: &Ctx,
    warehouse: Uuid,
    reason: AdjustmentReason,
    note: Option<String>,
    at: DateTime<Utc>,
    changes: Vec<(Lot, Quantity, bool, Option<Quantity>)>,
    stock_count: bool,
) -> Result<(Document, Vec<Movement>)> {
    let mut doc = new_document(DocType::Adjustment, DocStatus::Posted, ctx, at);
    doc.warehouse_id = Some(warehouse);
    doc.details.reason = Some(reason);
    doc.details.note = note;
    doc.details.stock_count = stock_count;
    let items: Vec<Uuid> = changes.iter().map(|(l, ..)| l.item_id).collect();
    let values = db::values_on(conn, &items, at.date_naive())?;
    let mut movements = vec![];
    for (i, (lot, q, up, counted)) in changes.into_iter().enumerate() {
        let line_no = i as i32 + 1;
        let base_unit = master::get_item(conn, lot.item_id)?
            .map(|it| it.base_unit)
            .unwrap_or_default();
        let signed = if up {
            q
        } else {
            Quantity::ZERO.checked_sub(q).expect("bounded")
        };
        doc.lines.push(Line {
            line_no,
            item_id: lot.item_id,
            lot_id: Some(lot.id),
            quantity: signed,
            unit: base_unit,
            unit_quantity: signed.to_string(),
            pledge_line_no: None,
            declared_value: None,
            details: LineDetails {
                counted,
                ..Default::default()
            },
        });
        let (from, to) = if up {
            (Location::loss(warehouse), Location::warehouse(warehouse))
        } else {
            (Location::warehouse(warehouse), Location::loss(warehouse))
        };
        movements.push(movement(
            &doc,
            line_no,
            lot.item_id,
            lot.id,
            q,
            from,
            to,
            at,
            &values,
            stamp(ctx),
        ));
    }
    Ok((doc, movements))
}

pub async fn post_adjustment(dbh: &Db, ctx: &Ctx, input: AdjustmentInput) -> Result<DocumentView> {
    posting_at(ctx, input.warehouse_id)?;
    let at = when(ctx, "occurred_at", input.occurred_at)?;
    ctx.write(dbh, move |ctx, conn| {
        let mut e = FieldErrors::new();
        active_warehouse(conn, "warehouse_id", input.warehouse_id, &mut e)?;
        lines_count(&mut e, input.lines.len(), false);
        let note = opt_text(&mut e, "note", input.note.as_deref(), 500);
        if input.reason == AdjustmentReason::Other && note.is_none() {
            e.add("note", "say what happened when the reason is 'other'");
        }
        let mut changes = vec![];
        for (i, l) in input.lines.iter().enumerate() {
            let f = format!("lines[{i}]");
            let lot = db::get_lot(conn, l.lot_id)?;
            if lot.is_none() {
                e.add(
                    format!("{f}.lot_id"),
                    format!("lot {} does not exist", l.lot_id),
                );
            }
            let Some(q) = e.check(&format!("{f}.quantity"), Quantity::parse(&l.quantity)) else {
                continue;
            };
            if q.is_zero() {
                e.add(format!("{f}.quantity"), "must not be zero");
                continue;
            }
            let up = q > Quantity::ZERO;
            match (input.reason.direction(), up) {
                (-1, true) => e.add(
                    format!("{f}.quantity"),
                    format!(
                        "{:?} can only take stock away: use a negative quantity",
                        input.reason
                    )
                    .to_lowercase(),
                ),
                (1, false) => e.add(
                    format!("{f}.quantity"),
                    "found goods add stock: use a positive quantity",
                ),
                _ => {}
            }
            let size = if up {
                q
            } else {
                Quantity::ZERO.checked_sub(q).expect("bounded")
            };
            if let Some(lot) = lot {
                changes.push((lot, size, up, None));
            }
        }
        e.finish(|| ())?;
        let (doc, mut movements) = adjustment(
            conn,
            ctx,
            input.warehouse_id,
            input.reason,
            note,
            at,
            changes,
            false,
        )?;
        let event = apply(
            conn,
            ctx,
            "adjustment.post",
            &doc,
            None,
            &[],
            &mut movements,
        )?;
        Ok(created_view(doc, movements, event, today(ctx)))
    })
    .await
}

/// A stock count: the counted quantity per lot. The differences from the books become one
/// count-correction adjustment (with no lines when everything matched, so the count itself
/// is on record).
pub async fn stock_count(dbh: &Db, ctx: &Ctx, input: StockCountInput) -> Result<DocumentView> {
    posting_at(ctx, input.warehouse_id)?;
    let at = when(ctx, "occurred_at", input.occurred_at)?;
    ctx.write(dbh, move |ctx, conn| {
        let mut e = FieldErrors::new();
        active_warehouse(conn, "warehouse_id", input.warehouse_id, &mut e)?;
        lines_count(&mut e, input.lines.len(), false);
        let note = opt_text(&mut e, "note", input.note.as_deref(), 500);
        let here = Location::warehouse(input.warehouse_id);
        let mut changes = vec![];
        let mut seen = vec![];
        for (i, l) in input.lines.iter().enumerate() {
            let f = format!("lines[{i}]");
            if seen.contains(&l.lot_id) {
                e.add(format!("{f}.lot_id"), "is counted twice");
            }
            seen.push(l.lot_id);
            let lot = db::get_lot(conn, l.lot_id)?;
            if lot.is_none() {
                e.add(
                    format!("{f}.lot_id"),
                    format!("lot {} does not exist", l.lot_id),
                );
            }
            let Some(counted) = e.check(
                &format!("{f}.counted"),
                Quantity::parse_non_negative(&l.counted),
            ) else {
                continue;
            };
            let Some(lot) = lot else { continue };
            let books = db::balances_of(conn, &[(lot.id, here)])?
                .get(&(lot.id, here))
                .copied()
                .unwrap_or(Quantity::ZERO);
            if counted > books {
                changes.push((
                    lot,
                    counted.checked_sub(books).expect("counted > books"),
                    true,
                    Some(counted),
                ));
            } else if counted < books {
                changes.push((
                    lot,
                    books.checked_sub(counted).expect("books > counted"),
                    false,
                    Some(counted),
                ));
            }
        }
        e.finish(|| ())?;
        let (doc, mut movements) = adjustment(
            conn,
            ctx,
            input.warehouse_id,
            AdjustmentReason::CountCorrection,
            note,
            at,
            changes,
            true,
        )?;
        apply(
            conn,
            ctx,
            "stock_count.post",
            &doc,
            None,
            &[],
            &mut movements,
        )?;
        view(conn, doc, today(ctx))
    })
    .await
}

// ---------------------------------------------------------------- lots

pub async fn set_hold(dbh: &Db, ctx: &Ctx, id: Uuid, hold: Option<HoldInput>) -> Result<Lot> {
    ctx.actor.require(Action::HoldLots)?;
    ctx.write(dbh, move |ctx, conn| {
        let lot = db::get_lot(conn, id)?.ok_or_else(|| Error::not_found("lot", id))?;
        let mut next = lot.clone();
        next.version += 1;
        match &hold {
            Some(h) => {
                if lot.on_hold {
                    return Err(Error::conflict("id", "the lot is already on hold"));
                }
                let mut e = FieldErrors::new();
                next.hold_reason = Some(text(&mut e, "reason", &h.reason, 500));
                e.finish(|| ())?;
                next.on_hold = true;
            }
            None => {
                if !lot.on_hold {
                    return Err(Error::conflict("id", "the lot is not on hold"));
                }
                next.on_hold = false;
                next.hold_reason = None;
            }
        }
        db::update_lot_hold(conn, &next)?;
        let action = if hold.is_some() {
            "lot.hold"
        } else {
            "lot.release"
        };
        ctx.audit(conn, action, "lot", id, Some(&lot), Some(&next))?;
        Ok(next)
    })
    .await
}

// ---------------------------------------------------------------- reversals

/// Undoes a posted document with a new, linked document of opposite movements. The
/// original stays as it was and names its reversal.
pub async fn reverse(
    dbh: &Db,
    ctx: &Ctx,
    doc_type: DocType,
    id: Uuid,
    input: StepInput,
) -> Result<DocumentView> {
    ctx.actor.require(Action::PostStock)?;
    let at = when(ctx, "occurred_at", input.occurred_at)?;
    ctx.write(dbh, move |ctx, conn| {
        let doc = load(conn, doc_type, id)?;
        ctx.actor
            .require_warehouse(doc.warehouse_id.expect("stock documents have a warehouse"))?;
        let mut e = FieldErrors::new();
        let why = text(&mut e, "reason", input.reason.as_deref().unwrap_or(""), 500);
        e.finish(|| ())?;
        if let Some(by) = doc.reversed_by_id {
            return Err(Error::conflict(
                "id",
                format!("{} {id} was already reversed by {by}", doc_type.as_str()),
            ));
        }
        if doc.reverses_id.is_some() {
            return Err(Error::conflict(
                "id",
                "a reversal cannot itself be reversed: post the document again",
            ));
        }
        let originals = db::document_movements(conn, id)?;
        if originals.is_empty() {
            return Err(Error::conflict(
                "status",
                "nothing to reverse: the document moved no stock (cancel a draft instead)",
            ));
        }
        let mut rev = new_document(doc_type, DocStatus::Posted, ctx, at);
        rev.warehouse_id = doc.warehouse_id;
        rev.to_warehouse_id = doc.to_warehouse_id;
        rev.donor_id = doc.donor_id;
        rev.recipient_id = doc.recipient_id;
        rev.pledge_id = doc.pledge_id;
        rev.reverses_id = Some(id);
        rev.details = Details {
            why: Some(why),
            reason: doc.details.reason,
            ..Default::default()
        };
        rev.lines = doc.lines.clone();
        let mut movements =
            reversal_of(&originals, rev.id, doc_type, at, ctx.now, ctx.actor.user_id);
        apply(
            conn,
            ctx,
            &format!("{}.reverse", doc_type.as_str()),
            &rev,
            None,
            &[],
            &mut movements,
        )?;
        let mut original = next_version(&doc, ctx);
        original.reversed_by_id = Some(rev.id);
        apply(
            conn,
            ctx,
            &format!("{}.reversed", doc_type.as_str()),
            &original,
            Some(&doc),
            &[],
            &mut [],
        )?;
        if let (DocType::Receipt, Some(p)) = (doc_type, doc.pledge_id) {
            refresh_pledge(conn, ctx, p)?;
        }
        view(conn, rev, today(ctx))
    })
    .await
}

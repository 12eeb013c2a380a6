//! Ledger operations. Each write reads what it needs and checks it (validate), builds the
//! document, lots and movements with `domain::ledger::plan` (generate), checks the plan
//! against current balances, and writes it all with one audit event in one transaction
//! (apply).

pub mod documents;
pub mod reads;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::Ctx;
use crate::domain::audit::AuditEvent;
use crate::domain::catalog::Item;
use crate::domain::decimal::{Money, Quantity};
use crate::domain::ledger::document::{DocStatus, DocType, Document};
use crate::domain::ledger::movement::{apply_to, Movement};
use crate::domain::ledger::plan::{shown_status, AllocError};
use crate::domain::validation::FieldErrors;
use crate::error::{Error, Result};
use crate::store::{self, DbConn};

/// A document as the API shows it: with its movements and its audit events.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DocumentView {
    #[serde(flatten)]
    pub document: Document,
    /// Pledges: pledged, received and outstanding per line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<Vec<PledgeProgress>>,
    pub movements: Vec<Movement>,
    pub audit_events: Vec<AuditEvent>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PledgeProgress {
    pub line_no: i32,
    pub item_id: Uuid,
    #[schema(value_type = String)]
    pub pledged: Quantity,
    #[schema(value_type = String)]
    pub received: Quantity,
    #[schema(value_type = String)]
    pub outstanding: Quantity,
}

pub(crate) fn view(
    conn: &mut DbConn,
    mut doc: Document,
    today: chrono::NaiveDate,
) -> Result<DocumentView> {
    let progress = if doc.doc_type == DocType::Pledge {
        let received = store::ledger::pledge_received(conn, doc.id)?;
        Some(
            doc.lines
                .iter()
                .map(|l| {
                    let got = received.get(&l.line_no).copied().unwrap_or(Quantity::ZERO);
                    let left = l
                        .quantity
                        .checked_sub(got)
                        .filter(|q| *q > Quantity::ZERO)
                        .unwrap_or(Quantity::ZERO);
                    PledgeProgress {
                        line_no: l.line_no,
                        item_id: l.item_id,
                        pledged: l.quantity,
                        received: got,
                        outstanding: left,
                    }
                })
                .collect(),
        )
    } else {
        None
    };
    doc.status = shown_status(&doc, today);
    let movements = store::ledger::document_movements(conn, doc.id)?;
    let audit_events = store::audit::list(
        conn,
        &store::audit::EventFilter {
            entity_id: Some(doc.id.to_string()),
            ..Default::default()
        },
        1000,
    )?;
    Ok(DocumentView {
        document: doc,
        progress,
        movements,
        audit_events,
    })
}

/// The view of a document this write has just created, from what it wrote rather than read
/// back: its movements (numbered by `apply`) and its one audit event are all there is.
pub(crate) fn created_view(
    mut doc: Document,
    movements: Vec<Movement>,
    event: AuditEvent,
    today: chrono::NaiveDate,
) -> DocumentView {
    debug_assert_ne!(
        doc.doc_type,
        DocType::Pledge,
        "pledges show progress: use view()"
    );
    doc.status = shown_status(&doc, today);
    DocumentView {
        document: doc,
        progress: None,
        movements,
        audit_events: vec![event],
    }
}

/// A new document, stamped.
pub(crate) fn new_document(
    doc_type: DocType,
    status: DocStatus,
    ctx: &Ctx,
    occurred_at: DateTime<Utc>,
) -> Document {
    Document {
        id: Uuid::now_v7(),
        doc_type,
        status,
        warehouse_id: None,
        to_warehouse_id: None,
        donor_id: None,
        recipient_id: None,
        pledge_id: None,
        occurred_at,
        details: Default::default(),
        reverses_id: None,
        reversed_by_id: None,
        created_by: ctx.actor.user_id,
        created_at: ctx.now,
        updated_at: ctx.now,
        version: 1,
        lines: vec![],
    }
}

/// Loads the items lines refer to; unknown or archived ones are field errors.
pub(crate) fn load_items(
    conn: &mut DbConn,
    ids: &[(String, Uuid)],
    e: &mut FieldErrors,
) -> Result<HashMap<Uuid, Item>> {
    let wanted: Vec<Uuid> = ids.iter().map(|(_, id)| *id).collect();
    let mut found = store::master::get_items(conn, &wanted)?;
    for (field, id) in ids {
        match found.get(id) {
            None => e.add(field.clone(), format!("item {id} does not exist")),
            Some(i) if i.meta.archived_at.is_some() => {
                e.add(field.clone(), format!("item {} is archived", i.code))
            }
            Some(_) => {}
        }
    }
    found.retain(|_, i| i.meta.archived_at.is_none());
    Ok(found)
}

/// A line's amount in the item's base unit, from what the client entered.
pub(crate) fn base_quantity(
    item: &Item,
    field: &str,
    amount: &str,
    unit: Option<&str>,
    signed: bool,
    e: &mut FieldErrors,
) -> Option<(Quantity, String, String)> {
    let unit = unit
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .unwrap_or(&item.base_unit)
        .to_lowercase();
    let Ok(entered) = amount.trim().parse::<Decimal>() else {
        e.add(
            format!("{field}.quantity"),
            "is not a decimal number written as a string",
        );
        return None;
    };
    if entered.is_zero() {
        e.add(format!("{field}.quantity"), "must not be zero");
        return None;
    }
    if !signed && entered.is_sign_negative() {
        e.add(format!("{field}.quantity"), "must be greater than zero");
        return None;
    }
    match item.to_base(entered, &unit) {
        Ok(q) => Some((q, unit, entered.normalize().to_string())),
        Err(msg) if msg.contains("unit") => {
            e.add(format!("{field}.unit"), msg);
            None
        }
        Err(msg) => {
            e.add(format!("{field}.quantity"), msg);
            None
        }
    }
}

pub(crate) fn money(field: &str, text: Option<&str>, e: &mut FieldErrors) -> Option<Money> {
    text.and_then(|t| e.check(field, Money::parse_non_negative(t)))
}

/// Plays the plan's movements over the current balances of the locations they touch and
/// refuses any that would overdraw a warehouse or transit location.
pub(crate) fn check_plan(conn: &mut DbConn, movements: &[Movement]) -> Result<()> {
    // Only the balances `apply_to` can refuse: stock-holding places the plan takes from.
    // A place the plan only adds to needs no read (it cannot go below zero), and one it
    // also takes from is read here.
    let keys: Vec<(Uuid, crate::domain::ledger::location::Location)> = movements
        .iter()
        .filter(|m| m.from.holds_stock())
        .map(|m| (m.lot_id, m.from))
        .collect();
    let mut balances = store::ledger::balances_of(conn, &keys)?;
    apply_to(&mut balances, movements).map_err(|o| Error::InsufficientStock {
        field: "lines".into(),
        item_id: o.item_id,
        requested: o.needed.to_string(),
        available: o.available.to_string(),
        detail: format!(
            "lot {} of item {} has {} at {}, {} needed (short {})",
            o.lot_id,
            o.item_id,
            o.available,
            o.location,
            o.needed,
            o.needed.checked_sub(o.available).unwrap_or(o.needed)
        ),
    })
}

pub(crate) fn alloc_error(e: AllocError, items: &HashMap<Uuid, Item>) -> Error {
    match e {
        AllocError::Short {
            line_no,
            item_id,
            requested,
            available,
        } => {
            let code = items
                .get(&item_id)
                .map(|i| i.code.clone())
                .unwrap_or_else(|| item_id.to_string());
            let short = requested.checked_sub(available).unwrap_or(requested);
            Error::InsufficientStock {
                field: format!("lines[{}].quantity", line_no - 1),
                item_id,
                requested: requested.to_string(),
                available: available.to_string(),
                detail: format!(
                    "item {code}: {requested} requested, {available} available, short {short}"
                ),
            }
        }
        AllocError::Lot { line_no, reason } => {
            Error::conflict(&format!("lines[{}].lot_id", line_no - 1), reason)
        }
    }
}

/// Writes a plan: the document (new, or changed from `before`), new lots, movements, and one audit event
/// whose `after` holds the document and the movements, so the hash chain covers them too.
pub(crate) fn apply(
    conn: &mut DbConn,
    ctx: &Ctx,
    action: &str,
    doc: &Document,
    before: Option<&Document>,
    lots: &[crate::domain::ledger::lot::Lot],
    movements: &mut [Movement],
) -> Result<AuditEvent> {
    if let Some(earliest) = movements.iter().map(|m| m.occurred_at).min() {
        crate::service::periods::check_open(conn, earliest, "occurred_at")?;
    }
    check_plan(conn, movements)?;
    if before.is_some() {
        store::ledger::update_document(conn, doc)?;
    }
    // Numbered first: the audit event holds the movements with their numbers.
    store::ledger::number_movements(conn, movements)?;
    #[derive(Serialize)]
    struct Posted<'a> {
        document: &'a Document,
        #[serde(skip_serializing_if = "<[_]>::is_empty")]
        lots: &'a [crate::domain::ledger::lot::Lot],
        #[serde(skip_serializing_if = "<[_]>::is_empty")]
        movements: &'a [Movement],
    }
    let after = Posted {
        document: doc,
        lots,
        movements,
    };
    let before = before.map(|d| Posted {
        document: d,
        lots: &[],
        movements: &[],
    });
    let event = ctx.event(
        action,
        doc.doc_type.as_str(),
        doc.id,
        before.as_ref(),
        Some(&after),
    );
    store::ledger::post(
        conn,
        store::ledger::Posting {
            new_document: before.is_none().then_some(doc),
            lots,
            movements,
            event,
        },
    )
}

//! Movements: the ledger's only facts. Everything else (stock, traces, reports) is a sum
//! of movements.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::document::DocType;
use super::location::Location;
use crate::domain::decimal::{Money, Quantity, UnitValue};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Movement {
    /// Position in the journal; assigned when the movement is written.
    pub seq: i64,
    pub document_id: Uuid,
    pub document_type: DocType,
    pub line_no: i32,
    pub item_id: Uuid,
    pub lot_id: Uuid,
    /// In the item's base unit; always positive (direction is from → to).
    #[schema(value_type = String)]
    pub quantity: Quantity,
    pub from: Location,
    pub to: Location,
    /// The item's estimated value per base unit in effect on `occurred_at`, frozen here.
    #[schema(value_type = String)]
    pub unit_value: UnitValue,
    /// quantity × unit_value, to the cent.
    #[schema(value_type = String)]
    pub value: Money,
    /// The value-history entry used; absent when the item had no value on that date.
    pub value_id: Option<Uuid>,
    /// The business date: when the goods moved.
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub recorded_by: Uuid,
    /// For a reversal, the movement it undoes.
    pub reverses_seq: Option<i64>,
}

/// Balances of stock-holding locations, as a plan sees them before it is applied.
pub type Balances = HashMap<(Uuid, Location), Quantity>;

/// A movement that would take more than a location holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overdraw {
    pub item_id: Uuid,
    pub lot_id: Uuid,
    pub location: Location,
    pub needed: Quantity,
    pub available: Quantity,
}

/// Plays movements forward over `balances` and refuses the first that would leave a
/// warehouse or transit balance below zero. Every plan passes through this before it is
/// written; the store's guarded updates and the database's CHECK are the second and third line.
pub fn apply_to(balances: &mut Balances, movements: &[Movement]) -> Result<(), Overdraw> {
    for m in movements {
        if m.from.holds_stock() {
            let have = balances
                .get(&(m.lot_id, m.from))
                .copied()
                .unwrap_or(Quantity::ZERO);
            let left = have
                .checked_sub(m.quantity)
                .filter(|l| *l >= Quantity::ZERO);
            match left {
                Some(l) => {
                    balances.insert((m.lot_id, m.from), l);
                }
                None => {
                    return Err(Overdraw {
                        item_id: m.item_id,
                        lot_id: m.lot_id,
                        location: m.from,
                        needed: m.quantity,
                        available: have,
                    })
                }
            }
        }
        if m.to.holds_stock() {
            let have = balances
                .get(&(m.lot_id, m.to))
                .copied()
                .unwrap_or(Quantity::ZERO);
            balances.insert(
                (m.lot_id, m.to),
                have.checked_add(m.quantity).expect("bounded quantities"),
            );
        }
    }
    Ok(())
}

/// The movements that undo `originals`, newest first, each at the value it was made at,
/// so a reversal leaves quantities and values exactly as they were.
pub fn reversal_of(
    originals: &[Movement],
    document_id: Uuid,
    document_type: DocType,
    at: DateTime<Utc>,
    by: Uuid,
) -> Vec<Movement> {
    originals
        .iter()
        .rev()
        .map(|m| Movement {
            seq: 0,
            document_id,
            document_type,
            line_no: m.line_no,
            item_id: m.item_id,
            lot_id: m.lot_id,
            quantity: m.quantity,
            from: m.to,
            to: m.from,
            unit_value: m.unit_value,
            value: m.value,
            value_id: m.value_id,
            occurred_at: at,
            recorded_at: at,
            recorded_by: by,
            reverses_seq: Some(m.seq),
        })
        .collect()
}

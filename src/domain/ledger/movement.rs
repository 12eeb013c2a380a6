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
    occurred_at: DateTime<Utc>,
    recorded_at: DateTime<Utc>,
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
            occurred_at,
            recorded_at,
            recorded_by: by,
            reverses_seq: Some(m.seq),
        })
        .collect()
}

/// A movement for tests: number 1 of a receipt's first line, item nil, valued at zero.
#[cfg(test)]
pub(crate) fn sample(lot: Uuid, from: Location, to: Location, quantity: Quantity) -> Movement {
    Movement {
        seq: 1,
        document_id: Uuid::nil(),
        document_type: DocType::Receipt,
        line_no: 1,
        item_id: Uuid::nil(),
        lot_id: lot,
        quantity,
        from,
        to,
        unit_value: UnitValue::ZERO,
        value: Money::ZERO,
        value_id: None,
        occurred_at: Utc::now(),
        recorded_at: Utc::now(),
        recorded_by: Uuid::nil(),
        reverses_seq: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    fn mv(lot: Uuid, from: Location, to: Location, qty: &str) -> Movement {
        Movement {
            unit_value: UnitValue::parse("2").unwrap(),
            value: Money::parse("20").unwrap(),
            ..sample(lot, from, to, q(qty))
        }
    }

    #[test]
    fn stock_never_goes_below_zero_but_virtual_locations_may() {
        let lot = Uuid::new_v4();
        let (donor, wh, rcp) = (
            Location::donor(Uuid::new_v4()),
            Location::warehouse(Uuid::new_v4()),
            Location::recipient(Uuid::new_v4()),
        );
        let mut b = Balances::new();
        apply_to(&mut b, &[mv(lot, donor, wh, "10"), mv(lot, wh, rcp, "10")]).unwrap();
        assert_eq!(b[&(lot, wh)], Quantity::ZERO);
        assert!(
            !b.contains_key(&(lot, donor)),
            "virtual locations are not tracked for the check"
        );
        let err = apply_to(&mut b, &[mv(lot, wh, rcp, "0.001")]).unwrap_err();
        assert_eq!(err.available, Quantity::ZERO);
        assert_eq!(err.location, wh);
    }

    #[test]
    fn a_reversal_mirrors_and_nets_to_zero() {
        let lot = Uuid::new_v4();
        let (donor, wh) = (
            Location::donor(Uuid::new_v4()),
            Location::warehouse(Uuid::new_v4()),
        );
        let mut original = mv(lot, donor, wh, "10");
        original.seq = 7;
        let rev = reversal_of(
            std::slice::from_ref(&original),
            Uuid::new_v4(),
            DocType::Receipt,
            Utc::now(),
            Utc::now(),
            Uuid::nil(),
        );
        assert_eq!((rev[0].from, rev[0].to), (wh, donor));
        assert_eq!(
            (rev[0].quantity, rev[0].value, rev[0].unit_value),
            (original.quantity, original.value, original.unit_value)
        );
        assert_eq!(rev[0].reverses_seq, Some(7));
        let mut b = Balances::new();
        apply_to(&mut b, &[original]).unwrap();
        apply_to(&mut b, &rev).unwrap();
        assert_eq!(b[&(lot, wh)], Quantity::ZERO);
    }
}

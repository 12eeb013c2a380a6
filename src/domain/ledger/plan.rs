//! The pure middle of every ledger write: given validated input and the current state that
//! validation read, produce the rows to write. No I/O here, so the rules are unit-tested.

use std::collections::HashMap;

use chrono::{DateTime, Duration, NaiveDate, SubsecRound, Utc};
use uuid::Uuid;

use super::document::{DocStatus, DocType, Document};
use super::location::Location;
use super::lot::{unusable_reason, Lot};
use super::movement::Movement;
use crate::domain::catalog::ItemValue;
use crate::domain::decimal::{Money, Quantity, UnitValue};
use crate::domain::parties::Recipient;

/// How far back a business date may lie: paper records of the last month can be entered
/// late, but nothing older, so a period's figures settle.
pub const MAX_BACKDATE_DAYS: i64 = 30;
/// Clock skew allowed for dates a client sends.
pub const MAX_AHEAD_MINUTES: i64 = 5;

/// Who records and when.
#[derive(Debug, Clone, Copy)]
pub struct Stamp {
    pub now: DateTime<Utc>,
    pub by: Uuid,
}

/// The business time of a step: the client's, within limits, or now.
pub fn business_time(
    requested: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, String> {
    let Some(t) = requested else { return Ok(now) };
    if t > now + Duration::minutes(MAX_AHEAD_MINUTES) {
        return Err("must not be in the future".into());
    }
    if t < now - Duration::days(MAX_BACKDATE_DAYS) {
        return Err(format!("must be within the last {MAX_BACKDATE_DAYS} days"));
    }
    // The store keeps microseconds; what is answered is what a later read will show.
    Ok(t.trunc_subsecs(6))
}

/// The value in effect for each item on one date (absent: the item had no value yet).
#[derive(Debug, Default, Clone)]
pub struct ValueBook(pub HashMap<Uuid, ItemValue>);

impl ValueBook {
    pub fn price(&self, item: Uuid, quantity: Quantity) -> (UnitValue, Money, Option<Uuid>) {
        match self.0.get(&item) {
            Some(v) => (v.unit_value, quantity.value_at(v.unit_value), Some(v.id)),
            None => (UnitValue::ZERO, Money::ZERO, None),
        }
    }
}

/// One movement of a document line, valued at the book's price.
#[allow(clippy::too_many_arguments)]
pub fn movement(
    doc: &Document,
    line_no: i32,
    item_id: Uuid,
    lot_id: Uuid,
    quantity: Quantity,
    from: Location,
    to: Location,
    occurred_at: DateTime<Utc>,
    values: &ValueBook,
    stamp: Stamp,
) -> Movement {
    let (unit_value, value, value_id) = values.price(item_id, quantity);
    Movement {
        seq: 0,
        document_id: doc.id,
        document_type: doc.doc_type,
        line_no,
        item_id,
        lot_id,
        quantity,
        from,
        to,
        unit_value,
        value,
        value_id,
        occurred_at,
        recorded_at: stamp.now,
        recorded_by: stamp.by,
        reverses_seq: None,
    }
}

// ---------------------------------------------------------------- allocation

/// A lot's stock at the warehouse goods leave from.
#[derive(Debug, Clone)]
pub struct Available {
    pub lot: Lot,
    pub quantity: Quantity,
}

/// What a line asks for.
#[derive(Debug, Clone)]
pub struct Want {
    pub line_no: i32,
    pub item_id: Uuid,
    pub quantity: Quantity,
    pub lot_id: Option<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub line_no: i32,
    pub item_id: Uuid,
    pub lot_id: Uuid,
    pub quantity: Quantity,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllocError {
    /// Not enough usable stock for a line.
    Short {
        line_no: i32,
        item_id: Uuid,
        requested: Quantity,
        available: Quantity,
    },
    /// A named lot cannot be used (wrong item, none here, on hold, expired, earmarked).
    Lot { line_no: i32, reason: String },
}

/// Picks lots for each line: a named lot if the line names one, otherwise earliest expiry
/// first (lots without expiry last), then oldest. Never an expired or held lot, never one
/// whose earmark excludes the recipient. Lines share the stock, in line order.
pub fn allocate(
    wants: &[Want],
    stock: &[Available],
    on: NaiveDate,
    recipient: Option<&Recipient>,
) -> Result<Vec<Allocation>, AllocError> {
    let mut left: HashMap<Uuid, Quantity> = stock.iter().map(|a| (a.lot.id, a.quantity)).collect();
    let mut order: Vec<&Available> = stock.iter().collect();
    order.sort_by(|a, b| {
        let key = |x: &Available| {
            (
                x.lot.expiry_date.is_none(),
                x.lot.expiry_date,
                x.lot.created_at,
                x.lot.id,
            )
        };
        key(a).cmp(&key(b))
    });
    let mut out = vec![];
    for w in wants {
        if let Some(lot_id) = w.lot_id {
            let Some(a) = stock.iter().find(|a| a.lot.id == lot_id) else {
                return Err(AllocError::Lot {
                    line_no: w.line_no,
                    reason: format!("lot {lot_id} has no stock at this warehouse"),
                });
            };
            if a.lot.item_id != w.item_id {
                return Err(AllocError::Lot {
                    line_no: w.line_no,
                    reason: format!("lot {lot_id} is of another item"),
                });
            }
            if let Some(why) = unusable_reason(&a.lot, on, recipient) {
                return Err(AllocError::Lot {
                    line_no: w.line_no,
                    reason: why,
                });
            }
            let have = left[&lot_id];
            if have < w.quantity {
                return Err(AllocError::Short {
                    line_no: w.line_no,
                    item_id: w.item_id,
                    requested: w.quantity,
                    available: have,
                });
            }
            left.insert(lot_id, have.checked_sub(w.quantity).expect("checked above"));
            out.push(Allocation {
                line_no: w.line_no,
                item_id: w.item_id,
                lot_id,
                quantity: w.quantity,
            });
            continue;
        }
        let usable: Vec<&&Available> = order
            .iter()
            .filter(|a| {
                a.lot.item_id == w.item_id && unusable_reason(&a.lot, on, recipient).is_none()
            })
            .collect();
        let total = usable.iter().fold(Quantity::ZERO, |t, a| {
            t.checked_add(left[&a.lot.id]).expect("bounded")
        });
        if total < w.quantity {
            return Err(AllocError::Short {
                line_no: w.line_no,
                item_id: w.item_id,
                requested: w.quantity,
                available: total,
            });
        }
        let mut need = w.quantity;
        for a in usable {
            if need.is_zero() {
                break;
            }
            let have = left[&a.lot.id];
            if have.is_zero() {
                continue;
            }
            let take = if have < need { have } else { need };
            left.insert(a.lot.id, have.checked_sub(take).expect("take ≤ have"));
            need = need.checked_sub(take).expect("take ≤ need");
            out.push(Allocation {
                line_no: w.line_no,
                item_id: w.item_id,
                lot_id: a.lot.id,
                quantity: take,
            });
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------- delivery

/// Splits what is in transit for a shipment into delivered and short, per movement.
/// A line's shortfall is taken from its last-allocated lots first.
pub fn split_delivery(
    in_transit: &[Movement],
    shortfalls: &HashMap<i32, Quantity>,
) -> Result<Vec<(Movement, Quantity, Quantity)>, String> {
    let mut short_left = shortfalls.clone();
    let mut out: Vec<(Movement, Quantity, Quantity)> = vec![];
    for m in in_transit.iter().rev() {
        let short = short_left
            .get(&m.line_no)
            .copied()
            .unwrap_or(Quantity::ZERO);
        let take = if short > m.quantity {
            m.quantity
        } else {
            short
        };
        if !take.is_zero() {
            short_left.insert(m.line_no, short.checked_sub(take).expect("take ≤ short"));
        }
        out.push((
            m.clone(),
            m.quantity.checked_sub(take).expect("take ≤ quantity"),
            take,
        ));
    }
    if let Some((line, q)) = short_left.iter().find(|(_, q)| !q.is_zero()) {
        return Err(format!(
            "line {line}: the shortfall exceeds what was dispatched by {q}"
        ));
    }
    out.reverse();
    Ok(out)
}

// ---------------------------------------------------------------- pledges

/// A pledge's stored status from what has been received against its lines.
pub fn pledge_status(
    pledged: &[(i32, Quantity)],
    received: &HashMap<i32, Quantity>,
    cancelled: bool,
) -> DocStatus {
    if cancelled {
        return DocStatus::Cancelled;
    }
    let any = received.values().any(|q| !q.is_zero());
    let all = pledged
        .iter()
        .all(|(line, q)| received.get(line).copied().unwrap_or(Quantity::ZERO) >= *q);
    match (any, all) {
        (_, true) => DocStatus::Fulfilled,
        (true, false) => DocStatus::PartiallyReceived,
        (false, false) => DocStatus::Open,
    }
}

/// What a reader sees: an open pledge past its expected date is expired.
pub fn shown_status(doc: &Document, today: NaiveDate) -> DocStatus {
    match (doc.doc_type, doc.status, doc.details.expected_date) {
        (DocType::Pledge, DocStatus::Open | DocStatus::PartiallyReceived, Some(d)) if d < today => {
            DocStatus::Expired
        }
        (_, s, _) => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ledger::lot::Earmark;
    use crate::domain::parties::RecipientKind;
    use crate::domain::record::Meta;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    fn lot(item: Uuid, expiry: Option<&str>, age: i64) -> Lot {
        Lot {
            created_at: Utc::now() - Duration::days(age),
            ..crate::domain::ledger::lot::sample(Uuid::new_v4(), item, expiry)
        }
    }

    fn want(line: i32, item: Uuid, qty: &str) -> Want {
        Want {
            line_no: line,
            item_id: item,
            quantity: q(qty),
            lot_id: None,
        }
    }

    fn today() -> NaiveDate {
        "2020-03-20".parse().unwrap()
    }

    #[test]
    fn earliest_expiry_first_then_oldest_never_expired_or_held() {
        let item = Uuid::new_v4();
        let expired = lot(item, Some("2020-03-01"), 50);
        let late = lot(item, Some("2021-01-01"), 40);
        let soon = lot(item, Some("2020-06-01"), 10);
        let no_expiry_old = lot(item, None, 30);
        let mut held = lot(item, Some("2020-04-01"), 60);
        held.on_hold = true;
        let stock: Vec<Available> = [&expired, &late, &soon, &no_expiry_old, &held]
            .iter()
            .map(|l| Available {
                lot: (*l).clone(),
                quantity: q("10"),
            })
            .collect();
        let got = allocate(&[want(1, item, "25")], &stock, today(), None).unwrap();
        let lots: Vec<(Uuid, String)> = got
            .iter()
            .map(|a| (a.lot_id, a.quantity.to_string()))
            .collect();
        assert_eq!(
            lots,
            vec![
                (soon.id, "10".into()),
                (late.id, "10".into()),
                (no_expiry_old.id, "5".into())
            ]
        );

        let err = allocate(&[want(1, item, "31")], &stock, today(), None).unwrap_err();
        assert_eq!(
            err,
            AllocError::Short {
                line_no: 1,
                item_id: item,
                requested: q("31"),
                available: q("30")
            }
        );
    }

    #[test]
    fn lines_share_stock_and_named_lots_are_checked() {
        let item = Uuid::new_v4();
        let a = lot(item, None, 2);
        let stock = vec![Available {
            lot: a.clone(),
            quantity: q("8"),
        }];
        let err = allocate(
            &[want(1, item, "5"), want(2, item, "5")],
            &stock,
            today(),
            None,
        )
        .unwrap_err();
        assert!(matches!(err, AllocError::Short { line_no: 2, .. }));
        let named = Want {
            lot_id: Some(a.id),
            ..want(1, item, "8")
        };
        assert_eq!(
            allocate(std::slice::from_ref(&named), &stock, today(), None).unwrap()[0].lot_id,
            a.id
        );
        let other = Want {
            item_id: Uuid::new_v4(),
            ..named
        };
        assert!(matches!(
            allocate(&[other], &stock, today(), None),
            Err(AllocError::Lot { .. })
        ));
    }

    #[test]
    fn earmarks_keep_goods_for_their_recipients() {
        let item = Uuid::new_v4();
        let mut marked = lot(item, None, 5);
        marked.earmark = Some(Earmark {
            recipient_kinds: vec![RecipientKind::Community],
            ..Default::default()
        });
        let free = lot(item, None, 1);
        let stock = vec![
            Available {
                lot: marked.clone(),
                quantity: q("10"),
            },
            Available {
                lot: free.clone(),
                quantity: q("10"),
            },
        ];
        let factory = Recipient {
            meta: Meta::new(Utc::now()),
            name: "工厂".into(),
            kind: RecipientKind::Enterprise,
            region_code: "370881".into(),
            contact: Default::default(),
            headcount: None,
        };
        let got = allocate(&[want(1, item, "10")], &stock, today(), Some(&factory)).unwrap();
        assert_eq!(got[0].lot_id, free.id, "the earmarked older lot is skipped");
        let community = Recipient {
            kind: RecipientKind::Community,
            ..factory
        };
        let got = allocate(&[want(1, item, "10")], &stock, today(), Some(&community)).unwrap();
        assert_eq!(got[0].lot_id, marked.id);
    }

    #[test]
    fn pledge_status_follows_receipts() {
        let pledged = [(1, q("100")), (2, q("50"))];
        let mut got = HashMap::new();
        assert_eq!(pledge_status(&pledged, &got, false), DocStatus::Open);
        got.insert(1, q("100"));
        assert_eq!(
            pledge_status(&pledged, &got, false),
            DocStatus::PartiallyReceived
        );
        got.insert(2, q("50"));
        assert_eq!(pledge_status(&pledged, &got, false), DocStatus::Fulfilled);
        assert_eq!(pledge_status(&pledged, &got, true), DocStatus::Cancelled);
    }

    #[test]
    fn a_shortfall_comes_off_the_last_lots_of_its_line() {
        let lot1 = Uuid::new_v4();
        let lot2 = Uuid::new_v4();
        let m = |lot: Uuid, line: i32, qty: &str| Movement {
            seq: 0,
            document_type: DocType::Shipment,
            line_no: line,
            ..crate::domain::ledger::movement::sample(
                lot,
                Location::warehouse(Uuid::nil()),
                Location::transit(Uuid::nil()),
                q(qty),
            )
        };
        let transit = [m(lot1, 1, "6"), m(lot2, 1, "4"), m(lot1, 2, "5")];
        let split = split_delivery(&transit, &HashMap::from([(1, q("5"))])).unwrap();
        let got: Vec<(String, String)> = split
            .iter()
            .map(|(_, d, s)| (d.to_string(), s.to_string()))
            .collect();
        assert_eq!(
            got,
            [
                ("5".into(), "1".into()),
                ("0".into(), "4".into()),
                ("5".into(), "0".into())
            ]
        );
        assert!(split_delivery(&transit, &HashMap::from([(2, q("6"))])).is_err());
    }

    #[test]
    fn business_time_limits() {
        let now = Utc::now();
        assert_eq!(business_time(None, now).unwrap(), now);
        assert!(business_time(Some(now - Duration::days(29)), now).is_ok());
        assert!(business_time(Some(now - Duration::days(31)), now).is_err());
        assert!(business_time(Some(now + Duration::hours(1)), now).is_err());
    }
}

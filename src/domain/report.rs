//! Reports as data: tables of typed cells that render to JSON, CSV and XLSX alike, and the
//! classification of movements that every report sums by.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use utoipa::ToSchema;

use super::decimal::{Money, Quantity};
use super::ledger::location::LocationKind;
use super::ledger::movement::Movement;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ColumnKind {
    Text,
    Quantity,
    Money,
    Date,
    Time,
    Integer,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Column {
    pub key: String,
    pub label: String,
    pub kind: ColumnKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Empty,
    /// Shared, so that a name repeated on every row of a big report (the donor, the item)
    /// is held once; and a cell is 24 bytes rather than 32.
    Text(Arc<str>),
    Qty(Quantity),
    Money(Money),
    Date(NaiveDate),
    Time(DateTime<Utc>),
    Int(i64),
}

impl Cell {
    /// The cell as text: exact decimals, ISO dates.
    pub fn text(&self) -> String {
        self.to_string()
    }
}

/// The one place a cell's text is made: CSV, XLSX and JSON all write it.
impl std::fmt::Display for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cell::Empty => Ok(()),
            Cell::Text(s) => f.write_str(s),
            Cell::Qty(q) => q.fmt(f),
            Cell::Money(m) => write!(f, "{:.2}", m.value()),
            Cell::Date(d) => d.fmt(f),
            Cell::Time(t) => f.write_str(&crate::domain::audit::timestamp(*t)),
            Cell::Int(i) => i.fmt(f),
        }
    }
}

/// A cell in JSON: what `text` gives, as a string (an integer as a number, nothing as
/// null), written straight into the output rather than first into a `String` of its own.
/// A stock-on-hand answer is some 100 000 cells.
impl Serialize for Cell {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Cell::Empty => s.serialize_none(),
            Cell::Text(t) => s.serialize_str(t),
            Cell::Int(i) => s.serialize_i64(*i),
            other => s.collect_str(other),
        }
    }
}

impl From<&str> for Cell {
    fn from(s: &str) -> Self {
        Cell::Text(s.into())
    }
}
impl From<String> for Cell {
    fn from(s: String) -> Self {
        Cell::Text(s.into())
    }
}
impl From<Quantity> for Cell {
    fn from(q: Quantity) -> Self {
        Cell::Qty(q)
    }
}
impl From<Money> for Cell {
    fn from(m: Money) -> Self {
        Cell::Money(m)
    }
}
impl From<NaiveDate> for Cell {
    fn from(d: NaiveDate) -> Self {
        Cell::Date(d)
    }
}
impl From<DateTime<Utc>> for Cell {
    fn from(t: DateTime<Utc>) -> Self {
        Cell::Time(t)
    }
}
impl<T: Into<Cell>> From<Option<T>> for Cell {
    fn from(o: Option<T>) -> Self {
        o.map(Into::into).unwrap_or(Cell::Empty)
    }
}

/// A titled table; rows are serialized as objects keyed by column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub name: String,
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Cell>>,
    pub totals: Option<Vec<Cell>>,
}

impl Table {
    pub fn new(name: &str, columns: &[(&str, &str, ColumnKind)]) -> Self {
        Table {
            name: name.to_string(),
            columns: columns
                .iter()
                .map(|(k, l, kind)| Column {
                    key: k.to_string(),
                    label: l.to_string(),
                    kind: *kind,
                })
                .collect(),
            rows: vec![],
            totals: None,
        }
    }

    pub fn push(&mut self, row: Vec<Cell>) {
        debug_assert_eq!(row.len(), self.columns.len(), "row width");
        self.rows.push(row);
    }
}

struct Row<'a>(&'a [Column], &'a [Cell]);

impl Serialize for Row<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (c, v) in self.0.iter().zip(self.1) {
            m.serialize_entry(&c.key, v)?;
        }
        m.end()
    }
}

impl Serialize for Table {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("name", &self.name)?;
        m.serialize_entry("columns", &self.columns)?;
        let rows: Vec<Row> = self.rows.iter().map(|r| Row(&self.columns, r)).collect();
        m.serialize_entry("rows", &rows)?;
        m.serialize_entry(
            "totals",
            &self.totals.as_ref().map(|t| Row(&self.columns, t)),
        )?;
        m.end()
    }
}

/// The ledger state a report was computed from: its audit head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AuditHead {
    pub seq: i64,
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Report {
    pub report: String,
    pub title: String,
    /// First business day included, if the report covers a period.
    pub from: Option<NaiveDate>,
    /// Last business day included (or the as-of day).
    pub to: Option<NaiveDate>,
    pub computed_at: DateTime<Utc>,
    pub audit_head: AuditHead,
    /// The parameters the report was asked for.
    pub parameters: Vec<(String, String)>,
    #[schema(value_type = Vec<Object>)]
    pub tables: Vec<Table>,
}

// ---------------------------------------------------------------- CSV

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn csv_line(out: &mut String, cells: impl IntoIterator<Item = String>) {
    let line: Vec<String> = cells.into_iter().map(|c| csv_field(&c)).collect();
    out.push_str(&line.join(","));
    out.push_str("\r\n");
}

/// CSV in UTF-8 with a byte-order mark, so Excel shows Chinese names. The report's heading
/// (title, period, time, audit head) comes first, then each table after a blank line.
pub fn to_csv(r: &Report) -> String {
    let mut out = String::from("\u{feff}");
    csv_line(&mut out, ["report".into(), r.title.clone()]);
    if let Some(f) = r.from {
        csv_line(&mut out, ["from".into(), f.to_string()]);
    }
    if let Some(t) = r.to {
        csv_line(&mut out, ["to".into(), t.to_string()]);
    }
    csv_line(
        &mut out,
        [
            "computed_at".into(),
            crate::domain::audit::timestamp(r.computed_at),
        ],
    );
    csv_line(
        &mut out,
        ["audit_head_seq".into(), r.audit_head.seq.to_string()],
    );
    csv_line(
        &mut out,
        ["audit_head_hash".into(), r.audit_head.hash.clone()],
    );
    for t in &r.tables {
        out.push_str("\r\n");
        csv_line(&mut out, [t.name.clone()]);
        csv_line(&mut out, t.columns.iter().map(|c| c.label.clone()));
        for row in &t.rows {
            csv_line(&mut out, row.iter().map(Cell::text));
        }
        if let Some(tot) = &t.totals {
            csv_line(&mut out, tot.iter().map(Cell::text));
        }
    }
    out
}

// ---------------------------------------------------------------- flows

/// What a movement does to stock on hand, for reports that sum by kind of flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Donor → warehouse.
    Received,
    /// Loss → warehouse (an adjustment that adds).
    Found,
    /// Transit → recipient (a delivery).
    Distributed,
    /// Warehouse or transit → loss (write-offs, delivery shortfalls).
    WrittenOff,
    /// A reversal crossing the stock boundary, either way.
    Reversal,
    /// Between stock-holding locations (dispatch, transfer, return): no change in total.
    Internal,
}

pub fn flow(m: &Movement) -> Flow {
    match (m.from.holds_stock(), m.to.holds_stock()) {
        (true, true) => Flow::Internal,
        _ if m.reverses_seq.is_some() => Flow::Reversal,
        (false, _) if m.from.kind == LocationKind::Loss => Flow::Found,
        (false, _) => Flow::Received,
        (true, false) if m.to.kind == LocationKind::Recipient => Flow::Distributed,
        (true, false) if m.to.kind == LocationKind::Loss => Flow::WrittenOff,
        // Out of stock to a donor happens only through a reversal.
        (true, false) => Flow::Reversal,
    }
}

/// +1 when the movement brings goods into stock on hand, −1 when it takes them out.
pub fn stock_sign(m: &Movement) -> i64 {
    match (m.from.holds_stock(), m.to.holds_stock()) {
        (false, true) => 1,
        (true, false) => -1,
        _ => 0,
    }
}

/// Quantity (thousandths) and value (cents) moved, as exact integers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Amount {
    pub qty: i64,
    pub cents: i64,
}

impl Amount {
    pub fn of(m: &Movement) -> Self {
        Amount {
            qty: m.quantity.to_scaled(),
            cents: m.value.to_scaled(),
        }
    }
    pub fn add(&mut self, other: Amount, sign: i64) {
        self.qty += sign * other.qty;
        self.cents += sign * other.cents;
    }
    pub fn quantity(self) -> Quantity {
        Quantity::from_scaled(self.qty)
    }
    pub fn money(self) -> Money {
        Money::from_scaled(self.cents)
    }
}

/// One item's roll-forward over a period: opening + received + found − distributed −
/// written off + reversals = closing, in quantity and in value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RollForward {
    pub opening: Amount,
    pub received: Amount,
    pub found: Amount,
    pub distributed: Amount,
    pub written_off: Amount,
    /// Net effect of reversals on stock (positive: back into stock).
    pub reversals: Amount,
    pub closing: Amount,
}

impl RollForward {
    /// Adds a movement of the period.
    pub fn add(&mut self, m: &Movement) {
        let a = Amount::of(m);
        match flow(m) {
            Flow::Received => self.received.add(a, 1),
            Flow::Found => self.found.add(a, 1),
            Flow::Distributed => self.distributed.add(a, 1),
            Flow::WrittenOff => self.written_off.add(a, 1),
            Flow::Reversal => self.reversals.add(a, stock_sign(m)),
            Flow::Internal => {}
        }
        self.closing.add(a, stock_sign(m));
    }

    /// The identity, which holds by construction; reports assert it before answering.
    pub fn holds(&self) -> bool {
        let mut expect = self.opening;
        expect.add(self.received, 1);
        expect.add(self.found, 1);
        expect.add(self.distributed, -1);
        expect.add(self.written_off, -1);
        expect.add(self.reversals, 1);
        expect == self.closing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ledger::location::Location;
    use crate::domain::ledger::movement::sample;
    use uuid::Uuid;

    fn mv(from: Location, to: Location, qty: &str, value: &str, reverses: Option<i64>) -> Movement {
        Movement {
            value: Money::parse(value).unwrap(),
            reverses_seq: reverses,
            ..sample(Uuid::nil(), from, to, Quantity::parse(qty).unwrap())
        }
    }

    #[test]
    fn a_cell_in_json_is_its_text_an_integer_a_number_nothing_null() {
        let t = chrono::DateTime::parse_from_rfc3339("2020-02-14T09:30:00Z")
            .unwrap()
            .to_utc();
        let cells = [
            Cell::from("75% 医用酒精 \"jin\""),
            Cell::from(Quantity::parse("2300.500").unwrap()),
            Cell::from(Money::parse("99999.5").unwrap()),
            Cell::from(NaiveDate::from_ymd_opt(2020, 2, 14).unwrap()),
            Cell::from(t),
        ];
        for c in &cells {
            assert_eq!(
                serde_json::to_value(c).unwrap(),
                serde_json::json!(c.text())
            );
        }
        assert_eq!(
            serde_json::to_value(Cell::Int(-3)).unwrap(),
            serde_json::json!(-3)
        );
        assert_eq!(
            serde_json::to_value(Cell::Empty).unwrap(),
            serde_json::Value::Null
        );
    }

    #[test]
    fn roll_forward_identity_over_every_kind_of_flow() {
        let (d, w, w2, t, r, l) = (
            Location::donor(Uuid::new_v4()),
            Location::warehouse(Uuid::new_v4()),
            Location::warehouse(Uuid::new_v4()),
            Location::transit(Uuid::new_v4()),
            Location::recipient(Uuid::new_v4()),
            Location::loss(Uuid::new_v4()),
        );
        let mut rf = RollForward {
            opening: Amount {
                qty: 5000,
                cents: 1750,
            },
            ..Default::default()
        };
        rf.closing = rf.opening;
        for m in [
            mv(d, w, "100", "350", None),
            mv(w, t, "40", "140", None),
            mv(t, r, "38", "125.40", None),
            mv(t, l, "2", "6.60", None),
            mv(l, w, "1", "3.5", None),
            mv(w, w2, "10", "35", None),
            mv(w, d, "20", "70", Some(1)),
            mv(r, t, "5", "16.50", Some(3)),
        ] {
            rf.add(&m);
        }
        assert!(rf.holds());
        assert_eq!(rf.received.quantity().to_string(), "100");
        assert_eq!(rf.reversals.quantity().to_string(), "-15");
        assert_eq!(rf.closing.quantity().to_string(), "51");
        assert_eq!(rf.distributed.money().to_string(), "125.4");
    }

    #[test]
    fn csv_has_a_bom_and_quotes_what_needs_it() {
        let mut t = Table::new(
            "t",
            &[
                ("name", "名称", ColumnKind::Text),
                ("qty", "数量", ColumnKind::Quantity),
            ],
        );
        t.push(vec![
            "a, \"b\"".into(),
            Quantity::parse("1.5").unwrap().into(),
        ]);
        let r = Report {
            report: "x".into(),
            title: "测试".into(),
            from: None,
            to: None,
            computed_at: Utc::now(),
            audit_head: AuditHead {
                seq: 3,
                hash: "h".into(),
            },
            parameters: vec![],
            tables: vec![t],
        };
        let csv = to_csv(&r);
        assert!(csv.starts_with("\u{feff}report,测试\r\n"));
        assert!(csv.contains("名称,数量\r\n\"a, \"\"b\"\"\",1.5\r\n"));
        assert!(csv.contains("audit_head_seq,3\r\n"));
    }
}

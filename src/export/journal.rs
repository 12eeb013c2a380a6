//! The movements as an hledger / ledger journal: items are commodities, locations are
//! accounts, estimated unit values are prices. `hledger balance ^stock` on the export gives
//! stock on hand per item, computed by a tool we did not write.

use std::fmt::Write;

use crate::domain::ledger::location::{Location, LocationKind};
use crate::domain::ledger::movement::Movement;

pub fn account(loc: Location) -> String {
    match loc.kind {
        LocationKind::Warehouse => format!("stock:warehouse:{}", loc.id),
        LocationKind::Transit => format!("stock:transit:{}", loc.id),
        LocationKind::Donor => format!("donors:{}", loc.id),
        LocationKind::Recipient => format!("recipients:{}", loc.id),
        LocationKind::Loss => format!("loss:{}", loc.id),
    }
}

/// A commodity symbol hledger accepts whatever the item code holds.
pub fn commodity(code: &str) -> String {
    format!("\"{}\"", code.replace('"', "'"))
}

pub fn header(seq: i64, hash: &str, movements: i64) -> String {
    format!(
        "; relief-ledger journal export\n\
         ; {movements} movements, audit head {seq} {hash}\n\
         ; Quantities are in each item's base unit; prices are estimated values per base unit.\n\
         ; Accounts: stock:warehouse:<id>, stock:transit:<document>, donors:<id>, recipients:<id>, loss:<warehouse>\n\n"
    )
}

/// One transaction per movement, dated by its business date.
pub fn transaction(out: &mut String, m: &Movement, code: &str, currency: &str) {
    let c = commodity(code);
    let price = m.unit_value;
    let _ = writeln!(
        out,
        "{} * {} {} line {}  ; seq:{}",
        m.occurred_at.date_naive(),
        m.document_type.as_str(),
        m.document_id,
        m.line_no,
        m.seq
    );
    let _ = writeln!(
        out,
        "    {}  {} {c} @ {price} {currency}",
        account(m.to),
        m.quantity
    );
    let _ = writeln!(
        out,
        "    {}  -{} {c} @ {price} {currency}",
        account(m.from),
        m.quantity
    );
    out.push('\n');
}

//! Lots: what one receipt line brought in, remembering where it came from.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::codes;
use crate::domain::parties::{Recipient, RecipientKind};
use crate::domain::validation::FieldErrors;

/// A donor's condition on who may receive their goods. Named recipients, if any, decide
/// alone; otherwise a recipient must be of a listed kind (if kinds are listed) and in a
/// listed region (if regions are listed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Earmark {
    #[serde(default)]
    pub recipient_kinds: Vec<RecipientKind>,
    /// Administrative code prefixes: 2 (province), 4 (city) or 6 (county) digits.
    #[serde(default)]
    pub region_prefixes: Vec<String>,
    #[serde(default)]
    pub recipient_ids: Vec<Uuid>,
}

impl Earmark {
    pub fn validate(&self, field: &str, e: &mut FieldErrors) {
        for (i, p) in self.region_prefixes.iter().enumerate() {
            e.check(
                &format!("{field}.region_prefixes[{i}]"),
                codes::region_prefix(p),
            );
        }
        if self.recipient_kinds.is_empty()
            && self.region_prefixes.is_empty()
            && self.recipient_ids.is_empty()
        {
            e.add(
                field,
                "an earmark must name recipient kinds, regions or recipients",
            );
        }
    }

    pub fn allows(&self, r: &Recipient) -> bool {
        if !self.recipient_ids.is_empty() {
            return self.recipient_ids.contains(&r.meta.id);
        }
        let kind_ok = self.recipient_kinds.is_empty() || self.recipient_kinds.contains(&r.kind);
        let region_ok = self.region_prefixes.is_empty()
            || self
                .region_prefixes
                .iter()
                .any(|p| r.region_code.starts_with(p.as_str()));
        kind_ok && region_ok
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Lot {
    pub id: Uuid,
    pub item_id: Uuid,
    pub lot_number: Option<String>,
    pub expiry_date: Option<NaiveDate>,
    pub manufactured_on: Option<NaiveDate>,
    pub donor_id: Uuid,
    pub pledge_id: Option<Uuid>,
    pub pledge_line_no: Option<i32>,
    /// The receipt that brought the lot in.
    pub receipt_id: Uuid,
    pub earmark: Option<Earmark>,
    pub on_hold: bool,
    pub hold_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub version: i64,
}

/// A usable lot for tests: no number, donor, receipt or earmark, created now.
#[cfg(test)]
pub(crate) fn sample(id: Uuid, item: Uuid, expiry: Option<&str>) -> Lot {
    Lot {
        id,
        item_id: item,
        lot_number: None,
        expiry_date: expiry.map(|e| e.parse().unwrap()),
        manufactured_on: None,
        donor_id: Uuid::nil(),
        pledge_id: None,
        pledge_line_no: None,
        receipt_id: Uuid::nil(),
        earmark: None,
        on_hold: false,
        hold_reason: None,
        created_at: Utc::now(),
        version: 1,
    }
}

/// Why a lot cannot be used for a shipment or transfer.
pub fn unusable_reason(lot: &Lot, on: NaiveDate, recipient: Option<&Recipient>) -> Option<String> {
    if lot.on_hold {
        return Some(format!(
            "lot {} is on hold{}",
            lot.id,
            lot.hold_reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ));
    }
    if let Some(exp) = lot.expiry_date {
        if exp < on {
            return Some(format!("lot {} expired on {exp}", lot.id));
        }
    }
    if let (Some(mark), Some(r)) = (&lot.earmark, recipient) {
        if !mark.allows(r) {
            return Some(format!(
                "lot {} is earmarked by its donor for other recipients",
                lot.id
            ));
        }
    }
    None
}

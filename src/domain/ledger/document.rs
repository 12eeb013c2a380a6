//! Documents: pledges, receipts, shipments, transfers and adjustments, and what clients
//! send to create and move them.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::lot::Earmark;
use crate::domain::decimal::{Money, Quantity};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DocType {
    Pledge,
    Receipt,
    Shipment,
    Transfer,
    Adjustment,
}

impl DocType {
    pub fn as_str(self) -> &'static str {
        match self {
            DocType::Pledge => "pledge",
            DocType::Receipt => "receipt",
            DocType::Shipment => "shipment",
            DocType::Transfer => "transfer",
            DocType::Adjustment => "adjustment",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DocStatus {
    // pledges
    Open,
    PartiallyReceived,
    Fulfilled,
    /// A pledge whose expected date has passed before it was fulfilled (shown, not stored).
    Expired,
    Cancelled,
    // receipts and adjustments
    Posted,
    // shipments and transfers
    Draft,
    Dispatched,
    Delivered,
    Returned,
    Received,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AdjustmentReason {
    Damaged,
    Expired,
    Lost,
    Found,
    CountCorrection,
    Other,
}

impl AdjustmentReason {
    /// Whether stock may go up (+1), down (-1) or either (0) for this reason.
    pub fn direction(self) -> i8 {
        match self {
            AdjustmentReason::Damaged | AdjustmentReason::Expired | AdjustmentReason::Lost => -1,
            AdjustmentReason::Found => 1,
            AdjustmentReason::CountCorrection | AdjustmentReason::Other => 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Shortfall {
    pub line_no: i32,
    #[schema(value_type = String)]
    pub quantity: Quantity,
    pub reason: String,
}

/// Fields that only some document types have. Stored as JSON beside the common columns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Details {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Pledges: when the goods are expected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_date: Option<NaiveDate>,
    /// Pledges: who the goods are for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earmark: Option<Earmark>,
    /// Adjustments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<AdjustmentReason>,
    /// Adjustments made by a stock count.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stock_count: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatched_at: Option<DateTime<Utc>>,
    /// Shipments: who signed for the goods, and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shortfalls: Vec<Shortfall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub returned_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled_at: Option<DateTime<Utc>>,
    /// Why a pledge or shipment was cancelled, a shipment returned, or a document reversed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Line {
    pub line_no: i32,
    pub item_id: Uuid,
    /// The lot named on the line (receipts: the lot it created; shipments and transfers: a
    /// lot chosen by the client, or absent when lots are allocated automatically).
    pub lot_id: Option<Uuid>,
    /// In the item's base unit. Signed for adjustments (the change to stock).
    #[schema(value_type = String)]
    pub quantity: Quantity,
    /// The unit and amount as the client entered them (2300 jin).
    pub unit: String,
    pub unit_quantity: String,
    pub pledge_line_no: Option<i32>,
    #[schema(value_type = Option<String>)]
    pub declared_value: Option<Money>,
    #[serde(flatten)]
    pub details: LineDetails,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LineDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lot_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry_date: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manufactured_on: Option<NaiveDate>,
    /// Stock counts: the counted quantity that produced this line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub counted: Option<Quantity>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Document {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub doc_type: DocType,
    pub status: DocStatus,
    /// Receipts, adjustments and shipments: the warehouse; transfers: the source.
    pub warehouse_id: Option<Uuid>,
    /// Transfers: the destination.
    pub to_warehouse_id: Option<Uuid>,
    pub donor_id: Option<Uuid>,
    pub recipient_id: Option<Uuid>,
    pub pledge_id: Option<Uuid>,
    /// The business date of the document.
    pub occurred_at: DateTime<Utc>,
    #[serde(flatten)]
    pub details: Details,
    /// Set on a reversal: the document it undoes.
    pub reverses_id: Option<Uuid>,
    /// Set on a document that has been reversed.
    pub reversed_by_id: Option<Uuid>,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
    pub lines: Vec<Line>,
}

impl Document {
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.version)
    }
}

// ---------------------------------------------------------------- inputs

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PledgeInput {
    pub donor_id: Uuid,
    #[serde(default)]
    pub expected_date: Option<NaiveDate>,
    #[serde(default)]
    pub earmark: Option<Earmark>,
    #[serde(default)]
    pub note: Option<String>,
    pub lines: Vec<PledgeLineInput>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PledgeLineInput {
    pub item_id: Uuid,
    /// Decimal string, in `unit`.
    #[schema(example = "2300")]
    pub quantity: String,
    /// The item's base unit or one of its units; the base unit if absent.
    #[serde(default)]
    #[schema(example = "jin")]
    pub unit: Option<String>,
    /// What the donor says the line is worth.
    #[serde(default)]
    pub declared_value: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiptInput {
    pub warehouse_id: Uuid,
    pub donor_id: Uuid,
    #[serde(default)]
    pub pledge_id: Option<Uuid>,
    /// When the goods arrived; now if absent. At most 30 days back, never ahead.
    #[serde(default)]
    pub occurred_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub note: Option<String>,
    pub lines: Vec<ReceiptLineInput>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiptLineInput {
    pub item_id: Uuid,
    pub quantity: String,
    #[serde(default)]
    pub unit: Option<String>,
    /// The pledge line this receives against (1-based), with `pledge_id` on the receipt.
    #[serde(default)]
    pub pledge_line_no: Option<i32>,
    #[serde(default)]
    pub lot_number: Option<String>,
    #[serde(default)]
    pub expiry_date: Option<NaiveDate>,
    #[serde(default)]
    pub manufactured_on: Option<NaiveDate>,
    #[serde(default)]
    pub declared_value: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutLineInput {
    pub item_id: Uuid,
    pub quantity: String,
    #[serde(default)]
    pub unit: Option<String>,
    /// Take this lot; otherwise lots are allocated earliest expiry first, then oldest.
    #[serde(default)]
    pub lot_id: Option<Uuid>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShipmentInput {
    pub warehouse_id: Uuid,
    pub recipient_id: Uuid,
    #[serde(default)]
    pub occurred_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub note: Option<String>,
    /// Dispatch at once instead of leaving a draft.
    #[serde(default)]
    pub dispatch: bool,
    pub lines: Vec<OutLineInput>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepInput {
    /// When it happened; now if absent.
    #[serde(default)]
    pub occurred_at: Option<DateTime<Utc>>,
    /// Why (cancel, return, reverse).
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliverInput {
    /// The person who signed for the goods at the recipient.
    pub signed_by: String,
    #[serde(default)]
    pub delivered_at: Option<DateTime<Utc>>,
    /// Quantities that did not arrive; they are written off to loss.
    #[serde(default)]
    pub shortfalls: Vec<ShortfallInput>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShortfallInput {
    pub line_no: i32,
    /// In the item's base unit.
    pub quantity: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferInput {
    pub warehouse_id: Uuid,
    pub to_warehouse_id: Uuid,
    #[serde(default)]
    pub occurred_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub note: Option<String>,
    pub lines: Vec<OutLineInput>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustmentInput {
    pub warehouse_id: Uuid,
    pub reason: AdjustmentReason,
    /// Required when the reason is `other`.
    #[serde(default)]
    pub note: Option<String>,
    #[serde(default)]
    pub occurred_at: Option<DateTime<Utc>>,
    pub lines: Vec<AdjustmentLineInput>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustmentLineInput {
    pub lot_id: Uuid,
    /// The change to stock in base units: negative takes away, positive adds.
    #[schema(example = "-50")]
    pub quantity: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StockCountInput {
    pub warehouse_id: Uuid,
    #[serde(default)]
    pub occurred_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub note: Option<String>,
    pub lines: Vec<CountLineInput>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CountLineInput {
    pub lot_id: Uuid,
    /// What is on the shelf, in base units.
    pub counted: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldInput {
    pub reason: String,
}

//! Where goods can be. Warehouses and goods in transit hold stock; donors (where goods come
//! from), recipients (where they end up) and loss are virtual, so every movement has two
//! sides and, for each item, all locations always sum to zero.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum LocationKind {
    Warehouse,
    /// Goods dispatched and not yet delivered or received; one location per document.
    Transit,
    /// The source: goods enter the ledger from their donor.
    Donor,
    /// The sink: goods leave the ledger to their recipient.
    Recipient,
    /// Written off (damaged, expired, lost, short on delivery), per warehouse.
    Loss,
}

impl LocationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LocationKind::Warehouse => "warehouse",
            LocationKind::Transit => "transit",
            LocationKind::Donor => "donor",
            LocationKind::Recipient => "recipient",
            LocationKind::Loss => "loss",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Warehouse,
            Self::Transit,
            Self::Donor,
            Self::Recipient,
            Self::Loss,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
pub struct Location {
    pub kind: LocationKind,
    /// The warehouse, document (transit), donor or recipient; for loss, the warehouse.
    pub id: Uuid,
}

impl Location {
    pub fn warehouse(id: Uuid) -> Self {
        Self {
            kind: LocationKind::Warehouse,
            id,
        }
    }
    pub fn transit(document: Uuid) -> Self {
        Self {
            kind: LocationKind::Transit,
            id: document,
        }
    }
    pub fn donor(id: Uuid) -> Self {
        Self {
            kind: LocationKind::Donor,
            id,
        }
    }
    pub fn recipient(id: Uuid) -> Self {
        Self {
            kind: LocationKind::Recipient,
            id,
        }
    }
    pub fn loss(warehouse: Uuid) -> Self {
        Self {
            kind: LocationKind::Loss,
            id: warehouse,
        }
    }

    /// Stock on hand is what warehouses and transit hold; only these may never go negative.
    pub fn holds_stock(&self) -> bool {
        matches!(self.kind, LocationKind::Warehouse | LocationKind::Transit)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.as_str(), self.id)
    }
}

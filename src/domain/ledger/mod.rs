//! The supply ledger's rules: locations, lots, documents, movements, and the pure
//! functions that turn a validated request into the rows to write.

pub mod document;
pub mod location;
pub mod lot;
pub mod movement;
pub mod plan;

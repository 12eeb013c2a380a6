//! The rules of the ledger, free of HTTP and SQL: values, validation, permissions and the
//! audit chain. Everything here is a plain type or a pure function, unit-tested in place.

pub mod access;
pub mod audit;
pub mod canonical;
pub mod catalog;
pub mod codes;
pub mod decimal;
pub mod ledger;
pub mod parties;
pub mod record;
pub mod report;
pub mod validation;

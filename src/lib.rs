//! relief-ledger: an append-only, audited ledger of donated relief supplies.
//!
//! Layers, outermost first: `api` (HTTP: routing, extraction, problem+json) calls `service`
//! (one function per operation: validate, generate, apply), which uses `domain` (pure rules
//! and types) and `store` (the only SQL). See docs/architecture.md.

pub mod api;
pub mod cli;
pub mod demo;
pub mod domain;
pub mod error;
pub mod export;
pub mod service;
pub mod store;

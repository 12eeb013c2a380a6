//! HTTP tests against the real server. One test binary, so it builds and links once.

mod access;
mod audit;
mod bad_input;
mod cli;
mod helpers;
mod ledger;
mod master_data;
mod migrations;
mod reliability;
mod reports;

//! Output formats that are not JSON: spreadsheets for people, and a plain-text accounting
//! journal for tools we did not write.

pub mod journal;
pub mod xlsx;

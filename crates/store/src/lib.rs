//! # smpx-store — persistence for the services
//!
//! One storage layer, two backends chosen by URL: SQLite (`sqlite:///path/file.db`, the
//! embedded default) and PostgreSQL (`postgres://…`, for operators and coordinators that
//! outgrow one machine). Both run the *same* SQL through sqlx's `Any` driver; the few dialect
//! differences (auto-increment keys, blob type) are substituted in the schema only.
//!
//! Safety never depends on a process-local lock: double publish and double redemption are
//! stopped by primary keys and by conditional updates (`UPDATE … WHERE state = 'live'`) inside
//! transactions, which both databases serialise. Several processes may share one PostgreSQL
//! database.
//!
//! Modules own one service's tables and transactions each: [`coordinator`], [`issuer`],
//! [`operator`], [`directory`]. The same test suite runs against both backends (`tests/`).

pub mod coordinator;
pub mod credits;
pub mod db;
pub mod directory;
pub mod issuer;
pub mod operator;
#[cfg(feature = "test-util")]
pub mod scratch;

pub use db::{Backend, Db, StoreError};

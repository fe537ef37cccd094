//! # smpx-relay-store — where a relay keeps its queues: memory, an append-only log, SQL
//!
//! This crate owns the backends of the server's [`QueueStore`] contract (defined in
//! `smpx-relay-server`, re-exported here): everything in memory, memory plus an append-only
//! log file (the fast mode), and SQLite/PostgreSQL through sqlx. Keeping them apart from the
//! contract means a server (or a test) links sqlx only when it chooses the SQL backend.
//!
//! A backend answers only after what it reports is durable: once `push` returns
//! [`PushOutcome::Accepted`] a restart, or the process killed with SIGKILL, loses nothing.
//!
//! | backend | holds | durable against | notes |
//! |---|---|---|---|
//! | [`memory::MemoryStore`] | memory | nothing | tests |
//! | [`log::LogStore`] | memory + append-only log file | process kill; power loss with [`log::FsyncPolicy::Batch`] or `Every` | the fast mode; log format and compaction in [`log`] |
//! | [`sql::SqlStore`] | SQLite (WAL, `synchronous=NORMAL`) or PostgreSQL | process kill (SQLite); power loss (PostgreSQL, default settings) | group commit; schema in [`sql`] |
//!
//! The same conformance suite (`tests/it/conformance.rs`) runs against all four; the
//! durability tests (`tests/it/durability.rs`) SIGKILL a writing process (pushes and acks,
//! or channel posts) and check that every acknowledged change is there after reopening;
//! `tests/it/channels.rs` covers the log's channel records (replay, compaction) and the
//! SQL migration of a database made before channels.
//!

pub mod log;
pub mod memory;
pub mod sql;

pub use smpx_relay_server::store::*;

//! A transparency log's building blocks: the Merkle tree and its proofs, signed notes,
//! checkpoints and cosignatures, as pure code (no storage, no clock).
//!
//! A directory appends every registration, withdrawal, status snapshot and share statement
//! to a log, signs checkpoints of it, and other directories cosign those checkpoints after
//! checking that each one extends the last: a directory that shows two different logs to
//! two audiences is caught by the first witness that sees both.
//!
//! | module | what | specification |
//! |---|---|---|
//! | [`merkle`] | leaf / node hashes, tree hash, inclusion and consistency proofs | RFC 9162 §2.1 (= RFC 6962 §2.1) |

pub mod merkle;

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
//! | [`note`] | signed notes, Ed25519 note keys, verifier key strings | C2SP `signed-note` |
//! | [`checkpoint`] | the checkpoint text, signed and opened as a note | C2SP `tlog-checkpoint` |
//! | [`cosignature`] | a witness's timestamped cosignature of a checkpoint | C2SP `tlog-cosignature` (Ed25519, `cosignature/v1`) |
//!
//! Each module is tested against published vectors (transparency-dev/merkle's test data,
//! Go's `sumdb/note` keys and notes, a `sum.golang.org` checkpoint, the C2SP examples) or,
//! where none with a private key exists (cosignatures), against an independent
//! implementation's output kept in `testdata/`.

pub mod checkpoint;
pub mod cosignature;
pub mod merkle;
pub mod note;

pub use checkpoint::{Checkpoint, CheckpointError};
pub use cosignature::{CosignatureError, Cosigner};
pub use merkle::{Hash, MemoryTree, Subtrees};
pub use note::{
    KeyError, KeyType, Note, NoteError, NoteSigner, SignatureLine, Verified, VerifierKey,
};

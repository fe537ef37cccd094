//! The directory's transparency log (issue 14): every accepted registration, withdrawal,
//! share statement and one status snapshot per probe round is appended to an RFC 6962
//! Merkle log, and the directory signs checkpoints of it (C2SP `tlog-checkpoint` as a
//! `signed-note`), so what it told one client it cannot later deny or tell another
//! differently without a witness or client holding two conflicting signed checkpoints.
//!
//! # Entries
//!
//! An entry is a kind and a text body ([`LogEntry`]); its Merkle leaf is the RFC 6962 leaf
//! hash of `kind || "\n" || body`:
//!
//! | kind | body | appended |
//! |---|---|---|
//! | `registration` | the [`RegistrationRequest`](smpx_core::directory::wire::RegistrationRequest) as accepted, as JSON (both signatures inside, so anyone can check them again) | with the registration, in its transaction |
//! | `withdrawal` | the signed [`Withdrawal`](smpx_core::directory::wire::Withdrawal), as JSON | with the withdrawal |
//! | `statement` | the signed share statement's text, exactly as stored and served | with the statement |
//! | `snapshot` | [`snapshot_body`]: every published relay's status after a probe round | after each round |
//!
//! The snapshot is compact JSON with a fixed member order and no floating point, so one
//! state has one spelling:
//!
//! ```text
//! {"at":<unix seconds>,"relays":[{"fingerprint":"<hex>","status":"running|down|unprobed",
//!  "flags":["running","stable","fast","probation" — those held, in this order],
//!  "uptime_ppm":<weighted fractional uptime in millionths, rounded>}, …by fingerprint]}
//! ```
//!
//! (`snapshot_golden_vector` below is its test vector.)
//!
//! Indices are dense from 0: the store hands them out from a counter row inside each
//! appending transaction ([`smpx_store::directory`]), so a change and its entry commit
//! together or not at all.
//!
//! # Checkpoints and the key
//!
//! The origin is `<config name>/<first 8 bytes of the statement key, hex>`, spaces and `+`
//! in the name replaced by `-` (a note key name may hold neither): stable for as long as
//! the key, and distinct between two directories that kept the default name. The log signs
//! with the directory's **statement key** (as an Ed25519 note key named by the origin):
//! whoever already pins a directory's statement key (a coordinator, a wallet) knows its log
//! key without another key to distribute, and the two uses cannot be confused — every
//! other smpx signature is over a domain-framed message that starts with a zero byte
//! ([`smpx_core::crypto::sign`]), which no note text can (notes hold no control characters).
//!
//! A checkpoint is signed after each probe round and on demand: `GET /v1/log/checkpoint`
//! signs one when the log has grown since the latest. Signed checkpoints are kept, so a
//! restarted directory serves the same latest one and its next extends it.
//!
//! # Proofs
//!
//! Proofs are generated from a [`MemoryTree`] of every perfect subtree, built from the
//! stored leaf hashes at the first request after a start and extended by the entries
//! appended since at each later one. It holds about two hashes per entry (64 MB at 10^6
//! entries) and a proof costs O(log n) lookups; a restart rehashes every leaf once (about a
//! second at 10^6). Storing the perfect-subtree hashes in SQL would remove both costs and
//! is the step to take when the log grows past that.

use crate::view::Snapshot;
use crate::Directory;
use serde::Serialize;
use smpx_core::crypto::sign::SigningKey;
use smpx_core::tlog::merkle::{self, MissingSubtree, PositionError, ProveError};
use smpx_core::tlog::{Checkpoint, CheckpointError, Hash, MemoryTree, NoteSigner, VerifierKey};
use smpx_store::directory::{CheckpointRow, LogEntry, LogKind};
use smpx_store::StoreError;

pub use smpx_store::directory::LogRow;

/// The most entries one `GET /v1/log/entries` returns.
pub const MAX_ENTRIES_PAGE: u64 = 1000;

/// Leaf hashes read per query while the proof tree catches up.
const SYNC_PAGE: u32 = 10_000;

/// Why a log operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// A requested position does not exist in the log (or is not a valid pair).
    #[error(transparent)]
    Position(#[from] PositionError),
    /// The requested tree is larger than the log.
    #[error("the log has {size} entries, fewer than the {asked} asked for")]
    BeyondLog { asked: u64, size: u64 },
    #[error("proof tree: {0}")]
    Tree(#[from] MissingSubtree),
}

impl From<ProveError<MissingSubtree>> for LogError {
    fn from(e: ProveError<MissingSubtree>) -> Self {
        match e {
            ProveError::Position(p) => LogError::Position(p),
            ProveError::Store(m) => LogError::Tree(m),
        }
    }
}

/// The log's origin line for a directory named `name` whose statement key is `key`.
pub fn origin(name: &str, key: &SigningKey) -> String {
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() || c == '+' {
                '-'
            } else {
                c
            }
        })
        .collect();
    let name = if name.is_empty() {
        "smpx-directory"
    } else {
        &name
    };
    let public = key.verifying_key().0;
    format!("{name}/{}", hex::encode(&public[..8]))
}

/// The log's signer and its proof tree.
pub struct LogState {
    origin: String,
    signer: NoteSigner,
    tree: tokio::sync::Mutex<MemoryTree>,
}

impl LogState {
    pub fn new(name: &str, key: &SigningKey) -> LogState {
        let origin = origin(name, key);
        let signer = match NoteSigner::new(&origin, &key.to_bytes()) {
            Ok(signer) => signer,
            // `origin` replaces every character a key name may not hold and is never empty.
            Err(e) => unreachable!("the log origin {origin:?} is built valid: {e}"),
        };
        LogState {
            origin,
            signer,
            tree: tokio::sync::Mutex::new(MemoryTree::new()),
        }
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The verifier key clients open the checkpoints with.
    pub fn verifier_key(&self) -> VerifierKey {
        self.signer.verifier_key()
    }
}

/// The proof tree, caught up with every committed entry.
async fn synced(dir: &Directory) -> Result<tokio::sync::MutexGuard<'_, MemoryTree>, StoreError> {
    let mut tree = dir.log.tree.lock().await;
    loop {
        let leaves = dir.store.log_leaf_hashes(tree.size(), SYNC_PAGE).await?;
        let full = leaves.len() == SYNC_PAGE as usize;
        for leaf in leaves {
            tree.push(leaf);
        }
        if !full {
            return Ok(tree);
        }
    }
}

/// The latest signed checkpoint, signing a new one first when the log has grown since (or
/// none was ever signed).
pub async fn checkpoint(dir: &Directory) -> Result<CheckpointRow, LogError> {
    let tree = synced(dir).await?;
    let latest = dir.store.latest_checkpoint().await?;
    if let Some(latest) = latest.filter(|c| c.size >= tree.size()) {
        return Ok(latest);
    }
    let size = tree.size();
    let root = tree.root_at(size)?;
    let note = Checkpoint::new(&dir.log.origin, size, root)?
        .sign(&dir.log.signer)?
        .render();
    let row = CheckpointRow {
        size,
        note,
        signed_at: dir.clock.now(),
    };
    dir.store.put_checkpoint(&row).await?;
    Ok(row)
}

/// Entries `[start, end)`, at most [`MAX_ENTRIES_PAGE`]; `start` must be an entry.
pub async fn entries(dir: &Directory, start: u64, end: u64) -> Result<Vec<LogRow>, LogError> {
    let size = dir.store.log_size().await?;
    if start >= size || end <= start {
        return Err(PositionError::IndexOutOfRange { index: start, size }.into());
    }
    let end = end.min(size).min(start.saturating_add(MAX_ENTRIES_PAGE));
    Ok(dir.store.log_entries(start, end).await?)
}

/// The inclusion proof of entry `index` in the tree of `size` entries.
pub async fn inclusion(dir: &Directory, index: u64, size: u64) -> Result<Vec<Hash>, LogError> {
    let tree = within(dir, size).await?;
    Ok(merkle::inclusion_proof(&*tree, index, size)?)
}

/// The consistency proof from the tree of `from` entries to the one of `to`. From 0 (or
/// to the same size) it is empty: there is nothing to prove.
pub async fn consistency(dir: &Directory, from: u64, to: u64) -> Result<Vec<Hash>, LogError> {
    let tree = within(dir, to).await?;
    if from > to {
        return Err(PositionError::SizeDecreased { old: from, new: to }.into());
    }
    if from == 0 {
        return Ok(Vec::new());
    }
    Ok(merkle::consistency_proof(&*tree, from, to)?)
}

async fn within(
    dir: &Directory,
    size: u64,
) -> Result<tokio::sync::MutexGuard<'_, MemoryTree>, LogError> {
    let tree = synced(dir).await?;
    if size > tree.size() {
        return Err(LogError::BeyondLog {
            asked: size,
            size: tree.size(),
        });
    }
    Ok(tree)
}

#[derive(Serialize)]
struct SnapshotBody<'a> {
    at: u64,
    relays: Vec<SnapshotRelay<'a>>,
}

#[derive(Serialize)]
struct SnapshotRelay<'a> {
    fingerprint: &'a str,
    status: &'a str,
    flags: &'a [String],
    uptime_ppm: u32,
}

/// The `snapshot` entry's body for `snap` (format in the module docs).
pub fn snapshot_body(snap: &Snapshot) -> String {
    let mut relays: Vec<SnapshotRelay<'_>> = snap
        .relays
        .iter()
        .map(|r| SnapshotRelay {
            fingerprint: &r.fingerprint,
            status: &r.status,
            flags: &r.flags,
            // Clamped into [0, 1] first, so the cast is exact and total.
            uptime_ppm: (r.uptime.clamp(0.0, 1.0) * 1e6).round() as u32,
        })
        .collect();
    relays.sort_by(|a, b| a.fingerprint.cmp(b.fingerprint));
    let body = SnapshotBody {
        at: snap.now,
        relays,
    };
    // Serialising plain strings and integers cannot fail.
    serde_json::to_string(&body).unwrap_or_default()
}

/// Appends the status snapshot of the current judged view (after a probe round).
pub async fn append_snapshot(dir: &Directory) -> Result<u64, LogError> {
    let snap = crate::view::current(dir).await?;
    let entry = LogEntry::new(LogKind::Snapshot, snapshot_body(&snap));
    Ok(dir.store.append_log(&entry, snap.now).await?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::view::RelayView;
    use smpx_core::rules::measure::Thresholds;

    fn relay(fingerprint: &str, status: &str, flags: &[&str], uptime: f64) -> RelayView {
        RelayView {
            fingerprint: fingerprint.into(),
            address: format!("smpx://{fingerprint}@relay.example:5223"),
            operator_id: "op".into(),
            region: "eu".into(),
            status: status.into(),
            flags: flags.iter().map(|f| f.to_string()).collect(),
            uptime,
            mtbf_secs: 0.0,
            current_run_secs: 0,
            latency_p50_ms: None,
            latency_p99_ms: None,
            age_secs: 0,
            registered_at: 0,
            counted: true,
            counted_reason: None,
            probation: false,
            last_probe_at: None,
            last_heartbeat_at: None,
            metadata: Default::default(),
            info: serde_json::Value::Null,
        }
    }

    /// The snapshot body's golden vector: relays by fingerprint whatever their order in the
    /// view, uptime in millionths (rounded, clamped), nothing but the four fields.
    #[test]
    fn snapshot_golden_vector() {
        let snap = Snapshot {
            now: 1_700_000_000,
            relays: vec![
                relay("bb", "down", &[], 0.25),
                relay("aa", "running", &["running", "stable"], 0.9999996),
                relay("cc", "unprobed", &["probation"], 1.5),
            ],
            thresholds: Thresholds {
                stable_mtbf_secs: 0.0,
                fast_latency_ms: 0,
                probation_secs: 0,
                running_fresh_secs: 0,
            },
        };
        let body = snapshot_body(&snap);
        assert_eq!(
            body,
            concat!(
                r#"{"at":1700000000,"relays":["#,
                r#"{"fingerprint":"aa","status":"running","flags":["running","stable"],"uptime_ppm":1000000},"#,
                r#"{"fingerprint":"bb","status":"down","flags":[],"uptime_ppm":250000},"#,
                r#"{"fingerprint":"cc","status":"unprobed","flags":["probation"],"uptime_ppm":1000000}"#,
                "]}"
            )
        );
        let leaf = LogEntry::new(LogKind::Snapshot, body.clone()).leaf_hash();
        let mut data = b"snapshot\n".to_vec();
        data.extend_from_slice(body.as_bytes());
        assert_eq!(leaf, merkle::leaf_hash(&data));
    }

    #[test]
    fn origin_is_a_valid_key_name_and_names_the_key() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let o = origin("my dir+x", &key);
        let prefix = hex::encode(&key.verifying_key().0[..8]);
        assert_eq!(o, format!("my-dir-x/{prefix}"));
        assert!(smpx_core::tlog::note::is_valid_name(&o));
        assert_eq!(origin("", &key), format!("smpx-directory/{prefix}"));
        let other = SigningKey::from_bytes(&[8; 32]);
        assert_ne!(
            origin("smpx-directory", &key),
            origin("smpx-directory", &other)
        );
        let odd = origin("a\tb\u{7}c d", &key);
        assert_eq!(odd, format!("a-b-c-d/{prefix}"));
        assert_eq!(LogState::new("a\tb\u{7}c d", &key).origin(), odd);
    }
}

//! v0.2 keys and proof verification.
//!
//! The verifying key comes only from a ceremony transcript (`<home>/ceremony.transcript`)
//! that verifies in full for the network's MMR levels ([`ZkKeys::load`]); a transcript that
//! does not verify stops the coordinator from starting. Without a transcript the coordinator
//! serves v0.1 only and says so. Verifying takes tens of seconds on a small machine, so
//! the result is kept in `<home>/ceremony.verified`, keyed by the transcript's SHA-256 and
//! the levels: a restart with the same transcript uses it, any other transcript is
//! verified again. (The cache is trusted as the rest of the home directory is: whoever can
//! write it can also replace the transcript, the keys and the database.)
//!
//! Proofs are checked by a [`Verifier`]: requests that arrive while a batch is being checked
//! queue up and are checked together with one random linear combination
//! (`smpx_zk::verify_batch`, about 4× cheaper per proof than one by one); if a batch fails,
//! its proofs are checked one by one so one bad proof never fails the others.

use sha2::{Digest, Sha256};
use smpx_core::api::ZkInfo;
use smpx_core::crypto::b64;
use smpx_zk::{PreparedVerifyingKey, RedeemProof, RedeemPublic};
use std::path::Path;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Mutex};

/// File name of the ceremony transcript in the coordinator's directory.
pub const TRANSCRIPT_FILE: &str = "ceremony.transcript";

/// File name of the record that a transcript verified (beside it).
pub const VERIFIED_FILE: &str = "ceremony.verified";

/// What `ceremony.verified` holds: the transcript and levels verified, and the key found.
#[derive(serde::Serialize, serde::Deserialize)]
struct Verified {
    transcript_sha256: String,
    levels: u32,
    /// The verifying key, base64url.
    verifying_key: String,
}

/// The verifying key recorded for exactly this transcript and levels, if any.
fn recorded(dir: &Path, sha256: &str, levels: u32) -> Option<smpx_zk::VerifyingKey> {
    let bytes = std::fs::read(dir.join(VERIFIED_FILE)).ok()?;
    let v: Verified = serde_json::from_slice(&bytes).ok()?;
    if v.transcript_sha256 != sha256 || v.levels != levels {
        return None;
    }
    let vk = smpx_zk::VerifyingKey::from_bytes(&b64::decode(&v.verifying_key).ok()?).ok()?;
    (vk.levels() == levels).then_some(vk)
}

fn record(dir: &Path, keys: &ZkKeys) {
    let v = Verified {
        transcript_sha256: keys.info.transcript_sha256.clone(),
        levels: keys.info.levels,
        verifying_key: keys.info.verifying_key.clone(),
    };
    let written = serde_json::to_vec_pretty(&v)
        .map_err(|e| e.to_string())
        .and_then(|b| {
            smpx_os::fs::write_atomic(&dir.join(VERIFIED_FILE), &b, smpx_os::fs::Access::Public)
                .map_err(|e| e.to_string())
        });
    if let Err(e) = written {
        // Only the next start is slower.
        tracing::warn!(error = %e, "could not record that the transcript verified");
    }
}

/// Verifies a serialised transcript in full for `levels`; its verifying key.
fn verify(
    bytes: &[u8],
    levels: u32,
    progress: &dyn smpx_ceremony::Progress,
) -> Result<smpx_zk::VerifyingKey, smpx_zk::ZkError> {
    let transcript =
        smpx_ceremony::Transcript::from_bytes(bytes).map_err(smpx_zk::ZkError::from)?;
    let (_, vk) = smpx_zk::ceremony::verified_keys(levels, &transcript, progress)?;
    Ok(vk)
}

/// Most proofs checked in one batch.
const MAX_BATCH: usize = 256;

/// The verified v0.2 keys and the transcript they came from (served to wallets).
#[derive(Clone)]
pub struct ZkKeys {
    pub(crate) pvk: PreparedVerifyingKey,
    /// Proof-verifying workers (default: one per core).
    pub(crate) workers: Option<usize>,
    pub(crate) info: ZkInfo,
    pub(crate) transcript: Arc<Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ZkKeysError {
    #[error("cannot read the ceremony transcript {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the ceremony transcript {path} is not acceptable: {source}")]
    Rejected {
        path: String,
        source: smpx_zk::ZkError,
    },
}

impl ZkKeys {
    /// Reads `<dir>/ceremony.transcript` if it exists and verifies it for `levels`
    /// (every contribution, the beacon, the circuit). `Ok(None)` if there is no transcript.
    pub fn load(
        dir: &Path,
        levels: u32,
        progress: &dyn smpx_ceremony::Progress,
    ) -> Result<Option<ZkKeys>, ZkKeysError> {
        let path = dir.join(TRANSCRIPT_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(ZkKeysError::Read {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        let rejected = |source| ZkKeysError::Rejected {
            path: path.display().to_string(),
            source,
        };
        // Hashed once: the digest both finds the record and is served in `GET /v1/zk`.
        let sha256 = hex::encode(Sha256::digest(&bytes));
        if let Some(vk) = recorded(dir, &sha256, levels) {
            tracing::info!(transcript_sha256 = %sha256, "this transcript verified before; not verifying it again");
            return Self::keys(bytes, &vk, sha256).map(Some).map_err(rejected);
        }
        let vk = verify(&bytes, levels, progress).map_err(rejected)?;
        let keys = Self::keys(bytes, &vk, sha256).map_err(rejected)?;
        record(dir, &keys);
        Ok(Some(keys))
    }

    /// Verifies a transcript and keeps its verifying key.
    pub fn from_transcript(
        bytes: Vec<u8>,
        levels: u32,
        progress: &dyn smpx_ceremony::Progress,
    ) -> Result<ZkKeys, smpx_zk::ZkError> {
        let vk = verify(&bytes, levels, progress)?;
        Self::from_verified(bytes, &vk)
    }

    /// Keys from a transcript the caller has just verified with
    /// `smpx_zk::ceremony::verified_keys` (as `smpx_zk::devnet::cached_local_ceremony`
    /// does), without verifying it again.
    pub fn from_verified(
        bytes: Vec<u8>,
        vk: &smpx_zk::VerifyingKey,
    ) -> Result<ZkKeys, smpx_zk::ZkError> {
        let sha256 = hex::encode(Sha256::digest(&bytes));
        Self::keys(bytes, vk, sha256)
    }

    /// The keys of a verified transcript whose SHA-256 (hex) is `transcript_sha256`.
    fn keys(
        bytes: Vec<u8>,
        vk: &smpx_zk::VerifyingKey,
        transcript_sha256: String,
    ) -> Result<ZkKeys, smpx_zk::ZkError> {
        let info = ZkInfo {
            levels: vk.levels(),
            verifying_key: b64::encode(&vk.to_bytes()?),
            transcript_sha256,
            transcript_bytes: bytes.len() as u64,
        };
        Ok(ZkKeys {
            pvk: vk.prepare(),
            workers: None,
            info,
            transcript: Arc::new(bytes),
        })
    }

    /// What `GET /v1/zk` says of these keys: levels, verifying key, transcript digest.
    pub fn info(&self) -> &ZkInfo {
        &self.info
    }

    pub fn levels(&self) -> u32 {
        self.info.levels
    }

    /// Verify proofs on `n` blocking threads instead of one per core (benchmarks confine a
    /// service to one core).
    pub fn with_workers(mut self, n: usize) -> Self {
        self.workers = Some(n.max(1));
        self
    }
}

/// Why a proof was not accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    /// Not a well-formed 128-byte proof.
    Malformed(String),
    /// Well-formed, but false for these public inputs.
    Invalid,
}

struct Job {
    public: RedeemPublic,
    proof: Vec<u8>,
    reply: oneshot::Sender<Verdict>,
}

/// Batches concurrent proof checks (see the module docs).
pub struct Verifier {
    tx: mpsc::Sender<Job>,
}

impl Verifier {
    /// Starts `workers` batch workers (one per core is right: each runs one batch at a time
    /// on the blocking pool).
    pub fn start(pvk: PreparedVerifyingKey, workers: usize) -> Verifier {
        let (tx, rx) = mpsc::channel::<Job>(4 * MAX_BATCH);
        let rx = Arc::new(Mutex::new(rx));
        let pvk = Arc::new(pvk);
        for _ in 0..workers.max(1) {
            let rx = rx.clone();
            let pvk = pvk.clone();
            tokio::spawn(async move {
                while let Some(batch) = smpx_http::batch::next_batch(&rx, MAX_BATCH).await {
                    let pvk = pvk.clone();
                    // A panic in the worker would drop the replies; the waiting handlers then
                    // answer "internal error" instead of hanging.
                    let _ = tokio::task::spawn_blocking(move || check_batch(&pvk, batch)).await;
                }
            });
        }
        Verifier { tx }
    }

    /// Checks one proof, batched with whatever else is waiting.
    pub async fn verify(&self, public: RedeemPublic, proof: Vec<u8>) -> Option<Verdict> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job {
                public,
                proof,
                reply,
            })
            .await
            .ok()?;
        rx.await.ok()
    }
}

fn check_batch(pvk: &PreparedVerifyingKey, batch: Vec<Job>) {
    let mut decoded = Vec::with_capacity(batch.len());
    for job in batch {
        match RedeemProof::from_bytes(&job.proof) {
            Ok(p) => decoded.push((job, p)),
            Err(e) => {
                let _ = job.reply.send(Verdict::Malformed(e.to_string()));
            }
        }
    }
    if decoded.is_empty() {
        return;
    }
    let items: Vec<(RedeemPublic, RedeemProof)> =
        decoded.iter().map(|(j, p)| (j.public, p.clone())).collect();
    let all_valid = decoded.len() > 1
        && smpx_zk::verify_batch(pvk, &items, &mut rand::rngs::OsRng).unwrap_or(false);
    for ((job, proof), (public, _)) in decoded.into_iter().zip(items.iter()) {
        let ok = all_valid || smpx_zk::verify(pvk, public, &proof).unwrap_or(false);
        let _ = job
            .reply
            .send(if ok { Verdict::Valid } else { Verdict::Invalid });
    }
}

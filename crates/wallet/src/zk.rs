//! v0.2 (zero-knowledge) redemption, the wallet's side: which MMR to prove against, the
//! download and verification of an MMR's leaves and signed checkpoint (the path update), the
//! proving key from the coordinator's ceremony transcript (verified once, then cached), and
//! proving off the async workers.
//!
//! The flow itself is [`crate::Wallet::redeem_with`]; this module holds its parts, each
//! testable without a service.

use crate::db::{self, MmrSave};
use crate::error::WalletError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use smpx_core::api::{Checkpoint, ErrorBody, LeavesPage, ZkInfo};
use smpx_core::crypto::sign::VerifyingKey as ReceiptKey;
use smpx_core::crypto::{b64, FieldBytes};
use smpx_core::mmr::{Mmr, MmrParams};
use smpx_core::receipt::{Signed, CHECKPOINT_DOMAIN};
use smpx_core::rules::anonymity::{self, AnonymitySet, MmrSet};
use smpx_core::{rotation, ErrorCode, NetworkParams};
use smpx_http_client::{ApiClient, ClientError};
use smpx_zk::{ProvingKey, RedeemProof, RedeemPublic, RedeemWitness, VerifyingKey};
use sqlx::sqlite::SqlitePool;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Leaves asked for per request (the coordinator's maximum page).
pub(crate) const LEAVES_PAGE: u64 = 4096;

/// The redemption protocol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// v0.1: the voucher's secret, sealed to the coordinator (HPKE) and handed over by the
    /// operator. The coordinator learns which voucher is redeemed, and can link it to its
    /// publication.
    V1,
    /// v0.2 (the default): a zero-knowledge proof that the wallet knows the secret of *some*
    /// voucher in an MMR, plus its nullifier. The coordinator learns the nullifier, the MMR,
    /// the denomination and the operator — not which voucher.
    #[default]
    V2,
}

impl Protocol {
    /// The wire version number (`RedeemRequest::version`).
    pub fn version(self) -> u32 {
        match self {
            Protocol::V1 => smpx_core::redemption::PROTOCOL_V1,
            Protocol::V2 => smpx_core::redemption::PROTOCOL_V2,
        }
    }

    /// The protocol of a wire version number.
    pub fn from_version(v: u32) -> Option<Self> {
        [Protocol::V1, Protocol::V2]
            .into_iter()
            .find(|p| p.version() == v)
    }
}

/// Which of the (at most two) MMRs a voucher was appended to a v0.2 proof is made against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MmrChoice {
    /// The older one (the default): it has been open longer, so it holds more vouchers — a
    /// larger anonymity set — but it stops accepting redemptions earlier. When it no longer
    /// accepts them, the newer one is used.
    #[default]
    Older,
    /// The newer one: a smaller anonymity set, accepted for longer.
    Newer,
}

/// How [`crate::Wallet::redeem_with`] redeems. The default is protocol 2, the older MMR,
/// with the path updated to the latest root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RedeemOptions {
    pub protocol: Protocol,
    /// v0.2 only.
    pub mmr: MmrChoice,
    /// v0.2 only. `true` (the default): prove against the MMR's latest signed root, after
    /// downloading all its leaves (see the crate docs). `false`: prove against the root of
    /// the path in the publish receipt — no download, but the anonymity set shrinks to the
    /// vouchers appended before this one, and the root (whose size is public) tells the
    /// coordinator roughly when the voucher was published, i.e. links the redemption to a
    /// narrow window of publications.
    pub update_path: bool,
    /// v0.2 only. Refuse ([`WalletError::AnonymityTooSmall`]) when the chosen MMR holds fewer
    /// vouchers of this denomination than this (default
    /// [`smpx_core::rules::anonymity::DEFAULT_MIN`]).
    pub min_anonymity: u64,
    /// v0.2 only. The caller accepts a smaller set: redeem if it holds at least this many.
    pub accept_anonymity: Option<u64>,
}

impl Default for RedeemOptions {
    fn default() -> Self {
        RedeemOptions {
            protocol: Protocol::V2,
            mmr: MmrChoice::Older,
            update_path: true,
            min_anonymity: anonymity::DEFAULT_MIN,
            accept_anonymity: None,
        }
    }
}

impl RedeemOptions {
    /// What the anonymity-set guard requires.
    pub fn requirement(&self) -> anonymity::Requirement {
        anonymity::Requirement {
            min: self.min_anonymity,
            accept: self.accept_anonymity,
        }
    }

    /// Protocol 1 (v0.1), as before v0.2.
    pub fn v1() -> Self {
        RedeemOptions {
            protocol: Protocol::V1,
            ..RedeemOptions::default()
        }
    }
}

/// What a v0.2 redemption is doing, reported through the progress callback of
/// [`crate::Wallet::redeem_with`], in this order (steps that are not needed are skipped).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedeemProgress {
    /// Fetching the coordinator's v0.2 key information (`GET /v1/zk`).
    FetchingKeys,
    /// Downloading the ceremony transcript (first time only): `done` of `total` bytes.
    DownloadingTranscript { done: u64, total: u64 },
    /// Re-verifying the ceremony transcript from scratch (first time only; the proving key
    /// is then cached): `step` is the ceremony's current step, `done` of `total` units.
    VerifyingTranscript { step: String, done: u64, total: u64 },
    /// Downloading the MMR's leaves: the wallet holds `done` of `total`.
    DownloadingLeaves { mmr_id: u64, done: u64, total: u64 },
    /// Making the proof (seconds).
    Proving,
    /// Sending the redemption to the operator.
    Submitting,
}

impl RedeemProgress {
    /// Stages with a counter: (what, done, total).
    fn counter(&self) -> Option<(String, u64, u64)> {
        match self {
            RedeemProgress::DownloadingTranscript { done, total } => {
                Some(("transcript".into(), *done, *total))
            }
            RedeemProgress::VerifyingTranscript { step, done, total } => {
                Some((step.clone(), *done, *total))
            }
            RedeemProgress::DownloadingLeaves {
                mmr_id,
                done,
                total,
            } => Some((format!("leaves {mmr_id}"), *done, *total)),
            _ => None,
        }
    }
}

impl fmt::Display for RedeemProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedeemProgress::FetchingKeys => f.write_str("fetching the zero-knowledge keys"),
            RedeemProgress::DownloadingTranscript { done, total } => write!(
                f,
                "downloading the ceremony transcript: {} / {} KB",
                done / 1024,
                total / 1024
            ),
            RedeemProgress::VerifyingTranscript { step, done, total } => {
                write!(
                    f,
                    "verifying the ceremony transcript: {step} {done}/{total}"
                )
            }
            RedeemProgress::DownloadingLeaves {
                mmr_id,
                done,
                total,
            } => write!(f, "downloading the leaves of MMR {mmr_id}: {done}/{total}"),
            RedeemProgress::Proving => f.write_str("proving"),
            RedeemProgress::Submitting => f.write_str("submitting to the operator"),
        }
    }
}

/// Forwards reports, dropping counter updates that change nothing visible (same step, same
/// percent): the ceremony reports many times a second.
struct Throttle<'a> {
    out: &'a (dyn Fn(RedeemProgress) + Sync),
    last: Option<(String, u64)>,
}

impl Throttle<'_> {
    fn report(&mut self, p: RedeemProgress) {
        if let Some((what, done, total)) = p.counter() {
            let percent = if total == 0 {
                100
            } else {
                u64::try_from(u128::from(done) * 100 / u128::from(total)).unwrap_or(100)
            };
            let key = (what, percent);
            if self.last.as_ref() == Some(&key) && done != total {
                return;
            }
            self.last = Some(key);
        } else {
            self.last = None;
        }
        (self.out)(p);
    }
}

/// Runs `f` on the blocking pool, forwarding the reports it makes to `progress` (throttled).
pub(crate) async fn blocking_with_progress<T, F>(
    progress: &(dyn Fn(RedeemProgress) + Sync),
    f: F,
) -> Result<T, WalletError>
where
    T: Send + 'static,
    F: FnOnce(&(dyn Fn(RedeemProgress) + Sync)) -> Result<T, WalletError> + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<RedeemProgress>();
    let task = tokio::task::spawn_blocking(move || {
        let report = move |p: RedeemProgress| {
            let _ = tx.send(p);
        };
        f(&report)
    });
    let mut throttle = Throttle {
        out: progress,
        last: None,
    };
    // Ends when the task drops its sender, i.e. when it is done.
    while let Some(p) = rx.recv().await {
        throttle.report(p);
    }
    task.await
        .map_err(|e| WalletError::Corrupt(format!("a background task failed: {e}")))?
}

// ---------------------------------------------------------------------------------------------
// Choosing the MMR

/// The anonymity set of redeeming against `chosen`, and against the voucher's other MMR
/// among `accepting` (its MMRs that still accept redemptions), from each MMR's public
/// figures (`infos`, which must hold `chosen`) and the voucher's leaf index in each
/// (`leaf_index`; used only without a path update, as an upper bound).
pub(crate) fn anonymity_set(
    accepting: &[u64],
    chosen: u64,
    infos: &[smpx_core::api::MmrInfo],
    denomination: u64,
    updated: bool,
    leaf_index: impl Fn(u64) -> Option<u64>,
) -> Option<AnonymitySet> {
    let set_of = |id: u64| -> Option<MmrSet> {
        let info = infos.iter().find(|i| i.id == id)?;
        Some(anonymity::mmr_set(
            id,
            info.count_of(denomination),
            info.expires_at,
            updated,
            leaf_index(id),
        ))
    };
    let other = accepting
        .iter()
        .copied()
        .filter(|&id| id != chosen)
        .find_map(set_of);
    Some(AnonymitySet {
        chosen: set_of(chosen)?,
        other,
    })
}

/// The MMR to prove against, among `ids` (the MMRs the voucher was appended to): of those
/// that accept redemptions at `now`, the oldest for [`MmrChoice::Older`] and the newest for
/// [`MmrChoice::Newer`]. `None` if none accepts them any more.
pub(crate) fn choose_mmr(
    params: &NetworkParams,
    ids: &[u64],
    choice: MmrChoice,
    now: u64,
) -> Option<u64> {
    let accepting = ids
        .iter()
        .copied()
        .filter(|&k| rotation::mmr_accepts_redemptions(params, k, now));
    match choice {
        MmrChoice::Older => accepting.min(),
        MmrChoice::Newer => accepting.max(),
    }
}

// ---------------------------------------------------------------------------------------------
// Leaves and checkpoints

/// Where MMR leaves and checkpoints come from: the coordinator's API (tests use a fake).
pub(crate) trait MmrSource {
    /// `GET /v1/mmrs/{id}/checkpoint`: the latest signed checkpoint.
    async fn checkpoint(&self, mmr_id: u64) -> Result<Signed<Checkpoint>, WalletError>;
    /// `GET /v1/mmrs/{id}/leaves?from=&limit=`.
    async fn leaves(&self, mmr_id: u64, from: u64, limit: u64) -> Result<LeavesPage, WalletError>;
}

/// The coordinator's MMR endpoints.
pub(crate) struct HttpMmrs<'a>(pub &'a ApiClient);

impl MmrSource for HttpMmrs<'_> {
    async fn checkpoint(&self, mmr_id: u64) -> Result<Signed<Checkpoint>, WalletError> {
        Ok(self.0.get(&format!("/v1/mmrs/{mmr_id}/checkpoint")).await?)
    }

    async fn leaves(&self, mmr_id: u64, from: u64, limit: u64) -> Result<LeavesPage, WalletError> {
        Ok(self
            .0
            .get(&format!(
                "/v1/mmrs/{mmr_id}/leaves?from={from}&limit={limit}"
            ))
            .await?)
    }
}

/// An MMR rebuilt from all its leaves, and the signed checkpoint it was verified against.
pub(crate) struct Synced {
    pub mmr: Mmr,
    pub checkpoint: Signed<Checkpoint>,
}

fn verification(what: String) -> WalletError {
    WalletError::Verification(what)
}

/// Brings the wallet's copy of MMR `mmr_id` up to the coordinator's latest signed checkpoint
/// and returns it. Nothing asked depends on which voucher is being redeemed: the latest
/// checkpoint, and every leaf the wallet does not hold yet.
///
/// 1. Fetches the latest checkpoint and verifies its signature under the coordinator's
///    receipt key, its MMR id and levels.
/// 2. Downloads the leaves from the cached count up to the checkpoint's size (or the stored
///    checkpoint's, if larger), in pages, and rebuilds the MMR from every leaf.
/// 3. Checks the MMR's root at the new checkpoint's size, and at the stored checkpoint's
///    size if there is one (`root_at(old.size) == old.root`). If the larger of the two fails
///    and cached leaves were used, downloads every leaf again and re-checks (the cache might
///    be what is wrong). Leaves that do not give the larger checkpoint's root are a
///    [`WalletError::Verification`] failure (the coordinator serves leaves it did not sign);
///    leaves that give it but not the smaller checkpoint's root — or two roots for one size —
///    mean the coordinator signed two histories: [`WalletError::ForkedView`].
/// 4. Stores the new leaves and the larger checkpoint in one transaction (the cache always
///    holds exactly the leaves of its stored checkpoint).
pub(crate) async fn sync_mmr<S: MmrSource>(
    pool: &SqlitePool,
    source: &S,
    receipt_key: &ReceiptKey,
    mmr_id: u64,
    levels: u32,
    progress: &(dyn Fn(RedeemProgress) + Sync),
    clock: &dyn smpx_os::Clock,
) -> Result<Synced, WalletError> {
    let params =
        MmrParams::new(mmr_id, levels).map_err(|e| verification(format!("MMR {mmr_id}: {e}")))?;
    let latest = source.checkpoint(mmr_id).await?;
    latest
        .verify(CHECKPOINT_DOMAIN, receipt_key)
        .map_err(|e| verification(format!("checkpoint of MMR {mmr_id}: {}", e.message)))?;
    if latest.body.mmr_id != mmr_id || latest.body.levels != levels {
        return Err(verification(format!(
            "asked for the checkpoint of MMR {mmr_id} ({levels} levels), got one of MMR {} ({} levels)",
            latest.body.mmr_id, latest.body.levels
        )));
    }

    let cache = db::mmr_cache(pool, mmr_id).await?;
    let stored: Option<Signed<Checkpoint>> = cache
        .checkpoint
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| WalletError::Corrupt(format!("stored checkpoint: {e}")))?;
    if let Some(s) = &stored {
        if s.body.mmr_id != mmr_id || s.body.levels != levels || s.body.size != cache.size {
            return Err(WalletError::Corrupt(format!(
                "the stored checkpoint of MMR {mmr_id} is not for it"
            )));
        }
    }
    let stored_size = stored.as_ref().map(|s| s.body.size);
    let fork = |earlier: &Signed<Checkpoint>| WalletError::ForkedView {
        mmr_id,
        earlier: Box::new(earlier.clone()),
        later: Box::new(latest.clone()),
    };
    if let Some(s) = &stored {
        // Two roots for one size: no history has both.
        if s.body.size == latest.body.size && s.body.root != latest.body.root {
            return Err(fork(s));
        }
    }
    let target = latest.body.size.max(stored_size.unwrap_or(0));

    let mut leaves = cache.leaves;
    let used_cache = !leaves.is_empty();
    let mut start = leaves.len() as u64;
    leaves.extend(fetch_leaves(source, params, start, target, progress).await?);
    let (mut mmr, mut leaves) = build(params, leaves).await?;
    // (leaves give the larger checkpoint's root, and the smaller one's)
    let (larger, smaller) = match &stored {
        Some(s) if s.body.size > latest.body.size => (s, Some(&latest)),
        Some(s) => (&latest, Some(s)),
        None => (&latest, None),
    };
    let check = |m: &Mmr| {
        (
            root_matches(m, &larger.body),
            smaller.is_none_or(|c| root_matches(m, &c.body)),
        )
    };
    let mut ok = check(&mmr);
    // Leaves that give the larger root are its history (the root commits to every leaf);
    // if they do not, the cached part may be what is wrong.
    if !ok.0 && used_cache {
        tracing::warn!(
            mmr = mmr_id,
            "the MMR's leaves do not match its checkpoints; downloading every leaf again"
        );
        start = 0;
        (mmr, leaves) = build(
            params,
            fetch_leaves(source, params, 0, target, progress).await?,
        )
        .await?;
        ok = check(&mmr);
    }
    match (ok, &stored) {
        ((true, true), _) => {}
        // Leaves that give the larger root fix every smaller root (the root commits to all
        // leaves): a smaller checkpoint that disagrees was signed for another history.
        ((true, false), Some(s)) => return Err(fork(s)),
        _ => {
            return Err(verification(format!(
            "the leaves of MMR {mmr_id} do not give the root of its signed checkpoint at size {}",
            larger.body.size
        )))
        }
    }
    // A checkpoint older than the stored one is consistent with it: keep proving against the
    // newer (stored) one.
    let best = larger.clone();
    if stored.is_none() || start == 0 || Some(best.body.size) > stored_size {
        let end =
            usize::try_from(best.body.size).map_err(|_| WalletError::Corrupt("MMR size".into()))?;
        let from = usize::try_from(start).map_err(|_| WalletError::Corrupt("MMR size".into()))?;
        let signed = serde_json::to_string(&best)
            .map_err(|e| WalletError::Corrupt(format!("encoding a checkpoint: {e}")))?;
        let saved = db::save_mmr(
            pool,
            &MmrSave {
                mmr_id,
                prior_size: stored_size,
                start,
                new_leaves: leaves.get(from..end).unwrap_or_default(),
                size: best.body.size,
                signed: &signed,
                now: clock.now(),
            },
        )
        .await?;
        if !saved {
            tracing::debug!(
                mmr = mmr_id,
                "another process updated this MMR's cache first"
            );
        }
    }
    Ok(Synced {
        mmr,
        checkpoint: best,
    })
}

fn root_matches(m: &Mmr, cp: &Checkpoint) -> bool {
    m.root_at(cp.size)
        .is_ok_and(|r| FieldBytes::from_fr(&r) == cp.root)
}

/// Leaves `from..to` of the MMR, in pages.
async fn fetch_leaves<S: MmrSource>(
    source: &S,
    params: MmrParams,
    from: u64,
    to: u64,
    progress: &(dyn Fn(RedeemProgress) + Sync),
) -> Result<Vec<[u8; 32]>, WalletError> {
    let id = params.id;
    let mut out = Vec::with_capacity(usize::try_from(to.saturating_sub(from)).unwrap_or(0));
    let mut next = from;
    let mut throttle = Throttle {
        out: progress,
        last: None,
    };
    throttle.report(RedeemProgress::DownloadingLeaves {
        mmr_id: id,
        done: next,
        total: to,
    });
    while next < to {
        let want = LEAVES_PAGE.min(to - next);
        let page = source.leaves(id, next, want).await?;
        if page.mmr_id != id || page.from != next || page.levels != params.levels {
            return Err(verification(format!(
                "asked for leaves of MMR {id} from {next}, got a page of MMR {} from {}",
                page.mmr_id, page.from
            )));
        }
        if page.leaves.is_empty() {
            return Err(verification(format!(
                "MMR {id} stops at {next} leaves, but its signed checkpoint has {to}"
            )));
        }
        let take = usize::try_from(want).unwrap_or(usize::MAX);
        let got = page.leaves.len().min(take);
        out.extend(page.leaves.iter().take(got).map(|l| l.0));
        next += got as u64;
        throttle.report(RedeemProgress::DownloadingLeaves {
            mmr_id: id,
            done: next,
            total: to,
        });
    }
    Ok(out)
}

/// Rebuilds the MMR from its leaves on the blocking pool (a third of a Poseidon hash per
/// leaf); hands the leaves back.
async fn build(
    params: MmrParams,
    leaves: Vec<[u8; 32]>,
) -> Result<(Mmr, Vec<[u8; 32]>), WalletError> {
    tokio::task::spawn_blocking(move || {
        let mut frs = Vec::with_capacity(leaves.len());
        for (i, l) in leaves.iter().enumerate() {
            frs.push(FieldBytes(*l).to_fr().map_err(|_| {
                verification(format!(
                    "leaf {i} of MMR {} is not a field element",
                    params.id
                ))
            })?);
        }
        let mmr = Mmr::from_leaves(params, frs)
            .map_err(|e| verification(format!("MMR {}: {e}", params.id)))?;
        Ok((mmr, leaves))
    })
    .await
    .map_err(|e| WalletError::Corrupt(format!("a background task failed: {e}")))?
}

// ---------------------------------------------------------------------------------------------
// Keys

/// `GET /v1/zk`; the coordinator's `zk_unavailable` is [`WalletError::ZkUnavailable`].
pub(crate) async fn zk_info(coord: &ApiClient) -> Result<ZkInfo, WalletError> {
    match coord.get::<ZkInfo>("/v1/zk").await {
        Ok(z) => {
            let h = &z.transcript_sha256;
            if h.len() != 64
                || !h
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return Err(verification(format!(
                    "the transcript hash {h:?} is not 64 lowercase hex digits"
                )));
            }
            Ok(z)
        }
        Err(e) if e.code() == Some(ErrorCode::ZkUnavailable) => Err(WalletError::ZkUnavailable {
            reason: e.to_string(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// Where proving keys are cached: `zk-keys/` next to the wallet file, one file per
/// ceremony transcript hash. The keys are public; the file name is the hash of the
/// transcript they were verified from.
pub(crate) fn key_cache_file(wallet: &Path, transcript_sha256: &str) -> PathBuf {
    let dir = match wallet.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    dir.join("zk-keys").join(format!("{transcript_sha256}.pk"))
}

/// Whether `announced` (`ZkInfo::verifying_key`, decoded) is `vk`: with or without the
/// 4-byte levels prefix of [`VerifyingKey::to_bytes`].
fn same_vk(vk: &VerifyingKey, announced: &[u8]) -> Result<bool, WalletError> {
    let full = vk.to_bytes()?;
    Ok(announced == full.as_slice() || announced == full.get(4..).unwrap_or_default())
}

/// The proving key for the coordinator's current ceremony: from the cache, or else by
/// downloading the transcript, checking its hash, verifying the whole ceremony and checking
/// that it gives the coordinator's verifying key (then cached).
pub(crate) async fn proving_key(
    wallet: &Path,
    coordinator: &str,
    zk: &ZkInfo,
    progress: &(dyn Fn(RedeemProgress) + Sync),
) -> Result<ProvingKey, WalletError> {
    let announced = b64::decode(&zk.verifying_key)
        .map_err(|e| verification(format!("the coordinator's verifying key: {e}")))?;
    let file = key_cache_file(wallet, &zk.transcript_sha256);
    if let Ok(bytes) = tokio::fs::read(&file).await {
        let loaded = tokio::task::spawn_blocking(move || ProvingKey::from_bytes(&bytes))
            .await
            .map_err(|e| WalletError::Corrupt(format!("a background task failed: {e}")))?;
        match loaded {
            Ok(pk) if pk.levels() == zk.levels => {
                if same_vk(&pk.verifying_key(), &announced)? {
                    return Ok(pk);
                }
                return Err(verification(format!(
                    "the coordinator's verifying key is not the one its ceremony transcript {} gives",
                    zk.transcript_sha256
                )));
            }
            _ => {
                tracing::warn!(file = %file.display(), "cached proving key unusable; verifying the transcript again");
                let _ = tokio::fs::remove_file(&file).await;
            }
        }
    }

    let bytes = download_transcript(coordinator, zk, progress).await?;
    let actual = hex::encode(Sha256::digest(&bytes));
    if actual != zk.transcript_sha256 {
        return Err(WalletError::TranscriptMismatch {
            expected: zk.transcript_sha256.clone(),
            actual,
        });
    }
    let levels = zk.levels;
    let pk = blocking_with_progress(progress, move |report| {
        let t = smpx_ceremony::Transcript::from_bytes(&bytes)
            .map_err(|e| WalletError::TranscriptInvalid(e.to_string()))?;
        drop(bytes);
        let ceremony_progress = |stage: smpx_ceremony::Stage, done: u64, total: u64| {
            report(RedeemProgress::VerifyingTranscript {
                step: stage.to_string(),
                done,
                total,
            })
        };
        let (pk, _) = smpx_zk::ceremony::verified_keys(levels, &t, &ceremony_progress)
            .map_err(|e| WalletError::TranscriptInvalid(e.to_string()))?;
        Ok(pk)
    })
    .await?;
    if !same_vk(&pk.verifying_key(), &announced)? {
        return Err(WalletError::TranscriptInvalid(format!(
            "transcript {} gives another verifying key than the coordinator announces",
            zk.transcript_sha256
        )));
    }
    if let Err(e) = save_key(&file, &pk).await {
        tracing::warn!(file = %file.display(), error = %e, "could not cache the proving key");
    }
    Ok(pk)
}

async fn save_key(file: &Path, pk: &ProvingKey) -> Result<(), WalletError> {
    let bytes = pk.to_bytes()?;
    let file = file.to_owned();
    tokio::task::spawn_blocking(move || {
        smpx_os::fs::write_atomic(&file, &bytes, smpx_os::fs::Access::Public)
    })
    .await
    .map_err(|e| WalletError::Corrupt(format!("a background task failed: {e}")))?
    .map_err(std::io::Error::from)?;
    Ok(())
}

/// `GET /v1/zk/transcript` (bytes), refusing more than the announced length.
async fn download_transcript(
    coordinator: &str,
    zk: &ZkInfo,
    progress: &(dyn Fn(RedeemProgress) + Sync),
) -> Result<Vec<u8>, WalletError> {
    let url = format!("{}/v1/zk/transcript", coordinator.trim_end_matches('/'));
    let transport = |e: reqwest::Error| {
        WalletError::Service(ClientError::Transport {
            url: url.clone(),
            message: e.to_string(),
        })
    };
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(1800))
        .build()
        .map_err(transport)?;
    let mut resp = http.get(&url).send().await.map_err(transport)?;
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) {
        let body = resp.bytes().await.map_err(transport)?;
        return Err(WalletError::Service(
            match serde_json::from_slice::<ErrorBody>(&body) {
                Ok(b) => ClientError::Api {
                    url,
                    status,
                    code: b.error.code,
                    message: b.error.message,
                },
                Err(_) => ClientError::Decode {
                    url,
                    status,
                    message: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
                },
            },
        ));
    }
    let total = zk.transcript_bytes;
    let mut out = Vec::with_capacity(usize::try_from(total.min(1 << 30)).unwrap_or(0));
    let mut throttle = Throttle {
        out: progress,
        last: None,
    };
    throttle.report(RedeemProgress::DownloadingTranscript { done: 0, total });
    while let Some(chunk) = resp.chunk().await.map_err(transport)? {
        out.extend_from_slice(&chunk);
        if out.len() as u64 > total {
            return Err(verification(format!(
                "the ceremony transcript is longer than the announced {total} bytes"
            )));
        }
        throttle.report(RedeemProgress::DownloadingTranscript {
            done: out.len() as u64,
            total,
        });
    }
    Ok(out)
}

/// Proves on the blocking pool (seconds of CPU).
pub(crate) async fn prove(
    pk: ProvingKey,
    public: RedeemPublic,
    witness: RedeemWitness,
    entropy: std::sync::Arc<dyn smpx_os::Entropy>,
) -> Result<RedeemProof, WalletError> {
    tokio::task::spawn_blocking(move || smpx_zk::prove(&pk, &public, &witness, &mut entropy.rng()))
        .await
        .map_err(|e| WalletError::Corrupt(format!("a background task failed: {e}")))?
        .map_err(WalletError::from)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::{KdfParams, Wallet};
    use smpx_core::crypto::sign::SigningKey;
    use smpx_core::crypto::Fr;
    use std::sync::Mutex;

    const LEVELS: u32 = 3;
    const ID: u64 = 4;

    #[test]
    fn choose_mmr_prefers_the_older_mmr_while_it_accepts_redemptions() {
        let p = NetworkParams {
            epoch: 1000,
            mmr_period_secs: 100,
            voucher_expiry_secs: 1000,
            ..NetworkParams::default()
        };
        // MMR k accepts redemptions in [1000 + 100k, 1000 + 100k + 200 + 1000).
        let both = [3, 4];
        assert_eq!(choose_mmr(&p, &both, MmrChoice::Older, 1450), Some(3));
        assert_eq!(choose_mmr(&p, &both, MmrChoice::Newer, 1450), Some(4));
        // Order of the stored ids does not matter.
        assert_eq!(choose_mmr(&p, &[4, 3], MmrChoice::Older, 1450), Some(3));
        // MMR 3 has stopped accepting (at 2500): both choices fall to MMR 4 …
        assert_eq!(choose_mmr(&p, &both, MmrChoice::Older, 2500), Some(4));
        assert_eq!(choose_mmr(&p, &both, MmrChoice::Newer, 2599), Some(4));
        // … until it stops too.
        assert_eq!(choose_mmr(&p, &both, MmrChoice::Older, 2600), None);
        assert_eq!(choose_mmr(&p, &both, MmrChoice::Newer, 2600), None);
        // A voucher of the first period is in MMR 0 only.
        assert_eq!(choose_mmr(&p, &[0], MmrChoice::Newer, 1050), Some(0));
        assert_eq!(choose_mmr(&p, &[], MmrChoice::Older, 1050), None);
        // Before an MMR starts it accepts nothing.
        assert_eq!(choose_mmr(&p, &[5], MmrChoice::Older, 1450), None);
    }

    #[test]
    fn protocol_numbers_and_defaults() {
        assert_eq!(Protocol::default(), Protocol::V2);
        assert_eq!(Protocol::V1.version(), 1);
        assert_eq!(Protocol::from_version(2), Some(Protocol::V2));
        assert_eq!(Protocol::from_version(3), None);
        let d = RedeemOptions::default();
        assert_eq!(
            (d.protocol, d.mmr, d.update_path),
            (Protocol::V2, MmrChoice::Older, true)
        );
        assert_eq!(RedeemOptions::v1().protocol, Protocol::V1);
    }

    #[test]
    fn throttle_forwards_stage_changes_and_percent_steps() {
        let got = Mutex::new(Vec::new());
        let out = |p: RedeemProgress| got.lock().unwrap().push(p);
        let mut t = Throttle {
            out: &out,
            last: None,
        };
        t.report(RedeemProgress::FetchingKeys);
        for done in 0..=1000 {
            t.report(RedeemProgress::DownloadingLeaves {
                mmr_id: 0,
                done,
                total: 1000,
            });
        }
        t.report(RedeemProgress::Proving);
        let got = got.into_inner().unwrap();
        // keys, 0..=100 percent (101), proving.
        assert_eq!(got.len(), 103);
        assert_eq!(
            got[101],
            RedeemProgress::DownloadingLeaves {
                mmr_id: 0,
                done: 1000,
                total: 1000
            }
        );
    }

    /// A coordinator's MMR endpoints, honest unless told otherwise.
    struct Fake {
        key: SigningKey,
        mmr: Mutex<Mmr>,
        served: Mutex<u64>,
        /// Serve a wrong value at this leaf index.
        tamper: Mutex<Option<u64>>,
        /// Certify this size instead of the current one.
        certify: Mutex<Option<u64>>,
    }

    fn leaf(i: u64) -> Fr {
        Fr::from(1_000_000 + i)
    }

    fn params() -> MmrParams {
        MmrParams::new(ID, LEVELS).unwrap()
    }

    impl Fake {
        fn new(n: u64) -> Fake {
            Fake {
                key: SigningKey::generate(&mut rand::rngs::OsRng),
                mmr: Mutex::new(Mmr::from_leaves(params(), (0..n).map(leaf)).unwrap()),
                served: Mutex::new(0),
                tamper: Mutex::new(None),
                certify: Mutex::new(None),
            }
        }

        fn append(&self, n: u64) {
            let mut m = self.mmr.lock().unwrap();
            for _ in 0..n {
                let i = m.size();
                m.append(leaf(i)).unwrap();
            }
        }

        /// Shows another history from now on: leaf `at` replaced, `extra` leaves more.
        fn rewrite(&self, at: u64, extra: u64) {
            let mut m = self.mmr.lock().unwrap();
            let mut leaves: Vec<Fr> = (0..m.size()).map(|i| m.leaf(i).unwrap()).collect();
            leaves[at as usize] = Fr::from(42u64);
            let n = leaves.len() as u64;
            leaves.extend((n..n + extra).map(leaf));
            *m = Mmr::from_leaves(params(), leaves).unwrap();
        }

        fn served(&self) -> u64 {
            *self.served.lock().unwrap()
        }
    }

    impl MmrSource for Fake {
        async fn checkpoint(&self, mmr_id: u64) -> Result<Signed<Checkpoint>, WalletError> {
            let m = self.mmr.lock().unwrap();
            let size = self.certify.lock().unwrap().unwrap_or(m.size());
            let _ = mmr_id;
            let body = Checkpoint {
                mmr_id: ID,
                levels: LEVELS,
                size,
                root: FieldBytes::from_fr(&m.root_at(size).unwrap()),
                at: 0,
            };
            Ok(Signed::sign(&self.key, CHECKPOINT_DOMAIN, body).unwrap())
        }

        async fn leaves(
            &self,
            mmr_id: u64,
            from: u64,
            limit: u64,
        ) -> Result<LeavesPage, WalletError> {
            let m = self.mmr.lock().unwrap();
            let tamper = *self.tamper.lock().unwrap();
            let leaves: Vec<FieldBytes> = (from..m.size().min(from + limit.min(2)))
                .map(|i| {
                    let l = if Some(i) == tamper {
                        Fr::from(7u64)
                    } else {
                        m.leaf(i).unwrap()
                    };
                    FieldBytes::from_fr(&l)
                })
                .collect();
            *self.served.lock().unwrap() += leaves.len() as u64;
            Ok(LeavesPage {
                mmr_id,
                levels: LEVELS,
                size: m.size(),
                from,
                leaves,
            })
        }
    }

    async fn wallet(dir: &tempfile::TempDir) -> Wallet {
        Wallet::create_with(
            &dir.path().join("w.db"),
            "pw",
            KdfParams::insecure_for_tests(),
        )
        .await
        .unwrap()
        .0
    }

    async fn sync(w: &Wallet, f: &Fake) -> Result<Synced, WalletError> {
        sync_mmr(
            w.pool(),
            f,
            &f.key.verifying_key(),
            ID,
            LEVELS,
            &|_| {},
            &smpx_os::SystemClock,
        )
        .await
    }

    async fn stored_size(w: &Wallet) -> Option<u64> {
        let c = db::mmr_cache(w.pool(), ID).await.unwrap();
        c.checkpoint.map(|_| c.size)
    }

    #[tokio::test]
    async fn sync_downloads_every_leaf_once_then_only_new_ones() {
        let dir = tempfile::tempdir().unwrap();
        let w = wallet(&dir).await;
        let f = Fake::new(10);
        let s = sync(&w, &f).await.unwrap();
        assert_eq!(f.served(), 10);
        assert_eq!(s.checkpoint.body.size, 10);
        assert_eq!(s.mmr, *f.mmr.lock().unwrap());
        // A membership proof from the rebuilt MMR verifies against the signed root.
        let p = s.mmr.proof_at(7, 10).unwrap();
        smpx_core::mmr::verify(&s.checkpoint.body.root.to_fr().unwrap(), &leaf(7), &p).unwrap();

        f.append(5);
        let s = sync(&w, &f).await.unwrap();
        assert_eq!(f.served(), 15, "only the 5 new leaves");
        assert_eq!(s.checkpoint.body.size, 15);
        assert_eq!(s.mmr, *f.mmr.lock().unwrap());
        let cache = db::mmr_cache(w.pool(), ID).await.unwrap();
        assert_eq!((cache.size, cache.leaves.len()), (15, 15));

        // Nothing new: nothing downloaded.
        sync(&w, &f).await.unwrap();
        assert_eq!(f.served(), 15);
    }

    #[tokio::test]
    async fn a_rewritten_history_is_a_forked_view() {
        let dir = tempfile::tempdir().unwrap();
        let w = wallet(&dir).await;
        let f = Fake::new(10);
        sync(&w, &f).await.unwrap();
        f.rewrite(2, 3);
        match sync(&w, &f).await {
            Err(WalletError::ForkedView {
                mmr_id,
                earlier,
                later,
            }) => {
                assert_eq!(mmr_id, ID);
                assert_eq!((earlier.body.size, later.body.size), (10, 13));
                // Both are signed by the coordinator: evidence anyone can check.
                earlier
                    .verify(CHECKPOINT_DOMAIN, &f.key.verifying_key())
                    .unwrap();
                later
                    .verify(CHECKPOINT_DOMAIN, &f.key.verifying_key())
                    .unwrap();
            }
            Err(e) => panic!("expected a forked view, got {e}"),
            Ok(_) => panic!("expected a forked view"),
        }
        // The wallet keeps what it had verified.
        assert_eq!(stored_size(&w).await, Some(10));

        // Two roots for the same size are a fork too, whatever the leaves.
        let dir = tempfile::tempdir().unwrap();
        let w = wallet(&dir).await;
        let f = Fake::new(10);
        sync(&w, &f).await.unwrap();
        f.rewrite(9, 0);
        let e = sync(&w, &f).await.err().unwrap();
        assert!(matches!(e, WalletError::ForkedView { .. }), "{e}");
    }

    #[tokio::test]
    async fn leaves_that_do_not_give_the_signed_root_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let w = wallet(&dir).await;
        let f = Fake::new(10);
        *f.tamper.lock().unwrap() = Some(3);
        let e = sync(&w, &f).await.err().unwrap();
        assert!(matches!(e, WalletError::Verification(_)), "{e}");
        assert_eq!(stored_size(&w).await, None, "nothing stored");

        // Honest again: works. Then new leaves are tampered with: the wallet downloads
        // everything again, still gets a wrong leaf, and refuses; its cache is untouched.
        *f.tamper.lock().unwrap() = None;
        sync(&w, &f).await.unwrap();
        f.append(4);
        *f.tamper.lock().unwrap() = Some(12);
        let e = sync(&w, &f).await.err().unwrap();
        assert!(matches!(e, WalletError::Verification(_)), "{e}");
        assert_eq!(stored_size(&w).await, Some(10));
        assert_eq!(f.served(), 10 + 10 + 4 + 14);
    }

    #[tokio::test]
    async fn an_older_checkpoint_is_checked_against_the_stored_one() {
        let dir = tempfile::tempdir().unwrap();
        let w = wallet(&dir).await;
        let f = Fake::new(15);
        sync(&w, &f).await.unwrap();
        // A consistent but older checkpoint: the stored (newer) one is used, nothing fetched.
        *f.certify.lock().unwrap() = Some(10);
        let s = sync(&w, &f).await.unwrap();
        assert_eq!(s.checkpoint.body.size, 15);
        assert_eq!(f.served(), 15);
        // An older checkpoint of another history.
        f.rewrite(1, 0);
        let e = sync(&w, &f).await.err().unwrap();
        assert!(matches!(e, WalletError::ForkedView { .. }), "{e}");
    }

    #[tokio::test]
    async fn checkpoints_must_be_signed_by_the_coordinator_for_this_mmr() {
        let dir = tempfile::tempdir().unwrap();
        let w = wallet(&dir).await;
        let f = Fake::new(3);
        let other = SigningKey::generate(&mut rand::rngs::OsRng).verifying_key();
        let sync_err = |key, id| {
            sync_mmr(
                w.pool(),
                &f,
                key,
                id,
                LEVELS,
                &|_| {},
                &smpx_os::SystemClock,
            )
        };
        let e = sync_err(&other, ID).await.err().unwrap();
        assert!(matches!(e, WalletError::Verification(_)), "{e}");
        let e = sync_err(&f.key.verifying_key(), ID + 1)
            .await
            .err()
            .unwrap();
        assert!(e.to_string().contains("got one of MMR"), "{e}");
        assert_eq!(f.served(), 0);
    }

    #[tokio::test]
    async fn a_damaged_cache_is_downloaded_again() {
        let dir = tempfile::tempdir().unwrap();
        let w = wallet(&dir).await;
        let f = Fake::new(6);
        sync(&w, &f).await.unwrap();
        f.append(2);
        sync(&w, &f).await.unwrap();
        // Lose the first chunk.
        sqlx::query("DELETE FROM mmr_leaf_chunks WHERE start = 0")
            .execute(w.pool())
            .await
            .unwrap();
        assert!(db::mmr_cache(w.pool(), ID).await.unwrap().leaves.is_empty());
        let s = sync(&w, &f).await.unwrap();
        assert_eq!(s.checkpoint.body.size, 8);
        assert_eq!(f.served(), 6 + 2 + 8);
        let cache = db::mmr_cache(w.pool(), ID).await.unwrap();
        assert_eq!(cache.leaves.len(), 8);
    }
}

//! The relay's directory client: registering with the directories `[directory]` names,
//! heartbeating while the node runs, and withdrawing (issue 13, DESIGN.md §3 "Directory").
//!
//! Two keys sign, for different reasons. The **CA key** signs only the registration: its
//! certificate's SHA-256 is the fingerprint in the relay's address, so only its holder can
//! list that fingerprint. That is why registration happens at `init`, while `ca.key` is
//! still in the relay directory, and why re-registering later needs it back. The
//! **operator key** (`operator_key_file`, created 0600 at init) signs the registration too,
//! and then every heartbeat and a withdrawal: the running relay holds it, never the CA key.
//!
//! A heartbeat's `seq` must grow at each directory across restarts, so the last one sent
//! is kept in `heartbeat.seq` in the relay directory; a new one is
//! `max(last + 1, now)`, which keeps growing even if that file is lost.
//!
//! Nothing here logs a key; the INFO registered is what the relay answers to INFO
//! ([`smpx_relay_server::ServerConfig::relay_info`]), so a directory lists what clients
//! are told.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use smpx_core::crypto::sign::{Signature64, SigningKey};
use smpx_core::directory::wire::{
    Heartbeat, Registration, RegistrationRequest, Withdrawal, HEARTBEAT_DOMAIN,
    REGISTRATION_CA_DOMAIN, REGISTRATION_OPERATOR_DOMAIN, WITHDRAW_DOMAIN,
};
use smpx_core::receipt::Signed;
use smpx_core::rules::pow;
use smpx_core::ErrorCode;
use smpx_http_client::{ApiClient, ClientError};
use smpx_os::{Clock, Entropy};
use smpx_relay_transport::{identity, IdentityError, RelayIdentity};

use crate::config::{DirectorySection, NodeConfig};

/// The last heartbeat `seq` sent, in the relay directory.
pub const HEARTBEAT_SEQ_FILE: &str = "heartbeat.seq";

/// Why registering, a heartbeat or a withdrawal failed.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("relay.toml has no [directory] section: add one (urls, operator_id, region) or pass --directory")]
    NotConfigured,
    #[error(
        "{}: the CA key is not here. A registration is signed by the relay's CA key: bring \
         ca.key back into the relay directory, run `smpx relay register`, then move it \
         offline again",
        .0.display()
    )]
    NoCaKey(PathBuf),
    #[error("{}: the operator key: {reason}", .path.display())]
    OperatorKey { path: PathBuf, reason: String },
    #[error(
        "the relay's address has port 0 (picked at start): set server.public_port to register"
    )]
    NoPort,
    #[error("{url}: this relay's fingerprint is registered there by another operator")]
    FingerprintTaken { url: String },
    #[error("{url}: too many registrations from this relay's network; retry later ({message})")]
    RateLimited { url: String, message: String },
    #[error("{url}: the proof of work was refused twice: {message}")]
    ProofOfWork { url: String, message: String },
    #[error("{url}: stopped before the proof of work was done")]
    GaveUp { url: String },
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("identity: {0}")]
    Identity(#[from] IdentityError),
    #[error("{0}")]
    Protocol(String),
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl From<smpx_core::error::ProtocolError> for DirectoryError {
    fn from(e: smpx_core::error::ProtocolError) -> Self {
        DirectoryError::Protocol(e.to_string())
    }
}

/// Where a proof of work stands, for a progress line.
#[derive(Clone, Debug)]
pub struct PowProgress {
    /// The directory it is for.
    pub url: String,
    /// Attempts so far.
    pub tried: u64,
    /// The expected number of attempts (`2^difficulty`).
    pub expected: u64,
}

/// Called every 65,536 attempts; `false` gives up. Runs on a blocking thread.
pub type ProgressFn = Arc<dyn Fn(&PowProgress) -> bool + Send + Sync>;

/// `GET /v1/pow`'s answer.
#[derive(Debug, Deserialize)]
struct PowChallenge {
    challenge: String,
    difficulty: u32,
}

/// `POST /v1/relays`'s answer.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Registered {
    pub fingerprint: String,
    pub address: String,
    /// The fingerprint was new at that directory (otherwise its record was updated).
    pub created: bool,
}

/// Reads the operator key at `path`, or creates it (0600) when `create` and it is missing.
pub fn operator_key(
    path: &Path,
    create: bool,
    entropy: &dyn Entropy,
) -> Result<SigningKey, DirectoryError> {
    let bad = |reason: String| DirectoryError::OperatorKey {
        path: path.to_owned(),
        reason,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let bytes: [u8; 32] = hex::decode(text.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| bad("not 32 bytes of hex".into()))?;
            Ok(SigningKey::from_bytes(&bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            let key = SigningKey::generate(&mut entropy.rng());
            let text = format!("{}\n", hex::encode(key.to_bytes()));
            smpx_os::fs::write_atomic(path, text.as_bytes(), smpx_os::fs::Access::Private)
                .map_err(|e| bad(e.source.to_string()))?;
            tracing::info!(path = %path.display(), "operator key created");
            Ok(key)
        }
        Err(e) => Err(bad(e.to_string())),
    }
}

/// Signs a registration as the relay's operator sends it: the proof of work over the
/// payload (calling `progress` every 65,536 attempts), the CA key's signature (read from
/// `ca_dir`) and the operator's. `None` if `progress` gave up.
pub fn sign_registration(
    ca_dir: &Path,
    operator: &SigningKey,
    body: &Registration,
    difficulty: u32,
    progress: impl FnMut(u64) -> bool,
) -> Result<Option<RegistrationRequest>, DirectoryError> {
    let payload = body.payload()?;
    sign_payload(
        ca_dir,
        operator,
        payload,
        &body.challenge,
        difficulty,
        progress,
    )
}

/// [`sign_registration`] over payload text as given (the directory's tests send payloads
/// no [`Registration`] would encode to).
pub fn sign_payload(
    ca_dir: &Path,
    operator: &SigningKey,
    payload: String,
    challenge: &str,
    difficulty: u32,
    progress: impl FnMut(u64) -> bool,
) -> Result<Option<RegistrationRequest>, DirectoryError> {
    let Some(nonce) = pow::solve(
        challenge.as_bytes(),
        payload.as_bytes(),
        difficulty,
        0,
        progress,
    ) else {
        return Ok(None);
    };
    let ca = RelayIdentity::sign_with_ca(ca_dir, REGISTRATION_CA_DOMAIN, payload.as_bytes())?;
    Ok(Some(RegistrationRequest {
        ca_signature: Signature64(ca),
        operator_signature: operator.sign(REGISTRATION_OPERATOR_DOMAIN, payload.as_bytes()),
        registration: payload,
        nonce,
    }))
}

fn section(cfg: &NodeConfig) -> Result<&DirectorySection, DirectoryError> {
    cfg.directory.as_ref().ok_or(DirectoryError::NotConfigured)
}

/// Registers the relay in `dir` with every directory `cfg` names (creating the operator key
/// if it is missing); the directories' answers, in order. Needs `ca.key` in `dir`.
pub async fn register(
    dir: &Path,
    cfg: &NodeConfig,
    clock: &dyn Clock,
    entropy: &dyn Entropy,
    progress: ProgressFn,
) -> Result<Vec<(String, Registered)>, DirectoryError> {
    let d = section(cfg)?;
    let ca_key = identity::ca_key_path(dir);
    if !ca_key.exists() {
        return Err(DirectoryError::NoCaKey(ca_key));
    }
    let operator = operator_key(&d.operator_key_path(dir), true, entropy)?;
    let identity = RelayIdentity::load(dir)?;
    if cfg.server.public_port == 0 {
        return Err(DirectoryError::NoPort);
    }
    let host = cfg
        .public_host()
        .map_err(|e| DirectoryError::Protocol(format!("public host: {e}")))?;
    let address = identity.address(host, cfg.server.public_port).to_string();
    let info = match serde_json::to_value(cfg.server_config().relay_info()) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => return Err(DirectoryError::Protocol("encoding the relay's INFO".into())),
    };
    let certificate = hex::encode(identity.ca_certificate());
    drop(identity);
    let mut out = Vec::new();
    for url in &d.urls {
        let api = ApiClient::new(url.clone());
        let body = |challenge: String| Registration {
            address: address.clone(),
            operator_id: d.operator_id.clone(),
            operator_key: operator.verifying_key(),
            region: d.region.clone(),
            info: info.clone(),
            metadata: d.metadata(),
            timestamp: clock.now(),
            challenge,
            ca_certificate: certificate.clone(),
        };
        let mut attempt = 0;
        let registered = loop {
            attempt += 1;
            let c: PowChallenge = api.get("/v1/pow").await?;
            let req = solve_blocking(
                dir,
                &operator,
                body(c.challenge),
                c.difficulty,
                url,
                &progress,
            )
            .await?;
            match api.post::<_, Registered>("/v1/relays", &req).await {
                Ok(r) => break r,
                Err(e) => match (e.code(), &e) {
                    // A challenge spent or expired meanwhile: once more with a fresh one.
                    (Some(ErrorCode::BadProofOfWork), ClientError::Api { message, .. }) => {
                        if attempt >= 2 {
                            return Err(DirectoryError::ProofOfWork {
                                url: url.clone(),
                                message: message.clone(),
                            });
                        }
                        tracing::warn!(%url, "proof of work refused; retrying with a new challenge");
                    }
                    (Some(ErrorCode::FingerprintTaken), _) => {
                        return Err(DirectoryError::FingerprintTaken { url: url.clone() })
                    }
                    (Some(ErrorCode::RateLimited), ClientError::Api { message, .. }) => {
                        return Err(DirectoryError::RateLimited {
                            url: url.clone(),
                            message: message.clone(),
                        })
                    }
                    _ => return Err(e.into()),
                },
            }
        };
        tracing::info!(%url, fingerprint = %registered.fingerprint, "registered with the directory");
        out.push((url.clone(), registered));
    }
    Ok(out)
}

/// The proof of work is seconds to minutes of CPU: on a blocking thread, not the runtime's.
async fn solve_blocking(
    dir: &Path,
    operator: &SigningKey,
    body: Registration,
    difficulty: u32,
    url: &str,
    progress: &ProgressFn,
) -> Result<RegistrationRequest, DirectoryError> {
    let (dir, operator, progress, url) = (
        dir.to_owned(),
        operator.clone(),
        progress.clone(),
        url.to_owned(),
    );
    let expected = pow::expected_attempts(difficulty);
    tokio::task::spawn_blocking(move || {
        let signed = sign_registration(&dir, &operator, &body, difficulty, |tried| {
            progress(&PowProgress {
                url: url.clone(),
                tried,
                expected,
            })
        })?;
        signed.ok_or(DirectoryError::GaveUp { url })
    })
    .await
    .map_err(|e| DirectoryError::Protocol(format!("proof of work task: {e}")))?
}

/// The next heartbeat `seq`, persisted before it is sent (so a crash cannot reuse it).
fn next_seq(dir: &Path, now: u64) -> Result<u64, DirectoryError> {
    let path = dir.join(HEARTBEAT_SEQ_FILE);
    let last = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let seq = last.saturating_add(1).max(now);
    smpx_os::fs::write_atomic(
        &path,
        format!("{seq}\n").as_bytes(),
        smpx_os::fs::Access::Private,
    )
    .map_err(|e| DirectoryError::Io {
        path: e.path,
        source: e.source,
    })?;
    Ok(seq)
}

/// Sends one signed heartbeat to every directory; the `seq` sent. Fails on the first
/// directory that refuses (the others were still tried).
pub async fn heartbeat(
    dir: &Path,
    cfg: &NodeConfig,
    clock: &dyn Clock,
) -> Result<u64, DirectoryError> {
    let d = section(cfg)?;
    let operator = operator_key(&d.operator_key_path(dir), false, &smpx_os::OsEntropy)?;
    let fingerprint = RelayIdentity::load(dir)?.fingerprint().to_string();
    let now = clock.now();
    let seq = next_seq(dir, now)?;
    let hb = Signed::sign(
        &operator,
        HEARTBEAT_DOMAIN,
        Heartbeat {
            fingerprint: fingerprint.clone(),
            seq,
            at: now,
        },
    )?;
    let path = format!("/v1/relays/{fingerprint}/heartbeat");
    let mut first_error = None;
    for url in &d.urls {
        let r: Result<serde_json::Value, _> = ApiClient::new(url.clone()).post(&path, &hb).await;
        if let Err(e) = r {
            tracing::warn!(%url, error = %e, "heartbeat refused or lost");
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        Some(e) => Err(e.into()),
        None => Ok(seq),
    }
}

/// Takes the relay off `urls` (default: every configured directory), signed by the
/// operator key. The directories that took it off.
pub async fn withdraw(
    dir: &Path,
    cfg: &NodeConfig,
    urls: Option<Vec<String>>,
    clock: &dyn Clock,
) -> Result<Vec<String>, DirectoryError> {
    let d = section(cfg)?;
    let operator = operator_key(&d.operator_key_path(dir), false, &smpx_os::OsEntropy)?;
    let fingerprint = RelayIdentity::load(dir)?.fingerprint().to_string();
    let w = Signed::sign(
        &operator,
        WITHDRAW_DOMAIN,
        Withdrawal {
            fingerprint: fingerprint.clone(),
            at: clock.now(),
        },
    )?;
    let path = format!("/v1/relays/{fingerprint}/withdraw");
    let mut done = Vec::new();
    for url in urls.unwrap_or_else(|| d.urls.clone()) {
        let _: serde_json::Value = ApiClient::new(url.clone()).post(&path, &w).await?;
        tracing::info!(%url, "withdrawn from the directory");
        done.push(url);
    }
    Ok(done)
}

/// The node's heartbeat task: one heartbeat at once, then every `heartbeat_interval_secs`,
/// until `stop` turns true. Failures are logged, never fatal. `sent` counts the heartbeats
/// every directory recorded (tests and the ops side wait on it).
pub(crate) fn spawn_heartbeats(
    dir: PathBuf,
    cfg: NodeConfig,
    clock: Arc<dyn Clock>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    sent: tokio::sync::watch::Sender<u64>,
) -> Option<tokio::task::JoinHandle<()>> {
    let interval = Duration::from_secs(cfg.directory.as_ref()?.heartbeat_interval_secs);
    Some(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            match heartbeat(&dir, &cfg, &*clock).await {
                Ok(seq) => {
                    tracing::debug!(seq, "heartbeat sent");
                    sent.send_modify(|n| *n += 1);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "heartbeat failed; retrying at the next interval")
                }
            }
        }
    }))
}

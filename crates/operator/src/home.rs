//! The operator's data directory.
//!
//! ```text
//! <dir>/operator.json         id, coordinator URL, credential (0600)
//! <dir>/receipt-key           Ed25519 key signing receipts to wallets, hex (0600)
//! <dir>/credit-master-secret  32 bytes every credit keyset is derived from, hex (0600)
//! <dir>/credits.json          credit parameters: lifetime (default 90 days), … (0600)
//! <dir>/operator.db           SQLite database of redemptions and credits (unless a URL is given)
//! ```
//!
//! Every server of one operator must hold the same `credit-master-secret` and the same
//! `lifetime_days`, `denominations` and `keyset_id_version` in `credits.json`: they derive the
//! day keysets from these and nothing else, so tokens signed by one server are accepted by
//! all. Both files are created with defaults (a fresh random secret) the first time the
//! directory is opened; copy them to the other servers' directories before starting them.

use serde::{Deserialize, Serialize};
use smpx_core::credits::keyset::{
    DEFAULT_EXPIRED_GRACE_DAYS, DEFAULT_LIFETIME_DAYS, DEFAULT_ORDERS, DEFAULT_OUTPUT_SKEW_SECS,
};
use smpx_core::credits::{KeysetIdVersion, KeysetParams, MasterSecret};
use smpx_core::crypto::sign::SigningKey;
use smpx_http::files::{self, FileError};
use std::path::{Path, PathBuf};

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorConfig {
    /// The id the coordinator registered.
    pub operator_id: String,
    pub coordinator_url: String,
    /// The `<id>:<secret>` credential from the coordinator's admin.
    pub credential: String,
}

impl std::fmt::Debug for OperatorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorConfig")
            .field("operator_id", &self.operator_id)
            .field("coordinator_url", &self.coordinator_url)
            .finish_non_exhaustive()
    }
}

/// NUT-02 keyset id version, as written in `credits.json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeysetIdFormat {
    /// `00` + 7 bytes of the keys' hash (NUT-13 derives wallet secrets with BIP-32).
    #[serde(rename = "00")]
    V00,
    /// `01` + the hash of the keys, unit and final expiry (the default).
    #[serde(rename = "01")]
    V01,
}

/// `credits.json`: how the operator's credits work. The first three fields make the keys and
/// must be the same on every server of the operator (changing one starts new keysets: tokens
/// already issued stay valid only where the old value is still configured); the others are
/// per server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CreditsConfig {
    /// Days a token stays valid after the day its keyset belongs to (default 90).
    pub lifetime_days: u32,
    /// Denominations per keyset: amounts `2^0 … 2^(n−1)` units (default 40).
    pub denominations: u8,
    pub keyset_id_version: KeysetIdFormat,
    /// Clock tolerance around midnight for outputs under a neighbouring day's keyset.
    pub output_skew_secs: u64,
    /// Days an expired keyset is still known, to answer "expired" rather than "unknown".
    pub expired_grace_days: u32,
    /// A spend still pending after this long is resolved by recovery (completed if its change
    /// can be signed, else cancelled): at start, periodically, and when a wallet asks for it.
    pub recovery_timeout_secs: u64,
    /// How often spent records of expired keysets are pruned (default daily).
    pub prune_interval_secs: u64,
    /// Spend batches processed at once (each one `begin`, signing, one `complete`).
    pub batch_workers: usize,
    /// Most spends registered in one batch.
    pub max_batch: usize,
}

impl Default for CreditsConfig {
    fn default() -> Self {
        Self {
            lifetime_days: DEFAULT_LIFETIME_DAYS,
            denominations: DEFAULT_ORDERS,
            keyset_id_version: KeysetIdFormat::V01,
            output_skew_secs: DEFAULT_OUTPUT_SKEW_SECS,
            expired_grace_days: DEFAULT_EXPIRED_GRACE_DAYS,
            recovery_timeout_secs: 60,
            prune_interval_secs: smpx_core::DAY,
            batch_workers: 4,
            max_batch: 128,
        }
    }
}

impl CreditsConfig {
    /// The keyset parameters (checked when the key ring is built).
    pub fn keyset_params(&self) -> KeysetParams {
        KeysetParams {
            lifetime_days: self.lifetime_days,
            orders: self.denominations,
            id_version: match self.keyset_id_version {
                KeysetIdFormat::V00 => KeysetIdVersion::V1,
                KeysetIdFormat::V01 => KeysetIdVersion::V2,
            },
            output_skew_secs: self.output_skew_secs,
            expired_grace_days: self.expired_grace_days,
        }
    }
}

pub struct OperatorHome {
    pub dir: PathBuf,
    pub config: OperatorConfig,
    pub receipt_key: SigningKey,
    /// `credits.json`.
    pub credits: CreditsConfig,
    /// `credit-master-secret`: never logged, zeroized on drop.
    pub credit_master: MasterSecret,
}

impl OperatorHome {
    /// Writes a new configuration (overwriting) and opens the directory.
    pub fn init(dir: &Path, config: OperatorConfig) -> Result<OperatorHome, FileError> {
        let bytes = serde_json::to_vec_pretty(&config).map_err(|e| FileError::Parse {
            path: dir.display().to_string(),
            message: e.to_string(),
        })?;
        files::write_private(&dir.join("operator.json"), &bytes)?;
        Self::open(dir)
    }

    pub fn open(dir: &Path) -> Result<OperatorHome, FileError> {
        let config: OperatorConfig = files::load(&dir.join("operator.json"))?;
        let key_path = dir.join("receipt-key");
        let bytes = files::load_or_create_secret32(&key_path, "key", || {
            SigningKey::generate(&mut rand::rngs::OsRng).to_bytes()
        })?;
        let credits: CreditsConfig =
            files::load_or_create(&dir.join(CREDITS_FILE), CreditsConfig::default)?;
        Ok(OperatorHome {
            dir: dir.to_owned(),
            config,
            receipt_key: SigningKey::from_bytes(&bytes),
            credits,
            credit_master: load_master(&dir.join(MASTER_FILE))?,
        })
    }

    /// Replaces `credits.json` (takes effect at the next start).
    pub fn set_credits(&mut self, credits: CreditsConfig) -> Result<(), FileError> {
        let path = self.dir.join(CREDITS_FILE);
        let bytes = serde_json::to_vec_pretty(&credits).map_err(|e| FileError::Parse {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        files::write_private(&path, &bytes)?;
        self.credits = credits;
        Ok(())
    }

    pub fn default_database_url(&self) -> String {
        format!("sqlite://{}", self.dir.join("operator.db").display())
    }
}

const CREDITS_FILE: &str = "credits.json";
const MASTER_FILE: &str = "credit-master-secret";

/// Reads the credit master secret, creating a random one (0600) the first time.
fn load_master(path: &Path) -> Result<MasterSecret, FileError> {
    let bytes = files::load_or_create_secret32(path, "secret", || {
        *MasterSecret::generate(&mut rand::rngs::OsRng).as_bytes()
    })?;
    Ok(MasterSecret::from_bytes(*bytes))
}

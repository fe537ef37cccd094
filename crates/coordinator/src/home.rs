//! The coordinator's data directory: parameters, keys, admin token, default database.
//!
//! ```text
//! <dir>/params.json        network parameters, fixed at init
//! <dir>/keys.json          receipt signing key and envelope decryption key (0600)
//! <dir>/admin-token        bearer token for /v1/admin (0600)
//! <dir>/config.json        settings that may change between runs (read at start):
//!                          `trusted_directories`, below
//! <dir>/coordinator.db     SQLite database (unless a database URL is given)
//! ```

use serde::{Deserialize, Serialize};
use smpx_core::crypto::envelope::HpkeSecretKey;
use smpx_core::crypto::sign::{SigningKey, VerifyingKey};
use smpx_core::NetworkParams;
use smpx_http::files::{self, FileError};
use std::path::{Path, PathBuf};

/// The settings file in a coordinator's directory.
pub const CONFIG_FILE: &str = "config.json";

#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{0}")]
    Invalid(String),
}

/// Secret keys as stored on disk (hex).
#[derive(Serialize, Deserialize)]
struct CoordinatorKeys {
    receipt_key: String,
    envelope_key: String,
}

impl CoordinatorKeys {
    fn generate() -> Self {
        CoordinatorKeys {
            receipt_key: hex::encode(SigningKey::generate(&mut rand::rngs::OsRng).to_bytes()),
            envelope_key: hex::encode(HpkeSecretKey::generate(&mut rand::rngs::OsRng).to_bytes()),
        }
    }

    fn check(&self) -> Result<(SigningKey, HpkeSecretKey), HomeError> {
        let bad = |what: &str| HomeError::Invalid(format!("keys.json: {what} is not valid"));
        let r: [u8; 32] = hex::decode(&self.receipt_key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("receipt_key"))?;
        let e = hex::decode(&self.envelope_key).map_err(|_| bad("envelope_key"))?;
        let e = HpkeSecretKey::from_bytes(&e).map_err(|_| bad("envelope_key"))?;
        Ok((SigningKey::from_bytes(&r), e))
    }
}

/// `<dir>/config.json`: what an operator of the coordinator may change between runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorConfig {
    /// Ed25519 public keys (64 hex characters) of the relay directories whose signed share
    /// statements set operators' shares (`POST /v1/share-statements`). Empty (the default):
    /// no statement is taken and every operator is paid the administrator's number, as
    /// before directories. With keys, the administrator's number is the cap of the
    /// statement's share.
    #[serde(default)]
    pub trusted_directories: Vec<String>,
}

impl CoordinatorConfig {
    /// The trusted directory keys, each checked.
    pub fn trusted_keys(&self) -> Result<Vec<VerifyingKey>, HomeError> {
        self.trusted_directories
            .iter()
            .map(|k| {
                VerifyingKey::from_hex(k).map_err(|_| {
                    HomeError::Invalid(format!(
                        "config.json: trusted_directories: {k:?} is not an Ed25519 key in hex"
                    ))
                })
            })
            .collect()
    }
}

/// An opened data directory.
pub struct CoordinatorHome {
    pub dir: PathBuf,
    pub params: NetworkParams,
    pub receipt_key: SigningKey,
    pub envelope_key: HpkeSecretKey,
    pub admin_token: String,
    /// From `config.json`: the directories whose share statements are taken.
    pub trusted_directories: Vec<VerifyingKey>,
}

impl CoordinatorHome {
    /// Opens `dir`, creating what is missing. `params` are used only when the directory is
    /// new; afterwards the stored ones win (they must not change under a running network).
    pub fn open(dir: &Path, params: Option<NetworkParams>) -> Result<Self, HomeError> {
        std::fs::create_dir_all(dir).map_err(|e| FileError::Io {
            path: dir.display().to_string(),
            source: e,
        })?;
        let params: NetworkParams =
            files::load_or_create(&dir.join("params.json"), || params.unwrap_or_default())?;
        params
            .validate()
            .map_err(|e| HomeError::Invalid(format!("params.json: {e}")))?;
        let keys: CoordinatorKeys =
            files::load_or_create(&dir.join("keys.json"), CoordinatorKeys::generate)?;
        let (receipt_key, envelope_key) = keys.check()?;
        let admin_token = files::load_or_create_token(&dir.join("admin-token"))?;
        let config: CoordinatorConfig =
            files::load_or_create(&dir.join(CONFIG_FILE), CoordinatorConfig::default)?;
        let trusted_directories = config.trusted_keys()?;
        Ok(CoordinatorHome {
            dir: dir.to_owned(),
            params,
            receipt_key,
            envelope_key,
            admin_token,
            trusted_directories,
        })
    }

    /// The embedded default database.
    pub fn default_database_url(&self) -> String {
        format!("sqlite://{}", self.dir.join("coordinator.db").display())
    }
}

//! The coordinator's data directory: parameters, keys, admin token, default database.
//!
//! ```text
//! <dir>/params.json        network parameters, fixed at init
//! <dir>/keys.json          receipt signing key and envelope decryption key (0600)
//! <dir>/admin-token        bearer token for /v1/admin (0600)
//! <dir>/coordinator.db     SQLite database (unless a database URL is given)
//! ```

use serde::{Deserialize, Serialize};
use smpx_core::crypto::envelope::HpkeSecretKey;
use smpx_core::crypto::sign::SigningKey;
use smpx_core::NetworkParams;
use smpx_http::files::{self, FileError};
use std::path::{Path, PathBuf};

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

/// An opened data directory.
pub struct CoordinatorHome {
    pub dir: PathBuf,
    pub params: NetworkParams,
    pub receipt_key: SigningKey,
    pub envelope_key: HpkeSecretKey,
    pub admin_token: String,
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
        Ok(CoordinatorHome {
            dir: dir.to_owned(),
            params,
            receipt_key,
            envelope_key,
            admin_token,
        })
    }

    /// The embedded default database.
    pub fn default_database_url(&self) -> String {
        format!("sqlite://{}", self.dir.join("coordinator.db").display())
    }
}

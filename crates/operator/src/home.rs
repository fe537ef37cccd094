//! The operator's data directory.
//!
//! ```text
//! <dir>/operator.json   id, coordinator URL, credential (0600)
//! <dir>/receipt-key     Ed25519 key signing receipts to wallets, hex (0600)
//! <dir>/operator.db     SQLite database of redemptions (unless a URL is given)
//! ```

use serde::{Deserialize, Serialize};
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

pub struct OperatorHome {
    pub dir: PathBuf,
    pub config: OperatorConfig,
    pub receipt_key: SigningKey,
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
        let hexkey: String =
            files::load_or_create(&key_path, || hex::encode(SigningKey::generate().to_bytes()))?;
        let bytes: [u8; 32] = hex::decode(&hexkey)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| FileError::Parse {
                path: key_path.display().to_string(),
                message: "not a 32-byte hex key".into(),
            })?;
        Ok(OperatorHome {
            dir: dir.to_owned(),
            config,
            receipt_key: SigningKey::from_bytes(&bytes),
        })
    }

    pub fn default_database_url(&self) -> String {
        format!("sqlite://{}", self.dir.join("operator.db").display())
    }
}

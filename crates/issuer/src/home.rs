//! The issuer's data directory.
//!
//! ```text
//! <dir>/issuer.json    id, coordinator URL, credential, enabled payment methods (0600)
//! <dir>/admin-token    bearer token for /v1/admin (0600)
//! <dir>/key-encryption-key  encrypts the signing keys in the database (0600; see `wrap`)
//! <dir>/issuer.db      SQLite database: keys (encrypted), top-up codes, sales (unless a
//!                      URL is given)
//! ```

use serde::{Deserialize, Serialize};
use smpx_http::files::{self, FileError};
use std::path::{Path, PathBuf};

/// What an issuer is configured with.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The id the coordinator whitelisted.
    pub issuer_id: String,
    pub coordinator_url: String,
    /// The `<id>:<secret>` credential the coordinator's admin handed out.
    pub credential: String,
    /// Accept the devnet payment method (no money). Never enable outside a devnet.
    #[serde(default)]
    pub devnet_payments: bool,
    /// RSA modulus size for new keys.
    #[serde(default = "default_bits")]
    pub key_bits: usize,
}

fn default_bits() -> usize {
    2048
}

impl std::fmt::Debug for IssuerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerConfig")
            .field("issuer_id", &self.issuer_id)
            .field("coordinator_url", &self.coordinator_url)
            .field("devnet_payments", &self.devnet_payments)
            .finish_non_exhaustive()
    }
}

pub struct IssuerHome {
    pub dir: PathBuf,
    pub config: IssuerConfig,
    pub admin_token: String,
    /// Encrypts the signing keys stored in the database (made on first open).
    pub key_wrap: crate::wrap::KeyWrap,
}

impl IssuerHome {
    /// Writes a new configuration (overwriting) and opens the directory.
    pub fn init(dir: &Path, config: IssuerConfig) -> Result<IssuerHome, FileError> {
        let bytes = serde_json::to_vec_pretty(&config).map_err(|e| FileError::Parse {
            path: dir.display().to_string(),
            message: e.to_string(),
        })?;
        files::write_private(&dir.join("issuer.json"), &bytes)?;
        Self::open(dir)
    }

    /// Opens an initialised directory.
    pub fn open(dir: &Path) -> Result<IssuerHome, FileError> {
        let config: IssuerConfig = files::load(&dir.join("issuer.json"))?;
        let admin_token = files::load_or_create_token(&dir.join("admin-token"))?;
        let kek = files::load_or_create_token(&dir.join("key-encryption-key"))?;
        Ok(IssuerHome {
            dir: dir.to_owned(),
            config,
            admin_token,
            key_wrap: crate::wrap::KeyWrap::from_secret(&kek),
        })
    }

    pub fn default_database_url(&self) -> String {
        format!("sqlite://{}", self.dir.join("issuer.db").display())
    }
}

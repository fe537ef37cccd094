//! The directory's data directory.
//!
//! ```text
//! <dir>/directory.toml   configuration (below); written by `create`, every key optional
//! <dir>/signing-key      Ed25519 key signing share statements, hex (0600)
//! <dir>/directory.db     SQLite database (unless `database_url` names another)
//! ```
//!
//! `directory.toml`:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `name` | `"smpx-directory"` | the name in its share statements |
//! | `listen` | `127.0.0.1:8490` | HTTP listen address |
//! | `database_url` | the SQLite file above | `sqlite://…` or `postgres://…` |
//! | `pow_difficulty` | 16 | leading zero bits a registration's work must reach |
//! | `challenge_ttl_secs` | 600 | how long a proof-of-work challenge may be used |
//! | `probe_interval_secs` | 300 | time between probe rounds |
//! | `probe_concurrency` | 64 | probes in flight at once |
//! | `subnet_limit` | 2 | relays per IPv4 /24 or IPv6 /48 that count toward weight |
//! | `registrations_per_subnet` | 10 | registrations per subnet per `registration_window_secs` |
//! | `registration_window_secs` | 3600 | |
//! | `trusted_attesters` | `[]` | hex Ed25519 keys whose identity attestations count |
//! | `attester_names` | `{}` | a name for a trusted attester, by its hex key, shown on the operator pages beside the key (`{ "ab12…" = "Example Registry" }`) |
//! | `cap_bps` | 7000 | the share cap statements are computed under (the coordinator's maximum) |
//! | `coordinators` | `[]` | coordinators (URLs) the share statements are posted to after each round |

use serde::Deserialize;
use smpx_core::crypto::sign::{SigningKey, VerifyingKey};
use smpx_core::rules::listing::DEFAULT_SUBNET_LIMIT;
use smpx_http::files::{self, FileError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The configuration file's name.
pub const CONFIG_FILE: &str = "directory.toml";
const KEY_FILE: &str = "signing-key";

/// Why the home could not be used.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{path}: {message}")]
    Config { path: String, message: String },
}

/// `directory.toml`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DirectoryConfig {
    pub name: String,
    pub listen: String,
    pub database_url: Option<String>,
    pub pow_difficulty: u32,
    pub challenge_ttl_secs: u64,
    pub probe_interval_secs: u64,
    pub probe_concurrency: usize,
    pub subnet_limit: usize,
    pub registrations_per_subnet: u64,
    pub registration_window_secs: u64,
    pub trusted_attesters: Vec<VerifyingKey>,
    /// Names of trusted attesters, by hex key: what the operator pages show beside the key
    /// (a visitor learns who vouched, not only a key).
    pub attester_names: BTreeMap<String, String>,
    pub cap_bps: u32,
    /// Coordinators the share statements are posted to after each round (`http(s)://…`).
    pub coordinators: Vec<String>,
}

impl Default for DirectoryConfig {
    fn default() -> Self {
        DirectoryConfig {
            name: "smpx-directory".into(),
            listen: "127.0.0.1:8490".into(),
            database_url: None,
            pow_difficulty: 16,
            challenge_ttl_secs: 600,
            probe_interval_secs: 300,
            probe_concurrency: 64,
            subnet_limit: DEFAULT_SUBNET_LIMIT,
            registrations_per_subnet: 10,
            registration_window_secs: 3600,
            trusted_attesters: Vec::new(),
            attester_names: BTreeMap::new(),
            cap_bps: 7000,
            coordinators: Vec::new(),
        }
    }
}

impl DirectoryConfig {
    /// The file's text: every key with its value.
    pub fn render(&self) -> String {
        let q = |s: &str| format!("{s:?}");
        let attesters: Vec<String> = self
            .trusted_attesters
            .iter()
            .map(|k| q(&k.to_hex()))
            .collect();
        let mut out = String::from("# smpx relay directory\n");
        out.push_str(&format!("name = {}\n", q(&self.name)));
        out.push_str(&format!("listen = {}\n", q(&self.listen)));
        if let Some(url) = &self.database_url {
            out.push_str(&format!("database_url = {}\n", q(url)));
        } else {
            out.push_str("# database_url = \"postgres://…\"   (default: directory.db here)\n");
        }
        out.push_str(&format!("pow_difficulty = {}\n", self.pow_difficulty));
        out.push_str(&format!(
            "challenge_ttl_secs = {}\n",
            self.challenge_ttl_secs
        ));
        out.push_str(&format!(
            "probe_interval_secs = {}\n",
            self.probe_interval_secs
        ));
        out.push_str(&format!("probe_concurrency = {}\n", self.probe_concurrency));
        out.push_str(&format!("subnet_limit = {}\n", self.subnet_limit));
        out.push_str(&format!(
            "registrations_per_subnet = {}\n",
            self.registrations_per_subnet
        ));
        out.push_str(&format!(
            "registration_window_secs = {}\n",
            self.registration_window_secs
        ));
        out.push_str(&format!("trusted_attesters = [{}]\n", attesters.join(", ")));
        let names: Vec<String> = self
            .attester_names
            .iter()
            .map(|(k, n)| format!("{} = {}", q(k), q(n)))
            .collect();
        out.push_str(&format!("attester_names = {{ {} }}\n", names.join(", ")));
        out.push_str(&format!("cap_bps = {}\n", self.cap_bps));
        let coordinators: Vec<String> = self.coordinators.iter().map(|u| q(u)).collect();
        out.push_str(&format!("coordinators = [{}]\n", coordinators.join(", ")));
        out
    }

    fn check(&self) -> Result<(), String> {
        if self.pow_difficulty > smpx_core::rules::pow::MAX_DIFFICULTY {
            return Err(format!(
                "pow_difficulty is above {}",
                smpx_core::rules::pow::MAX_DIFFICULTY
            ));
        }
        if self.probe_interval_secs == 0 || self.probe_concurrency == 0 {
            return Err("probe_interval_secs and probe_concurrency must be positive".into());
        }
        if self.cap_bps > 10_000 {
            return Err("cap_bps is above 10000".into());
        }
        if let Some(u) = self
            .coordinators
            .iter()
            .find(|u| !(u.starts_with("http://") || u.starts_with("https://")))
        {
            return Err(format!("coordinators: {u:?} is not an http(s):// URL"));
        }
        if self.name.is_empty() || self.name.len() > 64 {
            return Err("name is 1-64 bytes".into());
        }
        for (key, name) in &self.attester_names {
            let trusted =
                VerifyingKey::from_hex(key).is_ok_and(|k| self.trusted_attesters.contains(&k));
            if !trusted {
                return Err(format!(
                    "attester_names: {key:?} is not one of trusted_attesters"
                ));
            }
            if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
                return Err(format!(
                    "attester_names: the name of {key} is 1-64 bytes without control characters"
                ));
            }
        }
        Ok(())
    }

    /// The configured name of the attester with this key, if any.
    pub fn attester_name(&self, key: &VerifyingKey) -> Option<&str> {
        self.attester_names
            .iter()
            .find(|(k, _)| VerifyingKey::from_hex(k).is_ok_and(|k| &k == key))
            .map(|(_, n)| n.as_str())
    }
}

/// An opened data directory.
pub struct DirectoryHome {
    pub dir: PathBuf,
    pub config: DirectoryConfig,
    /// Signs share statements; never logged.
    pub signing_key: SigningKey,
}

impl DirectoryHome {
    /// Writes `directory.toml` (overwriting) and the signing key (kept if present), then
    /// opens the directory.
    pub fn create(dir: &Path, config: &DirectoryConfig) -> Result<DirectoryHome, HomeError> {
        std::fs::create_dir_all(dir).map_err(|e| FileError::Io {
            path: dir.display().to_string(),
            source: e,
        })?;
        config.check().map_err(|message| HomeError::Config {
            path: dir.join(CONFIG_FILE).display().to_string(),
            message,
        })?;
        files::write_private(&dir.join(CONFIG_FILE), config.render().as_bytes())?;
        Self::load(dir)
    }

    /// Opens an existing directory (its `directory.toml` must be there).
    pub fn load(dir: &Path) -> Result<DirectoryHome, HomeError> {
        let path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| FileError::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        let bad = |message: String| HomeError::Config {
            path: path.display().to_string(),
            message,
        };
        let config: DirectoryConfig = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        config.check().map_err(bad)?;
        let key_path = dir.join(KEY_FILE);
        let bytes = files::load_or_create_secret32(&key_path, "key", || {
            SigningKey::generate(&mut rand::rngs::OsRng).to_bytes()
        })?;
        Ok(DirectoryHome {
            dir: dir.to_owned(),
            config,
            signing_key: SigningKey::from_bytes(&bytes),
        })
    }

    /// The database: `database_url`, or `directory.db` in the directory.
    pub fn database_url(&self) -> String {
        self.config
            .database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.dir.join("directory.db").display()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_config_round_trips_and_the_key_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let attester = SigningKey::from_bytes(&[3; 32]).verifying_key();
        let config = DirectoryConfig {
            pow_difficulty: 4,
            trusted_attesters: vec![attester],
            attester_names: [(attester.to_hex(), "Example \"Registry\"".to_string())].into(),
            database_url: Some("postgres://x/y".into()),
            ..DirectoryConfig::default()
        };
        let a = DirectoryHome::create(dir.path(), &config).unwrap();
        assert_eq!(a.config, config);
        let b = DirectoryHome::load(dir.path()).unwrap();
        assert_eq!(a.signing_key.to_bytes(), b.signing_key.to_bytes());
        assert_eq!(b.database_url(), "postgres://x/y");
        assert_eq!(
            b.config.attester_name(&attester),
            Some("Example \"Registry\"")
        );
        // A name for a key that is not trusted is a mistake, refused.
        let stray = DirectoryConfig {
            attester_names: [(
                SigningKey::from_bytes(&[4; 32]).verifying_key().to_hex(),
                "X".into(),
            )]
            .into(),
            ..DirectoryConfig::default()
        };
        assert!(DirectoryHome::create(dir.path(), &stray).is_err());
        // An unknown key is refused, naming the file.
        std::fs::write(dir.path().join(CONFIG_FILE), "colour = 1\n").unwrap();
        assert!(matches!(
            DirectoryHome::load(dir.path()),
            Err(HomeError::Config { .. })
        ));
        let bad = DirectoryConfig {
            pow_difficulty: 99,
            ..DirectoryConfig::default()
        };
        assert!(DirectoryHome::create(dir.path(), &bad).is_err());
    }
}

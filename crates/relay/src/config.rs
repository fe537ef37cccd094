//! The relay's configuration file, `<dir>/relay.toml`.
//!
//! `smpx relay init` writes it with every key and a comment on each ([`NodeConfig::render`]);
//! `smpx relay run` reads it ([`NodeConfig::load`]). Every key may be left out (its default
//! applies); an unknown key, a wrong type or an impossible value is refused with a
//! [`ConfigError`] that names the line.
//!
//! Prices are in credit *units*: 1 credit = 1,000,000 units, and 1 credit ≈ 1 USD at launch
//! (DESIGN.md §1). The defaults ([`DEFAULT_UNITS_PER_RECEIVER_MONTH`],
//! [`DEFAULT_UNITS_PER_GB_MONTH`]) make 5,000 active receivers with 5–10 GB cost about
//! 5.1–6.4 credits a month ([`CapacityConfig::monthly_price_units`]).

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use smpx_relay_server::ServerConfig;
use smpx_relay_store::log::FsyncPolicy;
use smpx_relay_transport::{RelayHost, DEFAULT_PORT};

/// The configuration file's name inside the relay directory.
pub const CONFIG_FILE: &str = "relay.toml";
/// Where the relay listens by default: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5223";
/// Where the ops endpoint (health, metrics) listens by default: loopback only.
pub const DEFAULT_OPS_LISTEN: &str = "127.0.0.1:5224";
/// The log backend's file, relative to the relay directory.
pub const DEFAULT_LOG_FILE: &str = "queues.log";
/// The SQLite backend's file, relative to the relay directory.
pub const DEFAULT_SQLITE_FILE: &str = "queues.db";
/// Credit units per credit.
pub const UNITS_PER_CREDIT: u64 = 1_000_000;
/// Default price of one active receiver beyond the free ones, per month: 0.001 credit.
pub const DEFAULT_UNITS_PER_RECEIVER_MONTH: u64 = 1_000;
/// Default price of one GB held beyond the free storage, per month: 0.25 credit.
pub const DEFAULT_UNITS_PER_GB_MONTH: u64 = 250_000;

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not TOML, an unknown key, a wrong type or an unparsable value.
    #[error("{}: line {line}: {message}", .path.display())]
    Syntax {
        path: PathBuf,
        /// 1-based; 0 when the parser could not tell.
        line: usize,
        message: String,
    },
    /// Well-formed but unusable (e.g. `backend = "postgres"` without a `url`).
    #[error("{}: line {line}: {key}: {message}", .path.display())]
    Invalid {
        path: PathBuf,
        /// 1-based line of the key (or of its table); 0 when it is not in the file.
        line: usize,
        key: String,
        message: String,
    },
}

impl ConfigError {
    /// The line the error is about (1-based), if known.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Syntax { line, .. } | ConfigError::Invalid { line, .. } if *line > 0 => {
                Some(*line)
            }
            _ => None,
        }
    }
}

/// The whole file.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    pub server: ServerSection,
    pub storage: StorageConfig,
    pub limits: LimitsConfig,
    pub free_tier: FreeTierConfig,
    pub capacity: CapacityConfig,
    pub forwarding: ForwardingSection,
    pub ops: OpsConfig,
    /// `[directory]`: register with directories and heartbeat (absent: the relay is
    /// unlisted).
    pub directory: Option<DirectorySection>,
}

/// The operator key's file by default, relative to the relay directory.
pub const DEFAULT_OPERATOR_KEY_FILE: &str = "operator.key";
/// Seconds between heartbeats by default.
pub const DEFAULT_HEARTBEAT_INTERVAL_SECS: u64 = 300;

/// `[directory]`: the directories this relay registers with ([`crate::directory`]). Only
/// the metadata fields that are set are sent: the operator decides what is published.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DirectorySection {
    /// One or more directories (`http(s)://…`).
    pub urls: Vec<String>,
    /// The operator, by the id the coordinator knows it under.
    pub operator_id: String,
    /// A short region code: lower-case letters, digits and hyphens.
    pub region: String,
    /// The operator's Ed25519 secret (hex): signs registrations, heartbeats and
    /// withdrawals. Relative paths are under the relay directory.
    #[serde(default = "default_operator_key_file")]
    pub operator_key_file: PathBuf,
    #[serde(default = "default_heartbeat_interval")]
    pub heartbeat_interval_secs: u64,
    #[serde(default)]
    pub source_code: Option<String>,
    #[serde(default)]
    pub operator_name: Option<String>,
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub hosting: Option<String>,
    #[serde(default)]
    pub admin_contact: Option<String>,
    #[serde(default)]
    pub complaints_contact: Option<String>,
}

fn default_operator_key_file() -> PathBuf {
    PathBuf::from(DEFAULT_OPERATOR_KEY_FILE)
}

fn default_heartbeat_interval() -> u64 {
    DEFAULT_HEARTBEAT_INTERVAL_SECS
}

impl DirectorySection {
    /// A section for `urls` with the defaults for everything optional.
    pub fn new(urls: Vec<String>, operator_id: String, region: String) -> Self {
        Self {
            urls,
            operator_id,
            region,
            operator_key_file: default_operator_key_file(),
            heartbeat_interval_secs: DEFAULT_HEARTBEAT_INTERVAL_SECS,
            source_code: None,
            operator_name: None,
            country: None,
            hosting: None,
            admin_contact: None,
            complaints_contact: None,
        }
    }

    /// The published metadata: exactly the fields set here.
    pub fn metadata(&self) -> smpx_core::directory::wire::RelayMetadata {
        smpx_core::directory::wire::RelayMetadata {
            source_code: self.source_code.clone(),
            operator_name: self.operator_name.clone(),
            country: self.country.clone(),
            hosting: self.hosting.clone(),
            admin_contact: self.admin_contact.clone(),
            complaints_contact: self.complaints_contact.clone(),
        }
    }

    /// The operator key's file, resolved against the relay directory.
    pub fn operator_key_path(&self, dir: &Path) -> PathBuf {
        if self.operator_key_file.is_absolute() {
            self.operator_key_file.clone()
        } else {
            dir.join(&self.operator_key_file)
        }
    }

    fn render(&self) -> String {
        let urls = self
            .urls
            .iter()
            .map(|u| toml_string(u))
            .collect::<Vec<_>>()
            .join(", ");
        let meta = |key: &str, v: &Option<String>, example: &str| match v {
            Some(v) => format!("{key} = {}", toml_string(v)),
            None => format!("# {key} = \"{example}\""),
        };
        format!(
            r#"
[directory]
# The directories this relay is listed in (`smpx relay register` registers with each; the
# registration is signed by ca.key, so bring it back for that).
urls = [{urls}]
# The operator, by the id the coordinator knows it under, and the relay's region.
operator_id = {operator_id}
region = {region}
# The operator's Ed25519 key (hex, 0600, created by init): signs the registration, the
# heartbeats and a withdrawal. Keep it: a new key cannot take over this relay's listing.
operator_key_file = {key_file}
# Seconds between signed heartbeats while the relay runs.
heartbeat_interval_secs = {interval}
# Published only when set (what a SimpleX server shows in [INFORMATION]):
{source_code}
{operator_name}
{country}
{hosting}
{admin_contact}
{complaints_contact}
"#,
            operator_id = toml_string(&self.operator_id),
            region = toml_string(&self.region),
            key_file = toml_string(&self.operator_key_file.display().to_string()),
            interval = self.heartbeat_interval_secs,
            source_code = meta("source_code", &self.source_code, "https://github.com/…"),
            operator_name = meta("operator_name", &self.operator_name, "Example Relays Ltd"),
            country = meta("country", &self.country, "DE"),
            hosting = meta("hosting", &self.hosting, "Hetzner"),
            admin_contact = meta("admin_contact", &self.admin_contact, "admin@example.org"),
            complaints_contact = meta(
                "complaints_contact",
                &self.complaints_contact,
                "abuse@example.org"
            ),
        )
    }

    fn check(
        &self,
        invalid: impl Fn(&str, &str, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let table = "directory";
        if self.urls.is_empty() {
            return Err(invalid(table, "urls", "name at least one directory".into()));
        }
        if let Some(u) = self
            .urls
            .iter()
            .find(|u| !(u.starts_with("http://") || u.starts_with("https://")) || u.len() < 10)
        {
            return Err(invalid(
                table,
                "urls",
                format!("{u:?} is not an http:// or https:// URL"),
            ));
        }
        if self.operator_id.is_empty()
            || self.operator_id.len() > smpx_core::directory::wire::MAX_OPERATOR_ID_LEN
            || self.operator_id.chars().any(char::is_control)
        {
            return Err(invalid(
                table,
                "operator_id",
                "must be 1 to 64 bytes without control characters".into(),
            ));
        }
        if self.region.is_empty()
            || self.region.len() > smpx_core::directory::wire::MAX_REGION_LEN
            || !self
                .region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(invalid(
                table,
                "region",
                "must be 1 to 16 lower-case letters, digits or hyphens".into(),
            ));
        }
        if self.heartbeat_interval_secs < 10 || self.heartbeat_interval_secs > 86_400 {
            return Err(invalid(
                table,
                "heartbeat_interval_secs",
                "must be 10 to 86400 seconds".into(),
            ));
        }
        if let Err(e) = self.metadata().check() {
            // The message starts with the field's name.
            let key = e
                .message
                .split(' ')
                .next()
                .unwrap_or("directory")
                .to_owned();
            return Err(invalid(table, &key, e.message));
        }
        Ok(())
    }
}

/// `[forwarding]`: private routing ([`smpx_relay_server::forward`]).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardingSection {
    /// Forward this relay's clients' commands to other relays (PRXY, PFWD).
    pub proxy: bool,
    /// Run commands other relays forward (RKEY, RFWD).
    pub destination: bool,
    /// Seconds to reach a destination (TCP, TLS, handshake, its key).
    pub connect_timeout_secs: u64,
    /// As a proxy, also dial loopback, private and other non-public destinations.
    pub allow_private_destinations: bool,
}

impl Default for ForwardingSection {
    fn default() -> Self {
        Self {
            proxy: true,
            destination: true,
            connect_timeout_secs: 10,
            allow_private_destinations: false,
        }
    }
}

impl ForwardingSection {
    /// The server's forwarding configuration; the destination role signs with `identity`.
    pub fn server_config(
        &self,
        identity: &smpx_relay_transport::RelayIdentity,
    ) -> Result<smpx_relay_server::forward::ForwardingConfig, smpx_relay_transport::TransportError>
    {
        let signer = match self.destination {
            true => Some(smpx_relay_server::forward::ForwardSigner::from_identity(
                identity,
            )?),
            false => None,
        };
        Ok(smpx_relay_server::forward::ForwardingConfig {
            proxy: self.proxy,
            signer,
            connect_timeout: Duration::from_secs(self.connect_timeout_secs),
            allow_private_destinations: self.allow_private_destinations,
            ..Default::default()
        })
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Where the relay accepts connections.
    pub listen: SocketAddr,
    /// The host clients connect to (in the relay's address).
    pub public_host: String,
    /// The port clients connect to (in the relay's address).
    pub public_port: u16,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)),
            public_host: "127.0.0.1".into(),
            public_port: DEFAULT_PORT,
        }
    }
}

/// Which store backend holds queues and messages.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Memory plus an append-only log ([`smpx_relay_store::log`]).
    #[default]
    Log,
    /// SQLite ([`smpx_relay_store::sql`]).
    Sqlite,
    /// PostgreSQL ([`smpx_relay_store::sql`]).
    Postgres,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FsyncSetting {
    #[default]
    Never,
    Batch,
    Every,
}

impl From<FsyncSetting> for FsyncPolicy {
    fn from(f: FsyncSetting) -> Self {
        match f {
            FsyncSetting::Never => FsyncPolicy::Never,
            FsyncSetting::Batch => FsyncPolicy::Batch,
            FsyncSetting::Every => FsyncPolicy::Every,
        }
    }
}

#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub backend: BackendKind,
    /// The log file or SQLite file; relative paths are under the relay directory.
    pub path: Option<PathBuf>,
    /// PostgreSQL only: `postgres://…`.
    pub url: Option<String>,
    /// Log backend only.
    pub fsync: FsyncSetting,
}

impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageConfig")
            .field("backend", &self.backend)
            .field("path", &self.path)
            // The URL may carry a password: never print it.
            .field("url", &self.url.as_ref().map(|_| "[elided]"))
            .field("fsync", &self.fsync)
            .finish()
    }
}

/// The store a relay directory's configuration names, resolved.
#[derive(Clone, PartialEq, Eq)]
pub enum StorageTarget {
    Log { path: PathBuf, fsync: FsyncPolicy },
    Sqlite { path: PathBuf },
    Postgres { url: String },
}

impl std::fmt::Debug for StorageTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageTarget::Log { path, fsync } => {
                write!(f, "log {} (fsync {fsync:?})", path.display())
            }
            StorageTarget::Sqlite { path } => write!(f, "sqlite {}", path.display()),
            // The URL may carry a password: never print it.
            StorageTarget::Postgres { .. } => f.write_str("postgres (url elided)"),
        }
    }
}

impl StorageConfig {
    /// Where the store lives, with relative paths resolved against `dir`.
    pub fn target(&self, dir: &Path) -> StorageTarget {
        let path = |default: &str| {
            let p = self.path.clone().unwrap_or_else(|| PathBuf::from(default));
            if p.is_absolute() {
                p
            } else {
                dir.join(p)
            }
        };
        match self.backend {
            BackendKind::Log => StorageTarget::Log {
                path: path(DEFAULT_LOG_FILE),
                fsync: self.fsync.into(),
            },
            BackendKind::Sqlite => StorageTarget::Sqlite {
                path: path(DEFAULT_SQLITE_FILE),
            },
            BackendKind::Postgres => StorageTarget::Postgres {
                url: self.url.clone().unwrap_or_default(),
            },
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub max_connections: usize,
    pub handshake_timeout_secs: u64,
    pub block_deadline_secs: u64,
    pub idle_timeout_secs: u64,
    pub write_deadline_secs: u64,
    /// On shutdown, how long open connections get to finish.
    pub shutdown_drain_secs: u64,
    /// Queues and channels one connection may create.
    pub queues_per_connection: u32,
    /// Queues and channels created from one source address, per hour (and at once).
    pub queues_per_address_per_hour: u32,
    /// Undelivered bodies held in free-tier queues created from one source address, MB.
    pub stored_mb_per_address: u64,
    /// PRXY per connection, per minute (and at once).
    pub proxy_sessions_per_minute: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let s = ServerConfig::default();
        Self {
            max_connections: s.max_connections,
            handshake_timeout_secs: s.handshake_timeout.as_secs(),
            block_deadline_secs: s.block_deadline.as_secs(),
            idle_timeout_secs: s.idle_timeout.as_secs(),
            write_deadline_secs: s.write_deadline.as_secs(),
            shutdown_drain_secs: 10,
            queues_per_connection: s.limits.queues_per_connection,
            queues_per_address_per_hour: s.limits.queues_per_address_per_hour,
            stored_mb_per_address: s.limits.stored_bytes_per_address / 1_000_000,
            proxy_sessions_per_minute: s.limits.proxy_sessions_per_minute,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct FreeTierConfig {
    /// Undelivered messages per queue.
    pub quota: u32,
    /// Days an undelivered message is kept.
    pub retention_days: u64,
    /// Seconds between expiry runs.
    pub expire_interval_secs: u64,
}

impl Default for FreeTierConfig {
    fn default() -> Self {
        Self {
            quota: smpx_relay_store::FREE_QUOTA,
            retention_days: smpx_relay_store::FREE_RETENTION_SECS / 86_400,
            expire_interval_secs: 3600,
        }
    }
}

/// Paid capacity: who is paid (the operator's credit service) and what capacity costs —
/// a queue's larger quota, and a channel beyond its free allowance.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CapacityConfig {
    /// The operator's credit service (`smpx operator`), whose spent registry takes the
    /// credits paid here; `None`: this relay takes no payments (PAY answers ERR PAYMENT).
    pub operator_url: Option<String>,
    /// Undelivered messages a paid queue holds.
    pub paid_quota: u32,
    /// Credit units per paid queue per 30 days.
    pub units_per_queue_month: u64,
    /// Seconds between measurements (and charges) of a channel's usage.
    pub billing_interval_secs: u64,
    /// Active receivers a community gets free.
    pub free_active_receivers: u64,
    /// Storage a community gets free, MB.
    pub free_storage_mb: u64,
    /// Credit units per active receiver beyond the free ones, per month.
    pub units_per_receiver_month: u64,
    /// Credit units per GB beyond the free storage, per month.
    pub units_per_gb_month: u64,
    /// Members inactive this long are not counted.
    pub inactive_after_days: u64,
}

impl Default for CapacityConfig {
    fn default() -> Self {
        Self {
            operator_url: None,
            paid_quota: 10_000,
            units_per_queue_month: 10_000,
            billing_interval_secs: 3_600,
            free_active_receivers: 1_000,
            free_storage_mb: 500,
            units_per_receiver_month: DEFAULT_UNITS_PER_RECEIVER_MONTH,
            units_per_gb_month: DEFAULT_UNITS_PER_GB_MONTH,
            inactive_after_days: 14,
        }
    }
}

impl CapacityConfig {
    /// The server's view of these prices.
    pub fn pricing(&self) -> smpx_relay_server::capacity::Pricing {
        smpx_relay_server::capacity::Pricing {
            paid_quota: self.paid_quota,
            units_per_queue_month: self.units_per_queue_month,
            free_active_receivers: self.free_active_receivers,
            free_storage_bytes: self.free_storage_mb.saturating_mul(1_000_000),
            units_per_receiver_month: self.units_per_receiver_month,
            units_per_gb_month: self.units_per_gb_month,
            inactive_after_secs: self.inactive_after_days.saturating_mul(86_400),
            billing_interval_secs: self.billing_interval_secs,
        }
    }

    /// The monthly price, in credit units, of a community with `active_receivers` and
    /// `stored_bytes` (GB = 10^9 bytes, charged pro rata).
    pub fn monthly_price_units(&self, active_receivers: u64, stored_bytes: u64) -> u64 {
        let receivers = active_receivers.saturating_sub(self.free_active_receivers);
        let free_bytes = self.free_storage_mb.saturating_mul(1_000_000);
        let extra_bytes = u128::from(stored_bytes.saturating_sub(free_bytes));
        let storage = extra_bytes * u128::from(self.units_per_gb_month) / 1_000_000_000;
        receivers
            .saturating_mul(self.units_per_receiver_month)
            .saturating_add(u64::try_from(storage).unwrap_or(u64::MAX))
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct OpsConfig {
    /// Where `/health` and `/metrics` are served; keep it private.
    pub listen: SocketAddr,
}

impl Default for OpsConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT + 1)),
        }
    }
}

/// 1-based line of the first line of `text` that, trimmed, starts with `prefix`; else 0.
fn line_of(text: &str, prefix: &str) -> usize {
    text.lines()
        .position(|l| l.trim_start().starts_with(prefix))
        .map(|i| i + 1)
        .unwrap_or(0)
}

/// Line of `key` inside `[table]` (or of the table header when the key is absent).
fn key_line(text: &str, table: &str, key: &str) -> usize {
    let header = format!("[{table}]");
    let mut in_table = false;
    let mut header_line = 0;
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.starts_with('[') {
            in_table = t == header;
            if in_table {
                header_line = i + 1;
            }
            continue;
        }
        if in_table {
            if let Some(rest) = t.strip_prefix(key) {
                if rest.trim_start().starts_with('=') {
                    return i + 1;
                }
            }
        }
    }
    header_line
}

impl NodeConfig {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and checks `text`; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: NodeConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            line: e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
                .unwrap_or(0),
            message: e.message().trim().to_owned(),
        })?;
        config.check(text, path)?;
        Ok(config)
    }

    fn check(&self, text: &str, path: &Path) -> Result<(), ConfigError> {
        let invalid = |table: &str, key: &str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            line: key_line(text, table, key),
            key: format!("{table}.{key}"),
            message,
        };
        if let Err(e) = self.server.public_host.parse::<RelayHost>() {
            return Err(invalid("server", "public_host", e.to_string()));
        }
        if self.server.public_port == 0 && self.server.listen.port() != 0 {
            return Err(invalid(
                "server",
                "public_port",
                "0 (the bound port) needs an ephemeral listen port (0)".into(),
            ));
        }
        match self.storage.backend {
            BackendKind::Postgres => {
                let url = self.storage.url.as_deref().unwrap_or("");
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    return Err(invalid(
                        "storage",
                        "url",
                        "backend \"postgres\" needs url = \"postgres://…\"".into(),
                    ));
                }
                if self.storage.path.is_some() {
                    return Err(invalid(
                        "storage",
                        "path",
                        "not used by the postgres backend (use url)".into(),
                    ));
                }
            }
            BackendKind::Log | BackendKind::Sqlite => {
                if self.storage.url.is_some() {
                    return Err(invalid(
                        "storage",
                        "url",
                        "only the postgres backend takes a url".into(),
                    ));
                }
            }
        }
        if self.storage.backend != BackendKind::Log && self.storage.fsync != FsyncSetting::Never {
            return Err(invalid(
                "storage",
                "fsync",
                "only the log backend takes fsync".into(),
            ));
        }
        let l = &self.limits;
        if l.max_connections == 0 || l.max_connections > u32::MAX as usize {
            return Err(invalid(
                "limits",
                "max_connections",
                "must be between 1 and 4294967295".into(),
            ));
        }
        for (key, v) in [
            ("handshake_timeout_secs", l.handshake_timeout_secs),
            ("block_deadline_secs", l.block_deadline_secs),
            ("idle_timeout_secs", l.idle_timeout_secs),
            ("write_deadline_secs", l.write_deadline_secs),
        ] {
            if v == 0 || v > 86_400 {
                return Err(invalid("limits", key, "must be 1 to 86400 seconds".into()));
            }
        }
        for (key, v) in [
            ("queues_per_connection", l.queues_per_connection),
            ("queues_per_address_per_hour", l.queues_per_address_per_hour),
            ("proxy_sessions_per_minute", l.proxy_sessions_per_minute),
        ] {
            if v == 0 {
                return Err(invalid(
                    "limits",
                    key,
                    "must be at least 1 (a limit of 0 would refuse every client)".into(),
                ));
            }
        }
        if l.stored_mb_per_address == 0 || l.stored_mb_per_address > 10_000_000 {
            return Err(invalid(
                "limits",
                "stored_mb_per_address",
                "must be 1 to 10000000 MB".into(),
            ));
        }
        if self.free_tier.quota == 0 {
            return Err(invalid("free_tier", "quota", "must be at least 1".into()));
        }
        if self.free_tier.retention_days == 0 || self.free_tier.retention_days > 3650 {
            return Err(invalid(
                "free_tier",
                "retention_days",
                "must be 1 to 3650 days".into(),
            ));
        }
        if self.free_tier.expire_interval_secs == 0 {
            return Err(invalid(
                "free_tier",
                "expire_interval_secs",
                "must be at least 1".into(),
            ));
        }
        let c = &self.capacity;
        if let Some(url) = &c.operator_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
                return Err(invalid(
                    "capacity",
                    "operator_url",
                    "must be an http:// or https:// URL".into(),
                ));
            }
        }
        if c.paid_quota < self.free_tier.quota {
            return Err(invalid(
                "capacity",
                "paid_quota",
                "must be at least the free tier's quota".into(),
            ));
        }
        if c.units_per_queue_month == 0 {
            return Err(invalid(
                "capacity",
                "units_per_queue_month",
                "must be at least 1".into(),
            ));
        }
        if c.billing_interval_secs == 0 || c.billing_interval_secs > 86_400 {
            return Err(invalid(
                "capacity",
                "billing_interval_secs",
                "must be 1 to 86400 seconds".into(),
            ));
        }
        if self.forwarding.connect_timeout_secs == 0 || self.forwarding.connect_timeout_secs > 300 {
            return Err(invalid(
                "forwarding",
                "connect_timeout_secs",
                "must be 1 to 300 seconds".into(),
            ));
        }
        if let Some(d) = &self.directory {
            d.check(invalid)?;
        }
        if self.ops.listen == self.server.listen && self.ops.listen.port() != 0 {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                line: key_line(text, "ops", "listen").max(line_of(text, "[ops]")),
                key: "ops.listen".into(),
                message: "must differ from server.listen".into(),
            });
        }
        Ok(())
    }

    /// The relay's address host (checked by [`NodeConfig::parse`]).
    pub fn public_host(&self) -> Result<RelayHost, smpx_relay_transport::AddressError> {
        self.server.public_host.parse()
    }

    /// The server's limits and timings.
    pub fn server_config(&self) -> ServerConfig {
        let l = &self.limits;
        ServerConfig {
            max_connections: l.max_connections,
            handshake_timeout: Duration::from_secs(l.handshake_timeout_secs),
            block_deadline: Duration::from_secs(l.block_deadline_secs),
            idle_timeout: Duration::from_secs(l.idle_timeout_secs),
            write_deadline: Duration::from_secs(l.write_deadline_secs),
            limits: smpx_relay_server::limits::Limits {
                queues_per_connection: l.queues_per_connection,
                queues_per_address_per_hour: l.queues_per_address_per_hour,
                stored_bytes_per_address: l.stored_mb_per_address.saturating_mul(1_000_000),
                proxy_sessions_per_minute: l.proxy_sessions_per_minute,
            },
            quota: self.free_tier.quota,
            retention_secs: self.free_tier.retention_days.saturating_mul(86_400),
            expire_interval: Duration::from_secs(self.free_tier.expire_interval_secs),
            pricing: self.capacity.pricing(),
            redeemer: self.capacity.operator_url.as_deref().map(|url| {
                std::sync::Arc::new(smpx_relay_server::capacity::OperatorRedeemer::new(url))
                    as std::sync::Arc<dyn smpx_relay_server::capacity::Redeemer>
            }),
            ..ServerConfig::default()
        }
    }

    /// The commented file `init` writes, with this configuration's values.
    pub fn render(&self) -> String {
        let s = &self.server;
        let st = &self.storage;
        let l = &self.limits;
        let f = &self.free_tier;
        let c = &self.capacity;
        let backend = match st.backend {
            BackendKind::Log => "log",
            BackendKind::Sqlite => "sqlite",
            BackendKind::Postgres => "postgres",
        };
        let fsync = match st.fsync {
            FsyncSetting::Never => "never",
            FsyncSetting::Batch => "batch",
            FsyncSetting::Every => "every",
        };
        let path_line = match (&st.path, st.backend) {
            (Some(p), _) => format!("path = {}", toml_string(&p.display().to_string())),
            (None, BackendKind::Sqlite) => format!("# path = \"{DEFAULT_SQLITE_FILE}\""),
            (None, _) => format!("# path = \"{DEFAULT_LOG_FILE}\""),
        };
        let url_line = match &st.url {
            Some(u) => format!("url = {}", toml_string(u)),
            None => "# url = \"postgres://user:password@localhost:5432/relay\"".into(),
        };
        format!(
            r#"# smpx relay configuration — written by `smpx relay init`, read by `smpx relay run`.
#
# Every key may be removed: its default (the value written here by init) applies. Unknown
# keys are refused, and so are wrong types and impossible values: `smpx relay run` stops
# and names the line. Restart the relay after editing.

[server]
# Where the relay accepts client connections (TLS 1.3). Loopback by default, so a fresh
# relay is reachable only from this machine: use "0.0.0.0:5223" (or "[::]:5223") to accept
# connections from other machines.
listen = "{listen}"
# How clients reach this relay. With the CA fingerprint these make the relay's address,
# smpx://<fingerprint>@public_host:public_port — the address you publish. Behind NAT or a
# port forward they differ from `listen`. A DNS name, an IPv4 address or [IPv6].
# public_port = 0 (with a listen port of 0) means the port picked at start.
public_host = {public_host}
public_port = {public_port}

[storage]
# Where queues and messages are kept; no message the relay acknowledged is lost when the
# process is killed, with any backend.
#   "log"      memory plus an append-only log file (the fastest; the default)
#   "sqlite"   a SQLite database file (WAL)
#   "postgres" a PostgreSQL database (needs `url`)
backend = "{backend}"
# The log or SQLite file; relative paths are under the relay directory. Default
# "{DEFAULT_LOG_FILE}" for log, "{DEFAULT_SQLITE_FILE}" for sqlite.
{path_line}
# postgres only (may hold a password: this file is 0600):
{url_line}
# log only: "never" (write(2) only: survives the process being killed, not a power loss),
# "batch" (one fdatasync shared by concurrent writes: survives power loss), "every".
fsync = "{fsync}"

[limits]
# Connections served at once; more are closed as soon as they are accepted.
max_connections = {max_connections}
# TLS and version handshake must complete within this.
handshake_timeout_secs = {handshake}
# A block, once started, must arrive completely within this (slow senders are dropped).
block_deadline_secs = {block}
# A connection without a block for this long is closed (clients ping more often).
idle_timeout_secs = {idle}
# Writing one block to a client must complete within this.
write_deadline_secs = {write}
# On SIGINT/SIGTERM: stop accepting, then give open connections this long to finish.
shutdown_drain_secs = {drain}
# Against a client that would fill the relay. Over a limit a command is answered
# ERR LIMIT; the connection and its queues keep working. Queues and channels one
# connection may create:
queues_per_connection = {per_connection}
# ... and all connections from one source address together (an IPv6 address counts by
# its /64): this many at once, then this many per hour.
queues_per_address_per_hour = {per_address}
# Undelivered messages held in the free-tier queues created from one source address, MB
# (paid queues and channels are not counted). An ACK, DEL or expiry frees space again.
stored_mb_per_address = {stored_mb}
# Private routing requests (PRXY) per connection: this many at once, then per minute.
proxy_sessions_per_minute = {proxy_rate}
# Source addresses are counted in memory only: never written to the store or to a log,
# forgotten at restart.

[free_tier]
# What every queue gets without paying: undelivered messages it holds (then the sender
# gets a quota error and the recipient a marker) ...
quota = {quota}
# ... and how many days an undelivered message is kept.
retention_days = {retention}
# Seconds between runs of the expiry task.
expire_interval_secs = {expire}

[capacity]
# Paid capacity, bought with the operator's credits. Prices are in credit units:
# 1 credit = 1,000,000 units, and 1 credit is about 1 USD at launch.
# The operator's credit service (`smpx operator`), whose spent registry takes the credits
# paid here. Without it the relay takes no payments: everyone gets the free tier.
{operator_line}
# A paid queue holds this many undelivered messages, for this many units per 30 days
# (default 0.01 credit).
paid_quota = {paid_quota}
units_per_queue_month = {per_queue}
# Channels are billed by use: measured (and charged to their prepaid balance) this often.
billing_interval_secs = {billing}
# Active receivers and storage a channel gets free:
free_active_receivers = {free_receivers}
free_storage_mb = {free_mb}
# Per month, per active receiver beyond the free ones (default 0.001 credit) and per GB
# beyond the free storage (default 0.25 credit). With the defaults, 5,000 active
# receivers with 5 GB cost 5.1 credits a month, with 10 GB 6.4 credits.
units_per_receiver_month = {per_receiver}
units_per_gb_month = {per_gb}
# Members inactive this many days are not counted as active receivers.
inactive_after_days = {inactive}

[forwarding]
# Private routing: this relay forwards its clients' messages to queues on other relays
# (proxy), so those relays see this relay's address instead of the clients'; it cannot
# read what it forwards. It also runs messages other relays forward to it (destination).
proxy = {fwd_proxy}
destination = {fwd_destination}
# Seconds to reach another relay (TCP, TLS with its pinned fingerprint, handshake).
connect_timeout_secs = {fwd_connect}
# As a proxy, this relay refuses destinations that resolve to loopback, private (10/8,
# 172.16/12, 192.168/16, fc00::/7), link-local (169.254/16, fe80::/10), CGNAT (100.64/10),
# documentation, multicast or other non-public addresses, so clients cannot use it to
# reach or scan its own network; the answer is the one of an unreachable relay. true
# allows them: for a devnet or relays on one private network only.
allow_private_destinations = {fwd_private}

[ops]
# Health (GET /health) and Prometheus metrics (GET /metrics) over plain HTTP. Keep it on
# loopback or a private network: it is not authenticated.
listen = "{ops}"
{directory}"#,
            listen = s.listen,
            public_host = toml_string(&s.public_host),
            public_port = s.public_port,
            max_connections = l.max_connections,
            handshake = l.handshake_timeout_secs,
            block = l.block_deadline_secs,
            idle = l.idle_timeout_secs,
            write = l.write_deadline_secs,
            drain = l.shutdown_drain_secs,
            per_connection = l.queues_per_connection,
            per_address = l.queues_per_address_per_hour,
            stored_mb = l.stored_mb_per_address,
            proxy_rate = l.proxy_sessions_per_minute,
            quota = f.quota,
            retention = f.retention_days,
            expire = f.expire_interval_secs,
            operator_line = match &c.operator_url {
                Some(u) => format!("operator_url = {}", toml_string(u)),
                None => "# operator_url = \"http://127.0.0.1:7402\"".into(),
            },
            paid_quota = c.paid_quota,
            per_queue = c.units_per_queue_month,
            billing = c.billing_interval_secs,
            free_receivers = c.free_active_receivers,
            free_mb = c.free_storage_mb,
            per_receiver = c.units_per_receiver_month,
            per_gb = c.units_per_gb_month,
            inactive = c.inactive_after_days,
            fwd_proxy = self.forwarding.proxy,
            fwd_destination = self.forwarding.destination,
            fwd_connect = self.forwarding.connect_timeout_secs,
            fwd_private = self.forwarding.allow_private_destinations,
            ops = self.ops.listen,
            directory = match &self.directory {
                Some(d) => d.render(),
                None => DIRECTORY_EXAMPLE.to_owned(),
            },
        )
    }
}

/// What `render` writes when no directory is configured: the section, commented out.
const DIRECTORY_EXAMPLE: &str = r#"
# [directory]
# List this relay in directories (`smpx relay init --directory URL`, or add this section
# and run `smpx relay register` with ca.key present). Heartbeats are sent while it runs.
# urls = ["https://directory.example.org"]
# operator_id = "my-operator"
# region = "eu-west"
"#;

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("relay.toml")
    }

    #[test]
    fn rendered_defaults_parse_back_to_defaults() {
        let c = NodeConfig::default();
        let text = c.render();
        assert_eq!(NodeConfig::parse(&text, p()).unwrap(), c);
        assert_eq!(NodeConfig::parse("", p()).unwrap(), c);
        assert_eq!(c.server.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.ops.listen.to_string(), DEFAULT_OPS_LISTEN);
        assert_eq!(c.free_tier.quota, 128);
        assert_eq!(c.free_tier.retention_days, 21);
        assert!(!c.forwarding.allow_private_destinations);
        // relay.toml's defaults are the server's.
        let s = c.server_config();
        assert_eq!(s.limits, smpx_relay_server::limits::Limits::default());
    }

    #[test]
    fn limits_and_private_destinations_are_read_from_the_file() {
        let text = "[limits]\nqueues_per_connection = 7\nqueues_per_address_per_hour = 8\n\
                    stored_mb_per_address = 9\nproxy_sessions_per_minute = 10\n\
                    [forwarding]\nallow_private_destinations = true\n";
        let c = NodeConfig::parse(text, p()).unwrap();
        let l = c.server_config().limits;
        assert_eq!(
            (
                l.queues_per_connection,
                l.queues_per_address_per_hour,
                l.stored_bytes_per_address,
                l.proxy_sessions_per_minute
            ),
            (7, 8, 9_000_000, 10)
        );
        assert!(c.forwarding.allow_private_destinations);
        assert_eq!(NodeConfig::parse(&c.render(), p()).unwrap(), c);
    }

    #[test]
    fn rendered_custom_values_parse_back() {
        let mut c = NodeConfig::default();
        c.server.public_host = "relay.example.org".into();
        c.storage.backend = BackendKind::Postgres;
        c.storage.url = Some("postgres://u:p\"w@db/relay".into());
        assert_eq!(NodeConfig::parse(&c.render(), p()).unwrap(), c);
        let mut c = NodeConfig::default();
        c.storage.backend = BackendKind::Sqlite;
        c.storage.path = Some("/var/lib/smpx/q.db".into());
        assert_eq!(NodeConfig::parse(&c.render(), p()).unwrap(), c);
        assert_eq!(
            c.storage.target(Path::new("/x")),
            StorageTarget::Sqlite {
                path: "/var/lib/smpx/q.db".into()
            }
        );
    }

    #[test]
    fn unknown_key_names_its_line() {
        let text = "[server]\nlisten = \"127.0.0.1:1\"\n\n[limits]\nmax_conections = 5\n";
        let e = NodeConfig::parse(text, p()).unwrap_err();
        assert!(matches!(e, ConfigError::Syntax { line: 5, .. }), "{e}");
        assert!(e.to_string().contains("max_conections"), "{e}");
        let e = NodeConfig::parse("[nope]\n", p()).unwrap_err();
        assert_eq!(e.line(), Some(1), "{e}");
    }

    #[test]
    fn bad_values_name_their_line() {
        let e = NodeConfig::parse("[server]\n\nlisten = \"localhost\"\n", p()).unwrap_err();
        assert_eq!(e.line(), Some(3), "{e}");
        let e = NodeConfig::parse("[limits]\nmax_connections = -1\n", p()).unwrap_err();
        assert_eq!(e.line(), Some(2), "{e}");
        let e = NodeConfig::parse("[storage]\nbackend = \"mysql\"\n", p()).unwrap_err();
        assert_eq!(e.line(), Some(2), "{e}");
        let e = NodeConfig::parse("[server]\nlisten = \n", p()).unwrap_err();
        assert_eq!(e.line(), Some(2), "{e}");
    }

    #[test]
    fn impossible_values_are_invalid_with_line() {
        let e = NodeConfig::parse("[storage]\nbackend = \"postgres\"\n", p()).unwrap_err();
        assert!(
            matches!(&e, ConfigError::Invalid { line: 1, key, .. } if key == "storage.url"),
            "{e}"
        );
        let e = NodeConfig::parse("[limits]\n\nqueues_per_connection = 0\n", p()).unwrap_err();
        assert!(
            matches!(&e, ConfigError::Invalid { line: 3, key, .. } if key == "limits.queues_per_connection"),
            "{e}"
        );
        let e = NodeConfig::parse("[limits]\nstored_mb_per_address = 0\n", p()).unwrap_err();
        assert!(matches!(&e, ConfigError::Invalid { line: 2, .. }), "{e}");
        let e = NodeConfig::parse("[free_tier]\n# q\nquota = 0\n", p()).unwrap_err();
        assert!(matches!(&e, ConfigError::Invalid { line: 3, .. }), "{e}");
        let e = NodeConfig::parse("[server]\npublic_host = \"a b\"\n", p()).unwrap_err();
        assert!(matches!(&e, ConfigError::Invalid { line: 2, .. }), "{e}");
        let e = NodeConfig::parse(
            "[server]\nlisten = \"127.0.0.1:9\"\n[ops]\nlisten = \"127.0.0.1:9\"\n",
            p(),
        )
        .unwrap_err();
        assert!(matches!(&e, ConfigError::Invalid { line: 4, .. }), "{e}");
    }

    #[test]
    fn default_prices_put_5000_receivers_at_5_to_10_credits() {
        let c = CapacityConfig::default();
        for gb in [5u64, 10] {
            let units = c.monthly_price_units(5_000, gb * 1_000_000_000);
            assert!(
                (5 * UNITS_PER_CREDIT..=10 * UNITS_PER_CREDIT).contains(&units),
                "{gb} GB: {units}"
            );
        }
        assert_eq!(c.monthly_price_units(1_000, 500_000_000), 0);
        assert_eq!(c.monthly_price_units(5_000, 5_000_000_000), 5_125_000);
    }

    #[test]
    fn directory_section_renders_parses_and_names_bad_lines() {
        let mut c = NodeConfig::default();
        let mut d = DirectorySection::new(
            vec![
                "https://dir.example.org".into(),
                "http://127.0.0.1:7500".into(),
            ],
            "op-1".into(),
            "eu-west".into(),
        );
        d.country = Some("DE".into());
        c.directory = Some(d.clone());
        let back = NodeConfig::parse(&c.render(), p()).unwrap();
        assert_eq!(back, c);
        // Only what is set is published.
        let m = back.directory.unwrap().metadata();
        assert_eq!(m.country.as_deref(), Some("DE"));
        assert_eq!(m.operator_name, None);
        assert_eq!(d.heartbeat_interval_secs, DEFAULT_HEARTBEAT_INTERVAL_SECS);
        // The defaults render the section commented out, which parses as none.
        assert_eq!(
            NodeConfig::parse(&NodeConfig::default().render(), p())
                .unwrap()
                .directory,
            None
        );

        let base = "[directory]\nurls = [\"https://d.example\"]\noperator_id = \"op\"\n";
        let e =
            NodeConfig::parse(&format!("{base}region = \"eu\"\nregoin = 1\n"), p()).unwrap_err();
        assert!(matches!(e, ConfigError::Syntax { line: 5, .. }), "{e}");
        let e = NodeConfig::parse(&format!("{base}region = \"EU West\"\n"), p()).unwrap_err();
        assert!(
            matches!(&e, ConfigError::Invalid { line: 4, key, .. } if key == "directory.region"),
            "{e}"
        );
        let e = NodeConfig::parse(
            "[directory]\nurls = []\noperator_id = \"op\"\nregion = \"eu\"\n",
            p(),
        )
        .unwrap_err();
        assert!(matches!(&e, ConfigError::Invalid { line: 2, .. }), "{e}");
        let e = NodeConfig::parse(
            &format!("{base}region = \"eu\"\nheartbeat_interval_secs = 1\n"),
            p(),
        )
        .unwrap_err();
        assert!(matches!(&e, ConfigError::Invalid { line: 5, .. }), "{e}");
        let long = "x".repeat(300);
        let e = NodeConfig::parse(
            &format!("{base}region = \"eu\"\nhosting = \"{long}\"\n"),
            p(),
        )
        .unwrap_err();
        assert!(
            matches!(&e, ConfigError::Invalid { line: 5, key, .. } if key == "directory.hosting"),
            "{e}"
        );
        let e = NodeConfig::parse(
            "[directory]\nurls = [\"https://d.example\"]\nregion = \"eu\"\n",
            p(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("operator_id"), "{e}");
    }

    #[test]
    fn postgres_url_is_not_debug_printed() {
        let s = StorageConfig {
            backend: BackendKind::Postgres,
            url: Some("postgres://u:secret@h/d".into()),
            ..Default::default()
        };
        assert!(!format!("{:?}", s.target(Path::new("/"))).contains("secret"));
    }
}

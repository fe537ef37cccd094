//! `smpx directory init|run|key|attest` and `smpx relays`: the relay directory's thin CLI
//! ([`smpx_directory`] does the work).

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use smpx_core::crypto::sign::{SigningKey, VerifyingKey};
use smpx_directory::{DirectoryConfig, DirectoryHome, NetworkProber};
use smpx_http::{ApiClient, Clock, SystemClock};
use smpx_store::directory::DirectoryStore;
use smpx_store::Db;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Subcommand)]
pub enum DirectoryCmd {
    /// Create a directory: directory.toml (every setting, commented) and the key its share
    /// statements are signed with. Prints that key's public half, which coordinators trust.
    Init {
        /// The directory's data directory (created 0700).
        #[arg(long, env = "SMPX_DIRECTORY_DIR", default_value_os_t = default_dir())]
        dir: PathBuf,
        /// The name it signs its statements with.
        #[arg(long, default_value = "smpx-directory")]
        name: String,
        /// Where to listen (default 127.0.0.1:8490: this machine only).
        #[arg(long)]
        listen: Option<String>,
        /// A postgres://… URL (default: SQLite, directory.db in --dir).
        #[arg(long)]
        database_url: Option<String>,
        /// Leading zero bits a registration's proof of work needs (16: about a second).
        #[arg(long)]
        pow_difficulty: Option<u32>,
        /// Seconds between probe rounds.
        #[arg(long)]
        probe_interval_secs: Option<u64>,
        /// Public key (hex) of an attester whose identity attestations this directory
        /// trusts; repeat for several.
        #[arg(long = "attester")]
        attesters: Vec<String>,
        /// The highest operator share statements may give, basis points (the
        /// coordinator's maximum).
        #[arg(long)]
        cap_bps: Option<u32>,
        /// A coordinator the share statements are posted to after each probe round (it
        /// must list this directory's statement key in its trusted_directories); repeat
        /// for several.
        #[arg(long = "coordinator")]
        coordinators: Vec<String>,
    },
    /// Run the directory in --dir until SIGINT or SIGTERM: serve the API and the web page,
    /// probe every relay each interval and sign share statements.
    Run {
        #[arg(long, env = "SMPX_DIRECTORY_DIR", default_value_os_t = default_dir())]
        dir: PathBuf,
    },
    /// Print the public key share statements are signed with (for a coordinator's
    /// trusted directories).
    Key {
        #[arg(long, env = "SMPX_DIRECTORY_DIR", default_value_os_t = default_dir())]
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// As an attester: sign that an operator key belongs to a legal identity and hand it
    /// to a directory that trusts this attester's key.
    Attest {
        /// The attester's secret key file (hex; created 0600 if missing, and its public key
        /// printed — give that to the directory's `--attester`).
        #[arg(long)]
        key: PathBuf,
        /// The directory's URL; without it the signed attestation is printed only.
        #[arg(long)]
        directory: Option<String>,
        /// The operator id, as registered with the directory.
        #[arg(long)]
        operator: Option<String>,
        /// The operator's public key (hex).
        #[arg(long)]
        operator_key: Option<String>,
        #[arg(long)]
        legal_name: Option<String>,
        /// ISO 3166 country code.
        #[arg(long)]
        country: Option<String>,
    },
}

fn default_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".smpx")
        .join("directory")
}

/// Runs one `smpx directory` subcommand.
pub async fn run(
    cmd: DirectoryCmd,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    match cmd {
        DirectoryCmd::Init {
            dir,
            name,
            listen,
            database_url,
            pow_difficulty,
            probe_interval_secs,
            attesters,
            cap_bps,
            coordinators,
        } => {
            if dir.join(smpx_directory::home::CONFIG_FILE).exists() {
                bail!(
                    "{} already holds a directory; edit its directory.toml or choose another --dir",
                    dir.display()
                );
            }
            let mut config = DirectoryConfig {
                name,
                database_url,
                coordinators,
                ..DirectoryConfig::default()
            };
            if let Some(l) = listen {
                config.listen = l;
            }
            if let Some(d) = pow_difficulty {
                config.pow_difficulty = d;
            }
            if let Some(s) = probe_interval_secs {
                config.probe_interval_secs = s;
            }
            if let Some(c) = cap_bps {
                config.cap_bps = c;
            }
            for a in attesters {
                config.trusted_attesters.push(
                    VerifyingKey::from_hex(&a)
                        .with_context(|| format!("--attester {a}: not a hex Ed25519 key"))?,
                );
            }
            let home = DirectoryHome::create(&dir, &config)?;
            println!("directory {} in {}", home.config.name, dir.display());
            println!(
                "share statement key {}  (a coordinator trusts it: trusted_directories)",
                home.signing_key.verifying_key().to_hex()
            );
            Ok(())
        }
        DirectoryCmd::Run { dir } => serve(&dir, shutdown).await,
        DirectoryCmd::Key { dir, json } => {
            let home = DirectoryHome::load(&dir)?;
            let key = home.signing_key.verifying_key().to_hex();
            if json {
                println!(
                    "{}",
                    serde_json::json!({"name": home.config.name, "statement_key": key})
                );
            } else {
                println!("{key}");
            }
            Ok(())
        }
        DirectoryCmd::Attest {
            key,
            directory,
            operator,
            operator_key,
            legal_name,
            country,
        } => attest(key, directory, operator, operator_key, legal_name, country).await,
    }
}

async fn serve(dir: &Path, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
    let home = DirectoryHome::load(dir)?;
    let url = home.database_url();
    let store = DirectoryStore::open(Db::connect(&url).await?).await?;
    let listen: std::net::SocketAddr = home
        .config
        .listen
        .parse()
        .with_context(|| format!("listen = {:?}: not an address:port", home.config.listen))?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let prober = Arc::new(NetworkProber::new(clock.clone()));
    let directory = smpx_directory::Directory::new(store, home, clock, prober);
    let l = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    eprintln!("directory listening on http://{}", l.local_addr()?);
    smpx_directory::run(directory, l, shutdown).await?;
    Ok(())
}

/// An attester's secret key file (hex), created 0600 with a fresh key if missing.
pub fn attester_key(key: &Path) -> Result<SigningKey> {
    let hexkey: String = smpx_http::files::load_or_create(key, || {
        hex::encode(SigningKey::generate(&mut rand::rngs::OsRng).to_bytes())
    })?;
    let bytes: [u8; 32] = hex::decode(hexkey.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .with_context(|| format!("{}: not a 32-byte hex key", key.display()))?;
    Ok(SigningKey::from_bytes(&bytes))
}

async fn attest(
    key: PathBuf,
    directory: Option<String>,
    operator: Option<String>,
    operator_key: Option<String>,
    legal_name: Option<String>,
    country: Option<String>,
) -> Result<()> {
    let attester = attester_key(&key)?;
    let (Some(operator_key), Some(legal_name), Some(country)) = (operator_key, legal_name, country)
    else {
        println!("attester key {}", attester.verifying_key().to_hex());
        eprintln!("to attest, also give --operator-key, --legal-name and --country");
        return Ok(());
    };
    let operator_key = VerifyingKey::from_hex(&operator_key)
        .with_context(|| format!("--operator-key {operator_key}: not a hex Ed25519 key"))?;
    let signed = smpx_core::directory::wire::attest(
        &attester,
        operator_key,
        &legal_name,
        &country,
        SystemClock.now(),
    )?;
    match (directory, operator) {
        (Some(url), Some(id)) => {
            let _: serde_json::Value = ApiClient::new(&url)
                .post(&format!("/v1/operators/{id}/attestations"), &signed)
                .await
                .with_context(|| format!("handing the attestation to {url}"))?;
            println!("attested operator {id} as {legal_name} ({country}) at {url}");
        }
        (Some(_), None) => bail!("--directory needs --operator (the operator's id there)"),
        _ => println!("{}", serde_json::to_string_pretty(&signed)?),
    }
    Ok(())
}

/// `smpx relays`: what a directory publishes.
pub async fn list(
    directory: &str,
    running: bool,
    region: Option<String>,
    operator: Option<String>,
    json: bool,
) -> Result<()> {
    let mut query = Vec::new();
    if running {
        query.push("status=running".to_string());
    }
    if let Some(r) = region {
        query.push(format!("region={}", urlencode(&r)));
    }
    if let Some(o) = operator {
        query.push(format!("operator={}", urlencode(&o)));
    }
    let path = if query.is_empty() {
        "/v1/relays".to_string()
    } else {
        format!("/v1/relays?{}", query.join("&"))
    };
    let relays: Vec<serde_json::Value> = ApiClient::new(directory)
        .get(&path)
        .await
        .with_context(|| format!("asking {directory} for its relays"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&relays)?);
        return Ok(());
    }
    if relays.is_empty() {
        println!("no relays listed");
        return Ok(());
    }
    println!(
        "{:<14} {:<9} {:>8} {:>9} {:<16} {:<6} {:<28} AGE",
        "RELAY", "STATUS", "UPTIME", "P50", "OPERATOR", "REGION", "FLAGS"
    );
    for r in &relays {
        let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
        let fp: String = s("fingerprint").chars().take(12).collect();
        let uptime = r["uptime"]
            .as_f64()
            .map_or("–".into(), |u| format!("{:.2}%", u * 100.0));
        let p50 = r["latency_p50_ms"]
            .as_u64()
            .map_or("–".into(), |m| format!("{m} ms"));
        let mut flags: Vec<String> = r["flags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|f| f.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        if r["counted"].as_bool() == Some(false) {
            flags.push("uncounted".into());
        }
        println!(
            "{:<14} {:<9} {:>8} {:>9} {:<16} {:<6} {:<28} {}",
            format!("{fp}…"),
            s("status"),
            uptime,
            p50,
            s("operator_id"),
            s("region"),
            flags.join(","),
            smpx_directory::web::age(r["age_secs"].as_u64().unwrap_or(0)),
        );
        println!("    {}", s("address"));
    }
    Ok(())
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

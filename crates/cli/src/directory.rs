//! `smpx directory init|run|key|attest`, `smpx relays` and `smpx relays choose`: the relay
//! directory's thin CLI ([`smpx_directory`] does the work) and the client's choice of relays
//! from several directories ([`smpx_wallet::directories`] does that).

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use smpx_core::crypto::sign::{SigningKey, VerifyingKey};
use smpx_core::rules::choice::{Choice, CoreRelay, LatencySource, Pick, Source};
use smpx_directory::{DirectoryConfig, DirectoryHome, NetworkProber};
use smpx_http::{ApiClient, Clock, SystemClock};
use smpx_relay_client::probe::ProbeConfig;
use smpx_store::directory::DirectoryStore;
use smpx_store::Db;
use smpx_wallet::directories::{self, Directories, Preferences, View, ViewSource};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

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
    let bytes = smpx_http::files::load_or_create_secret32(key, "attester key", || {
        SigningKey::generate(&mut rand::rngs::OsRng).to_bytes()
    })?;
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

/// `smpx relays …` beyond the listing.
#[derive(Subcommand)]
pub enum RelaysCmd {
    /// Choose a conversation's relays from what the directories agree on: the destination
    /// (where the queue lives), the sending proxy (of another operator) and a fallback, and
    /// why each.
    Choose {
        #[command(flatten)]
        choice: ChoiceArgs,
        #[arg(long)]
        json: bool,
    },
}

/// Where a conversation's relays are chosen from (`smpx relays choose`, `smpx chat
/// invite/accept` without `--relay`).
#[derive(Args, Clone, Debug, Default)]
pub struct ChoiceArgs {
    /// A relay directory to ask (repeat, or comma-separate; 2–3 independent ones: a relay is
    /// used only when more than half of them list it).
    #[arg(long = "directory", env = "SMPX_DIRECTORIES", value_delimiter = ',')]
    pub directories: Vec<String>,
    /// A relay to use when the directories give too little: `smpx://fingerprint@host:port`
    /// or `OPERATOR=smpx://…` (repeatable; without an operator its host stands for one).
    #[arg(long = "core-relay")]
    pub core_relays: Vec<String>,
    /// A region to prefer (a bonus in the score, not a filter).
    #[arg(long)]
    pub region: Option<String>,
    /// Probe this many of the best candidates yourself (TCP and TLS time); 0: only the
    /// directories' latency.
    #[arg(long, default_value_t = directories::DEFAULT_MEASURED)]
    pub measure: usize,
    /// Where the last agreed view is kept, for when the directories cannot be reached.
    #[arg(long)]
    pub view_cache: Option<PathBuf>,
}

impl ChoiceArgs {
    /// Whether anything to choose from is given.
    pub fn given(&self) -> bool {
        !self.directories.is_empty() || !self.core_relays.is_empty()
    }
}

/// A choice and what it was made from.
pub struct Chosen {
    pub view: View,
    pub own_rtt_ms: BTreeMap<String, u32>,
    pub choice: Choice,
}

/// The default view cache: `~/.smpx/relay-view.json`.
pub fn default_view_cache() -> PathBuf {
    default_dir().with_file_name("relay-view.json")
}

/// Asks the directories, measures the best candidates, and chooses (see
/// [`smpx_wallet::directories`]); the view is cached in `--view-cache`, else `cache`.
pub async fn choose(args: &ChoiceArgs, cache: PathBuf) -> Result<Chosen> {
    if !args.given() {
        bail!(
            "nothing to choose from: give --directory (2–3 of them) and/or --core-relay \
             smpx://<fingerprint>@host:port"
        );
    }
    let core: Vec<CoreRelay> = args
        .core_relays
        .iter()
        .map(|c| directories::core_relay(c).map_err(anyhow::Error::msg))
        .collect::<Result<_>>()?;
    let cache = args.view_cache.clone().unwrap_or(cache);
    let view = Directories::new(&args.directories, Some(cache))
        .view(SystemClock.now())
        .await;
    let probe = ProbeConfig {
        connect_timeout: Duration::from_secs(2),
        tls_timeout: Duration::from_secs(2),
        protocol_timeout: Duration::from_secs(5),
        ..ProbeConfig::default()
    };
    let own_rtt_ms = if args.measure > 0 {
        directories::measure_own(&view, args.measure, &probe).await
    } else {
        BTreeMap::new()
    };
    let prefs = Preferences {
        region: args.region.as_deref(),
        core_relays: &core,
        top_k: 0,
    };
    let choice =
        directories::choose(&view, &own_rtt_ms, &prefs, &mut rand::thread_rng()).map_err(|e| {
            match view.source {
                ViewSource::CoreRelays => anyhow::anyhow!(
                    "no directory view ({} of {} directories answered, no valid cached view) and \
                 no --core-relay given",
                    view.answered.len(),
                    args.directories.len()
                ),
                _ => anyhow::anyhow!("{e}"),
            }
        })?;
    Ok(Chosen {
        view,
        own_rtt_ms,
        choice,
    })
}

/// One line saying where the view came from.
pub fn view_line(view: &View) -> String {
    let of = |a: &smpx_core::rules::consensus::Agreed| {
        format!(
            "{} of {} directories answered, a relay needs {}",
            view.answered.len(),
            a.configured,
            a.needed
        )
    };
    match (view.source, &view.agreed) {
        (ViewSource::Directories, Some(a)) => format!(
            "view: agreed now ({}); {} relays kept, {} listed by too few",
            of(a),
            a.relays.len(),
            a.dropped.len()
        ),
        (ViewSource::Cache, Some(a)) => format!(
            "view: cached, agreed at {} and used until {} ({} answered now; then {} of {} \
             directories agreed)",
            view.fetched_at.unwrap_or(0),
            view.valid_until.unwrap_or(0),
            view.answered.len(),
            a.answered.len(),
            a.configured
        ),
        _ => format!(
            "view: none ({} directories answered, no valid cached view): the core relays",
            view.answered.len()
        ),
    }
}

fn pick_line(role: &str, p: &Pick, view: &View) -> String {
    let listed = view
        .relays()
        .iter()
        .find(|r| r.fingerprint == p.fingerprint)
        .map_or(String::new(), |r| format!(", listed by {}", r.listed_by));
    let why = match &p.score {
        Some(s) => {
            let latency = match (s.latency_ms, s.latency_source) {
                (Some(ms), LatencySource::Own) => format!("{ms} ms measured here"),
                (Some(ms), _) => format!("{ms} ms by the directories"),
                (None, _) => "unmeasured".to_string(),
            };
            format!(
                "score {:.3} = latency {:.3} ({latency}) + uptime {:.3} + stable {:.2} + fast \
                 {:.2} + region {:.2}; rank {}, drawn among {}{listed}",
                s.total, s.latency, s.uptime, s.stable, s.fast, s.region, p.rank, p.drawn_among
            )
        }
        None => format!(
            "a configured core relay (number {}), drawn among {}",
            p.rank, p.drawn_among
        ),
    };
    format!(
        "{role:<12} {}  operator {}\n             {why}",
        p.address, p.operator_id
    )
}

/// `smpx relays choose`.
pub async fn run_relays(cmd: RelaysCmd) -> Result<()> {
    let RelaysCmd::Choose { choice, json } = cmd;
    let chosen = choose(&choice, default_view_cache()).await?;
    let Chosen {
        view,
        own_rtt_ms,
        choice,
    } = &chosen;
    if json {
        let agreed = view.agreed.as_ref();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "view": {
                    "source": view.source,
                    "fetched_at": view.fetched_at,
                    "valid_until": view.valid_until,
                    "answered": view.answered,
                    "unreachable": view.unreachable,
                    "configured": agreed.map(|a| a.configured),
                    "needed": agreed.map(|a| a.needed),
                    "relays": agreed.map(|a| a.relays.len()),
                    "dropped": agreed.map(|a| &a.dropped),
                    "notes": view.notes,
                },
                "own_rtt_ms": own_rtt_ms,
                "choice": choice,
            }))?
        );
        return Ok(());
    }
    println!("{}", view_line(view));
    for u in &view.unreachable {
        println!("  unreachable {}: {}", u.directory, u.error);
    }
    let source = match choice.source {
        Source::Agreed => format!(
            "from the agreed view: {} running relays of {} operators",
            choice.eligible, choice.operators
        ),
        Source::CoreRelays => "from the configured core relays".to_string(),
    };
    println!(
        "choice {source}; own measurements of {} relays",
        own_rtt_ms.len()
    );
    println!("{}", pick_line("destination", &choice.destination, view));
    println!("{}", pick_line("proxy", &choice.proxy, view));
    match &choice.fallback {
        Some(f) => println!("{}", pick_line("fallback", f, view)),
        None => println!("fallback     none"),
    }
    if !choice.distinct_operators {
        println!("warning: the proxy and the destination are of one operator");
    }
    for e in &choice.excluded {
        println!(
            "excluded     {} ({}): {}",
            e.fingerprint, e.operator_id, e.reason
        );
    }
    for n in view.notes.iter().chain(&choice.notes) {
        println!("note: {n}");
    }
    Ok(())
}

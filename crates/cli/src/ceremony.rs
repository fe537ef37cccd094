//! `smpx ceremony …`: the multi-party trusted setup of the v0.2 redemption circuit's
//! Groth16 keys, one file at a time.
//!
//! A coordinator runs [`start`], passes the file from participant to participant (each runs
//! [`contribute`] and publishes the printed hash), runs [`begin_phase2`] (verifies phase 1
//! and prepares the circuit's key: the slow step), passes the file round again, and closes
//! the ceremony with [`finalize`] and a public random beacon (e.g. a future block hash).
//! Anyone rechecks the whole ceremony with [`verify`]; [`info`] shows a file's state.
//!
//! Files are transcripts in `smpx-ceremony`'s binary format ([`Transcript::read_from`] /
//! [`Transcript::write_to`]); outputs are written to a temporary file in the same directory
//! and renamed into place, so a file is never left half-written. Long steps report progress
//! on stderr ([`StderrProgress`]); results go to stdout. Every failure is an error whose
//! message starts with the ceremony's stable error code (e.g. `ceremony.hash_mismatch`).

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use sha2::{Digest as _, Sha256};
use smpx_ceremony::{
    Beacon, CeremonyError, ContributionInfo, Contributor, Progress, Stage, State, Transcript,
};
use smpx_zk::ceremony::{required_power, verified_keys};
use smpx_zk::ZkError;

/// Reports a ceremony's progress on stderr: a line when a stage starts, at most one a
/// second while it runs, and one with the time taken when it completes.
#[derive(Debug, Default)]
pub struct StderrProgress {
    current: Mutex<Option<Current>>,
}

/// The stage being reported.
#[derive(Debug)]
struct Current {
    stage: Stage,
    started: Instant,
    printed: Instant,
    finished: bool,
}

impl StderrProgress {
    /// A reporter that has printed nothing yet.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Progress for StderrProgress {
    fn report(&self, stage: Stage, done: u64, total: u64) {
        let Ok(mut current) = self.current.lock() else {
            return;
        };
        let now = Instant::now();
        let finished = done >= total;
        // The stage being reported, unless it was reported finished and now restarts.
        let same =
            matches!(current.as_ref(), Some(c) if c.stage == stage && (finished || !c.finished));
        if !same {
            eprintln!("  {stage} …");
            *current = Some(Current {
                stage,
                started: now,
                printed: now,
                finished: false,
            });
        }
        let Some(c) = current.as_mut() else {
            return;
        };
        if finished && !c.finished {
            let secs = now.saturating_duration_since(c.started).as_secs_f64();
            eprintln!("  {stage}: done in {secs:.1} s");
            c.finished = true;
        } else if !finished && now.saturating_duration_since(c.printed) >= Duration::from_secs(1) {
            let percent = done.saturating_mul(100) / total.max(1);
            eprintln!("  {stage}: {done}/{total} ({percent}%)");
            c.printed = now;
        }
    }
}

/// A ceremony error as a CLI error: its stable code, then its message.
fn ceremony_err(e: CeremonyError) -> anyhow::Error {
    anyhow!("{}: {e}", e.code())
}

/// A ZK-side error as a CLI error, with the ceremony's code first when there is one.
fn zk_err(e: ZkError) -> anyhow::Error {
    match e {
        ZkError::Ceremony { code, message } => anyhow!("{code}: {message}"),
        other => anyhow!("{other}"),
    }
}

/// Reads and decodes a transcript file (every point is checked on the way in).
pub fn read_transcript(path: &Path) -> Result<Transcript> {
    // Read whole, then decode with the ceremony crate's non-generic `from_bytes`: its
    // decoding is compiled (optimised) in that crate rather than instantiated here.
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot open the transcript {}", path.display()))?;
    Transcript::from_bytes(&bytes)
        .map_err(ceremony_err)
        .with_context(|| format!("cannot read the transcript {}", path.display()))
}

/// Writes a public file (transcripts and verifying keys) atomically and durably.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(smpx_os::fs::write_atomic(
        path,
        bytes,
        smpx_os::fs::Access::Public,
    )?)
}

/// Writes `t` to `path` atomically (temporary file in the same directory, then rename).
pub fn write_transcript(t: &Transcript, path: &Path) -> Result<()> {
    write_atomic(path, &t.to_bytes().map_err(ceremony_err)?)
}

fn state_text(s: State) -> &'static str {
    match s {
        State::Phase1Open => "phase 1 open (accepting contributions)",
        State::Phase1Closed => "phase 1 closed by its beacon; phase 2 not begun",
        State::Phase2Open => "phase 2 open (accepting contributions)",
        State::Finalized => "finalised (phase 2 closed by the beacon)",
    }
}

fn who(c: &Contributor) -> String {
    match c {
        Contributor::Participant { name } if name.is_empty() => "(anonymous)".to_owned(),
        Contributor::Participant { name } => format!("participant {name:?}"),
        Contributor::Beacon(b) => format!(
            "beacon {} (2^{} SHA-256 iterations)",
            hex::encode(&b.value),
            b.log2_iterations
        ),
    }
}

fn print_contributions(list: &[ContributionInfo]) {
    if list.is_empty() {
        println!("  (no contributions)");
    }
    for c in list {
        println!(
            "  phase {} #{}  {}  {}",
            c.phase,
            c.index,
            c.hash,
            who(&c.contributor)
        );
    }
}

/// `smpx ceremony start`: a new ceremony sized for the redemption circuit of `levels`
/// ([`required_power`]), written to `out`.
pub fn start(levels: u32, out: &Path) -> Result<()> {
    let power = required_power(levels).map_err(zk_err)?;
    let t = Transcript::new(power).map_err(ceremony_err)?;
    write_transcript(&t, out)?;
    println!(
        "started a ceremony for the redemption circuit with {levels} MMR levels: powers of tau 2^{power}"
    );
    println!("wrote {}", out.display());
    Ok(())
}

/// `smpx ceremony contribute`: checks the latest contribution, adds one with fresh secrets
/// from the operating system's generator (in phase 1 or phase 2, whichever is open), writes
/// the result to `out` and prints the contribution's hash for the participant to publish.
pub fn contribute(input: &Path, out: &Path, name: &str) -> Result<()> {
    let mut t = read_transcript(input)?;
    match t.state() {
        State::Phase1Open | State::Phase2Open => {}
        // Refused by the library as well; said here before any slow work.
        s => {
            return Err(ceremony_err(CeremonyError::WrongState {
                action: "contribute",
                state: match s {
                    State::Finalized => "the ceremony is finalised",
                    _ => "phase 1 is closed and phase 2 has not begun",
                },
            }))
        }
    }
    // Don't build on a contribution that does not verify.
    let progress = StderrProgress::new();
    t.verify_latest(&progress)
        .map_err(ceremony_err)
        .context("the latest contribution in the input does not verify")?;
    let hash = t.contribute(name, b"", &progress).map_err(ceremony_err)?;
    write_transcript(&t, out)?;
    if let Some(c) = t.contributions().last() {
        println!("contribution: phase {} #{}", c.phase, c.index);
    }
    println!("contribution hash: {hash}");
    println!("Publish this hash: anyone can then check it is in the final transcript.");
    println!("wrote {}", out.display());
    Ok(())
}

/// `smpx ceremony begin-phase2`: verifies phase 1 and prepares phase 2 for the redemption
/// circuit of `levels` (the slow step).
pub fn begin_phase2(levels: u32, input: &Path, out: &Path) -> Result<()> {
    let mut t = read_transcript(input)?;
    let progress = StderrProgress::new();
    let power = required_power(levels).map_err(zk_err)?;
    let start = smpx_zk::ceremony::begin_phase2(levels, &mut t, &progress).map_err(zk_err)?;
    write_transcript(&t, out)?;
    println!(
        "phase 1 verified ({} contributions); phase 2 begun for {levels} MMR levels (needs powers of tau 2^{power}, the transcript has 2^{})",
        t.phase1.len(),
        t.power
    );
    println!("phase 2 start hash: {start}");
    println!("wrote {}", out.display());
    Ok(())
}

/// `smpx ceremony finalize`: closes the open phase with the public random beacon
/// `beacon_hex`, hashed `2^log2_iterations` times ([`Beacon::from_hex`]). Closing phase 2
/// finalises the ceremony.
pub fn finalize(beacon_hex: &str, log2_iterations: u8, input: &Path, out: &Path) -> Result<()> {
    let beacon = Beacon::from_hex(beacon_hex, log2_iterations).map_err(ceremony_err)?;
    let mut t = read_transcript(input)?;
    let progress = StderrProgress::new();
    let hash = t.finalize(&beacon, &progress).map_err(ceremony_err)?;
    write_transcript(&t, out)?;
    println!("beacon contribution hash: {hash}");
    println!("state: {}", state_text(t.state()));
    println!("wrote {}", out.display());
    Ok(())
}

/// `smpx ceremony verify`: rechecks every contribution of the finalised ceremony in `file`
/// for the redemption circuit of `levels`, prints each contribution's hash and who made it
/// and the SHA-256 of the verifying key (its `smpx-zk` encoding, the bytes written to
/// `vk_out`), and writes that key to `vk_out` if given.
pub fn verify(levels: u32, file: &Path, vk_out: Option<&Path>) -> Result<()> {
    let t = read_transcript(file)?;
    let progress = StderrProgress::new();
    let (_pk, vk) = verified_keys(levels, &t, &progress).map_err(zk_err)?;
    let vk_bytes = vk.to_bytes().map_err(zk_err)?;
    println!(
        "ceremony verified: {} for {levels} MMR levels, powers of tau 2^{}",
        state_text(t.state()),
        t.power
    );
    println!("contributions:");
    print_contributions(&t.contributions());
    println!(
        "verifying key sha256: {}",
        hex::encode(Sha256::digest(&vk_bytes))
    );
    if let Some(path) = vk_out {
        write_atomic(path, &vk_bytes)?;
        println!("wrote the verifying key to {}", path.display());
    }
    Ok(())
}

/// `smpx ceremony info`: state, size and contributions of the transcript in `file`, as
/// recorded (not verified: use [`verify`]).
pub fn info(file: &Path) -> Result<()> {
    let t = read_transcript(file)?;
    println!("state: {}", state_text(t.state()));
    println!(
        "powers of tau: 2^{} (circuits with up to {} constraints + public inputs)",
        t.power,
        1u64 << t.power
    );
    if let Some(p2) = &t.phase2 {
        println!("phase 2 circuit digest: {}", p2.circuit);
    }
    println!("contributions (as recorded, not verified; run `smpx ceremony verify`):");
    print_contributions(&t.contributions());
    println!("current hash: {}", t.current_hash());
    Ok(())
}

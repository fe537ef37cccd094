//! The transcript: every contribution of both phases, in order, with its hash.

use std::borrow::Cow;
use std::io::{Read, Write};

use ark_bn254::{Bn254, Fr};
use ark_groth16::{ProvingKey, VerifyingKey};
use ark_relations::gr1cs::ConstraintSynthesizer;
use ark_serialize::{CanonicalDeserialize, CanonicalSerialize, Compress, Validate};
use rand_core::{CryptoRng, RngCore};

use crate::beacon::{Beacon, Contributor};
use crate::error::{CeremonyError, Phase};
use crate::hash::Digest;
use crate::phase1::{self, Accumulator, Phase1Contribution};
use crate::phase2::{self, DeltaKey, Phase2, R1cs};
use crate::progress::{Progress, Silent, Stage, Tick};

/// First bytes of a transcript file.
pub const MAGIC: &[u8; 8] = b"SMPXCRMY";
/// Version of the transcript encoding.
pub const FORMAT_VERSION: u32 = 1;

/// Where a ceremony stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Phase 1 accepts contributions.
    Phase1Open,
    /// Phase 1 was closed by its beacon; phase 2 has not begun.
    Phase1Closed,
    /// Phase 2 accepts contributions.
    Phase2Open,
    /// Phase 2 was closed by the final beacon: the keys are final.
    Finalized,
}

/// One line of a transcript's summary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContributionInfo {
    /// Phase of the contribution.
    pub phase: Phase,
    /// Position within its phase, from 0.
    pub index: usize,
    /// Who contributed.
    pub contributor: Contributor,
    /// The contribution's hash.
    pub hash: Digest,
}

/// A ceremony's full transcript. Anyone holding it (and the circuit) can recheck every
/// contribution with [`verify_transcript`]. Encoded with arkworks' compressed canonical
/// encoding after an 8-byte magic and a version; decoding checks that every point is on
/// the curve and in the prime-order subgroup.
#[derive(Clone, Debug, PartialEq, CanonicalSerialize, CanonicalDeserialize)]
pub struct Transcript {
    /// Phase 1 supports evaluation domains up to `2^power` points.
    pub power: u32,
    /// Phase-1 contributions, in order.
    pub phase1: Vec<Phase1Contribution>,
    /// Phase 2, once begun.
    pub phase2: Option<Phase2>,
}

impl Transcript {
    /// A new ceremony whose phase 1 supports circuits with evaluation domains up to
    /// `2^power` points (constraints + public inputs + 1, rounded up to a power of two).
    pub fn new(power: u32) -> Result<Self, CeremonyError> {
        phase1::size(power)?;
        Ok(Transcript {
            power,
            phase1: Vec::new(),
            phase2: None,
        })
    }

    /// The current state.
    pub fn state(&self) -> State {
        match &self.phase2 {
            None if self
                .phase1
                .last()
                .is_some_and(|c| c.contributor.is_beacon()) =>
            {
                State::Phase1Closed
            }
            None => State::Phase1Open,
            Some(p)
                if p.contributions
                    .last()
                    .is_some_and(|c| c.contributor.is_beacon()) =>
            {
                State::Finalized
            }
            Some(_) => State::Phase2Open,
        }
    }

    /// The hash phase 1 starts from.
    pub fn phase1_start_hash(&self) -> Digest {
        phase1::start_hash(self.power)
    }

    /// The hash of the last phase-1 contribution (or phase 1's start hash).
    pub fn phase1_hash(&self) -> Digest {
        self.phase1
            .last()
            .map_or_else(|| self.phase1_start_hash(), |c| c.hash)
    }

    /// The hash of the latest contribution of the open (or last) phase: what the next
    /// contribution chains to.
    pub fn current_hash(&self) -> Digest {
        match &self.phase2 {
            None => self.phase1_hash(),
            Some(p) => p
                .contributions
                .last()
                .map_or_else(|| p.start_hash(&self.phase1_hash()), |c| c.hash),
        }
    }

    /// The phase-1 accumulator after the last contribution.
    pub fn accumulator(&self) -> Result<Cow<'_, Accumulator>, CeremonyError> {
        match self.phase1.last() {
            Some(c) => Ok(Cow::Borrowed(&c.accumulator)),
            None => Ok(Cow::Owned(Accumulator::initial(self.power)?)),
        }
    }

    fn participants(&self, phase: Phase) -> usize {
        let is_participant = |c: &Contributor| !c.is_beacon();
        match phase {
            Phase::One => self
                .phase1
                .iter()
                .filter(|c| is_participant(&c.contributor))
                .count(),
            Phase::Two => self.phase2.as_ref().map_or(0, |p| {
                p.contributions
                    .iter()
                    .filter(|c| is_participant(&c.contributor))
                    .count()
            }),
        }
    }

    /// Adds a participant's contribution to the open phase. The secrets are drawn from the
    /// operating system's generator (`OsRng`), hashed together with `extra_entropy` (may be
    /// empty; e.g. text the participant typed), used, and zeroized. Returns the
    /// contribution's hash, for the participant to publish.
    pub fn contribute(
        &mut self,
        name: &str,
        extra_entropy: &[u8],
        progress: &dyn Progress,
    ) -> Result<Digest, CeremonyError> {
        self.contribute_with_rng(name, &mut rand_core::OsRng, extra_entropy, progress)
    }

    /// [`Transcript::contribute`] with another cryptographic generator in place of `OsRng`.
    pub fn contribute_with_rng<R: RngCore + CryptoRng>(
        &mut self,
        name: &str,
        rng: &mut R,
        extra_entropy: &[u8],
        progress: &dyn Progress,
    ) -> Result<Digest, CeremonyError> {
        let contributor = Contributor::participant(name)?;
        match self.state() {
            State::Phase1Open => {
                let secrets = phase1::Secrets::random(rng, extra_entropy);
                self.push_phase1(contributor, &secrets, progress)
            }
            State::Phase2Open => {
                let secret = phase2::DeltaSecret::random(rng, extra_entropy);
                self.push_phase2(contributor, &secret, progress)
            }
            State::Phase1Closed => Err(CeremonyError::WrongState {
                action: "contribute",
                state: "phase 1 is closed and phase 2 has not begun",
            }),
            State::Finalized => Err(CeremonyError::WrongState {
                action: "contribute",
                state: "the ceremony is finalised",
            }),
        }
    }

    fn push_phase1(
        &mut self,
        contributor: Contributor,
        secrets: &phase1::Secrets,
        progress: &dyn Progress,
    ) -> Result<Digest, CeremonyError> {
        let prev_hash = self.phase1_hash();
        let c = {
            let prev = self.accumulator()?;
            phase1::contribute(&prev, &prev_hash, contributor, secrets, progress)
        };
        let hash = c.hash;
        self.phase1.push(c);
        Ok(hash)
    }

    fn push_phase2(
        &mut self,
        contributor: Contributor,
        secret: &phase2::DeltaSecret,
        progress: &dyn Progress,
    ) -> Result<Digest, CeremonyError> {
        let prev_hash = self.current_hash();
        let p = self.phase2.as_mut().ok_or(CeremonyError::WrongState {
            action: "contribute to phase 2",
            state: "phase 2 has not begun",
        })?;
        let c = phase2::contribute(&p.current(), &prev_hash, contributor, secret, progress);
        let hash = c.hash;
        p.contributions.push(c);
        Ok(hash)
    }

    /// Closes the open phase with a contribution derived from the public `beacon` (and the
    /// transcript hash so far), which anyone can recompute. Phase 1's beacon is optional
    /// (phase 2 may begin without it); phase 2's beacon finalises the ceremony.
    pub fn finalize(
        &mut self,
        beacon: &Beacon,
        progress: &dyn Progress,
    ) -> Result<Digest, CeremonyError> {
        let state = self.state();
        let phase = match state {
            State::Phase1Open => Phase::One,
            State::Phase2Open => Phase::Two,
            State::Phase1Closed => {
                return Err(CeremonyError::WrongState {
                    action: "apply a beacon",
                    state: "phase 1 is already closed and phase 2 has not begun",
                })
            }
            State::Finalized => {
                return Err(CeremonyError::WrongState {
                    action: "apply a beacon",
                    state: "the ceremony is already finalised",
                })
            }
        };
        if self.participants(phase) == 0 {
            return Err(CeremonyError::NoParticipant(phase));
        }
        let output = beacon.output(progress);
        let context = self.current_hash();
        let contributor = Contributor::Beacon(beacon.clone());
        match phase {
            Phase::One => {
                let secrets = phase1::Secrets::from_beacon(&output, &context);
                self.push_phase1(contributor, &secrets, progress)
            }
            Phase::Two => {
                let secret = phase2::DeltaSecret::from_beacon(&output, &context);
                self.push_phase2(contributor, &secret, progress)
            }
        }
    }

    /// Begins phase 2 for `circuit`: verifies phase 1 (every contribution; at least one
    /// participant), then computes the circuit's initial key (γ = δ = 1) from the last
    /// accumulator — the Lagrange basis in the exponent (four inverse FFTs over group
    /// elements: the slow step) and the query vectors. Phase 1 need not be closed by a
    /// beacon; beginning phase 2 closes it. Returns phase 2's start hash.
    pub fn begin_phase2<C: ConstraintSynthesizer<Fr>>(
        &mut self,
        circuit: C,
        progress: &dyn Progress,
    ) -> Result<Digest, CeremonyError> {
        if self.phase2.is_some() {
            return Err(CeremonyError::WrongState {
                action: "begin phase 2",
                state: "phase 2 has already begun",
            });
        }
        let r1cs = R1cs::synthesize(circuit)?;
        let (acc, phase1_hash) = phase1::verify_all(self.power, &self.phase1, progress)?;
        let pk = phase2::initial_key(&r1cs, &acc, progress)?;
        drop(acc);
        let p = Phase2 {
            circuit: r1cs.digest(),
            initial: pk,
            contributions: Vec::new(),
        };
        let start = p.start_hash(&phase1_hash);
        self.phase2 = Some(p);
        Ok(start)
    }

    /// Verifies every phase-1 contribution from the start; returns the final accumulator.
    pub fn verify_phase1(
        &self,
        progress: &dyn Progress,
    ) -> Result<Cow<'_, Accumulator>, CeremonyError> {
        phase1::verify_all(self.power, &self.phase1, progress).map(|(acc, _)| acc)
    }

    /// Checks that phase 2's recorded initial key follows from the last phase-1
    /// accumulator and `circuit` (what a phase-2 participant can run before contributing;
    /// cheap: no Lagrange basis is recomputed). Does not verify phase 1 itself.
    pub fn verify_phase2_start<C: ConstraintSynthesizer<Fr>>(
        &self,
        circuit: C,
        progress: &dyn Progress,
    ) -> Result<(), CeremonyError> {
        let p2 = self.phase2.as_ref().ok_or(CeremonyError::WrongState {
            action: "check phase 2's start",
            state: "phase 2 has not begun",
        })?;
        let r1cs = R1cs::synthesize(circuit)?;
        let actual = r1cs.digest();
        if actual != p2.circuit {
            return Err(CeremonyError::CircuitMismatch {
                recorded: p2.circuit,
                actual,
            });
        }
        phase2::verify_initial_key(&r1cs, self.accumulator()?.as_ref(), &p2.initial, progress)
    }

    /// Verifies only the latest contribution against the one before it: what a
    /// coordinator runs on each contribution it receives. (For phase 2's first
    /// contribution the recorded initial key is taken as given; [`verify_transcript`]
    /// recomputes it.)
    pub fn verify_latest(&self, progress: &dyn Progress) -> Result<(), CeremonyError> {
        match &self.phase2 {
            Some(p) if !p.contributions.is_empty() => {
                let index = p.contributions.len() - 1;
                let (prev, prev_hash) = match index.checked_sub(1) {
                    Some(i) => (
                        Cow::Borrowed(&p.contributions[i].key),
                        p.contributions[i].hash,
                    ),
                    None => (
                        Cow::Owned(DeltaKey::of(&p.initial)),
                        p.start_hash(&self.phase1_hash()),
                    ),
                };
                let c = &p.contributions[index];
                if index > 0 && p.contributions[index - 1].contributor.is_beacon() {
                    return Err(invalid(
                        Phase::Two,
                        index,
                        c.hash,
                        crate::Fault::AfterBeacon,
                    ));
                }
                let tick = Tick::new(
                    progress,
                    Stage::Verify(Phase::Two, index),
                    phase2::VERIFY_STEPS,
                );
                phase2::verify_contribution(&prev, &prev_hash, c, &tick)
                    .map_err(|f| invalid(Phase::Two, index, c.hash, f))
            }
            Some(_) => Ok(()),
            None => {
                let Some(c) = self.phase1.last() else {
                    return Ok(());
                };
                let index = self.phase1.len() - 1;
                let (prev, prev_hash) = match index.checked_sub(1) {
                    Some(i) => (
                        Cow::Borrowed(&self.phase1[i].accumulator),
                        self.phase1[i].hash,
                    ),
                    None => (
                        Cow::Owned(Accumulator::initial(self.power)?),
                        self.phase1_start_hash(),
                    ),
                };
                if index > 0 && self.phase1[index - 1].contributor.is_beacon() {
                    return Err(invalid(
                        Phase::One,
                        index,
                        c.hash,
                        crate::Fault::AfterBeacon,
                    ));
                }
                let tick = Tick::new(
                    progress,
                    Stage::Verify(Phase::One, index),
                    phase1::VERIFY_STEPS,
                );
                phase1::verify_contribution(&prev, &prev_hash, c, self.power, &tick)
                    .map_err(|f| invalid(Phase::One, index, c.hash, f))
            }
        }
    }

    /// Every contribution, in order, with its hash.
    pub fn contributions(&self) -> Vec<ContributionInfo> {
        let one = self
            .phase1
            .iter()
            .enumerate()
            .map(|(index, c)| ContributionInfo {
                phase: Phase::One,
                index,
                contributor: c.contributor.clone(),
                hash: c.hash,
            });
        let two = self
            .phase2
            .iter()
            .flat_map(|p| p.contributions.iter().enumerate())
            .map(|(index, c)| ContributionInfo {
                phase: Phase::Two,
                index,
                contributor: c.contributor.clone(),
                hash: c.hash,
            });
        one.chain(two).collect()
    }

    /// Writes the transcript (magic, version, compressed canonical encoding).
    pub fn write_to<W: Write>(&self, mut w: W) -> Result<(), CeremonyError> {
        w.write_all(MAGIC)?;
        w.write_all(&FORMAT_VERSION.to_le_bytes())?;
        self.serialize_compressed(&mut w)?;
        w.flush()?;
        Ok(())
    }

    /// Reads a transcript written by [`Transcript::write_to`], checking every point.
    /// Trailing bytes are an error.
    pub fn read_from<R: Read>(mut r: R) -> Result<Self, CeremonyError> {
        let mut head = [0u8; 12];
        r.read_exact(&mut head)
            .map_err(|_| CeremonyError::Encoding("too short for a transcript header".into()))?;
        if &head[..8] != MAGIC {
            return Err(CeremonyError::Encoding(
                "not an smpx ceremony transcript".into(),
            ));
        }
        let mut version = [0u8; 4];
        version.copy_from_slice(&head[8..]);
        let version = u32::from_le_bytes(version);
        if version != FORMAT_VERSION {
            return Err(CeremonyError::Encoding(format!(
                "transcript format version {version}, this build reads {FORMAT_VERSION}"
            )));
        }
        let t = Transcript::deserialize_with_mode(&mut r, Compress::Yes, Validate::Yes)?;
        let mut rest = [0u8; 1];
        if r.read(&mut rest)? != 0 {
            return Err(CeremonyError::Encoding(
                "trailing bytes after the transcript".into(),
            ));
        }
        phase1::size(t.power)?;
        Ok(t)
    }

    /// [`Transcript::write_to`] into a vector.
    pub fn to_bytes(&self) -> Result<Vec<u8>, CeremonyError> {
        let mut v = Vec::with_capacity(12 + self.compressed_size());
        self.write_to(&mut v)?;
        Ok(v)
    }

    /// [`Transcript::read_from`] from a slice.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CeremonyError> {
        Self::read_from(bytes)
    }
}

fn invalid(phase: Phase, index: usize, hash: Digest, fault: crate::Fault) -> CeremonyError {
    CeremonyError::InvalidContribution {
        phase,
        index,
        hash,
        fault,
    }
}

/// Rechecks a whole ceremony from scratch and returns its keys.
///
/// Verifies every phase-1 contribution (from the fixed starting accumulator), synthesises
/// `circuit` and checks it is the circuit phase 2 was prepared for, checks phase 2's
/// recorded initial key against the final accumulator and the circuit
/// ([`phase2::verify_initial_key`]), verifies every phase-2 contribution, and requires at
/// least one participant in each phase and the final beacon. The keys returned are usable directly with
/// `ark_groth16::Groth16::<Bn254>::prove` / `verify` (γ = 1, standard generators).
pub fn verify_transcript<C: ConstraintSynthesizer<Fr>>(
    circuit: C,
    transcript: &Transcript,
    progress: &dyn Progress,
) -> Result<(ProvingKey<Bn254>, VerifyingKey<Bn254>), CeremonyError> {
    let (acc, phase1_hash) = phase1::verify_all(transcript.power, &transcript.phase1, progress)?;
    let p2 = transcript
        .phase2
        .as_ref()
        .ok_or(CeremonyError::NotFinalized)?;
    let r1cs = R1cs::synthesize(circuit)?;
    let actual = r1cs.digest();
    if actual != p2.circuit {
        return Err(CeremonyError::CircuitMismatch {
            recorded: p2.circuit,
            actual,
        });
    }
    phase2::verify_initial_key(&r1cs, &acc, &p2.initial, progress)?;
    drop(acc);
    phase2::verify_all(p2, p2.start_hash(&phase1_hash), progress)?;
    let pk = p2.proving_key();
    let vk = pk.vk.clone();
    Ok((pk, vk))
}

/// [`verify_transcript`] without progress reports.
pub fn verify_transcript_silent<C: ConstraintSynthesizer<Fr>>(
    circuit: C,
    transcript: &Transcript,
) -> Result<(ProvingKey<Bn254>, VerifyingKey<Bn254>), CeremonyError> {
    verify_transcript(circuit, transcript, &Silent)
}

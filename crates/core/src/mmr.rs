//! The v0.2 accumulator: a Merkle Mountain Range of voucher commitments over circom Poseidon
//! (BN254), shaped so that membership is cheap to prove in a Groth16 circuit with the leaf's
//! position — and the mountain it sits in — hidden.
//!
//! # Shape
//!
//! The MMR is **4-ary**: a node at height `h + 1` is `Poseidon(c0, c1, c2, c3)` (circom, width 5)
//! of four consecutive nodes at height `h`; leaves (height 0) are the commitments
//! `C = Poseidon(s, denomination)`, appended left to right. After `n` appends the complete
//! nodes that have no parent yet are the **peaks**: writing `n` in base 4, digit `h` of `n` is
//! the number of peaks (mountains) of height `h`, so there are at most 3 per height. Appending
//! hashes `1/4 + 1/16 + … < 1/3` nodes per leaf on average (amortised O(1)).
//!
//! Why 4-ary rather than binary: one width-5 Poseidon costs about 300 R1CS constraints and
//! climbs two binary levels' worth of leaves, where two width-3 Poseidons cost about 480. At
//! capacity `2^32` the path is 15 four-way levels instead of 32 binary ones, and the whole
//! redemption circuit (path, every peak slot hashed into the root, commitment, nullifier) is
//! 7,505 constraints — fewer than a plain binary depth-32 Merkle path with a nullifier (8,220
//! with the same gadget), and inside the 8,192-point FFT domain. A binary MMR with the same
//! slot design would need about 9,800 (domain 16,384). See `smpx-zk`.
//!
//! # Capacity
//!
//! An MMR is created with `levels` = `L` (1 ≤ `L` ≤ [`MAX_LEVELS`]): mountains have heights
//! `0..L`, so it holds at most `4^L − 1` leaves ([`capacity`]). `L = 5, 10, 16` give capacities
//! of about `2^10, 2^20, 2^32` ([`levels_for_capacity_log2`]). The circuit is generated for one
//! `L`. The root commits to `L` and to the MMR's `id` ([`MmrParams`]), so two MMRs (e.g. the
//! two overlapping ones of a rotation) never share a root.
//!
//! # Root: every peak slot hashed, for the circuit
//!
//! There is one **slot** per possible peak: slot `3h + k` holds the `k`-th peak (left to right)
//! of height `h`, or `0` if there is none — `3L` slots. The root is
//!
//! ```text
//! header = size + L·2^64 + id·2^72 + ROOT_DOMAIN·2^136  (one field element; injective)
//! root   = chain(header, slot_0, …, slot_{3L−1})
//! chain(x) = acc ← Poseidon(x[0..12]); for each next ≤ 11 inputs y: acc ← Poseidon(acc, y…)
//! ```
//!
//! (circom Poseidon takes at most 12 inputs, whose cost per input is lowest at that width; the
//! chain has a fixed length for a given `L`, so it is collision resistant like Merkle–Damgård
//! with a fixed-length message). In the circuit the prover climbs from its leaf with private
//! position digits and private siblings, then shows "my value at height `h` equals slot `j`"
//! with a private one-hot selector over the slots, and hashes *all* slots to the public root:
//! the anonymity set is the whole MMR, not one mountain, and no pairwise bagging is needed.
//! An empty slot is `0`, which no leaf or node can climb to (that would be a Poseidon preimage
//! of 0).
//!
//! # Proofs
//!
//! * [`Proof`] — membership of one leaf at one size: the leaf index, the three other children
//!   at each level up to the leaf's peak, and all peaks at that size. [`verify`] recomputes the
//!   root. The same data, laid out by [`Proof::circuit_path`], is the circuit's witness.
//! * [`ConsistencyProof`] — that the MMR at `new_size` extends the one at `old_size` (its
//!   first `old_size` leaves are the same): the old peaks, the new peaks, and per height the few
//!   nodes right of the old frontier inside the old frontier's group (at most 4 at height 0 and
//!   3 above: `≤ 3L + 1` field elements). [`ConsistencyProof::verify`] checks it against the two
//!   roots — this is how a client compares two signed checkpoints.
//! * [`Proof::update`] — a membership proof at `old_size` brought to `new_size` with a
//!   consistency proof `old_size → new_size`: the leaf's old peak is either still a peak or
//!   climbs through the frontier groups, whose members are exactly what the consistency proof
//!   carries.
//!
//! # What a client downloads to update its path, and why it reveals nothing
//!
//! A consistency proof depends only on `(old_size, new_size)`, never on a leaf: every leaf of
//! the old MMR is updated from the same bytes. The coordinator therefore publishes, for each
//! signed checkpoint, the consistency proof from the previous checkpoint (≤ `9L + 1` field
//! elements, about 4.6 KB at `L = 16`), and a wallet downloads *all* of them for the MMR (as
//! every auditor does), applying them in turn. The one leaf-specific step — bringing the path
//! the wallet got when publishing (at the size right after its own append) to the next
//! checkpoint — is done when publishing, when the coordinator learns the leaf anyway; nothing
//! asked at redemption time depends on the leaf or on when it was published.
//!
//! # Storage
//!
//! [`Mmr`] keeps every node (`≈ 4n/3` field elements), so it can answer proofs and
//! consistency proofs for any earlier size. It serializes as its levels and leaves only
//! (`{"id": …, "levels": L, "leaves": [hex, …]}`); deserializing rebuilds the inner nodes
//! (`< n/3` width-5 Poseidon hashes), so stored data can never carry an inconsistent node.

use std::cell::RefCell;

use ark_ff::{AdditiveGroup, Field};
use light_poseidon::{Poseidon, PoseidonHasher};
use serde::{Deserialize, Serialize};

use crate::crypto::{FieldBytes, Fr};

/// Children per node.
pub const ARITY: usize = 4;
/// Peak slots per height (a height can hold up to `ARITY − 1` mountains).
pub const SLOTS_PER_HEIGHT: usize = ARITY - 1;
/// Largest `levels`: capacity `4^31 − 1 < 2^62` leaves, and `levels·2^64` stays far below the
/// field modulus in the root header.
pub const MAX_LEVELS: u32 = 31;
/// Inputs of the first Poseidon call of the root chain (circom Poseidon's maximum).
pub const ROOT_FIRST_CHUNK: usize = 12;
/// Fresh inputs of each later Poseidon call of the root chain (the 12th is the accumulator).
pub const ROOT_NEXT_CHUNK: usize = 11;
/// Domain tag of the root header: the big-endian integer of the ASCII bytes `b"smpx/mr1"`.
pub const ROOT_DOMAIN: u64 = u64::from_be_bytes(*b"smpx/mr1");

/// Everything that can go wrong with an MMR, a proof or a consistency proof.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MmrError {
    /// `levels` outside `1..=MAX_LEVELS`.
    #[error("invalid MMR levels {0}: must be between 1 and {MAX_LEVELS}")]
    InvalidLevels(u32),
    /// Appending past the capacity `4^levels − 1`.
    #[error("MMR is full: capacity is {capacity} leaves")]
    Full {
        /// The capacity.
        capacity: u64,
    },
    /// A size this MMR has not reached (or, in a proof, beyond the capacity).
    #[error("size {size} is beyond the MMR's size {limit}")]
    SizeOutOfRange {
        /// The size asked for.
        size: u64,
        /// The largest acceptable size.
        limit: u64,
    },
    /// A leaf index not below the size it is asked at.
    #[error("leaf index {index} is not below size {size}")]
    LeafOutOfRange {
        /// The leaf index.
        index: u64,
        /// The size.
        size: u64,
    },
    /// A consistency proof whose old size is larger than its new size.
    #[error("old size {old} is larger than new size {new}")]
    SizesOutOfOrder {
        /// Old size.
        old: u64,
        /// New size.
        new: u64,
    },
    /// A proof whose shape does not fit the sizes it claims; the text says what.
    #[error("malformed proof: {0}")]
    Malformed(&'static str),
    /// A well-formed proof that does not lead to the given root(s): the leaf is not in the MMR
    /// at that root, or the two checkpoints are not of one append-only history.
    #[error("proof does not match the root")]
    Mismatch,
}

/// Capacity of an MMR with `levels` levels: `4^levels − 1` leaves.
pub fn capacity(levels: u32) -> Result<u64, MmrError> {
    check_levels(levels)?;
    Ok((1u64 << (2 * levels)) - 1)
}

/// The `levels` whose capacity is about `2^bits` (`bits / 2`, rounded up), e.g. 32 → 16.
pub fn levels_for_capacity_log2(bits: u32) -> u32 {
    bits.div_ceil(2)
}

fn check_levels(levels: u32) -> Result<(), MmrError> {
    if (1..=MAX_LEVELS).contains(&levels) {
        Ok(())
    } else {
        Err(MmrError::InvalidLevels(levels))
    }
}

/// circom Poseidon of 1 to 12 inputs, with one cached hasher per width and thread.
fn poseidon(inputs: &[Fr]) -> Fr {
    thread_local! {
        static HASHERS: RefCell<Vec<Option<Poseidon<Fr>>>> = const { RefCell::new(Vec::new()) };
    }
    HASHERS.with(|cell| {
        let mut hashers = cell.borrow_mut();
        let n = inputs.len();
        if hashers.len() <= n {
            hashers.resize_with(n + 1, || None);
        }
        let slot = &mut hashers[n];
        if slot.is_none() {
            match Poseidon::<Fr>::new_circom(n) {
                Ok(h) => *slot = Some(h),
                // Every caller in this module passes 1..=12 inputs.
                Err(e) => unreachable!("circom Poseidon parameters for {n} inputs: {e}"),
            }
        }
        match slot.as_mut().map(|h| h.hash(inputs)) {
            Some(Ok(h)) => h,
            Some(Err(e)) => unreachable!("Poseidon arity mismatch: {e}"),
            None => unreachable!("hasher was just built"),
        }
    })
}

/// An inner node: circom `Poseidon(c0, c1, c2, c3)`.
pub fn node_hash(children: &[Fr; ARITY]) -> Fr {
    poseidon(children)
}

/// Which MMR: the coordinator's identifier (e.g. its rotation epoch) and its levels `L`.
/// Both are hashed into every root, so two MMRs never share a root.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MmrParams {
    /// The MMR's identifier.
    pub id: u64,
    /// Levels `L`: mountains of heights `0..L`, capacity `4^L − 1`.
    pub levels: u32,
}

impl MmrParams {
    /// Parameters after checking `levels`.
    pub fn new(id: u64, levels: u32) -> Result<Self, MmrError> {
        check_levels(levels)?;
        Ok(Self { id, levels })
    }
}

/// The first element of the root chain:
/// `size + L·2^64 + id·2^72 + ROOT_DOMAIN·2^136` (injective: `size < 2^62`, `L < 2^8`).
pub fn root_header(mmr: MmrParams, size: u64) -> Fr {
    let two64 = Fr::from(u64::MAX) + Fr::ONE;
    let two72 = two64 * Fr::from(256u64);
    Fr::from(size)
        + Fr::from(u64::from(mmr.levels)) * two64
        + Fr::from(mmr.id) * two72
        + Fr::from(ROOT_DOMAIN) * two72 * two64
}

/// The root of an MMR with `size` leaves, from its `3L` peak slots (see the module docs).
/// The caller guarantees `slots.len() == 3 * mmr.levels`.
pub fn root_from_slots(mmr: MmrParams, size: u64, slots: &[Fr]) -> Fr {
    root_from_header(root_header(mmr, size), slots)
}

/// The root chain over `header` and the slots (what the circuit recomputes).
pub fn root_from_header(header: Fr, slots: &[Fr]) -> Fr {
    let mut inputs = Vec::with_capacity(1 + slots.len());
    inputs.push(header);
    inputs.extend_from_slice(slots);
    chain_hash(&inputs)
}

/// `acc ← Poseidon(x[0..12])`, then `acc ← Poseidon(acc, next ≤ 11)` until `x` is used up.
fn chain_hash(x: &[Fr]) -> Fr {
    let first = x.len().min(ROOT_FIRST_CHUNK);
    let mut acc = poseidon(&x[..first]);
    let mut buf = Vec::with_capacity(ROOT_FIRST_CHUNK);
    for chunk in x[first..].chunks(ROOT_NEXT_CHUNK) {
        buf.clear();
        buf.push(acc);
        buf.extend_from_slice(chunk);
        acc = poseidon(&buf);
    }
    acc
}

/// Number of complete nodes at `height` when the MMR has `size` leaves.
fn count_at(size: u64, height: usize) -> u64 {
    size >> (2 * height)
}

/// Number of peaks of `height` at `size` (digit `height` of `size` in base 4).
fn digit(size: u64, height: usize) -> usize {
    (count_at(size, height) & 3) as usize
}

/// Total number of peaks at `size`.
fn peak_count(levels: u32, size: u64) -> usize {
    (0..levels as usize).map(|h| digit(size, h)).sum()
}

/// The height of the mountain holding leaf `index` at `size` (`index < size`).
fn mountain_height(index: u64, size: u64) -> usize {
    let mut h = 0;
    // The node at height h above the leaf is complete (position < count); stop where its
    // parent is not.
    while count_at(index, h + 1) < count_at(size, h + 1) {
        h += 1;
    }
    h
}

/// Spreads peaks given left to right (highest mountain first) into the `3·levels` slots.
/// The caller guarantees `peaks.len() == peak_count(levels, size)`.
fn slots_from_peaks(levels: u32, size: u64, peaks: &[Fr]) -> Vec<Fr> {
    let mut slots = vec![Fr::ZERO; SLOTS_PER_HEIGHT * levels as usize];
    let mut next = peaks.iter();
    for h in (0..levels as usize).rev() {
        for k in 0..digit(size, h) {
            if let Some(p) = next.next() {
                slots[SLOTS_PER_HEIGHT * h + k] = *p;
            }
        }
    }
    slots
}

/// Converts wire field elements, rejecting non-canonical encodings as a malformed proof.
fn to_frs(values: &[FieldBytes]) -> Result<Vec<Fr>, MmrError> {
    values
        .iter()
        .map(|v| {
            v.to_fr()
                .map_err(|_| MmrError::Malformed("non-canonical field element"))
        })
        .collect()
}

fn to_wire(values: &[Fr]) -> Vec<FieldBytes> {
    values.iter().map(FieldBytes::from_fr).collect()
}

/// Inserts `own` at position `pos` among the three `others`, giving the four children.
fn children_with(own: Fr, pos: usize, others: &[Fr; 3]) -> [Fr; ARITY] {
    let mut out = [Fr::ZERO; ARITY];
    let mut rest = others.iter();
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = if i == pos {
            own
        } else {
            rest.next().copied().unwrap_or(Fr::ZERO)
        };
    }
    out
}

/// The three children other than position `pos`.
fn others_of(children: &[Fr], pos: usize) -> [Fr; 3] {
    let mut out = [Fr::ZERO; 3];
    let mut it = children
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != pos)
        .map(|(_, c)| *c);
    for slot in out.iter_mut() {
        *slot = it.next().unwrap_or(Fr::ZERO);
    }
    out
}

/// A 4-ary Merkle Mountain Range of BN254 field elements (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "MmrRepr", into = "MmrRepr")]
pub struct Mmr {
    params: MmrParams,
    /// `nodes[h]` = every complete node of height `h`, left to right; `nodes[0]` = leaves.
    nodes: Vec<Vec<Fr>>,
}

/// Stored form of an [`Mmr`]: its levels and leaves; inner nodes are rebuilt on load.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MmrRepr {
    id: u64,
    levels: u32,
    leaves: Vec<FieldBytes>,
}

impl From<Mmr> for MmrRepr {
    fn from(m: Mmr) -> Self {
        MmrRepr {
            id: m.params.id,
            levels: m.params.levels,
            leaves: m.nodes.first().map(|l| to_wire(l)).unwrap_or_default(),
        }
    }
}

impl TryFrom<MmrRepr> for Mmr {
    type Error = MmrError;
    fn try_from(r: MmrRepr) -> Result<Self, MmrError> {
        Mmr::from_leaves(MmrParams::new(r.id, r.levels)?, to_frs(&r.leaves)?)
    }
}

impl Mmr {
    /// An empty MMR (capacity `4^levels − 1`).
    pub fn new(params: MmrParams) -> Result<Self, MmrError> {
        check_levels(params.levels)?;
        Ok(Self {
            params,
            nodes: vec![Vec::new(); params.levels as usize],
        })
    }

    /// An MMR holding `leaves`, in order.
    pub fn from_leaves(
        params: MmrParams,
        leaves: impl IntoIterator<Item = Fr>,
    ) -> Result<Self, MmrError> {
        let mut m = Self::new(params)?;
        for leaf in leaves {
            m.append(leaf)?;
        }
        Ok(m)
    }

    /// Identifier and levels.
    pub fn params(&self) -> MmrParams {
        self.params
    }

    /// The number of levels `L`.
    pub fn levels(&self) -> u32 {
        self.params.levels
    }

    /// Capacity `4^L − 1`.
    pub fn capacity(&self) -> u64 {
        (1u64 << (2 * self.params.levels)) - 1
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.nodes[0].len() as u64
    }

    /// Whether there are no leaves.
    pub fn is_empty(&self) -> bool {
        self.nodes[0].is_empty()
    }

    /// The leaf at `index`, if appended.
    pub fn leaf(&self, index: u64) -> Option<Fr> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.nodes[0].get(i).copied())
    }

    /// Appends a leaf and returns its index. Hashes one node per completed group of four:
    /// fewer than 1/3 on average.
    pub fn append(&mut self, leaf: Fr) -> Result<u64, MmrError> {
        let index = self.size();
        if index >= self.capacity() {
            return Err(MmrError::Full {
                capacity: self.capacity(),
            });
        }
        self.nodes[0].push(leaf);
        let mut h = 0;
        // A full group at the top height would mean 4^L leaves, beyond the capacity.
        while h + 1 < self.nodes.len() && self.nodes[h].len() & (ARITY - 1) == 0 {
            let level = &self.nodes[h];
            let group = &level[level.len() - ARITY..];
            let parent = node_hash(&[group[0], group[1], group[2], group[3]]);
            self.nodes[h + 1].push(parent);
            h += 1;
        }
        Ok(index)
    }

    /// Drops every leaf from `size` on (and the nodes built from them), returning the MMR to
    /// what it was at `size`. For undoing appends whose storage was rolled back; does nothing
    /// if `size` is not below the current size.
    pub fn truncate(&mut self, size: u64) {
        for (h, level) in self.nodes.iter_mut().enumerate() {
            let keep = usize::try_from(count_at(size, h)).unwrap_or(usize::MAX);
            level.truncate(keep);
        }
    }

    fn check_size(&self, size: u64) -> Result<(), MmrError> {
        if size > self.size() {
            return Err(MmrError::SizeOutOfRange {
                size,
                limit: self.size(),
            });
        }
        Ok(())
    }

    /// The complete nodes of `height` at positions `from..to`.
    fn node_range(&self, height: usize, from: u64, to: u64) -> Vec<Fr> {
        if from >= to {
            return Vec::new();
        }
        self.nodes[height][from as usize..to as usize].to_vec()
    }

    /// The peaks at `size` (≤ the current size), left to right (highest mountain first).
    pub fn peaks_at(&self, size: u64) -> Result<Vec<Fr>, MmrError> {
        self.check_size(size)?;
        let mut peaks = Vec::with_capacity(peak_count(self.params.levels, size));
        for h in (0..self.params.levels as usize).rev() {
            let count = count_at(size, h);
            peaks.extend(self.node_range(h, count & !3, count));
        }
        Ok(peaks)
    }

    /// The current peaks, left to right.
    pub fn peaks(&self) -> Vec<Fr> {
        self.peaks_at(self.size()).unwrap_or_default()
    }

    /// The `3L` peak slots at `size` (slot `3h + k` = `k`-th peak of height `h`, else 0).
    pub fn slots_at(&self, size: u64) -> Result<Vec<Fr>, MmrError> {
        Ok(slots_from_peaks(
            self.params.levels,
            size,
            &self.peaks_at(size)?,
        ))
    }

    /// The root at `size` (≤ the current size).
    pub fn root_at(&self, size: u64) -> Result<Fr, MmrError> {
        Ok(root_from_slots(self.params, size, &self.slots_at(size)?))
    }

    /// The current root.
    pub fn root(&self) -> Fr {
        root_from_slots(
            self.params,
            self.size(),
            &slots_from_peaks(self.params.levels, self.size(), &self.peaks()),
        )
    }

    /// Membership proof of leaf `index` at the current size.
    pub fn proof(&self, index: u64) -> Result<Proof, MmrError> {
        self.proof_at(index, self.size())
    }

    /// Membership proof of leaf `index` at an earlier `size` (`index < size ≤ current`).
    pub fn proof_at(&self, index: u64, size: u64) -> Result<Proof, MmrError> {
        self.check_size(size)?;
        if index >= size {
            return Err(MmrError::LeafOutOfRange { index, size });
        }
        let height = mountain_height(index, size);
        let siblings = (0..height)
            .map(|j| {
                let pos = index >> (2 * j);
                let group = self.node_range(j, pos & !3, (pos & !3) + 4);
                others_of(&group, (pos & 3) as usize).map(|x| FieldBytes::from_fr(&x))
            })
            .collect();
        Ok(Proof {
            mmr: self.params,
            size,
            leaf_index: index,
            siblings,
            peaks: to_wire(&self.peaks_at(size)?),
        })
    }

    /// Proof that the MMR at `new_size` extends the MMR at `old_size`
    /// (`old_size ≤ new_size ≤ current size`).
    pub fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<ConsistencyProof, MmrError> {
        self.check_size(new_size)?;
        if old_size > new_size {
            return Err(MmrError::SizesOutOfOrder {
                old: old_size,
                new: new_size,
            });
        }
        let mut frontier = Vec::new();
        for h in 0..self.params.levels as usize {
            let (from, to) = frontier_range(old_size, new_size, h);
            frontier.push(to_wire(&self.node_range(h, from, to)));
        }
        while frontier.last().is_some_and(Vec::is_empty) {
            frontier.pop();
        }
        Ok(ConsistencyProof {
            mmr: self.params,
            old_size,
            new_size,
            old_peaks: to_wire(&self.peaks_at(old_size)?),
            new_peaks: to_wire(&self.peaks_at(new_size)?),
            frontier,
        })
    }
}

/// Positions at `height` of the frontier nodes a consistency proof `old → new` carries: the
/// members of the old frontier's group (group of position `c = old >> 2h`) that exist at `new`
/// and are not old peaks — from `c` at height 0, from `c + 1` above (node `c` is then the
/// parent of the group below, which the verifier computes).
fn frontier_range(old: u64, new: u64, height: usize) -> (u64, u64) {
    let c = count_at(old, height);
    let end = (c & !3).saturating_add(4).min(count_at(new, height));
    let from = if height == 0 { c } else { c + 1 };
    (from, end.max(from))
}

/// Membership of one leaf in an MMR of `size` leaves (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proof {
    /// Which MMR (committed to by the root).
    pub mmr: MmrParams,
    /// The MMR size the proof is for.
    pub size: u64,
    /// Position of the leaf (0-based append order).
    pub leaf_index: u64,
    /// For each height from 0 up to (not including) the leaf's peak: the three other children
    /// of the group, left to right. The leaf's own position in each group is digit `j` of
    /// `leaf_index` in base 4.
    pub siblings: Vec<[FieldBytes; 3]>,
    /// Every peak at `size`, left to right (highest mountain first).
    pub peaks: Vec<FieldBytes>,
}

/// A membership proof laid out for the circuit: fixed-length, with the position hidden in
/// private values (see `smpx-zk`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CircuitPath {
    /// The root's header ([`root_header`]: MMR id, levels and size), the first value the
    /// root chain hashes.
    pub header: Fr,
    /// Position digit (0..4) of the climbing node at each of the `L − 1` levels; levels at and
    /// above the leaf's peak are padding (0).
    pub digits: Vec<u8>,
    /// The three other children at each of the `L − 1` levels; padding (0) at and above the
    /// leaf's peak.
    pub siblings: Vec<[Fr; 3]>,
    /// The `3L` peak slots.
    pub slots: Vec<Fr>,
    /// Which slot the leaf climbs to: `3·height + k`.
    pub slot: usize,
}

impl Proof {
    /// The height of the leaf's mountain and its slot `3·height + k`, after checking the
    /// proof's shape against its size.
    fn locate(&self) -> Result<(usize, usize), MmrError> {
        let cap = capacity(self.mmr.levels)?;
        if self.size > cap {
            return Err(MmrError::SizeOutOfRange {
                size: self.size,
                limit: cap,
            });
        }
        if self.leaf_index >= self.size {
            return Err(MmrError::LeafOutOfRange {
                index: self.leaf_index,
                size: self.size,
            });
        }
        let height = mountain_height(self.leaf_index, self.size);
        if self.siblings.len() != height {
            return Err(MmrError::Malformed(
                "sibling count does not match the leaf's mountain",
            ));
        }
        if self.peaks.len() != peak_count(self.mmr.levels, self.size) {
            return Err(MmrError::Malformed("peak count does not match the size"));
        }
        let k = ((self.leaf_index >> (2 * height)) & 3) as usize;
        Ok((height, SLOTS_PER_HEIGHT * height + k))
    }

    /// The peak the leaf climbs to.
    fn climb(&self, leaf: Fr) -> Result<Fr, MmrError> {
        let mut cur = leaf;
        for (j, sib) in self.siblings.iter().enumerate() {
            let others = to_frs(sib)?;
            let others = [others[0], others[1], others[2]];
            let pos = ((self.leaf_index >> (2 * j)) & 3) as usize;
            cur = node_hash(&children_with(cur, pos, &others));
        }
        Ok(cur)
    }

    /// The root this proof's peaks hash to (not checked against anything).
    pub fn root(&self) -> Result<Fr, MmrError> {
        self.locate()?;
        let slots = slots_from_peaks(self.mmr.levels, self.size, &to_frs(&self.peaks)?);
        Ok(root_from_slots(self.mmr, self.size, &slots))
    }

    /// The witness layout for the circuit (after checking the proof's shape).
    pub fn circuit_path(&self) -> Result<CircuitPath, MmrError> {
        let (height, slot) = self.locate()?;
        let path_len = self.mmr.levels as usize - 1;
        let mut digits = vec![0u8; path_len];
        let mut siblings = vec![[Fr::ZERO; 3]; path_len];
        for j in 0..height {
            digits[j] = ((self.leaf_index >> (2 * j)) & 3) as u8;
            let others = to_frs(&self.siblings[j])?;
            siblings[j] = [others[0], others[1], others[2]];
        }
        Ok(CircuitPath {
            header: root_header(self.mmr, self.size),
            digits,
            siblings,
            slots: slots_from_peaks(self.mmr.levels, self.size, &to_frs(&self.peaks)?),
            slot,
        })
    }

    /// Brings this proof to `cp.new_size` with a consistency proof from this proof's size.
    /// The result is checked against the root of `cp`'s new peaks; the caller still checks
    /// that root against a signed checkpoint (or calls [`ConsistencyProof::verify`]).
    pub fn update(&self, cp: &ConsistencyProof) -> Result<Proof, MmrError> {
        if cp.mmr != self.mmr || cp.old_size != self.size {
            return Err(MmrError::Malformed(
                "consistency proof does not start at this proof's size",
            ));
        }
        if cp.old_peaks != self.peaks {
            return Err(MmrError::Mismatch);
        }
        let (height, old_slot) = self.locate()?;
        let groups = cp.replay()?;
        let mut siblings = self.siblings.clone();
        for (h, group) in groups.iter().enumerate().skip(height) {
            let pos = ((self.leaf_index >> (2 * h)) & 3) as usize;
            siblings.push(others_of(group, pos).map(|x| FieldBytes::from_fr(&x)));
        }
        let updated = Proof {
            mmr: self.mmr,
            size: cp.new_size,
            leaf_index: self.leaf_index,
            siblings,
            peaks: cp.new_peaks.clone(),
        };
        // Self-check: the old peak climbs to the new peak slot the new proof names.
        let (new_height, new_slot) = updated.locate()?;
        let mut cur = slots_from_peaks(self.mmr.levels, self.size, &to_frs(&self.peaks)?)[old_slot];
        for j in height..new_height {
            let others = to_frs(&updated.siblings[j])?;
            let pos = ((self.leaf_index >> (2 * j)) & 3) as usize;
            cur = node_hash(&children_with(cur, pos, &[others[0], others[1], others[2]]));
        }
        let new_slots = slots_from_peaks(self.mmr.levels, cp.new_size, &to_frs(&cp.new_peaks)?);
        if cur != new_slots[new_slot] {
            return Err(MmrError::Mismatch);
        }
        Ok(updated)
    }
}

/// Checks that `leaf` is in the MMR with this `root`, by `proof`. `Ok(())` or the reason it
/// is not: [`MmrError::Mismatch`] for a well-formed proof that leads elsewhere.
pub fn verify(root: &Fr, leaf: &Fr, proof: &Proof) -> Result<(), MmrError> {
    let (_, slot) = proof.locate()?;
    let peaks = to_frs(&proof.peaks)?;
    let slots = slots_from_peaks(proof.mmr.levels, proof.size, &peaks);
    let top = proof.climb(*leaf)?;
    if top != slots[slot] || root_from_slots(proof.mmr, proof.size, &slots) != *root {
        return Err(MmrError::Mismatch);
    }
    Ok(())
}

/// Proof that the MMR at `new_size` is an append-only extension of the MMR at `old_size`
/// (see the module docs). The same bytes update every old leaf's membership proof.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    /// Which MMR (committed to by the roots).
    pub mmr: MmrParams,
    /// Size at the older checkpoint.
    pub old_size: u64,
    /// Size at the newer checkpoint.
    pub new_size: u64,
    /// Peaks at `old_size`, left to right.
    pub old_peaks: Vec<FieldBytes>,
    /// Peaks at `new_size`, left to right.
    pub new_peaks: Vec<FieldBytes>,
    /// Per height `h` (trailing empty heights omitted): the nodes of the new MMR in the group
    /// of the old frontier position `c = old_size >> 2h` that are not old peaks and not
    /// computable from below — positions `c..` at height 0, `c + 1..` above — up to the end
    /// of that group or of the new MMR.
    pub frontier: Vec<Vec<FieldBytes>>,
}

impl ConsistencyProof {
    /// Checks the proof against the two checkpoint roots.
    pub fn verify(&self, old_root: &Fr, new_root: &Fr) -> Result<(), MmrError> {
        self.replay()?;
        let old = slots_from_peaks(self.mmr.levels, self.old_size, &to_frs(&self.old_peaks)?);
        let new = slots_from_peaks(self.mmr.levels, self.new_size, &to_frs(&self.new_peaks)?);
        if root_from_slots(self.mmr, self.old_size, &old) != *old_root
            || root_from_slots(self.mmr, self.new_size, &new) != *new_root
        {
            return Err(MmrError::Mismatch);
        }
        Ok(())
    }

    /// Rebuilds the old frontier's group at each height from the old peaks, the nodes
    /// computed from below and the carried frontier nodes; checks that where a group is still
    /// incomplete at `new_size` its members are exactly the new peaks of that height. Returns
    /// the complete groups, from height 0 up (the group at height `h` is the one a leaf of an
    /// old mountain of height ≤ `h` climbs through).
    fn replay(&self) -> Result<Vec<Vec<Fr>>, MmrError> {
        let cap = capacity(self.mmr.levels)?;
        if self.new_size > cap {
            return Err(MmrError::SizeOutOfRange {
                size: self.new_size,
                limit: cap,
            });
        }
        if self.old_size > self.new_size {
            return Err(MmrError::SizesOutOfOrder {
                old: self.old_size,
                new: self.new_size,
            });
        }
        let levels = self.mmr.levels as usize;
        if self.old_peaks.len() != peak_count(self.mmr.levels, self.old_size)
            || self.new_peaks.len() != peak_count(self.mmr.levels, self.new_size)
        {
            return Err(MmrError::Malformed("peak count does not match the size"));
        }
        if self.frontier.len() > levels {
            return Err(MmrError::Malformed("more frontier heights than levels"));
        }
        let old = slots_from_peaks(self.mmr.levels, self.old_size, &to_frs(&self.old_peaks)?);
        let new = slots_from_peaks(self.mmr.levels, self.new_size, &to_frs(&self.new_peaks)?);
        let mut complete = Vec::new();
        let mut carry: Option<Fr> = None;
        for h in 0..levels {
            let c = count_at(self.old_size, h);
            let (from, to) = frontier_range(self.old_size, self.new_size, h);
            let given = match self.frontier.get(h) {
                Some(nodes) => to_frs(nodes)?,
                None => Vec::new(),
            };
            if given.len() as u64 != to - from {
                return Err(MmrError::Malformed(
                    "frontier node count does not match the sizes",
                ));
            }
            let node_c_exists = c < count_at(self.new_size, h);
            if h > 0 && node_c_exists != carry.is_some() {
                return Err(MmrError::Malformed("frontier does not fit the sizes"));
            }
            let mut group: Vec<Fr> =
                old[SLOTS_PER_HEIGHT * h..][..digit(self.old_size, h)].to_vec();
            if h > 0 {
                group.extend(carry.take());
            }
            group.extend(given);
            if group.len() == ARITY {
                carry = Some(node_hash(&[group[0], group[1], group[2], group[3]]));
                complete.push(group);
            } else {
                // Incomplete at the new size: these are the new peaks of this height.
                let peaks = &new[SLOTS_PER_HEIGHT * h..][..digit(self.new_size, h)];
                if peaks != group.as_slice() {
                    return Err(MmrError::Mismatch);
                }
            }
        }
        Ok(complete)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Poseidon is generic code, compiled at this crate's (debug) optimisation level in tests:
    // leaves and MMRs are built once and shared; proofs are taken at historical sizes.
    const MAX_LEAVES: u64 = 300;

    fn leaf(i: u64) -> Fr {
        static LEAVES: std::sync::OnceLock<Vec<Fr>> = std::sync::OnceLock::new();
        let table = LEAVES.get_or_init(|| {
            (0..2 * MAX_LEAVES)
                .map(|i| crate::crypto::poseidon2(Fr::from(i), Fr::from(7u64)))
                .collect()
        });
        match table.get(i as usize) {
            Some(x) => *x,
            None => crate::crypto::poseidon2(Fr::from(i), Fr::from(7u64)),
        }
    }

    /// An MMR of `levels` levels holding `min(capacity, MAX_LEAVES)` leaves, built once.
    fn shared(levels: u32) -> &'static Mmr {
        static MMRS: std::sync::OnceLock<Vec<Mmr>> = std::sync::OnceLock::new();
        let all = MMRS.get_or_init(|| {
            (1..=4)
                .map(|l| mmr(l, capacity(l).unwrap().min(MAX_LEAVES)))
                .collect()
        });
        &all[levels as usize - 1]
    }

    fn params(levels: u32) -> MmrParams {
        MmrParams { id: 9, levels }
    }

    fn mmr(levels: u32, n: u64) -> Mmr {
        Mmr::from_leaves(params(levels), (0..n).map(leaf)).unwrap()
    }

    /// The root by definition: a straightforward recomputation from the leaves.
    fn reference_root(levels: u32, leaves: &[Fr]) -> Fr {
        let n = leaves.len() as u64;
        let mut slots = vec![Fr::ZERO; 3 * levels as usize];
        let mut start = 0usize;
        for h in (0..levels as usize).rev() {
            let width = 1usize << (2 * h);
            for k in 0..digit(n, h) {
                let mut layer: Vec<Fr> = leaves[start..start + width].to_vec();
                while layer.len() > 1 {
                    layer = layer
                        .chunks(4)
                        .map(|c| node_hash(&[c[0], c[1], c[2], c[3]]))
                        .collect();
                }
                slots[3 * h + k] = layer[0];
                start += width;
            }
        }
        let mut x = vec![root_header(params(levels), n)];
        x.extend(slots);
        chain_hash(&x)
    }

    #[test]
    fn mmr_capacity_and_levels() {
        assert_eq!(capacity(1).unwrap(), 3);
        assert_eq!(capacity(16).unwrap(), u32::MAX as u64);
        assert_eq!(capacity(0), Err(MmrError::InvalidLevels(0)));
        assert_eq!(capacity(32), Err(MmrError::InvalidLevels(32)));
        assert_eq!(levels_for_capacity_log2(32), 16);
        assert_eq!(levels_for_capacity_log2(20), 10);
        assert_eq!(levels_for_capacity_log2(10), 5);
        let mut m = mmr(1, 3);
        assert_eq!(m.append(leaf(3)), Err(MmrError::Full { capacity: 3 }));
        let mut m2 = mmr(2, 15);
        assert_eq!(m2.peaks().len(), 6);
        assert!(m2.append(leaf(15)).is_err());
        assert_eq!(m.size(), 3);
    }

    #[test]
    fn mmr_root_matches_reference_and_hashes_are_amortised() {
        let levels = 4;
        let leaves: Vec<Fr> = (0..70).map(leaf).collect();
        let mut m = Mmr::new(params(levels)).unwrap();
        assert_eq!(m.root(), reference_root(levels, &[]));
        for (i, l) in leaves.iter().enumerate() {
            assert_eq!(m.append(*l).unwrap(), i as u64);
            assert_eq!(m.root(), reference_root(levels, &leaves[..=i]));
        }
        // 70 leaves: 17 + 4 + 1 inner nodes (fewer than n/3).
        let inner: usize = m.nodes[1..].iter().map(Vec::len).sum();
        assert_eq!(inner, 22);
        // 70 = 1·64 + 0·16 + 1·4 + 2·1: four peaks, highest first.
        assert_eq!(m.peaks().len(), 4);
        assert_eq!(m.peaks()[0], m.nodes[3][0]);
        // The root depends on levels and size, not only on the peaks.
        assert_ne!(mmr(5, 70).root(), m.root());
        assert_ne!(root_header(params(4), 1), root_header(params(4), 2));
        let other_id = Mmr::from_leaves(MmrParams::new(10, 4).unwrap(), leaves.clone()).unwrap();
        assert_ne!(other_id.root(), m.root());
        assert_eq!(MmrParams::new(1, 0), Err(MmrError::InvalidLevels(0)));
    }

    #[test]
    fn mmr_root_vector_is_stable() {
        // Pins the root definition (header, slot order, chain) so that a change is deliberate.
        let m = mmr(2, 5);
        let root = FieldBytes::from_fr(&m.root()).to_hex();
        let again = reference_root(2, &(0..5).map(leaf).collect::<Vec<_>>());
        assert_eq!(root, FieldBytes::from_fr(&again).to_hex());
        assert_eq!(
            root,
            "17a21d6f6687c536986ed5da35c7c4109418dd4a4cfa151927e6121054fd624f"
        );
    }

    #[test]
    fn mmr_proofs_reject_wrong_leaf_shape_and_root() {
        let m = mmr(3, 23);
        let root = m.root();
        let p = m.proof(5).unwrap();
        verify(&root, &leaf(5), &p).unwrap();
        assert_eq!(verify(&root, &leaf(6), &p), Err(MmrError::Mismatch));
        assert_eq!(
            verify(&mmr(3, 22).root(), &leaf(5), &p),
            Err(MmrError::Mismatch)
        );
        let mut bad = p.clone();
        bad.siblings.pop();
        assert!(matches!(
            verify(&root, &leaf(5), &bad),
            Err(MmrError::Malformed(_))
        ));
        let mut bad = p.clone();
        bad.leaf_index = 23;
        assert!(matches!(
            verify(&root, &leaf(5), &bad),
            Err(MmrError::LeafOutOfRange { .. })
        ));
        let mut bad = p.clone();
        bad.peaks[0] = FieldBytes([0xff; 32]);
        assert!(matches!(
            verify(&root, &leaf(5), &bad),
            Err(MmrError::Malformed(_))
        ));
        let mut bad = p.clone();
        bad.size = 1 << 40;
        assert!(matches!(
            verify(&root, &leaf(5), &bad),
            Err(MmrError::SizeOutOfRange { .. })
        ));
        let mut bad = p.clone();
        bad.mmr.levels = 0;
        assert_eq!(
            verify(&root, &leaf(5), &bad),
            Err(MmrError::InvalidLevels(0))
        );
        // Claiming another position in the same mountain fails.
        let mut bad = p.clone();
        bad.leaf_index = 6;
        assert_eq!(verify(&root, &leaf(5), &bad), Err(MmrError::Mismatch));
        assert!(m.proof(23).is_err());
        assert!(m.proof_at(1, 24).is_err());
        assert!(m.consistency_proof(5, 24).is_err());
        assert!(matches!(
            m.consistency_proof(6, 5),
            Err(MmrError::SizesOutOfOrder { .. })
        ));
    }

    #[test]
    fn mmr_serde_roundtrip_rebuilds_nodes() {
        let m = mmr(3, 37);
        let json = serde_json::to_string(&m).unwrap();
        assert!(json.starts_with("{\"id\":9,\"levels\":3,\"leaves\":[\""));
        let back: Mmr = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.root(), m.root());
        // Too many leaves for the levels, bad levels, non-canonical leaf: refused.
        let full = format!(
            "{{\"id\":9,\"levels\":1,\"leaves\":[{}]}}",
            vec!["\"".to_string() + &"0".repeat(64) + "\""; 4].join(",")
        );
        assert!(serde_json::from_str::<Mmr>(&full).is_err());
        assert!(serde_json::from_str::<Mmr>("{\"id\":9,\"levels\":0,\"leaves\":[]}").is_err());
        let bad = format!(
            "{{\"id\":9,\"levels\":1,\"leaves\":[\"{}\"]}}",
            "f".repeat(64)
        );
        assert!(serde_json::from_str::<Mmr>(&bad).is_err());

        let p = m.proof(36).unwrap();
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Proof>(&json).unwrap(), p);
        let cp = m.consistency_proof(9, 37).unwrap();
        let json = serde_json::to_string(&cp).unwrap();
        assert_eq!(serde_json::from_str::<ConsistencyProof>(&json).unwrap(), cp);
    }

    #[test]
    fn mmr_consistency_rejects_forgeries() {
        let m = mmr(3, 50);
        let (r1, r2) = (m.root_at(17).unwrap(), m.root());
        let cp = m.consistency_proof(17, 50).unwrap();
        cp.verify(&r1, &r2).unwrap();
        // A forged old root, or a different history, fails.
        let other =
            Mmr::from_leaves(params(3), (0..50).map(|i| leaf(i + u64::from(i == 3)))).unwrap();
        assert_eq!(
            cp.verify(&other.root_at(17).unwrap(), &r2),
            Err(MmrError::Mismatch)
        );
        assert_eq!(cp.verify(&r1, &other.root()), Err(MmrError::Mismatch));
        let forged = other.consistency_proof(17, 50).unwrap();
        assert!(forged.verify(&r1, &r2).is_err());
        // Tampered frontier node or old peak.
        let mut bad = cp.clone();
        bad.frontier[0][0] = FieldBytes::from_fr(&leaf(99));
        assert!(bad.verify(&r1, &r2).is_err());
        let mut bad = cp.clone();
        bad.frontier[0].pop();
        assert!(matches!(bad.verify(&r1, &r2), Err(MmrError::Malformed(_))));
        let mut bad = cp.clone();
        bad.new_size = 49;
        assert!(bad.verify(&r1, &r2).is_err());
        let mut bad = cp.clone();
        bad.old_size = 51;
        assert!(bad.verify(&r1, &r2).is_err());
    }

    fn check_everything(levels: u32, n: u64, old: u64, picks: &[u64]) {
        let m = shared(levels);
        let n = n.min(m.size());
        let root = m.root_at(n).unwrap();
        // Every leaf's proof verifies against the current root (sampled: the leaves at the
        // picks and at the mountain boundaries; the proptests vary the sizes).
        let mut leaves: Vec<u64> = picks.iter().map(|p| p % n.max(1)).collect();
        leaves.extend([0, n.saturating_sub(1), n & !15]);
        leaves.retain(|i| *i < n);
        for i in leaves {
            let p = m.proof_at(i, n).unwrap();
            verify(&root, &leaf(i), &p).unwrap();
            // Not a member: another value at that position.
            assert_eq!(verify(&root, &leaf(n + i), &p), Err(MmrError::Mismatch));
            // The circuit layout climbs to the slot it names.
            let cp = p.circuit_path().unwrap();
            assert_eq!(cp.slots, m.slots_at(n).unwrap());
            assert_ne!(cp.slots[cp.slot], Fr::ZERO);
        }
        // Consistency and updates from an older size.
        let old = old.min(n);
        let c = m.consistency_proof(old, n).unwrap();
        c.verify(&m.root_at(old).unwrap(), &root).unwrap();
        assert!(c.frontier.iter().map(Vec::len).sum::<usize>() <= 3 * levels as usize + 1);
        for &i in picks {
            if old == 0 {
                break;
            }
            let i = i % old;
            let p_old = m.proof_at(i, old).unwrap();
            verify(&m.root_at(old).unwrap(), &leaf(i), &p_old).unwrap();
            let p_new = p_old.update(&c).unwrap();
            assert_eq!(p_new, m.proof_at(i, n).unwrap());
            verify(&root, &leaf(i), &p_new).unwrap();
        }
        if old < n {
            // A forged old root fails.
            assert!(c.verify(&m.root_at(old + 1).unwrap(), &root).is_err());
        }
    }

    #[test]
    fn mmr_boundaries() {
        // Sizes and old sizes at and around mountain merges (4, 16, 64, 256).
        for (n, olds) in [
            (0u64, &[0u64][..]),
            (1, &[0, 1]),
            (5, &[3, 4]),
            (17, &[4, 15, 16]),
            (65, &[16, 63, 64]),
            (255, &[1, 254]),
        ] {
            for old in olds {
                check_everything(4, n, *old, &[2, 5, 62]);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn mmr_invariants(levels in 1u32..5, n in 0u64..MAX_LEAVES, old in 0u64..MAX_LEAVES,
                          picks in proptest::collection::vec(any::<u64>(), 4)) {
            check_everything(levels, n, old, &picks);
        }

        #[test]
        fn mmr_chained_updates(first in 1u64..30, steps in proptest::collection::vec(0u64..40, 1..5),
                               i in any::<u64>()) {
            // A proof carried across several checkpoints, one consistency proof at a time.
            let total: u64 = first + steps.iter().sum::<u64>();
            let m = shared(4);
            prop_assert!(total <= m.size());
            let i = i % first;
            let mut size = first;
            let mut p = m.proof_at(i, size).unwrap();
            for s in steps {
                let next = size + s;
                let c = m.consistency_proof(size, next).unwrap();
                c.verify(&m.root_at(size).unwrap(), &m.root_at(next).unwrap()).unwrap();
                p = p.update(&c).unwrap();
                verify(&m.root_at(next).unwrap(), &leaf(i), &p).unwrap();
                size = next;
            }
        }
    }
    #[test]
    fn truncate_undoes_appends() {
        let p = MmrParams::new(7, 4).unwrap();
        let leaves: Vec<Fr> = (1..=40u64).map(Fr::from).collect();
        let mut m = Mmr::from_leaves(p, leaves.clone()).unwrap();
        for size in [40u64, 33, 16, 15, 4, 1, 0] {
            m.truncate(size);
            let fresh = Mmr::from_leaves(p, leaves[..size as usize].iter().copied()).unwrap();
            assert_eq!(m, fresh, "truncate to {size}");
        }
    }
}

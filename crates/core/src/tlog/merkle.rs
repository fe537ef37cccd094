//! The RFC 6962 Merkle tree of a transparency log: leaf and node hashing, tree hashes, and
//! inclusion and consistency proofs (generated and verified).
//!
//! # Hashing (RFC 9162 §2.1.1, the same as RFC 6962 §2.1)
//!
//! ```text
//! MTH({})      = SHA-256()                       (the empty tree)
//! MTH({d0})    = SHA-256(0x00 || d0)             (a leaf)
//! MTH(D[n])    = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))
//!                where k is the largest power of two smaller than n
//! ```
//!
//! The `0x00`/`0x01` prefixes keep a leaf from ever being read as an inner node (a second
//! preimage would otherwise let a log present two different trees with one root).
//!
//! # Proofs
//!
//! * An **inclusion proof** (§2.1.3) for leaf `index` in a tree of `size` leaves is the list of
//!   sibling subtree hashes from the leaf up to the root. [`verify_inclusion`] follows the
//!   verification algorithm of §2.1.3.2.
//! * A **consistency proof** (§2.1.4) from `old` to `new` leaves shows that the first `old`
//!   leaves of the newer tree are the older tree: the newer one only appended. This is what a
//!   witness checks before cosigning a checkpoint. [`verify_consistency`] follows §2.1.4.2.
//!
//! Which subtrees a proof consists of depends only on the positions ([`inclusion_ranges`],
//! [`consistency_ranges`]), never on the data, so a store can fetch exactly those. Proofs
//! are generated from anything that can give the hash of a *perfect* subtree (`2^level`
//! leaves starting at a multiple of `2^level`): the [`Subtrees`] trait. [`MemoryTree`] keeps
//! every such node in memory; a plain slice of leaf hashes works too (slower, for tests and
//! small trees).
//!
//! Verification never panics: a wrong size, an index past the end or a proof of the wrong
//! length is a [`VerifyError`], decided before any hashing.

use sha2::{Digest, Sha256};

/// A SHA-256 tree hash: a leaf hash, an inner node or a root.
pub type Hash = [u8; 32];

/// The root of the empty tree, `SHA-256()` (RFC 9162 §2.1.1).
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// The hash of one log entry: `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(data);
    hasher.finalize().into()
}

/// The hash of an inner node: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The tree hash of a list of leaf hashes, straight from the definition (`MTH`).
pub fn root_of(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => EMPTY_ROOT,
        [only] => *only,
        _ => {
            let (left, right) = leaves.split_at(split_point(leaves.len() as u64) as usize);
            node_hash(&root_of(left), &root_of(right))
        }
    }
}

/// Sizes or positions for which no proof exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PositionError {
    /// The leaf index is not inside the tree.
    #[error("leaf index {index} is not below the tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    /// A consistency proof from a larger tree to a smaller one.
    #[error("tree size went down from {old} to {new}")]
    SizeDecreased { old: u64, new: u64 },
    /// A consistency proof from the empty tree: there is nothing to prove, and RFC 9162
    /// defines none. A witness accepts a first checkpoint without one.
    #[error("no consistency proof exists from the empty tree")]
    OldTreeEmpty,
}

/// Why a proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Position(#[from] PositionError),
    /// The proof has a different number of hashes than these sizes and positions need.
    #[error("proof has {got} hashes where {expected} are needed")]
    WrongProofLength { expected: usize, got: usize },
    /// The proof does not lead to the given root (or roots).
    #[error("proof does not match the root hash")]
    RootMismatch,
}

/// Why a proof could not be generated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProveError<E> {
    #[error(transparent)]
    Position(#[from] PositionError),
    /// The store could not give a subtree hash.
    #[error("subtree store: {0}")]
    Store(E),
}

/// A subtree the store does not have (it holds fewer leaves than asked for).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no subtree at level {level}, index {index}")]
pub struct MissingSubtree {
    pub level: u32,
    pub index: u64,
}

/// Anything that can give the hash of a perfect subtree of the log: the `2^level` leaves
/// starting at leaf `index · 2^level`. Level 0 is the leaf hashes themselves.
///
/// Proof generation only asks for subtrees inside the tree size it was given.
pub trait Subtrees {
    type Error;

    fn perfect_subtree(&self, level: u32, index: u64) -> Result<Hash, Self::Error>;
}

/// A slice of leaf hashes, hashing each requested subtree from its leaves (`O(2^level)`).
impl Subtrees for [Hash] {
    type Error = MissingSubtree;

    fn perfect_subtree(&self, level: u32, index: u64) -> Result<Hash, MissingSubtree> {
        let missing = MissingSubtree { level, index };
        let width = 1u64.checked_shl(level).ok_or(missing)?;
        let start = index.checked_mul(width).ok_or(missing)?;
        let end = start.checked_add(width).ok_or(missing)?;
        let start = usize::try_from(start).map_err(|_| missing)?;
        let end = usize::try_from(end).map_err(|_| missing)?;
        self.get(start..end).map(root_of).ok_or(missing)
    }
}

/// A whole tree in memory: every perfect subtree hash, level by level (`2n` hashes for `n`
/// leaves), so every proof and every earlier root is a few lookups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryTree {
    /// `levels[h][i]` is the perfect subtree of height `h` starting at leaf `i · 2^h`.
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a leaf by its leaf hash (see [`leaf_hash`]) and completes every subtree it
    /// closes.
    pub fn push(&mut self, leaf: Hash) {
        let mut node = leaf;
        let mut level = 0;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let row = &mut self.levels[level];
            row.push(node);
            // A row of even length has just closed a pair: its parent is complete.
            if row.len() % 2 == 1 {
                return;
            }
            let (left, right) = (row[row.len() - 2], row[row.len() - 1]);
            node = node_hash(&left, &right);
            level += 1;
        }
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |leaves| leaves.len() as u64)
    }

    /// The root hash at `size` leaves (any earlier size, or the current one).
    pub fn root_at(&self, size: u64) -> Result<Hash, MissingSubtree> {
        tree_hash(self, size)
    }
}

impl Subtrees for MemoryTree {
    type Error = MissingSubtree;

    fn perfect_subtree(&self, level: u32, index: u64) -> Result<Hash, MissingSubtree> {
        let missing = MissingSubtree { level, index };
        let row = self.levels.get(level as usize).ok_or(missing)?;
        let index = usize::try_from(index).map_err(|_| missing)?;
        row.get(index).copied().ok_or(missing)
    }
}

/// The tree hash of the first `size` leaves of `store`.
pub fn tree_hash<S: Subtrees + ?Sized>(store: &S, size: u64) -> Result<Hash, S::Error> {
    if size == 0 {
        return Ok(EMPTY_ROOT);
    }
    range_hash(store, 0, size)
}

/// The subtrees an inclusion proof for leaf `index` in a tree of `size` leaves consists
/// of, as leaf ranges `[start, end)`, in proof order (from the leaf up). RFC 9162 §2.1.3.1.
pub fn inclusion_ranges(index: u64, size: u64) -> Result<Vec<(u64, u64)>, PositionError> {
    if index >= size {
        return Err(PositionError::IndexOutOfRange { index, size });
    }
    let (mut start, mut end) = (0, size);
    let mut ranges = Vec::new();
    while end - start > 1 {
        let mid = start + split_point(end - start);
        if index < mid {
            ranges.push((mid, end));
            end = mid;
        } else {
            ranges.push((start, mid));
            start = mid;
        }
    }
    ranges.reverse();
    Ok(ranges)
}

/// The subtrees a consistency proof from `old` to `new` leaves consists of, as leaf ranges
/// `[start, end)`, in proof order. RFC 9162 §2.1.4.1 (`SUBPROOF`); empty when the sizes are
/// equal.
pub fn consistency_ranges(old: u64, new: u64) -> Result<Vec<(u64, u64)>, PositionError> {
    if old > new {
        return Err(PositionError::SizeDecreased { old, new });
    }
    if old == 0 {
        return Err(PositionError::OldTreeEmpty);
    }
    let (mut start, mut end) = (0, new);
    // `b` of SUBPROOF: true while the old tree is a left edge subtree the verifier already
    // knows the hash of (its root), so it need not be sent.
    let mut known = true;
    let mut ranges = Vec::new();
    while old != end {
        let mid = start + split_point(end - start);
        if old <= mid {
            ranges.push((mid, end));
            end = mid;
        } else {
            ranges.push((start, mid));
            start = mid;
            known = false;
        }
    }
    if !known {
        ranges.push((start, end));
    }
    ranges.reverse();
    Ok(ranges)
}

/// The inclusion proof for leaf `index` in the tree of the first `size` leaves of `store`.
pub fn inclusion_proof<S: Subtrees + ?Sized>(
    store: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ProveError<S::Error>> {
    let ranges = inclusion_ranges(index, size)?;
    hash_ranges(store, &ranges)
}

/// The consistency proof from the first `old` to the first `new` leaves of `store`.
pub fn consistency_proof<S: Subtrees + ?Sized>(
    store: &S,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, ProveError<S::Error>> {
    let ranges = consistency_ranges(old, new)?;
    hash_ranges(store, &ranges)
}

/// Checks that `leaf` (a leaf hash) is leaf `index` of the tree of `size` leaves with root
/// `root`. RFC 9162 §2.1.3.2.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), VerifyError> {
    let expected = inclusion_ranges(index, size)?.len();
    if proof.len() != expected {
        return Err(VerifyError::WrongProofLength {
            expected,
            got: proof.len(),
        });
    }
    let mut walk = Walk {
        node: index,
        last: size - 1,
    };
    let mut r = *leaf;
    for p in proof {
        match walk.next() {
            None => {
                return Err(VerifyError::WrongProofLength {
                    expected,
                    got: proof.len(),
                })
            }
            Some(Sibling::Left) => r = node_hash(p, &r),
            Some(Sibling::Right) => r = node_hash(&r, p),
        }
    }
    if walk.last == 0 && r == *root {
        Ok(())
    } else {
        Err(VerifyError::RootMismatch)
    }
}

/// Checks that the tree of `new` leaves with root `new_root` extends the tree of `old`
/// leaves with root `old_root`. Equal sizes need an empty proof and equal roots.
/// RFC 9162 §2.1.4.2.
pub fn verify_consistency(
    old: u64,
    new: u64,
    proof: &[Hash],
    old_root: &Hash,
    new_root: &Hash,
) -> Result<(), VerifyError> {
    let expected = consistency_ranges(old, new)?.len();
    if proof.len() != expected {
        return Err(VerifyError::WrongProofLength {
            expected,
            got: proof.len(),
        });
    }
    if old == new {
        return if old_root == new_root {
            Ok(())
        } else {
            Err(VerifyError::RootMismatch)
        };
    }
    // When the old tree is a perfect left subtree its root is the first proof element, and
    // the proof leaves it out (the verifier has it).
    let mut path: Vec<&Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(old_root);
    }
    path.extend(proof);
    let Some((first, rest)) = path.split_first() else {
        return Err(VerifyError::WrongProofLength {
            expected,
            got: proof.len(),
        });
    };
    let mut walk = Walk {
        node: old - 1,
        last: new - 1,
    };
    while walk.node & 1 == 1 {
        walk.shift();
    }
    let (mut fr, mut sr) = (**first, **first);
    for c in rest {
        match walk.next() {
            None => {
                return Err(VerifyError::WrongProofLength {
                    expected,
                    got: proof.len(),
                })
            }
            Some(Sibling::Left) => {
                fr = node_hash(c, &fr);
                sr = node_hash(c, &sr);
            }
            Some(Sibling::Right) => sr = node_hash(&sr, c),
        }
    }
    if walk.last == 0 && fr == *old_root && sr == *new_root {
        Ok(())
    } else {
        Err(VerifyError::RootMismatch)
    }
}

/// Which side of the running hash the next proof hash goes.
enum Sibling {
    Left,
    Right,
}

/// The `fn` / `sn` walk of RFC 9162's verification algorithms: `node` is the running
/// hash's position at the current level, `last` the position of the tree's last node there.
struct Walk {
    node: u64,
    last: u64,
}

impl Walk {
    fn shift(&mut self) {
        self.node >>= 1;
        self.last >>= 1;
    }

    /// Where the next proof hash goes, or `None` if the walk is already at the root (the
    /// proof is too long).
    fn next(&mut self) -> Option<Sibling> {
        if self.last == 0 {
            return None;
        }
        let side = if self.node & 1 == 1 || self.node == self.last {
            // A right child, or the last node of its level: climb past the levels where it
            // has no right sibling (the tree's ragged right edge).
            while self.node & 1 == 0 && self.node != 0 {
                self.shift();
            }
            Sibling::Left
        } else {
            Sibling::Right
        };
        self.shift();
        Some(side)
    }
}

/// The largest power of two smaller than `n` (`n ≥ 2`): where `MTH` splits `n` leaves.
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// The hash of leaves `[start, end)` (non-empty) of a subtree on the tree's right edge or
/// a perfect one — the only shapes proofs use. `start` is a multiple of the largest power
/// of two below `end - start`, so the left part of every split is a perfect subtree.
fn range_hash<S: Subtrees + ?Sized>(store: &S, start: u64, end: u64) -> Result<Hash, S::Error> {
    let len = end - start;
    if len.is_power_of_two() {
        let level = len.trailing_zeros();
        return store.perfect_subtree(level, start >> level);
    }
    let mid = start + split_point(len);
    Ok(node_hash(
        &range_hash(store, start, mid)?,
        &range_hash(store, mid, end)?,
    ))
}

fn hash_ranges<S: Subtrees + ?Sized>(
    store: &S,
    ranges: &[(u64, u64)],
) -> Result<Vec<Hash>, ProveError<S::Error>> {
    ranges
        .iter()
        .map(|&(start, end)| range_hash(store, start, end).map_err(ProveError::Store))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use base64::{engine::general_purpose::STANDARD, Engine as _};
    use proptest::prelude::*;

    fn h(hex_text: &str) -> Hash {
        hex::decode(hex_text).unwrap().try_into().unwrap()
    }

    #[test]
    fn hashes_match_rfc6962_vectors() {
        // From transparency-dev/merkle rfc6962_test.go (each is a plain sha256sum).
        assert_eq!(
            EMPTY_ROOT,
            h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        assert_eq!(EMPTY_ROOT, <[u8; 32]>::from(Sha256::digest([])));
        assert_eq!(
            leaf_hash(b""),
            h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
        );
        assert_eq!(
            leaf_hash(b"L123456"),
            h("395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56")
        );
        // The node prefix: a node over two leaves differs from the leaf of their
        // concatenation, and from the node with the children swapped.
        let (a, b) = (leaf_hash(b"Hello"), leaf_hash(b"World"));
        assert_ne!(node_hash(&a, &b), leaf_hash(&[a, b].concat()));
        assert_ne!(node_hash(&a, &b), node_hash(&b, &a));
        let mut preimage = vec![0x01];
        preimage.extend(a);
        preimage.extend(b);
        assert_eq!(
            node_hash(&a, &b),
            <[u8; 32]>::from(Sha256::digest(&preimage))
        );
    }

    /// The eight leaves of the Certificate Transparency reference tests and the roots of
    /// their prefixes (google/certificate-transparency merkle_tree_test, also in
    /// transparency-dev/merkle cmd/proofgen).
    const LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    const ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn reference_tree() -> (Vec<Hash>, MemoryTree) {
        let leaves: Vec<Hash> = LEAVES
            .iter()
            .map(|l| leaf_hash(&hex::decode(l).unwrap()))
            .collect();
        let mut tree = MemoryTree::new();
        for leaf in &leaves {
            tree.push(*leaf);
        }
        (leaves, tree)
    }

    #[test]
    fn roots_match_the_reference_tree() {
        let (leaves, tree) = reference_tree();
        assert_eq!(tree.size(), 8);
        assert_eq!(tree.root_at(0).unwrap(), EMPTY_ROOT);
        for (size, root) in (1..=8).zip(ROOTS) {
            assert_eq!(root_of(&leaves[..size]), h(root), "size {size}");
            assert_eq!(tree.root_at(size as u64).unwrap(), h(root), "size {size}");
            assert_eq!(tree_hash(&leaves[..], size as u64).unwrap(), h(root));
        }
        assert_eq!(tree.root_at(9), Err(MissingSubtree { level: 0, index: 8 }));
    }

    #[test]
    fn proofs_match_the_reference_proofs() {
        // Leaf 0's inclusion proof in 8 leaves is also the consistency proof from size 1.
        const LEAF_0_OF_8: &[&str] = &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ];
        let (leaves, tree) = reference_tree();
        // (1-based leaf, tree size, proof), from transparency-dev/merkle cmd/proofgen.
        let inclusion: [(u64, u64, &[&str]); 5] = [
            (1, 1, &[]),
            (1, 8, LEAF_0_OF_8),
            (
                6,
                8,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                3,
                3,
                &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
            ),
            (
                2,
                5,
                &[
                    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (leaf, size, want) in inclusion {
            let want: Vec<Hash> = want.iter().map(|x| h(x)).collect();
            let index = leaf - 1;
            assert_eq!(inclusion_proof(&tree, index, size).unwrap(), want);
            assert_eq!(inclusion_proof(&leaves[..], index, size).unwrap(), want);
            let root = h(ROOTS[size as usize - 1]);
            verify_inclusion(index, size, &leaves[index as usize], &want, &root).unwrap();
        }
        let consistency: [(u64, u64, &[&str]); 5] = [
            (1, 1, &[]),
            (1, 8, LEAF_0_OF_8),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
            (
                6,
                7,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
        ];
        for (old, new, want) in consistency {
            let want: Vec<Hash> = want.iter().map(|x| h(x)).collect();
            assert_eq!(consistency_proof(&tree, old, new).unwrap(), want);
            assert_eq!(consistency_proof(&leaves[..], old, new).unwrap(), want);
            let (old_root, new_root) = (h(ROOTS[old as usize - 1]), h(ROOTS[new as usize - 1]));
            verify_consistency(old, new, &want, &old_root, &new_root).unwrap();
        }
    }

    /// Every probe of transparency-dev/merkle's testdata (copied into
    /// `testdata/tlog_merkle_vectors.json`): happy paths verify, and every corruption —
    /// wrong index or size, garbage before or after, a flipped bit, a truncated proof,
    /// swapped roots — is rejected. A field that is not a 32-byte hash cannot even be
    /// decoded into our types, which counts as a rejection.
    #[test]
    fn reference_probes() {
        const VECTORS: &str = include_str!("../testdata/tlog_merkle_vectors.json");
        let vectors: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
        let hash = |value: &serde_json::Value| -> Option<Hash> {
            STANDARD.decode(value.as_str()?).ok()?.try_into().ok()
        };
        let proof = |value: &serde_json::Value| -> Option<Vec<Hash>> {
            match value {
                serde_json::Value::Null => Some(Vec::new()),
                other => other.as_array()?.iter().map(hash).collect(),
            }
        };
        let mut counts = [0usize; 2];
        for probe in vectors["inclusion"].as_array().unwrap() {
            let want_error = probe["wantErr"].as_bool().unwrap();
            let ok = (|| {
                let index = probe["leafIdx"].as_u64()?;
                let size = probe["treeSize"].as_u64()?;
                let (leaf, root) = (hash(&probe["leafHash"])?, hash(&probe["root"])?);
                verify_inclusion(index, size, &leaf, &proof(&probe["proof"])?, &root).ok()
            })()
            .is_some();
            assert_eq!(ok, !want_error, "{}", probe["file"]);
            counts[0] += 1;
        }
        for probe in vectors["consistency"].as_array().unwrap() {
            let want_error = probe["wantErr"].as_bool().unwrap();
            let ok = (|| {
                let old = probe["size1"].as_u64()?;
                let new = probe["size2"].as_u64()?;
                let (old_root, new_root) = (hash(&probe["root1"])?, hash(&probe["root2"])?);
                verify_consistency(old, new, &proof(&probe["proof"])?, &old_root, &new_root).ok()
            })()
            .is_some();
            if probe["file"] == "consistency/additional/sizes-are-equal-one-and-proof-is-empty.json"
            {
                // Its roots are the 10 bytes "don't care", which are no hash: equal sizes
                // with equal 32-byte roots and an empty proof are what it means to accept.
                assert!(!want_error && !ok);
                let root = leaf_hash(b"don't care");
                assert_eq!(verify_consistency(1, 1, &[], &root, &root), Ok(()));
            } else {
                assert_eq!(ok, !want_error, "{}", probe["file"]);
            }
            counts[1] += 1;
        }
        assert_eq!(counts, [98, 98]);
    }

    #[test]
    fn impossible_positions_are_typed_errors() {
        let (leaves, tree) = reference_tree();
        let root = tree.root_at(8).unwrap();
        assert_eq!(
            verify_inclusion(0, 0, &leaves[0], &[], &EMPTY_ROOT),
            Err(PositionError::IndexOutOfRange { index: 0, size: 0 }.into())
        );
        assert_eq!(
            verify_inclusion(8, 8, &leaves[0], &[], &root),
            Err(PositionError::IndexOutOfRange { index: 8, size: 8 }.into())
        );
        assert_eq!(
            verify_inclusion(u64::MAX - 1, u64::MAX, &leaves[0], &[], &root),
            Err(VerifyError::WrongProofLength {
                expected: 63,
                got: 0
            })
        );
        assert_eq!(
            verify_inclusion(0, 8, &leaves[0], &[root; 2], &root),
            Err(VerifyError::WrongProofLength {
                expected: 3,
                got: 2
            })
        );
        assert_eq!(
            verify_consistency(0, 8, &[], &EMPTY_ROOT, &root),
            Err(PositionError::OldTreeEmpty.into())
        );
        assert_eq!(
            verify_consistency(9, 8, &[], &root, &root),
            Err(PositionError::SizeDecreased { old: 9, new: 8 }.into())
        );
        assert_eq!(
            verify_consistency(8, 8, &[root], &root, &root),
            Err(VerifyError::WrongProofLength {
                expected: 0,
                got: 1
            })
        );
        assert_eq!(
            verify_consistency(8, 8, &[], &root, &EMPTY_ROOT),
            Err(VerifyError::RootMismatch)
        );
        assert_eq!(
            inclusion_proof(&tree, 3, 9),
            Err(ProveError::Store(MissingSubtree { level: 0, index: 8 }))
        );
        assert_eq!(
            inclusion_proof(&tree, 9, 9),
            Err(PositionError::IndexOutOfRange { index: 9, size: 9 }.into())
        );
        assert_eq!(
            consistency_proof(&tree, 0, 3),
            Err(PositionError::OldTreeEmpty.into())
        );
        assert_eq!(
            consistency_proof(&tree, 4, 3),
            Err(PositionError::SizeDecreased { old: 4, new: 3 }.into())
        );
        // Huge sizes are positions like any other: no overflow, no allocation beyond 64.
        assert_eq!(inclusion_ranges(u64::MAX - 1, u64::MAX).unwrap().len(), 63);
        assert_eq!(consistency_ranges(1, u64::MAX).unwrap().len(), 64);
    }

    fn flip(hash: &Hash, bit: usize) -> Hash {
        let mut out = *hash;
        out[bit / 8 % 32] ^= 1 << (bit % 8);
        out
    }

    fn tree_of(leaves: &[Hash]) -> MemoryTree {
        let mut tree = MemoryTree::new();
        for leaf in leaves {
            tree.push(*leaf);
        }
        tree
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Every leaf of every tree up to 64 leaves has an inclusion proof that verifies,
        /// the same from the in-memory tree and from the plain leaf list, and one flipped
        /// bit anywhere (proof, leaf, root) or a wrong index makes it fail.
        #[test]
        fn every_inclusion_proof_verifies(
            leaves in proptest::collection::vec(any::<[u8; 32]>(), 1..=64),
            bit in 0usize..256,
        ) {
            let tree = tree_of(&leaves);
            let size = leaves.len() as u64;
            let root = root_of(&leaves);
            prop_assert_eq!(tree.root_at(size).unwrap(), root);
            for index in 0..size {
                let leaf = leaves[index as usize];
                let proof = inclusion_proof(&tree, index, size).unwrap();
                prop_assert_eq!(&proof, &inclusion_proof(&leaves[..], index, size).unwrap());
                prop_assert_eq!(verify_inclusion(index, size, &leaf, &proof, &root), Ok(()));
                prop_assert!(verify_inclusion(index, size, &flip(&leaf, bit), &proof, &root).is_err());
                prop_assert!(verify_inclusion(index, size, &leaf, &proof, &flip(&root, bit)).is_err());
                for i in 0..proof.len() {
                    let mut bad = proof.clone();
                    bad[i] = flip(&bad[i], bit);
                    prop_assert!(verify_inclusion(index, size, &leaf, &bad, &root).is_err());
                }
                let other = (index + 1) % size;
                if other != index && leaves[other as usize] != leaf {
                    prop_assert!(verify_inclusion(other, size, &leaf, &proof, &root).is_err());
                }
            }
        }

        /// Every consistency proof between sizes `1 ≤ m ≤ n ≤ 64` verifies, and a flipped
        /// bit in the proof or in either root makes it fail.
        #[test]
        fn every_consistency_proof_verifies(
            leaves in proptest::collection::vec(any::<[u8; 32]>(), 1..=64),
            bit in 0usize..256,
        ) {
            let tree = tree_of(&leaves);
            let size = leaves.len() as u64;
            for new in 1..=size {
                let new_root = root_of(&leaves[..new as usize]);
                for old in 1..=new {
                    let old_root = root_of(&leaves[..old as usize]);
                    let proof = consistency_proof(&tree, old, new).unwrap();
                    prop_assert_eq!(verify_consistency(old, new, &proof, &old_root, &new_root), Ok(()));
                    prop_assert!(verify_consistency(old, new, &proof, &flip(&old_root, bit), &new_root).is_err());
                    prop_assert!(verify_consistency(old, new, &proof, &old_root, &flip(&new_root, bit)).is_err());
                    for i in 0..proof.len() {
                        let mut bad = proof.clone();
                        bad[i] = flip(&bad[i], bit);
                        prop_assert!(verify_consistency(old, new, &bad, &old_root, &new_root).is_err());
                    }
                }
            }
        }

        /// Verification is total: any sizes, indexes and proof lengths give an answer,
        /// never a panic, and random bytes never verify.
        #[test]
        fn verification_never_panics(
            index in any::<u64>(),
            size in prop_oneof![0u64..70, any::<u64>()],
            proof in proptest::collection::vec(any::<[u8; 32]>(), 0..70),
            leaf in any::<[u8; 32]>(),
            root in any::<[u8; 32]>(),
        ) {
            prop_assert!(verify_inclusion(index, size, &leaf, &proof, &root).is_err());
            prop_assert!(verify_consistency(index, size, &proof, &leaf, &root).is_err()
                || (index == size && leaf == root && proof.is_empty()));
        }
    }
}

//! Log checkpoints (C2SP `tlog-checkpoint`, <https://c2sp.org/tlog-checkpoint>): the signed
//! statement "my tree of `size` leaves has root `root`", as the text of a signed note.
//!
//! # Text (tlog-checkpoint §Note text)
//!
//! ```text
//! <origin: the log's unique name, e.g. example.com/log42>
//! <tree size in decimal, no leading zeroes>
//! <base64 of the 32-byte RFC 6962 root hash>
//! [<extension line>…]   (opaque, non-empty; not auditable, so best left out)
//! ```
//!
//! Every line ends in a newline. Parsing is strict — a second spelling of the same tree
//! head (a leading zero, non-canonical base64, an empty extension line) is an error — so two
//! checkpoints of one log are the same statement exactly when their texts are equal, which
//! is what split-view detection compares.
//!
//! The log signs the text as a note with its [`NoteSigner`]; its key name should be the
//! origin (§Signatures). [`Checkpoint::open`] verifies that signature and parses the text.
//! Between two checkpoints of a log, [`Checkpoint::verify_extended_by`] checks the
//! consistency proof a witness asks for (`tlog-witness`'s `add-checkpoint`), and
//! [`Checkpoint::conflicts_with`] spots a split view: one size, two roots.

use base64::{engine::general_purpose::STANDARD, Engine as _};

use super::merkle::{self, Hash, VerifyError, EMPTY_ROOT};
use super::note::{Note, NoteError, NoteSigner, VerifierKey};

/// Why a checkpoint text or signed checkpoint is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// Not the line structure of a checkpoint; the text says what is missing.
    #[error("malformed checkpoint: {0}")]
    Malformed(&'static str),
    /// An origin that is empty or holds a control character.
    #[error("invalid origin line")]
    InvalidOrigin,
    /// A tree size that is not a decimal `u64` without leading zeroes.
    #[error("invalid tree size line")]
    InvalidSize,
    /// A root hash that is not the canonical base64 of 32 bytes.
    #[error("invalid root hash line")]
    InvalidRoot,
    /// An extension line that is empty or holds a control character.
    #[error("invalid extension line")]
    InvalidExtension,
    /// Two checkpoints compared that are of different logs.
    #[error("checkpoints of different logs: {0:?} and {1:?}")]
    DifferentLogs(String, String),
    /// A proof against this checkpoint that does not verify.
    #[error(transparent)]
    Proof(#[from] VerifyError),
    /// A checkpoint of another log than the one expected.
    #[error("checkpoint is for origin {got:?}, expected {expected:?}")]
    OriginMismatch { expected: String, got: String },
    /// The note around the checkpoint is malformed or not signed by the log.
    #[error(transparent)]
    Note(#[from] NoteError),
}

/// A tree head of a log: origin, size, root and (rarely) extension lines.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Checkpoint {
    origin: String,
    size: u64,
    root: Hash,
    extensions: Vec<String>,
}

impl Checkpoint {
    pub fn new(origin: &str, size: u64, root: Hash) -> Result<Self, CheckpointError> {
        if !is_valid_line(origin) {
            return Err(CheckpointError::InvalidOrigin);
        }
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
            extensions: Vec::new(),
        })
    }

    /// Appends an extension line.
    pub fn with_extension(mut self, line: &str) -> Result<Self, CheckpointError> {
        if !is_valid_line(line) {
            return Err(CheckpointError::InvalidExtension);
        }
        self.extensions.push(line.to_owned());
        Ok(self)
    }

    /// Parses a checkpoint text (the note text, final newline included).
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let body = text
            .strip_suffix('\n')
            .ok_or(CheckpointError::Malformed("text does not end in a newline"))?;
        let mut lines = body.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(CheckpointError::Malformed("fewer than three lines"));
        };
        let mut checkpoint = Self::new(origin, parse_size(size)?, parse_root(root)?)?;
        for line in lines {
            checkpoint = checkpoint.with_extension(line)?;
        }
        Ok(checkpoint)
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn root(&self) -> &Hash {
        &self.root
    }

    pub fn extensions(&self) -> &[String] {
        &self.extensions
    }

    /// The checkpoint text: the note text the log signs and witnesses cosign.
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        );
        for line in &self.extensions {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    /// The checkpoint as a note signed by the log.
    pub fn sign(&self, log: &NoteSigner) -> Result<Note, CheckpointError> {
        let mut note = Note::new(self.to_text())?;
        note.add_signature(log.sign(&note))?;
        Ok(note)
    }

    /// Verifies a signed checkpoint of the log `origin` with the log's key, and parses it.
    /// Other signatures (cosignatures) are left in the returned note, unverified: check
    /// them with [`Note::verify_known`] and the witnesses' keys.
    pub fn open(
        signed: &[u8],
        origin: &str,
        log_key: &VerifierKey,
    ) -> Result<(Self, Note), CheckpointError> {
        let note = Note::parse(signed)?;
        note.verify(std::slice::from_ref(log_key))?;
        let checkpoint = Self::parse(note.text())?;
        if checkpoint.origin != origin {
            return Err(CheckpointError::OriginMismatch {
                expected: origin.to_owned(),
                got: checkpoint.origin,
            });
        }
        Ok((checkpoint, note))
    }
}

impl Checkpoint {
    /// Checks that `newer` extends this checkpoint (same log, `proof` a consistency proof
    /// from this size to its size) — what a witness checks before cosigning `newer`.
    /// From size 0 there is nothing to prove: the proof must be empty, and this root the
    /// empty tree's (tlog-witness treats a first checkpoint so).
    pub fn verify_extended_by(
        &self,
        newer: &Checkpoint,
        proof: &[Hash],
    ) -> Result<(), CheckpointError> {
        if self.origin != newer.origin {
            return Err(CheckpointError::DifferentLogs(
                self.origin.clone(),
                newer.origin.clone(),
            ));
        }
        if self.size == 0 {
            if !proof.is_empty() {
                return Err(VerifyError::WrongProofLength {
                    expected: 0,
                    got: proof.len(),
                }
                .into());
            }
            return if self.root == EMPTY_ROOT {
                Ok(())
            } else {
                Err(VerifyError::RootMismatch.into())
            };
        }
        merkle::verify_consistency(self.size, newer.size, proof, &self.root, &newer.root)?;
        Ok(())
    }

    /// Checks that `leaf` (a leaf hash) is entry `index` of the tree this checkpoint names.
    pub fn verify_inclusion(
        &self,
        index: u64,
        leaf: &Hash,
        proof: &[Hash],
    ) -> Result<(), CheckpointError> {
        merkle::verify_inclusion(index, self.size, leaf, proof, &self.root)?;
        Ok(())
    }

    /// Whether the two are evidence of a split view: one log, one size, two roots. (Both
    /// must have been opened with the log's key for that to mean the log signed both.)
    /// Extension lines are not part of the comparison: a cosigner vouches only for the
    /// first three lines (tlog-cosignature §Ed25519 signed message).
    pub fn conflicts_with(&self, other: &Checkpoint) -> bool {
        self.origin == other.origin && self.size == other.size && self.root != other.root
    }
}

/// A non-empty line without control characters (so without newlines).
fn is_valid_line(line: &str) -> bool {
    !line.is_empty() && !line.chars().any(char::is_control)
}

fn parse_size(line: &str) -> Result<u64, CheckpointError> {
    let canonical = line == "0"
        || (!line.starts_with('0') && !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit()));
    if !canonical {
        return Err(CheckpointError::InvalidSize);
    }
    line.parse().map_err(|_| CheckpointError::InvalidSize)
}

fn parse_root(line: &str) -> Result<Hash, CheckpointError> {
    let bytes = STANDARD
        .decode(line)
        .map_err(|_| CheckpointError::InvalidRoot)?;
    let root: Hash = bytes.try_into().map_err(|_| CheckpointError::InvalidRoot)?;
    // One spelling per root: the decoder already rejects stray bits and odd padding, and
    // this makes that a stated property.
    if STANDARD.encode(root) != line {
        return Err(CheckpointError::InvalidRoot);
    }
    Ok(root)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::tlog::merkle::{leaf_hash, root_of};
    use proptest::prelude::*;

    /// A real `sum.golang.org` checkpoint and the log's published key, as kept in
    /// transparency-dev/formats log/note_test.go.
    const SUMDB_KEY: &str = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8";
    const SUMDB_CHECKPOINT: &str = "go.sum database tree\n6476701\nmb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=\n\n— sum.golang.org Az3grsLX85Gz+s1SiTbgkuqxgItqFq7gsMUEyVnrsa9LM7Us9S+1xbFIGu95949rj4nPRYfvimWEPWL+o3GeoWwOoAw=\n";

    #[test]
    fn opens_a_sum_golang_org_checkpoint() {
        let key = VerifierKey::parse(SUMDB_KEY).unwrap();
        let (checkpoint, note) =
            Checkpoint::open(SUMDB_CHECKPOINT.as_bytes(), "go.sum database tree", &key).unwrap();
        assert_eq!(checkpoint.origin(), "go.sum database tree");
        assert_eq!(checkpoint.size(), 6476701);
        assert_eq!(
            STANDARD.encode(checkpoint.root()),
            "mb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk="
        );
        assert!(checkpoint.extensions().is_empty());
        assert_eq!(checkpoint.to_text(), note.text());
        assert_eq!(note.render(), SUMDB_CHECKPOINT);
        assert_eq!(
            Checkpoint::open(
                SUMDB_CHECKPOINT.as_bytes(),
                "Go rocks but I might have the wrong ID",
                &key
            ),
            Err(CheckpointError::OriginMismatch {
                expected: "Go rocks but I might have the wrong ID".into(),
                got: "go.sum database tree".into()
            })
        );
        let tampered = SUMDB_CHECKPOINT.replace("6476701", "6476702");
        assert!(matches!(
            Checkpoint::open(tampered.as_bytes(), "go.sum database tree", &key),
            Err(CheckpointError::Note(NoteError::BadSignature { .. }))
        ));
    }

    #[test]
    fn parses_the_c2sp_example_text() {
        let text =
            "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let checkpoint = Checkpoint::parse(text).unwrap();
        assert_eq!(
            (checkpoint.origin(), checkpoint.size()),
            ("example.com/behind-the-sofa", 20852163)
        );
        assert_eq!(checkpoint.to_text(), text);
        let with_ext = format!("{text}ext one\nsecond: 2\n");
        let checkpoint = Checkpoint::parse(&with_ext).unwrap();
        assert_eq!(checkpoint.extensions(), ["ext one", "second: 2"]);
        assert_eq!(checkpoint.to_text(), with_ext);
    }

    #[test]
    fn only_the_canonical_spelling_parses() {
        let root = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=";
        let cases: &[(String, CheckpointError)] = &[
            (
                format!("o\n1\n{root}"),
                CheckpointError::Malformed("text does not end in a newline"),
            ),
            (
                "o\n1\n".into(),
                CheckpointError::Malformed("fewer than three lines"),
            ),
            (format!("\n1\n{root}\n"), CheckpointError::InvalidOrigin),
            (
                format!("o\x7f\n1\n{root}\n"),
                CheckpointError::InvalidOrigin,
            ),
            (format!("o\n01\n{root}\n"), CheckpointError::InvalidSize),
            (format!("o\n00\n{root}\n"), CheckpointError::InvalidSize),
            (format!("o\n\n{root}\n"), CheckpointError::InvalidSize),
            (format!("o\n+1\n{root}\n"), CheckpointError::InvalidSize),
            (format!("o\n1 \n{root}\n"), CheckpointError::InvalidSize),
            (
                format!("o\n18446744073709551616\n{root}\n"),
                CheckpointError::InvalidSize,
            ),
            (
                "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I\n".into(),
                CheckpointError::InvalidRoot,
            ),
            (
                "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2J=\n".into(),
                CheckpointError::InvalidRoot,
            ),
            (
                "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxqw==\n".into(),
                CheckpointError::InvalidRoot,
            ),
            (
                "o\n1\nCsUYapGGPo4dkMgIAUqom_Xajj7h2fB2MPA3j2jxq2I=\n".into(),
                CheckpointError::InvalidRoot,
            ),
            (
                format!("o\n1\n{root}\n\n"),
                CheckpointError::InvalidExtension,
            ),
            (
                format!("o\n1\n{root}\na\n\nb\n"),
                CheckpointError::InvalidExtension,
            ),
        ];
        for (text, error) in cases {
            assert_eq!(Checkpoint::parse(text).as_ref(), Err(error), "{text:?}");
        }
        assert_eq!(
            Checkpoint::parse(&format!("o\n0\n{root}\n"))
                .unwrap()
                .size(),
            0
        );
        assert_eq!(
            Checkpoint::parse(&format!("o\n18446744073709551615\n{root}\n"))
                .unwrap()
                .size(),
            u64::MAX
        );
        assert_eq!(
            Checkpoint::new("a\nb", 1, [0; 32]),
            Err(CheckpointError::InvalidOrigin)
        );
        assert_eq!(
            Checkpoint::new("o", 1, [0; 32]).unwrap().with_extension(""),
            Err(CheckpointError::InvalidExtension)
        );
    }

    #[test]
    fn a_log_signs_and_a_client_opens() {
        let log = NoteSigner::new("example.com/log", &[3; 32]).unwrap();
        let leaves: Vec<_> = (0u8..5).map(|i| leaf_hash(&[i])).collect();
        let checkpoint = Checkpoint::new("example.com/log", 5, root_of(&leaves)).unwrap();
        let signed = checkpoint.sign(&log).unwrap().render();
        let key = log.verifier_key();
        let (opened, note) = Checkpoint::open(signed.as_bytes(), "example.com/log", &key).unwrap();
        assert_eq!(opened, checkpoint);
        assert_eq!(note.signatures().len(), 1);
        // Another log's key does not open it.
        let other = NoteSigner::new("example.com/log", &[4; 32])
            .unwrap()
            .verifier_key();
        assert_eq!(
            Checkpoint::open(signed.as_bytes(), "example.com/log", &other),
            Err(CheckpointError::Note(NoteError::NoKnownSignature))
        );
    }

    #[test]
    fn checkpoints_prove_growth_and_show_split_views() {
        let leaves: Vec<_> = (0u8..9).map(|i| leaf_hash(&[i])).collect();
        let mut tree = merkle::MemoryTree::new();
        for leaf in &leaves {
            tree.push(*leaf);
        }
        let at =
            |size: usize| Checkpoint::new("log", size as u64, root_of(&leaves[..size])).unwrap();
        let (empty, old, new) = (at(0), at(3), at(9));
        let proof = merkle::consistency_proof(&tree, 3, 9).unwrap();
        assert_eq!(old.verify_extended_by(&new, &proof), Ok(()));
        assert_eq!(new.verify_extended_by(&new, &[]), Ok(()));
        assert_eq!(empty.verify_extended_by(&new, &[]), Ok(()));
        assert!(empty.verify_extended_by(&new, &proof).is_err());
        let fake_empty = Checkpoint::new("log", 0, [1; 32]).unwrap();
        assert_eq!(
            fake_empty.verify_extended_by(&new, &[]),
            Err(VerifyError::RootMismatch.into())
        );
        assert!(new.verify_extended_by(&old, &proof).is_err());
        let other_log = Checkpoint::new("other", 9, *new.root()).unwrap();
        assert_eq!(
            old.verify_extended_by(&other_log, &proof),
            Err(CheckpointError::DifferentLogs("log".into(), "other".into()))
        );
        let inclusion = merkle::inclusion_proof(&tree, 4, 9).unwrap();
        assert_eq!(new.verify_inclusion(4, &leaves[4], &inclusion), Ok(()));
        assert!(new.verify_inclusion(5, &leaves[4], &inclusion).is_err());
        assert!(new.verify_inclusion(9, &leaves[4], &inclusion).is_err());

        // A second root at one size is a split view; a different size, log or only an
        // extension line is not.
        let forked = Checkpoint::new("log", 9, [7; 32]).unwrap();
        assert!(new.conflicts_with(&forked) && forked.conflicts_with(&new));
        assert!(!new.conflicts_with(&new.clone().with_extension("e").unwrap()));
        assert!(!new.conflicts_with(&old) && !new.conflicts_with(&other_log));
        assert!(old.verify_extended_by(&forked, &proof).is_err());
    }

    proptest! {
        /// Any checkpoint reads back as itself, and its text is the only one that does.
        #[test]
        fn text_round_trips(
            origin in "[a-z0-9./-]{1,40}",
            size in any::<u64>(),
            root in any::<[u8; 32]>(),
            extensions in proptest::collection::vec("[ -~]{1,20}", 0..3),
        ) {
            let mut checkpoint = Checkpoint::new(&origin, size, root).unwrap();
            for line in &extensions {
                checkpoint = checkpoint.with_extension(line).unwrap();
            }
            let text = checkpoint.to_text();
            prop_assert_eq!(Checkpoint::parse(&text).unwrap(), checkpoint);
        }

        /// Parsing never panics on arbitrary text.
        #[test]
        fn parse_is_total(text in "\\PC{0,80}(\n\\PC{0,20}){0,5}") {
            if let Ok(checkpoint) = Checkpoint::parse(&text) {
                prop_assert_eq!(checkpoint.to_text(), text);
            }
        }
    }
}

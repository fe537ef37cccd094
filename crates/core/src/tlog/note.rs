//! Signed notes (C2SP `signed-note`, <https://c2sp.org/signed-note>): a text signed by one or
//! more keys, the envelope of checkpoints and of their cosignatures.
//!
//! # Format (signed-note §Format)
//!
//! ```text
//! <text, ending in a newline>
//! <blank line>
//! — <key name> <base64(key ID (4 bytes, big-endian) || signature)>
//! — <another key name> …
//! ```
//!
//! The text may hold blank lines itself: the *last* blank line separates it from the
//! signatures. A note is valid UTF-8 without control characters other than newline. Key
//! names are non-empty and hold neither Unicode spaces nor `+`.
//!
//! # Keys (signed-note §Signatures, §Verifier keys)
//!
//! A key is named, and its 4-byte ID is `SHA-256(name || 0x0A || type || public key)[:4]`, so
//! one Ed25519 key pair can serve two signature types under two IDs. Types used here:
//! `0x01`, Ed25519 over the text (a log signing its checkpoints), and `0x04`, the timestamped
//! cosignature of `c2sp.org/tlog-cosignature` ([`super::cosignature`]). A verifier key is
//! written `name+hex(key ID)+base64(type || public key)`, e.g.
//! `example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k`.
//!
//! # Verification
//!
//! Signatures from keys the verifier does not know are ignored (that is how witnesses add
//! cosignatures and logs rotate keys). A signature from a known key (same name *and* ID) is
//! verified, and one that fails rejects the whole note; a note without any good signature
//! from a known key is rejected. Ed25519 is checked with `verify_strict`, as everywhere in
//! smpx ([`crate::crypto::sign`]).
//!
//! Interoperability: the byte-for-byte golden vectors of Go's `golang.org/x/mod/sumdb/note`
//! and the C2SP example are the tests below.

use std::fmt;

use base64::{engine::general_purpose::STANDARD, Engine as _};
use ed25519_dalek::Signer as _;
use sha2::{Digest, Sha256};

use super::cosignature;

/// Most signature lines a note may carry; the spec asks for at least 16, Go accepts 100.
pub const MAX_SIGNATURES: usize = 100;

/// The signature types this module knows (signed-note §Signature types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// `0x01`: Ed25519 over the note text.
    Ed25519,
    /// `0x04`: a timestamped Ed25519 cosignature over a checkpoint (`tlog-cosignature`).
    Cosignature,
}

impl KeyType {
    pub fn byte(self) -> u8 {
        match self {
            KeyType::Ed25519 => 0x01,
            KeyType::Cosignature => 0x04,
        }
    }

    pub fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0x01 => Some(KeyType::Ed25519),
            0x04 => Some(KeyType::Cosignature),
            _ => None,
        }
    }
}

/// A key string that is not a valid verifier or signer key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not `name+hex8+base64` (or `PRIVATE+KEY+…`); the text says which part is wrong.
    #[error("malformed key: {0}")]
    Malformed(&'static str),
    /// A key name that is empty or holds a space, a `+` or a control character.
    #[error("invalid key name")]
    InvalidName,
    /// A signature type this implementation does not support.
    #[error("unsupported signature type 0x{0:02x}")]
    UnsupportedType(u8),
    /// The key ID written in the key is not the one computed from its name and key.
    #[error("key ID does not match the key")]
    KeyIdMismatch,
    /// 32 bytes that are not an Ed25519 public key.
    #[error("not an Ed25519 public key")]
    NotAPublicKey,
}

/// Why a note is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// The bytes are not a signed note (or a text cannot be one); the text says why.
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    #[error("note has more than {MAX_SIGNATURES} signatures")]
    TooManySignatures,
    /// Two known keys share a name and key ID, so a signature cannot be attributed.
    #[error("two known keys are named {name} with ID {key_id:08x}")]
    AmbiguousKey { name: String, key_id: u32 },
    /// A signature from a known key that does not verify: the whole note is rejected.
    #[error("invalid signature from {name}+{key_id:08x}")]
    BadSignature { name: String, key_id: u32 },
    /// No signature from any of the known keys.
    #[error("note has no signature from a known key")]
    NoKnownSignature,
}

/// `SHA-256(name || 0x0A || type || public key)[:4]` as a big-endian integer.
pub fn key_id(name: &str, key_type: KeyType, public: &[u8; 32]) -> u32 {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([b'\n', key_type.byte()]);
    hasher.update(public);
    let digest = hasher.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// A valid key name: non-empty, no Unicode white space, no `+`, no control character.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '+')
}

/// A public key that verifies note signatures: its name, type and Ed25519 key.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct VerifierKey {
    name: String,
    key_type: KeyType,
    public: [u8; 32],
    key_id: u32,
}

impl VerifierKey {
    pub fn new(name: &str, key_type: KeyType, public: [u8; 32]) -> Result<Self, KeyError> {
        if !is_valid_name(name) {
            return Err(KeyError::InvalidName);
        }
        ed25519_dalek::VerifyingKey::from_bytes(&public).map_err(|_| KeyError::NotAPublicKey)?;
        let key_id = key_id(name, key_type, &public);
        Ok(Self {
            name: name.to_owned(),
            key_type,
            public,
            key_id,
        })
    }

    /// The verifier key of a signing key under a name the caller has validated (a signing
    /// key's public half is always a curve point).
    pub(super) fn of_signing_key(
        name: &str,
        key_type: KeyType,
        key: &ed25519_dalek::SigningKey,
    ) -> Self {
        let public = key.verifying_key().to_bytes();
        let key_id = key_id(name, key_type, &public);
        Self {
            name: name.to_owned(),
            key_type,
            public,
            key_id,
        }
    }

    /// Parses `name+hex(key ID)+base64(type || public key)`, checking the key ID.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let (name, id, key_type, public) = split_key(text)?;
        let key = Self::new(name, key_type, public)?;
        if key.key_id != id {
            return Err(KeyError::KeyIdMismatch);
        }
        Ok(key)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    pub fn public(&self) -> &[u8; 32] {
        &self.public
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// Checks one signature (the bytes after the key ID) on `text`; for a cosignature key,
    /// returns its timestamp.
    fn check(&self, text: &str, signature: &[u8]) -> Result<Option<u64>, ()> {
        match self.key_type {
            KeyType::Ed25519 => {
                let signature: [u8; 64] = signature.try_into().map_err(|_| ())?;
                ed25519_verify(&self.public, text.as_bytes(), &signature).map(|()| None)
            }
            KeyType::Cosignature => cosignature::check(&self.public, text, signature).map(Some),
        }
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut material = vec![self.key_type.byte()];
        material.extend_from_slice(&self.public);
        write!(
            f,
            "{}+{:08x}+{}",
            self.name,
            self.key_id,
            STANDARD.encode(material)
        )
    }
}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifierKey({self})")
    }
}

/// `Ed25519::verify_strict`, the one Ed25519 check of this module.
pub(super) fn ed25519_verify(
    public: &[u8; 32],
    msg: &[u8],
    signature: &[u8; 64],
) -> Result<(), ()> {
    let key = ed25519_dalek::VerifyingKey::from_bytes(public).map_err(|_| ())?;
    key.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(signature))
        .map_err(|_| ())
}

/// Splits `name+hex8+base64(type || 32 bytes)` (the base64 may itself hold `+`).
fn split_key(text: &str) -> Result<(&str, u32, KeyType, [u8; 32]), KeyError> {
    let mut parts = text.splitn(3, '+');
    let (Some(name), Some(id), Some(material)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(KeyError::Malformed("expected name+keyid+key"));
    };
    if !is_valid_name(name) {
        return Err(KeyError::InvalidName);
    }
    if id.len() != 8 || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(KeyError::Malformed("key ID is not 8 lowercase hex digits"));
    }
    let id = u32::from_str_radix(id, 16).map_err(|_| KeyError::Malformed("key ID"))?;
    let material = STANDARD
        .decode(material)
        .map_err(|_| KeyError::Malformed("key is not base64"))?;
    let Some((&type_byte, key)) = material.split_first() else {
        return Err(KeyError::Malformed("empty key"));
    };
    let key_type = KeyType::from_byte(type_byte).ok_or(KeyError::UnsupportedType(type_byte))?;
    let key: [u8; 32] = key
        .try_into()
        .map_err(|_| KeyError::Malformed("key is not 32 bytes"))?;
    Ok((name, id, key_type, key))
}

/// A named Ed25519 key that signs note texts (type `0x01`): a log signing its checkpoints.
/// Debug output is redacted; the key is zeroized on drop.
#[derive(Clone)]
pub struct NoteSigner {
    name: String,
    key: ed25519_dalek::SigningKey,
}

impl NoteSigner {
    /// From a key name and the 32-byte RFC 8032 secret key (seed).
    pub fn new(name: &str, seed: &[u8; 32]) -> Result<Self, KeyError> {
        if !is_valid_name(name) {
            return Err(KeyError::InvalidName);
        }
        Ok(Self {
            name: name.to_owned(),
            key: ed25519_dalek::SigningKey::from_bytes(seed),
        })
    }

    /// Parses the Go `sumdb/note` private key form `PRIVATE+KEY+name+hex(key ID)+base64(0x01
    /// || seed)`, checking the key ID against the derived public key.
    pub fn parse_private(text: &str) -> Result<Self, KeyError> {
        let rest = text
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(KeyError::Malformed("expected PRIVATE+KEY+"))?;
        let (name, id, key_type, seed) = split_key(rest)?;
        if key_type != KeyType::Ed25519 {
            return Err(KeyError::UnsupportedType(key_type.byte()));
        }
        let signer = Self::new(name, &seed)?;
        if signer.verifier_key().key_id != id {
            return Err(KeyError::KeyIdMismatch);
        }
        Ok(signer)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn verifier_key(&self) -> VerifierKey {
        VerifierKey::of_signing_key(&self.name, KeyType::Ed25519, &self.key)
    }

    /// This key's signature line for `note`'s text (add it with [`Note::add_signature`]).
    pub fn sign(&self, note: &Note) -> SignatureLine {
        SignatureLine {
            name: self.name.clone(),
            key_id: self.verifier_key().key_id(),
            signature: self.key.sign(note.text.as_bytes()).to_bytes().to_vec(),
        }
    }
}

impl fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NoteSigner({}, <redacted>)", self.name)
    }
}

/// One signature line: who signed (name and key ID) and the signature bytes that follow the
/// key ID (64 for Ed25519, 72 for a cosignature).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SignatureLine {
    pub name: String,
    pub key_id: u32,
    pub signature: Vec<u8>,
}

impl SignatureLine {
    fn render(&self, out: &mut String) {
        let mut bytes = self.key_id.to_be_bytes().to_vec();
        bytes.extend_from_slice(&self.signature);
        out.push_str("— ");
        out.push_str(&self.name);
        out.push(' ');
        out.push_str(&STANDARD.encode(bytes));
        out.push('\n');
    }
}

/// A signature that verified, with the cosignature's timestamp for type `0x04` keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub name: String,
    pub key_id: u32,
    pub key_type: KeyType,
    pub timestamp: Option<u64>,
}

/// A note: its text and its signature lines, none of them verified yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    text: String,
    signatures: Vec<SignatureLine>,
}

impl Note {
    /// An unsigned note over `text`, which must end in a newline and hold no control
    /// characters other than newlines (so that it reads back the same).
    pub fn new(text: impl Into<String>) -> Result<Self, NoteError> {
        let text = text.into();
        if !text.ends_with('\n') {
            return Err(NoteError::Malformed("text does not end in a newline"));
        }
        check_characters(&text)?;
        Ok(Self {
            text,
            signatures: Vec::new(),
        })
    }

    /// Parses a signed note (at least one signature line), verifying nothing.
    pub fn parse(bytes: &[u8]) -> Result<Self, NoteError> {
        let all = std::str::from_utf8(bytes).map_err(|_| NoteError::Malformed("not UTF-8"))?;
        check_characters(all)?;
        let split = all
            .rfind("\n\n")
            .ok_or(NoteError::Malformed("no blank line before signatures"))?;
        let (text, signatures) = (&all[..split + 1], &all[split + 2..]);
        let Some(signatures) = signatures.strip_suffix('\n') else {
            return Err(NoteError::Malformed(
                "no signature lines, or no final newline",
            ));
        };
        let mut note = Self {
            text: text.to_owned(),
            signatures: Vec::new(),
        };
        for line in signatures.split('\n') {
            if note.signatures.len() == MAX_SIGNATURES {
                return Err(NoteError::TooManySignatures);
            }
            note.signatures.push(parse_line(line)?);
        }
        Ok(note)
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn signatures(&self) -> &[SignatureLine] {
        &self.signatures
    }

    /// Adds a signature line, replacing any earlier one with the same name and key ID (a
    /// fresh signature by the same key, as Go's `note.Sign` does).
    pub fn add_signature(&mut self, line: SignatureLine) -> Result<(), NoteError> {
        if !is_valid_name(&line.name) {
            return Err(NoteError::Malformed("invalid key name"));
        }
        self.signatures
            .retain(|old| (old.name.as_str(), old.key_id) != (line.name.as_str(), line.key_id));
        if self.signatures.len() == MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures);
        }
        self.signatures.push(line);
        Ok(())
    }

    /// The note's bytes: text, blank line, one line per signature.
    pub fn render(&self) -> String {
        let mut out = self.text.clone();
        out.push('\n');
        for line in &self.signatures {
            line.render(&mut out);
        }
        out
    }

    /// Verifies the note against `known` keys: every signature from a known key must
    /// verify, unknown ones are ignored, and at least one must be from a known key.
    /// Returns the verified signatures, one per key.
    pub fn verify(&self, known: &[VerifierKey]) -> Result<Vec<Verified>, NoteError> {
        let verified = self.verify_known(known)?;
        if verified.is_empty() {
            return Err(NoteError::NoKnownSignature);
        }
        Ok(verified)
    }

    /// Like [`Note::verify`] but accepts a note none of `known` signed (an empty list):
    /// for counting cosignatures towards a quorum, where the log's own signature is
    /// checked separately.
    pub fn verify_known(&self, known: &[VerifierKey]) -> Result<Vec<Verified>, NoteError> {
        let mut verified: Vec<Verified> = Vec::new();
        for line in &self.signatures {
            let mut matching = known
                .iter()
                .filter(|key| key.name == line.name && key.key_id == line.key_id);
            let Some(key) = matching.next() else {
                continue;
            };
            if matching.next().is_some() {
                return Err(NoteError::AmbiguousKey {
                    name: line.name.clone(),
                    key_id: line.key_id,
                });
            }
            let timestamp =
                key.check(&self.text, &line.signature)
                    .map_err(|()| NoteError::BadSignature {
                        name: line.name.clone(),
                        key_id: line.key_id,
                    })?;
            if !verified
                .iter()
                .any(|v| v.name == line.name && v.key_id == line.key_id)
            {
                verified.push(Verified {
                    name: line.name.clone(),
                    key_id: line.key_id,
                    key_type: key.key_type,
                    timestamp,
                });
            }
        }
        Ok(verified)
    }
}

/// No control characters other than newline (signed-note §Format).
fn check_characters(text: &str) -> Result<(), NoteError> {
    if text.chars().any(|c| c < ' ' && c != '\n') {
        return Err(NoteError::Malformed("control character"));
    }
    Ok(())
}

/// `— <name> <base64(key ID || signature)>`, without the newline.
fn parse_line(line: &str) -> Result<SignatureLine, NoteError> {
    let rest = line
        .strip_prefix("— ")
        .ok_or(NoteError::Malformed("signature line without '— '"))?;
    let (name, encoded) = rest
        .split_once(' ')
        .ok_or(NoteError::Malformed("signature line"))?;
    if !is_valid_name(name) {
        return Err(NoteError::Malformed("invalid key name"));
    }
    let bytes = STANDARD
        .decode(encoded)
        .map_err(|_| NoteError::Malformed("signature is not base64"))?;
    match bytes.split_first_chunk::<4>() {
        Some((id, signature)) if !signature.is_empty() => Ok(SignatureLine {
            name: name.to_owned(),
            key_id: u32::from_be_bytes(*id),
            signature: signature.to_vec(),
        }),
        _ => Err(NoteError::Malformed("signature shorter than 5 bytes")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    // The keys and notes of golang.org/x/mod sumdb/note/note_test.go.
    const PETER_SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
    const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                        then you don't know what your problem is.\n";
    const PETER_SIG: &str = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
    const ENOCH_SIG: &str = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

    fn vkey(text: &str) -> VerifierKey {
        VerifierKey::parse(text).unwrap()
    }

    fn signed(lines: &[&str]) -> Vec<u8> {
        format!("{TEXT}\n{}", lines.concat()).into_bytes()
    }

    #[test]
    fn signs_the_go_golden_note_byte_for_byte() {
        let signer = NoteSigner::parse_private(PETER_SKEY).unwrap();
        assert_eq!(signer.verifier_key().to_string(), PETER_VKEY);
        assert_eq!(signer.verifier_key(), vkey(PETER_VKEY));
        let mut note = Note::new(TEXT).unwrap();
        note.add_signature(signer.sign(&note)).unwrap();
        assert_eq!(note.render().as_bytes(), signed(&[PETER_SIG]));
        // Signing again replaces the old line instead of adding a second one.
        note.add_signature(signer.sign(&note)).unwrap();
        assert_eq!(note.render().as_bytes(), signed(&[PETER_SIG]));
        // The key ID is SHA-256(name || 0x0A || 0x01 || public key)[:4].
        assert_eq!(
            key_id("PeterNeumann", KeyType::Ed25519, vkey(PETER_VKEY).public()),
            0xc74f20a3
        );
    }

    #[test]
    fn verifies_the_c2sp_example() {
        let key = vkey("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k");
        let msg = "This is an example message.\n\n— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";
        let note = Note::parse(msg.as_bytes()).unwrap();
        assert_eq!(note.text(), "This is an example message.\n");
        let verified = note.verify(&[key]).unwrap();
        assert_eq!(verified.len(), 1);
        assert_eq!(
            (verified[0].key_id, verified[0].timestamp),
            (0x530d903a, None)
        );
        assert_eq!(note.render(), msg);
    }

    #[test]
    fn known_unknown_and_bad_signatures() {
        let (peter, enoch) = (vkey(PETER_VKEY), vkey(ENOCH_VKEY));
        let both = Note::parse(&signed(&[PETER_SIG, ENOCH_SIG])).unwrap();
        assert_eq!(both.text(), TEXT);
        // Enoch's signature is ignored when Enoch is unknown.
        let names = |v: Vec<Verified>| v.into_iter().map(|v| v.name).collect::<Vec<_>>();
        assert_eq!(
            names(both.verify(std::slice::from_ref(&peter)).unwrap()),
            ["PeterNeumann"]
        );
        assert_eq!(
            names(both.verify(&[peter.clone(), enoch.clone()]).unwrap()),
            ["PeterNeumann", "EnochRoot"]
        );
        assert_eq!(both.verify(&[]), Err(NoteError::NoKnownSignature));
        assert_eq!(both.verify_known(&[]), Ok(vec![]));
        // A known key twice: a signature by it cannot be attributed.
        let enoch_only = Note::parse(&signed(&[ENOCH_SIG])).unwrap();
        assert_eq!(
            enoch_only.verify(&[enoch.clone(), peter.clone(), enoch.clone()]),
            Err(NoteError::AmbiguousKey {
                name: "EnochRoot".into(),
                key_id: 0xaf0cfe78
            })
        );
        let peter_only = Note::parse(&signed(&[PETER_SIG])).unwrap();
        assert!(peter_only
            .verify(&[enoch.clone(), peter.clone(), enoch.clone()])
            .is_ok());
        // A known key whose signature fails rejects the note, even next to a good one.
        let tampered = format!("{}ABCD{}", &PETER_SIG[..60], &PETER_SIG[60..]);
        let bad = Note::parse(&signed(&[&tampered])).unwrap();
        let bad_peter = Err(NoteError::BadSignature {
            name: "PeterNeumann".into(),
            key_id: 0xc74f20a3,
        });
        assert_eq!(bad.verify(std::slice::from_ref(&peter)), bad_peter);
        let mixed = Note::parse(&signed(&[PETER_SIG, &tampered])).unwrap();
        assert_eq!(mixed.verify(std::slice::from_ref(&peter)), bad_peter);
        // Same name with another key ID, or another name with the same ID: unknown, ignored.
        let other_id = PETER_SIG.replace("x08g", "xxxx");
        let renamed = PETER_SIG.replace("PeterNeumann", "CarmenSandiego");
        let note = Note::parse(&signed(&[PETER_SIG, &other_id, &renamed])).unwrap();
        assert_eq!(
            names(note.verify(std::slice::from_ref(&peter)).unwrap()),
            ["PeterNeumann"]
        );
        // A different text under a good signature.
        let other_text = format!("{}\n{PETER_SIG}", TEXT.replace("answer", "question"));
        let note = Note::parse(other_text.as_bytes()).unwrap();
        assert_eq!(note.verify(&[peter]), bad_peter);
    }

    #[test]
    fn malformed_notes_are_rejected() {
        let too_many = signed(&[PETER_SIG; MAX_SIGNATURES + 1]);
        assert_eq!(Note::parse(&too_many), Err(NoteError::TooManySignatures));
        assert!(Note::parse(&signed(&[PETER_SIG; MAX_SIGNATURES])).is_ok());
        let bad: Vec<Vec<u8>> = vec![
            TEXT.into(),
            format!("{TEXT}\n").into(),
            format!("{TEXT}\n{}", &PETER_SIG[..PETER_SIG.len() - 1]).into(),
            format!("\x01{TEXT}\n{PETER_SIG}").into(),
            [b"\xff".as_slice(), &signed(&[PETER_SIG])].concat(),
            format!("{TEXT}\n— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=").into(),
            format!("{TEXT}\n{PETER_SIG}Unexpected line.\n").into(),
            format!("{TEXT}\n— PeterNeumann\n").into(),
            format!("{TEXT}\n— PeterNeumann x08go/Z=\n").into(),
            format!("{TEXT}\n— PeterNeumann x08goQ==\n").into(),
            format!("{TEXT}\n— a+b x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n").into(),
            format!("{TEXT}\n- PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n").into(),
        ];
        for msg in bad {
            assert!(
                matches!(Note::parse(&msg), Err(NoteError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(&msg)
            );
        }
        assert!(Note::new("no newline").is_err());
        assert!(Note::new("tab\there\n").is_err());
        // A text with blank lines of its own: the last blank line is the separator.
        let signer = NoteSigner::parse_private(PETER_SKEY).unwrap();
        let mut note = Note::new("a\n\nb\n\n").unwrap();
        note.add_signature(signer.sign(&note)).unwrap();
        let back = Note::parse(note.render().as_bytes()).unwrap();
        assert_eq!(back, note);
        assert!(back.verify(&[signer.verifier_key()]).is_ok());
    }

    /// Like Go's TestNewVerifier / TestNewSigner: every proper substring and every one-byte
    /// change of a key string is rejected.
    #[test]
    fn mangled_keys_are_rejected() {
        for (key, parse) in [
            (
                PETER_VKEY,
                (|k: &str| VerifierKey::parse(k).is_ok()) as fn(&str) -> bool,
            ),
            (PETER_SKEY, |k: &str| NoteSigner::parse_private(k).is_ok()),
        ] {
            assert!(parse(key));
            let bytes = key.as_bytes();
            for i in 0..=bytes.len() {
                for j in i + 1..=bytes.len() {
                    if (i, j) != (0, bytes.len()) {
                        let part = std::str::from_utf8(&bytes[i..j]).unwrap();
                        assert!(!parse(part), "{part}");
                    }
                }
            }
            for i in 0..bytes.len() {
                let mut changed = bytes.to_vec();
                changed[i] += 1;
                assert!(!parse(std::str::from_utf8(&changed).unwrap()), "byte {i}");
            }
        }
        // Go's two hand-made bad keys: wrong key length and an unknown algorithm, each with
        // a key ID that matches.
        assert_eq!(
            VerifierKey::parse(
                "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
            ),
            // Go's lenient base64 reads the last group; the canonical decoder refuses it.
            Err(KeyError::Malformed("key is not base64"))
        );
        assert_eq!(
            VerifierKey::parse(
                "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEA=="
            ),
            Err(KeyError::Malformed("key is not 32 bytes"))
        );
        assert_eq!(
            VerifierKey::parse(
                "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
            ),
            Err(KeyError::UnsupportedType(0x65))
        );
        assert_eq!(
            VerifierKey::parse(&PETER_VKEY.replace("c74f", "C74F")),
            Err(KeyError::Malformed("key ID is not 8 lowercase hex digits"))
        );
        assert!(NoteSigner::new("bad name", &[7; 32]).is_err());
        assert_eq!(
            format!("{:?}", NoteSigner::parse_private(PETER_SKEY).unwrap()),
            "NoteSigner(PeterNeumann, <redacted>)"
        );
    }

    proptest::proptest! {
        /// Parsing is total on arbitrary bytes, and whatever parses renders back to the
        /// same bytes (one spelling per note).
        #[test]
        fn parse_is_total(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            if let Ok(note) = Note::parse(&bytes) {
                proptest::prop_assert_eq!(note.render().into_bytes(), bytes);
            }
        }

        /// The same on text shaped like a note (signature lines with short, often invalid
        /// names and base64), where parsing gets far.
        #[test]
        fn parse_is_total_on_note_shapes(
            msg in "([ -~]{0,10}\n){0,3}\n(— [a-z+ é]{0,6} [A-Za-z0-9+/=]{0,16}\n){0,3}[ -~]{0,3}",
        ) {
            if let Ok(note) = Note::parse(msg.as_bytes()) {
                proptest::prop_assert_eq!(note.render(), msg);
            }
        }

        /// Key parsing is total, and a key that parses prints back the same.
        #[test]
        fn key_parse_is_total(text in "[a-z.+]{0,8}[+][0-9a-f]{0,9}[+][A-Za-z0-9+/=]{0,48}") {
            if let Ok(key) = VerifierKey::parse(&text) {
                proptest::prop_assert_eq!(key.to_string(), text);
            }
        }

        /// Any text with any set of signers reads back as the same note, and verifies
        /// with every signer's key.
        #[test]
        fn signed_notes_round_trip(
            text in "([ -~\u{a0}-\u{2fff}]{0,30}\n){1,6}",
            seeds in proptest::collection::vec(proptest::prelude::any::<[u8; 32]>(), 1..4),
        ) {
            let mut note = Note::new(text).unwrap();
            let mut keys = Vec::new();
            for (i, seed) in seeds.iter().enumerate() {
                let signer = NoteSigner::new(&format!("signer{i}.example"), seed).unwrap();
                note.add_signature(signer.sign(&note)).unwrap();
                keys.push(signer.verifier_key());
            }
            let back = Note::parse(note.render().as_bytes()).unwrap();
            proptest::prop_assert_eq!(&back, &note);
            proptest::prop_assert_eq!(back.verify(&keys).unwrap().len(), seeds.len());
        }
    }
}

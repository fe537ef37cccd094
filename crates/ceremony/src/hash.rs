//! Domain-separated SHA-256 over canonical (compressed) arkworks encodings.

use std::fmt;
use std::str::FromStr;

use ark_bn254::Fr;
use ark_ff::PrimeField;
use ark_serialize::{CanonicalDeserialize, CanonicalSerialize};
use sha2::{Digest as _, Sha256};

/// A SHA-256 digest: the hash of a contribution (which chains the hash of the one before
/// it), of a circuit, or of a ceremony's starting point. Displayed as lowercase hex.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, CanonicalSerialize, CanonicalDeserialize,
)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The digest as bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", hex::encode(self.0))
    }
}

impl FromStr for Digest {
    type Err = hex::FromHexError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut out)?;
        Ok(Digest(out))
    }
}

/// Prefix of every hash domain in this crate.
const PREFIX: &[u8] = b"smpx-ceremony/v1/";

/// An incremental, domain-separated hash. Every `bytes` input is length-prefixed and every
/// `item` is a canonical arkworks encoding (self-delimiting), so distinct inputs never
/// collide by concatenation.
pub(crate) struct Hasher(Sha256);

/// Feeds an arkworks serializer straight into the hash state.
struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Hasher {
    pub(crate) fn new(domain: &str) -> Self {
        let mut h = Sha256::new();
        h.update(PREFIX);
        h.update(domain.as_bytes());
        h.update([0u8]);
        Hasher(h)
    }

    pub(crate) fn bytes(mut self, b: &[u8]) -> Self {
        self.0.update((b.len() as u64).to_le_bytes());
        self.0.update(b);
        self
    }

    pub(crate) fn u64(mut self, v: u64) -> Self {
        self.0.update(v.to_le_bytes());
        self
    }

    pub(crate) fn item<T: CanonicalSerialize + ?Sized>(mut self, v: &T) -> Self {
        // Writing into a hash state cannot fail, and the canonical encoding of the types
        // hashed here (points, scalars, vectors, digests) has no failure mode of its own.
        let _ = v.serialize_compressed(HashWriter(&mut self.0));
        self
    }

    pub(crate) fn finish(self) -> Digest {
        Digest(self.0.finalize().into())
    }

    /// A scalar derived from the hash state: 512 bits reduced modulo r (bias < 2^-250).
    pub(crate) fn scalar(self) -> Fr {
        let seed = self.finish();
        let mut wide = [0u8; 64];
        for (i, half) in wide.chunks_mut(32).enumerate() {
            let mut h = Sha256::new();
            h.update(PREFIX);
            h.update(b"wide\0");
            h.update(seed.0);
            h.update([i as u8]);
            half.copy_from_slice(&h.finalize());
        }
        Fr::from_le_bytes_mod_order(&wide)
    }
}

/// A fresh secret scalar, never 0 or 1: 64 bytes from `rng` (the OS generator in normal
/// use) hashed with the contributor's optional extra entropy, so the secret is
/// unpredictable if either source is.
pub(crate) fn fresh_scalar<R: rand_core::RngCore + rand_core::CryptoRng>(
    rng: &mut R,
    extra: &[u8],
    label: &str,
) -> Fr {
    use ark_ff::{One, Zero};
    loop {
        let mut bytes = zeroize::Zeroizing::new([0u8; 64]);
        rng.fill_bytes(bytes.as_mut());
        let x = Hasher::new("fresh-secret")
            .bytes(bytes.as_ref())
            .bytes(extra)
            .bytes(label.as_bytes())
            .scalar();
        if !x.is_zero() && !x.is_one() {
            return x;
        }
    }
}

/// Plain SHA-256 (used by the beacon's iterated hash, which anyone must be able to
/// recompute with standard tools).
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

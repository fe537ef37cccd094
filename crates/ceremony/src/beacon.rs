//! The public random beacon that closes a phase, and who made a contribution.

use ark_bn254::Fr;
use ark_ff::{One, Zero};
use ark_serialize::{
    CanonicalDeserialize, CanonicalSerialize, Compress, SerializationError, Valid, Validate,
};

use crate::error::{CeremonyError, Secret};
use crate::hash::{sha256, Digest, Hasher};
use crate::progress::{Progress, Stage, Tick};

/// Largest accepted iteration exponent (2^48 SHA-256 iterations is days of work).
pub const MAX_BEACON_LOG2_ITERATIONS: u8 = 48;
/// Largest accepted beacon value, in bytes.
pub const MAX_BEACON_VALUE_LEN: usize = 1024;
/// Largest accepted contributor name, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// A public random beacon: a value nobody could predict before the last participant's
/// contribution (e.g. the hash of a future block), and a delay. Its output is SHA-256
/// applied `2^log2_iterations` times, starting from the value's bytes:
/// `h_0 = value`, `h_{i+1} = SHA-256(h_i)`; anyone can recompute it with standard tools.
/// The contribution's secrets are then hashed from that output and the transcript hash.
#[derive(Clone, Debug, PartialEq, Eq, CanonicalSerialize)]
pub struct Beacon {
    /// The beacon value (e.g. a block hash), as bytes.
    pub value: Vec<u8>,
    /// The hash is iterated `2^log2_iterations` times.
    pub log2_iterations: u8,
}

impl Beacon {
    /// A beacon from raw bytes.
    pub fn new(value: Vec<u8>, log2_iterations: u8) -> Result<Self, CeremonyError> {
        let b = Beacon {
            value,
            log2_iterations,
        };
        b.check()?;
        Ok(b)
    }

    /// A beacon from a hex string (e.g. a block hash as published).
    pub fn from_hex(value: &str, log2_iterations: u8) -> Result<Self, CeremonyError> {
        let value = value.trim();
        let value = value.strip_prefix("0x").unwrap_or(value);
        let bytes =
            hex::decode(value).map_err(|_| CeremonyError::InvalidBeacon("value is not hex"))?;
        Self::new(bytes, log2_iterations)
    }

    fn check(&self) -> Result<(), CeremonyError> {
        if self.value.is_empty() {
            return Err(CeremonyError::InvalidBeacon("empty value"));
        }
        if self.value.len() > MAX_BEACON_VALUE_LEN {
            return Err(CeremonyError::InvalidBeacon("value longer than 1024 bytes"));
        }
        if self.log2_iterations > MAX_BEACON_LOG2_ITERATIONS {
            return Err(CeremonyError::InvalidBeacon(
                "more than 2^48 hash iterations",
            ));
        }
        Ok(())
    }

    /// The beacon's output: SHA-256 iterated `2^log2_iterations` times from the value.
    pub fn output(&self, progress: &dyn Progress) -> [u8; 32] {
        let exp = self.log2_iterations.min(MAX_BEACON_LOG2_ITERATIONS);
        let total: u64 = 1u64 << exp;
        let tick = Tick::new(progress, Stage::Beacon, total);
        let mut cur = sha256(&self.value);
        let step: u64 = 1 << 16;
        let mut i: u64 = 1;
        while i < total {
            let end = total.min(i.saturating_add(step));
            for _ in i..end {
                cur = sha256(&cur);
            }
            tick.advance(end - i);
            i = end;
        }
        if total == 1 {
            tick.advance(1);
        }
        cur
    }
}

impl Valid for Beacon {
    fn check(&self) -> Result<(), SerializationError> {
        Beacon::check(self).map_err(|_| SerializationError::InvalidData)
    }
}

impl CanonicalDeserialize for Beacon {
    fn deserialize_with_mode<R: std::io::Read>(
        mut reader: R,
        compress: Compress,
        validate: Validate,
    ) -> Result<Self, SerializationError> {
        let b = Beacon {
            value: Vec::<u8>::deserialize_with_mode(&mut reader, compress, validate)?,
            log2_iterations: u8::deserialize_with_mode(&mut reader, compress, validate)?,
        };
        // Always checked: an unbounded iteration count would stall every verifier.
        Valid::check(&b)?;
        Ok(b)
    }
}

/// Derives a beacon secret: never 0 or 1.
pub(crate) fn beacon_scalar(output: &[u8; 32], context: &Digest, label: &str, role: Secret) -> Fr {
    let mut counter = 0u64;
    loop {
        let x = Hasher::new("beacon-secret")
            .bytes(output)
            .item(context)
            .bytes(label.as_bytes())
            .bytes(role.to_string().as_bytes())
            .u64(counter)
            .scalar();
        if !x.is_zero() && !x.is_one() {
            return x;
        }
        counter += 1;
    }
}

/// Who made a contribution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Contributor {
    /// A participant, with the name they chose to publish (may be empty).
    Participant {
        /// Free-form name or handle, at most 256 bytes.
        name: String,
    },
    /// The public random beacon that closed the phase.
    Beacon(Beacon),
}

impl Contributor {
    /// A participant's contributor record, checking the name's length.
    pub fn participant(name: &str) -> Result<Self, CeremonyError> {
        if name.len() > MAX_NAME_LEN {
            return Err(CeremonyError::InvalidName("longer than 256 bytes"));
        }
        if name.chars().any(char::is_control) {
            return Err(CeremonyError::InvalidName("contains control characters"));
        }
        Ok(Contributor::Participant {
            name: name.to_string(),
        })
    }

    /// Whether this is the beacon.
    pub fn is_beacon(&self) -> bool {
        matches!(self, Contributor::Beacon(_))
    }
}

impl CanonicalSerialize for Contributor {
    fn serialize_with_mode<W: std::io::Write>(
        &self,
        mut writer: W,
        compress: Compress,
    ) -> Result<(), SerializationError> {
        match self {
            Contributor::Participant { name } => {
                0u8.serialize_with_mode(&mut writer, compress)?;
                name.serialize_with_mode(&mut writer, compress)
            }
            Contributor::Beacon(b) => {
                1u8.serialize_with_mode(&mut writer, compress)?;
                b.serialize_with_mode(&mut writer, compress)
            }
        }
    }

    fn serialized_size(&self, compress: Compress) -> usize {
        1 + match self {
            Contributor::Participant { name } => name.serialized_size(compress),
            Contributor::Beacon(b) => b.serialized_size(compress),
        }
    }
}

impl Valid for Contributor {
    fn check(&self) -> Result<(), SerializationError> {
        Ok(())
    }
}

impl CanonicalDeserialize for Contributor {
    fn deserialize_with_mode<R: std::io::Read>(
        mut reader: R,
        compress: Compress,
        validate: Validate,
    ) -> Result<Self, SerializationError> {
        match u8::deserialize_with_mode(&mut reader, compress, validate)? {
            0 => Ok(Contributor::Participant {
                name: String::deserialize_with_mode(&mut reader, compress, validate)?,
            }),
            1 => Ok(Contributor::Beacon(Beacon::deserialize_with_mode(
                &mut reader,
                compress,
                validate,
            )?)),
            _ => Err(SerializationError::InvalidData),
        }
    }
}

//! Ceremony keys for devnets and tests, made once per machine.
//!
//! A local ceremony ([`local_ceremony`]) for even a small circuit takes tens of seconds
//! (preparing phase 2 — the Lagrange basis in the exponent — dominates), so a devnet and the
//! test suites keep the finalised transcript in a cache directory and reuse it. A cached
//! transcript is never trusted: it is verified in full ([`verified_keys`]) every time it is
//! loaded, and replaced by a fresh ceremony if it does not verify.

use crate::ceremony::{local_ceremony, verified_keys};
use crate::{ProvingKey, VerifyingKey, ZkError};
use smpx_ceremony::{Progress, Transcript, FORMAT_VERSION};
use std::path::{Path, PathBuf};

/// A verified transcript and the keys it yields.
#[derive(Clone)]
pub struct CeremonyKeys {
    /// The transcript, serialised (what a coordinator serves and wallets verify).
    pub transcript: Vec<u8>,
    pub proving_key: ProvingKey,
    pub verifying_key: VerifyingKey,
}

/// Where [`cached_local_ceremony`] keeps transcripts: `$XDG_CACHE_HOME/smpx`, else
/// `$HOME/.cache/smpx`, else the system's temporary directory.
pub fn default_cache_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("smpx");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(h).join(".cache").join("smpx");
    }
    std::env::temp_dir().join("smpx")
}

fn cache_file(dir: &Path, levels: u32, contributors: usize) -> PathBuf {
    dir.join(format!(
        "devnet-ceremony-L{levels}-c{contributors}-v{FORMAT_VERSION}.transcript"
    ))
}

/// The transcript of a local ceremony for `levels` with `contributors` contributors per
/// phase: from `cache_dir` if one there verifies, else a fresh ceremony (stored there for
/// next time; a cache that cannot be written is not an error). **Devnet and tests only**
/// (see [`local_ceremony`]).
pub fn cached_local_ceremony(
    levels: u32,
    contributors: usize,
    cache_dir: &Path,
    progress: &dyn Progress,
) -> Result<CeremonyKeys, ZkError> {
    let path = cache_file(cache_dir, levels, contributors);
    if let Ok(bytes) = std::fs::read(&path) {
        if let Ok(t) = Transcript::from_bytes(&bytes) {
            if let Ok((proving_key, verifying_key)) = verified_keys(levels, &t, progress) {
                return Ok(CeremonyKeys {
                    transcript: bytes,
                    proving_key,
                    verifying_key,
                });
            }
        }
    }
    let t = local_ceremony(levels, contributors, progress)?;
    let bytes = t.to_bytes()?;
    let (proving_key, verifying_key) = verified_keys(levels, &t, progress)?;
    // A cache: a failed write only costs the next devnet a ceremony.
    let _ = smpx_os::fs::write_atomic(&path, &bytes, smpx_os::fs::Access::Public);
    Ok(CeremonyKeys {
        transcript: bytes,
        proving_key,
        verifying_key,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use smpx_ceremony::Silent;

    #[test]
    fn cache_is_reused_and_a_corrupt_one_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let a = cached_local_ceremony(2, 1, dir.path(), &Silent).unwrap();
        let b = cached_local_ceremony(2, 1, dir.path(), &Silent).unwrap();
        assert_eq!(
            a.transcript, b.transcript,
            "the second call reuses the cache"
        );
        let path = cache_file(dir.path(), 2, 1);
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n / 2] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let c = cached_local_ceremony(2, 1, dir.path(), &Silent).unwrap();
        assert_ne!(c.transcript, a.transcript, "a corrupt cache is not used");
        assert_eq!(std::fs::read(&path).unwrap(), c.transcript);
    }
}

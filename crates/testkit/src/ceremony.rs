//! The local ceremony behind the small redemption circuits of the tests: made once per
//! machine (cached in the temporary directory and shared by every crate's tests, since a
//! fresh one takes seconds) and verified whenever it is loaded.

use std::path::PathBuf;

/// MMR levels of the test networks: capacity 63, a circuit that proves in milliseconds.
pub const LEVELS: u32 = 3;
/// Contributors per phase of the test ceremony.
pub const CONTRIBUTORS: usize = 3;

/// Where the test ceremonies are cached.
pub fn cache_dir() -> PathBuf {
    std::env::temp_dir().join("smpx-test-cache").join("smpx")
}

/// The verified keys of the test ceremony for `levels` (from the cache, or made now).
pub fn keys(levels: u32) -> anyhow::Result<smpx_zk::devnet::CeremonyKeys> {
    Ok(smpx_zk::devnet::cached_local_ceremony(
        levels,
        CONTRIBUTORS,
        &cache_dir(),
        &smpx_ceremony::Silent,
    )?)
}

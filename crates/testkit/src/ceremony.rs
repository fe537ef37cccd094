//! The local ceremony behind the small redemption circuits of the tests: made once per
//! machine (cached in the temporary directory and shared by every crate's tests, since a
//! fresh one takes seconds) and verified when a test process first loads it (then kept in
//! memory, so that every network a test binary starts does not verify it again).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

/// MMR levels of the test networks: capacity 63, a circuit that proves in milliseconds.
pub const LEVELS: u32 = 3;
/// Contributors per phase of the test ceremony.
pub const CONTRIBUTORS: usize = 3;

/// Where the test ceremonies are cached.
pub fn cache_dir() -> PathBuf {
    std::env::temp_dir().join("smpx-test-cache").join("smpx")
}

/// The verified keys of the test ceremony for `levels` (from memory, from the cache, or made
/// now).
pub fn keys(levels: u32) -> anyhow::Result<smpx_zk::devnet::CeremonyKeys> {
    type Slot = Arc<Mutex<Option<smpx_zk::devnet::CeremonyKeys>>>;
    static LOADED: LazyLock<Mutex<HashMap<u32, Slot>>> = LazyLock::new(Default::default);
    // One slot per size, locked while it is filled, so concurrent tests wait for one load.
    let slot = LOADED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(levels)
        .or_default()
        .clone();
    let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(k) = &*slot {
        return Ok(k.clone());
    }
    let k = smpx_zk::devnet::cached_local_ceremony(
        levels,
        CONTRIBUTORS,
        &cache_dir(),
        &smpx_ceremony::Silent,
    )?;
    *slot = Some(k.clone());
    Ok(k)
}

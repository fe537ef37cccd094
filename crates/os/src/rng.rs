//! Randomness. Everything above the core that needs random bytes (keys, nonces, ids, the
//! publish delay, proofs) draws them from one [`Entropy`], held as `Arc<dyn Entropy>` next to
//! the [`Clock`](crate::Clock); the core takes `&mut (impl RngCore + CryptoRng)` as a parameter.
//! [`OsEntropy`] is the operating system's generator and the only place in the workspace's
//! library code that reads it; tests inject a [`SeededEntropy`] to make two runs byte-equal.
//!
//! [`EntropyRng`] turns an `&dyn Entropy` into a `rand_core` 0.6 generator (what `rand` 0.8,
//! ed25519-dalek, x25519-dalek and arkworks take); [`Rng09`] turns any of those into a
//! `rand_core` 0.9 generator for `hpke` 0.13, and [`Rng010`] into a 0.10 one for
//! `blind-rsa-signatures` 0.18.

use std::sync::Mutex;

use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRng, OsRng, RngCore, SeedableRng};

/// The one source of random bytes. Implementations must be cryptographically secure unless
/// they are for tests ([`SeededEntropy`]).
pub trait Entropy: Send + Sync + std::fmt::Debug + 'static {
    /// Fills `dst` with random bytes.
    fn fill(&self, dst: &mut [u8]);
}

impl dyn Entropy {
    /// This source as a `rand_core` 0.6 generator.
    pub fn rng(&self) -> EntropyRng<'_> {
        EntropyRng(self)
    }

    /// `N` random bytes (ids, nonces, salts).
    pub fn bytes<const N: usize>(&self) -> [u8; N] {
        let mut b = [0u8; N];
        self.fill(&mut b);
        b
    }
}

/// The operating system's generator (`getrandom`).
#[derive(Clone, Copy, Debug, Default)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&self, dst: &mut [u8]) {
        OsRng.fill_bytes(dst)
    }
}

/// For the application edge (a key generated once at `init`), where no injected source is at
/// hand: `&mut OsEntropy` is a `rand_core` 0.6 generator.
impl RngCore for OsEntropy {
    fn next_u32(&mut self) -> u32 {
        OsRng.next_u32()
    }

    fn next_u64(&mut self) -> u64 {
        OsRng.next_u64()
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        OsRng.fill_bytes(dst)
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), rand_core::Error> {
        OsRng.try_fill_bytes(dst)
    }
}

impl CryptoRng for OsEntropy {}

/// A deterministic source for tests: ChaCha20 from a seed. Two sources with the same seed
/// give the same bytes in the same order. Never for real keys.
#[derive(Debug)]
pub struct SeededEntropy(Mutex<ChaCha20Rng>);

impl SeededEntropy {
    pub fn new(seed: u64) -> Self {
        SeededEntropy(Mutex::new(ChaCha20Rng::seed_from_u64(seed)))
    }
}

impl Entropy for SeededEntropy {
    fn fill(&self, dst: &mut [u8]) {
        // A panic while holding the lock cannot leave ChaCha's state half-updated in a way
        // that matters for a test source; keep going.
        let mut rng = self.0.lock().unwrap_or_else(|p| p.into_inner());
        rng.fill_bytes(dst)
    }
}

/// An [`Entropy`] as a `rand_core` 0.6 `RngCore + CryptoRng`.
pub struct EntropyRng<'a>(pub &'a dyn Entropy);

impl RngCore for EntropyRng<'_> {
    fn next_u32(&mut self) -> u32 {
        u32::from_le_bytes(self.0.bytes())
    }

    fn next_u64(&mut self) -> u64 {
        u64::from_le_bytes(self.0.bytes())
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        self.0.fill(dst)
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), rand_core::Error> {
        self.0.fill(dst);
        Ok(())
    }
}

impl CryptoRng for EntropyRng<'_> {}

/// A `rand_core` 0.6 generator as a `rand_core` 0.9 one (`hpke` 0.13 takes 0.9).
pub struct Rng09<'a, R: ?Sized>(pub &'a mut R);

impl<R: RngCore + CryptoRng + ?Sized> rand_core09::RngCore for Rng09<'_, R> {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }

    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        self.0.fill_bytes(dst)
    }
}

impl<R: RngCore + CryptoRng + ?Sized> rand_core09::CryptoRng for Rng09<'_, R> {}

/// A `rand_core` 0.6 generator as a `rand_core` 0.10 one (`blind-rsa-signatures` 0.18 takes
/// 0.10).
pub struct Rng010<'a, R: ?Sized>(pub &'a mut R);

impl<R: RngCore + CryptoRng + ?Sized> rand_core010::TryRng for Rng010<'_, R> {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.0.next_u32())
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(self.0.next_u64())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.0.fill_bytes(dst);
        Ok(())
    }
}

impl<R: RngCore + CryptoRng + ?Sized> rand_core010::TryCryptoRng for Rng010<'_, R> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_sources_repeat_and_differ_by_seed() {
        let a: &dyn Entropy = &SeededEntropy::new(7);
        let b: &dyn Entropy = &SeededEntropy::new(7);
        let c: &dyn Entropy = &SeededEntropy::new(8);
        let (x, y): ([u8; 32], [u8; 32]) = (a.bytes(), b.bytes());
        assert_eq!(x, y);
        assert_ne!(x, c.bytes::<32>());
        // The stream goes on: the next draw differs from the first.
        assert_ne!(x, a.bytes::<32>());
    }

    #[test]
    fn the_adapters_draw_from_the_source_in_order() {
        let e: &dyn Entropy = &SeededEntropy::new(1);
        let f: &dyn Entropy = &SeededEntropy::new(1);
        let mut rng = e.rng();
        let first = rng.next_u64();
        let mut via09 = Rng09(&mut rng);
        let second = rand_core09::RngCore::next_u32(&mut via09);
        let mut via010 = Rng010(&mut rng);
        let mut third = [0u8; 5];
        rand_core010::Rng::fill_bytes(&mut via010, &mut third);
        assert_eq!(first, u64::from_le_bytes(f.bytes()));
        assert_eq!(second, u32::from_le_bytes(f.bytes()));
        assert_eq!(third, f.bytes());
    }

    #[test]
    fn the_os_source_is_not_constant() {
        let e: &dyn Entropy = &OsEntropy;
        assert_ne!(e.bytes::<32>(), e.bytes::<32>());
    }
}

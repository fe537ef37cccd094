//! Rule: the proof of work a relay's registration at a directory carries, at a difficulty the
//! directory publishes. (Issue: the relay directory — "with a proof of work at a difficulty the
//! directory publishes".)
//!
//! ```text
//! digest = SHA-256("smpx-directory-pow/1" ‖ u32be(|challenge|) ‖ challenge
//!                                         ‖ u32be(|body|) ‖ body ‖ u64be(nonce))
//! ```
//!
//! The work is the number of leading zero bits of `digest`; a registration is accepted when
//! it reaches the directory's difficulty. The `challenge` is the directory's current one (it
//! rotates, so work cannot be done in advance and kept), the `body` the exact bytes being
//! registered (so the work cannot be moved to another registration). Finding a nonce takes
//! about `2^difficulty` hashes; checking one takes one. Golden vectors from an independent
//! implementation (Python's hashlib): `testdata/directory_pow.txt`.

use sha2::{Digest, Sha256};

/// Domain separation for the digest.
pub const DOMAIN: &[u8] = b"smpx-directory-pow/1";
/// The largest difficulty a directory may ask for (beyond it, work would take years).
pub const MAX_DIFFICULTY: u32 = 40;

/// The digest of one attempt.
pub fn digest(challenge: &[u8], body: &[u8], nonce: u64) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(len32(challenge).to_be_bytes());
    h.update(challenge);
    h.update(len32(body).to_be_bytes());
    h.update(body);
    h.update(nonce.to_be_bytes());
    h.finalize().into()
}

fn len32(b: &[u8]) -> u32 {
    // Bodies are bounded far below 4 GiB by every caller; saturate rather than wrap.
    u32::try_from(b.len()).unwrap_or(u32::MAX)
}

/// Leading zero bits of `hash`.
pub fn leading_zero_bits(hash: &[u8; 32]) -> u32 {
    let mut n = 0;
    for b in hash {
        if *b == 0 {
            n += 8;
        } else {
            return n + b.leading_zeros();
        }
    }
    n
}

/// Why a proof of work is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PowError {
    #[error("the proof of work has {got} leading zero bits; the directory asks for {want}")]
    TooLittle { got: u32, want: u32 },
    #[error("a difficulty of {0} is more than {MAX_DIFFICULTY}")]
    Unreasonable(u32),
}

/// Checks `nonce` against `difficulty`.
pub fn check(challenge: &[u8], body: &[u8], nonce: u64, difficulty: u32) -> Result<(), PowError> {
    if difficulty > MAX_DIFFICULTY {
        return Err(PowError::Unreasonable(difficulty));
    }
    let got = leading_zero_bits(&digest(challenge, body, nonce));
    if got >= difficulty {
        Ok(())
    } else {
        Err(PowError::TooLittle {
            got,
            want: difficulty,
        })
    }
}

/// Finds the first nonce from `start` reaching `difficulty`, calling `progress(tried)` every
/// 65,536 attempts (the caller shows progress, and may give up by returning `false`).
/// `None` if `progress` gave up or the difficulty is over [`MAX_DIFFICULTY`].
pub fn solve(
    challenge: &[u8],
    body: &[u8],
    difficulty: u32,
    start: u64,
    mut progress: impl FnMut(u64) -> bool,
) -> Option<u64> {
    if difficulty > MAX_DIFFICULTY {
        return None;
    }
    let mut tried = 0u64;
    let mut nonce = start;
    loop {
        if leading_zero_bits(&digest(challenge, body, nonce)) >= difficulty {
            return Some(nonce);
        }
        tried += 1;
        if tried.is_multiple_of(65_536) && !progress(tried) {
            return None;
        }
        nonce = nonce.wrapping_add(1);
    }
}

/// The expected number of attempts at `difficulty` (for progress bars): `2^difficulty`.
pub fn expected_attempts(difficulty: u32) -> u64 {
    1u64 << difficulty.min(63)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const VECTORS: &str = include_str!("../testdata/directory_pow.txt");

    fn field(s: &str) -> Vec<u8> {
        if s == "-" {
            Vec::new()
        } else {
            hex::decode(s).unwrap()
        }
    }

    #[test]
    fn the_independent_vectors_are_found_and_checked() {
        let mut n = 0;
        for line in VECTORS.lines().filter(|l| !l.starts_with('#')) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (challenge, body) = (field(f[0]), field(f[1]));
            let difficulty: u32 = f[2].parse().unwrap();
            let nonce: u64 = f[3].parse().unwrap();
            assert_eq!(hex::encode(digest(&challenge, &body, nonce)), f[4]);
            assert_eq!(
                solve(&challenge, &body, difficulty, 0, |_| true),
                Some(nonce)
            );
            check(&challenge, &body, nonce, difficulty).unwrap();
            // The nonce before it does not reach the difficulty (it is the first).
            if nonce > 0 {
                assert!(check(&challenge, &body, nonce - 1, difficulty).is_err());
            }
            n += 1;
        }
        assert_eq!(n, 4);
    }

    #[test]
    fn work_is_bound_to_its_challenge_and_body() {
        // Vector 2: 16 bits for ("challenge-1", "register relay A") at nonce 10664.
        let (c, b) = (b"challenge-1".as_slice(), b"register relay A".as_slice());
        check(c, b, 10_664, 16).unwrap();
        assert!(matches!(
            check(b"challenge-2", b, 10_664, 16),
            Err(PowError::TooLittle { want: 16, .. })
        ));
        assert!(check(c, b"register relay B", 10_664, 16).is_err());
        // Moving bytes between challenge and body changes the digest (lengths are hashed).
        assert_ne!(digest(b"ab", b"c", 0), digest(b"a", b"bc", 0));
        assert_eq!(
            check(c, b, 0, MAX_DIFFICULTY + 1),
            Err(PowError::Unreasonable(MAX_DIFFICULTY + 1))
        );
    }

    #[test]
    fn leading_zero_bits_count_across_bytes() {
        let mut h = [0u8; 32];
        assert_eq!(leading_zero_bits(&h), 256);
        h[2] = 0b0001_0000;
        assert_eq!(leading_zero_bits(&h), 19);
        h[0] = 0x80;
        assert_eq!(leading_zero_bits(&h), 0);
    }

    #[test]
    fn solving_reports_progress_and_can_give_up() {
        let mut calls = Vec::new();
        // 40 bits would take ~10^12 attempts: give up at the second report.
        let r = solve(b"c", b"b", 40, 0, |tried| {
            calls.push(tried);
            calls.len() < 2
        });
        assert_eq!(r, None);
        assert_eq!(calls, vec![65_536, 131_072]);
        assert_eq!(expected_attempts(16), 65_536);
    }
}

//! Group helpers: element-wise scaling with progress, same-ratio pairing checks and the
//! random linear combinations that batch them.

use ark_bn254::{Bn254, Fr, G1Affine, G1Projective, G2Affine, G2Projective};
use ark_ec::{
    pairing::Pairing, scalar_mul::glv::GLVConfig, AffineRepr, CurveGroup, VariableBaseMSM,
};
use ark_ff::{UniformRand, Zero};
use ark_serialize::{CanonicalDeserialize, Compress, Read, SerializationError, Validate};
use ark_std::cfg_chunks;
#[cfg(feature = "parallel")]
use rayon::prelude::*;

use crate::progress::Tick;

const CHUNK: usize = 1024;

/// Scalar multiplication by the fastest method arkworks offers for the group: BN254's G1
/// already multiplies with the GLV endomorphism, its G2 does not by default (plain
/// double-and-add), so G2 calls GLV explicitly (about twice as fast).
pub(crate) trait FastMul: CurveGroup<ScalarField = Fr> {
    fn fast_mul(p: Self, s: Fr) -> Self;
}

impl FastMul for ark_ec::short_weierstrass::Projective<ark_bn254::g1::Config> {
    fn fast_mul(p: Self, s: Fr) -> Self {
        p * s
    }
}

impl FastMul for ark_ec::short_weierstrass::Projective<ark_bn254::g2::Config> {
    fn fast_mul(p: Self, s: Fr) -> Self {
        <ark_bn254::g2::Config as GLVConfig>::glv_mul_projective(p, s)
    }
}

/// A G2 element whose multiplication by a scalar uses GLV, so ark-poly's FFT over group
/// elements (which multiplies through `MulAssign`) gets the fast path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct G2Glv(pub(crate) G2Projective);

impl core::ops::Add for G2Glv {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        G2Glv(self.0 + o.0)
    }
}

impl core::ops::Sub for G2Glv {
    type Output = Self;
    fn sub(self, o: Self) -> Self {
        G2Glv(self.0 - o.0)
    }
}

impl core::ops::AddAssign for G2Glv {
    fn add_assign(&mut self, o: Self) {
        self.0 += o.0;
    }
}

impl core::ops::SubAssign for G2Glv {
    fn sub_assign(&mut self, o: Self) {
        self.0 -= o.0;
    }
}

impl core::ops::MulAssign<Fr> for G2Glv {
    fn mul_assign(&mut self, s: Fr) {
        self.0 = G2Projective::fast_mul(self.0, s);
    }
}

impl Zero for G2Glv {
    fn zero() -> Self {
        G2Glv(G2Projective::zero())
    }
    fn is_zero(&self) -> bool {
        self.0.is_zero()
    }
}

/// `out[i] = points[i] · scalar(i)`, in affine form.
pub(crate) fn scale<G>(
    points: &[G::Affine],
    scalar: impl Fn(usize) -> G::ScalarField + Sync + Send,
    tick: &Tick<'_>,
) -> Vec<G::Affine>
where
    G: FastMul,
{
    let chunks: Vec<Vec<G>> = cfg_chunks!(points, CHUNK)
        .enumerate()
        .map(|(c, chunk)| {
            let out: Vec<G> = chunk
                .iter()
                .enumerate()
                .map(|(j, p)| G::fast_mul(p.into_group(), scalar(c * CHUNK + j)))
                .collect();
            tick.advance(chunk.len() as u64);
            out
        })
        .collect();
    let flat: Vec<G> = chunks.into_iter().flatten().collect();
    G::normalize_batch(&flat)
}

/// Reads a vector of points in arkworks' `Vec` encoding (u64 length, then the points),
/// decoding the points in parallel (decompression takes a square root per point) and
/// checking them as a batch. Allocation follows the bytes actually present, never the
/// declared length alone.
pub(crate) fn read_points<A, R>(
    mut reader: R,
    compress: Compress,
    validate: Validate,
) -> Result<Vec<A>, SerializationError>
where
    A: AffineRepr + CanonicalDeserialize,
    R: Read,
{
    let len = u64::deserialize_with_mode(&mut reader, compress, validate)?;
    let size = A::zero().serialized_size(compress);
    let want = len
        .checked_mul(size as u64)
        .ok_or(SerializationError::InvalidData)?;
    let mut buf = Vec::new();
    (&mut reader).take(want).read_to_end(&mut buf)?;
    if buf.len() as u64 != want {
        return Err(SerializationError::IoError(
            std::io::ErrorKind::UnexpectedEof.into(),
        ));
    }
    let points = cfg_chunks!(buf, size)
        .map(|c| A::deserialize_with_mode(c, compress, Validate::No))
        .collect::<Result<Vec<A>, _>>()?;
    if validate == Validate::Yes {
        A::batch_check(points.iter())?;
    }
    Ok(points)
}

/// `1, r, r², …` (`n` terms).
pub(crate) fn powers(r: Fr, n: usize) -> Vec<Fr> {
    let mut out = Vec::with_capacity(n);
    let mut cur = Fr::from(1u64);
    for _ in 0..n {
        out.push(cur);
        cur *= r;
    }
    out
}

/// A verifier's random challenge (never shown to the party being checked before it has
/// committed to its data).
pub(crate) fn random_scalar() -> Fr {
    Fr::rand(&mut rand_core::OsRng)
}

/// For `points = (P_0, …, P_{m})`: `(Σ c_i·P_i, Σ c_i·P_{i+1})` over `i < m`. If every
/// consecutive pair has the same ratio `x`, the second sum is `x` times the first; if any
/// pair does not, the two sums fail that relation except with probability about `m/r`
/// over the choice of coefficients.
pub(crate) fn chain_g1(points: &[G1Affine], coeffs: &[Fr]) -> (G1Projective, G1Projective) {
    if points.len() < 2 {
        return (G1Projective::zero(), G1Projective::zero());
    }
    let m = points.len() - 1;
    (
        G1Projective::msm_unchecked(&points[..m], &coeffs[..m]),
        G1Projective::msm_unchecked(&points[1..], &coeffs[..m]),
    )
}

/// [`chain_g1`] in G2.
pub(crate) fn chain_g2(points: &[G2Affine], coeffs: &[Fr]) -> (G2Projective, G2Projective) {
    if points.len() < 2 {
        return (G2Projective::zero(), G2Projective::zero());
    }
    let m = points.len() - 1;
    (
        G2Projective::msm_unchecked(&points[..m], &coeffs[..m]),
        G2Projective::msm_unchecked(&points[1..], &coeffs[..m]),
    )
}

/// Whether `a1/a0 = b1/b0` in the exponent, i.e. `e(a0, b1) = e(a1, b0)`, with every
/// element different from the identity.
pub(crate) fn same_ratio(
    a0: G1Projective,
    a1: G1Projective,
    b0: G2Projective,
    b1: G2Projective,
) -> bool {
    if a0.is_zero() || a1.is_zero() || b0.is_zero() || b1.is_zero() {
        return false;
    }
    pairing_ratio(a0, a1, b0, b1)
}

/// Like [`same_ratio`] but accepts `a0 = a1 = identity` (an all-zero vector scaled by
/// anything is still all zero).
pub(crate) fn same_ratio_or_both_zero(
    a0: G1Projective,
    a1: G1Projective,
    b0: G2Projective,
    b1: G2Projective,
) -> bool {
    if a0.is_zero() && a1.is_zero() {
        return !b0.is_zero() && !b1.is_zero();
    }
    same_ratio(a0, a1, b0, b1)
}

fn pairing_ratio(a0: G1Projective, a1: G1Projective, b0: G2Projective, b1: G2Projective) -> bool {
    let g1 = G1Projective::normalize_batch(&[a0, -a1]);
    let g2 = G2Projective::normalize_batch(&[b1, b0]);
    Bn254::multi_pairing(g1, g2).is_zero()
}

/// Several same-ratio relations checked with one multi-pairing (one final
/// exponentiation): `Σ_k ρ_k·(e(a0_k, b1_k) − e(a1_k, b0_k)) = 0` for random `ρ_k`. If the
/// batch fails, the relations are checked one by one to name the first that fails.
pub(crate) struct RatioBatch<T> {
    items: Vec<(T, [G1Projective; 2], [G2Projective; 2], bool)>,
}

impl<T: Copy> RatioBatch<T> {
    pub(crate) fn new() -> Self {
        RatioBatch { items: Vec::new() }
    }

    /// Adds `a1/a0 = b1/b0`; with `allow_zero`, `a0 = a1 = identity` also passes.
    pub(crate) fn push(
        &mut self,
        label: T,
        a: (G1Projective, G1Projective),
        b: (G2Projective, G2Projective),
        allow_zero: bool,
    ) {
        self.items.push((label, [a.0, a.1], [b.0, b.1], allow_zero));
    }

    /// `Err(label)` of the first relation that does not hold.
    pub(crate) fn check(self) -> Result<(), T> {
        let first = self.items.first().map(|i| i.0);
        let mut g1s = Vec::with_capacity(2 * self.items.len());
        let mut g2s = Vec::with_capacity(2 * self.items.len());
        for (label, [a0, a1], [b0, b1], allow_zero) in &self.items {
            if b0.is_zero() || b1.is_zero() {
                return Err(*label);
            }
            if a0.is_zero() && a1.is_zero() && *allow_zero {
                continue;
            }
            if a0.is_zero() || a1.is_zero() {
                return Err(*label);
            }
            let rho = random_scalar();
            g1s.push(*a0 * rho);
            g1s.push(-(*a1 * rho));
            g2s.push(*b1);
            g2s.push(*b0);
        }
        if g1s.is_empty() {
            return Ok(());
        }
        let g1a = G1Projective::normalize_batch(&g1s);
        let g2a = G2Projective::normalize_batch(&g2s);
        if Bn254::multi_pairing(g1a, g2a).is_zero() {
            return Ok(());
        }
        for (label, [a0, a1], [b0, b1], allow_zero) in self.items {
            let ok = if allow_zero {
                same_ratio_or_both_zero(a0, a1, b0, b1)
            } else {
                same_ratio(a0, a1, b0, b1)
            };
            if !ok {
                return Err(label);
            }
        }
        // Only if every relation holds but the random combination did not, which cannot
        // happen; fail closed all the same.
        match first {
            Some(label) => Err(label),
            None => Ok(()),
        }
    }
}

pub(crate) fn g1() -> G1Affine {
    G1Affine::generator()
}

pub(crate) fn g2() -> G2Affine {
    G2Affine::generator()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn g2_glv_matches_double_and_add() {
        let mut rng = rand_core::OsRng;
        for _ in 0..8 {
            let p = G2Projective::rand(&mut rng);
            let s = Fr::rand(&mut rng);
            assert_eq!(G2Projective::fast_mul(p, s), p * s);
        }
        assert_eq!(
            G2Projective::fast_mul(G2Projective::zero(), Fr::from(5u64)),
            G2Projective::zero()
        );
    }
}

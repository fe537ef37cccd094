//! Redemption proof costs, one core: constraints, proving time for MMR capacities 2^10, 2^20
//! and 2^32 (L = 5, 10, 16 levels of the 4-ary MMR), proof size, single and batched
//! verification (with and without decoding the 128-byte proofs).
//!
//! ```text
//! cargo bench -p smpx-zk --bench prove
//! ```
//!
//! Build without the `parallel` feature (the default) so everything runs on one thread.
//! The witness is made dense: the path levels above the leaf's peak carry random siblings
//! and digits instead of zeros, as for a leaf in the tallest possible mountain (zero padding
//! makes the multi-scalar multiplications cheaper and would flatter the numbers).

use ark_bn254::Bn254;
use ark_groth16::Groth16;
use ark_r1cs_std::alloc::AllocVar;
use ark_r1cs_std::boolean::Boolean;
use ark_r1cs_std::eq::EqGadget;
use ark_r1cs_std::fields::fp::FpVar;
use ark_relations::gr1cs::{
    ConstraintSynthesizer, ConstraintSystem, ConstraintSystemRef, SynthesisError, SynthesisMode,
    R1CS_PREDICATE_LABEL,
};
use ark_snark::SNARK;
use ark_std::UniformRand;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use smpx_core::crypto::{commitment, nullifier, poseidon2, Fr, VoucherSecret, NULLIFIER_DOMAIN};
use smpx_core::mmr::{Mmr, MmrParams};
use smpx_zk::poseidon::poseidon;
use smpx_zk::{
    binding_hash, constraint_count, prove, setup, verify, verify_batch, PreparedVerifyingKey,
    ProvingKey, RedeemProof, RedeemPublic, RedeemWitness,
};

const LEAVES: u64 = 1000;

struct Case {
    bits: u32,
    pk: ProvingKey,
    pvk: PreparedVerifyingKey,
    public: RedeemPublic,
    witness: RedeemWitness,
}

fn case(bits: u32, rng: &mut StdRng) -> Case {
    let levels = smpx_core::mmr::levels_for_capacity_log2(bits);
    let secrets: Vec<VoucherSecret> = (0..LEAVES).map(|_| VoucherSecret::random(rng)).collect();
    let leaves = secrets.iter().map(|s| match commitment(s, 10).0.to_fr() {
        Ok(x) => x,
        Err(e) => panic!("{e}"),
    });
    let mmr =
        Mmr::from_leaves(MmrParams { id: 1, levels }, leaves).unwrap_or_else(|e| panic!("{e}"));
    let index = 700; // in the mountain of height 3 (1000 = 3·256 + 3·64 + 2·16 + 2·4)
    let mut path = mmr
        .proof(index)
        .and_then(|p| p.circuit_path())
        .unwrap_or_else(|e| panic!("{e}"));
    let height = path.slot / 3;
    for j in height..path.digits.len() {
        path.digits[j] = rng.gen_range(0..4);
        path.siblings[j] = [Fr::from(rng.gen::<u64>()); 3].map(|x| x * Fr::from(rng.gen::<u64>()));
    }
    let secret = secrets[index as usize].clone();
    let public = RedeemPublic {
        root: mmr.root(),
        nullifier: nullifier(&secret)
            .0
            .to_fr()
            .unwrap_or_else(|e| panic!("{e}")),
        denomination: 10,
        binding: binding_hash("bench-operator", 0),
    };
    let t = std::time::Instant::now();
    let (pk, vk) = setup(levels, rng).unwrap_or_else(|e| panic!("{e}"));
    let setup_time = t.elapsed();
    let constraints = constraint_count(levels).unwrap_or_else(|e| panic!("{e}"));
    let pk_bytes = pk.to_bytes().map(|b| b.len()).unwrap_or(0);
    let vk_bytes = vk.to_bytes().map(|b| b.len()).unwrap_or(0);
    println!(
        "capacity 2^{bits} (L = {levels}, 4^{levels} - 1 leaves): {constraints} constraints, \
         setup {setup_time:.2?}, proving key {pk_bytes} B, verifying key {vk_bytes} B"
    );
    Case {
        bits,
        pk,
        pvk: vk.prepare(),
        public,
        witness: RedeemWitness { secret, path },
    }
}

/// The reference of shared/BASELINES.md ("Groth16 prove, Poseidon Merkle path depth 32 +
/// nullifier", 400 ms there): a plain binary depth-32 Poseidon Merkle path to a public root
/// plus a public nullifier, with the same Poseidon gadget and the same prover (precomputed
/// matrices). Proving it in the same run gives the ratio that the goal is about, whatever
/// else the machine is doing.
#[derive(Clone)]
struct MerkleReference {
    secret: Option<Fr>,
    path: Vec<(Option<bool>, Option<Fr>)>,
    root: Option<Fr>,
    nullifier: Option<Fr>,
}

impl MerkleReference {
    fn shape(depth: usize) -> Self {
        Self {
            secret: None,
            path: vec![(None, None); depth],
            root: None,
            nullifier: None,
        }
    }

    fn random(depth: usize, rng: &mut StdRng) -> Self {
        let secret = Fr::from(rng.gen::<u64>());
        let mut cur = poseidon2(secret, Fr::from(10u64));
        let mut path = Vec::with_capacity(depth);
        for _ in 0..depth {
            let (bit, sib) = (rng.gen::<bool>(), Fr::from(rng.gen::<u64>()));
            cur = if bit {
                poseidon2(sib, cur)
            } else {
                poseidon2(cur, sib)
            };
            path.push((Some(bit), Some(sib)));
        }
        Self {
            secret: Some(secret),
            path,
            root: Some(cur),
            nullifier: Some(poseidon2(Fr::from(NULLIFIER_DOMAIN), secret)),
        }
    }
}

impl ConstraintSynthesizer<Fr> for MerkleReference {
    fn generate_constraints(self, cs: ConstraintSystemRef<Fr>) -> Result<(), SynthesisError> {
        let missing = || SynthesisError::AssignmentMissing;
        let root = FpVar::new_input(cs.clone(), || self.root.ok_or_else(missing))?;
        let nullifier = FpVar::new_input(cs.clone(), || self.nullifier.ok_or_else(missing))?;
        let s = FpVar::new_witness(cs.clone(), || self.secret.ok_or_else(missing))?;
        let domain = FpVar::Constant(Fr::from(NULLIFIER_DOMAIN));
        poseidon(&[domain, s.clone()])?.enforce_equal(&nullifier)?;
        let mut cur = poseidon(&[s, FpVar::Constant(Fr::from(10u64))])?;
        for (bit, sib) in self.path {
            let bit = FpVar::from(Boolean::new_witness(cs.clone(), || {
                bit.ok_or_else(missing)
            })?);
            let sib = FpVar::new_witness(cs.clone(), || sib.ok_or_else(missing))?;
            let left = &cur + &bit * (&sib - &cur);
            let right = &cur + &sib - &left;
            cur = poseidon(&[left, right])?;
        }
        cur.enforce_equal(&root)
    }
}

/// Setup and a prover with precomputed matrices for the reference circuit.
struct ReferenceProver {
    pk: ark_groth16::ProvingKey<Bn254>,
    matrices: Vec<ark_relations::gr1cs::Matrix<Fr>>,
    num_inputs: usize,
    num_constraints: usize,
}

impl ReferenceProver {
    fn new(depth: usize, rng: &mut StdRng) -> Self {
        let (pk, _) = Groth16::<Bn254>::circuit_specific_setup(MerkleReference::shape(depth), rng)
            .unwrap_or_else(|e| panic!("{e}"));
        let cs = ConstraintSystem::<Fr>::new_ref();
        cs.set_mode(SynthesisMode::Setup);
        MerkleReference::shape(depth)
            .generate_constraints(cs.clone())
            .unwrap_or_else(|e| panic!("{e}"));
        cs.finalize();
        let mut all = cs.to_matrices().unwrap_or_else(|e| panic!("{e}"));
        let matrices = all.remove(R1CS_PREDICATE_LABEL).unwrap_or_default();
        println!(
            "reference: binary Poseidon Merkle path depth {depth} + nullifier, {} constraints",
            cs.num_constraints()
        );
        Self {
            pk,
            matrices,
            num_inputs: cs.num_instance_variables(),
            num_constraints: cs.num_constraints(),
        }
    }

    fn prove(&self, circuit: MerkleReference, rng: &mut StdRng) {
        let cs = ConstraintSystem::<Fr>::new_ref();
        cs.set_mode(SynthesisMode::Prove {
            construct_matrices: false,
            generate_lc_assignments: false,
        });
        circuit
            .generate_constraints(cs.clone())
            .unwrap_or_else(|e| panic!("{e}"));
        let full = [
            cs.instance_assignment().unwrap_or_default(),
            cs.witness_assignment().unwrap_or_default(),
        ]
        .concat();
        let (r, s) = (Fr::rand(rng), Fr::rand(rng));
        let _ = Groth16::<Bn254>::create_proof_with_reduction_and_matrices(
            &self.pk,
            r,
            s,
            &self.matrices,
            self.num_inputs,
            self.num_constraints,
            &full,
        );
    }
}

/// Nanoseconds this thread has spent on a CPU (`/proc/thread-self/schedstat`), if readable.
fn cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Runs `f` `iters` times and prints wall-clock and on-CPU time per call. On a shared machine
/// the on-CPU time is the figure that does not depend on what else is running.
fn timed(label: &str, iters: u32, mut f: impl FnMut()) {
    f();
    let (wall, cpu) = (std::time::Instant::now(), cpu_ns());
    for _ in 0..iters {
        f();
    }
    let wall = wall.elapsed() / iters;
    match cpu.zip(cpu_ns()) {
        Some((a, b)) => {
            let cpu = std::time::Duration::from_nanos((b - a) / u64::from(iters));
            println!("one-core {label:<36} wall {wall:>10.2?}  on-CPU {cpu:>10.2?}");
        }
        None => println!("one-core {label:<36} wall {wall:>10.2?}"),
    }
}

fn cpu_time_table(cases: &[Case], rng: &mut StdRng) {
    timed("poseidon2 native (baseline 14.8 µs)", 2000, || {
        let _ = smpx_core::crypto::poseidon2(Fr::from(1u64), Fr::from(2u64));
    });
    let reference = ReferenceProver::new(32, rng);
    let witness = MerkleReference::random(32, rng);
    timed("prove reference (baseline 400 ms)", 5, || {
        reference.prove(witness.clone(), rng)
    });
    // Paired: the reference and the 2^32 redemption proof alternately, so that both see the
    // same load; the median ratio is the figure to hold against the 400 ms goal.
    let k = &cases[cases.len() - 1];
    let mut ratios = Vec::new();
    for _ in 0..10 {
        let a = cpu_ns();
        reference.prove(witness.clone(), rng);
        let b = cpu_ns();
        let _ = prove(&k.pk, &k.public, &k.witness, rng);
        let c = cpu_ns();
        if let (Some(a), Some(b), Some(c)) = (a, b, c) {
            ratios.push((c - b) as f64 / (b - a) as f64);
        }
    }
    ratios.sort_by(f64::total_cmp);
    if let Some(median) = ratios.get(ratios.len() / 2) {
        println!(
            "paired on-CPU ratio, prove 2^32 / prove reference: median {median:.3} \
             (min {:.3}, max {:.3}); × 400 ms = {:.0} ms at the baseline's speed",
            ratios[0],
            ratios[ratios.len() - 1],
            median * 400.0
        );
    }
    for k in cases {
        timed(&format!("prove, capacity 2^{}", k.bits), 5, || {
            let _ = prove(&k.pk, &k.public, &k.witness, rng);
        });
    }
    let k = &cases[cases.len() - 1];
    let proofs: Vec<RedeemProof> = (0..8)
        .map(|_| prove(&k.pk, &k.public, &k.witness, rng).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    timed("verify single (baseline 0.92 ms)", 200, || {
        assert!(verify(&k.pvk, &k.public, &proofs[0]).unwrap_or(false));
    });
    let bytes = proofs[0].to_bytes();
    timed("decode 128-byte proof", 500, || {
        let _ = RedeemProof::from_bytes(&bytes);
    });
    let n = 256;
    let items: Vec<(RedeemPublic, RedeemProof)> = (0..n)
        .map(|i| (k.public, proofs[i % proofs.len()].clone()))
        .collect();
    timed(&format!("batch verify {n} (per batch)"), 5, || {
        assert!(verify_batch(&k.pvk, &items, rng).unwrap_or(false));
    });
    let encoded: Vec<[u8; 128]> = items.iter().map(|(_, p)| p.to_bytes()).collect();
    timed(&format!("decode + batch verify {n} (per batch)"), 5, || {
        let items: Vec<(RedeemPublic, RedeemProof)> = encoded
            .iter()
            .map(|e| {
                (
                    k.public,
                    RedeemProof::from_bytes(e).unwrap_or_else(|e| panic!("{e}")),
                )
            })
            .collect();
        assert!(verify_batch(&k.pvk, &items, rng).unwrap_or(false));
    });
}

fn benches(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(7);
    let cases: Vec<Case> = [10, 20, 32]
        .into_iter()
        .map(|b| case(b, &mut rng))
        .collect();
    cpu_time_table(&cases, &mut rng);

    // The same primitive as shared/BASELINES.md (14.8 µs there): the ratio of this run's time
    // to it says how busy the machine was.
    c.bench_function("reference/poseidon2_native", |b| {
        b.iter(|| smpx_core::crypto::poseidon2(Fr::from(1u64), Fr::from(2u64)))
    });

    let mut group = c.benchmark_group("prove");
    group.sample_size(10);
    for k in &cases {
        group.bench_function(format!("capacity_2^{}", k.bits), |b| {
            b.iter(|| {
                prove(&k.pk, &k.public, &k.witness, &mut rng).unwrap_or_else(|e| panic!("{e}"))
            })
        });
    }
    group.finish();

    // Verification at 2^32 (verification cost does not depend on the capacity).
    let k = &cases[2];
    let proofs: Vec<RedeemProof> = (0..8)
        .map(|_| prove(&k.pk, &k.public, &k.witness, &mut rng).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let bytes = proofs[0].to_bytes();
    println!("proof: {} bytes compressed", bytes.len());
    assert!(verify(&k.pvk, &k.public, &proofs[0]).unwrap_or(false));

    let mut group = c.benchmark_group("verify");
    group.bench_function("single", |b| {
        b.iter(|| verify(&k.pvk, &k.public, &proofs[0]).unwrap_or(false))
    });
    group.bench_function("decode_proof", |b| {
        b.iter(|| RedeemProof::from_bytes(&bytes).unwrap_or_else(|e| panic!("{e}")))
    });
    for n in [16usize, 64, 256] {
        let items: Vec<(RedeemPublic, RedeemProof)> = (0..n)
            .map(|i| (k.public, proofs[i % proofs.len()].clone()))
            .collect();
        let encoded: Vec<[u8; 128]> = items.iter().map(|(_, p)| p.to_bytes()).collect();
        group.bench_function(format!("batch_{n}"), |b| {
            b.iter(|| assert!(verify_batch(&k.pvk, &items, &mut rng).unwrap_or(false)))
        });
        group.bench_function(format!("decode_and_batch_{n}"), |b| {
            b.iter_batched(
                || encoded.clone(),
                |encoded| {
                    let items: Vec<(RedeemPublic, RedeemProof)> = encoded
                        .iter()
                        .map(|e| {
                            (
                                k.public,
                                RedeemProof::from_bytes(e).unwrap_or_else(|e| panic!("{e}")),
                            )
                        })
                        .collect();
                    assert!(verify_batch(&k.pvk, &items, &mut rng).unwrap_or(false))
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(prove_benches, benches);
criterion_main!(prove_benches);

//! Logic tests on small circuits (`L = 2` or `3`); sizes and times are in `benches/prove.rs`.

use super::*;
use ark_relations::gr1cs::ConstraintSystem;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use smpx_core::crypto::VoucherSecret;
use smpx_core::mmr::{Mmr, MmrParams};
use std::sync::OnceLock;

const LEVELS: u32 = 2;

fn rng() -> StdRng {
    StdRng::seed_from_u64(42)
}

fn secret(i: u64) -> VoucherSecret {
    VoucherSecret::random(&mut StdRng::seed_from_u64(1000 + i))
}

/// Denomination of voucher `i` in the fixture.
fn denom(i: u64) -> u64 {
    [1, 10, 100][(i % 3) as usize]
}

struct Fixture {
    pk: ProvingKey,
    pvk: PreparedVerifyingKey,
    mmr: Mmr,
    other: Mmr,
    same_leaves_other_id: Mmr,
}

fn params(id: u64) -> MmrParams {
    MmrParams { id, levels: LEVELS }
}

/// Keys for `L = 2` (capacity 15) and an MMR of 11 vouchers: mountains of 4, 4, 1, 1, 1.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let (pk, vk) = setup(LEVELS, &mut rng()).unwrap();
        let leaves = |offset: u64| {
            (0..11).map(move |i| commitment(&secret(i + offset), denom(i)).0.to_fr().unwrap())
        };
        Fixture {
            pk,
            pvk: vk.prepare(),
            mmr: Mmr::from_leaves(params(1), leaves(0)).unwrap(),
            other: Mmr::from_leaves(params(1), leaves(0).take(10).chain(leaves(50).skip(10)))
                .unwrap(),
            same_leaves_other_id: Mmr::from_leaves(params(2), leaves(0)).unwrap(),
        }
    })
}

fn statement(i: u64, operator: &str, fee: u64) -> (RedeemPublic, RedeemWitness) {
    let f = fixture();
    let s = secret(i);
    let path = f.mmr.proof(i).unwrap().circuit_path().unwrap();
    let public = RedeemPublic {
        root: f.mmr.root(),
        nullifier: nullifier(&s).0.to_fr().unwrap(),
        denomination: denom(i),
        binding: binding_hash(operator, fee),
    };
    (public, RedeemWitness { secret: s, path })
}

/// One proof per test binary run, reused by the tests that tamper with it.
fn proven() -> &'static (RedeemPublic, RedeemProof) {
    static P: OnceLock<(RedeemPublic, RedeemProof)> = OnceLock::new();
    P.get_or_init(|| {
        // Leaf 5: second mountain of height 1 — neither the first nor the last peak.
        let (public, witness) = statement(5, "operator-a", 30);
        let proof = prove(&fixture().pk, &public, &witness, &mut rng()).unwrap();
        (public, proof)
    })
}

/// Whether the circuit with these values is satisfied (a prove-mode system that builds its
/// matrices, so unsatisfied constraints are seen).
fn satisfied(public: RedeemPublic, witness: RedeemWitness) -> bool {
    let cs = ConstraintSystem::<Fr>::new_ref();
    RedeemCircuit {
        levels: LEVELS,
        public: Some(public),
        witness: Some(witness),
    }
    .generate_constraints(cs.clone())
    .unwrap();
    cs.finalize();
    cs.is_satisfied().unwrap()
}

#[test]
fn zk_valid_proof_verifies_and_is_128_bytes() {
    let f = fixture();
    let (public, proof) = proven();
    assert!(verify(&f.pvk, public, proof).unwrap());
    let bytes = proof.to_bytes();
    assert_eq!(bytes.len(), 128);
    let back = RedeemProof::from_bytes(&bytes).unwrap();
    assert_eq!(&back, proof);
    assert!(verify(&f.pvk, public, &back).unwrap());
    let json = serde_json::to_string(proof).unwrap();
    assert_eq!(json.len(), 2 + 171);
    assert_eq!(&serde_json::from_str::<RedeemProof>(&json).unwrap(), proof);
    assert!(serde_json::from_str::<RedeemProof>("\"AAAA\"").is_err());
}

#[test]
fn zk_circuit_accepts_every_leaf_and_rejects_a_wrong_slot() {
    // Every position (each mountain, each digit) satisfies the circuit: checked on the
    // constraint system, without proving.
    for i in 0..11 {
        let (public, witness) = statement(i, "op", 0);
        assert!(satisfied(public, witness), "leaf {i}");
    }
    // Selecting another peak slot, or claiming another digit, is unsatisfiable.
    let (public, mut witness) = statement(5, "op", 0);
    witness.path.slot = (witness.path.slot + 1) % witness.path.slots.len();
    assert!(!satisfied(public, witness));
    let (public, mut witness) = statement(2, "op", 0);
    witness.path.digits[0] ^= 1;
    assert!(!satisfied(public, witness));
    let (mut public, witness) = statement(2, "op", 0);
    public.denomination = 10;
    assert!(!satisfied(public, witness));
}

#[test]
fn zk_proof_is_bound_to_operator_denomination_nullifier_and_root() {
    let f = fixture();
    let (public, proof) = proven();
    let reject = |p: RedeemPublic| assert!(!verify(&f.pvk, &p, proof).unwrap(), "{p:?}");
    // Redirected to another operator, or another fee.
    reject(RedeemPublic {
        binding: binding_hash("operator-b", 30),
        ..*public
    });
    reject(RedeemPublic {
        binding: binding_hash("operator-a", 31),
        ..*public
    });
    // Another denomination.
    reject(RedeemPublic {
        denomination: public.denomination + 9,
        ..*public
    });
    // Tampered nullifier.
    reject(RedeemPublic {
        nullifier: public.nullifier + Fr::ONE,
        ..*public
    });
    // Another MMR's root, and this MMR's root at another size.
    reject(RedeemPublic {
        root: f.other.root(),
        ..*public
    });
    reject(RedeemPublic {
        root: f.mmr.root_at(10).unwrap(),
        ..*public
    });
    // The same vouchers in another MMR (another rotation epoch) have another root.
    reject(RedeemPublic {
        root: f.same_leaves_other_id.root(),
        ..*public
    });
}

#[test]
fn zk_prover_refuses_a_witness_that_does_not_fit() {
    let f = fixture();
    let (public, witness) = statement(3, "op", 0);
    // A leaf that is not in the MMR: the secret of another voucher on leaf 3's path.
    let mut wrong = witness.clone();
    wrong.secret = secret(77);
    let bad_nullifier = RedeemPublic {
        nullifier: nullifier(&wrong.secret).0.to_fr().unwrap(),
        ..public
    };
    assert!(matches!(
        prove(&f.pk, &bad_nullifier, &wrong, &mut rng()),
        Err(ZkError::WitnessMismatch(_))
    ));
    for bad in [
        RedeemPublic {
            root: f.other.root(),
            ..public
        },
        RedeemPublic {
            nullifier: Fr::ONE,
            ..public
        },
        RedeemPublic {
            denomination: denom(3) + 1,
            ..public
        },
    ] {
        assert!(matches!(
            prove(&f.pk, &bad, &witness, &mut rng()),
            Err(ZkError::WitnessMismatch(_))
        ));
    }
    let mut short = witness.clone();
    short.path.digits.clear();
    assert!(matches!(
        prove(&f.pk, &public, &short, &mut rng()),
        Err(ZkError::WitnessShape(_))
    ));
}

#[test]
fn zk_malformed_proof_bytes_are_rejected_with_typed_errors() {
    let (_, proof) = proven();
    let good = proof.to_bytes();
    for len in [0usize, 1, 64, 127, 129, 256] {
        let mut bytes = good.to_vec();
        bytes.resize(len, 0);
        assert_eq!(
            RedeemProof::from_bytes(&bytes),
            Err(ZkError::MalformedProof("a proof is exactly 128 bytes"))
        );
    }
    assert!(matches!(
        RedeemProof::from_bytes(&[0u8; 128]),
        Err(ZkError::MalformedProof(_))
    ));
    assert!(matches!(
        RedeemProof::from_bytes(&[0xffu8; 128]),
        Err(ZkError::MalformedProof(_))
    ));
    // The identity (arkworks' infinity flag) is refused even where it decodes.
    let mut inf = good;
    inf[..32].fill(0);
    inf[31] = 0x40;
    assert!(matches!(
        RedeemProof::from_bytes(&inf),
        Err(ZkError::MalformedProof(_))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn zk_random_or_flipped_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..160),
                                              pos in 0usize..128, bit in 0u8..8) {
        let _ = RedeemProof::from_bytes(&bytes);
        let mut flipped = proven().1.to_bytes();
        flipped[pos] ^= 1 << bit;
        // A flipped bit gives a malformed proof or a different, non-verifying one.
        if let Ok(p) = RedeemProof::from_bytes(&flipped) {
            prop_assert!(!verify(&fixture().pvk, &proven().0, &p).unwrap());
        }
    }
}

#[test]
fn zk_batch_verification() {
    let f = fixture();
    let mut rng = rng();
    let mut items = vec![proven().clone()];
    let (public, witness) = statement(10, "operator-c", 0);
    items.push((public, prove(&f.pk, &public, &witness, &mut rng).unwrap()));
    let (public, witness) = statement(0, "operator-a", 5);
    items.push((public, prove(&f.pk, &public, &witness, &mut rng).unwrap()));
    assert!(verify_batch(&f.pvk, &items, &mut rng).unwrap());
    assert!(verify_batch(&f.pvk, &items[..1], &mut rng).unwrap());
    assert!(verify_batch(&f.pvk, &[], &mut rng).unwrap());
    // One bad statement in the batch fails the batch; so do two swapped proofs.
    let mut bad = items.clone();
    bad[1].0.binding = binding_hash("operator-x", 0);
    assert!(!verify_batch(&f.pvk, &bad, &mut rng).unwrap());
    let mut swapped = items.clone();
    let p0 = swapped[0].1.clone();
    swapped[0].1 = swapped[2].1.clone();
    swapped[2].1 = p0;
    assert!(!verify_batch(&f.pvk, &swapped, &mut rng).unwrap());
}

#[test]
fn zk_keys_roundtrip_and_reject_garbage() {
    let f = fixture();
    let vk = f.pk.verifying_key();
    let bytes = vk.to_bytes().unwrap();
    assert_eq!(bytes.len(), 4 + 392);
    let back = VerifyingKey::from_bytes(&bytes).unwrap();
    assert_eq!(back, vk);
    assert_eq!(back.levels(), LEVELS);
    assert!(verify(&back.prepare(), &proven().0, &proven().1).unwrap());
    assert!(matches!(
        VerifyingKey::from_bytes(&bytes[..100]),
        Err(ZkError::MalformedKey(_))
    ));
    assert!(matches!(
        VerifyingKey::from_bytes(&[0, 0]),
        Err(ZkError::MalformedKey(_))
    ));
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(matches!(
        VerifyingKey::from_bytes(&trailing),
        Err(ZkError::MalformedKey(_))
    ));
    let mut bad_levels = bytes.clone();
    bad_levels[3] = 0;
    assert_eq!(
        VerifyingKey::from_bytes(&bad_levels),
        Err(ZkError::InvalidLevels(0))
    );
    let pk_bytes = f.pk.to_bytes().unwrap();
    assert_eq!(ProvingKey::from_bytes(&pk_bytes).unwrap(), f.pk);
    assert!(ProvingKey::from_bytes(&pk_bytes[..pk_bytes.len() - 1]).is_err());
}

#[test]
fn zk_binding_hash_is_canonical_and_injective_on_inputs() {
    let a = binding_hash("op", 1);
    assert_eq!(a, binding_hash("op", 1));
    assert_ne!(a, binding_hash("op", 2));
    assert_ne!(a, binding_hash("op2", 1));
    // Length-prefixed: moving bytes between the id and the fee changes the hash.
    assert_ne!(binding_hash("", 0), binding_hash("\0", 0));
    assert!(smpx_core::crypto::FieldBytes::from_fr(&a).0[0] < 0x20);
}

#[test]
fn zk_constraint_counts_in_setup_mode() {
    let small = constraint_count(LEVELS).unwrap();
    assert!(small > 1000 && small < 1500, "{small}");
    // Capacity 2^32 (L = 16) must fit the 8,192-point FFT domain with its 5 instance
    // variables.
    let big = constraint_count(16).unwrap();
    assert!(big + 5 <= 8192, "{big}");
    assert_eq!(constraint_count(1), Err(ZkError::InvalidLevels(1)));
}

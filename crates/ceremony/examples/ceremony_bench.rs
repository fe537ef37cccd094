//! Times a whole ceremony on a synthetic circuit (release mode):
//! `cargo run --release -p smpx-ceremony --example ceremony_bench -- <constraints> [contributors]`
//! (one thread; add `--features parallel` for all cores).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use ark_bn254::{Bn254, Fr};
use ark_ff::One;
use ark_groth16::Groth16;
use ark_relations::gr1cs::{
    ConstraintSynthesizer, ConstraintSystemRef, LinearCombination, SynthesisError, Variable,
};
use ark_snark::SNARK;
use rand_core::OsRng;
use smpx_ceremony::{verify_transcript, Beacon, Silent, Stage, Transcript};

/// `n` multiplications `x_{i+1} = (x_i + c_i)·(x_i + k_i·x_{i−1})` with constants
/// `c_i, k_i`, one public input (the start) and one public output.
#[derive(Clone)]
struct Synthetic {
    n: usize,
    start: Option<Fr>,
}

fn consts(i: usize) -> (Fr, Fr) {
    (Fr::from(i as u64 * 7 + 3), Fr::from(i as u64 * 13 + 5))
}

impl Synthetic {
    fn output(&self) -> Fr {
        let (mut prev, mut x) = (Fr::one(), self.start.unwrap_or_default());
        for i in 0..self.n {
            let (c, k) = consts(i);
            let next = (x + c) * (x + k * prev);
            prev = x;
            x = next;
        }
        x
    }
}

impl ConstraintSynthesizer<Fr> for Synthetic {
    fn generate_constraints(self, cs: ConstraintSystemRef<Fr>) -> Result<(), SynthesisError> {
        let val = |o: Option<Fr>| o.ok_or(SynthesisError::AssignmentMissing);
        let start = self.start;
        let mut x = cs.new_input_variable(|| val(start))?;
        let mut prev = Variable::One;
        let (mut pv, mut xv) = (Some(Fr::one()), start);
        for i in 0..self.n {
            let (c, k) = consts(i);
            let nv = match (xv, pv) {
                (Some(xv), Some(pv)) => Some((xv + c) * (xv + k * pv)),
                _ => None,
            };
            let y = cs.new_witness_variable(|| val(nv))?;
            cs.enforce_r1cs_constraint(
                || LinearCombination::from_sum_coeff_vars(&[(Fr::one(), x), (c, Variable::One)]),
                || LinearCombination::from_sum_coeff_vars(&[(Fr::one(), x), (k, prev)]),
                || LinearCombination::from_sum_coeff_vars(&[(Fr::one(), y)]),
            )?;
            (prev, x, pv, xv) = (x, y, xv, nv);
        }
        let out = cs.new_input_variable(|| val(xv))?;
        cs.enforce_r1cs_constraint(
            || LinearCombination::from_sum_coeff_vars(&[(Fr::one(), x)]),
            || LinearCombination::from_sum_coeff_vars(&[(Fr::one(), Variable::One)]),
            || LinearCombination::from_sum_coeff_vars(&[(Fr::one(), out)]),
        )
    }
}

/// This process's CPU time (user + system, all threads) in seconds, from /proc (Linux).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

fn time<T>(label: &str, f: impl FnOnce() -> T) -> T {
    let (t, c) = (Instant::now(), cpu_seconds());
    let out = f();
    println!(
        "{label:<44} {:>9.3} s wall {:>9.2} s cpu",
        t.elapsed().as_secs_f64(),
        cpu_seconds() - c
    );
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).map_or(16_000, |s| s.parse().unwrap());
    let contributors: usize = args.get(2).map_or(3, |s| s.parse().unwrap());
    let blank = Synthetic { n, start: None };
    let needed = (n + 1 + 3).next_power_of_two();
    let power = needed.trailing_zeros();
    println!(
        "circuit: {} constraints, domain 2^{power}; {contributors} contributors per phase; parallel feature: {}",
        n + 1,
        cfg!(feature = "parallel")
    );
    let beacon = Beacon::from_hex(
        "00000000000000000000a0f3d0d1e0c4b7e7a3a1f7d2b0e5c1a9d8f3e2b1c0d9",
        10,
    )
    .unwrap();

    let mut t = Transcript::new(power).unwrap();
    for i in 0..contributors {
        time(&format!("phase 1 contribute #{i}"), || {
            t.contribute("bench", b"", &Silent).unwrap()
        });
    }
    time("phase 1 verify latest contribution", || {
        t.verify_latest(&Silent).unwrap()
    });
    time("phase 1 beacon (2^10 hashes)", || {
        t.finalize(&beacon, &Silent).unwrap()
    });
    let t0 = Instant::now();
    let steps = |stage: Stage, done: u64, total: u64| {
        if stage == Stage::PreparePhase2 {
            println!(
                "  {stage} {done}/{total} at {:.3} s",
                t0.elapsed().as_secs_f64()
            );
        }
    };
    time("phase 2 begin (Lagrange basis + queries)", || {
        t.begin_phase2(blank.clone(), &steps).unwrap()
    });
    for i in 0..contributors {
        time(&format!("phase 2 contribute #{i}"), || {
            t.contribute("bench", b"", &Silent).unwrap()
        });
    }
    time("phase 2 verify latest contribution", || {
        t.verify_latest(&Silent).unwrap()
    });
    time("phase 2 beacon", || t.finalize(&beacon, &Silent).unwrap());
    let bytes = time("serialise transcript", || t.to_bytes().unwrap());
    println!("transcript size: {:.1} MB", bytes.len() as f64 / 1e6);
    let back = time("deserialise + validate points", || {
        Transcript::from_bytes(&bytes).unwrap()
    });
    let (pk, vk) = time("verify_transcript (everything from scratch)", || {
        verify_transcript(blank.clone(), &back, &Silent).unwrap()
    });

    let start = Fr::from(5u64);
    let circuit = Synthetic {
        n,
        start: Some(start),
    };
    let out = circuit.output();
    let proof = time("Groth16 prove with the ceremony keys", || {
        Groth16::<Bn254>::prove(&pk, circuit, &mut OsRng).unwrap()
    });
    let ok = Groth16::<Bn254>::verify(&vk, &[start, out], &proof).unwrap();
    println!("proof verifies: {ok}");
    assert!(ok);
}

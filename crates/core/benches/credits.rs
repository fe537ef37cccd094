//! Timing of the operator-credit primitives, per core and on two threads:
//!
//! ```text
//! cargo bench -p smpx-core --bench credits
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use rand::rngs::OsRng;
use sha2::Digest;

use smpx_core::credits::keyset::{KeyRing, KeysetParams, MasterSecret};
use smpx_core::credits::swap::{check_swap, sign_outputs, SwapLimits};
use smpx_core::credits::wallet::{finalize_all, random_outputs, PreparedOutput};
use smpx_core::credits::wire::{BlindedMessage, Proof, SwapRequest};
use smpx_core::{Amount, DAY};

const NOW: u64 = 20_000 * DAY + 3_600;

/// Median per-operation time over `rounds` batches of `batch` operations.
fn median_per_op(rounds: usize, batch: usize, mut f: impl FnMut(usize)) -> Duration {
    let mut samples: Vec<Duration> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for i in 0..batch {
                f(i);
            }
            start.elapsed() / u32::try_from(batch).unwrap()
        })
        .collect();
    samples.sort();
    samples[samples.len() / 2]
}

fn report(name: &str, d: Duration) {
    let us = d.as_secs_f64() * 1e6;
    println!("{name:<58} {us:>9.1} µs  {:>9.0} /s/core", 1e6 / us);
}

fn messages(prepared: &[PreparedOutput]) -> Vec<BlindedMessage> {
    prepared.iter().map(|p| p.message.clone()).collect()
}

fn main() {
    let start = Instant::now();
    let ring = KeyRing::new(
        MasterSecret::from_bytes([9u8; 32]),
        KeysetParams::default(),
        NOW,
    )
    .unwrap();
    println!(
        "key ring (98 days x 40 keys) derived in {:.1} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    let keyset = ring.current(NOW).unwrap();
    let id = *keyset.id();

    // SHA-256 measured in the same run: a yardstick for how loaded the machine is.
    report(
        "SHA-256 of 32 bytes",
        median_per_op(21, 4096, |i| {
            std::hint::black_box(sha2::Sha256::digest((i as u64).to_le_bytes()));
        }),
    );
    let n = 512;
    let amounts: Vec<Amount> = (0..n).map(|i| Amount(1 << (i % 40))).collect();
    let prepared = random_outputs(&mut OsRng, &id, &amounts).unwrap();
    let msgs = messages(&prepared);

    report(
        "hash_to_curve (64-char secret)",
        median_per_op(21, n, |i| {
            prepared[i].secret.y().unwrap();
        }),
    );
    report(
        "wallet: prepare output (hash_to_curve + blind)",
        median_per_op(21, 64, |_| {
            random_outputs(&mut OsRng, &id, &[Amount(1)]).unwrap();
        }),
    );
    report(
        "operator: sign one output (C' = kB' + DLEQ)",
        median_per_op(21, n, |i| {
            keyset.sign(&msgs[i]).unwrap();
        }),
    );
    let sigs = sign_outputs(&msgs, &ring).unwrap();
    let keys = keyset.keys();
    report(
        "wallet: check DLEQ + unblind one signature",
        median_per_op(21, n, |i| {
            prepared[i].finalize(&sigs[i], &keys).unwrap();
        }),
    );
    let tokens: Vec<Proof> = finalize_all(&prepared, &sigs, &keys)
        .unwrap()
        .iter()
        .map(Proof::for_spending)
        .collect();
    report(
        "operator: verify one token (C == k·hash_to_curve(x))",
        median_per_op(21, n, |i| {
            keyset.verify(&tokens[i]).unwrap();
        }),
    );

    // A typical spend: 8 inputs, 4 change outputs; checks only (no signing).
    let inputs: Vec<Proof> = tokens[..8].to_vec();
    let total: u64 = inputs.iter().map(|p| p.amount.0).sum();
    let change = random_outputs(
        &mut OsRng,
        &id,
        &smpx_core::credits::split(Amount(total / 2), 40)[..],
    )
    .unwrap();
    let request = SwapRequest {
        inputs,
        outputs: messages(&change),
    };
    let fee = Amount(total - change.iter().map(|c| c.message.amount.0).sum::<u64>());
    let limits = SwapLimits::default();
    let d = median_per_op(21, 32, |_| {
        check_swap(&request, &ring, NOW, fee, &limits).unwrap();
    });
    report(
        &format!(
            "operator: check_swap {} in / {} out, per input",
            request.inputs.len(),
            request.outputs.len()
        ),
        d / 8,
    );

    // Throughput of signing on every core (2 on the reference machine).
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let per_thread = 4_000;
    let big: Vec<BlindedMessage> = (0..per_thread)
        .map(|i| msgs[i % msgs.len()].clone())
        .collect();
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for m in &big {
                    keyset.sign(m).unwrap();
                }
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    println!(
        "sign + DLEQ on {threads} threads: {:.0} outputs/s",
        (threads * per_thread) as f64 / secs
    );
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for i in 0..per_thread {
                    keyset.verify(&tokens[i % tokens.len()]).unwrap();
                }
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    println!(
        "token verify on {threads} threads: {:.0} tokens/s",
        (threads * per_thread) as f64 / secs
    );
}

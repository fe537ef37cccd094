//! Golden vectors of the credit wire shapes smpx itself defines or fixes: the operator's
//! keyset derivation (not a NUT), and the exact JSON of the keys, blinded messages, blind
//! signatures with DLEQ, tokens and swaps that wallet and operator exchange. The Cashu
//! primitives under them are checked against the NUT vectors (`nut00/02/12/13.json`); this
//! file is `testdata/smpx_wire.json`, made by this code, checked here and never rewritten by
//! a test. To add a vector: edit [`build`], run
//! `SMPX_PRINT_VECTORS=1 cargo test -p smpx-core --lib print_credit_wire_vectors -- --nocapture`
//! and paste. Never change an existing vector: that is a wire change.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use super::keyset::{Day, Keyset, KeysetIdVersion, KeysetKeys, KeysetParams, MasterSecret};
use super::wallet::deterministic_outputs;
use super::wire::{BlindSignature, BlindedMessage, Proof, SwapRequest, SwapResponse};
use crate::crypto::WalletSeed;
use crate::Amount;

const VECTORS: &str = include_str!("testdata/smpx_wire.json");

fn master() -> MasterSecret {
    MasterSecret::from_bytes(std::array::from_fn(|i| i as u8))
}

fn seed() -> WalletSeed {
    WalletSeed::from_bytes(std::array::from_fn(|i| 0xa0 ^ i as u8))
}

const DAY: Day = Day(20_454);

fn small_params(id_version: KeysetIdVersion) -> KeysetParams {
    KeysetParams {
        orders: 4,
        id_version,
        ..KeysetParams::default()
    }
}

fn text<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap()
}

/// Every vector, from the fixed master secret, wallet seed and day.
fn build() -> Value {
    let default = Keyset::derive(&master(), DAY, &KeysetParams::default()).unwrap();
    let default_keys = default.keys();
    let v1 = Keyset::derive(&master(), DAY, &small_params(KeysetIdVersion::V1)).unwrap();
    let ks = Keyset::derive(&master(), DAY, &small_params(KeysetIdVersion::V2)).unwrap();
    let keys = ks.keys();

    let outputs = deterministic_outputs(&seed(), ks.id(), 0, &[Amount(1), Amount(4)]).unwrap();
    let signatures: Vec<BlindSignature> = outputs
        .iter()
        .map(|o| ks.sign(&o.message).unwrap())
        .collect();
    let proofs: Vec<Proof> = outputs
        .iter()
        .zip(&signatures)
        .map(|(o, s)| o.finalize(s, &keys).unwrap())
        .collect();
    let change = deterministic_outputs(&seed(), ks.id(), 2, &[Amount(2)]).unwrap();
    let swap = SwapRequest {
        inputs: proofs.iter().map(Proof::for_spending).collect(),
        outputs: change.iter().map(|o| o.message.clone()).collect(),
    };
    let change_sig = SwapResponse {
        signatures: vec![ks.sign(&change[0].message).unwrap()],
        replayed: false,
    };
    let replayed = SwapResponse {
        replayed: true,
        ..change_sig.clone()
    };

    json!({
        "master_secret": hex::encode(master().as_bytes()),
        "wallet_seed": hex::encode(std::array::from_fn::<u8, 64, _>(|i| 0xa0 ^ i as u8)),
        "day": DAY.0,
        "default_keyset": {
            "params": "KeysetParams::default() (90 days, 2^0..2^39, id version 01)",
            "id": default.id().to_hex(),
            "final_expiry": default.final_expiry(),
            "key_1": default_keys.keys[&Amount(1)].to_hex(),
            "key_2^39": default_keys.keys[&Amount(1 << 39)].to_hex(),
        },
        "small_keyset_v1_id": v1.id().to_hex(),
        "small_keyset": text(&keys),
        "outputs": outputs.iter().zip(&signatures).zip(&proofs).map(|((o, s), p)| json!({
            "counter": o.counter,
            "secret": o.secret.as_str(),
            "r": hex::encode(o.r.to_bytes()),
            "blinded_message": text(&o.message),
            "blind_signature": text(s),
            "token": text(p),
            "token_for_spending": text(&p.for_spending()),
        })).collect::<Vec<_>>(),
        "swap_request": text(&swap),
        "swap_response": text(&change_sig),
        "swap_response_replayed": text(&replayed),
    })
}

/// Parses `json` as `T` and checks it encodes back to exactly `json`.
fn roundtrip<T: Serialize + DeserializeOwned>(json: &Value) -> T {
    let json = json.as_str().unwrap();
    let parsed: T = serde_json::from_str(json).unwrap();
    assert_eq!(text(&parsed), json);
    parsed
}

#[test]
fn credits_smpx_wire_vectors() {
    let v: Value = serde_json::from_str(VECTORS).unwrap();
    // Reading: every wire string parses and re-encodes to itself, and means what it says.
    let keys: KeysetKeys = roundtrip(&v["small_keyset"]);
    keys.verify_id().unwrap();
    let ks = Keyset::derive(&master(), DAY, &small_params(KeysetIdVersion::V2)).unwrap();
    for o in v["outputs"].as_array().unwrap() {
        let message: BlindedMessage = roundtrip(&o["blinded_message"]);
        let signature: BlindSignature = roundtrip(&o["blind_signature"]);
        let token: Proof = roundtrip(&o["token"]);
        let spending: Proof = roundtrip(&o["token_for_spending"]);
        assert_eq!(spending, token.for_spending());
        super::dleq::verify(
            keys.key(message.amount).unwrap(),
            &message.blinded_secret,
            &signature.blind_signature,
            &signature.dleq,
        )
        .unwrap();
        token.verify_dleq(&keys).unwrap();
        ks.verify(&spending).unwrap();
    }
    let swap: SwapRequest = roundtrip(&v["swap_request"]);
    assert_eq!(swap.inputs.len(), 2);
    let _: SwapResponse = roundtrip(&v["swap_response"]);
    let replayed: SwapResponse = roundtrip(&v["swap_response_replayed"]);
    assert!(replayed.replayed);

    // Writing: the same inputs give the same bytes, field by field.
    let built = build();
    for (field, value) in v.as_object().unwrap() {
        if field.starts_with('_') {
            continue;
        }
        assert_eq!(&built[field], value, "{field}");
    }
    assert_eq!(
        built.as_object().unwrap().len(),
        v.as_object().unwrap().len() - 1
    );
}

#[test]
fn print_credit_wire_vectors() {
    if std::env::var_os("SMPX_PRINT_VECTORS").is_none() {
        return;
    }
    println!("{}", serde_json::to_string_pretty(&build()).unwrap());
}

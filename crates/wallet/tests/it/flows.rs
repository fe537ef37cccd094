//! The wallet's flows against the real coordinator, issuer and operator (the test kit's
//! network, with two open MMRs and a clock that moves only when told), each behind a
//! [`Proxy`]: the proxies make a service refuse, lose an answer, or lie (signing the lie
//! with its own key), so the wallet's retry and verification paths run against what the
//! services really do, and they count what the wallet downloaded.

use crate::support::id_of;
use sha2::{Digest, Sha256};
use smpx_core::api::*;
use smpx_core::crypto::sign::SigningKey;
use smpx_core::crypto::{FieldBytes, Fr};
use smpx_core::mmr::{Mmr, MmrParams};
use smpx_core::receipt::{
    Signed, CHECKPOINT_DOMAIN, OPERATOR_DOMAIN, PUBLISH_DOMAIN, REDEMPTION_DOMAIN,
};
use smpx_core::{Amount, ErrorCode, NetworkParams};
use smpx_http::{ApiClient, Clock, ManualClock, SystemClock};
use smpx_testkit::net::{Network, Options, Service, ISSUER_ID, OPERATOR_ID};
use smpx_testkit::proxy::{Proxy, Seen};
use smpx_testkit::Backend;
use smpx_wallet::{
    KdfParams, LocalState, MmrChoice, RedeemOptions, RedeemProgress, Wallet, WalletError,
};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

const PASS: &str = "pw";
/// MMR levels of the network (capacity 63): small, so the ceremony and proofs are quick.
const LEVELS: u32 = smpx_testkit::ceremony::LEVELS;
const DAY: u64 = 86_400;

/// The ceremony's proving key, serialized as the wallet caches it, and its transcript hash.
fn proving_key() -> &'static (Vec<u8>, String) {
    static C: OnceLock<(Vec<u8>, String)> = OnceLock::new();
    C.get_or_init(|| {
        let k = smpx_testkit::ceremony::keys(LEVELS).unwrap();
        let hash = hex::encode(Sha256::digest(&k.transcript));
        (k.proving_key.to_bytes().unwrap(), hash)
    })
}

/// Puts the ceremony's proving key in the wallet's key cache, as an earlier redemption
/// would have: the wallet then skips downloading and verifying the transcript (which the
/// tests that start from an empty cache exercise).
fn warm_key_cache(dir: &tempfile::TempDir) {
    let (pk, hash) = proving_key();
    let keys = dir.path().join("zk-keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join(format!("{hash}.pk")), pk).unwrap();
}

/// The real network, each service behind a proxy the wallet talks to.
struct Net {
    net: Network,
    clock: ManualClock,
    coordinator: Proxy,
    issuer: Proxy,
    operator: Proxy,
    /// Other people's wallet (see [`Net::others_publish`]).
    others: Wallet,
    _dir: tempfile::TempDir,
}

async fn network() -> Net {
    // Made once per test binary, before any request needs it (it takes a while).
    tokio::task::spawn_blocking(proving_key).await.unwrap();
    let t = SystemClock.now();
    let clock = ManualClock::new(t);
    // MMRs rotate weekly, so two are open (0 and 1) and every voucher is in both.
    let params = NetworkParams {
        epoch: t - 10 * DAY,
        protocol_versions: vec![1, 2],
        mmr_period_secs: 7 * DAY,
        mmr_levels: LEVELS,
        ..NetworkParams::default()
    };
    let net = Network::start_with(Options {
        params,
        clock: Arc::new(clock.clone()),
        ..Options::new(Backend::Sqlite)
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (others, _) = Wallet::create_with(
        &dir.path().join("others.db"),
        PASS,
        KdfParams::insecure_for_tests(),
    )
    .await
    .unwrap();
    Net {
        coordinator: Proxy::start(&net.coordinator_url).await.unwrap(),
        issuer: Proxy::start(&net.issuer_url).await.unwrap(),
        operator: Proxy::start(&net.operator_url).await.unwrap(),
        net,
        clock,
        others,
        _dir: dir,
    }
}

impl Net {
    fn c(&self) -> &str {
        self.coordinator.url()
    }
    fn i(&self) -> &str {
        self.issuer.url()
    }
    fn o(&self) -> &str {
        self.operator.url()
    }

    /// `n` top-up codes for 10 credits each, minted by the issuer's admin.
    async fn codes(&self, n: u32) -> Vec<String> {
        let r: MintCodesResponse = ApiClient::new(&self.net.issuer_url)
            .with_token(self.net.issuer_admin_token.clone())
            .post(
                "/v1/admin/topup-codes",
                &MintCodesRequest {
                    denomination: 10,
                    count: n,
                },
            )
            .await
            .unwrap();
        r.codes
    }

    /// Other people buy and publish `n` vouchers now (straight at the services).
    async fn others_publish(&self, n: u64) {
        for _ in 0..n {
            buy_and_publish(
                &self.others,
                &self.net.coordinator_url,
                &self.net.issuer_url,
            )
            .await;
        }
    }

    /// The coordinator's status of a voucher (asked directly, not through the proxy).
    async fn status(&self, commitment: &str) -> VoucherStatus {
        ApiClient::new(&self.net.coordinator_url)
            .get(&format!("/v1/vouchers/{commitment}"))
            .await
            .unwrap()
    }

    /// MMR `id` as the coordinator holds it, rebuilt from its leaves.
    async fn mmr(&self, id: u64) -> Mmr {
        let page: LeavesPage = ApiClient::new(&self.net.coordinator_url)
            .get(&format!("/v1/mmrs/{id}/leaves"))
            .await
            .unwrap();
        let leaves: Vec<Fr> = page.leaves.iter().map(|l| l.to_fr().unwrap()).collect();
        Mmr::from_leaves(MmrParams::new(id, LEVELS).unwrap(), leaves).unwrap()
    }

    async fn root(&self, id: u64, size: u64) -> FieldBytes {
        FieldBytes::from_fr(&self.mmr(id).await.root_at(size).unwrap())
    }

    /// The v0.2 redemptions the wallet sent the operator, in order (retries included).
    fn zk_sent(&self) -> Vec<ZkRedemption> {
        self.operator
            .bodies("POST", "/v1/redeem")
            .iter()
            .filter_map(|b| serde_json::from_slice::<RedeemRequest>(b).unwrap().zk)
            .collect()
    }

    /// How many leaves of MMR `id` the wallet downloaded.
    fn leaves_downloaded(&self, id: u64) -> usize {
        self.coordinator
            .exchanges("GET", &format!("/v1/mmrs/{id}/leaves"))
            .iter()
            .map(|s| {
                serde_json::from_slice::<LeavesPage>(&s.answer)
                    .unwrap()
                    .leaves
                    .len()
            })
            .sum()
    }

    fn transcript_downloads(&self) -> usize {
        self.coordinator.exchanges("GET", "/v1/zk/transcript").len()
    }
}

fn code(c: &str) -> Payment {
    Payment::TopupCode { code: c.into() }
}

/// A new wallet in `dir`, whose proving-key cache is warm (see [`warm_key_cache`]).
async fn new_wallet(dir: &tempfile::TempDir, name: &str) -> (Wallet, String) {
    warm_key_cache(dir);
    cold_wallet(dir, name).await
}

/// A new wallet that has never seen the ceremony keys.
async fn cold_wallet(dir: &tempfile::TempDir, name: &str) -> (Wallet, String) {
    Wallet::create_with(
        &dir.path().join(name),
        PASS,
        KdfParams::insecure_for_tests(),
    )
    .await
    .unwrap()
}

/// `signed` re-signed with `key` (a receipt from someone else), as JSON.
fn resign<T: serde::Serialize + serde::de::DeserializeOwned>(
    answer: &[u8],
    domain: &str,
    key: &SigningKey,
    edit: impl FnOnce(&mut T),
) -> Vec<u8> {
    let mut s: Signed<T> = serde_json::from_slice(answer).unwrap();
    edit(&mut s.body);
    serde_json::to_vec(&Signed::sign(key, domain, s.body).unwrap()).unwrap()
}

#[tokio::test]
async fn buy_publish_redeem_refresh() {
    let net = network().await;
    let dir = tempfile::tempdir().unwrap();
    let (w, _) = new_wallet(&dir, "w.db").await;
    let codes = net.codes(1).await;

    let v = w.buy(net.c(), net.i(), 10, code(&codes[0])).await.unwrap();
    assert_eq!(v.state, LocalState::Bought);
    assert_eq!((v.index, v.denomination), (0, 10));
    assert_eq!(v.issuer_id, ISSUER_ID);
    // The key and deadline are the coordinator's current ones for this issuer.
    let keys: Vec<IssuerKeyInfo> = ApiClient::new(&net.net.coordinator_url)
        .get(&format!(
            "/v1/issuer-keys?issuer={ISSUER_ID}&denomination=10"
        ))
        .await
        .unwrap();
    let current = keys.iter().find(|k| k.key_id == v.key_id).unwrap();
    assert_eq!(v.publish_deadline, Some(current.publish_deadline));

    // Redeeming before publishing is refused.
    let e = w
        .redeem_with(net.c(), net.o(), v.id, &small(), &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(e, WalletError::InvalidState { .. }), "{e}");

    let v = w
        .publish(net.c(), v.id, Duration::from_millis(10))
        .await
        .unwrap();
    assert_eq!(v.state, LocalState::Published);
    assert!(v.published_at.is_some() && v.expires_at > v.published_at);
    let e = w.publish(net.c(), v.id, Duration::ZERO).await.unwrap_err();
    assert!(matches!(e, WalletError::InvalidState { .. }), "{e}");

    let credit = w
        .redeem_with(net.c(), net.o(), v.id, &small(), &|_| {})
        .await
        .unwrap();
    assert_eq!(credit.operator_id, OPERATOR_ID);
    assert_eq!(credit.credited, Amount::from_credits(10).unwrap());
    assert_eq!(
        credit.signed_receipt().unwrap().body.operator_id,
        OPERATOR_ID
    );
    let v = w.voucher(v.id).await.unwrap();
    assert_eq!(v.state, LocalState::Redeemed);
    assert_eq!(v.redeemed_at_operator.as_deref(), Some(OPERATOR_ID));
    assert_eq!(w.credits().await.unwrap(), vec![credit.clone()]);

    // A second voucher, published, then released by the coordinator at its expiry.
    let v2 = w.buy(net.c(), net.i(), 10, Payment::Devnet).await.unwrap();
    assert_eq!(v2.index, 1);
    let v2 = w.publish(net.c(), v2.id, Duration::ZERO).await.unwrap();
    assert!(w.refresh(net.c()).await.unwrap().is_empty());
    net.clock.set(v2.expires_at.unwrap() + 2 * 365 * DAY);
    let (released, _) = net.net.coordinator.release_expired().await.unwrap();
    assert!(released >= 1);
    assert_eq!(
        net.status(&v2.commitment).await.state,
        VoucherState::Released
    );
    let changed = w.refresh(net.c()).await.unwrap();
    assert_eq!(changed.len(), 1);
    assert_eq!(
        (changed[0].id, changed[0].state),
        (v2.id, LocalState::Expired)
    );

    let b = w.balance().await.unwrap();
    assert_eq!(b.redeemed.count, 1);
    assert_eq!(b.expired.count, 1);
    assert_eq!(b.published.count, 0);
    assert_eq!(b.credits[OPERATOR_ID], Amount::from_credits(10).unwrap());
    let json = serde_json::to_value(&b).unwrap();
    assert_eq!(json["redeemed"]["value"], 10_000_000);
}

#[tokio::test]
async fn failed_purchase_stays_buying_and_resumes_without_paying_twice() {
    let net = network().await;
    let dir = tempfile::tempdir().unwrap();
    let (w, _) = new_wallet(&dir, "w.db").await;
    let codes = net.codes(3).await;

    // The issuer refuses before signing.
    net.issuer
        .refuse_next("POST", "/v1/purchases", ErrorCode::UpstreamUnavailable);
    let e = w
        .buy(net.c(), net.i(), 10, code(&codes[0]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::UpstreamUnavailable));
    let v = w.vouchers().await.unwrap().remove(0);
    assert_eq!(v.state, LocalState::Buying);
    let v = w.resume_buy(net.i(), v.id, code(&codes[0])).await.unwrap();
    assert_eq!(v.state, LocalState::Bought);

    // The issuer signs but the answer is lost: the retry gets the same signature for the
    // same code and blinded message, and the code is not spent twice.
    net.issuer.lose_next("POST", "/v1/purchases");
    assert!(w.buy(net.c(), net.i(), 10, code(&codes[1])).await.is_err());
    let pending = w
        .vouchers()
        .await
        .unwrap()
        .into_iter()
        .find(|v| v.state == LocalState::Buying)
        .unwrap();
    assert_eq!(pending.index, 1);
    let v = w
        .resume_buy(net.i(), pending.id, code(&codes[1]))
        .await
        .unwrap();
    assert_eq!(v.state, LocalState::Bought);
    let answers = net.issuer.exchanges("POST", "/v1/purchases");
    let sig = |s: &Seen| serde_json::from_slice::<PurchaseResponse>(&s.answer).ok();
    let signed: Vec<_> = answers.iter().filter_map(sig).collect();
    assert_eq!(
        signed.len(),
        2,
        "the first code and the retry; the lost answer and the refusal got none"
    );
    // The code is spent: another voucher cannot be paid with it.
    let e = w
        .buy(net.c(), net.i(), 10, code(&codes[1]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::PaymentRejected), "{e}");
    // A resumed voucher is a real one: it publishes.
    let v = w.publish(net.c(), v.id, Duration::ZERO).await.unwrap();
    assert_eq!(v.state, LocalState::Published);

    // Denominations the issuer does not sell are refused before anything is reserved.
    let next = w.next_index().await.unwrap();
    let e = w
        .buy(net.c(), net.i(), 7, code(&codes[2]))
        .await
        .unwrap_err();
    assert!(
        matches!(e, WalletError::UnsupportedDenomination { .. }),
        "{e}"
    );
    // No current key at the coordinator: refused, nothing reserved.
    net.coordinator
        .rewrite_next("GET", "/v1/issuer-keys", |_| (200, b"[]".to_vec()));
    let e = w
        .buy(net.c(), net.i(), 10, code(&codes[2]))
        .await
        .unwrap_err();
    assert!(matches!(e, WalletError::NoIssuerKey { .. }), "{e}");
    assert_eq!(w.next_index().await.unwrap(), next);
}

#[tokio::test]
async fn receipts_that_do_not_verify_are_refused() {
    let net = network().await;
    let dir = tempfile::tempdir().unwrap();
    let (w, _) = new_wallet(&dir, "w.db").await;
    let v = w.buy(net.c(), net.i(), 10, Payment::Devnet).await.unwrap();

    // A publish receipt signed by someone else.
    let stranger = SigningKey::generate(&mut rand::rngs::OsRng);
    net.coordinator
        .rewrite_next("POST", "/v1/vouchers", move |s| {
            let body = resign::<PublishReceipt>(&s.answer, PUBLISH_DOMAIN, &stranger, |_| {});
            (s.status, body)
        });
    let e = w.publish(net.c(), v.id, Duration::ZERO).await.unwrap_err();
    assert!(matches!(e, WalletError::Verification(_)), "{e}");
    assert_eq!(w.voucher(v.id).await.unwrap().state, LocalState::Bought);
    // (The coordinator did record it; the retry confirms through the status.)
    w.publish(net.c(), v.id, Duration::ZERO).await.unwrap();

    // The operator answers with a coordinator receipt (properly signed) for another
    // redemption than the one the wallet sent.
    let coordinator_key = net.net.receipt_key(Service::Coordinator).unwrap();
    let operator_key = net.net.receipt_key(Service::Operator).unwrap();
    net.operator.rewrite_next("POST", "/v1/redeem", move |s| {
        let body =
            resign::<OperatorCreditReceipt>(&s.answer, OPERATOR_DOMAIN, &operator_key, |r| {
                let mut c = r.coordinator_receipt.body.clone();
                c.envelope_digest = [7; 32];
                r.coordinator_receipt =
                    Signed::sign(&coordinator_key, REDEMPTION_DOMAIN, c).unwrap();
            });
        (s.status, body)
    });
    let e = w
        .redeem_with(net.c(), net.o(), v.id, &RedeemOptions::v1(), &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(e, WalletError::Verification(_)), "{e}");
    assert!(e.to_string().contains("another redemption"), "{e}");
    assert!(w.credits().await.unwrap().is_empty());
    assert_eq!(w.voucher(v.id).await.unwrap().state, LocalState::Published);
}

#[tokio::test]
async fn restore_and_recover_finds_published_vouchers() {
    let net = network().await;
    let dir = tempfile::tempdir().unwrap();
    let (w, phrase) = new_wallet(&dir, "a.db").await;
    // index 0: published; 1: bought only; 2: redeemed; 3: published.
    let v0 = published(&w, &net).await;
    let _v1 = w.buy(net.c(), net.i(), 10, Payment::Devnet).await.unwrap();
    let v2 = published(&w, &net).await;
    // Protocol 1, so the coordinator knows which voucher it was (a protocol-2 redemption
    // leaves the voucher's status `live`: recovery then finds it published).
    w.redeem_with(net.c(), net.o(), v2.id, &RedeemOptions::v1(), &|_| {})
        .await
        .unwrap();
    let v3 = published(&w, &net).await;

    let r = Wallet::restore_with(
        &dir.path().join("b.db"),
        "new pass",
        &phrase,
        KdfParams::insecure_for_tests(),
    )
    .await
    .unwrap();
    assert!(r.vouchers().await.unwrap().is_empty());
    let lookups_before = lookups(&net);
    let scanned = Mutex::new(Vec::new());
    let found = r
        .recover(net.c(), 3, &|i| scanned.lock().unwrap().push(i))
        .await
        .unwrap();
    let got: HashSet<(u64, String, LocalState)> = found
        .iter()
        .map(|v| (v.index, v.commitment.clone(), v.state))
        .collect();
    let want: HashSet<(u64, String, LocalState)> = [
        (0, v0.commitment.clone(), LocalState::Published),
        (2, v2.commitment.clone(), LocalState::Redeemed),
        (3, v3.commitment.clone(), LocalState::Published),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, want);
    // Index 1 (never published) was a gap; the scan went 3 past the last find.
    assert_eq!(*scanned.lock().unwrap(), vec![0, 1, 2, 3, 4, 5, 6]);
    // Each index scanned was looked up at the coordinator: the four gaps at every
    // denomination, the three finds at one or more.
    let denominations = net.net.params().denominations.len();
    let asked = lookups(&net) - lookups_before;
    assert!(
        (4 * denominations + 3..=7 * denominations).contains(&asked),
        "{asked} lookups"
    );
    assert_eq!(r.next_index().await.unwrap(), 4);
    // The recovered vouchers are usable: redeem one.
    let rv0 = found.iter().find(|v| v.index == 0).unwrap();
    assert_eq!(
        rv0.issuer_id, ISSUER_ID,
        "recovered vouchers name their issuer"
    );
    assert_eq!(rv0.key_id, v0.key_id);
    r.redeem_with(net.c(), net.o(), rv0.id, &small(), &|_| {})
        .await
        .unwrap();
    // A new purchase does not reuse a recovered index.
    let nv = r.buy(net.c(), net.i(), 10, Payment::Devnet).await.unwrap();
    assert_eq!(nv.index, 4);
    // Recovering again adds nothing and keeps next_index.
    assert!(r.recover(net.c(), 2, &|_| {}).await.unwrap().is_empty());
    assert_eq!(r.next_index().await.unwrap(), 5);
}

/// Voucher status lookups the wallet made at the coordinator.
fn lookups(net: &Net) -> usize {
    net.coordinator
        .seen()
        .iter()
        .filter(|s| s.method == "GET" && s.path.starts_with("/v1/vouchers/"))
        .count()
}

// ---------------------------------------------------------------------------------------------
// v0.2: zero-knowledge redemption

/// A voucher of 10 credits bought and published through the proxies.
async fn published(w: &Wallet, net: &Net) -> smpx_wallet::VoucherRecord {
    buy_and_publish(w, net.c(), net.i()).await
}

async fn buy_and_publish(
    w: &Wallet,
    coordinator: &str,
    issuer: &str,
) -> smpx_wallet::VoucherRecord {
    let v = w
        .buy(coordinator, issuer, 10, Payment::Devnet)
        .await
        .unwrap();
    w.publish(coordinator, v.id, Duration::ZERO).await.unwrap()
}

fn opts(mmr: MmrChoice, update_path: bool) -> RedeemOptions {
    RedeemOptions {
        mmr,
        update_path,
        ..small()
    }
}

#[tokio::test]
async fn v2_redemption_end_to_end_with_progress_and_caches() {
    let net = network().await;
    let dir = tempfile::tempdir().unwrap();
    let (w, _) = cold_wallet(&dir, "w.db").await;
    net.others_publish(5).await;
    let v = published(&w, &net).await;

    // The publish receipt's paths are stored: one per open MMR, oldest first.
    let paths = w.paths(v.id).await.unwrap();
    assert_eq!(
        paths
            .iter()
            .map(|p| (p.mmr.id, p.leaf_index))
            .collect::<Vec<_>>(),
        vec![(0, 5), (1, 5)]
    );
    net.others_publish(7).await;

    // With the default options the wallet refuses: 13 vouchers of its denomination in
    // either MMR are fewer than 100. It says so before downloading or sending anything.
    let e = w
        .redeem_with(net.c(), net.o(), v.id, &RedeemOptions::default(), &|_| {})
        .await
        .unwrap_err();
    let WalletError::AnonymityTooSmall { set, threshold, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(*threshold, 100);
    assert_eq!(
        (set.chosen.mmr_id, set.chosen.size, set.chosen.exact),
        (0, 13, true)
    );
    assert_eq!(set.other.map(|o| (o.mmr_id, o.size)), Some((1, 13)));
    let m = e.to_string();
    assert!(
        m.contains("MMR 0 holds 13") && m.contains("MMR 1 holds 13"),
        "{m}"
    );
    assert!(
        m.contains("--mmr newer") && m.contains("--accept-anonymity 13"),
        "{m}"
    );
    assert!(net.zk_sent().is_empty(), "nothing was sent");
    assert_eq!(w.voucher(v.id).await.unwrap().state, LocalState::Published);
    assert_eq!(
        w.anonymity(net.c(), v.id, &RedeemOptions::default())
            .await
            .unwrap(),
        *set
    );
    // Without the path update only the leaves before it count: at most 6.
    let bounded = w
        .anonymity(net.c(), v.id, &opts(MmrChoice::Older, false))
        .await
        .unwrap();
    assert_eq!((bounded.chosen.size, bounded.chosen.exact), (6, false));
    // Asking for more than the set holds still refuses; accepting it proceeds.
    let too_few = RedeemOptions {
        accept_anonymity: Some(14),
        ..RedeemOptions::default()
    };
    assert!(matches!(
        w.redeem_with(net.c(), net.o(), v.id, &too_few, &|_| {})
            .await,
        Err(WalletError::AnonymityTooSmall { .. })
    ));

    let seen = Mutex::new(Vec::<RedeemProgress>::new());
    let credit = w
        .redeem_with(net.c(), net.o(), v.id, &small(), &|p| {
            seen.lock().unwrap().push(p)
        })
        .await
        .unwrap();
    assert_eq!(credit.protocol, 2);
    assert_eq!(credit.credited, Amount::from_credits(10).unwrap());
    assert_eq!(
        credit
            .signed_receipt()
            .unwrap()
            .body
            .coordinator_receipt
            .body
            .mmr_id,
        Some(0)
    );
    let v = w.voucher(v.id).await.unwrap();
    assert_eq!(v.state, LocalState::Redeemed);
    assert_eq!(v.redeemed_at_operator.as_deref(), Some(OPERATOR_ID));
    // The coordinator saw the older MMR's latest root, not which voucher.
    let sent = net.zk_sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].mmr_id, 0);
    assert_eq!(sent[0].root, net.root(0, 13).await);
    assert_eq!(net.status(&v.commitment).await.state, VoucherState::Live);
    assert_eq!(net.leaves_downloaded(0), 13, "every leaf of MMR 0, once");
    assert_eq!(net.transcript_downloads(), 1);

    // The stages, in order (counters collapsed).
    let stages: Vec<&'static str> = {
        let mut out: Vec<&'static str> = Vec::new();
        for p in seen.lock().unwrap().iter() {
            let s = match p {
                RedeemProgress::FetchingKeys => "keys",
                RedeemProgress::DownloadingTranscript { .. } => "transcript",
                RedeemProgress::VerifyingTranscript { .. } => "verify",
                RedeemProgress::DownloadingLeaves { .. } => "leaves",
                RedeemProgress::Proving => "prove",
                RedeemProgress::Submitting => "submit",
                _ => "other",
            };
            if out.last() != Some(&s) {
                out.push(s);
            }
        }
        out
    };
    assert_eq!(
        stages,
        ["keys", "transcript", "verify", "leaves", "prove", "submit"]
    );
    assert!(seen
        .lock()
        .unwrap()
        .contains(&RedeemProgress::DownloadingLeaves {
            mmr_id: 0,
            done: 13,
            total: 13
        }));

    // A second voucher: the proving key comes from the cache, and only new leaves are
    // downloaded.
    let v2 = published(&w, &net).await;
    net.others_publish(2).await;
    let seen = Mutex::new(Vec::<RedeemProgress>::new());
    w.redeem_with(net.c(), net.o(), v2.id, &small(), &|p| {
        seen.lock().unwrap().push(p)
    })
    .await
    .unwrap();
    assert_eq!(net.transcript_downloads(), 1);
    assert_eq!(net.leaves_downloaded(0), 13 + 3);
    assert_eq!(net.zk_sent()[1].root, net.root(0, 16).await);
    assert!(!seen
        .lock()
        .unwrap()
        .iter()
        .any(|p| matches!(p, RedeemProgress::VerifyingTranscript { .. })));
    assert_eq!(
        w.credits()
            .await
            .unwrap()
            .iter()
            .map(|c| c.protocol)
            .collect::<Vec<_>>(),
        vec![2, 2]
    );
}

#[tokio::test]
async fn the_same_voucher_redeems_once_whatever_the_protocols() {
    let net = network().await;
    let dir = tempfile::tempdir().unwrap();
    let (a, phrase) = new_wallet(&dir, "a.db").await;
    let v1 = published(&a, &net).await;
    let v2 = published(&a, &net).await;
    let v3 = published(&a, &net).await;
    // A copy of the wallet, restored from the phrase, redeems the same vouchers again.
    let b = Wallet::restore_with(
        &dir.path().join("b.db"),
        PASS,
        &phrase,
        KdfParams::insecure_for_tests(),
    )
    .await
    .unwrap();
    b.recover(net.c(), 2, &|_| {}).await.unwrap();

    // v2, then v2 again.
    a.redeem_with(net.c(), net.o(), v1.id, &small(), &|_| {})
        .await
        .unwrap();
    let e = a
        .redeem_with(net.c(), net.o(), v1.id, &small(), &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(e, WalletError::InvalidState { .. }), "{e}");
    let id = id_of(&b, &v1.commitment).await;
    let e = b
        .redeem_with(net.c(), net.o(), id, &small(), &|_| {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::AlreadyRedeemed), "{e}");
    assert_eq!(b.voucher(id).await.unwrap().state, LocalState::Redeemed);

    // v1, then v2.
    a.redeem_with(net.c(), net.o(), v2.id, &RedeemOptions::v1(), &|_| {})
        .await
        .unwrap();
    let id = id_of(&b, &v2.commitment).await;
    let e = b
        .redeem_with(net.c(), net.o(), id, &small(), &|_| {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::AlreadyRedeemed), "{e}");

    // v2 (without a stored path: found among the leaves), then v1.
    let id = id_of(&b, &v3.commitment).await;
    assert!(b.paths(id).await.unwrap().is_empty());
    let c = b
        .redeem_with(net.c(), net.o(), id, &small(), &|_| {})
        .await
        .unwrap();
    assert_eq!(c.protocol, 2);
    let e = a
        .redeem_with(net.c(), net.o(), v3.id, &RedeemOptions::v1(), &|_| {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::AlreadyRedeemed), "{e}");
    // Three vouchers, three redemptions in the coordinator's books, and they balance.
    let totals: LedgerTotalsResponse = ApiClient::new(&net.net.coordinator_url)
        .get("/v1/ledger/totals")
        .await
        .unwrap();
    assert_eq!(totals.totals.redeemed, Amount::from_credits(30).unwrap());
    assert!(totals.conserved);
}

#[tokio::test]
async fn without_update_the_receipt_path_and_its_old_root_are_used() {
    let net = network().await;
    let dir = tempfile::tempdir().unwrap();
    let (w, _) = new_wallet(&dir, "w.db").await;
    net.others_publish(3).await;
    let v = published(&w, &net).await;
    net.others_publish(9).await;
    let c = w
        .redeem_with(
            net.c(),
            net.o(),
            v.id,
            &opts(MmrChoice::Older, false),
            &|_| {},
        )
        .await
        .unwrap();
    assert_eq!(c.protocol, 2);
    assert_eq!(net.leaves_downloaded(0), 0, "no leaf is downloaded");
    // The root right after its own append: size 4.
    assert_eq!(net.zk_sent()[0].root, net.root(0, 4).await);

    // A recovered voucher has no receipt path: it must be updated.
    let (w2, phrase) = new_wallet(&dir, "x.db").await;
    let v = published(&w2, &net).await;
    let r = Wallet::restore_with(
        &dir.path().join("y.db"),
        PASS,
        &phrase,
        KdfParams::insecure_for_tests(),
    )
    .await
    .unwrap();
    let found = r.recover(net.c(), 2, &|_| {}).await.unwrap();
    assert_eq!(found[0].commitment, v.commitment);
    let e = r
        .redeem_with(
            net.c(),
            net.o(),
            found[0].id,
            &opts(MmrChoice::Older, false),
            &|_| {},
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, WalletError::NoStoredPath { mmr_id: 0, .. }),
        "{e}"
    );
}

#[tokio::test]
async fn the_newer_mmr_can_be_chosen() {
    let net = network().await;
    let dir = tempfile::tempdir().unwrap();
    let (w, _) = new_wallet(&dir, "w.db").await;
    let v = published(&w, &net).await;
    let va = published(&w, &net).await;
    w.redeem_with(
        net.c(),
        net.o(),
        v.id,
        &opts(MmrChoice::Newer, true),
        &|_| {},
    )
    .await
    .unwrap();
    w.redeem_with(
        net.c(),
        net.o(),
        va.id,
        &opts(MmrChoice::Newer, false),
        &|_| {},
    )
    .await
    .unwrap();
    let sent = net.zk_sent();
    assert_eq!(
        sent.iter().map(|z| z.mmr_id).collect::<Vec<_>>(),
        vec![1, 1]
    );
    assert_eq!(sent[0].root, FieldBytes::from_fr(&net.mmr(1).await.root()));
}

#[tokio::test]
async fn a_forked_view_is_detected_and_nothing_is_redeemed() {
    let net = network().await;
    let dir = tempfile::tempdir().unwrap();
    let (w, _) = new_wallet(&dir, "w.db").await;
    net.others_publish(4).await;
    let v = published(&w, &net).await;
    let v2 = published(&w, &net).await;
    // The first redemption stores MMR 0's checkpoint at size 6.
    w.redeem_with(net.c(), net.o(), v.id, &small(), &|_| {})
        .await
        .unwrap();
    // Then the coordinator shows this wallet another history of MMR 0, signed with its own
    // key: leaf 0 replaced, one more leaf.
    let real = net.mmr(0).await;
    let mut leaves: Vec<Fr> = (0..real.size()).map(|i| real.leaf(i).unwrap()).collect();
    leaves[0] = Fr::from(12345u64);
    leaves.push(Fr::from(777u64));
    let fork = Arc::new(Mmr::from_leaves(MmrParams::new(0, LEVELS).unwrap(), leaves).unwrap());
    let key = net.net.receipt_key(Service::Coordinator).unwrap();
    let clock = net.clock.clone();
    let f = fork.clone();
    net.coordinator
        .rewrite_all("GET", "/v1/mmrs/0/checkpoint", move |s| {
            let size = s.param("size").map_or(f.size(), |n| n.parse().unwrap());
            let body = Checkpoint {
                mmr_id: 0,
                levels: LEVELS,
                size,
                root: FieldBytes::from_fr(&f.root_at(size).unwrap()),
                at: clock.now(),
            };
            let signed = Signed::sign(&key, CHECKPOINT_DOMAIN, body).unwrap();
            (200, serde_json::to_vec(&signed).unwrap())
        });
    net.coordinator
        .rewrite_all("GET", "/v1/mmrs/0/leaves", move |s| {
            let from: u64 = s.param("from").map_or(0, |n| n.parse().unwrap());
            let limit: u64 = s.param("limit").map_or(4096, |n| n.parse().unwrap());
            let page = LeavesPage {
                mmr_id: 0,
                levels: LEVELS,
                size: fork.size(),
                from,
                leaves: (from..fork.size().min(from + limit))
                    .map(|i| FieldBytes::from_fr(&fork.leaf(i).unwrap()))
                    .collect(),
            };
            (200, serde_json::to_vec(&page).unwrap())
        });
    let e = w
        .redeem_with(net.c(), net.o(), v2.id, &small(), &|_| {})
        .await
        .unwrap_err();
    match &e {
        WalletError::ForkedView {
            mmr_id,
            earlier,
            later,
        } => {
            assert_eq!(*mmr_id, 0);
            assert_eq!((earlier.body.size, later.body.size), (6, 7));
        }
        other => panic!("expected a forked view, got {other}"),
    }
    assert_eq!(w.voucher(v2.id).await.unwrap().state, LocalState::Published);
    assert_eq!(net.zk_sent().len(), 1);
    // The newer MMR is not forked: redeeming through it works.
    w.redeem_with(
        net.c(),
        net.o(),
        v2.id,
        &opts(MmrChoice::Newer, true),
        &|_| {},
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn v2_unavailable_and_bad_transcripts_are_typed_errors() {
    let net = network().await;
    let dir = tempfile::tempdir().unwrap();
    let (w, _) = cold_wallet(&dir, "w.db").await;
    let v = published(&w, &net).await;

    net.coordinator
        .refuse_all("GET", "/v1/zk", ErrorCode::ZkUnavailable);
    let e = w
        .redeem_with(net.c(), net.o(), v.id, &small(), &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(e, WalletError::ZkUnavailable { .. }), "{e}");
    net.coordinator.clear();

    net.coordinator
        .rewrite_all("GET", "/v1/zk/transcript", |s| {
            let mut t = s.answer.clone();
            *t.last_mut().unwrap() ^= 1;
            (s.status, t)
        });
    let e = w
        .redeem_with(net.c(), net.o(), v.id, &small(), &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(e, WalletError::TranscriptMismatch { .. }), "{e}");
    net.coordinator.clear();
    assert_eq!(w.voucher(v.id).await.unwrap().state, LocalState::Published);
    assert!(net.zk_sent().is_empty());

    // v1 still works meanwhile.
    let c = w
        .redeem_with(net.c(), net.o(), v.id, &RedeemOptions::v1(), &|_| {})
        .await
        .unwrap();
    assert_eq!(c.protocol, 1);
}

#[tokio::test]
async fn lost_v2_answer_resends_the_same_proof() {
    let net = network().await;
    let dir = tempfile::tempdir().unwrap();
    let (w, _) = new_wallet(&dir, "w.db").await;
    let v = published(&w, &net).await;
    net.operator.lose_next("POST", "/v1/redeem");
    assert!(w
        .redeem_with(net.c(), net.o(), v.id, &small(), &|_| {})
        .await
        .is_err());
    assert_eq!(w.voucher(v.id).await.unwrap().state, LocalState::Published);
    // More vouchers meanwhile: the retry must still re-send the proof it made, not a new one.
    net.others_publish(3).await;
    let c = w
        .redeem_with(net.c(), net.o(), v.id, &small(), &|_| {})
        .await
        .unwrap();
    assert_eq!(c.protocol, 2);
    let sent = net.zk_sent();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0], sent[1]);
}

/// The default options, accepting the tiny anonymity sets of a test network (a real wallet
/// refuses below 100): every test here redeems among a handful of vouchers.
fn small() -> RedeemOptions {
    RedeemOptions {
        accept_anonymity: Some(1),
        ..RedeemOptions::default()
    }
}

//! Operator credits over real HTTP: keys, spending (NUT-03 swap), state (NUT-07), change
//! collection, recovery after a crash, pruning, and issuance after a redemption (against a
//! small fake coordinator on loopback that signs receipts with a known key).
//!
//! Every refusal the issue lists gets its typed error code, and nothing is recorded for it:
//! the inputs stay unspent, no spend exists under the request's id, nothing is pending, and
//! the request's outputs can still be signed in a later request. Tests that touch the
//! registry run on SQLite and PostgreSQL (`both!`); PostgreSQL must be reachable (see
//! `smpx_testkit::db`).

use axum::routing::{get, post};
use rand::rngs::OsRng;
use smpx_core::api::*;
use smpx_core::credits::{
    finalize_all, random_outputs, sign_outputs, split, BlindedMessage, Day, KeyRing, KeysetKeys,
    MasterSecret, Point, PreparedOutput, Proof, SwapRequest, SwapResponse,
};
use smpx_core::crypto::{Envelope, FieldBytes, Fr, HpkePublicKey, SigningKey};
use smpx_core::receipt::{Signed, OPERATOR_DOMAIN, REDEMPTION_DOMAIN};
use smpx_core::{Amount, ErrorCode, NetworkParams, DAY};
use smpx_http::{ApiClient, ClientError, ManualClock};
use smpx_operator::{CreditsConfig, Operator, OperatorConfig, OperatorHome};
use smpx_store::credits::{NewSpend, SpendInput};
use smpx_store::operator::OperatorStore;
use smpx_store::Db;
use smpx_testkit::net::{self, Server};
use smpx_testkit::{both, db as scratch, Backend};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

both!(
    swap_spends_once_and_change_is_spendable,
    forged_token_is_refused,
    token_under_the_wrong_days_key_is_refused,
    expired_token_is_refused,
    same_token_twice_in_one_request_is_refused,
    change_worth_more_than_the_input_is_refused,
    blinded_output_reused_is_refused,
    racing_spends_on_two_servers_exactly_one_wins,
    crash_between_pending_and_spent_is_recovered,
    credits_are_issued_once_per_redemption,
    restore_returns_earlier_signatures_by_blinded_output,
    prune_forgets_expired_spends_only,
);

const TODAY: u32 = 20_500;
/// Noon of `TODAY`.
const NOW: u64 = TODAY as u64 * DAY + 12 * 3600;
const OPERATOR_ID: &str = "op";
/// What the registry can be asked for "every pending saga".
const ALL: u64 = i64::MAX as u64;

// ---- a fake coordinator ---------------------------------------------------------------------

/// Answers `GET /v1/params` and signs a redemption receipt for every `POST /v1/redemptions`
/// (v2: the request's denomination; v1: 10 credits), counting the calls.
struct Coordinator {
    url: String,
    calls: Arc<AtomicU64>,
    _server: Server,
}

async fn coordinator() -> Coordinator {
    let key = Arc::new(SigningKey::generate(&mut rand::rngs::OsRng));
    let calls = Arc::new(AtomicU64::new(0));
    let params = ParamsResponse {
        params: NetworkParams::default(),
        receipt_key: key.verifying_key(),
        envelope_key: HpkePublicKey([7; 32]),
        now: NOW,
    };
    let counter = calls.clone();
    let app = axum::Router::new()
        .route(
            "/v1/params",
            get(move || {
                let params = params.clone();
                async move { axum::Json(params) }
            }),
        )
        .route(
            "/v1/redemptions",
            post(
                move |axum::Json(req): axum::Json<ForwardRedemptionRequest>| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let (denomination, digest) = match (&req.envelope, &req.zk) {
                        (_, Some(zk)) => (zk.denomination, zk.digest()),
                        (Some(envelope), None) => (10, envelope.digest()),
                        (None, None) => panic!("empty redemption"),
                    };
                    let value = Amount::from_credits(denomination).unwrap();
                    let operator_amount = Amount(value.0 / 10 * 7);
                    let body = RedemptionReceipt {
                        operator_id: OPERATOR_ID.into(),
                        denomination,
                        value,
                        operator_amount,
                        fund_amount: Amount(value.0 - operator_amount.0),
                        share_bps: 7000,
                        envelope_digest: digest,
                        redeemed_at: NOW,
                        nullifier: None,
                        mmr_id: None,
                    };
                    let receipt = Signed::sign(&key, REDEMPTION_DOMAIN, body).unwrap();
                    async move { axum::Json(receipt) }
                },
            ),
        );
    let server = net::serve_router(app).await.unwrap();
    Coordinator {
        url: server.url.clone(),
        calls,
        _server: server,
    }
}

// ---- operators ------------------------------------------------------------------------------

/// One network: a fake coordinator, one database, a clock, and the operator's credit secret
/// (shared by every server started from it, as a fleet shares it).
struct Net {
    coordinator: Coordinator,
    clock: ManualClock,
    db_url: String,
    config: CreditsConfig,
    master: MasterSecret,
    dir: tempfile::TempDir,
    _db_guard: Option<tempfile::TempDir>,
}

/// One running operator server.
struct Op {
    api: ApiClient,
    op: Arc<Operator>,
    server: Server,
}

impl Op {
    async fn stop(self) {
        self.server.stop().await.unwrap();
    }
}

impl Net {
    async fn new(which: Backend) -> Net {
        Self::with_config(which, CreditsConfig::default()).await
    }

    /// A network with server `a` running, and the key ring its servers derive.
    async fn started(which: Backend) -> (Net, Op, KeyRing) {
        let net = Self::new(which).await;
        let op = net.start("a").await;
        let ring = net.ring();
        (net, op, ring)
    }

    async fn with_config(which: Backend, config: CreditsConfig) -> Net {
        let (db_url, guard) = scratch::database(which).await.unwrap();
        let coordinator = coordinator().await;
        let dir = tempfile::tempdir().unwrap();
        let mut home =
            OperatorHome::init(&dir.path().join("a"), operator_config(&coordinator.url)).unwrap();
        home.set_credits(config.clone()).unwrap();
        Net {
            master: home.credit_master.clone(),
            coordinator,
            clock: ManualClock::new(NOW),
            db_url,
            config,
            dir,
            _db_guard: guard,
        }
    }

    /// The home directory of server `name`: its own keys and configuration, with the credit
    /// secret and parameters copied from server `a` (as an operator sets up a fleet).
    fn home(&self, name: &str) -> OperatorHome {
        let dir = self.dir.path().join(name);
        if name != "a" {
            std::fs::create_dir_all(&dir).unwrap();
            for file in ["credit-master-secret", "credits.json"] {
                std::fs::copy(self.dir.path().join("a").join(file), dir.join(file)).unwrap();
            }
        }
        OperatorHome::init(&dir, operator_config(&self.coordinator.url)).unwrap()
    }

    async fn start(&self, name: &str) -> Op {
        let store = OperatorStore::open(Db::connect(&self.db_url).await.unwrap())
            .await
            .unwrap();
        let op = Operator::start(store, self.home(name), Arc::new(self.clock.clone()))
            .await
            .unwrap();
        let server = net::serve_operator(op.clone(), net::any_port())
            .await
            .unwrap();
        Op {
            api: ApiClient::new(&server.url),
            op,
            server,
        }
    }

    /// The operator's key ring as of now (what its servers derive from the shared secret).
    fn ring(&self) -> KeyRing {
        KeyRing::new(
            self.master.clone(),
            self.config.keyset_params(),
            self.clock_now(),
        )
        .unwrap()
    }

    fn clock_now(&self) -> u64 {
        smpx_http::Clock::now(&self.clock)
    }
}

fn operator_config(coordinator_url: &str) -> OperatorConfig {
    OperatorConfig {
        operator_id: OPERATOR_ID.into(),
        coordinator_url: coordinator_url.into(),
        credential: "op:secret".into(),
    }
}

// ---- wallet-side helpers --------------------------------------------------------------------

/// Tokens worth `amounts` signed under `day`'s keyset (as if issued that day).
fn mint(ring: &KeyRing, day: Day, amounts: &[u64]) -> Vec<Proof> {
    let keyset = ring.for_day(day).unwrap();
    let amounts: Vec<Amount> = amounts.iter().map(|a| Amount(*a)).collect();
    let prepared = random_outputs(&mut OsRng, keyset.id(), &amounts).unwrap();
    let sigs = sign_outputs(&messages(&prepared), ring).unwrap();
    finalize_all(&prepared, &sigs, &keyset.keys())
        .unwrap()
        .iter()
        .map(Proof::for_spending)
        .collect()
}

fn messages(prepared: &[PreparedOutput]) -> Vec<BlindedMessage> {
    prepared.iter().map(|p| p.message.clone()).collect()
}

/// Fresh outputs for `amounts` under the keyset `GET /v1/keys` announces.
async fn outputs(op: &Op, amounts: &[u64]) -> (Vec<PreparedOutput>, KeysetKeys) {
    let keys = today_keys(op).await;
    let amounts: Vec<Amount> = amounts.iter().map(|a| Amount(*a)).collect();
    (
        random_outputs(&mut OsRng, &keys.id, &amounts).unwrap(),
        keys,
    )
}

async fn today_keys(op: &Op) -> KeysetKeys {
    let keys: CreditKeysResponse = op.api.get("/v1/keys").await.unwrap();
    assert_eq!(keys.keysets.len(), 1, "one active keyset at noon");
    let keys = keys.keysets.into_iter().next().unwrap();
    keys.verify_id().unwrap();
    keys
}

fn ys(tokens: &[Proof]) -> Vec<Point> {
    tokens.iter().map(|p| p.y().unwrap()).collect()
}

/// The operator's metrics as `/metrics` renders them: (credit tokens spent, credit outputs
/// signed). (That they are served is the coordinator's network test.)
fn counted(op: &Op) -> (u64, u64) {
    let text = op.op.metrics().render();
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    (
        value(smpx_operator::TOKENS_SPENT),
        value(smpx_operator::OUTPUTS_SIGNED),
    )
}

async fn swap(op: &Op, req: &SwapRequest) -> Result<SwapResponse, ClientError> {
    op.api.post("/v1/swap", req).await
}

/// A request spending `inputs` for the change `outputs`.
fn spend(inputs: Vec<Proof>, outputs: Vec<BlindedMessage>) -> SwapRequest {
    SwapRequest { inputs, outputs }
}

/// A swap that must go through.
async fn swap_ok(op: &Op, inputs: Vec<Proof>, outputs: Vec<BlindedMessage>) -> SwapResponse {
    swap(op, &spend(inputs, outputs)).await.unwrap()
}

/// A swap refused with `want`, which records nothing.
async fn refused_swap(op: &Op, req: &SwapRequest, want: (ErrorCode, u16)) {
    assert_eq!(refused(swap(op, req).await), want);
    assert_nothing_recorded(op, req).await;
}

/// `GET /v1/swap/{id}` for the spend `req` is (or is not).
async fn swap_status(op: &Op, req: &SwapRequest) -> Result<SwapStatus, ClientError> {
    let id = SwapId::of_request(req).unwrap();
    op.api.get(&format!("/v1/swap/{id}")).await
}

async fn states(op: &Op, ys: Vec<Point>) -> Vec<TokenState> {
    let r: CheckStateResponse = op
        .api
        .post("/v1/checkstate", &CheckStateRequest { ys: ys.clone() })
        .await
        .unwrap();
    assert_eq!(r.states.iter().map(|s| s.y).collect::<Vec<_>>(), ys);
    r.states.into_iter().map(|s| s.state).collect()
}

/// The typed error of a failed call.
fn refused<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (ErrorCode, u16) {
    match r {
        Err(ClientError::Api { code, status, .. }) => (code, status),
        other => panic!("expected a typed refusal, got {other:?}"),
    }
}

/// Nothing of `req` is in the registry: its inputs are unspent, no spend exists under its
/// id, nothing is pending.
async fn assert_nothing_recorded(op: &Op, req: &SwapRequest) {
    let inputs: Vec<Point> = req.inputs.iter().filter_map(|p| p.y().ok()).collect();
    assert!(states(op, inputs)
        .await
        .iter()
        .all(|s| *s == TokenState::Unspent));
    if SwapId::of_request(req).is_ok() {
        assert_eq!(
            refused(swap_status(op, req).await),
            (ErrorCode::UnknownSwap, 404)
        );
    }
    assert!(op
        .op
        .credit_store()
        .pending_sagas(ALL, 10)
        .await
        .unwrap()
        .is_empty());
}

// ---- keys -----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_keysets_and_the_secret_file() {
    let net = Net::new(Backend::Sqlite).await;
    let op = net.start("a").await;
    let ring = net.ring();

    // GET /v1/keys: today's keyset, 40 denominations, its id checks, the keys are the ones
    // every server derives.
    let keys = today_keys(&op).await;
    assert_eq!(keys, ring.for_day(Day(TODAY)).unwrap().keys());
    assert_eq!(keys.keys.len(), 40);
    assert_eq!(keys.unit, "ucredit");
    assert_eq!(keys.final_expiry, (u64::from(TODAY) + 90) * DAY);

    // GET /v1/keysets: 90 live days and 7 expired ones still recognised, oldest first; only
    // today's is active.
    let sets: CreditKeysetsResponse = op.api.get("/v1/keysets").await.unwrap();
    assert_eq!(sets.keysets.len(), 97);
    assert_eq!(sets.keysets.iter().filter(|k| k.active).count(), 1);
    let last = sets.keysets.last().unwrap();
    assert!(last.active);
    assert_eq!(last.id, keys.id);
    assert!(sets
        .keysets
        .windows(2)
        .all(|w| w[0].final_expiry + DAY == w[1].final_expiry));
    assert_eq!(sets.keysets[0].final_expiry, (u64::from(TODAY) - 6) * DAY);

    // GET /v1/keys/{id}: any known keyset; unknown and malformed ids are told apart.
    let yesterday = ring.for_day(Day(TODAY - 1)).unwrap();
    let one: CreditKeysResponse = op
        .api
        .get(&format!("/v1/keys/{}", yesterday.id()))
        .await
        .unwrap();
    assert_eq!(one.keysets, vec![yesterday.keys()]);
    let tomorrow = ring.for_day(Day(TODAY + 1)).unwrap();
    let r = op
        .api
        .get::<CreditKeysResponse>(&format!("/v1/keys/{}", tomorrow.id()))
        .await;
    assert_eq!(refused(r), (ErrorCode::UnknownKeyset, 404));
    let r = op.api.get::<CreditKeysResponse>("/v1/keys/zz").await;
    assert_eq!(refused(r), (ErrorCode::InvalidRequest, 400));
    let r = op.api.get::<SwapStatus>("/v1/swap/not-an-id").await;
    assert_eq!(refused(r), (ErrorCode::InvalidRequest, 400));

    // Just before midnight, outputs may already use tomorrow's keyset.
    net.clock.set(u64::from(TODAY + 1) * DAY - 60);
    let near: CreditKeysResponse = op.api.get("/v1/keys").await.unwrap();
    assert_eq!(
        near.keysets.iter().map(|k| k.id).collect::<Vec<_>>(),
        vec![keys.id, *tomorrow.id()]
    );
    // After midnight the ring moves on by itself.
    net.clock.set(u64::from(TODAY + 1) * DAY + 3600);
    let next: CreditKeysResponse = op.api.get("/v1/keys").await.unwrap();
    assert_eq!(next.keysets, vec![tomorrow.keys()]);

    // The master secret is the operator's alone.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for file in ["credit-master-secret", "credits.json"] {
            let path = net.dir.path().join("a").join(file);
            let mode = std::fs::metadata(path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
    }
    // A restarted server derives the same keys from its files.
    let again = net.start("a").await;
    net.clock.set(NOW);
    assert_eq!(today_keys(&again).await, keys);
    again.stop().await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_documents_every_credit_route() {
    let net = Net::new(Backend::Sqlite).await;
    let op = net.start("a").await;
    let doc: serde_json::Value = op.api.get("/openapi.json").await.unwrap();
    for path in [
        "/v1/keys",
        "/v1/keys/{keyset_id}",
        "/v1/keysets",
        "/v1/swap",
        "/v1/swap/{id}",
        "/v1/checkstate",
        "/v1/restore",
        "/v1/redeem",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is not documented");
    }
    for schema in [
        "SwapRequest",
        "SwapStatus",
        "CheckStateResponse",
        "CreditRestoreRequest",
        "CreditRestoreResponse",
        "RedeemResponse",
    ] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
    op.stop().await;
}

// ---- spending -------------------------------------------------------------------------------

async fn swap_spends_once_and_change_is_spendable(which: Backend) {
    let (_net, op, ring) = Net::started(which).await;
    let tokens = mint(&ring, Day(TODAY - 3), &[8, 4, 1]);
    let (prepared, keys) = outputs(&op, &[8, 2]).await;
    // 13 in, 10 back: the wallet leaves 3 units of dust.
    let req = spend(tokens.clone(), messages(&prepared));
    let answer = swap(&op, &req).await.unwrap();
    assert_eq!(answer.signatures.len(), 2);
    assert_eq!(counted(&op), (3, 2), "3 tokens spent, 2 outputs signed");
    // The change carries DLEQ proofs against the published keys and unblinds to tokens.
    let change = finalize_all(&prepared, &answer.signatures, &keys).unwrap();
    assert_eq!(states(&op, ys(&tokens)).await, vec![TokenState::Spent; 3]);
    assert_eq!(states(&op, ys(&change)).await, vec![TokenState::Unspent; 2]);

    // The identical request again (the answer was lost) is the same spend: same change,
    // marked as a repeat (a seller of capacity must not sell twice for one payment).
    assert!(!answer.replayed);
    let again = swap(&op, &req).await.unwrap();
    assert_eq!(again.signatures, answer.signatures);
    assert!(again.replayed);
    assert_eq!(
        counted(&op),
        (3, 2),
        "a replayed swap spends and signs nothing"
    );
    let status = swap_status(&op, &req).await.unwrap();
    assert_eq!(status.state, SwapState::Done);
    assert_eq!(status.signatures.as_ref(), Some(&answer.signatures));

    // Any other request with a spent input is refused, and records nothing.
    let (fresh, _) = outputs(&op, &[1]).await;
    let reuse = spend(vec![tokens[2].clone()], messages(&fresh));
    assert_eq!(
        refused(swap(&op, &reuse).await),
        (ErrorCode::TokenSpent, 409)
    );
    assert_eq!(counted(&op), (3, 2));
    assert_eq!(
        op.op
            .metrics()
            .get("smpx_errors_total", &[("code", "token_spent")]),
        1
    );
    let r = swap_status(&op, &reuse).await;
    assert_eq!(refused(r), (ErrorCode::UnknownSwap, 404));

    // The change is spendable in turn (without change of its own this time), once.
    let spend_change = spend(change.iter().map(Proof::for_spending).collect(), vec![]);
    assert!(swap(&op, &spend_change)
        .await
        .unwrap()
        .signatures
        .is_empty());
    assert_eq!(states(&op, ys(&change)).await, vec![TokenState::Spent; 2]);
    // The fresh outputs of the refused request were never reserved.
    let more = mint(&ring, Day(TODAY), &[1]);
    swap_ok(&op, more, messages(&fresh)).await;

    // Malformed requests are typed too.
    let empty = spend(vec![], vec![]);
    assert_eq!(
        refused(swap(&op, &empty).await),
        (ErrorCode::InvalidRequest, 400)
    );
    op.stop().await;
}

async fn forged_token_is_refused(which: Backend) {
    let (net, op, ring) = Net::started(which).await;
    let good = mint(&ring, Day(TODAY), &[4, 2]);
    let (prepared, _) = outputs(&op, &[4, 2]).await;
    let change = messages(&prepared);

    // A made-up signature: another token's C.
    let mut forged = good.clone();
    forged[1].signature = good[0].signature;
    // A token of another operator, relabelled as ours (same day, same amount).
    let other = KeyRing::new(
        MasterSecret::from_bytes([1; 32]),
        net.config.keyset_params(),
        NOW,
    )
    .unwrap();
    let mut foreign = mint(&other, Day(TODAY), &[4, 2]);
    for token in &mut foreign {
        token.id = *ring.for_day(Day(TODAY)).unwrap().id();
    }
    // A token whose amount was inflated (2 → 4: the 4-key does not verify it).
    let mut inflated = good.clone();
    inflated[1].amount = Amount(4);
    for inputs in [forged, foreign, inflated] {
        let req = SwapRequest {
            inputs,
            outputs: change.clone(),
        };
        refused_swap(&op, &req, (ErrorCode::InvalidToken, 400)).await;
    }
    // Another operator's token under its own keyset: not ours at all.
    let stranger = spend(mint(&other, Day(TODAY), &[4]), vec![]);
    refused_swap(&op, &stranger, (ErrorCode::UnknownKeyset, 404)).await;

    // The genuine tokens with the same outputs still go through.
    swap_ok(&op, good, change).await;
    op.stop().await;
}

async fn token_under_the_wrong_days_key_is_refused(which: Backend) {
    let (_net, op, ring) = Net::started(which).await;
    let token = mint(&ring, Day(TODAY - 1), &[4]);
    let (prepared, _) = outputs(&op, &[4]).await;
    for day in [TODAY, TODAY - 2, TODAY - 30] {
        let mut moved = token.clone();
        moved[0].id = *ring.for_day(Day(day)).unwrap().id();
        let req = spend(moved, messages(&prepared));
        refused_swap(&op, &req, (ErrorCode::InvalidToken, 400)).await;
    }
    // Under its own day it is good.
    swap_ok(&op, token, messages(&prepared)).await;

    // Change must be asked under today's keyset, not another day's.
    let yesterday = *ring.for_day(Day(TODAY - 1)).unwrap().id();
    let stale = random_outputs(&mut OsRng, &yesterday, &[Amount(1)]).unwrap();
    let req = spend(mint(&ring, Day(TODAY), &[1]), messages(&stale));
    refused_swap(&op, &req, (ErrorCode::KeysetNotCurrent, 400)).await;
    op.stop().await;
}

async fn expired_token_is_refused(which: Backend) {
    let (net, op, ring) = Net::started(which).await;
    // Lifetime 90 days: day TODAY-89 is the oldest live keyset; TODAY-90 expired at the start
    // of today and is still recognised as expired (grace), TODAY-200 is forgotten.
    let expired = mint(&ring, Day(TODAY - 90), &[2]);
    let last_live = mint(&ring, Day(TODAY - 89), &[2]);
    let (prepared, _) = outputs(&op, &[2]).await;
    let req = spend(expired, messages(&prepared));
    refused_swap(&op, &req, (ErrorCode::KeysetExpired, 410)).await;
    let old_ring = KeyRing::new(
        net.master.clone(),
        net.config.keyset_params(),
        u64::from(TODAY - 200) * DAY,
    )
    .unwrap();
    let ancient = spend(mint(&old_ring, Day(TODAY - 200), &[2]), vec![]);
    refused_swap(&op, &ancient, (ErrorCode::UnknownKeyset, 404)).await;

    // A token expires at the next midnight of its last day, to the second.
    let late = spend(last_live, vec![]);
    net.clock.set(u64::from(TODAY + 1) * DAY);
    refused_swap(&op, &late, (ErrorCode::KeysetExpired, 410)).await;
    net.clock.set(u64::from(TODAY + 1) * DAY - 1);
    swap(&op, &late).await.unwrap();
    op.stop().await;
}

async fn same_token_twice_in_one_request_is_refused(which: Backend) {
    let (_net, op, ring) = Net::started(which).await;
    let tokens = mint(&ring, Day(TODAY), &[4, 2]);
    let (prepared, _) = outputs(&op, &[4, 4]).await;
    let req = spend(
        vec![tokens[0].clone(), tokens[1].clone(), tokens[0].clone()],
        messages(&prepared),
    );
    refused_swap(&op, &req, (ErrorCode::DuplicateInput, 400)).await;
    // Each once is fine (and the outputs were not reserved): 6 in, 4 back.
    swap_ok(&op, tokens, messages(&prepared[..1])).await;
    op.stop().await;
}

async fn change_worth_more_than_the_input_is_refused(which: Backend) {
    let (_net, op, ring) = Net::started(which).await;
    let token = mint(&ring, Day(TODAY), &[8]);
    let (prepared, _) = outputs(&op, &[8, 1]).await;
    let req = spend(token.clone(), messages(&prepared));
    refused_swap(&op, &req, (ErrorCode::Unbalanced, 400)).await;
    // An amount that is not a power of two is refused as such.
    let mut odd = messages(&prepared[..1]);
    odd[0].amount = Amount(3);
    let req = spend(token.clone(), odd);
    refused_swap(&op, &req, (ErrorCode::InvalidAmount, 400)).await;
    // Exactly the input's worth is fine.
    swap_ok(&op, token, messages(&prepared[..1])).await;
    op.stop().await;
}

async fn blinded_output_reused_is_refused(which: Backend) {
    let (_net, op, ring) = Net::started(which).await;
    let (prepared, _) = outputs(&op, &[2, 1]).await;
    let change = messages(&prepared);

    // Twice in one request.
    let first_tokens = mint(&ring, Day(TODAY), &[4]);
    let twice = spend(
        first_tokens.clone(),
        vec![change[0].clone(), change[1].clone(), change[0].clone()],
    );
    refused_swap(&op, &twice, (ErrorCode::DuplicateOutput, 400)).await;

    // Signed once, then asked again in another request with other inputs.
    swap_ok(&op, first_tokens, change.clone()).await;
    let (extra, _) = outputs(&op, &[1]).await;
    let again = spend(
        mint(&ring, Day(TODAY), &[4]),
        vec![messages(&extra)[0].clone(), change[1].clone()],
    );
    refused_swap(&op, &again, (ErrorCode::OutputReused, 409)).await;
    // Its fresh output was not reserved either.
    swap_ok(&op, again.inputs.clone(), messages(&extra)).await;
    op.stop().await;
}

async fn racing_spends_on_two_servers_exactly_one_wins(which: Backend) {
    let net = Net::new(which).await;
    let a = net.start("a").await;
    let b = net.start("b").await;
    // Two servers of one operator: the same keys from the same secret.
    assert_eq!(today_keys(&a).await, today_keys(&b).await);
    let ring = net.ring();

    for round in 0..10 {
        let token = mint(&ring, Day(TODAY - round), &[8]);
        let (pa, keys) = outputs(&a, &[8]).await;
        let (pb, _) = outputs(&b, &[4, 4]).await;
        let ra = spend(token.clone(), messages(&pa));
        let rb = spend(token.clone(), messages(&pb));
        let (x, y) = tokio::join!(swap(&a, &ra), swap(&b, &rb));
        let (winner, loser, loser_req, loser_on) = match (x, y) {
            (Ok(w), Err(l)) => ((pa.clone(), w), l, rb, &b),
            (Err(l), Ok(w)) => ((pb.clone(), w), l, ra, &a),
            other => panic!("round {round}: exactly one must win: {other:?}"),
        };
        assert_eq!(refused::<()>(Err(loser)), (ErrorCode::TokenSpent, 409));
        finalize_all(&winner.0, &winner.1.signatures, &keys).unwrap();
        assert_eq!(states(&a, ys(&token)).await, vec![TokenState::Spent]);
        // Nothing of the loser's request is left: no spend under its id, its outputs free.
        let r = swap_status(loser_on, &loser_req).await;
        assert_eq!(refused(r), (ErrorCode::UnknownSwap, 404));
        swap_ok(
            loser_on,
            mint(&ring, Day(TODAY), &[8]),
            loser_req.outputs.clone(),
        )
        .await;
    }

    // Many requests for one token at once on one server (batched together) and on both.
    let token = mint(&ring, Day(TODAY), &[16]);
    let mut calls = Vec::new();
    for i in 0..8 {
        let (p, _) = outputs(&a, &[16]).await;
        let server = if i % 2 == 0 { &a } else { &b };
        let req = spend(token.clone(), messages(&p));
        calls.push(async move { swap(server, &req).await });
    }
    let results = futures_join_all(calls).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    for r in results.into_iter().filter(|r| r.is_err()) {
        assert_eq!(refused(r), (ErrorCode::TokenSpent, 409));
    }

    // A token sent at once in a request that must be refused (a reused output) and in a
    // good one: the good one is judged by what is registered, and wins.
    let (signed, _) = outputs(&a, &[1]).await;
    swap_ok(&a, mint(&ring, Day(TODAY), &[1]), messages(&signed)).await;
    for _ in 0..5 {
        let token = mint(&ring, Day(TODAY), &[4]);
        let (fresh, _) = outputs(&a, &[2]).await;
        let bad = spend(token.clone(), messages(&signed));
        let good = spend(token.clone(), messages(&fresh));
        let (x, y) = tokio::join!(swap(&a, &bad), swap(&a, &good));
        y.unwrap();
        let (code, _) = refused(x);
        assert!(
            matches!(code, ErrorCode::OutputReused | ErrorCode::TokenSpent),
            "{code}"
        );
    }

    // The identical request on both servers at once is one spend: never two different
    // answers, and both wallets can collect the same change.
    let token = mint(&ring, Day(TODAY), &[2]);
    let (p, keys) = outputs(&a, &[2]).await;
    let req = spend(token, messages(&p));
    let (x, y) = tokio::join!(swap(&a, &req), swap(&b, &req));
    let status = swap_status(&a, &req).await.unwrap();
    assert_eq!(status.state, SwapState::Done);
    let sigs = status.signatures.unwrap();
    // Exactly one of the two is the spend; the other is told it is a repeat (with the same
    // change once done, or `spend_repeated` while the first is still being processed).
    let mut first = 0;
    for r in [x, y] {
        match r {
            Ok(answer) => {
                assert_eq!(answer.signatures, sigs);
                first += usize::from(!answer.replayed);
            }
            Err(e) => assert!(matches!(
                refused::<()>(Err(e)).0,
                ErrorCode::SpendRepeated | ErrorCode::SwapPending
            )),
        }
    }
    assert!(first <= 1, "both answers claim to be the spend");
    finalize_all(&p, &sigs, &keys).unwrap();
    b.stop().await;
    a.stop().await;
}

/// `join_all` without the `futures` crate: polls every call concurrently.
async fn futures_join_all<F, T>(calls: Vec<F>) -> Vec<T>
where
    F: std::future::Future<Output = T>,
{
    let mut pending: Vec<Option<std::pin::Pin<Box<F>>>> =
        calls.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut results: Vec<Option<T>> = (0..pending.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (i, slot) in pending.iter_mut().enumerate() {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        results[i] = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    results.into_iter().map(|r| r.unwrap()).collect()
}

// ---- crash and recovery ---------------------------------------------------------------------

/// What the service registers for `req` before it signs the change: a pending saga.
fn pending_spend(ring: &KeyRing, req: &SwapRequest, now: u64) -> NewSpend {
    NewSpend {
        saga_id: SwapId::of_request(req).unwrap().to_hex(),
        inputs: req
            .inputs
            .iter()
            .map(|p| SpendInput {
                y: p.y().unwrap(),
                amount: p.amount,
                keyset: p.id,
                final_expiry: ring.get(&p.id).unwrap().final_expiry(),
            })
            .collect(),
        outputs: req.outputs.iter().map(|o| o.blinded_secret).collect(),
        outputs_json: serde_json::to_string(&req.outputs).unwrap(),
        outputs_expiry: ring.current(now).unwrap().final_expiry(),
        now,
    }
}

async fn crash_between_pending_and_spent_is_recovered(which: Backend) {
    let net = Net::new(which).await;
    let ring = net.ring();
    let store = {
        let a = net.start("a").await;
        let store = a.op.credit_store().clone();
        a.stop().await;
        store
    };

    // A server took the inputs of three spends (inputs pending, outputs reserved) and was
    // killed before it signed the change. Spend 1 can be completed; spend 2's change is
    // unreadable (it can never be signed); spend 3 was begun only just before the restart.
    let keys = ring.current(NOW).unwrap().keys();
    let t1 = mint(&ring, Day(TODAY - 1), &[8, 2]);
    let p1 = random_outputs(&mut OsRng, &keys.id, &[Amount(8), Amount(2)]).unwrap();
    let r1 = spend(t1.clone(), messages(&p1));
    let t2 = mint(&ring, Day(TODAY), &[4]);
    let p2 = random_outputs(&mut OsRng, &keys.id, &[Amount(4)]).unwrap();
    let r2 = spend(t2.clone(), messages(&p2));
    let t3 = mint(&ring, Day(TODAY), &[1]);
    let p3 = random_outputs(&mut OsRng, &keys.id, &[Amount(1)]).unwrap();
    let r3 = spend(t3.clone(), messages(&p3));
    let mut s2 = pending_spend(&ring, &r2, NOW);
    s2.outputs_json = "not outputs".into();
    for spend in [pending_spend(&ring, &r1, NOW), s2] {
        assert_eq!(
            store.begin_spend(&spend).await.unwrap(),
            smpx_store::credits::BeginOutcome::Started
        );
    }
    net.clock.set(NOW + 120);
    assert_eq!(
        store
            .begin_spend(&pending_spend(&ring, &r3, NOW + 120))
            .await
            .unwrap(),
        smpx_store::credits::BeginOutcome::Started
    );
    assert_eq!(store.pending_sagas(ALL, 10).await.unwrap().len(), 3);

    // The service starts: sagas pending longer than the timeout (60 s) are resolved.
    let op = net.start("b").await;
    let pending = op.op.credit_store().pending_sagas(ALL, 10).await.unwrap();
    assert_eq!(
        pending.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
        vec![SwapId::of_request(&r3).unwrap().to_hex()]
    );

    // Spend 1 was completed: the inputs are spent (not refunded), and the wallet collects
    // the change it never received — valid tokens under today's keyset.
    assert_eq!(states(&op, ys(&t1)).await, vec![TokenState::Spent; 2]);
    let status = swap_status(&op, &r1).await.unwrap();
    assert_eq!(status.state, SwapState::Done);
    let change = finalize_all(&p1, status.signatures.as_ref().unwrap(), &keys).unwrap();
    // Retrying the whole request also returns it; spending its inputs again does not work.
    assert_eq!(
        swap(&op, &r1).await.unwrap().signatures,
        status.signatures.unwrap()
    );
    let (fresh, _) = outputs(&op, &[8]).await;
    let again = spend(vec![t1[0].clone()], messages(&fresh));
    assert_eq!(
        refused(swap(&op, &again).await),
        (ErrorCode::TokenSpent, 409)
    );
    swap_ok(
        &op,
        change.iter().map(Proof::for_spending).collect(),
        vec![],
    )
    .await;

    // Spend 2 was cancelled: its input is refunded (unspent, spendable again), no change.
    let status = swap_status(&op, &r2).await.unwrap();
    assert_eq!(status.state, SwapState::Cancelled);
    assert_eq!(status.signatures, None);
    assert_eq!(states(&op, ys(&t2)).await, vec![TokenState::Unspent]);
    assert_eq!(
        refused(swap(&op, &r2).await),
        (ErrorCode::SwapCancelled, 409)
    );
    let (fresh, keys_now) = outputs(&op, &[4]).await;
    let answer = swap_ok(&op, t2.clone(), messages(&fresh)).await;
    finalize_all(&fresh, &answer.signatures, &keys_now).unwrap();
    // (Its outputs were freed: they can be signed in another request.)
    swap_ok(&op, mint(&ring, Day(TODAY), &[4]), r2.outputs.clone()).await;

    // Spend 3 is too young to be someone else's crash: left pending until the timeout.
    assert_eq!(states(&op, ys(&t3)).await, vec![TokenState::Pending]);
    let status = swap_status(&op, &r3).await.unwrap();
    assert_eq!(status.state, SwapState::Pending);
    // Sent again while pending: a repeat, whose change is collected with GET.
    assert_eq!(
        refused(swap(&op, &r3).await),
        (ErrorCode::SpendRepeated, 409)
    );
    // Once it is old enough, asking for it resolves it.
    net.clock.set(NOW + 120 + 61);
    let status = swap_status(&op, &r3).await.unwrap();
    assert_eq!(status.state, SwapState::Done);
    finalize_all(&p3, status.signatures.as_ref().unwrap(), &keys).unwrap();
    assert_eq!(states(&op, ys(&t3)).await, vec![TokenState::Spent]);

    // No token is both spent and refunded: every input is exactly in its saga's state, and
    // recovery has nothing left to do.
    assert!(op
        .op
        .credit_store()
        .pending_sagas(ALL, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        op.op.recover_credits().await.unwrap(),
        smpx_operator::RecoveryReport::default()
    );
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_server_resolves_another_servers_stale_spends() {
    let net = Net::with_config(
        Backend::Sqlite,
        CreditsConfig {
            recovery_timeout_secs: 1,
            ..CreditsConfig::default()
        },
    )
    .await;
    let op = net.start("a").await;
    let ring = net.ring();
    // Another server registered a spend and died.
    let tokens = mint(&ring, Day(TODAY), &[2]);
    let keys = ring.current(NOW).unwrap().keys();
    let prepared = random_outputs(&mut OsRng, &keys.id, &[Amount(2)]).unwrap();
    let req = spend(tokens.clone(), messages(&prepared));
    let store = op.op.credit_store();
    store
        .begin_spend(&pending_spend(&ring, &req, NOW))
        .await
        .unwrap();
    net.clock.set(NOW + 5);
    // The background sweep (every recovery timeout) completes it without anyone asking.
    let mut waited = 0;
    while !store.pending_sagas(ALL, 10).await.unwrap().is_empty() {
        assert!(waited < 50, "the stale spend was not recovered");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        waited += 1;
    }
    assert_eq!(states(&op, ys(&tokens)).await, vec![TokenState::Spent]);
    let status = swap_status(&op, &req).await.unwrap();
    finalize_all(&prepared, &status.signatures.unwrap(), &keys).unwrap();
    op.stop().await;
}

// ---- issuance -------------------------------------------------------------------------------

fn zk(n: u64, denomination: u64) -> ZkRedemption {
    ZkRedemption {
        mmr_id: 0,
        root: FieldBytes::from_fr(&Fr::from(7u64)),
        nullifier: FieldBytes::from_fr(&Fr::from(1_000 + n)),
        denomination,
        fee: Amount::ZERO,
        proof: vec![n as u8; 128],
    }
}

fn redeem_v2(n: u64, outputs: Option<Vec<BlindedMessage>>) -> RedeemRequest {
    RedeemRequest {
        version: 2,
        envelope: None,
        zk: Some(zk(n, 10)),
        outputs,
    }
}

async fn redeem(op: &Op, req: &RedeemRequest) -> Result<RedeemResponse, ClientError> {
    op.api.post("/v1/redeem", req).await
}

async fn credits_are_issued_once_per_redemption(which: Backend) {
    let net = Net::new(which).await;
    let op = net.start("a").await;
    let info: OperatorServiceInfo = op.api.get("/v1/info").await.unwrap();
    let calls = || net.coordinator.calls.load(Ordering::SeqCst);
    let ten = Amount::from_credits(10).unwrap();
    let amounts: Vec<u64> = split(ten, 40).iter().map(|a| a.0).collect();

    // A v2 redemption with outputs for the 10 credits: the receipt, and blind signatures
    // whose DLEQ proofs check against the published keys.
    let (prepared, keys) = outputs(&op, &amounts).await;
    let req = redeem_v2(1, Some(messages(&prepared)));
    let answer = redeem(&op, &req).await.unwrap();
    answer
        .receipt
        .verify(OPERATOR_DOMAIN, &info.receipt_key)
        .unwrap();
    assert_eq!(answer.receipt.body.credited, ten);
    let sigs = answer.signatures.clone().unwrap();
    let tokens = finalize_all(&prepared, &sigs, &keys).unwrap();
    assert_eq!(tokens.iter().map(|t| t.amount.0).sum::<u64>(), ten.0);
    assert_eq!(calls(), 1);
    assert_eq!(counted(&op), (0, sigs.len() as u64));
    let redeemed = |v: &str| {
        op.op
            .metrics()
            .get(smpx_operator::REDEMPTIONS, &[("version", v)])
    };
    assert_eq!((redeemed("v0.1"), redeemed("v0.2")), (0, 1));
    // A retry gets the same signatures (the coordinator is not asked again), also on another
    // day; the credits are spendable once.
    net.clock.set(NOW + DAY);
    assert_eq!(redeem(&op, &req).await.unwrap(), answer);
    net.clock.set(NOW);
    assert_eq!(calls(), 1);
    assert_eq!(
        counted(&op),
        (0, sigs.len() as u64),
        "a retry signs nothing new"
    );
    assert_eq!((redeemed("v0.1"), redeemed("v0.2")), (0, 1));
    let (change, _) = outputs(&op, &[1]).await;
    swap_ok(
        &op,
        tokens.iter().map(Proof::for_spending).collect(),
        messages(&change),
    )
    .await;

    // Without outputs the answer is the plain receipt, exactly as before credits.
    let plain: Signed<OperatorCreditReceipt> = op
        .api
        .post("/v1/redeem", &redeem_v2(2, None))
        .await
        .unwrap();
    plain.verify(OPERATOR_DOMAIN, &info.receipt_key).unwrap();

    // Outputs that do not add up: refused before the voucher is spent (v2 names its
    // denomination), so the coordinator is not even asked.
    let (short, _) = outputs(&op, &amounts[1..]).await;
    let r = redeem(&op, &redeem_v2(3, Some(messages(&short)))).await;
    assert_eq!(refused(r), (ErrorCode::AmountMismatch, 400));
    let r = redeem(&op, &redeem_v2(3, Some(vec![]))).await;
    assert_eq!(refused(r), (ErrorCode::InvalidRequest, 400));
    assert_eq!(calls(), 2);

    // v1: the operator cannot read the denomination, so a wrong total is found after the
    // redemption; the wallet sends the same redemption again with good outputs and is paid
    // once.
    let envelope = Envelope {
        enc: vec![1; 32],
        ciphertext: vec![2; 64],
    };
    let v1 = |outputs: Vec<BlindedMessage>| RedeemRequest {
        version: 1,
        envelope: Some(envelope.clone()),
        zk: None,
        outputs: Some(outputs),
    };
    let (wrong, _) = outputs(&op, &[1, 2]).await;
    let r = redeem(&op, &v1(messages(&wrong))).await;
    assert_eq!(refused(r), (ErrorCode::AmountMismatch, 400));
    assert_eq!(calls(), 3);
    let (right, keys) = outputs(&op, &amounts).await;
    let paid = redeem(&op, &v1(messages(&right))).await.unwrap();
    finalize_all(&right, paid.signatures.as_ref().unwrap(), &keys).unwrap();
    assert_eq!(calls(), 3);
    // Asking again with yet other outputs returns the first signatures, never new ones.
    let (other, _) = outputs(&op, &amounts).await;
    let again = redeem(&op, &v1(messages(&other))).await.unwrap();
    assert_eq!(again.signatures, paid.signatures);

    // An output already signed (here: in the first issuance) is refused before the voucher
    // is spent: the coordinator is not asked...
    let mut reused = messages(&prepared);
    let (fresh, _) = outputs(&op, &amounts).await;
    reused[1..].clone_from_slice(&messages(&fresh)[1..]);
    let req4 = redeem_v2(4, Some(reused));
    assert_eq!(
        refused(redeem(&op, &req4).await),
        (ErrorCode::OutputReused, 409)
    );
    assert_eq!(calls(), 3);
    // ... and the voucher is redeemed and paid when asked again with fresh outputs.
    let (fresh, keys) = outputs(&op, &amounts).await;
    let paid = redeem(&op, &redeem_v2(4, Some(messages(&fresh))))
        .await
        .unwrap();
    finalize_all(&fresh, paid.signatures.as_ref().unwrap(), &keys).unwrap();
    assert_eq!(calls(), 4);

    // Outputs under another day's keyset, or not powers of two, are refused up front.
    let ring = net.ring();
    let stale_id = *ring.for_day(Day(TODAY - 1)).unwrap().id();
    let split_ten: Vec<Amount> = amounts.iter().map(|a| Amount(*a)).collect();
    let stale = random_outputs(&mut OsRng, &stale_id, &split_ten).unwrap();
    let r = redeem(&op, &redeem_v2(5, Some(messages(&stale)))).await;
    assert_eq!(refused(r), (ErrorCode::KeysetNotCurrent, 400));
    let mut odd = messages(&fresh);
    odd[0].amount = Amount(3);
    let r = redeem(&op, &redeem_v2(5, Some(odd))).await;
    assert_eq!(refused(r), (ErrorCode::InvalidAmount, 400));
    assert_eq!(calls(), 4);
    op.stop().await;
}

// ---- pruning --------------------------------------------------------------------------------

async fn prune_forgets_expired_spends_only(which: Backend) {
    let (net, op, ring) = Net::started(which).await;
    let old = mint(&ring, Day(TODAY - 89), &[2]);
    let new = mint(&ring, Day(TODAY), &[2]);
    for tokens in [&old, &new] {
        swap_ok(&op, tokens.clone(), vec![]).await;
    }
    // Nothing has expired yet.
    assert_eq!(op.op.prune_credits().await.unwrap().inputs, 0);
    // The old keyset expires at the next midnight; its record goes an hour later.
    net.clock.set(u64::from(TODAY + 1) * DAY + 3_600);
    let report = op.op.prune_credits().await.unwrap();
    assert_eq!(report.inputs, 1);
    assert_eq!(
        states(&op, vec![old[0].y().unwrap(), new[0].y().unwrap()]).await,
        vec![TokenState::Unspent, TokenState::Spent]
    );
    // Forgotten, and still refused: it is expired.
    let r = swap(&op, &spend(old, vec![])).await;
    assert_eq!(refused(r), (ErrorCode::KeysetExpired, 410));
    // (The identical request is the same spend and gets its answer again; any other is
    // refused.)
    swap_ok(&op, new.clone(), vec![]).await;
    let (change, _) = outputs(&op, &[1]).await;
    let r = swap(&op, &spend(new, messages(&change))).await;
    assert_eq!(refused(r), (ErrorCode::TokenSpent, 409));
    op.stop().await;
}

// ---- restore (NUT-09) -----------------------------------------------------------------------

/// `POST /v1/restore` finds the signatures of outputs signed before — issued at a redemption
/// or given as change — by `B_`, whatever amount the wallet asks with, in the order asked;
/// outputs never signed are left out. They unblind to the same tokens.
async fn restore_returns_earlier_signatures_by_blinded_output(which: Backend) {
    let net = Net::new(which).await;
    let op = net.start("a").await;
    let ten = Amount::from_credits(10).unwrap();
    let amounts: Vec<u64> = split(ten, 40).iter().map(|a| a.0).collect();
    let (issued, keys) = outputs(&op, &amounts).await;
    let answer = redeem(&op, &redeem_v2(1, Some(messages(&issued))))
        .await
        .unwrap();
    let issued_tokens = finalize_all(&issued, &answer.signatures.unwrap(), &keys).unwrap();
    let (change, _) = outputs(&op, &[2, 1]).await;
    let swapped = swap(
        &op,
        &spend(
            vec![issued_tokens[0].for_spending()],
            messages(&change[..1]),
        ),
    )
    .await;
    // The first issued token is the smallest power of two of 10 credits: 2^7 = 128 ≥ 2.
    let change_tokens = finalize_all(&change[..1], &swapped.unwrap().signatures, &keys).unwrap();
    let (never, _) = outputs(&op, &[4]).await;

    // Asked in a mixed order, with placeholder amounts.
    let asked: Vec<BlindedMessage> = [&never[0], &change[0], &issued[2], &issued[0], &change[1]]
        .iter()
        .map(|p| BlindedMessage {
            amount: Amount(1),
            ..p.message.clone()
        })
        .collect();
    let r: CreditRestoreResponse = op
        .api
        .post("/v1/restore", &CreditRestoreRequest { outputs: asked })
        .await
        .unwrap();
    assert_eq!(
        r.outputs,
        vec![
            change[0].message.clone(),
            issued[2].message.clone(),
            issued[0].message.clone()
        ]
    );
    let again = finalize_all(
        &[change[0].clone(), issued[2].clone(), issued[0].clone()],
        &r.signatures,
        &keys,
    )
    .unwrap();
    assert_eq!(
        again,
        vec![
            change_tokens[0].clone(),
            issued_tokens[2].clone(),
            issued_tokens[0].clone()
        ]
    );
    // Too many outputs in one request are refused.
    let many = vec![never[0].message.clone(); 1001];
    let r = op
        .api
        .post::<_, CreditRestoreResponse>("/v1/restore", &CreditRestoreRequest { outputs: many })
        .await;
    assert!(r.is_err());
    op.stop().await;
}

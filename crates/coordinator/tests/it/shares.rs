//! Operators' shares from directories' signed share statements (issue 13), over real HTTP on
//! SQLite and PostgreSQL: a trusted directory's statement sets the share of the next
//! redemption and its ledger entries name the statement; every refused statement (bad
//! signature, untrusted key, inflated share, unknown operator, older) leaves the share on
//! record; the administrator's number caps the statement; an expired statement falls back to
//! the administrator's number; a suspended operator earns nothing.

use serde_json::Value;
use smpx_coordinator::{Coordinator, CoordinatorHome};
use smpx_coordinator::{OperatorShare, StatementTaken};
use smpx_core::api::*;
use smpx_core::crypto::b64;
use smpx_core::crypto::blind::IssuerSecretKey;
use smpx_core::crypto::sign::SigningKey;
use smpx_core::directory::{statement_digest, ShareStatement, SHARE_PERIOD_SECS};
use smpx_core::ledger::{EntryKind, Totals};
use smpx_core::receipt::Signed;
use smpx_core::redemption::seal_v1;
use smpx_core::rules::trust::Evaluation;
use smpx_core::{ErrorCode, NetworkParams};
use smpx_http::{ApiClient, ClientError, ManualClock};
use smpx_store::coordinator::CoordinatorStore;
use smpx_store::Db;
use smpx_testkit::net::{self, Server};
use smpx_testkit::{both, db as scratch, Backend};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

both!(
    statements_set_shares_and_refusals_keep_them,
    without_trusted_directories_nothing_changes
);

fn directory_key() -> SigningKey {
    SigningKey::from_bytes(&[41; 32])
}

fn rsa_key() -> IssuerSecretKey {
    static DER: OnceLock<Vec<u8>> = OnceLock::new();
    let der = DER.get_or_init(|| {
        IssuerSecretKey::generate(2048, &mut rand::rngs::OsRng)
            .unwrap()
            .to_der()
            .unwrap()
    });
    IssuerSecretKey::from_der(der).unwrap()
}

struct Net {
    clock: ManualClock,
    public: ApiClient,
    admin: ApiClient,
    op: ApiClient,
    key: IssuerSecretKey,
    key_id: String,
    envelope_key: smpx_core::crypto::envelope::HpkePublicKey,
    _dir: tempfile::TempDir,
    _db: Option<tempfile::TempDir>,
    _server: Server,
}

impl Net {
    /// A coordinator trusting `trusted` (hex keys in `config.json`), with issuer `iss` and
    /// operator `op-1` at the administrator's 6000 bps.
    async fn start(which: Backend, trusted: &[String]) -> Net {
        let params = NetworkParams {
            mmr_levels: smpx_testkit::ceremony::LEVELS,
            ..NetworkParams::default()
        };
        // Noon of a share period, an hour or more after the network began.
        let start = smpx_core::directory::period_start(params.epoch + SHARE_PERIOD_SECS) + 43_200;
        let clock = ManualClock::new(start);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(smpx_coordinator::CONFIG_FILE),
            serde_json::to_vec(&serde_json::json!({ "trusted_directories": trusted })).unwrap(),
        )
        .unwrap();
        let (db_url, db) = scratch::database(which).await.unwrap();
        let home = CoordinatorHome::open(dir.path(), Some(params.clone())).unwrap();
        assert_eq!(home.trusted_directories.len(), trusted.len());
        let store = CoordinatorStore::open(Db::connect(&db_url).await.unwrap())
            .await
            .unwrap();
        let state = Coordinator::new(store, home, Arc::new(clock.clone()));
        let server = net::Server::start(net::any_port(), |l, stop| {
            smpx_coordinator::run(state, l, Duration::from_secs(3600), stop)
        })
        .await
        .unwrap();
        let token = std::fs::read_to_string(dir.path().join("admin-token")).unwrap();
        let admin = ApiClient::new(&server.url).with_token(token);
        let issuer: CredentialResponse = admin
            .post(
                "/v1/admin/issuers",
                &AddIssuerRequest {
                    id: "iss".into(),
                    limit_credits: 1000,
                },
            )
            .await
            .unwrap();
        let op: CredentialResponse = admin
            .post(
                "/v1/admin/operators",
                &AddOperatorRequest {
                    id: "op-1".into(),
                    share_bps: 6000,
                },
            )
            .await
            .unwrap();
        let key = rsa_key();
        let period = smpx_core::keys::period_at(&params, start);
        let info: IssuerKeyInfo = ApiClient::new(&server.url)
            .with_token(issuer.token)
            .post(
                "/v1/issuer-keys",
                &RegisterKeyRequest {
                    denomination: 10,
                    period,
                    public_key: b64::encode(&key.public_key().unwrap().to_spki().unwrap()),
                },
            )
            .await
            .unwrap();
        let public = ApiClient::new(&server.url);
        let p: ParamsResponse = public.get("/v1/params").await.unwrap();
        Net {
            clock,
            op: ApiClient::new(&server.url).with_token(op.token),
            public,
            admin,
            key,
            key_id: info.key_id,
            envelope_key: p.envelope_key,
            _dir: dir,
            _db: db,
            _server: server,
        }
    }

    fn now(&self) -> u64 {
        smpx_http::Clock::now(&self.clock)
    }

    /// Publishes a voucher and redeems it as `op-1` (v0.1): the coordinator's receipt.
    async fn redeem(&self) -> Result<Signed<RedemptionReceipt>, ClientError> {
        let (s, req) =
            smpx_core::issuance::issue_locally(&self.key, &self.key_id, 10, &mut rand::rngs::OsRng)
                .unwrap();
        let _: Signed<PublishReceipt> = self.public.post("/v1/vouchers", &req).await.unwrap();
        let env = seal_v1(&self.envelope_key, &s, 10, "op-1", &mut rand::rngs::OsRng).unwrap();
        let forward = ForwardRedemptionRequest {
            version: 1,
            envelope: Some(env),
            zk: None,
        };
        self.op.post("/v1/redemptions", &forward).await
    }

    /// The (source, statement) of the last redemption's ledger entries, checking that both
    /// of its entries say the same and that the log still replays.
    async fn last_redemption_source(&self) -> (Option<String>, Option<String>) {
        let page: EntriesPage = self.public.get("/v1/ledger/entries").await.unwrap();
        Totals::replay(&page.entries).unwrap();
        let redeemed: Vec<_> = page
            .entries
            .iter()
            .filter(|e| e.kind == EntryKind::Redeem)
            .collect();
        let last = redeemed[redeemed.len() - 2..].to_vec();
        assert_eq!(last[0].share_source, last[1].share_source);
        assert_eq!(last[0].share_statement, last[1].share_statement);
        // Both record the redemption they split, and its split gives exactly their amounts.
        let note = last[0].redemption.clone().unwrap();
        assert_eq!(last[1].redemption.as_ref(), Some(&note));
        assert_eq!(
            last[0].to,
            smpx_core::ledger::Account::Operator(note.operator_id.clone())
        );
        assert_eq!(
            smpx_core::ledger::redemption_split(note.value, note.share_bps),
            (last[0].amount, last[1].amount)
        );
        (
            last[0].share_source.clone(),
            last[0].share_statement.clone(),
        )
    }

    async fn share(&self) -> OperatorShare {
        self.public.get("/v1/operators/op-1/share").await.unwrap()
    }

    async fn submit(&self, body: &Value) -> Result<StatementTaken, ClientError> {
        self.public.post("/v1/share-statements", body).await
    }
}

/// A verified operator a year on the network whose relays were up `uptime`: a share of
/// `7000 × uptime` under the network's 7000 cap.
fn statement(operator: &str, uptime: f64, at: u64) -> ShareStatement {
    let evaluation = Evaluation {
        verified_identity: true,
        time_on_network_secs: 365 * 86_400,
        relay_uptimes: vec![uptime],
        probation_uptimes: Vec::new(),
    };
    ShareStatement::new("test-directory", operator, evaluation, 7000, at)
}

fn wire(s: &Signed<ShareStatement>) -> Value {
    serde_json::to_value(s).unwrap()
}

fn code<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (ErrorCode, u16) {
    match r {
        Err(ClientError::Api { code, status, .. }) => (code, status),
        other => panic!("expected a typed error, got {other:?}"),
    }
}

async fn statements_set_shares_and_refusals_keep_them(which: Backend) {
    let dir = directory_key();
    let net = Net::start(which, &[dir.verifying_key().to_hex()]).await;

    // No statement yet: the administrator's number, and the ledger says so.
    let r = net.redeem().await.unwrap();
    assert_eq!(r.body.share_bps, 6000);
    assert_eq!(
        net.last_redemption_source().await,
        (Some("admin".into()), None)
    );
    let share = net.share().await;
    assert_eq!((share.share_bps, share.source.as_str()), (6000, "admin"));

    // A trusted directory's statement: 7000 × 0.5 = 3500, under the 6000 cap.
    let signed = statement("op-1", 0.5, net.now()).sign(&dir).unwrap();
    let digest = statement_digest(&signed);
    let taken = net.submit(&wire(&signed)).await.unwrap();
    assert_eq!(
        (taken.digest.as_str(), taken.share_bps),
        (digest.as_str(), 3500)
    );
    // Again: idempotent.
    assert_eq!(net.submit(&wire(&signed)).await.unwrap(), taken);
    let share = net.share().await;
    assert_eq!(
        (
            share.share_bps,
            share.source.as_str(),
            share.statement.as_deref()
        ),
        (3500, "statement", Some(digest.as_str()))
    );
    assert_eq!(
        (share.cap_bps, share.statement_share_bps),
        (6000, Some(3500))
    );
    let r = net.redeem().await.unwrap();
    assert_eq!(r.body.share_bps, 3500);
    let page: EntriesPage = net.public.get("/v1/ledger/entries").await.unwrap();
    let note = page.entries.last().unwrap().redemption.clone().unwrap();
    assert_eq!((note.share_bps, note.value), (3500, r.body.value));
    // The keys the coordinator trusts are public, so an auditor can check the signer.
    let trusted: TrustedDirectoriesResponse =
        net.public.get("/v1/trusted-directories").await.unwrap();
    assert_eq!(trusted.keys, [dir.verifying_key()]);
    assert_eq!(
        net.last_redemption_source().await,
        (Some("statement".into()), Some(digest.clone()))
    );
    // Anyone can fetch the statement the entry names and re-derive the split from it.
    let fetched: Signed<ShareStatement> = net
        .public
        .get(&format!("/v1/share-statements/{digest}"))
        .await
        .unwrap();
    assert_eq!(statement_digest(&fetched), digest);
    assert!(fetched.body.rederive());
    assert_eq!(
        smpx_core::ledger::redemption_split(r.body.value, fetched.body.share.share_bps as u32),
        (r.body.operator_amount, r.body.fund_amount)
    );

    // Refused, each leaving the statement on record in force:
    let kept = |share: OperatorShare| {
        assert_eq!(
            (share.share_bps, share.statement.as_deref()),
            (3500, Some(digest.as_str()))
        );
    };
    let refused = (ErrorCode::StatementRefused, 400);
    let newer = statement("op-1", 0.9, net.now() + 60);
    // a bad signature (one bit of it flipped),
    let mut bad = wire(&newer.clone().sign(&dir).unwrap());
    let sig = bad["signature"].as_str().unwrap().to_owned();
    let flipped = if sig.starts_with('0') { "1" } else { "0" };
    bad["signature"] = Value::String(format!("{flipped}{}", &sig[1..]));
    assert_eq!(code(net.submit(&bad).await), refused);
    kept(net.share().await);
    // an untrusted key,
    let other = SigningKey::from_bytes(&[42; 32]);
    assert_eq!(
        code(
            net.submit(&wire(&newer.clone().sign(&other).unwrap()))
                .await
        ),
        refused
    );
    kept(net.share().await);
    // an inflated share (the arithmetic does not give it), signed by the trusted key,
    let mut inflated = newer.clone();
    inflated.share.share_bps += 1000;
    assert_eq!(
        code(net.submit(&wire(&inflated.sign(&dir).unwrap())).await),
        refused
    );
    kept(net.share().await);
    // an operator the coordinator does not know,
    let ghost = statement("ghost", 0.9, net.now() + 60).sign(&dir).unwrap();
    assert_eq!(
        code(net.submit(&wire(&ghost)).await),
        (ErrorCode::UnknownOperator, 404)
    );
    // an older statement than the one on record, and yesterday's,
    let older = statement("op-1", 0.9, net.now() - 60).sign(&dir).unwrap();
    assert_eq!(code(net.submit(&wire(&older)).await), refused);
    let yesterday = statement("op-1", 0.9, net.now() - SHARE_PERIOD_SECS)
        .sign(&dir)
        .unwrap();
    assert_eq!(code(net.submit(&wire(&yesterday)).await), refused);
    kept(net.share().await);
    assert_eq!(net.redeem().await.unwrap().body.share_bps, 3500);

    // The administrator lowers the cap below the statement: the cap is paid, still
    // credited to the statement (it set the share, the cap bounded it).
    let _: OperatorInfo = net
        .admin
        .post(
            "/v1/admin/operators/op-1/share",
            &SetShareRequest { share_bps: 2000 },
        )
        .await
        .unwrap();
    assert_eq!(net.share().await.share_bps, 2000);
    assert_eq!(net.redeem().await.unwrap().body.share_bps, 2000);
    assert_eq!(
        net.last_redemption_source().await,
        (Some("statement".into()), Some(digest.clone()))
    );

    // Suspended: redemptions refused, nothing earned, until resumed.
    let suspended: OperatorShare = net
        .admin
        .post("/v1/admin/operators/op-1/suspend", &serde_json::json!({}))
        .await
        .unwrap();
    assert!(suspended.suspended);
    assert_eq!(suspended.share_bps, 0);
    let before: LedgerTotalsResponse = net.public.get("/v1/ledger/totals").await.unwrap();
    assert_eq!(
        code(net.redeem().await),
        (ErrorCode::OperatorSuspended, 403)
    );
    let after: LedgerTotalsResponse = net.public.get("/v1/ledger/totals").await.unwrap();
    assert_eq!(
        after.totals.paid_to_operators,
        before.totals.paid_to_operators
    );
    let ghost: Result<OperatorShare, _> = net
        .admin
        .post("/v1/admin/operators/ghost/suspend", &serde_json::json!({}))
        .await;
    assert_eq!(code(ghost), (ErrorCode::UnknownOperator, 404));
    let resumed: OperatorShare = net
        .admin
        .post("/v1/admin/operators/op-1/resume", &serde_json::json!({}))
        .await
        .unwrap();
    assert!(!resumed.suspended);
    assert_eq!(net.redeem().await.unwrap().body.share_bps, 2000);

    // The statement's period ends: the administrator's number again, and the ledger says so.
    net.clock.set(signed.body.period_end);
    let share = net.share().await;
    assert_eq!(
        (share.share_bps, share.source.as_str(), share.statement),
        (2000, "admin", None)
    );
    assert_eq!(net.redeem().await.unwrap().body.share_bps, 2000);
    assert_eq!(
        net.last_redemption_source().await,
        (Some("admin".into()), None)
    );
    let unknown: Result<OperatorShare, _> = net.public.get("/v1/operators/ghost/share").await;
    assert_eq!(code(unknown), (ErrorCode::UnknownOperator, 404));
}

async fn without_trusted_directories_nothing_changes(which: Backend) {
    let net = Net::start(which, &[]).await;
    let signed = statement("op-1", 0.5, net.now())
        .sign(&directory_key())
        .unwrap();
    assert_eq!(
        code(net.submit(&wire(&signed)).await),
        (ErrorCode::StatementRefused, 400)
    );
    let share = net.share().await;
    assert_eq!((share.share_bps, share.source.as_str()), (6000, "admin"));
    assert_eq!(net.redeem().await.unwrap().body.share_bps, 6000);
    assert_eq!(
        net.last_redemption_source().await,
        (Some("admin".into()), None)
    );
    let missing: Result<Value, _> = net
        .public
        .get(&format!(
            "/v1/share-statements/{}",
            statement_digest(&signed)
        ))
        .await;
    assert_eq!(code(missing), (ErrorCode::NotFound, 404));
    let trusted: TrustedDirectoriesResponse =
        net.public.get("/v1/trusted-directories").await.unwrap();
    assert!(trusted.keys.is_empty());
}

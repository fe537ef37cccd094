//! `/v1` endpoints of the directory.

use crate::view::{self, RelayView, ThresholdsView};
use crate::Directory;
use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use smpx_core::api::ErrorBody;
use smpx_core::crypto::sign::VerifyingKey;
use smpx_core::directory::wire::{
    check_attestation, Attestation, Heartbeat, RegistrationRequest, Withdrawal, HEARTBEAT_DOMAIN,
    MAX_CLOCK_SKEW_SECS, WITHDRAW_DOMAIN,
};
use smpx_core::receipt::Signed;
use smpx_core::rules::listing::subnet_of;
use smpx_core::rules::measure::Stability;
use smpx_core::ErrorCode;
use smpx_http::{ApiError, ApiResult, Json, Path, Query};
use smpx_store::directory::{
    AttestationRow, HeartbeatOutcome, LogEntry, LogKind, NewRegistration, ObservationRow,
    RegisterOutcome, RelayRow,
};
use std::sync::Arc;

type AppState = State<Arc<Directory>>;

pub(crate) fn router(state: Arc<Directory>) -> Router {
    let r = Router::new()
        .route("/", get(crate::web::index_page))
        .route("/relays/{fingerprint}", get(crate::web::relay_page))
        .route("/operators/{id}", get(crate::web::operator_page))
        .route("/openapi.json", get(openapi))
        .route("/v1/health", get(smpx_http::common::health))
        .route("/v1/pow", get(pow))
        .route("/v1/relays", post(register).get(relays))
        .route("/v1/relays/pick", get(pick))
        .route("/v1/relays/{fingerprint}", get(relay))
        .route("/v1/relays/{fingerprint}/heartbeat", post(heartbeat))
        .route("/v1/relays/{fingerprint}/withdraw", post(withdraw))
        .route("/v1/operators/{id}", get(operator))
        .route("/v1/operators/{id}/attestations", post(attest))
        .route("/v1/thresholds", get(thresholds))
        .route("/v1/statements", get(latest_statement))
        .route("/v1/statements/{period_start}", get(period_statements))
        .route("/v1/log/checkpoint", get(log_checkpoint))
        .route("/v1/log/entries", get(log_entries))
        .route("/v1/log/proof/inclusion", get(log_inclusion))
        .route("/v1/log/proof/consistency", get(log_consistency))
        .merge(state.metrics.route())
        .with_state(state);
    smpx_http::finish_router(r)
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(crate::openapi::document())
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(e)
}

/// A proof-of-work challenge.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct PowChallenge {
    /// Put this text in the registration's `challenge`; it is spent by one registration.
    pub challenge: String,
    /// Leading zero bits the work must reach.
    pub difficulty: u32,
    pub expires_at: u64,
}

/// `GET /v1/pow`: a fresh challenge, valid for `challenge_ttl_secs`, good for one
/// registration.
#[utoipa::path(get, path = "/v1/pow", responses((status = 200, body = PowChallenge)))]
pub(crate) async fn pow(State(d): AppState) -> ApiResult<Json<PowChallenge>> {
    let mut bytes = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    let challenge = hex::encode(bytes);
    let now = d.clock.now();
    let expires_at = now + d.config.challenge_ttl_secs;
    d.store
        .add_challenge(&challenge, now, expires_at)
        .await
        .map_err(internal)?;
    Ok(Json(PowChallenge {
        challenge,
        difficulty: d.config.pow_difficulty,
        expires_at,
    }))
}

/// The answer to a registration.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct Registered {
    pub fingerprint: String,
    pub address: String,
    /// The fingerprint was new here (otherwise its record was updated).
    pub created: bool,
}

/// `POST /v1/relays`: registers (or updates) a relay. Refusals: `invalid_request` (bounds,
/// address, timestamp), `bad_signature` (either signature, or a CA certificate that is not
/// the fingerprint's), `bad_proof_of_work` (too little work, or a challenge that is unknown,
/// expired or spent), `rate_limited` (too many registrations from the relay's subnet),
/// `unauthorized` (the operator id is registered with another key), `fingerprint_taken`.
#[utoipa::path(post, path = "/v1/relays", request_body = RegistrationRequest,
    responses((status = 200, body = Registered),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub(crate) async fn register(
    State(d): AppState,
    Json(req): Json<RegistrationRequest>,
) -> ApiResult<Json<Registered>> {
    let now = d.clock.now();
    let checked = crate::verify::check_registration(&req, now, d.config.pow_difficulty)?;
    let r = &checked.registration;
    let fingerprint = checked.address.fingerprint.to_string();
    let address = checked.address.to_string();
    let record = NewRegistration {
        fingerprint: fingerprint.clone(),
        address: address.clone(),
        subnet: subnet_of(&checked.address.host.to_string()),
        operator_id: r.operator_id.clone(),
        operator_key: r.operator_key.to_hex(),
        region: r.region.clone(),
        info: serde_json::to_string(&r.info).map_err(internal)?,
        metadata: serde_json::to_string(&r.metadata).map_err(internal)?,
        challenge: r.challenge.clone(),
        fresh_stability: serde_json::to_string(&Stability::default()).map_err(internal)?,
        now,
        rate_limit: d.config.registrations_per_subnet,
        rate_window_secs: d.config.registration_window_secs,
    };
    let e = |code, m: &str| Err(ApiError::new(code, m));
    let logged = LogEntry::new(
        LogKind::Registration,
        serde_json::to_string(&req).map_err(internal)?,
    );
    match d
        .store
        .register_logged(&record, &logged)
        .await
        .map_err(internal)?
    {
        RegisterOutcome::Registered { new } => {
            d.snapshots.invalidate();
            d.metrics.inc(crate::REGISTRATIONS, &[], 1);
            Ok(Json(Registered {
                fingerprint,
                address,
                created: new,
            }))
        }
        RegisterOutcome::ChallengeUnknown => e(
            ErrorCode::BadProofOfWork,
            "the challenge is not one this directory handed out (or it was forgotten)",
        ),
        RegisterOutcome::ChallengeExpired => e(
            ErrorCode::BadProofOfWork,
            "the challenge expired; ask GET /v1/pow for a new one",
        ),
        RegisterOutcome::ChallengeUsed => e(
            ErrorCode::BadProofOfWork,
            "the challenge was spent by an earlier registration",
        ),
        RegisterOutcome::RateLimited => e(
            ErrorCode::RateLimited,
            "too many registrations from this relay's subnet; retry later",
        ),
        RegisterOutcome::OperatorKeyMismatch => e(
            ErrorCode::Unauthorized,
            "this operator id is registered with another key",
        ),
        RegisterOutcome::FingerprintTaken => e(
            ErrorCode::FingerprintTaken,
            "this fingerprint is registered by another operator",
        ),
    }
}

fn unknown_relay() -> ApiError {
    ApiError::new(
        ErrorCode::UnknownRelay,
        "no relay with this fingerprint is published here",
    )
}

/// A published relay's record and the body of `signed`, checked to be by the relay's
/// operator key under `domain` and about the relay the path names.
async fn by_operator<'a, T, F>(
    d: &Directory,
    fingerprint: &str,
    signed: &'a Signed<T>,
    domain: &str,
    names: F,
) -> ApiResult<(RelayRow, &'a T)>
where
    T: serde::de::DeserializeOwned + Serialize + PartialEq,
    F: FnOnce(&T) -> &str,
{
    let relay = published(d, fingerprint).await?;
    let body = signed.verify(domain, &operator_key(d, &relay).await?)?;
    same_relay(fingerprint, names(body))?;
    Ok((relay, body))
}

/// A published relay's record (not withdrawn), or `unknown_relay`.
async fn published(d: &Directory, fingerprint: &str) -> ApiResult<RelayRow> {
    match d.store.relay(fingerprint).await.map_err(internal)? {
        Some(r) if r.withdrawn_at.is_none() => Ok(r),
        _ => Err(unknown_relay()),
    }
}

/// The key of the operator a relay was registered by.
async fn operator_key(d: &Directory, relay: &RelayRow) -> ApiResult<VerifyingKey> {
    let op = d
        .store
        .operator(&relay.operator_id)
        .await
        .map_err(internal)?
        .ok_or_else(|| internal("a relay's operator is missing"))?;
    VerifyingKey::from_hex(&op.operator_key).map_err(internal)
}

fn same_relay(path: &str, body: &str) -> ApiResult<()> {
    if path != body {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "the body names another fingerprint than the path",
        ));
    }
    Ok(())
}

/// The answer to a heartbeat.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct HeartbeatRecorded {
    pub seq: u64,
}

/// `POST /v1/relays/{fingerprint}/heartbeat`: a [`Heartbeat`] signed (receipt format 2, domain
/// `smpx/directory/heartbeat/v1`) by the operator key the relay was registered with. Its
/// `seq` must be above every earlier one (`stale_heartbeat` otherwise, and for one sent more
/// than 10 minutes from the directory's clock).
#[utoipa::path(post, path = "/v1/relays/{fingerprint}/heartbeat", request_body = Signed<Heartbeat>,
    params(("fingerprint" = String, Path, description = "The relay's CA fingerprint")),
    responses((status = 200, body = HeartbeatRecorded),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub(crate) async fn heartbeat(
    State(d): AppState,
    Path(fingerprint): Path<String>,
    Json(hb): Json<Signed<Heartbeat>>,
) -> ApiResult<Json<HeartbeatRecorded>> {
    let (_, body) =
        by_operator(&d, &fingerprint, &hb, HEARTBEAT_DOMAIN, |b| &b.fingerprint).await?;
    if body.at.abs_diff(d.clock.now()) > MAX_CLOCK_SKEW_SECS {
        return Err(ApiError::new(
            ErrorCode::StaleHeartbeat,
            "the heartbeat's time is more than 10 minutes from the directory's clock",
        ));
    }
    match d
        .store
        .heartbeat(&fingerprint, body.seq, body.at)
        .await
        .map_err(internal)?
    {
        HeartbeatOutcome::Recorded => {
            d.snapshots.invalidate();
            Ok(Json(HeartbeatRecorded { seq: body.seq }))
        }
        HeartbeatOutcome::Stale => Err(ApiError::new(
            ErrorCode::StaleHeartbeat,
            "a heartbeat with this or a later seq was recorded already",
        )),
        HeartbeatOutcome::Unknown => Err(unknown_relay()),
    }
}

/// The answer to a withdrawal.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct Withdrawn {
    pub fingerprint: String,
}

/// `POST /v1/relays/{fingerprint}/withdraw`: a [`Withdrawal`] signed by the operator key
/// (domain `smpx/directory/withdraw/v1`), written after the relay's latest registration (an
/// old withdrawal replayed after a re-registration is `stale_heartbeat`). The relay is no
/// longer published; its history is kept for a re-registration.
#[utoipa::path(post, path = "/v1/relays/{fingerprint}/withdraw", request_body = Signed<Withdrawal>,
    params(("fingerprint" = String, Path, description = "The relay's CA fingerprint")),
    responses((status = 200, body = Withdrawn),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub(crate) async fn withdraw(
    State(d): AppState,
    Path(fingerprint): Path<String>,
    Json(w): Json<Signed<Withdrawal>>,
) -> ApiResult<Json<Withdrawn>> {
    let (relay, body) =
        by_operator(&d, &fingerprint, &w, WITHDRAW_DOMAIN, |b| &b.fingerprint).await?;
    let now = d.clock.now();
    if body.at < relay.updated_at || body.at.abs_diff(now) > MAX_CLOCK_SKEW_SECS {
        return Err(ApiError::new(
            ErrorCode::StaleHeartbeat,
            "the withdrawal is older than the relay's registration or far from the directory's clock",
        ));
    }
    if !d
        .store
        .withdraw(
            &fingerprint,
            now,
            &LogEntry::new(
                LogKind::Withdrawal,
                serde_json::to_string(&w).map_err(internal)?,
            ),
        )
        .await
        .map_err(internal)?
    {
        return Err(unknown_relay());
    }
    d.snapshots.invalidate();
    Ok(Json(Withdrawn { fingerprint }))
}

/// `status` filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StatusFilter {
    Running,
    Down,
    Unprobed,
}

/// `flag` filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FlagFilter {
    Running,
    Stable,
    Fast,
    Probation,
}

/// `GET /v1/relays` filters; each one given must hold.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RelayQuery {
    pub status: Option<StatusFilter>,
    pub region: Option<String>,
    pub operator: Option<String>,
    pub flag: Option<FlagFilter>,
}

impl StatusFilter {
    fn name(self) -> &'static str {
        match self {
            StatusFilter::Running => "running",
            StatusFilter::Down => "down",
            StatusFilter::Unprobed => "unprobed",
        }
    }
}

impl FlagFilter {
    fn name(self) -> &'static str {
        match self {
            FlagFilter::Running => "running",
            FlagFilter::Stable => "stable",
            FlagFilter::Fast => "fast",
            FlagFilter::Probation => "probation",
        }
    }
}

/// `GET /v1/relays`: every published relay matching the filters, by fingerprint.
#[utoipa::path(get, path = "/v1/relays", params(RelayQuery),
    responses((status = 200, body = Vec<RelayView>)))]
pub(crate) async fn relays(
    State(d): AppState,
    Query(q): Query<RelayQuery>,
) -> ApiResult<Json<Vec<RelayView>>> {
    let snap = view::current(&d).await.map_err(internal)?;
    let status = q.status.map(StatusFilter::name);
    let flag = q.flag.map(FlagFilter::name);
    let out = snap
        .relays
        .iter()
        .filter(|r| status.is_none_or(|s| r.status == s))
        .filter(|r| q.region.as_ref().is_none_or(|x| &r.region == x))
        .filter(|r| q.operator.as_ref().is_none_or(|x| &r.operator_id == x))
        .filter(|r| flag.is_none_or(|f| r.flags.iter().any(|x| x == f)))
        .cloned()
        .collect();
    Ok(Json(out))
}

/// The most relays one pick returns.
pub const MAX_PICK: usize = 16;

/// `GET /v1/relays/pick` parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PickQuery {
    /// The region the relays must be in.
    pub region: String,
    /// How many relays, 1 to 16 (default 3).
    pub count: Option<usize>,
}

/// `GET /v1/relays/pick?region=X&count=3`: up to `count` Running relays in the region, of
/// pairwise distinct operators, best first (lowest median latency, then highest uptime):
/// what a client choosing a route through independent operators asks for. Fewer when the
/// region has fewer operators running; `invalid_request` for a count outside 1..=16.
#[utoipa::path(get, path = "/v1/relays/pick", params(PickQuery),
    responses((status = 200, body = Vec<RelayView>), (status = 400, body = ErrorBody)))]
pub(crate) async fn pick(
    State(d): AppState,
    Query(q): Query<PickQuery>,
) -> ApiResult<Json<Vec<RelayView>>> {
    let count = q.count.unwrap_or(3);
    if !(1..=MAX_PICK).contains(&count) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("count must be between 1 and {MAX_PICK}"),
        ));
    }
    let snap = view::current(&d).await.map_err(internal)?;
    Ok(Json(
        snap.pick(&q.region, count).into_iter().cloned().collect(),
    ))
}

/// One probe in a relay's history.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct ObservationView {
    pub at: u64,
    pub up: bool,
    pub latency_ms: Option<u32>,
    pub stage: String,
    pub detail: String,
}

impl From<ObservationRow> for ObservationView {
    fn from(o: ObservationRow) -> Self {
        ObservationView {
            at: o.at,
            up: o.up,
            latency_ms: o.latency_ms,
            stage: o.stage,
            detail: o.detail,
        }
    }
}

/// A relay with its recent history.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RelayDetail {
    pub relay: RelayView,
    /// The probes of the last day, oldest first (at most 500).
    pub history: Vec<ObservationView>,
}

/// `GET /v1/relays/{fingerprint}`.
#[utoipa::path(get, path = "/v1/relays/{fingerprint}",
    params(("fingerprint" = String, Path, description = "The relay's CA fingerprint")),
    responses((status = 200, body = RelayDetail), (status = 404, body = ErrorBody)))]
pub(crate) async fn relay(
    State(d): AppState,
    Path(fingerprint): Path<String>,
) -> ApiResult<Json<RelayDetail>> {
    let snap = view::current(&d).await.map_err(internal)?;
    let Some(relay) = snap
        .relays
        .iter()
        .find(|r| r.fingerprint == fingerprint)
        .cloned()
    else {
        return Err(unknown_relay());
    };
    let history = d
        .store
        .observations(
            &fingerprint,
            snap.now.saturating_sub(view::LATENCY_WINDOW_SECS),
            500,
        )
        .await
        .map_err(internal)?
        .into_iter()
        .map(ObservationView::from)
        .collect();
    Ok(Json(RelayDetail { relay, history }))
}

/// A stored attestation, as shown on the operator's record.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttestationView {
    /// The attester's key, hex.
    pub attester: String,
    pub legal_name: String,
    pub country: String,
    pub issued_at: u64,
    /// Whether the attester is one this directory trusts now.
    pub trusted: bool,
}

/// An operator's record.
#[derive(Serialize, utoipa::ToSchema)]
pub struct OperatorView {
    pub operator_id: String,
    /// Hex.
    pub operator_key: String,
    pub first_seen: u64,
    pub verified_identity: bool,
    pub attestations: Vec<AttestationView>,
    /// Its published relays' fingerprints.
    pub relays: Vec<String>,
    /// Its latest share statement (a signed `ShareStatement`), if any.
    #[schema(value_type = Option<Object>)]
    pub statement: Option<serde_json::Value>,
}

fn unknown_operator() -> ApiError {
    ApiError::new(
        ErrorCode::UnknownOperator,
        "no operator with this id registered here",
    )
}

/// `GET /v1/operators/{id}`.
#[utoipa::path(get, path = "/v1/operators/{id}",
    params(("id" = String, Path, description = "The operator id")),
    responses((status = 200, body = OperatorView), (status = 404, body = ErrorBody)))]
pub(crate) async fn operator(
    State(d): AppState,
    Path(id): Path<String>,
) -> ApiResult<Json<OperatorView>> {
    let op = d
        .store
        .operator(&id)
        .await
        .map_err(internal)?
        .ok_or_else(unknown_operator)?;
    let trusted: Vec<String> = d
        .config
        .trusted_attesters
        .iter()
        .map(|k| k.to_hex())
        .collect();
    let attestations: Vec<AttestationView> = d
        .store
        .attestations(&id)
        .await
        .map_err(internal)?
        .into_iter()
        .map(|a| AttestationView {
            trusted: trusted.contains(&a.attester),
            attester: a.attester,
            legal_name: a.legal_name,
            country: a.country,
            issued_at: a.issued_at,
        })
        .collect();
    let relays = view::current(&d)
        .await
        .map_err(internal)?
        .relays
        .iter()
        .filter(|r| r.operator_id == id)
        .map(|r| r.fingerprint.clone())
        .collect();
    let statement = d
        .store
        .statements(Some(&id), None, 1)
        .await
        .map_err(internal)?
        .into_iter()
        .next()
        .map(|s| serde_json::from_str(&s))
        .transpose()
        .map_err(internal)?;
    Ok(Json(OperatorView {
        operator_id: op.operator_id,
        operator_key: op.operator_key,
        first_seen: op.first_seen,
        verified_identity: attestations.iter().any(|a| a.trusted),
        attestations,
        relays,
        statement,
    }))
}

/// `POST /v1/operators/{id}/attestations`: a signed [`Attestation`] (domain
/// `smpx/directory/attestation/v1`) of the operator's key by an attester this directory
/// trusts (`bad_signature` otherwise). Stored, shown on the operator's record, and the
/// operator counts as having a verified identity in its next share statement.
#[utoipa::path(post, path = "/v1/operators/{id}/attestations", request_body = Signed<Attestation>,
    params(("id" = String, Path, description = "The operator id")),
    responses((status = 200, body = AttestationView),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn attest(
    State(d): AppState,
    Path(id): Path<String>,
    Json(a): Json<Signed<Attestation>>,
) -> ApiResult<Json<AttestationView>> {
    let op = d
        .store
        .operator(&id)
        .await
        .map_err(internal)?
        .ok_or_else(unknown_operator)?;
    let key = VerifyingKey::from_hex(&op.operator_key).map_err(internal)?;
    let body = check_attestation(&a, &d.config.trusted_attesters, &key)?;
    let row = AttestationRow {
        attester: a.signer.to_hex(),
        legal_name: body.legal_name.clone(),
        country: body.country.clone(),
        issued_at: body.issued_at,
        attestation: serde_json::to_string(&a).map_err(internal)?,
    };
    d.store.put_attestation(&id, &row).await.map_err(internal)?;
    d.snapshots.invalidate();
    Ok(Json(AttestationView {
        attester: row.attester,
        legal_name: row.legal_name,
        country: row.country,
        issued_at: row.issued_at,
        trusted: true,
    }))
}

/// `GET /v1/thresholds`: what the flags are judged by now.
#[utoipa::path(get, path = "/v1/thresholds", responses((status = 200, body = ThresholdsView)))]
pub(crate) async fn thresholds(State(d): AppState) -> ApiResult<Json<ThresholdsView>> {
    let snap = view::current(&d).await.map_err(internal)?;
    Ok(Json(snap.thresholds_view(&d)))
}

/// `?operator=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatementQuery {
    pub operator: Option<String>,
}

/// `GET /v1/statements?operator=…`: the operator's latest share statement, a signed
/// `ShareStatement` (receipt format 2, domain `smpx/directory/share-statement/v1`).
#[utoipa::path(get, path = "/v1/statements", params(StatementQuery),
    responses((status = 200, body = Object), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub(crate) async fn latest_statement(
    State(d): AppState,
    Query(q): Query<StatementQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let Some(op) = q.operator else {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "name the operator: ?operator=…",
        ));
    };
    let s = d
        .store
        .statements(Some(&op), None, 1)
        .await
        .map_err(internal)?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no statement for this operator"))?;
    Ok(Json(serde_json::from_str(&s).map_err(internal)?))
}

/// `GET /v1/statements/{period_start}`: the statements of that period, one per operator
/// (`?operator=` for one).
#[utoipa::path(get, path = "/v1/statements/{period_start}", params(
        ("period_start" = u64, Path, description = "The period's start, unix seconds (a multiple of 86400)"),
        StatementQuery),
    responses((status = 200, body = Vec<Object>), (status = 400, body = ErrorBody)))]
pub(crate) async fn period_statements(
    State(d): AppState,
    Path(period_start): Path<u64>,
    Query(q): Query<StatementQuery>,
) -> ApiResult<Json<Vec<serde_json::Value>>> {
    let rows = d
        .store
        .statements(q.operator.as_deref(), Some(period_start), 10_000)
        .await
        .map_err(|e| match e {
            smpx_store::StoreError::OutOfRange(w) => {
                ApiError::new(ErrorCode::InvalidRequest, format!("{w} is too large"))
            }
            e => internal(e),
        })?;
    let out = rows
        .iter()
        .map(|s| serde_json::from_str(s))
        .collect::<Result<Vec<serde_json::Value>, _>>()
        .map_err(internal)?;
    Ok(Json(out))
}

fn log_error(e: crate::log::LogError) -> ApiError {
    use crate::log::LogError;
    match e {
        LogError::Position(p) => ApiError::new(ErrorCode::InvalidRequest, p.to_string()),
        LogError::BeyondLog { .. } => ApiError::new(ErrorCode::NotFound, e.to_string()),
        other => internal(other),
    }
}

/// `GET /v1/log/checkpoint`: the log's latest checkpoint, a C2SP signed note signed by the
/// directory's statement key under the log's origin; signed now if the log grew since the
/// latest one.
#[utoipa::path(get, path = "/v1/log/checkpoint",
    responses((status = 200, content_type = "text/plain", body = String,
               description = "origin, size, base64 root hash, blank line, signature line")))]
pub(crate) async fn log_checkpoint(
    State(d): AppState,
) -> ApiResult<impl axum::response::IntoResponse> {
    let c = crate::log::checkpoint(&d).await.map_err(log_error)?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        c.note,
    ))
}

/// `GET /v1/log/entries` bounds: entries `[start, end)`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EntriesQuery {
    /// The first entry's index; must be in the log.
    pub start: u64,
    /// One past the last entry wanted; clamped to the log's size and to 1000 entries.
    pub end: u64,
}

/// One log entry. Its Merkle leaf is the RFC 6962 leaf hash of `kind || "\n" || body`.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogEntryView {
    pub index: u64,
    /// `registration`, `withdrawal`, `snapshot` or `statement`.
    pub kind: String,
    pub body: String,
    /// The leaf hash, hex.
    pub leaf_hash: String,
    pub appended_at: u64,
}

/// `GET /v1/log/entries?start=&end=`: a page of entries by index. `invalid_request` if
/// `start` is not in the log or `end` is not after it.
#[utoipa::path(get, path = "/v1/log/entries", params(EntriesQuery),
    responses((status = 200, body = Vec<LogEntryView>), (status = 400, body = ErrorBody)))]
pub(crate) async fn log_entries(
    State(d): AppState,
    Query(q): Query<EntriesQuery>,
) -> ApiResult<Json<Vec<LogEntryView>>> {
    let rows = crate::log::entries(&d, q.start, q.end)
        .await
        .map_err(log_error)?;
    Ok(Json(
        rows.into_iter()
            .map(|r| LogEntryView {
                index: r.index,
                kind: r.entry.kind.as_str().to_owned(),
                body: r.entry.body,
                leaf_hash: hex::encode(r.leaf_hash),
                appended_at: r.appended_at,
            })
            .collect(),
    ))
}

/// A Merkle proof: subtree hashes, hex, in RFC 9162 order.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProofView {
    pub proof: Vec<String>,
}

fn proof_view(proof: Vec<smpx_core::tlog::Hash>) -> Json<ProofView> {
    Json(ProofView {
        proof: proof.into_iter().map(hex::encode).collect(),
    })
}

/// `GET /v1/log/proof/inclusion` positions.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InclusionQuery {
    pub index: u64,
    /// The tree size of the checkpoint the proof is checked against.
    pub size: u64,
}

/// `GET /v1/log/proof/inclusion?index=&size=`: entry `index` is in the tree of `size`
/// entries. `invalid_request` if `index >= size`, `not_found` if the log is smaller than
/// `size`.
#[utoipa::path(get, path = "/v1/log/proof/inclusion", params(InclusionQuery),
    responses((status = 200, body = ProofView),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn log_inclusion(
    State(d): AppState,
    Query(q): Query<InclusionQuery>,
) -> ApiResult<Json<ProofView>> {
    let proof = crate::log::inclusion(&d, q.index, q.size)
        .await
        .map_err(log_error)?;
    Ok(proof_view(proof))
}

/// `GET /v1/log/proof/consistency` sizes.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConsistencyQuery {
    pub from: u64,
    pub to: u64,
}

/// `GET /v1/log/proof/consistency?from=&to=`: the tree of `to` entries extends the one of
/// `from` (empty from 0 or between equal sizes). `invalid_request` if `from > to`,
/// `not_found` if the log is smaller than `to`.
#[utoipa::path(get, path = "/v1/log/proof/consistency", params(ConsistencyQuery),
    responses((status = 200, body = ProofView),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn log_consistency(
    State(d): AppState,
    Query(q): Query<ConsistencyQuery>,
) -> ApiResult<Json<ProofView>> {
    let proof = crate::log::consistency(&d, q.from, q.to)
        .await
        .map_err(log_error)?;
    Ok(proof_view(proof))
}

//! Wire types of the `/v1` HTTP APIs (coordinator, issuer, operator), shared by the services
//! and their clients so both sides agree by construction. Requests reject unknown fields:
//! a typo in a field name is an error, not a silently ignored option.

use crate::crypto::blind::{BlindSignature, BlindedMessage, VoucherSignature};
use crate::crypto::envelope::{Envelope, HpkePublicKey};
use crate::crypto::sign::VerifyingKey;
use crate::crypto::voucher::Commitment;
use crate::crypto::FieldBytes;
use crate::error::ErrorCode;
use crate::ledger::{Entry, Totals};
use crate::receipt::Signed;
use crate::{Amount, NetworkParams, UnixTime};
use serde::{Deserialize, Serialize};

// Bounds shared by the services' checks and the schemas below (utoipa takes literals only;
// `crate::schema`'s tests check each literal against its constant).

/// Most top-up codes one `POST /v1/admin/topup-codes` mints.
pub const MAX_TOPUP_CODES: u32 = 10_000;

/// The largest issuing limit, in whole credits, whose value in units the databases hold.
pub const MAX_LIMIT_CREDITS: u64 = i64::MAX as u64 / crate::amount::UNITS_PER_CREDIT;

/// The body of every error response.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
}

// ---------------------------------------------------------------------------------------------
// Coordinator: public

/// `GET /v1/params`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ParamsResponse {
    pub params: NetworkParams,
    /// Key that signs the coordinator's receipts (Ed25519, hex).
    #[schema(value_type = String)]
    pub receipt_key: VerifyingKey,
    /// Key redemption envelopes are sealed to (X25519, hex).
    #[schema(value_type = String)]
    pub envelope_key: HpkePublicKey,
    /// The coordinator's clock, so clients can tell key periods apart.
    pub now: UnixTime,
}

/// An issuer on the whitelist. `GET /v1/issuers`, `GET /v1/issuers/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IssuerInfo {
    pub id: String,
    /// Total value this issuer may have published.
    pub limit: Amount,
    /// Value published under its keys so far.
    pub published: Amount,
    /// False once removed from the whitelist: its vouchers are no longer accepted.
    pub active: bool,
}

/// An issuer's public blind-signing key. `GET /v1/issuer-keys`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IssuerKeyInfo {
    /// SHA-256 of the key's SubjectPublicKeyInfo, hex.
    pub key_id: String,
    pub issuer_id: String,
    pub denomination: u64,
    pub period: u64,
    /// Start of the key period.
    pub valid_from: UnixTime,
    /// Vouchers under this key must be published before this time.
    pub publish_deadline: UnixTime,
    /// RSA public key, SubjectPublicKeyInfo DER, base64url.
    pub public_key: String,
    /// Vouchers published under this key so far: the crowd a buyer of this key joins. The
    /// coordinator's statement, not provable from anything it signs. (Absent from older
    /// coordinators: read as 0.)
    #[serde(default)]
    pub published_count: u64,
}

/// `GET /v1/issuer-keys` query.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct IssuerKeysQuery {
    /// Only this issuer's keys.
    pub issuer: Option<String>,
    /// Only keys for this denomination.
    #[param(maximum = 9223372036854775807_u64)]
    pub denomination: Option<u64>,
}

/// `POST /v1/vouchers`: publish a voucher.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// `C`, hex.
    #[schema(value_type = FieldBytes)]
    pub commitment: Commitment,
    /// One of the network's denominations (`GET /v1/params`); any other is
    /// `unsupported_denomination`.
    pub denomination: u64,
    /// The issuer key that signed `C` (`GET /v1/issuer-keys`), hex.
    #[schema(pattern = "^[0-9a-fA-F]{64}$")]
    pub key_id: String,
    pub signature: VoucherSignature,
}

impl PublishRequest {
    /// SHA-256 over every field: identifies the request, so that the identical publish
    /// again gets the stored receipt (as [`ZkRedemption::digest`] does for redemptions).
    pub fn digest(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"smpx/publish/v1");
        h.update(self.commitment.0 .0);
        h.update(self.denomination.to_be_bytes());
        h.update((self.key_id.len() as u64).to_be_bytes());
        h.update(self.key_id.as_bytes());
        h.update((self.signature.signature.len() as u64).to_be_bytes());
        h.update(&self.signature.signature);
        h.update(self.signature.msg_randomizer);
        h.finalize().into()
    }
}

/// Body of the coordinator's signed receipt for a published voucher.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
// No `deny_unknown_fields`: a newer signer may add fields (see `crate::receipt`).
pub struct PublishReceipt {
    #[schema(value_type = String)]
    pub commitment: Commitment,
    pub denomination: u64,
    pub value: Amount,
    pub issuer_id: String,
    pub key_id: String,
    pub published_at: UnixTime,
    /// When the voucher can no longer be redeemed: when the newest MMR it was appended to
    /// stops accepting roots (at least `voucher_expiry_secs` after publishing).
    pub expires_at: UnixTime,
    /// v0.2: the voucher's membership proof in each MMR it was appended to (one or two,
    /// oldest first), at the size right after its append.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub paths: Vec<crate::mmr::Proof>,
}

/// State of a published voucher.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VoucherState {
    Live,
    Redeemed,
    /// Expired unredeemed; its value went to the network fund.
    Released,
}

impl VoucherState {
    pub fn as_str(self) -> &'static str {
        match self {
            VoucherState::Live => "live",
            VoucherState::Redeemed => "redeemed",
            VoucherState::Released => "released",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "live" => Some(VoucherState::Live),
            "redeemed" => Some(VoucherState::Redeemed),
            "released" => Some(VoucherState::Released),
            _ => None,
        }
    }
}

/// `GET /v1/vouchers/{commitment}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VoucherStatus {
    #[schema(value_type = String)]
    pub commitment: Commitment,
    pub denomination: u64,
    pub state: VoucherState,
    /// The issuer whose key signed it, and that key (hex) — public since publishing.
    pub issuer_id: String,
    pub key_id: String,
    pub published_at: UnixTime,
    pub expires_at: UnixTime,
}

/// `POST /v1/redemptions` (operator → coordinator): forward a wallet's redemption.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardRedemptionRequest {
    /// Redemption protocol version: 1 = HPKE envelope (`envelope`), 2 = zero-knowledge
    /// proof (`zk`).
    pub version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope: Option<Envelope>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zk: Option<ZkRedemption>,
}

/// The schema of a redemption request (`POST /v1/redemptions`, and `POST /v1/redeem` with
/// `outputs`): exactly what [`crate::rules::redeem::route`] lets through — version 1 with
/// `envelope` and no `zk`, or version 2 with `zk` and no `envelope` (an absent payload may be
/// `null`). Any other version is `unsupported_version`, any other combination
/// `invalid_request`.
fn redemption_schema(
    outputs: Option<utoipa::openapi::RefOr<utoipa::openapi::Schema>>,
) -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
    use crate::redemption::{PROTOCOL_V1, PROTOCOL_V2};
    use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Type};
    use utoipa::openapi::{Ref, RefOr, Schema};
    let variant = |version: u32, payload: &str, component: &str, absent: &str, why: &str| {
        let mut object = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(why))
            .property(
                "version",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .enum_values(Some([version])),
            )
            .required("version")
            .property(payload, Ref::from_schema_name(component))
            .required(payload)
            .property(absent, ObjectBuilder::new().schema_type(Type::Null))
            .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false)));
        if let Some(outputs) = outputs.clone() {
            object = object.property("outputs", outputs);
        }
        object.build()
    };
    RefOr::T(Schema::OneOf(
        OneOfBuilder::new()
            .item(variant(
                PROTOCOL_V1,
                "envelope",
                "Envelope",
                "zk",
                "v0.1: an HPKE envelope",
            ))
            .item(variant(
                PROTOCOL_V2,
                "zk",
                "ZkRedemption",
                "envelope",
                "v0.2: a zero-knowledge proof",
            ))
            .build(),
    ))
}

/// The components a redemption request refers to.
fn redemption_components(
    schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::Schema>)>,
) {
    use utoipa::{PartialSchema, ToSchema};
    schemas.push((Envelope::name().into(), Envelope::schema()));
    Envelope::schemas(schemas);
    schemas.push((ZkRedemption::name().into(), ZkRedemption::schema()));
    ZkRedemption::schemas(schemas);
}

impl utoipa::PartialSchema for ForwardRedemptionRequest {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        redemption_schema(None)
    }
}

impl utoipa::ToSchema for ForwardRedemptionRequest {
    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::Schema>)>) {
        redemption_components(schemas);
    }
}

/// A v0.2 redemption: a Groth16 proof that the redeemer knows the secret of a voucher in the
/// MMR with `root`, whose nullifier is `nullifier`, bound to the redeeming operator and `fee`.
/// It names no voucher.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ZkRedemption {
    /// The MMR whose root the proof is against.
    pub mmr_id: u64,
    /// That MMR's root at some size (hex field element).
    pub root: FieldBytes,
    /// `N = Poseidon(NULLIFIER_DOMAIN, s)` (hex field element).
    pub nullifier: FieldBytes,
    /// One of the network's denominations; any other is `unsupported_denomination`.
    pub denomination: u64,
    /// Fee bound into the proof together with the operator; must be zero in this version.
    #[serde(default)]
    #[schema(value_type = u64, minimum = 0, maximum = 0)]
    pub fee: Amount,
    /// Compressed Groth16 proof, 128 bytes, base64url (whether the bytes are a proof is
    /// `invalid_proof`).
    #[serde(with = "crate::crypto::b64::serde")]
    #[schema(value_type = String, pattern = "^[A-Za-z0-9_-]{170}[AEIMQUYcgkosw048]$")]
    pub proof: Vec<u8>,
}

impl ZkRedemption {
    /// SHA-256 over every field: identifies the request for idempotent retries.
    pub fn digest(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"smpx/zk-redemption/v1");
        h.update(self.mmr_id.to_be_bytes());
        h.update(self.root.0);
        h.update(self.nullifier.0);
        h.update(self.denomination.to_be_bytes());
        h.update(self.fee.0.to_be_bytes());
        h.update((self.proof.len() as u64).to_be_bytes());
        h.update(&self.proof);
        h.finalize().into()
    }
}

/// Body of the coordinator's signed redemption receipt (given to the operator).
/// It names no voucher: the envelope digest ties it to the request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
// No `deny_unknown_fields`: a newer signer may add fields (see `crate::receipt`).
pub struct RedemptionReceipt {
    pub operator_id: String,
    pub denomination: u64,
    pub value: Amount,
    /// Paid to the operator.
    pub operator_amount: Amount,
    /// Paid to the network fund.
    pub fund_amount: Amount,
    pub share_bps: u32,
    /// SHA-256 digest of the request, hex: of the envelope (v1) or of the
    /// [`ZkRedemption`] (v2).
    #[serde(with = "crate::crypto::hex_array::serde")]
    #[schema(value_type = String)]
    pub envelope_digest: [u8; 32],
    pub redeemed_at: UnixTime,
    /// v0.2: the nullifier that is now spent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub nullifier: Option<FieldBytes>,
    /// v0.2: the MMR the proof was against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mmr_id: Option<u64>,
}

/// `GET /v1/ledger/totals`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LedgerTotalsResponse {
    /// Totals replayed from the ledger log.
    pub totals: Totals,
    /// Value published and neither redeemed nor released, counted from the voucher table and
    /// the MMR books rather than the ledger: an independent source that must equal
    /// `totals.live`. (Called `live_vouchers` before; read under that name too.)
    #[serde(alias = "live_vouchers")]
    pub unredeemed_value: Amount,
    /// Vouchers in the table not yet released and not redeemed by v0.1. Vouchers redeemed by
    /// v0.2 are still counted here until their MMR is released: the proof hides which voucher
    /// it spent, so the table cannot mark it (`v2_redemption_count` says how many those are).
    /// (Called `live_voucher_count` before; read under that name too.)
    #[serde(alias = "live_voucher_count")]
    pub unreleased_voucher_count: u64,
    /// v0.2 redemptions so far (nullifiers spent by proofs).
    #[serde(default)]
    pub v2_redemption_count: u64,
    /// Number of ledger entries.
    pub entries: u64,
    /// `published = redeemed + live + released`, and both sources of `live` agree.
    pub conserved: bool,
}

/// `GET /v1/ledger/entries` query.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EntriesQuery {
    /// Return entries with `seq` greater than this (default 0).
    #[param(maximum = 9223372036854775807_u64)]
    pub after: Option<u64>,
    /// At most this many (default and maximum 1000; more is read as 1000, 0 as 1).
    #[param(maximum = 4294967295_u64)]
    pub limit: Option<u32>,
}

/// `GET /v1/trusted-directories`: the directory keys whose share statements the coordinator
/// takes (its `trusted_directories` configuration); empty when it takes none and pays the
/// administrator's numbers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TrustedDirectoriesResponse {
    /// Ed25519 keys, hex.
    #[schema(value_type = Vec<String>)]
    pub keys: Vec<VerifyingKey>,
}

/// `GET /v1/ledger/entries`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EntriesPage {
    pub entries: Vec<Entry>,
    /// Pass as `after` to get the next page; absent on the last page.
    pub next_after: Option<u64>,
}

/// An operator registered with the coordinator. `GET /v1/operators`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OperatorInfo {
    pub id: String,
    /// Revenue share in basis points (≤ 7000).
    pub share_bps: u32,
    pub earned: Amount,
}

// ---------------------------------------------------------------------------------------------
// Coordinator: admin (bearer admin token)

/// `POST /v1/admin/issuers`: whitelist an issuer (or update its limit / re-activate it).
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddIssuerRequest {
    /// 1–64 characters of `a-z`, `0-9`, `-` and `_`.
    #[schema(pattern = "^[a-z0-9_-]{1,64}$")]
    pub id: String,
    /// Issuing limit in whole credits.
    #[schema(maximum = 9223372036854_u64)]
    pub limit_credits: u64,
}

/// `POST /v1/admin/operators`: register an operator.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddOperatorRequest {
    /// 1–64 characters of `a-z`, `0-9`, `-` and `_`.
    #[schema(pattern = "^[a-z0-9_-]{1,64}$")]
    pub id: String,
    /// Revenue share in basis points, at most the network's `max_operator_share_bps`
    /// (`GET /v1/params`; above it, `share_too_high`).
    #[schema(maximum = 10000)]
    pub share_bps: u32,
}

/// Answer to adding an issuer or operator: its API token, shown once.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CredentialResponse {
    pub id: String,
    /// Bearer token for the issuer's or operator's own calls. Only its hash is stored.
    pub token: String,
}

/// `POST /v1/admin/issuers/{id}/limit`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetLimitRequest {
    /// Issuing limit in whole credits.
    #[schema(maximum = 9223372036854_u64)]
    pub limit_credits: u64,
}

/// `POST /v1/admin/operators/{id}/share`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetShareRequest {
    /// Revenue share in basis points, at most the network's `max_operator_share_bps`
    /// (above it, `share_too_high`).
    #[schema(maximum = 10000)]
    pub share_bps: u32,
}

/// `POST /v1/admin/expire`: release expired vouchers now (also runs periodically).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExpireResponse {
    pub released_count: u64,
    pub released: Amount,
}

// ---------------------------------------------------------------------------------------------
// Coordinator: issuer calls (bearer issuer token)

/// `POST /v1/issuer-keys`: register a blind-signing key for a period.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterKeyRequest {
    /// One of the network's denominations; any other is `unsupported_denomination`.
    pub denomination: u64,
    /// The key period (the current one or the next; others are `key_registration_rejected`).
    pub period: u64,
    /// RSA public key, SubjectPublicKeyInfo DER, base64url. Bytes that are not an RSA key
    /// of the network's size are `invalid_request` (a pattern cannot say that).
    #[schema(
        pattern = "^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-][AQgw]|[A-Za-z0-9_-]{2}[AEIMQUYcgkosw048])?$"
    )]
    pub public_key: String,
}

// ---------------------------------------------------------------------------------------------
// Issuer

/// `GET /v1/info` at an issuer.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IssuerServiceInfo {
    pub issuer_id: String,
    pub coordinator_url: String,
    pub denominations: Vec<u64>,
    /// Enabled payment methods: `topup_code`, `devnet`.
    pub payment_methods: Vec<String>,
}

/// How a purchase is paid.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum Payment {
    /// A single-use prepaid top-up code sold by a shop.
    TopupCode { code: String },
    /// Devnet only: accepted without payment; every response says so.
    Devnet,
}

/// Written by hand because serde is not uniform here and utoipa does not say so: a
/// `topup_code` refuses unknown fields (`deny_unknown_fields` reaches struct variants), while
/// serde reads a unit variant (`devnet`) whatever else its object holds.
impl utoipa::PartialSchema for Payment {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Type};
        use utoipa::openapi::{RefOr, Schema};
        let method = |name: &str| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some([name]))
        };
        let topup = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some("A single-use prepaid top-up code sold by a shop."))
            .property("method", method("topup_code"))
            .required("method")
            .property("code", ObjectBuilder::new().schema_type(Type::String))
            .required("code")
            .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false)));
        let devnet = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "Devnet only: accepted without payment; every response says so.",
            ))
            .property("method", method("devnet"))
            .required("method");
        RefOr::T(Schema::OneOf(
            OneOfBuilder::new().item(topup).item(devnet).build(),
        ))
    }
}

impl utoipa::ToSchema for Payment {}

/// `POST /v1/purchases`: buy one voucher.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurchaseRequest {
    /// One of the network's denominations; any other is `unsupported_denomination`.
    pub denomination: u64,
    /// The key the wallet blinded for (it took it from the coordinator's registry), hex.
    #[schema(pattern = "^[0-9a-fA-F]{64}$")]
    pub key_id: String,
    /// The blinded message, base64url (its size is the key's; a wrong one is
    /// `invalid_request`, which a pattern cannot say).
    #[schema(value_type = String, pattern = "^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-][AQgw]|[A-Za-z0-9_-]{2}[AEIMQUYcgkosw048])?$")]
    pub blinded_message: BlindedMessage,
    pub payment: Payment,
}

/// What the payment backend says about a purchase.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PaymentReceipt {
    pub method: String,
    /// Human-readable note; the devnet backend always says no money was taken.
    pub note: String,
}

/// Answer to a purchase.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PurchaseResponse {
    pub key_id: String,
    pub denomination: u64,
    #[schema(value_type = String)]
    pub blind_signature: BlindSignature,
    pub payment: PaymentReceipt,
}

/// `POST /v1/admin/topup-codes` at an issuer: mint a batch of single-use codes.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MintCodesRequest {
    /// One of the network's denominations; any other is `unsupported_denomination`.
    pub denomination: u64,
    /// 1 to 10,000 codes ([`MAX_TOPUP_CODES`]).
    #[schema(minimum = 1, maximum = 10000)]
    pub count: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MintCodesResponse {
    pub batch_id: String,
    pub denomination: u64,
    /// Shown once; only their hashes are stored.
    pub codes: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Operator

/// `GET /v1/info` at an operator.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OperatorServiceInfo {
    pub operator_id: String,
    /// Key that signs the operator's receipts (Ed25519, hex).
    #[schema(value_type = String)]
    pub receipt_key: VerifyingKey,
    pub coordinator_url: String,
}

/// `POST /v1/redeem` at an operator: a wallet redeems a voucher here.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedeemRequest {
    /// 1 = HPKE envelope (`envelope`), 2 = zero-knowledge proof (`zk`).
    pub version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope: Option<Envelope>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zk: Option<ZkRedemption>,
    /// Blinded outputs for the credited amount (power-of-two amounts under the operator's
    /// current keyset, adding up to exactly the credited value): the operator blind-signs
    /// them once the coordinator confirms the redemption ([`RedeemResponse::signatures`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<crate::credits::BlindedMessage>>,
}

impl utoipa::PartialSchema for RedeemRequest {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, SchemaType, Type};
        use utoipa::openapi::{Ref, RefOr, Schema};
        let outputs = ArrayBuilder::new()
            .schema_type(SchemaType::Array(vec![Type::Array, Type::Null]))
            .items(Ref::from_schema_name("BlindedMessage"))
            .min_items(Some(1))
            .max_items(Some(crate::credits::MAX_OUTPUTS))
            .description(Some(
                "Blinded outputs for the credited amount (power-of-two amounts under the \
                 operator's current keyset, adding up to exactly the credited value): the \
                 operator blind-signs them once the coordinator confirms the redemption. \
                 Absent or null: no credits.",
            ))
            .build();
        redemption_schema(Some(RefOr::T(Schema::Array(outputs))))
    }
}

impl utoipa::ToSchema for RedeemRequest {
    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::Schema>)>) {
        use utoipa::PartialSchema;
        redemption_components(schemas);
        let name = crate::credits::BlindedMessage::name();
        schemas.push((name.into(), crate::credits::BlindedMessage::schema()));
        crate::credits::BlindedMessage::schemas(schemas);
    }
}

/// Body of the operator's signed receipt: what the wallet was credited.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
// No `deny_unknown_fields`: a newer signer may add fields (see `crate::receipt`).
pub struct OperatorCreditReceipt {
    pub operator_id: String,
    pub denomination: u64,
    /// Credits the wallet may spend at this operator.
    pub credited: Amount,
    /// The coordinator's receipt the operator was given.
    #[schema(value_type = Object)]
    pub coordinator_receipt: Signed<RedemptionReceipt>,
    pub issued_at: UnixTime,
}

// ---------------------------------------------------------------------------------------------
// v0.2 accumulators (MMRs), checkpoints and ceremony keys

/// One MMR as `GET /v1/mmrs` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MmrInfo {
    pub id: u64,
    pub levels: u32,
    pub size: u64,
    /// Current root (hex field element).
    #[schema(value_type = String)]
    pub root: FieldBytes,
    /// Appends are taken in `[starts_at, closes_at)`.
    pub starts_at: UnixTime,
    pub closes_at: UnixTime,
    /// Roots are accepted until this time.
    pub expires_at: UnixTime,
    pub accepts_redemptions: bool,
    /// Value of vouchers whose newest MMR is this one.
    pub group_value: Amount,
    /// Value redeemed through this MMR (v0.2 proofs against its roots, and v0.1 redemptions
    /// of vouchers of its group).
    pub redeemed_via: Amount,
    /// How many of its `size` leaves are vouchers of each denomination (ascending, only
    /// non-zero; they add up to `size`). A v0.2 proof reveals the denomination, so a
    /// redemption against this MMR hides among the count of its own denomination: its
    /// anonymity set. This split is the coordinator's statement — the signed checkpoint
    /// proves only the total size. (Absent from older coordinators: read as empty.)
    #[serde(default)]
    pub denominations: Vec<DenominationCount>,
}

/// How many leaves of an MMR are vouchers of one denomination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DenominationCount {
    pub denomination: u64,
    pub count: u64,
}

impl MmrInfo {
    /// Leaves of denomination `d` (0 if none).
    pub fn count_of(&self, d: u64) -> u64 {
        self.denominations
            .iter()
            .find(|c| c.denomination == d)
            .map_or(0, |c| c.count)
    }
}

/// `GET /v1/mmrs`: every MMR and the release accounting an auditor recomputes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MmrListResponse {
    pub mmrs: Vec<MmrInfo>,
    /// Value released to the network fund so far (the ledger's `release` entries).
    pub released: Amount,
    /// The highest MMR id such that every MMR up to it has expired, if any.
    pub expired_through: Option<u64>,
}

/// `GET /v1/mmrs/{id}/leaves` query.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LeavesQuery {
    /// First leaf index (default 0).
    #[param(maximum = 9223372036854775807_u64)]
    pub from: Option<u64>,
    /// At most this many leaves (default and maximum 4096; more is read as 4096).
    #[param(maximum = 4294967295_u64)]
    pub limit: Option<u32>,
}

/// A page of an MMR's leaves (commitments, in append order).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LeavesPage {
    pub mmr_id: u64,
    pub levels: u32,
    /// The MMR's size when the page was read.
    pub size: u64,
    pub from: u64,
    #[schema(value_type = Vec<String>)]
    pub leaves: Vec<FieldBytes>,
}

/// `GET /v1/mmrs/{id}/checkpoint` query.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CheckpointQuery {
    /// The size to certify (default: the current size).
    #[param(maximum = 9223372036854775807_u64)]
    pub size: Option<u64>,
}

/// Body of a signed checkpoint: the coordinator states that MMR `mmr_id` had `root` at
/// `size`, recorded at `at`. Two checkpoints of one MMR must be consistent
/// (`GET /v1/mmrs/{id}/consistency`); an inconsistent pair is proof of a forked view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
// No `deny_unknown_fields`: a newer signer may add fields (see `crate::receipt`).
pub struct Checkpoint {
    pub mmr_id: u64,
    pub levels: u32,
    pub size: u64,
    #[schema(value_type = String)]
    pub root: FieldBytes,
    pub at: UnixTime,
}

/// `GET /v1/mmrs/{id}/consistency` query.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyQuery {
    /// The smaller size; `from <= to <= ` the MMR's size, or `invalid_request` (a schema
    /// cannot compare two parameters).
    #[param(maximum = 9223372036854775807_u64)]
    pub from: u64,
    /// The larger size, at most the MMR's.
    #[param(maximum = 9223372036854775807_u64)]
    pub to: u64,
}

/// `GET /v1/zk`: the v0.2 keys in use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ZkInfo {
    /// MMR levels the circuit is for.
    pub levels: u32,
    /// Groth16 verifying key, base64url (arkworks compressed).
    pub verifying_key: String,
    /// SHA-256 of the ceremony transcript (`GET /v1/zk/transcript`), hex.
    pub transcript_sha256: String,
    pub transcript_bytes: u64,
}

// ---------------------------------------------------------------------------------------------
// Operator credits

/// `POST /v1/redeem` at an operator: its signed receipt (the receipt's fields at the top level,
/// exactly as before credits existed) and, if the request carried `outputs`, the blind
/// signatures on them in the same order, each with its DLEQ proof. A retry of the same
/// redemption gets the same signatures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RedeemResponse {
    #[serde(flatten)]
    pub receipt: Signed<OperatorCreditReceipt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signatures: Option<Vec<crate::credits::BlindSignature>>,
}

/// `GET /v1/keys` and `GET /v1/keys/{keyset_id}` at an operator (NUT-01): keysets' public keys
/// (one key per power-of-two amount), with each keyset's final expiry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreditKeysResponse {
    pub keysets: Vec<crate::credits::KeysetKeys>,
}

/// One keyset as `GET /v1/keysets` lists it (NUT-02).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreditKeysetInfo {
    /// Keyset id, hex.
    #[schema(value_type = String)]
    pub id: crate::credits::KeysetId,
    /// Always `ucredit`.
    pub unit: String,
    /// New outputs may be signed under this keyset now: the current day's keyset (around
    /// midnight also its neighbour, within the operator's clock tolerance).
    pub active: bool,
    /// Unix seconds; tokens of this keyset are refused from then on.
    pub final_expiry: UnixTime,
    /// NUT-02 fee per thousand inputs: always 0 (a spend pays for what it buys instead).
    pub input_fee_ppk: u64,
}

/// `GET /v1/keysets` at an operator (NUT-02): every keyset whose tokens it still accepts or
/// still recognises as expired, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreditKeysetsResponse {
    pub keysets: Vec<CreditKeysetInfo>,
}

/// The id of a spend (`POST /v1/swap`), derived from its content so that the wallet knows it
/// without an answer: SHA-256 over the inputs' `Y = hash_to_curve(secret)` and the outputs
/// (amount, keyset id, `B_`), in request order. The identical request retried is the same
/// spend (and gets the same change); the wallet collects change it did not receive with
/// `GET /v1/swap/{id}`. Hex on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SwapId(#[serde(with = "crate::crypto::hex_array::serde")] pub [u8; 32]);

impl SwapId {
    /// The id of a spend of the tokens with `ys` for `outputs`, both in request order.
    pub fn new(ys: &[crate::credits::Point], outputs: &[crate::credits::BlindedMessage]) -> SwapId {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"smpx/credits/swap-id/v1");
        h.update((ys.len() as u64).to_be_bytes());
        for y in ys {
            h.update(y.as_bytes());
        }
        h.update((outputs.len() as u64).to_be_bytes());
        for o in outputs {
            h.update(o.amount.0.to_be_bytes());
            let id = o.id.as_bytes();
            h.update((id.len() as u64).to_be_bytes());
            h.update(id);
            h.update(o.blinded_secret.as_bytes());
        }
        SwapId(h.finalize().into())
    }

    /// The id of `request` (computes each input's `Y`).
    pub fn of_request(
        request: &crate::credits::SwapRequest,
    ) -> Result<SwapId, crate::credits::CreditError> {
        let ys = request
            .inputs
            .iter()
            .map(|p| p.y())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SwapId::new(&ys, &request.outputs))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 lowercase hex characters.
    pub fn from_hex(text: &str) -> Option<SwapId> {
        if text.len() != 64
            || !text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return None;
        }
        let bytes = hex::decode(text).ok()?;
        Some(SwapId(bytes.try_into().ok()?))
    }
}

impl std::fmt::Display for SwapId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Where a spend stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SwapState {
    /// Inputs taken, change not released yet (the operator completes or cancels it; ask again).
    Pending,
    /// Inputs spent, change signed: `signatures` holds it.
    Done,
    /// Inputs refunded (they may be spent again), outputs freed; no change.
    Cancelled,
}

/// `GET /v1/swap/{id}` at an operator: a spend's state and, once done, its change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SwapStatus {
    /// The spend's id, hex ([`SwapId`]).
    #[schema(value_type = String)]
    pub id: SwapId,
    pub state: SwapState,
    /// The change's blind signatures, in the order of the request's outputs, once done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signatures: Option<Vec<crate::credits::BlindSignature>>,
}

/// `POST /v1/checkstate` at an operator (NUT-07): the state of tokens by their
/// `Y = hash_to_curve(secret)`, so a wallet asks without revealing secrets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckStateRequest {
    /// Compressed secp256k1 points, hex: at most 1000 ([`crate::credits::MAX_INPUTS`]). A
    /// string of this shape that is not a point on the curve is `invalid_request` (a pattern
    /// cannot say that).
    #[serde(rename = "Ys")]
    #[schema(value_type = Vec<String>, max_items = 1000, pattern = "^0[23][0-9a-f]{64}$")]
    pub ys: Vec<crate::credits::Point>,
}

/// A token's state at the operator (NUT-07).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum TokenState {
    /// Not spent (or spent so long ago that its keyset expired and the record was pruned).
    Unspent,
    /// Being spent: its spend is registered but not finished.
    Pending,
    Spent,
}

/// One token's state, in the order asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProofState {
    #[serde(rename = "Y")]
    #[schema(value_type = String)]
    pub y: crate::credits::Point,
    pub state: TokenState,
    /// NUT-07 witness: never set (smpx tokens carry no spending conditions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub witness: Option<String>,
}

/// `POST /v1/checkstate` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckStateResponse {
    pub states: Vec<ProofState>,
}

/// `POST /v1/restore` at an operator (NUT-09): blinded outputs a wallet derived again from its
/// seed (NUT-13), to learn which of them the operator signed. The amounts asked are ignored:
/// the answer carries each signed output as it was signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditRestoreRequest {
    /// At most 1000 ([`crate::credits::MAX_OUTPUTS`]).
    #[schema(max_items = 1000)]
    pub outputs: Vec<crate::credits::BlindedMessage>,
}

/// `POST /v1/restore` answer: the outputs asked about that were signed (with the amount and
/// keyset they were signed for), in the order asked, and their blind signatures with DLEQ
/// proofs, in the same order. Outputs never signed, or whose spend is still pending, are left
/// out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditRestoreResponse {
    pub outputs: Vec<crate::credits::BlindedMessage>,
    pub signatures: Vec<crate::credits::BlindSignature>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_publish_digest_changes_with_every_field() {
        let req = PublishRequest {
            commitment: Commitment(FieldBytes([1; 32])),
            denomination: 10,
            key_id: "ab".repeat(32),
            signature: VoucherSignature {
                signature: vec![2; 256],
                msg_randomizer: [3; 32],
            },
        };
        assert_eq!(req.digest(), req.clone().digest());
        let mut changed = Vec::new();
        let mut r = req.clone();
        r.commitment = Commitment(FieldBytes([9; 32]));
        changed.push(r);
        let mut r = req.clone();
        r.denomination = 100;
        changed.push(r);
        let mut r = req.clone();
        r.key_id = "cd".repeat(32);
        changed.push(r);
        let mut r = req.clone();
        r.signature.signature[0] ^= 1;
        changed.push(r);
        let mut r = req.clone();
        r.signature.msg_randomizer[0] ^= 1;
        changed.push(r);
        for r in changed {
            assert_ne!(r.digest(), req.digest());
        }
    }
}

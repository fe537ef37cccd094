//! The coordinator's OpenAPI document, served at `/openapi.json`.

use crate::accumulator::*;
use crate::handlers::*;
use smpx_core::api::*;
use smpx_http::common::{BearerAuth, StandardResponses};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "smpx coordinator", version = "1",
         description = "Coordination layer of smpx Community Vouchers: issuer whitelist and keys, publishing, redemption (v0.1 envelopes and v0.2 zero-knowledge proofs), MMRs with signed checkpoints, expiry and the public ledger; operators' shares from trusted directories' signed share statements. `GET /metrics` (Prometheus text) is served but not described here. Errors are `{\"error\": {\"code\", \"message\"}}` with stable codes."),
    paths(smpx_http::common::health, params, issuers, issuer, issuer_keys, register_key, publish, voucher, redeem,
          operators, operator_share, submit_statement, share_statement, trusted_directories, totals, entries, add_issuer, set_limit,
          set_active, add_operator, set_share, suspend, resume, expire,
          mmrs, mmr, leaves, checkpoint, consistency, zk_info, zk_transcript),
    components(schemas(ErrorBody, ErrorDetail, smpx_core::ErrorCode, smpx_core::Amount,
                       smpx_core::NetworkParams, smpx_core::ledger::Entry, smpx_core::ledger::EntryKind, smpx_core::ledger::RedemptionNote,
                       smpx_core::ledger::Totals, VoucherState, ZkRedemption, MmrInfo,
                       DenominationCount, smpx_core::crypto::FieldBytes, OperatorShare, StatementTaken, TrustedDirectoriesResponse,
                       SignedShareStatement)),
    modifiers(&BearerAuth, &StandardResponses)
)]
struct Doc;

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}

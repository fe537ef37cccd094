//! The directory's OpenAPI document, served at `/openapi.json`.

use crate::handlers::*;
use crate::view::{RelayView, ThresholdsView};
use smpx_core::api::{ErrorBody, ErrorDetail};
use smpx_core::directory::wire::{
    Attestation, Heartbeat, RegistrationRequest, RelayMetadata, Withdrawal,
};
use smpx_http::common::StandardResponses;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "smpx relay directory", version = "1",
         description = "Opt-in registration of smpx relays (signed by the relay's CA key and the operator's key, with a proof of work), heartbeats, active probing, Tor-style weighted uptime and MTBF, flags with their thresholds, identity attestations and signed per-operator share statements, and a transparency log of it all (RFC 6962 Merkle tree, C2SP signed checkpoints, inclusion and consistency proofs). Errors are `{\"error\": {\"code\", \"message\"}}` with stable codes."),
    paths(smpx_http::common::health, pow, register, relays, pick, relay, heartbeat, withdraw,
          operator, attest, thresholds, latest_statement, period_statements,
          log_checkpoint, log_entries, log_inclusion, log_consistency),
    components(schemas(ErrorBody, ErrorDetail, smpx_core::ErrorCode, RegistrationRequest,
                       RelayMetadata, Heartbeat, Withdrawal, Attestation, RelayView,
                       ThresholdsView, PowChallenge, Registered, HeartbeatRecorded, Withdrawn,
                       RelayDetail, ObservationView, OperatorView, AttestationView,
                       StatusFilter, FlagFilter, LogEntryView, ProofView)),
    modifiers(&StandardResponses)
)]
struct Doc;

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}

//! Public v0.2 endpoints: the MMRs, their leaves, signed checkpoints, consistency proofs,
//! and the ceremony keys wallets prove with. Everything here is public data and the same for
//! every caller, so asking for it reveals nothing about which voucher a wallet holds.

use crate::handlers::store_err;
use crate::Coordinator;
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use smpx_core::api::*;
use smpx_core::mmr::ConsistencyProof;
use smpx_core::receipt::{Signed, CHECKPOINT_DOMAIN};
use smpx_core::rotation;
use smpx_core::ErrorCode;
use smpx_http::Path;
use smpx_http::{ApiError, ApiResult, Json, Query};
use smpx_store::coordinator::MmrRow;
use smpx_store::StoreError;
use std::sync::Arc;

type AppState = State<Arc<Coordinator>>;

/// Most leaves per page.
pub const MAX_LEAVES_PAGE: u32 = 4096;

/// The MMR's figures and its leaves by denomination (counted up to the row's size, so they
/// add up to it).
async fn info(c: &Coordinator, row: MmrRow, now: u64) -> ApiResult<MmrInfo> {
    let denominations = c
        .store
        .denomination_counts(row.id, row.size)
        .await
        .map_err(store_err)?
        .into_iter()
        .map(|(denomination, count)| DenominationCount {
            denomination,
            count,
        })
        .collect();
    Ok(MmrInfo {
        id: row.id,
        levels: row.levels,
        size: row.size,
        // A row exists only once a leaf was appended, so the root is always recorded.
        root: row.root.unwrap_or(smpx_core::crypto::FieldBytes([0; 32])),
        starts_at: rotation::mmr_start(&c.params, row.id),
        closes_at: rotation::mmr_closes_at(&c.params, row.id),
        expires_at: rotation::mmr_expires_at(&c.params, row.id),
        accepts_redemptions: rotation::mmr_accepts_redemptions(&c.params, row.id, now),
        group_value: row.group_value,
        redeemed_via: row.redeemed_via,
        denominations,
    })
}

async fn mmr_row(c: &Coordinator, id: u64) -> ApiResult<MmrRow> {
    c.store
        .mmr(id)
        .await
        .map_err(store_err)?
        .ok_or_else(|| ApiError::new(ErrorCode::UnknownMmr, format!("no MMR {id}")))
}

/// Every MMR with its books and its leaves by denomination. The split by denomination is
/// the coordinator's statement (the signed checkpoint proves only the total size).
#[utoipa::path(get, path = "/v1/mmrs", responses((status = 200, body = MmrListResponse)))]
pub(crate) async fn mmrs(State(c): AppState) -> ApiResult<Json<MmrListResponse>> {
    let now = c.now();
    let rows = c.store.mmrs().await.map_err(store_err)?;
    let released = c.store.released_by_books().await.map_err(store_err)?;
    let mut mmrs = Vec::with_capacity(rows.len());
    for r in rows {
        mmrs.push(info(&c, r, now).await?);
    }
    Ok(Json(MmrListResponse {
        mmrs,
        released,
        expired_through: rotation::last_expired_prefix(&c.params, now),
    }))
}

/// A query number the schema documents as int64: above `i64::MAX` it is refused as the
/// store refuses one ([`StoreError::OutOfRange`]), before any lookup.
fn int64(v: u64, name: &str) -> ApiResult<u64> {
    if i64::try_from(v).is_err() {
        return Err(store_err(StoreError::OutOfRange(name.to_owned())));
    }
    Ok(v)
}

/// One MMR. `denominations` is the anonymity set of a redemption against it per
/// denomination — the coordinator's statement: the signed checkpoint proves only the size.
#[utoipa::path(get, path = "/v1/mmrs/{id}", params(("id" = u64, Path, maximum = 9223372036854775807_u64)),
    responses((status = 200, body = MmrInfo), (status = 404, body = ErrorBody)))]
pub(crate) async fn mmr(State(c): AppState, Path(id): Path<u64>) -> ApiResult<Json<MmrInfo>> {
    let row = mmr_row(&c, id).await?;
    Ok(Json(info(&c, row, c.now()).await?))
}

#[utoipa::path(get, path = "/v1/mmrs/{id}/leaves", params(("id" = u64, Path, maximum = 9223372036854775807_u64), LeavesQuery),
    responses((status = 200, body = LeavesPage), (status = 404, body = ErrorBody)))]
pub(crate) async fn leaves(
    State(c): AppState,
    Path(id): Path<u64>,
    Query(q): Query<LeavesQuery>,
) -> ApiResult<Json<LeavesPage>> {
    // The request is checked before the MMR is looked up: a bad bound is 400 on any id.
    let from = int64(q.from.unwrap_or(0), "from")?;
    let row = mmr_row(&c, id).await?;
    let limit = q.limit.unwrap_or(MAX_LEAVES_PAGE).clamp(1, MAX_LEAVES_PAGE);
    let leaves = if from >= row.size {
        Vec::new()
    } else {
        c.store
            .mmr_leaves(id, from, limit)
            .await
            .map_err(store_err)?
    };
    Ok(Json(LeavesPage {
        mmr_id: id,
        levels: row.levels,
        size: row.size,
        from,
        leaves,
    }))
}

#[utoipa::path(get, path = "/v1/mmrs/{id}/checkpoint", params(("id" = u64, Path, maximum = 9223372036854775807_u64), CheckpointQuery),
    responses((status = 200, body = Signed<Checkpoint>), (status = 404, body = ErrorBody)))]
pub(crate) async fn checkpoint(
    State(c): AppState,
    Path(id): Path<u64>,
    Query(q): Query<CheckpointQuery>,
) -> ApiResult<Json<Signed<Checkpoint>>> {
    if let Some(size) = q.size {
        int64(size, "size")?;
    }
    let row = mmr_row(&c, id).await?;
    let size = q.size.unwrap_or(row.size);
    let root = c
        .store
        .root_at(id, size)
        .await
        .map_err(store_err)?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotFound,
                format!(
                    "MMR {id} has no root at size {size} (its size is {})",
                    row.size
                ),
            )
        })?;
    let body = Checkpoint {
        mmr_id: id,
        levels: row.levels,
        size,
        root: root.root,
        at: root.at,
    };
    Ok(Json(Signed::sign(&c.receipt_key, CHECKPOINT_DOMAIN, body)?))
}

#[utoipa::path(get, path = "/v1/mmrs/{id}/consistency", params(("id" = u64, Path, maximum = 9223372036854775807_u64), ConsistencyQuery),
    responses((status = 200, body = Object), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub(crate) async fn consistency(
    State(c): AppState,
    Path(id): Path<u64>,
    Query(q): Query<ConsistencyQuery>,
) -> ApiResult<Json<ConsistencyProof>> {
    // As for leaves: a bound beyond what the databases hold is 400 on any id, as documented.
    int64(q.from, "from")?;
    int64(q.to, "to")?;
    let row = mmr_row(&c, id).await?;
    if q.from > q.to || q.to > row.size {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!(
                "need from <= to <= {} (the size of MMR {id}), got {}..{}",
                row.size, q.from, q.to
            ),
        ));
    }
    c.store
        .consistency_proof(id, q.from, q.to)
        .await
        .map_err(store_err)?
        .map(Json)
        .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e.to_string()))
}

fn keys(c: &Coordinator) -> ApiResult<&crate::zk::ZkKeys> {
    c.zk.as_ref().map(|z| &z.keys).ok_or_else(|| {
        ApiError::new(
            ErrorCode::ZkUnavailable,
            "this coordinator has no ceremony keys: v0.2 redemption is not available",
        )
    })
}

#[utoipa::path(get, path = "/v1/zk", responses((status = 200, body = ZkInfo), (status = 503, body = ErrorBody)))]
pub(crate) async fn zk_info(State(c): AppState) -> ApiResult<Json<ZkInfo>> {
    Ok(Json(keys(&c)?.info.clone()))
}

/// The ceremony transcript the keys were verified from, for wallets and auditors to verify
/// themselves.
#[utoipa::path(get, path = "/v1/zk/transcript",
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn zk_transcript(State(c): AppState) -> ApiResult<Response> {
    let bytes = keys(&c)?.transcript.clone();
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Body::from(bytes.as_ref().clone()),
    )
        .into_response())
}

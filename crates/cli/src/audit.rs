//! What any auditor does with the coordinator's public endpoints: fetch the published totals
//! and the whole ledger log, and replay the log to recompute the totals independently; and
//! re-derive each redemption's operator share from the share statement that set it
//! ([`audit_shares`]).

use anyhow::{Context, Result};
use smpx_core::api::{
    EntriesPage, LedgerTotalsResponse, MmrListResponse, ParamsResponse, TrustedDirectoriesResponse,
};
use smpx_core::directory::ShareStatement;
use smpx_core::ledger::{Entry, Totals};
use smpx_core::receipt::Signed;
use smpx_core::rules::share_audit::{self, ShareReport};
use smpx_http::{ApiClient, ClientError, ErrorCode};
use std::collections::BTreeMap;

/// The published totals and the totals replayed from the public log.
pub async fn replay_ledger(coordinator: &ApiClient) -> Result<(LedgerTotalsResponse, Totals, u64)> {
    let totals: LedgerTotalsResponse = coordinator.get("/v1/ledger/totals").await?;
    let entries = ledger_entries(coordinator).await?;
    let replayed = Totals::replay(&entries).context("the public ledger log does not replay")?;
    Ok((totals, replayed, entries.len() as u64))
}

/// The whole public ledger log, page by page.
pub async fn ledger_entries(coordinator: &ApiClient) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    let mut after = 0;
    loop {
        let page: EntriesPage = coordinator
            .get(&format!("/v1/ledger/entries?after={after}"))
            .await?;
        entries.extend(page.entries);
        match page.next_after {
            Some(n) => after = n,
            None => break,
        }
    }
    Ok(entries)
}

/// Checks every redemption in the public log against the share statement it names
/// ([`share_audit::audit`]): each statement is fetched once (`GET
/// /v1/share-statements/{digest}`) and judged against the keys the coordinator says it
/// trusts (`GET /v1/trusted-directories`) and its `max_operator_share_bps` (`GET
/// /v1/params`). A statement the coordinator does not serve is a finding, not an error.
pub async fn audit_shares(coordinator: &ApiClient) -> Result<ShareReport> {
    let params: ParamsResponse = coordinator.get("/v1/params").await?;
    let trusted: TrustedDirectoriesResponse = coordinator.get("/v1/trusted-directories").await?;
    let entries = ledger_entries(coordinator).await?;
    let (redemptions, _, _) = share_audit::redemptions(&entries);
    let mut statements = BTreeMap::new();
    for digest in share_audit::named_statements(&redemptions) {
        // Only a digest can be a path segment here; anything else names no statement.
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let fetched: Result<Signed<ShareStatement>, _> = coordinator
            .get(&format!("/v1/share-statements/{digest}"))
            .await;
        match fetched {
            Ok(s) => {
                statements.insert(digest, s);
            }
            Err(ClientError::Api {
                code: ErrorCode::NotFound,
                ..
            }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(share_audit::audit(
        &entries,
        &statements,
        &trusted.keys,
        params.params.max_operator_share_bps,
    ))
}

/// The v0.2 release check; the verdict over it is [`smpx_core::rules::audit`].
pub use smpx_core::rules::audit::ReleaseCheck;

/// Recomputes, from the public MMR books (`GET /v1/mmrs`), how much expired value the
/// coordinator may have released, with `smpx_core::rotation::releasable` — the books of
/// expired MMRs no longer change, so the bound is the same as when the coordinator released.
pub async fn check_release(coordinator: &ApiClient) -> Result<ReleaseCheck> {
    let list: MmrListResponse = coordinator.get("/v1/mmrs").await?;
    let mut allowed = 0u64;
    if let Some(k) = list.expired_through {
        let mut books = Vec::new();
        for id in 0..=k {
            let b = list
                .mmrs
                .iter()
                .find(|m| m.id == id)
                .map(|m| smpx_core::rotation::MmrBook {
                    group_value: m.group_value.0,
                    redeemed_via: m.redeemed_via.0,
                })
                .unwrap_or_default();
            books.push(b);
            allowed = smpx_core::rotation::releasable(&books, allowed);
        }
    }
    Ok(ReleaseCheck {
        released: list.released.0,
        allowed,
    })
}

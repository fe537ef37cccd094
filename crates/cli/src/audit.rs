//! What any auditor does with the coordinator's public endpoints: fetch the published totals
//! and the whole ledger log, and replay the log to recompute the totals independently.

use anyhow::{Context, Result};
use smpx_core::api::{EntriesPage, LedgerTotalsResponse};
use smpx_core::ledger::Totals;
use smpx_http::ApiClient;

/// The published totals and the totals replayed from the public log.
pub async fn replay_ledger(coordinator: &ApiClient) -> Result<(LedgerTotalsResponse, Totals, u64)> {
    let totals: LedgerTotalsResponse = coordinator.get("/v1/ledger/totals").await?;
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
    let replayed = Totals::replay(&entries).context("the public ledger log does not replay")?;
    Ok((totals, replayed, entries.len() as u64))
}

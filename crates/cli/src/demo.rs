//! `smpx demo`: a fresh devnet in a temporary directory, the whole voucher lifecycle run
//! against it over HTTP, each step printed, and the ledger checked at the end. It exits 0
//! only if every step did what it should — it doubles as a smoke test of a build.

use crate::devnet::{Devnet, DevnetOptions};
use anyhow::{bail, ensure, Context, Result};
use smpx_core::api::{LedgerTotalsResponse, MintCodesRequest, MintCodesResponse, MmrInfo, Payment};
use smpx_core::ErrorCode;
use smpx_http::ApiClient;
use smpx_relay::RunningNode;
use smpx_relay_client::{connect_tls, ClientConfig, ClientError as RelayClientError};
use smpx_relay_protocol::capacity::Bought;
use smpx_relay_protocol::crypto::Content;
use smpx_relay_protocol::ErrorCode as RelayErrorCode;
use smpx_wallet::{LocalState, RedeemOptions, RedeemProgress, Wallet, WalletError};
use std::time::Duration;

/// Where the demo prints.
pub trait Out {
    fn step(&mut self, text: &str);
}

/// Prints numbered steps to stdout.
pub struct Stdout(pub u32);

impl Out for Stdout {
    fn step(&mut self, text: &str) {
        self.0 += 1;
        println!("[{:>2}] {text}", self.0);
    }
}

/// Runs the demo in `dir` (which should be empty) on a devnet with MMRs of `mmr_levels`.
pub async fn run(
    dir: &std::path::Path,
    mmr_levels: u32,
    out: &mut dyn Out,
) -> Result<LedgerTotalsResponse> {
    let mut opts = DevnetOptions::new(&dir.join("devnet"));
    opts.params = Some(smpx_core::NetworkParams {
        mmr_levels,
        ..DevnetOptions::default_params()
    });
    let devnet = Devnet::start(opts).await.context("starting the devnet")?;
    let relays = match crate::relay::start_devnet_relays(&dir.join("relays"), 0, &devnet).await {
        Ok(r) => r,
        Err(e) => {
            devnet.stop().await?;
            return Err(e);
        }
    };
    let result = lifecycle(&devnet, &relays, dir, out).await;
    crate::relay::stop_relays(relays).await?;
    devnet.stop().await?;
    result
}

async fn lifecycle(
    net: &Devnet,
    relays: &[RunningNode],
    dir: &std::path::Path,
    out: &mut dyn Out,
) -> Result<LedgerTotalsResponse> {
    out.step(&format!(
        "devnet up: coordinator {}  issuer {}  operator {}",
        net.coordinator_url, net.issuer_url, net.operator_url
    ));

    let statement = measured_share(net, out).await?;

    let (wallet, mnemonic) = Wallet::create(&dir.join("wallet.db"), "demo passphrase").await?;
    let words = mnemonic.split_whitespace().count();
    // Kept beside the wallet (0600), so a kept demo wallet can be restored like any other;
    // never printed or logged.
    smpx_http::files::write_private(&dir.join("recovery-phrase"), mnemonic.as_bytes())?;
    out.step(&format!(
        "wallet created; its {words}-word recovery phrase (in recovery-phrase beside wallet.db) restores every voucher"
    ));

    // The issuer's admin mints a top-up code, as a shop would sell it.
    let issuer_admin = ApiClient::new(&net.issuer_url).with_token(net.issuer_admin_token.clone());
    let batch: MintCodesResponse = issuer_admin
        .post(
            "/v1/admin/topup-codes",
            &MintCodesRequest {
                denomination: 10,
                count: 1,
            },
        )
        .await?;
    let code = batch
        .codes
        .first()
        .context("the issuer minted no code")?
        .clone();
    out.step(&format!("issuer minted a 10-credit top-up code: {code}"));

    let v10 = wallet
        .buy(
            &net.coordinator_url,
            &net.issuer_url,
            10,
            Payment::TopupCode { code: code.clone() },
        )
        .await?;
    out.step(&format!(
        "bought voucher #{} (10 credits) with the top-up code; the issuer signed a blinded commitment",
        v10.id
    ));

    match wallet
        .buy(
            &net.coordinator_url,
            &net.issuer_url,
            10,
            Payment::TopupCode { code },
        )
        .await
    {
        Err(WalletError::Service(e)) if e.code() == Some(ErrorCode::PaymentRejected) => {
            out.step("the same top-up code is refused a second time (payment_rejected)")
        }
        other => bail!("re-using a top-up code should fail with payment_rejected, got {other:?}"),
    }
    // The refused purchase left a voucher waiting in `buying`; give it up.
    for v in wallet.vouchers().await? {
        if v.state == LocalState::Buying {
            wallet.abandon_buy(v.id).await?;
        }
    }

    let v1 = wallet
        .buy(&net.coordinator_url, &net.issuer_url, 1, Payment::Devnet)
        .await?;
    let v100 = wallet
        .buy(&net.coordinator_url, &net.issuer_url, 100, Payment::Devnet)
        .await?;
    out.step(&format!(
        "bought vouchers #{} (1 credit) and #{} (100 credits) with the devnet payment backend (no money)",
        v1.id, v100.id
    ));

    // A wallet publishes at a random time 1–12 h after buying (`smpx wallet buy` schedules it,
    // `smpx wallet sync` publishes it then); the demo cannot wait that long, so it shortens
    // the delay to under 300 ms, and says so.
    out.step("the demo shortens the publish delay to under 300 ms; a real wallet publishes 1 to 12 hours after buying, so the issuer and the coordinator cannot match the two by time");
    for v in [&v10, &v1, &v100] {
        let delay = Duration::from_millis(rand::random::<u64>() % 300);
        let p = wallet.publish(&net.coordinator_url, v.id, delay).await?;
        ensure!(
            p.state == LocalState::Published,
            "voucher {} not published",
            v.id
        );
        out.step(&format!(
            "published voucher #{} after a random {} ms delay; expires at {}",
            v.id,
            delay.as_millis(),
            p.expires_at.unwrap_or_default()
        ));
    }

    // v0.2, the default: a zero-knowledge proof against the MMR's latest root.
    let stages = std::sync::Mutex::new(Vec::<String>::new());
    let note = |p: RedeemProgress| {
        let name = match p {
            RedeemProgress::FetchingKeys => "keys",
            RedeemProgress::DownloadingTranscript { .. } => "transcript",
            RedeemProgress::VerifyingTranscript { .. } => "verify ceremony",
            RedeemProgress::DownloadingLeaves { .. } => "download MMR",
            RedeemProgress::Proving => "prove",
            RedeemProgress::Submitting => "submit",
            _ => "other",
        };
        if let Ok(mut s) = stages.lock() {
            if s.last().map(String::as_str) != Some(name) {
                s.push(name.to_owned());
            }
        }
    };
    // The anonymity set first: a handful of vouchers, which a real wallet refuses, so the
    // demo accepts it explicitly.
    let set = wallet
        .anonymity(&net.coordinator_url, v10.id, &RedeemOptions::default())
        .await?;
    out.step(&crate::anonymity::demo_acceptance(&set));
    let accepting = RedeemOptions {
        accept_anonymity: Some(set.chosen.size),
        ..RedeemOptions::default()
    };
    let c = wallet
        .redeem_with(
            &net.coordinator_url,
            &net.operator_url,
            v10.id,
            &accepting,
            &note,
        )
        .await?;
    ensure!(c.protocol == 2, "the default redemption should be v0.2");
    let receipt: smpx_core::receipt::Signed<smpx_core::api::OperatorCreditReceipt> =
        serde_json::from_value(c.receipt.clone())?;
    let mmr_id = receipt
        .body
        .coordinator_receipt
        .body
        .mmr_id
        .context("a v0.2 receipt names its MMR")?;
    let mmr: MmrInfo = ApiClient::new(&net.coordinator_url)
        .get(&format!("/v1/mmrs/{mmr_id}"))
        .await?;
    let steps = stages.lock().map(|s| s.join(" → ")).unwrap_or_default();
    out.step(&format!(
        "redeemed voucher #{} at {} with a zero-knowledge proof ({steps}): credited {} credits; \
         the coordinator saw a nullifier and MMR {mmr_id}, not which of its {} vouchers",
        v10.id, c.operator_id, c.credited, mmr.size
    ));
    ensure!(
        c.issued == c.credited,
        "the operator should pay the credited amount in credit tokens"
    );
    cleared_with(net, &statement, 10, out).await?;
    let tokens = wallet.credit_tokens(Some(&c.operator_id)).await?;
    out.step(&format!(
        "received {} credits from {} as {} blind-signed tokens (power-of-two amounts under \
         today's keyset, each DLEQ-checked against the published key)",
        c.issued,
        c.operator_id,
        tokens.len()
    ));
    // v0.1, still selectable: the coordinator opens an envelope and sees the voucher.
    let c = wallet
        .redeem_with(
            &net.coordinator_url,
            &net.operator_url,
            v1.id,
            &RedeemOptions::v1(),
            &|_| {},
        )
        .await?;
    out.step(&format!(
        "redeemed voucher #{} at {} with v0.1 (HPKE envelope; the coordinator sees which voucher): credited {} credits",
        v1.id, c.operator_id, c.credited
    ));

    // Spending credits: tokens in, change back; the operator keeps the difference.
    let operator_id = c.operator_id.clone();
    let held = |b: &smpx_wallet::Balance| {
        b.credit_tokens
            .get(&operator_id)
            .copied()
            .unwrap_or(smpx_core::Amount::ZERO)
    };
    let before = held(&wallet.balance().await?);
    ensure!(
        before.0 == 11_000_000,
        "11 credits should be held at the operator, not {before}"
    );
    let spent = wallet
        .spend_credits(&net.operator_url, smpx_core::Amount(2_500_000))
        .await?;
    let after = held(&wallet.balance().await?);
    ensure!(
        after.0 == before.0 - 2_500_000,
        "the balance should drop by what was spent"
    );
    out.step(&format!(
        "spent {} credits at {}: {} token(s) worth {} in, {} back as change; credits there: {} before, {} after",
        spent.paid, spent.operator_id, spent.input_tokens, spent.inputs, spent.change, before, after
    ));

    match wallet
        .redeem(&net.coordinator_url, &net.operator_url, v10.id)
        .await
    {
        Err(WalletError::InvalidState { .. }) => {
            out.step("the wallet refuses to redeem voucher a second time")
        }
        other => bail!("a second redemption should be refused, got {other:?}"),
    }

    let balance = wallet.balance().await?;
    out.step(&format!(
        "wallet balance: {}",
        serde_json::to_string(&balance)?
    ));

    // Anyone can check the books from the public endpoints.
    let public = ApiClient::new(&net.coordinator_url);
    let (totals, replayed, _) = crate::audit::replay_ledger(&public).await?;
    ensure!(
        replayed == totals.totals,
        "replayed totals differ from the published ones"
    );
    ensure!(totals.conserved, "the ledger does not conserve value");
    let t = &totals.totals;
    ensure!(
        t.published.0 == 111_000_000,
        "published should be 111 credits"
    );
    ensure!(t.redeemed.0 == 11_000_000, "redeemed should be 11 credits");
    out.step(&format!(
        "ledger ({} entries, replayed from the public log): published {} = redeemed {} + live {} + released {}",
        totals.entries, t.published, t.redeemed, t.live, t.released
    ));
    out.step(&format!(
        "paid to operators {}  network fund {}  — conservation holds",
        t.paid_to_operators, t.network_fund
    ));
    let shares = crate::audit::audit_shares(&public).await?;
    ensure!(
        shares.ok() && shares.checked_against_statements == 2,
        "the share audit should re-derive both redemptions from their statement: {shares:?}"
    );
    out.step(&format!(
        "share audit (smpx audit): {} redemptions re-derived from the statement each names — signed by a trusted directory, its share recomputed from its evaluation, the split from its share; {} findings",
        shares.checked_against_statements,
        shares.findings.len()
    ));
    paid_relay_capacity(&wallet, relays, out).await?;
    Ok(totals)
}

/// What the directory's statement set: the operator's share at the coordinator now.
struct Measured {
    operator_id: String,
    digest: String,
    share_bps: u32,
}

/// The directory's part: the devnet's relays registered themselves; the devnet's attester
/// vouches for the operator's identity; one probe round (the directory runs one every
/// minute; the demo runs it now) measures the relays and signs the operator's share
/// statement, which the coordinator takes from the directory it trusts.
async fn measured_share(net: &Devnet, out: &mut dyn Out) -> Result<Measured> {
    let operator_id = crate::devnet::OPERATOR_ID;
    let directory = ApiClient::new(&net.directory_url);
    let relays: Vec<serde_json::Value> = directory.get("/v1/relays").await?;
    let mine = relays
        .iter()
        .filter(|r| r["operator_id"] == operator_id)
        .count();
    ensure!(
        mine == usize::from(crate::relay::DEVNET_RELAYS),
        "the directory lists {mine} of the devnet's relays"
    );
    let operator: serde_json::Value = directory
        .get(&format!("/v1/operators/{operator_id}"))
        .await?;
    out.step(&format!(
        "{mine} relays registered themselves with the directory at {} (each signed by its CA key \
         and {operator_id}'s key, with a proof of work); {operator_id} is anonymous so far",
        net.directory_url
    ));
    let attester = net
        .attester
        .as_ref()
        .context("the devnet has no attester key")?;
    let key = smpx_core::crypto::sign::VerifyingKey::from_hex(
        operator["operator_key"].as_str().unwrap_or_default(),
    )
    .context("the directory's operator key")?;
    let signed =
        smpx_core::directory::wire::attest(attester, key, "Devnet Relays Ltd", "DE", unix_now())?;
    let _: serde_json::Value = directory
        .post(
            &format!("/v1/operators/{operator_id}/attestations"),
            &signed,
        )
        .await?;
    out.step(&format!(
        "an attester the directory trusts vouched that {operator_id}'s key belongs to Devnet Relays Ltd (DE)"
    ));

    let round = smpx_directory::probe::round(&net.directory).await;
    ensure!(
        round.probed == Some(mine),
        "the probe round reached {:?} relays",
        round.probed
    );
    let relays: Vec<serde_json::Value> = directory.get("/v1/relays").await?;
    let latencies: Vec<String> = relays
        .iter()
        .filter(|r| r["operator_id"] == operator_id)
        .map(|r| {
            format!(
                "{} {} ms",
                r["status"].as_str().unwrap_or("?"),
                r["latency_p50_ms"].as_u64().unwrap_or_default()
            )
        })
        .collect();
    out.step(&format!(
        "the directory probed each relay (TCP, TLS pinned to its fingerprint, a queue's round trip): {}",
        latencies.join(", ")
    ));
    let st: smpx_core::receipt::Signed<smpx_core::directory::ShareStatement> = directory
        .get(&format!("/v1/statements?operator={operator_id}"))
        .await?;
    let sh = &st.body.share;
    let pct = |bps: u64| format!("{:.2}%", bps as f64 / 100.0);
    let e = &st.body.evaluation;
    out.step(&format!(
        "share statement for {operator_id}, signed by the directory: identity {} ({}) × time on \
         the network {} × uptime {} ({} relays past probation, {} new ones counted at half) × cap {} = {}",
        pct(sh.identity_bps),
        if e.verified_identity { "attested" } else { "anonymous" },
        pct(sh.tenure_bps),
        pct(sh.uptime_bps),
        e.relay_uptimes.len(),
        e.probation_uptimes.len(),
        pct(sh.cap_bps),
        pct(sh.share_bps)
    ));
    let taken = round.delivered.map_or(0, |d| d.taken);
    ensure!(taken == 1, "the coordinator took {taken} statements");
    let share: serde_json::Value = ApiClient::new(&net.coordinator_url)
        .get(&format!("/v1/operators/{operator_id}/share"))
        .await?;
    let digest = smpx_core::directory::statement_digest(&st);
    ensure!(
        share["source"] == "statement" && share["statement"] == digest.as_str(),
        "the coordinator should clear with the statement, not {share}"
    );
    let share_bps = share["share_bps"]
        .as_u64()
        .and_then(|b| u32::try_from(b).ok())
        .context("the coordinator's share")?;
    out.step(&format!(
        "the coordinator took it (it trusts this directory's key): {operator_id} is now paid {} \
         of each redemption (the statement's share, under the administrator's cap of {})",
        pct(u64::from(share_bps)),
        pct(share["cap_bps"].as_u64().unwrap_or_default())
    ));
    Ok(Measured {
        operator_id: operator_id.to_owned(),
        digest,
        share_bps,
    })
}

/// The redemption of `credits` just made was cleared with the statement: its ledger entry
/// names it, and the operator's part is the value at the statement's share.
async fn cleared_with(net: &Devnet, m: &Measured, credits: u64, out: &mut dyn Out) -> Result<()> {
    let entries = crate::audit::ledger_entries(&ApiClient::new(&net.coordinator_url)).await?;
    let paid = entries
        .iter()
        .rev()
        .find(|e| {
            e.kind == smpx_core::ledger::EntryKind::Redeem
                && e.to == smpx_core::ledger::Account::Operator(m.operator_id.clone())
        })
        .context("no redemption entry for the operator")?;
    let value = smpx_core::Amount(credits * 1_000_000);
    let (expected, fund) = smpx_core::ledger::redemption_split(value, m.share_bps);
    ensure!(
        paid.share_source.as_deref() == Some("statement")
            && paid.share_statement.as_deref() == Some(m.digest.as_str())
            && paid.amount == expected,
        "the redemption should be cleared with statement {}, got {paid:?}",
        m.digest
    );
    out.step(&format!(
        "ledger entry #{}: {} to {} and {fund} to the network fund, cleared with statement {}… \
         (GET /v1/share-statements/{{digest}}: anyone can re-derive the split)",
        paid.seq,
        paid.amount,
        m.operator_id,
        &m.digest[..16.min(m.digest.len())]
    ));
    Ok(())
}

/// The last act: a queue on a relay fills its free quota, the wallet pays the relay with
/// credits, and the message the free tier refused is delivered over the paid capacity.
async fn paid_relay_capacity(
    wallet: &Wallet,
    relays: &[RunningNode],
    out: &mut dyn Out,
) -> Result<()> {
    let node = relays.first().context("no relay running")?;
    let (client, _events) = connect_tls(node.address(), ClientConfig::default())
        .await
        .context("connecting to the relay")?;
    let info = client.info().await?;
    let q = client.create_queue().await?;
    let mut sent = 0u32;
    let refused = loop {
        let body = format!("message {}", sent + 1);
        match client.send(&q.sender_id, None, body.as_bytes()).await {
            Ok(()) => sent += 1,
            Err(RelayClientError::Relay(RelayErrorCode::Quota)) => break body,
            Err(e) => return Err(e.into()),
        }
        ensure!(sent <= info.free_quota, "the free quota was not enforced");
    };
    ensure!(
        sent == info.free_quota,
        "the free tier held {sent} messages"
    );
    out.step(&format!(
        "relay {}: a new queue holds {sent} undelivered messages free; message {} was refused (QUOTA)",
        node.address(),
        sent + 1
    ));

    let paid = wallet
        .pay_relay(&client, &q.recipient_id, &q.recipient_key, None)
        .await
        .context("paying the relay")?;
    let Bought::Queue { quota, paid_until } = paid.bought else {
        bail!("the relay sold a queue something else: {:?}", paid.bought)
    };
    let earned = node.relay().stats().snapshot().credits_earned_units;
    ensure!(
        earned == paid.spend.paid.0,
        "the relay counted {earned} units earned, the wallet paid {}",
        paid.spend.paid
    );
    out.step(&format!(
        "paid the relay {} credits through {}'s registry (change {}): the queue now holds {quota} messages for {} days; the relay earned {} credits",
        paid.spend.paid,
        paid.spend.operator_id,
        paid.spend.change,
        paid_until.saturating_sub(unix_now()).div_ceil(86_400),
        smpx_core::Amount(earned)
    ));

    client.send(&q.sender_id, None, refused.as_bytes()).await?;
    // The recipient drains the queue: the free messages, the quota marker, then the one
    // sent over paid capacity.
    let mut last = None;
    let mut delivered = 0u32;
    while let Some(m) = client.get(&q).await? {
        if let Content::Body(b) = &m.content {
            delivered += 1;
            last = Some(String::from_utf8_lossy(b).into_owned());
        }
        client.ack(&q, &m.msg_id).await?;
    }
    ensure!(
        delivered == sent + 1 && last.as_deref() == Some(refused.as_str()),
        "expected {} messages ending with {refused:?}, got {delivered} ending with {last:?}",
        sent + 1
    );
    out.step(&format!(
        "delivered {delivered} messages; the last, {refused:?}, over capacity paid for with credits"
    ));
    Ok(())
}

fn unix_now() -> u64 {
    smpx_os::Clock::now(&smpx_os::SystemClock)
}

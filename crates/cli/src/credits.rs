//! `smpx wallet credits …`: the wallet's operator credits (blind-signed tokens issued at
//! redemption, see `smpx_wallet::credits`).

use crate::print_json;
use anyhow::{Context, Result};
use clap::Subcommand;
use smpx_core::Amount;
use smpx_wallet::{RestoreOptions, Wallet};

#[derive(Subcommand)]
pub(crate) enum CreditsCmd {
    /// Credits held per operator: unspent, pending, expired, spent (no network).
    Balance,
    /// Every credit token (no secrets): amount, keyset, state, origin.
    List {
        /// Only this operator's (its id).
        #[arg(long)]
        operator_id: Option<String>,
    },
    /// Pay an amount of credits to an operator: tokens in, change back (NUT-03 swap). The
    /// operator keeps what the change leaves over; the relay's capacity purchases use the
    /// same request.
    Spend {
        /// Credits, e.g. 2.5 (six decimals at most).
        amount: String,
        #[arg(long, env = "SMPX_OPERATOR", default_value = "http://127.0.0.1:7402")]
        operator: String,
    },
    /// Finish spends whose answer was lost: collect their change, or get the inputs back.
    Collect {
        #[arg(long, env = "SMPX_OPERATOR", default_value = "http://127.0.0.1:7402")]
        operator: String,
    },
    /// Find this wallet's credits at an operator from the recovery phrase alone (NUT-09).
    Restore {
        #[arg(long, env = "SMPX_OPERATOR", default_value = "http://127.0.0.1:7402")]
        operator: String,
        /// Counters asked per keyset per round.
        #[arg(long, default_value_t = RestoreOptions::default().batch)]
        batch: u32,
        /// Stop a keyset after this many empty batches in a row.
        #[arg(long, default_value_t = RestoreOptions::default().empty_batches)]
        empty_batches: u32,
    },
}

/// Parses `2`, `2.5`, `0.000001` credits into units.
fn parse_credits(text: &str) -> Result<Amount> {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    anyhow::ensure!(
        frac.len() <= 6 && frac.bytes().all(|b| b.is_ascii_digit()),
        "at most six decimals: {text:?}"
    );
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole
            .parse()
            .with_context(|| format!("not an amount: {text:?}"))?
    };
    let frac: u64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}").parse()?
    };
    whole
        .checked_mul(1_000_000)
        .and_then(|w| w.checked_add(frac))
        .map(Amount)
        .with_context(|| format!("amount too large: {text:?}"))
}

pub(crate) async fn run(w: &Wallet, cmd: CreditsCmd, json: bool) -> Result<()> {
    match cmd {
        CreditsCmd::Balance => {
            let b = w.credit_balance().await?;
            if json {
                print_json(&b)?;
            } else if b.is_empty() {
                println!("no credits");
            } else {
                println!(
                    "{:<16}  {:>14}  {:>6}  {:>14}  {:>14}  {:>14}",
                    "operator", "unspent", "tokens", "pending", "expired", "spent"
                );
                for o in b {
                    println!(
                        "{:<16}  {:>14}  {:>6}  {:>14}  {:>14}  {:>14}",
                        o.operator_id,
                        o.unspent.to_string(),
                        o.unspent_tokens,
                        o.pending.to_string(),
                        o.expired.to_string(),
                        o.spent.to_string()
                    );
                }
            }
        }
        CreditsCmd::List { operator_id } => {
            let ts = w.credit_tokens(operator_id.as_deref()).await?;
            if json {
                print_json(&ts)?;
            } else if ts.is_empty() {
                println!("no credit tokens");
            } else {
                println!(
                    "{:>5}  {:<16}  {:>12}  {:<8}  {:<8}  {:<18}  expires",
                    "id", "operator", "amount", "state", "origin", "keyset"
                );
                for t in ts {
                    println!(
                        "{:>5}  {:<16}  {:>12}  {:<8}  {:<8}  {:<18}  {}",
                        t.id,
                        t.operator_id,
                        t.amount.to_string(),
                        serde_json::to_value(t.state)?.as_str().unwrap_or("?"),
                        t.origin,
                        format!("{}…", &t.keyset_id[..16.min(t.keyset_id.len())]),
                        t.final_expiry
                    );
                }
            }
        }
        CreditsCmd::Spend { amount, operator } => {
            let amount = parse_credits(&amount)?;
            let s = w.spend_credits(&operator, amount).await?;
            if json {
                print_json(&s)?;
            } else {
                println!(
                    "paid {} credits to {} ({} token(s) worth {} in, {} token(s) worth {} change); \
                     {} credits left there",
                    s.paid,
                    s.operator_id,
                    s.input_tokens,
                    s.inputs,
                    s.change_tokens,
                    s.change,
                    s.balance
                );
            }
        }
        CreditsCmd::Collect { operator } => {
            let r = w.collect_credits(&operator).await?;
            if json {
                print_json(&r)?;
            } else {
                println!(
                    "{} spend(s) completed ({} credits of change), {} cancelled (inputs back), \
                     {} still pending",
                    r.completed, r.change, r.cancelled, r.pending
                );
            }
        }
        CreditsCmd::Restore {
            operator,
            batch,
            empty_batches,
        } => {
            let r = w
                .restore_credits(
                    &operator,
                    RestoreOptions {
                        batch,
                        empty_batches,
                    },
                )
                .await?;
            if json {
                print_json(&r)?;
            } else {
                println!(
                    "{}: scanned {} keysets; {} outputs signed, {} unspent token(s) restored \
                     ({} already spent, {} in pending spends); {} credits unspent there",
                    r.operator_id,
                    r.keysets_scanned,
                    r.signed,
                    r.restored,
                    r.spent,
                    r.pending,
                    r.balance
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn credit_amounts_parse_in_units() {
        assert_eq!(parse_credits("2").unwrap(), Amount(2_000_000));
        assert_eq!(parse_credits("2.5").unwrap(), Amount(2_500_000));
        assert_eq!(parse_credits("0.000001").unwrap(), Amount(1));
        assert_eq!(parse_credits(".25").unwrap(), Amount(250_000));
        assert!(parse_credits("1.0000001").is_err());
        assert!(parse_credits("-1").is_err());
        assert!(parse_credits("x").is_err());
    }
}

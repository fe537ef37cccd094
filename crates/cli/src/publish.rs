//! When bought vouchers are published: `smpx wallet buy` schedules it (a random time 1–12 h
//! later by default, `smpx_core::rules::publish_delay`), `smpx wallet publish ID` publishes
//! one that is due (or reschedules it), `smpx wallet sync` publishes everything that is due,
//! and `smpx wallet sync --wait` stays running until nothing is left to publish.

use crate::print_json;
use anyhow::Result;
use clap::Args;
use smpx_wallet::{PublishWindow, Schedule, SyncReport, VoucherRecord, Wallet, WalletError};
use std::time::Duration;

/// How the CLI says when to publish (shared by `buy` and `publish`).
#[derive(Args, Clone, Debug, Default)]
pub(crate) struct When {
    /// Publish at once instead of at a random later time. The issuer saw the purchase
    /// moments ago, so it and the coordinator can then match the two by time.
    #[arg(long, conflicts_with_all = ["delay_min", "delay_max"])]
    pub no_delay: bool,
    /// The earliest publication, in seconds from now (default 3600; at least 600).
    #[arg(long, value_name = "SECS")]
    pub delay_min: Option<u64>,
    /// The latest publication, in seconds from now (default 43200; at most 30 days).
    #[arg(long, value_name = "SECS")]
    pub delay_max: Option<u64>,
}

impl When {
    /// The schedule asked for, or `None` for the wallet's default.
    fn schedule(&self) -> Result<Option<Schedule>> {
        if self.no_delay {
            return Ok(Some(Schedule::NoDelay));
        }
        if self.delay_min.is_none() && self.delay_max.is_none() {
            return Ok(None);
        }
        let d = PublishWindow::default();
        let min = self.delay_min.unwrap_or(d.min.as_secs());
        let max = self.delay_max.unwrap_or(d.max.as_secs().max(min));
        Ok(Some(Schedule::Window(PublishWindow::from_secs(min, max)?)))
    }
}

/// After `smpx wallet buy`: applies `when` (the purchase already scheduled the default) and,
/// with `--no-delay`, publishes at once. Returns the voucher as it is now.
pub(crate) async fn after_buy(
    w: &Wallet,
    coordinator: &str,
    v: VoucherRecord,
    when: &When,
) -> Result<VoucherRecord> {
    match when.schedule()? {
        None => Ok(v),
        Some(Schedule::NoDelay) => {
            w.schedule_publish(v.id, Schedule::NoDelay).await?;
            Ok(w.publish_if_due(coordinator, v.id).await?)
        }
        Some(s) => Ok(w.schedule_publish(v.id, s).await?),
    }
}

/// The line `smpx wallet buy` prints.
pub(crate) fn bought_line(v: &VoucherRecord, now: u64) -> String {
    match (v.published_at, v.publish_due_at) {
        (Some(_), _) => format!(
            "bought and published voucher #{} ({} credits) at once (--no-delay): the issuer and \
             the coordinator can match the two by time",
            v.id, v.denomination
        ),
        (None, Some(due)) => format!(
            "bought voucher #{} ({} credits); it will be published at {} ({}), a random time \
             that hides when it was bought: run `smpx wallet sync` after then, or keep \
             `smpx wallet sync --wait` running",
            v.id,
            v.denomination,
            utc(due),
            from_now(due, now)
        ),
        (None, None) => format!("bought voucher #{} ({} credits)", v.id, v.denomination),
    }
}

/// `smpx wallet publish ID`: publishes it if due; `--no-delay` publishes it now; a window
/// reschedules it.
pub(crate) async fn publish(
    w: &Wallet,
    coordinator: &str,
    id: i64,
    when: &When,
    json: bool,
) -> Result<()> {
    match when.schedule()? {
        Some(Schedule::Window(window)) => {
            let v = w.schedule_publish(id, Schedule::Window(window)).await?;
            if json {
                return print_json(&v);
            }
            let due = v.publish_due_at.unwrap_or_default();
            println!(
                "voucher #{id} will be published at {} ({})",
                utc(due),
                from_now(due, now())
            );
            return Ok(());
        }
        Some(Schedule::NoDelay) => {
            w.schedule_publish(id, Schedule::NoDelay).await?;
        }
        None => {}
    }
    let v = match w.publish_if_due(coordinator, id).await {
        Err(WalletError::NotDueYet { id, due_at }) => anyhow::bail!(
            "voucher #{id} is scheduled to be published at {} ({}), a random time that hides \
             when it was bought; `smpx wallet sync` publishes it then, and `smpx wallet publish \
             {id} --no-delay` now (the issuer and the coordinator can then match the purchase \
             and the publication by time)",
            utc(due_at),
            from_now(due_at, now())
        ),
        r => r?,
    };
    if json {
        print_json(&v)
    } else {
        println!(
            "published voucher #{}; it expires at {}",
            v.id,
            utc(v.expires_at.unwrap_or_default())
        );
        Ok(())
    }
}

/// `smpx wallet sync [--wait]`.
pub(crate) async fn sync(w: &Wallet, coordinator: &str, wait: bool, json: bool) -> Result<()> {
    loop {
        let report = w.publish_due(coordinator).await?;
        print_report(&report, json)?;
        let Some(next) = report.scheduled.first().map(|s| s.due_at) else {
            if report.failed.is_empty() {
                return Ok(());
            }
            if !wait {
                anyhow::bail!(
                    "{} due voucher(s) could not be published",
                    report.failed.len()
                );
            }
            // Only failures left: try them again in a minute.
            tokio::time::sleep(RETRY).await;
            continue;
        };
        if !wait {
            if !report.failed.is_empty() {
                anyhow::bail!(
                    "{} due voucher(s) could not be published",
                    report.failed.len()
                );
            }
            return Ok(());
        }
        let mut pause = Duration::from_secs(next.saturating_sub(now()));
        if !report.failed.is_empty() {
            pause = pause.min(RETRY);
        }
        if !json {
            eprintln!("waiting until {} ({})…", utc(next), from_now(next, now()));
        }
        tokio::time::sleep(pause).await;
    }
}

/// How soon `sync --wait` retries vouchers it could not publish.
const RETRY: Duration = Duration::from_secs(60);

fn print_report(r: &SyncReport, json: bool) -> Result<()> {
    if json {
        return print_json(r);
    }
    for v in &r.published {
        println!(
            "published voucher #{}; it expires at {}",
            v.id,
            utc(v.expires_at.unwrap_or_default())
        );
    }
    for f in &r.failed {
        eprintln!(
            "voucher #{} is due but was not published: {}",
            f.id, f.error
        );
    }
    match r.scheduled.first() {
        Some(s) => println!(
            "{} voucher(s) still scheduled; the next at {} ({})",
            r.scheduled.len(),
            utc(s.due_at),
            from_now(s.due_at, now())
        ),
        None if r.published.is_empty() && r.failed.is_empty() => {
            println!("nothing to publish")
        }
        None => {}
    }
    Ok(())
}

fn now() -> u64 {
    smpx_http::Clock::now(&smpx_http::SystemClock)
}

/// Unix seconds as `2026-12-03 14:05 UTC`.
pub(crate) use smpx_core::utc;

/// `in 3 h 12 min`, `in 40 s`, or `now`.
pub(crate) fn from_now(t: u64, now: u64) -> String {
    let d = t.saturating_sub(now);
    match d {
        0 => "now".into(),
        1..=59 => format!("in {d} s"),
        60..=3599 => format!("in {} min", d / 60),
        _ => format!("in {} h {} min", d / 3600, d % 3600 / 60),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc(1_767_225_600), "2026-01-01 00:00 UTC");
        assert_eq!(utc(1_796_300_700), "2026-12-03 12:25 UTC");
        assert_eq!(from_now(100, 100), "now");
        assert_eq!(from_now(140, 100), "in 40 s");
        assert_eq!(from_now(100 + 11_520, 100), "in 3 h 12 min");
        assert_eq!(from_now(50, 100), "now");
    }

    #[test]
    fn the_flags_make_a_checked_schedule() {
        let w = |no_delay, delay_min, delay_max| When {
            no_delay,
            delay_min,
            delay_max,
        };
        assert_eq!(w(false, None, None).schedule().unwrap(), None);
        assert_eq!(
            w(true, None, None).schedule().unwrap(),
            Some(Schedule::NoDelay)
        );
        assert_eq!(
            w(false, Some(600), Some(900)).schedule().unwrap(),
            Some(Schedule::Window(
                PublishWindow::from_secs(600, 900).unwrap()
            ))
        );
        // Only a minimum above the default maximum: the window is that one instant onwards.
        assert_eq!(
            w(false, Some(90_000), None).schedule().unwrap(),
            Some(Schedule::Window(
                PublishWindow::from_secs(90_000, 90_000).unwrap()
            ))
        );
        let e = w(false, Some(5), None).schedule().unwrap_err();
        assert!(e.to_string().contains("--no-delay"), "{e}");
    }
}

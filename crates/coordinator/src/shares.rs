//! Operators' shares from directories' signed share statements (issue 13): which statement
//! the coordinator takes, and which share a redemption is cleared with. Pure functions of
//! what the store holds and `now`; the handlers load, call and store.
//!
//! * A statement is taken ([`admit`]) when a trusted directory signed it
//!   ([`smpx_core::directory::check_statement`]: trusted key, good signature, its share is
//!   what its evaluation gives), it is for the current or the next period (it has not ended,
//!   and starts at most one period ahead), and it is not older than the newest one on record
//!   for the operator (by period, then evaluation time). Anything else is
//!   `statement_refused` and the statement on record stays.
//! * The share a redemption is cleared with ([`effective`]): with trusted directories
//!   configured and a statement on record that holds now, the statement's share capped by
//!   the administrator's number (`share_bps` of `POST /v1/admin/operators`, which is then
//!   a **cap**: the administrator can lower a share, never raise it above the measurement);
//!   otherwise the administrator's number, and the ledger says `"admin"`. The network's
//!   `max_operator_share_bps` caps both, in the clearing rule.

use smpx_core::directory::{ShareStatement, SHARE_PERIOD_SECS};
use smpx_core::error::{err, ErrorCode, ProtocolError};
use smpx_core::UnixTime;

/// A statement on record, as far as the rules read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OnRecord<'a> {
    pub digest: &'a str,
    pub period_start: UnixTime,
    pub period_end: UnixTime,
    pub evaluated_at: UnixTime,
    pub share_bps: u32,
}

/// What to do with a checked statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Store it.
    Store,
    /// It is the one on record already (a repeat): answer as if stored.
    Repeat,
}

/// Whether a statement that passed `check_statement` is taken, given the newest statement
/// on record for its operator.
pub fn admit(
    statement: &ShareStatement,
    digest: &str,
    newest: Option<&OnRecord<'_>>,
    now: UnixTime,
) -> Result<Admit, ProtocolError> {
    if let Some(r) = newest {
        if r.digest == digest {
            return Ok(Admit::Repeat);
        }
    }
    if statement.period_end <= now {
        return Err(err(
            ErrorCode::StatementRefused,
            "the statement's period is over",
        ));
    }
    if statement.period_start > now.saturating_add(SHARE_PERIOD_SECS) {
        return Err(err(
            ErrorCode::StatementRefused,
            "the statement is for a period after the next one",
        ));
    }
    if let Some(r) = newest {
        if (statement.period_start, statement.evaluated_at) <= (r.period_start, r.evaluated_at) {
            return Err(err(
                ErrorCode::StatementRefused,
                "a newer statement for this operator is on record",
            ));
        }
    }
    Ok(Admit::Store)
}

/// Where a share came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The administrator's number.
    Admin,
    /// The statement with this digest (`statement_digest`), capped by the administrator's.
    Statement(String),
}

impl Source {
    /// As the ledger and the API name it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Source::Admin => "admin",
            Source::Statement(_) => "statement",
        }
    }

    pub fn digest(&self) -> Option<&str> {
        match self {
            Source::Admin => None,
            Source::Statement(d) => Some(d),
        }
    }
}

/// The share an operator is paid now, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Effective {
    pub share_bps: u32,
    pub source: Source,
}

/// The share a redemption at an operator whose administrator's number is `admin_bps` is
/// cleared with: see the module documentation. `in_force` is the newest statement on
/// record for the operator; it counts only with `trusting` (trusted directories
/// configured) and only while it holds at `now`.
pub fn effective(
    admin_bps: u32,
    trusting: bool,
    in_force: Option<&OnRecord<'_>>,
    now: UnixTime,
) -> Effective {
    match in_force {
        Some(s) if trusting && s.period_start <= now && now < s.period_end => Effective {
            share_bps: s.share_bps.min(admin_bps),
            source: Source::Statement(s.digest.to_owned()),
        },
        _ => Effective {
            share_bps: admin_bps,
            source: Source::Admin,
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use smpx_core::rules::trust::Evaluation;

    const DAY: u64 = SHARE_PERIOD_SECS;
    const NOW: u64 = 20_000 * DAY + 3600;

    fn statement(at: u64) -> ShareStatement {
        let evaluation = Evaluation {
            verified_identity: true,
            time_on_network_secs: 365 * DAY,
            relay_uptimes: vec![1.0],
            probation_uptimes: Vec::new(),
        };
        ShareStatement::new("dir", "op-1", evaluation, 7000, at)
    }

    fn record(s: &ShareStatement, digest: &'static str) -> OnRecord<'static> {
        OnRecord {
            digest,
            period_start: s.period_start,
            period_end: s.period_end,
            evaluated_at: s.evaluated_at,
            share_bps: s.share.share_bps as u32,
        }
    }

    #[test]
    fn statements_for_this_or_the_next_period_are_taken_once() {
        let today = statement(NOW);
        assert_eq!(admit(&today, "a", None, NOW).unwrap(), Admit::Store);
        let tomorrow = statement(NOW + DAY);
        assert_eq!(admit(&tomorrow, "b", None, NOW).unwrap(), Admit::Store);
        // The same statement again is a repeat, whatever the time.
        let on_record = record(&today, "a");
        assert_eq!(
            admit(&today, "a", Some(&on_record), NOW).unwrap(),
            Admit::Repeat
        );
        // A re-evaluation later in the same period replaces it; an earlier one does not.
        let later = statement(NOW + 60);
        assert_eq!(
            admit(&later, "c", Some(&on_record), NOW + 60).unwrap(),
            Admit::Store
        );
        let on_record = record(&later, "c");
        let refused = |s: &ShareStatement, r: Option<&OnRecord<'_>>, now| {
            admit(s, "z", r, now).unwrap_err().code
        };
        assert_eq!(
            refused(&today, Some(&on_record), NOW + 60),
            ErrorCode::StatementRefused
        );
        // Yesterday's, and the day after tomorrow's, are refused.
        assert_eq!(
            refused(&statement(NOW - DAY), None, NOW),
            ErrorCode::StatementRefused
        );
        assert_eq!(
            refused(&statement(NOW + 2 * DAY), None, NOW),
            ErrorCode::StatementRefused
        );
        // Today's once tomorrow's is on record: older.
        let next = record(&tomorrow, "b");
        assert_eq!(
            refused(&today, Some(&next), NOW),
            ErrorCode::StatementRefused
        );
    }

    #[test]
    fn the_share_is_the_statement_capped_by_the_administrator_while_it_holds() {
        let s = statement(NOW);
        let mut r = record(&s, "d");
        r.share_bps = 6500;
        let e = effective(7000, true, Some(&r), NOW);
        assert_eq!(
            e,
            Effective {
                share_bps: 6500,
                source: Source::Statement("d".into())
            }
        );
        // The administrator's number is a cap.
        assert_eq!(effective(5000, true, Some(&r), NOW).share_bps, 5000);
        assert_eq!(
            effective(5000, true, Some(&r), NOW).source.digest(),
            Some("d")
        );
        // Expired, not yet started, or no directory trusted: the administrator's number.
        let admin = Effective {
            share_bps: 7000,
            source: Source::Admin,
        };
        assert_eq!(effective(7000, true, Some(&r), r.period_end), admin);
        assert_eq!(effective(7000, true, Some(&r), r.period_start - 1), admin);
        assert_eq!(effective(7000, false, Some(&r), NOW), admin);
        assert_eq!(effective(7000, true, None, NOW), admin);
        assert_eq!(admin.source.as_str(), "admin");
    }
}

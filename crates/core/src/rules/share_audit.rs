//! Rule: was each redemption cleared at the share its ledger entries say, and does that
//! share follow from the statement they name? (Issue 13: "each redemption's ledger entry
//! records which statement set its share, so anyone can re-derive the clearing"; DESIGN.md
//! §3 "Directory", §2 "Pool and clearing".)
//!
//! Every ledger entry of a redemption records the redemption ([`RedemptionNote`]: operator,
//! value, share applied) and where the share came from (`share_source`, `share_statement`).
//! An auditor holding the public log, the statements it names (`GET
//! /v1/share-statements/{digest}`), the coordinator's trusted directory keys (`GET
//! /v1/trusted-directories`) and its `max_operator_share_bps` (`GET /v1/params`) checks:
//!
//! * [`redemptions`]: the entries of each redemption are exactly the postings the
//!   coordinator's clearing makes ([`ledger::redeem`] of the value at the share), in order,
//!   and all say the same about the redemption;
//! * [`check`], for a redemption whose share came from a statement: the statement served is
//!   the one named (its digest), a trusted directory signed it and it is self-consistent
//!   ([`check_statement`]), its share is what [`trust::share`] gives for its evaluation under
//!   the coordinator's cap, it is about the operator the voucher was redeemed at, and the
//!   redemption falls in its period;
//! * for every redemption: the share applied is at most the network's cap, and with a
//!   statement at most the statement's share. Below it is no finding — the administrator's
//!   number caps a statement (it may lower a share, never raise one) — but it is counted,
//!   so a lowered share is visible.
//!
//! [`audit`] puts these together into a [`ShareReport`] with typed [`Finding`]s.

use crate::crypto::sign::VerifyingKey;
use crate::directory::{check_statement, statement_digest, ShareStatement, StatementRefusal};
use crate::ledger::{self, Entry, EntryKind, RedemptionNote};
use crate::receipt::Signed;
use crate::rules::trust;
use crate::UnixTime;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// `share_source` of a redemption cleared with a directory's statement.
pub const SOURCE_STATEMENT: &str = "statement";
/// `share_source` of a redemption cleared with the administrator's number.
pub const SOURCE_ADMIN: &str = "admin";

/// Where a redemption's share came from, as its entries say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The administrator's number.
    Admin,
    /// The statement with this digest.
    Statement(String),
}

/// One redemption as the log records it: its entries, taken together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redemption {
    /// The sequence number of its first entry (what a finding names).
    pub seq: u64,
    /// When it was cleared (unix seconds).
    pub at: UnixTime,
    pub note: RedemptionNote,
    pub source: Source,
}

/// What is wrong with one redemption's clearing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "finding", rename_all = "snake_case")]
pub enum Finding {
    /// The entries starting here are not the split of the value they record at the share
    /// they record, or do not all say the same about the redemption.
    LegsDoNotFollow { seq: u64 },
    /// `share_source` is neither `"admin"` nor `"statement"`, or `"statement"` without a
    /// digest.
    UnknownSource { seq: u64, source: Option<String> },
    /// The share applied is above the network's `max_operator_share_bps`.
    AboveNetworkCap {
        seq: u64,
        share_bps: u32,
        cap_bps: u32,
    },
    /// The coordinator does not serve the statement the entries name.
    StatementMissing { seq: u64, digest: String },
    /// The statement served under the digest has another digest.
    StatementNotNamed {
        seq: u64,
        digest: String,
        served: String,
    },
    /// The statement does not pass [`check_statement`] against the trusted keys.
    StatementRefused {
        seq: u64,
        digest: String,
        refusal: Refusal,
    },
    /// The statement's share is not what its evaluation gives under the coordinator's cap.
    ShareDoesNotFollow {
        seq: u64,
        digest: String,
        stated_bps: u64,
        derived_bps: u64,
    },
    /// The statement is about another operator than the one the voucher was redeemed at.
    OtherOperator {
        seq: u64,
        digest: String,
        statement_operator: String,
        redeemed_at: String,
    },
    /// The redemption was cleared outside the statement's period.
    OutsidePeriod {
        seq: u64,
        digest: String,
        at: UnixTime,
        period_start: UnixTime,
        period_end: UnixTime,
    },
    /// The share applied is above what the statement (under the network's cap) allows.
    AboveStatement {
        seq: u64,
        digest: String,
        share_bps: u32,
        allowed_bps: u64,
    },
}

/// [`StatementRefusal`], as a finding reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    UntrustedSigner,
    BadSignature,
    Arithmetic,
    Period,
}

impl From<StatementRefusal> for Refusal {
    fn from(r: StatementRefusal) -> Refusal {
        match r {
            StatementRefusal::UntrustedSigner => Refusal::UntrustedSigner,
            StatementRefusal::BadSignature => Refusal::BadSignature,
            StatementRefusal::Arithmetic => Refusal::Arithmetic,
            StatementRefusal::Period => Refusal::Period,
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::LegsDoNotFollow { seq } => write!(
                f,
                "entry {seq}: the redemption's entries are not the split of its value at its share"
            ),
            Finding::UnknownSource { seq, source } => {
                write!(f, "entry {seq}: unknown share source {source:?}")
            }
            Finding::AboveNetworkCap {
                seq,
                share_bps,
                cap_bps,
            } => write!(
                f,
                "entry {seq}: cleared at {share_bps} bps, above the network's cap of {cap_bps}"
            ),
            Finding::StatementMissing { seq, digest } => {
                write!(f, "entry {seq}: statement {digest} is not served")
            }
            Finding::StatementNotNamed {
                seq,
                digest,
                served,
            } => write!(
                f,
                "entry {seq}: the statement served as {digest} has digest {served}"
            ),
            Finding::StatementRefused {
                seq,
                digest,
                refusal,
            } => write!(f, "entry {seq}: statement {digest} is refused: {refusal:?}"),
            Finding::ShareDoesNotFollow {
                seq,
                digest,
                stated_bps,
                derived_bps,
            } => write!(
                f,
                "entry {seq}: statement {digest} states {stated_bps} bps, its evaluation gives {derived_bps} under the coordinator's cap"
            ),
            Finding::OtherOperator {
                seq,
                digest,
                statement_operator,
                redeemed_at,
            } => write!(
                f,
                "entry {seq}: statement {digest} is about {statement_operator}, the voucher was redeemed at {redeemed_at}"
            ),
            Finding::OutsidePeriod {
                seq,
                digest,
                at,
                period_start,
                period_end,
            } => write!(
                f,
                "entry {seq}: cleared at {at}, outside statement {digest}'s period [{period_start}, {period_end})"
            ),
            Finding::AboveStatement {
                seq,
                digest,
                share_bps,
                allowed_bps,
            } => write!(
                f,
                "entry {seq}: cleared at {share_bps} bps, above the {allowed_bps} statement {digest} allows"
            ),
        }
    }
}

/// The redemptions in a log, and what is wrong with how their entries are laid out. Each
/// redemption's entries are the postings [`ledger::redeem`] makes for the value and share its
/// note records, consecutive and in that order (the coordinator appends them in one
/// transaction). Redemption entries without a note (recorded before notes) are counted,
/// not judged.
pub fn redemptions(entries: &[Entry]) -> (Vec<Redemption>, Vec<Finding>, u64) {
    let mut out = Vec::new();
    let mut findings = Vec::new();
    let mut unrecorded = 0;
    let mut i = 0;
    while i < entries.len() {
        let e = &entries[i];
        let note = match (&e.kind, &e.redemption) {
            (EntryKind::Redeem, Some(note)) => note,
            (EntryKind::Redeem, None) => {
                unrecorded += 1;
                i += 1;
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        };
        let postings = ledger::redeem(&note.operator_id, note.value, note.share_bps);
        let legs = entries.get(i..i + postings.len()).unwrap_or(&[]);
        let follows = !postings.is_empty()
            && legs.len() == postings.len()
            && legs.iter().zip(&postings).all(|(l, p)| {
                (l.kind, &l.from, &l.to, l.amount) == (p.kind, &p.from, &p.to, p.amount)
                    && (l.at, &l.redemption) == (e.at, &e.redemption)
                    && (&l.share_source, &l.share_statement)
                        == (&e.share_source, &e.share_statement)
            });
        if !follows {
            findings.push(Finding::LegsDoNotFollow { seq: e.seq });
            // One finding per redemption: skip the entries that note the same redemption.
            let span = entries[i..]
                .iter()
                .take(postings.len().max(1))
                .take_while(|l| l.kind == EntryKind::Redeem && l.redemption == e.redemption)
                .count();
            i += span.max(1);
            continue;
        }
        i += postings.len();
        let source = match (e.share_source.as_deref(), &e.share_statement) {
            (Some(SOURCE_ADMIN), None) => Source::Admin,
            (Some(SOURCE_STATEMENT), Some(d)) => Source::Statement(d.clone()),
            _ => {
                findings.push(Finding::UnknownSource {
                    seq: e.seq,
                    source: e.share_source.clone(),
                });
                continue;
            }
        };
        out.push(Redemption {
            seq: e.seq,
            at: e.at,
            note: note.clone(),
            source,
        });
    }
    (out, findings, unrecorded)
}

/// How a redemption that checks out was cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cleared {
    /// With its statement's share (capped by the network's maximum).
    ByStatement,
    /// With less than its statement's share: the administrator's number capped it.
    LoweredByAdministrator,
    /// With the administrator's number.
    ByAdministrator,
}

/// Checks one redemption. `statement` is what the coordinator serves under the digest the
/// entries name (`None`: nothing; unused for the administrator's number), `trusted` its
/// trusted directory keys and `cap_bps` the network's `max_operator_share_bps`.
pub fn check(
    r: &Redemption,
    statement: Option<&Signed<ShareStatement>>,
    trusted: &[VerifyingKey],
    cap_bps: u32,
) -> Result<Cleared, Finding> {
    let seq = r.seq;
    let share_bps = r.note.share_bps;
    if share_bps > cap_bps {
        return Err(Finding::AboveNetworkCap {
            seq,
            share_bps,
            cap_bps,
        });
    }
    let digest = match &r.source {
        Source::Admin => return Ok(Cleared::ByAdministrator),
        Source::Statement(d) => d.clone(),
    };
    let signed = statement.ok_or_else(|| Finding::StatementMissing {
        seq,
        digest: digest.clone(),
    })?;
    let served = statement_digest(signed);
    if served != digest {
        return Err(Finding::StatementNotNamed {
            seq,
            digest,
            served,
        });
    }
    let s = check_statement(signed, trusted).map_err(|e| Finding::StatementRefused {
        seq,
        digest: digest.clone(),
        refusal: e.into(),
    })?;
    let derived = trust::share(&s.evaluation, cap_bps);
    if derived.share_bps != s.share.share_bps {
        return Err(Finding::ShareDoesNotFollow {
            seq,
            digest,
            stated_bps: s.share.share_bps,
            derived_bps: derived.share_bps,
        });
    }
    if s.operator_id != r.note.operator_id {
        return Err(Finding::OtherOperator {
            seq,
            digest,
            statement_operator: s.operator_id.clone(),
            redeemed_at: r.note.operator_id.clone(),
        });
    }
    if !s.holds_at(r.at) {
        return Err(Finding::OutsidePeriod {
            seq,
            digest,
            at: r.at,
            period_start: s.period_start,
            period_end: s.period_end,
        });
    }
    let allowed = s.share.share_bps.min(u64::from(cap_bps));
    match u64::from(share_bps) {
        paid if paid > allowed => Err(Finding::AboveStatement {
            seq,
            digest,
            share_bps,
            allowed_bps: allowed,
        }),
        paid if paid < allowed => Ok(Cleared::LoweredByAdministrator),
        _ => Ok(Cleared::ByStatement),
    }
}

/// The digests the redemptions name, each once: what an auditor fetches.
pub fn named_statements(redemptions: &[Redemption]) -> Vec<String> {
    let mut digests: Vec<String> = redemptions
        .iter()
        .filter_map(|r| match &r.source {
            Source::Statement(d) => Some(d.clone()),
            Source::Admin => None,
        })
        .collect();
    digests.sort();
    digests.dedup();
    digests
}

/// What an audit of the shares found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareReport {
    /// Redemptions checked against the statement they name (and checked out).
    pub checked_against_statements: u64,
    /// Of those, cleared below the statement's share (the administrator's number capped it).
    pub lowered_by_administrator: u64,
    /// Redemptions cleared with the administrator's number (no statement).
    pub cleared_by_administrator: u64,
    /// Redemption entries recorded before entries noted their redemption: not judged.
    pub unrecorded_entries: u64,
    pub findings: Vec<Finding>,
}

impl ShareReport {
    /// Nothing was found wrong.
    pub fn ok(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Audits every redemption in `entries` against the statements fetched by digest
/// (`statements`; a digest missing from it was not served).
pub fn audit(
    entries: &[Entry],
    statements: &BTreeMap<String, Signed<ShareStatement>>,
    trusted: &[VerifyingKey],
    cap_bps: u32,
) -> ShareReport {
    let (found, findings, unrecorded) = redemptions(entries);
    let mut report = ShareReport {
        unrecorded_entries: unrecorded,
        findings,
        ..ShareReport::default()
    };
    for r in &found {
        let statement = match &r.source {
            Source::Statement(d) => statements.get(d),
            Source::Admin => None,
        };
        match check(r, statement, trusted, cap_bps) {
            Ok(Cleared::ByStatement) => report.checked_against_statements += 1,
            Ok(Cleared::LoweredByAdministrator) => {
                report.checked_against_statements += 1;
                report.lowered_by_administrator += 1;
            }
            Ok(Cleared::ByAdministrator) => report.cleared_by_administrator += 1,
            Err(f) => report.findings.push(f),
        }
    }
    report.findings.sort_by_key(Finding::seq);
    report
}

impl Finding {
    /// The entry the finding is about.
    pub fn seq(&self) -> u64 {
        match self {
            Finding::LegsDoNotFollow { seq }
            | Finding::UnknownSource { seq, .. }
            | Finding::AboveNetworkCap { seq, .. }
            | Finding::StatementMissing { seq, .. }
            | Finding::StatementNotNamed { seq, .. }
            | Finding::StatementRefused { seq, .. }
            | Finding::ShareDoesNotFollow { seq, .. }
            | Finding::OtherOperator { seq, .. }
            | Finding::OutsidePeriod { seq, .. }
            | Finding::AboveStatement { seq, .. } => *seq,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::crypto::sign::SigningKey;
    use crate::directory::SHARE_PERIOD_SECS;
    use crate::ledger::Account;
    use crate::rules::trust::Evaluation;
    use crate::Amount;

    const CAP: u32 = 7000;
    const NOW: u64 = 20_000 * SHARE_PERIOD_SECS + 3600;
    const VALUE: Amount = Amount(10_000_000);

    fn directory() -> SigningKey {
        SigningKey::from_bytes(&[7; 32])
    }

    fn trusted() -> Vec<VerifyingKey> {
        vec![directory().verifying_key()]
    }

    /// A verified operator a year on, up `uptime`: `7000 × uptime` under the cap.
    fn statement(operator: &str, uptime: f64) -> ShareStatement {
        let evaluation = Evaluation {
            verified_identity: true,
            time_on_network_secs: 365 * 86_400,
            relay_uptimes: vec![uptime],
            probation_uptimes: Vec::new(),
        };
        ShareStatement::new("dir", operator, evaluation, CAP, NOW)
    }

    fn signed(s: ShareStatement) -> Signed<ShareStatement> {
        s.sign(&directory()).unwrap()
    }

    /// A redemption's entries from `seq`, as the coordinator posts them.
    fn entries(seq: u64, operator: &str, share_bps: u32, source: &Source) -> Vec<Entry> {
        let note = RedemptionNote {
            operator_id: operator.into(),
            value: VALUE,
            share_bps,
        };
        let (share_source, share_statement) = match source {
            Source::Admin => (SOURCE_ADMIN, None),
            Source::Statement(d) => (SOURCE_STATEMENT, Some(d.clone())),
        };
        ledger::redeem(operator, VALUE, share_bps)
            .into_iter()
            .enumerate()
            .map(|(i, p)| Entry {
                seq: seq + i as u64,
                at: NOW,
                kind: p.kind,
                from: p.from,
                to: p.to,
                amount: p.amount,
                share_source: Some(share_source.into()),
                share_statement: share_statement.clone(),
                redemption: Some(note.clone()),
            })
            .collect()
    }

    fn by_statement(s: &Signed<ShareStatement>, share_bps: u32) -> Vec<Entry> {
        entries(
            1,
            &s.body.operator_id,
            share_bps,
            &Source::Statement(statement_digest(s)),
        )
    }

    fn audit_one(log: &[Entry], s: &Signed<ShareStatement>) -> ShareReport {
        let statements = BTreeMap::from([(statement_digest(s), s.clone())]);
        audit(log, &statements, &trusted(), CAP)
    }

    fn only_finding(log: &[Entry], s: &Signed<ShareStatement>) -> Finding {
        let r = audit_one(log, s);
        assert_eq!(r.checked_against_statements, 0, "{r:?}");
        assert_eq!(r.findings.len(), 1, "{r:?}");
        r.findings[0].clone()
    }

    #[test]
    fn a_redemption_at_its_statements_share_checks_out() {
        let s = signed(statement("op-1", 0.5));
        assert_eq!(s.body.share.share_bps, 3500);
        let log = by_statement(&s, 3500);
        assert_eq!(log.len(), 2);
        let r = audit_one(&log, &s);
        assert_eq!(
            r,
            ShareReport {
                checked_against_statements: 1,
                ..ShareReport::default()
            }
        );
        assert!(r.ok());
        assert_eq!(
            named_statements(&redemptions(&log).0),
            [statement_digest(&s)]
        );
    }

    #[test]
    fn the_administrators_number_is_counted_and_lowering_is_no_finding() {
        let s = signed(statement("op-1", 0.5));
        let mut log = entries(1, "op-1", 6000, &Source::Admin);
        log.extend(by_statement(&s, 2000).into_iter().map(|e| Entry {
            seq: e.seq + 2,
            ..e
        }));
        let r = audit_one(&log, &s);
        assert_eq!(
            (
                r.checked_against_statements,
                r.lowered_by_administrator,
                r.cleared_by_administrator
            ),
            (1, 1, 1)
        );
        assert!(r.ok(), "{r:?}");
    }

    #[test]
    fn a_share_of_zero_or_all_posts_one_leg_and_still_checks_out() {
        // An operator with nothing measured: a statement of 0, only the fund's leg.
        let s = signed(statement("op-1", 0.0));
        let log = by_statement(&s, 0);
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].to, Account::NetworkFund);
        assert_eq!(audit_one(&log, &s).checked_against_statements, 1);
        let log = entries(1, "op-1", 7000, &Source::Admin);
        assert_eq!(
            audit(&log, &BTreeMap::new(), &[], CAP).cleared_by_administrator,
            1
        );
    }

    #[test]
    fn each_way_a_clearing_can_be_wrong_is_found() {
        let s = signed(statement("op-1", 0.5));
        let digest = statement_digest(&s);
        // Paid more than the statement gives.
        assert_eq!(
            only_finding(&by_statement(&s, 3600), &s),
            Finding::AboveStatement {
                seq: 1,
                digest: digest.clone(),
                share_bps: 3600,
                allowed_bps: 3500
            }
        );
        // Above the network's cap, from either source.
        let log = entries(1, "op-1", 7001, &Source::Admin);
        assert_eq!(
            audit(&log, &BTreeMap::new(), &[], CAP).findings,
            [Finding::AboveNetworkCap {
                seq: 1,
                share_bps: 7001,
                cap_bps: CAP
            }]
        );
        // The operator's leg paid more than the split gives (the fund's leg unchanged).
        let mut log = by_statement(&s, 3500);
        log[0].amount.0 += 1;
        assert_eq!(only_finding(&log, &s), Finding::LegsDoNotFollow { seq: 1 });
        // A leg missing.
        let log = by_statement(&s, 3500)[..1].to_vec();
        assert_eq!(only_finding(&log, &s), Finding::LegsDoNotFollow { seq: 1 });
        // The legs disagree on where the share came from.
        let mut log = by_statement(&s, 3500);
        log[1].share_source = Some(SOURCE_ADMIN.into());
        log[1].share_statement = None;
        assert_eq!(only_finding(&log, &s), Finding::LegsDoNotFollow { seq: 1 });
        // An operator's leg paid to another operator than the note says.
        let mut log = by_statement(&s, 3500);
        log[0].to = Account::Operator("op-2".into());
        assert_eq!(only_finding(&log, &s), Finding::LegsDoNotFollow { seq: 1 });
        // A source nobody knows, or "statement" naming none.
        let mut log = by_statement(&s, 3500);
        for e in &mut log {
            e.share_statement = None;
        }
        assert_eq!(
            only_finding(&log, &s),
            Finding::UnknownSource {
                seq: 1,
                source: Some(SOURCE_STATEMENT.into())
            }
        );
        // The statement named is not served.
        let log = by_statement(&s, 3500);
        assert_eq!(
            audit(&log, &BTreeMap::new(), &trusted(), CAP).findings,
            [Finding::StatementMissing {
                seq: 1,
                digest: digest.clone()
            }]
        );
        // Another statement is served under its digest.
        let other = signed(statement("op-1", 0.6));
        let served = BTreeMap::from([(digest.clone(), other.clone())]);
        assert_eq!(
            audit(&log, &served, &trusted(), CAP).findings,
            [Finding::StatementNotNamed {
                seq: 1,
                digest: digest.clone(),
                served: statement_digest(&other)
            }]
        );
        // Signed by a directory the coordinator does not say it trusts.
        let statements = BTreeMap::from([(digest.clone(), s.clone())]);
        let stranger = [SigningKey::from_bytes(&[8; 32]).verifying_key()];
        assert_eq!(
            audit(&log, &statements, &stranger, CAP).findings,
            [Finding::StatementRefused {
                seq: 1,
                digest: digest.clone(),
                refusal: Refusal::UntrustedSigner
            }]
        );
        // Signed by another key claiming to be the trusted one.
        let mut forged = statement("op-1", 0.5)
            .sign(&SigningKey::from_bytes(&[8; 32]))
            .unwrap();
        forged.signer = directory().verifying_key();
        assert!(matches!(
            only_finding(&by_statement(&forged, 3500), &forged),
            Finding::StatementRefused {
                refusal: Refusal::BadSignature,
                ..
            }
        ));
        // Signed honestly, but a share its evaluation does not give under its own cap.
        let mut inflated = statement("op-1", 0.5);
        inflated.share.share_bps = 7000;
        let inflated = signed(inflated);
        assert!(matches!(
            only_finding(&by_statement(&inflated, 3500), &inflated),
            Finding::StatementRefused {
                refusal: Refusal::Arithmetic,
                ..
            }
        ));
        // Consistent under its own cap, but that is not the coordinator's: 10000 × 0.5.
        let uncapped = signed(ShareStatement::new(
            "dir",
            "op-1",
            statement("op-1", 0.5).evaluation,
            10_000,
            NOW,
        ));
        assert_eq!(
            only_finding(&by_statement(&uncapped, 5000), &uncapped),
            Finding::ShareDoesNotFollow {
                seq: 1,
                digest: statement_digest(&uncapped),
                stated_bps: 5000,
                derived_bps: 3500
            }
        );
        // About another operator.
        let theirs = signed(statement("op-2", 0.5));
        let log = entries(
            1,
            "op-1",
            3500,
            &Source::Statement(statement_digest(&theirs)),
        );
        assert_eq!(
            only_finding(&log, &theirs),
            Finding::OtherOperator {
                seq: 1,
                digest: statement_digest(&theirs),
                statement_operator: "op-2".into(),
                redeemed_at: "op-1".into()
            }
        );
        // Cleared after its period ended, or before it began.
        for at in [s.body.period_end, s.body.period_start - 1] {
            let log: Vec<_> = by_statement(&s, 3500)
                .into_iter()
                .map(|e| Entry { at, ..e })
                .collect();
            assert!(matches!(
                only_finding(&log, &s),
                Finding::OutsidePeriod { at: a, .. } if a == at
            ));
        }
    }

    #[test]
    fn entries_without_a_note_are_counted_not_judged() {
        let mut log = entries(1, "op-1", 6000, &Source::Admin);
        for e in &mut log {
            e.redemption = None;
        }
        let r = audit(&log, &BTreeMap::new(), &[], CAP);
        assert_eq!((r.unrecorded_entries, r.cleared_by_administrator), (2, 0));
        assert!(r.ok());
    }

    #[test]
    fn findings_read_as_sentences_and_travel_tagged() {
        let f = Finding::AboveStatement {
            seq: 4,
            digest: "ab".into(),
            share_bps: 3600,
            allowed_bps: 3500,
        };
        assert_eq!(
            f.to_string(),
            "entry 4: cleared at 3600 bps, above the 3500 statement ab allows"
        );
        let json = serde_json::to_value(&f).unwrap();
        assert_eq!(json["finding"], "above_statement");
        assert_eq!(serde_json::from_value::<Finding>(json).unwrap(), f);
    }
}

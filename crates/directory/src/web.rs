//! The directory's web pages: the relays it lists (`/`), a page per relay with its uptime
//! history as an SVG chart (`/relays/{fingerprint}`), and a page per operator
//! (`/operators/{id}`): its key, its verified identity or plainly that it is anonymous, its
//! relays and whether each counts, and its latest share statement factor by factor.
//!
//! Server-rendered HTML from the same figures the API serves (the handlers build the rows
//! from the listing, so the page and `/v1/relays` cannot disagree); readable on a phone (one
//! viewport meta, a table that scrolls sideways), no scripts, no external fonts, styles or
//! images — the handlers send a `Content-Security-Policy` that forbids them, so a page that
//! tried would be blocked rather than leak a visitor to a third party. Every value from an
//! operator is escaped.

use std::fmt::Write as _;

/// One relay as the page shows it.
#[derive(Clone, Debug)]
pub struct RelayRow {
    pub fingerprint: String,
    pub address: String,
    pub operator_id: String,
    /// The operator's name, if it published one.
    pub operator_name: Option<String>,
    /// A verified legal identity is on record for the operator.
    pub verified: bool,
    pub region: String,
    pub running: bool,
    pub flags: Vec<String>,
    /// Weighted fractional uptime in `[0, 1]`, if measured.
    pub uptime: Option<f64>,
    pub latency_p50_ms: Option<u32>,
    pub latency_p99_ms: Option<u32>,
    /// The operator's share from its latest statement, in basis points.
    pub share_bps: Option<u64>,
    /// Seconds since the relay was first seen.
    pub age_secs: u64,
    /// Counts toward weight (not beyond its subnet's limit).
    pub counted: bool,
}

/// One probe as the chart shows it.
#[derive(Clone, Copy, Debug)]
pub struct HistoryPoint {
    pub at: u64,
    pub up: bool,
    pub latency_ms: Option<u32>,
}

/// The policy the pages are served under: nothing but inline styles and the page itself.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const STYLE: &str = "body{font-family:system-ui,-apple-system,sans-serif;margin:0 auto;max-width:64rem;padding:0.75rem;color:#111;background:#fff}\
h1{font-size:1.3rem}h2{font-size:1.1rem}\
.scroll{overflow-x:auto}table{border-collapse:collapse;width:100%;font-size:0.9rem}\
th,td{text-align:left;padding:0.35rem 0.5rem;border-bottom:1px solid #ddd;white-space:nowrap}\
.up{color:#0a7d28;font-weight:600}.down{color:#b00020;font-weight:600}\
.flag{display:inline-block;border:1px solid #999;border-radius:0.3rem;padding:0 0.3rem;margin-right:0.2rem;font-size:0.8rem}\
code{font-size:0.8rem;word-break:break-all;white-space:normal}code.fp{white-space:nowrap}\
table.wrap td{white-space:normal}\
@media (prefers-color-scheme:dark){body{background:#111;color:#eee}th,td{border-color:#333}}";

/// HTML-escapes text (element content and double-quoted attributes).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>\n",
        esc(title)
    )
}

/// "3 d 4 h", "5 h 2 min", "40 s".
pub fn age(secs: u64) -> String {
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3_600, secs % 3_600 / 60);
    if d > 0 {
        format!("{d} d {h} h")
    } else if h > 0 {
        format!("{h} h {m} min")
    } else if m > 0 {
        format!("{m} min")
    } else {
        format!("{secs} s")
    }
}

fn percent(x: Option<f64>) -> String {
    match x {
        Some(x) if x.is_finite() => format!("{:.2}%", x.clamp(0.0, 1.0) * 100.0),
        _ => "–".into(),
    }
}

fn ms(x: Option<u32>) -> String {
    x.map_or_else(|| "–".into(), |v| format!("{v} ms"))
}

fn share(x: Option<u64>) -> String {
    x.map_or_else(|| "–".into(), bps)
}

fn operator_cell(r: &RelayRow) -> String {
    let name = r.operator_name.as_deref().unwrap_or(&r.operator_id);
    let mark = if r.verified { " ✓" } else { "" };
    format!(
        "<a href=\"/operators/{}\">{}</a>{mark}",
        esc(&url_segment(&r.operator_id)),
        esc(name)
    )
}

/// Percent-encodes a path segment (ids are restricted already; this keeps the page safe if
/// one is not).
fn url_segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn flags(r: &RelayRow) -> String {
    let mut out = String::new();
    for f in &r.flags {
        let _ = write!(out, "<span class=\"flag\">{}</span>", esc(f));
    }
    if !r.counted {
        out.push_str("<span class=\"flag\">over subnet limit</span>");
    }
    out
}

/// The list of relays. `rows` in the order to show (the handler sorts: running first).
pub fn index(directory: &str, rows: &[RelayRow], thresholds: &str) -> String {
    let running = rows.iter().filter(|r| r.running).count();
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>{} — relays</h1><p>{running} running of {} listed. Figures are this directory's \
measurements; <a href=\"/v1/relays\">the same as JSON</a>.</p>",
        esc(directory),
        rows.len()
    );
    b.push_str(
        "<div class=\"scroll\"><table id=\"relays\"><thead><tr><th>Relay</th><th>Status</th>\
<th>Uptime</th><th>Latency p50 / p99</th><th>Operator</th><th>Region</th><th>Flags</th>\
<th>Share</th><th>Age</th></tr></thead><tbody>",
    );
    for r in rows {
        let fp = esc(&r.fingerprint);
        let short: String = r.fingerprint.chars().take(10).collect();
        let _ = write!(
            b,
            "<tr data-fingerprint=\"{fp}\"><td><a href=\"/relays/{}\"><code class=\"fp\">{}…</code></a></td>\
<td class=\"{}\">{}</td><td>{}</td><td>{} / {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&url_segment(&r.fingerprint)),
            esc(&short),
            if r.running { "up" } else { "down" },
            if r.running { "running" } else { "down" },
            percent(r.uptime),
            ms(r.latency_p50_ms),
            ms(r.latency_p99_ms),
            operator_cell(r),
            esc(&r.region),
            flags(r),
            share(r.share_bps),
            age(r.age_secs),
        );
    }
    b.push_str("</tbody></table></div>");
    let _ = write!(
        b,
        "<h2>Flag thresholds</h2><p><code>{}</code></p>",
        esc(thresholds)
    );
    page(&format!("{directory} — relays"), &b)
}

/// A relay's page: its figures and its history.
pub fn relay(directory: &str, r: &RelayRow, history: &[HistoryPoint], now: u64) -> String {
    let mut b = String::new();
    let _ = write!(
        b,
        "<p><a href=\"/\">← all relays</a></p><h1>Relay <code>{}</code></h1>\
<p><code>{}</code></p><table id=\"relay\"><tbody>\
<tr><th>Status</th><td class=\"{}\">{}</td></tr>\
<tr><th>Uptime</th><td>{}</td></tr>\
<tr><th>Latency p50 / p99</th><td>{} / {}</td></tr>\
<tr><th>Operator</th><td>{}</td></tr>\
<tr><th>Region</th><td>{}</td></tr>\
<tr><th>Flags</th><td>{}</td></tr>\
<tr><th>Share</th><td>{}</td></tr>\
<tr><th>Age</th><td>{}</td></tr></tbody></table>",
        esc(&r.fingerprint),
        esc(&r.address),
        if r.running { "up" } else { "down" },
        if r.running { "running" } else { "down" },
        percent(r.uptime),
        ms(r.latency_p50_ms),
        ms(r.latency_p99_ms),
        operator_cell(r),
        esc(&r.region),
        flags(r),
        share(r.share_bps),
        age(r.age_secs),
    );
    b.push_str("<h2>Uptime, last 7 days</h2>");
    b.push_str(&uptime_chart(history, now, 7 * 86_400, 84));
    page(&format!("{directory} — relay {}", r.fingerprint), &b)
}

/// A verified identity attestation as the operator's page shows it.
#[derive(Clone, Debug)]
pub struct AttestationLine {
    /// The attester's key, hex.
    pub attester: String,
    /// The attester's name, if the directory's configuration names it.
    pub attester_name: Option<String>,
    pub legal_name: String,
    pub country: String,
    pub issued_at: u64,
}

/// An operator's latest share statement as its page shows it.
#[derive(Clone, Debug)]
pub struct StatementLine {
    pub period_start: u64,
    pub period_end: u64,
    pub evaluated_at: u64,
    pub share: smpx_core::rules::trust::Share,
    /// [`smpx_core::directory::statement_digest`]: what a coordinator's ledger records.
    pub digest: String,
}

/// Everything an operator's page shows.
#[derive(Clone, Debug)]
pub struct OperatorPage {
    pub operator_id: String,
    /// Hex.
    pub operator_key: String,
    pub first_seen: u64,
    /// Its attestations by keys the directory trusts, each signature checked again.
    pub attestations: Vec<AttestationLine>,
    /// Its published relays.
    pub relays: Vec<RelayRow>,
    pub statement: Option<StatementLine>,
}

pub use smpx_core::utc;

/// Basis points as a percentage: `6965` → `69.65%`.
fn bps(x: u64) -> String {
    format!("{}.{:02}%", x / 100, x % 100)
}

/// Whether a relay counts toward its operator's share, and how, in words.
fn weight(r: &RelayRow) -> &'static str {
    if !r.counted {
        "not counted: beyond the subnet limit"
    } else if r.uptime.is_none() {
        "not yet measured"
    } else if r.flags.iter().any(|f| f == "probation") {
        "counted at half: on probation"
    } else {
        "counted"
    }
}

/// An operator's page.
pub fn operator(directory: &str, o: &OperatorPage, now: u64) -> String {
    let id = esc(&o.operator_id);
    let mut b = String::new();
    let _ = write!(
        b,
        "<p><a href=\"/\">← all relays</a></p><h1>Operator {id}</h1>\
<table id=\"operator\" class=\"wrap\"><tbody><tr><th>Operator id</th><td>{id}</td></tr>\
<tr><th>Key</th><td><code id=\"operator-key\">{}</code></td></tr>\
<tr><th>First seen</th><td>{} ({} ago)</td></tr></tbody></table>",
        esc(&o.operator_key),
        utc(o.first_seen),
        age(now.saturating_sub(o.first_seen)),
    );
    b.push_str("<h2>Identity</h2>");
    if o.attestations.is_empty() {
        b.push_str(&format!(
            "<p id=\"identity\" class=\"anonymous\">anonymous — no verified identity. \
Its share's identity factor is {} (a verified operator's is {}).</p>",
            bps(smpx_core::rules::trust::ANONYMOUS_BPS),
            bps(smpx_core::rules::trust::ONE)
        ));
    } else {
        b.push_str("<div id=\"identity\" class=\"verified\">");
        for a in &o.attestations {
            let by = match &a.attester_name {
                Some(n) => format!("{} (key <code>{}</code>)", esc(n), esc(&a.attester)),
                None => format!("key <code>{}</code>", esc(&a.attester)),
            };
            let _ = write!(
                b,
                "<p class=\"attestation\">Verified: <strong class=\"legal-name\">{}</strong> \
(<span class=\"country\">{}</span>), attested by {by} on {}.</p>",
                esc(&a.legal_name),
                esc(&a.country),
                utc(a.issued_at),
            );
        }
        b.push_str("</div>");
    }
    let _ = write!(
        b,
        "<h2>Relays</h2><div class=\"scroll\"><table id=\"relays\"><thead><tr><th>Relay</th>\
<th>Status</th><th>Uptime</th><th>Flags</th><th>Counts toward the share</th></tr></thead><tbody>"
    );
    for r in &o.relays {
        let short: String = r.fingerprint.chars().take(10).collect();
        let _ = write!(
            b,
            "<tr data-fingerprint=\"{}\"><td><a href=\"/relays/{}\"><code class=\"fp\">{}…</code></a></td>\
<td class=\"{}\">{}</td><td>{}</td><td>{}</td><td class=\"weight\">{}</td></tr>",
            esc(&r.fingerprint),
            esc(&url_segment(&r.fingerprint)),
            esc(&short),
            if r.running { "up" } else { "down" },
            if r.running { "running" } else { "down" },
            percent(r.uptime),
            flags(r),
            weight(r),
        );
    }
    if o.relays.is_empty() {
        b.push_str("<tr><td colspan=\"5\">No relay published now.</td></tr>");
    }
    b.push_str("</tbody></table></div><h2>Share statement</h2>");
    match &o.statement {
        None => b.push_str(
            "<p id=\"statement\">No statement yet: none is signed before the operator's relays \
have been measured.</p>",
        ),
        Some(s) => {
            let href = format!(
                "/v1/statements/{}?operator={}",
                s.period_start,
                url_segment(&o.operator_id)
            );
            let _ = write!(
                b,
                "<p>For {} to {}, evaluated {}. The share is the product of the factors, \
under the cap.</p><table id=\"statement\" class=\"wrap\"><tbody>\
<tr><th>Identity</th><td data-bps=\"{}\">{}</td></tr>\
<tr><th>Tenure</th><td data-bps=\"{}\">{}</td></tr>\
<tr><th>Uptime</th><td data-bps=\"{}\">{}</td></tr>\
<tr><th>Cap</th><td data-bps=\"{}\">{}</td></tr>\
<tr><th>Share</th><td data-bps=\"{}\"><strong>{}</strong></td></tr>\
<tr><th>Digest</th><td><a href=\"{}\"><code id=\"digest\">{}</code></a></td></tr>\
</tbody></table>",
                utc(s.period_start),
                utc(s.period_end),
                utc(s.evaluated_at),
                s.share.identity_bps,
                bps(s.share.identity_bps),
                s.share.tenure_bps,
                bps(s.share.tenure_bps),
                s.share.uptime_bps,
                bps(s.share.uptime_bps),
                s.share.cap_bps,
                bps(s.share.cap_bps),
                s.share.share_bps,
                bps(s.share.share_bps),
                esc(&href),
                esc(&s.digest),
            );
        }
    }
    page(&format!("{directory} — operator {}", o.operator_id), &b)
}

/// An SVG bar chart of the fraction of probes that found the relay up, in `buckets` equal
/// spans of the `span` seconds before `now`; a span without probes is drawn as a grey
/// stub (unknown, not down).
pub fn uptime_chart(history: &[HistoryPoint], now: u64, span: u64, buckets: usize) -> String {
    let buckets = buckets.max(1);
    let start = now.saturating_sub(span);
    let width = span.div_ceil(buckets as u64).max(1);
    let mut up = vec![0u32; buckets];
    let mut all = vec![0u32; buckets];
    for p in history {
        if p.at < start || p.at > now {
            continue;
        }
        let i = (((p.at - start) / width) as usize).min(buckets - 1);
        all[i] += 1;
        if p.up {
            up[i] += 1;
        }
    }
    let (w, h) = (buckets * 6, 60usize);
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg id=\"uptime\" viewBox=\"0 0 {w} {}\" \
width=\"100%\" role=\"img\" aria-label=\"uptime per {} hours\" preserveAspectRatio=\"none\">",
        h + 14,
        width / 3_600
    );
    for i in 0..buckets {
        let x = i * 6;
        if all[i] == 0 {
            let _ = write!(
                s,
                "<rect x=\"{x}\" y=\"{}\" width=\"5\" height=\"2\" fill=\"#bbb\"><title>no probes</title></rect>",
                h - 2
            );
            continue;
        }
        let frac = f64::from(up[i]) / f64::from(all[i]);
        // A bucket with probes but none up still gets a visible (red) bar.
        let bar = ((frac * h as f64).round() as usize).max(h / 6);
        let colour = if frac >= 0.99 {
            "#0a7d28"
        } else if frac >= 0.5 {
            "#d08c00"
        } else {
            "#b00020"
        };
        let _ = write!(
            s,
            "<rect class=\"bucket\" data-up=\"{}\" data-probes=\"{}\" x=\"{x}\" y=\"{}\" width=\"5\" height=\"{bar}\" fill=\"{colour}\"><title>{:.0}% of {} probes</title></rect>",
            up[i],
            all[i],
            h - bar,
            frac * 100.0,
            all[i]
        );
    }
    let _ = write!(
        s,
        "<text x=\"0\" y=\"{}\" font-size=\"10\" fill=\"currentColor\">{} d ago</text>\
<text x=\"{w}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\" fill=\"currentColor\">now</text></svg>",
        h + 12,
        span / 86_400,
        h + 12
    );
    s
}

// ---- Serving the pages ----

use crate::view;
use crate::Directory;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use smpx_core::crypto::sign::VerifyingKey;
use smpx_core::directory::wire::{check_attestation, Attestation};
use smpx_core::directory::{statement_digest, ShareStatement};
use smpx_core::receipt::Signed;
use smpx_store::StoreError;
use std::collections::HashMap;
use std::sync::Arc;

/// How much history a relay's page charts.
pub const CHART_SPAN_SECS: u64 = 7 * 86_400;
/// At most this many probes are read for the chart (a probe every minute for a week).
const CHART_MAX_PROBES: u32 = 10_080;

fn html(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

fn failed(directory: &str, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "rendering a page");
    html(
        StatusCode::INTERNAL_SERVER_ERROR,
        page(
            directory,
            "<h1>Something failed</h1><p>The directory could not read its records; try again.</p>",
        ),
    )
}

/// The rows of every published relay, running first, then by uptime.
async fn rows(d: &Directory) -> Result<(view::Snapshot, Vec<RelayRow>), StoreError> {
    let snap = view::snapshot(d).await?;
    let mut verified: HashMap<String, bool> = HashMap::new();
    let mut shares: HashMap<String, Option<u64>> = HashMap::new();
    for r in &snap.relays {
        if verified.contains_key(&r.operator_id) {
            continue;
        }
        verified.insert(
            r.operator_id.clone(),
            view::verified_identity(d, &r.operator_id).await?,
        );
        let latest = d.store.statements(Some(&r.operator_id), None, 1).await?;
        let share = latest
            .first()
            .and_then(|t| serde_json::from_str::<Signed<ShareStatement>>(t).ok())
            .map(|s| s.body.share.share_bps);
        shares.insert(r.operator_id.clone(), share);
    }
    let mut out: Vec<RelayRow> = snap
        .relays
        .iter()
        .map(|r| RelayRow {
            fingerprint: r.fingerprint.clone(),
            address: r.address.clone(),
            operator_id: r.operator_id.clone(),
            operator_name: r.metadata.operator_name.clone(),
            verified: verified.get(&r.operator_id).copied().unwrap_or(false),
            region: r.region.clone(),
            running: r.status == "running",
            flags: r.flags.clone(),
            uptime: r.last_probe_at.map(|_| r.uptime),
            latency_p50_ms: r.latency_p50_ms,
            latency_p99_ms: r.latency_p99_ms,
            share_bps: shares.get(&r.operator_id).copied().flatten(),
            age_secs: r.age_secs,
            counted: r.counted,
        })
        .collect();
    out.sort_by(|a, b| {
        b.running
            .cmp(&a.running)
            .then(b.uptime.unwrap_or(0.0).total_cmp(&a.uptime.unwrap_or(0.0)))
            .then(a.fingerprint.cmp(&b.fingerprint))
    });
    Ok((snap, out))
}

fn thresholds_line(d: &Directory, snap: &view::Snapshot) -> String {
    let t = snap.thresholds_view(d);
    format!(
        "stable-mtbf={:.0}s fast-latency={}ms probation={}s running-fresh={}s subnet-limit={} pow-difficulty={}",
        t.stable_mtbf_secs,
        t.fast_latency_ms,
        t.probation_secs,
        t.running_fresh_secs,
        t.subnet_limit,
        t.pow_difficulty
    )
}

/// `GET /`: every published relay.
pub(crate) async fn index_page(State(d): State<Arc<Directory>>) -> Response {
    match rows(&d).await {
        Ok((snap, rows)) => html(
            StatusCode::OK,
            index(&d.config.name, &rows, &thresholds_line(&d, &snap)),
        ),
        Err(e) => failed(&d.config.name, e),
    }
}

/// `GET /relays/{fingerprint}`: one relay and its uptime over the last week.
pub(crate) async fn relay_page(
    State(d): State<Arc<Directory>>,
    UrlPath(fingerprint): UrlPath<String>,
) -> Response {
    let (snap, rows) = match rows(&d).await {
        Ok(x) => x,
        Err(e) => return failed(&d.config.name, e),
    };
    let Some(row) = rows.into_iter().find(|r| r.fingerprint == fingerprint) else {
        return html(
            StatusCode::NOT_FOUND,
            page(
                &d.config.name,
                "<p><a href=\"/\">← all relays</a></p><h1>No such relay</h1><p>This directory lists no relay with that fingerprint.</p>",
            ),
        );
    };
    let history = match d
        .store
        .observations(
            &fingerprint,
            snap.now.saturating_sub(CHART_SPAN_SECS),
            CHART_MAX_PROBES,
        )
        .await
    {
        Ok(h) => h,
        Err(e) => return failed(&d.config.name, e),
    };
    let points: Vec<HistoryPoint> = history
        .iter()
        .map(|o| HistoryPoint {
            at: o.at,
            up: o.up,
            latency_ms: o.latency_ms,
        })
        .collect();
    html(
        StatusCode::OK,
        relay(&d.config.name, &row, &points, snap.now),
    )
}

/// An operator's attestations by keys the directory trusts now, each signature checked
/// again against the operator's key (a stored row alone is not taken as verified).
fn verified_attestations(
    d: &Directory,
    operator_id: &str,
    key: &VerifyingKey,
    stored: &[smpx_store::directory::AttestationRow],
) -> Vec<AttestationLine> {
    stored
        .iter()
        .filter_map(|a| {
            let signed: Signed<Attestation> = serde_json::from_str(&a.attestation).ok()?;
            let Ok(body) = check_attestation(&signed, &d.config.trusted_attesters, key) else {
                // Its attester is no longer trusted (or the row was altered): not shown.
                tracing::debug!(operator = %operator_id, "an attestation on record does not verify now");
                return None;
            };
            Some(AttestationLine {
                attester: signed.signer.to_hex(),
                attester_name: d.config.attester_name(&signed.signer).map(str::to_owned),
                legal_name: body.legal_name.clone(),
                country: body.country.clone(),
                issued_at: body.issued_at,
            })
        })
        .collect()
}

/// What an operator's page shows, at the snapshot's instant; `None` for an unknown operator.
async fn operator_view(
    d: &Directory,
    operator_id: &str,
) -> Result<Option<(u64, OperatorPage)>, StoreError> {
    let Some(op) = d.store.operator(operator_id).await? else {
        return Ok(None);
    };
    let key = VerifyingKey::from_hex(&op.operator_key)
        .map_err(|e| StoreError::Corrupt(format!("operator {operator_id}'s key: {e}")))?;
    let stored = d.store.attestations(operator_id).await?;
    let attestations = verified_attestations(d, operator_id, &key, &stored);
    let (snap, rows) = rows(d).await?;
    let relays = rows
        .into_iter()
        .filter(|r| r.operator_id == operator_id)
        .collect();
    let statement = d
        .store
        .statements(Some(operator_id), None, 1)
        .await?
        .first()
        .and_then(|t| serde_json::from_str::<Signed<ShareStatement>>(t).ok())
        .map(|s| StatementLine {
            digest: statement_digest(&s),
            period_start: s.body.period_start,
            period_end: s.body.period_end,
            evaluated_at: s.body.evaluated_at,
            share: s.body.share,
        });
    Ok(Some((
        snap.now,
        OperatorPage {
            operator_id: op.operator_id,
            operator_key: op.operator_key,
            first_seen: op.first_seen,
            attestations,
            relays,
            statement,
        },
    )))
}

/// `GET /operators/{id}`: the operator's key, identity, relays and latest share statement.
pub(crate) async fn operator_page(
    State(d): State<Arc<Directory>>,
    UrlPath(operator_id): UrlPath<String>,
) -> Response {
    match operator_view(&d, &operator_id).await {
        Ok(Some((now, o))) => html(StatusCode::OK, operator(&d.config.name, &o, now)),
        Ok(None) => html(
            StatusCode::NOT_FOUND,
            page(
                &d.config.name,
                "<p><a href=\"/\">← all relays</a></p><h1>No such operator</h1><p>No operator with that id registered a relay here.</p>",
            ),
        ),
        Err(e) => failed(&d.config.name, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(fp: &str, running: bool) -> RelayRow {
        RelayRow {
            fingerprint: fp.into(),
            address: format!("smpx://{fp}@127.0.0.1:5223"),
            operator_id: "op-1".into(),
            operator_name: Some("<script>alert(1)</script>".into()),
            verified: true,
            region: "eu".into(),
            running,
            flags: vec!["Running".into(), "Fast".into()],
            uptime: Some(0.995),
            latency_p50_ms: Some(12),
            latency_p99_ms: Some(40),
            share_bps: Some(6965),
            age_secs: 3 * 86_400 + 4 * 3_600,
            counted: false,
        }
    }

    #[test]
    fn the_index_shows_each_relay_and_escapes_what_operators_wrote() {
        let html = index(
            "dir-1",
            &[row("AAAA", true), row("BBBB", false)],
            "stable-mtbf=5d",
        );
        assert!(html.contains("1 running of 2 listed"));
        assert!(html.contains("data-fingerprint=\"AAAA\""));
        assert!(html.contains("99.50%") && html.contains("12 ms / 40 ms"));
        assert!(html.contains("69.65%") && html.contains("3 d 4 h"));
        assert!(html.contains("over subnet limit"));
        assert!(!html.contains("<script"), "operator text is escaped");
        assert!(html.contains("&lt;script&gt;"));
        // Nothing fetched from elsewhere.
        assert!(!html.contains("src="));
        assert!(!html.contains("http://") && !html.contains("https://"));
    }

    #[test]
    fn the_chart_has_one_bar_per_bucket_with_probes() {
        let now = 1_000_000;
        let hist: Vec<HistoryPoint> = (0..48)
            .map(|i| HistoryPoint {
                at: now - 86_400 + i * 1_800,
                up: i % 4 != 0,
                latency_ms: Some(10),
            })
            .collect();
        let svg = uptime_chart(&hist, now, 86_400, 24);
        // Two probes per hour, 24 hours: 24 bars, each 2 probes; one in four down.
        assert_eq!(svg.matches("class=\"bucket\"").count(), 24);
        assert_eq!(svg.matches("data-probes=\"2\"").count(), 24);
        let ups: u32 = svg
            .split("data-up=\"")
            .skip(1)
            .map(|s| {
                s.split('"')
                    .next()
                    .unwrap_or("0")
                    .parse::<u32>()
                    .unwrap_or(0)
            })
            .sum();
        assert_eq!(ups, 36);
        // Nothing older than the span, nothing after now.
        let svg = uptime_chart(&hist, now + 86_400, 86_400, 24);
        assert_eq!(svg.matches("class=\"bucket\"").count(), 0);
        assert_eq!(svg.matches("no probes").count(), 24);
    }

    fn hostile_operator() -> OperatorPage {
        OperatorPage {
            operator_id: "<script>alert(1)</script>".into(),
            operator_key: "ab".repeat(32),
            first_seen: 1_800_000_000,
            attestations: Vec::new(),
            relays: vec![row("AAAA", true)],
            statement: None,
        }
    }

    #[test]
    fn an_operator_page_says_anonymous_and_escapes_what_operators_wrote() {
        let html = operator("dir-1", &hostile_operator(), 1_800_000_000 + 3_600);
        assert!(html.contains("anonymous — no verified identity"));
        assert!(html.contains("50.00%"));
        assert!(!html.contains("<script"), "operator text is escaped");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("href=\"/relays/AAAA\""));
        assert!(html.contains("not counted: beyond the subnet limit"));
        assert!(html.contains("No statement yet"));
        assert!(!html.contains("src="));
    }

    #[test]
    fn an_operator_page_shows_its_attestation_and_statement_factor_by_factor() {
        let mut o = hostile_operator();
        o.operator_id = "op-1".into();
        o.relays[0].counted = true;
        o.relays[0].flags = vec!["running".into(), "probation".into()];
        o.attestations.push(AttestationLine {
            attester: "cd".repeat(32),
            attester_name: Some("Registry <b>".into()),
            legal_name: "Example & Sons GmbH".into(),
            country: "DE".into(),
            issued_at: 1_800_000_000,
        });
        o.statement = Some(StatementLine {
            period_start: 1_799_971_200,
            period_end: 1_800_057_600,
            evaluated_at: 1_800_000_000,
            share: smpx_core::rules::trust::Share {
                identity_bps: 10_000,
                tenure_bps: 5_000,
                uptime_bps: 9_950,
                cap_bps: 7_000,
                share_bps: 3_482,
            },
            digest: "ef".repeat(32),
        });
        let html = operator("dir-1", &o, 1_800_000_000);
        assert!(!html.contains("anonymous"));
        assert!(html.contains("Example &amp; Sons GmbH"));
        assert!(html.contains("Registry &lt;b&gt; (key <code>cdcd"));
        assert!(html.contains("attested by") && html.contains("2027-01-15 08:00 UTC"));
        assert!(html.contains("counted at half: on probation"));
        assert!(html.contains("<td data-bps=\"3482\"><strong>34.82%</strong>"));
        assert!(html.contains("99.50%") && html.contains("70.00%"));
        assert!(html.contains("href=\"/v1/statements/1799971200?operator=op-1\""));
        assert!(html.contains(&"ef".repeat(32)));
    }

    #[test]
    fn times_read_as_utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc(1_800_000_000), "2027-01-15 08:00 UTC");
        assert_eq!(utc(4_107_542_399), "2100-02-28 23:59 UTC");
    }

    #[test]
    fn ages_read_as_people_say_them() {
        assert_eq!(age(40), "40 s");
        assert_eq!(age(600), "10 min");
        assert_eq!(age(3_600 * 5 + 120), "5 h 2 min");
        assert_eq!(age(86_400 * 2 + 3_600), "2 d 1 h");
    }
}

//! The ops endpoint: a small plain-HTTP server for the operator's monitoring, on its own
//! address (default `127.0.0.1:5224`; not authenticated — keep it private).
//!
//! * `GET /health` — `200` and `{"status":"serving","address":…,"queues":…,"connections":…}`
//!   while the relay serves; `503` with `"status":"shutting_down"` once shutdown began (load
//!   balancers stop sending clients), or `"status":"storage_error"` when the store does not
//!   answer.
//! * `GET /metrics` — Prometheus text exposition format 0.0.4: every counter of
//!   [`RelayStats`](smpx_relay_server::RelayStats) as `smpx_relay_<name>_total`, the store's
//!   current queues and messages and the open connections as gauges. Paid capacity shows as
//!   `smpx_relay_credits_earned_units_total` (1 credit = 1,000,000 units) and
//!   `smpx_relay_payments_refused_total`.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use smpx_relay_server::{Relay, StatsSnapshot};
use smpx_relay_store::{QueueStore, StoreStats};

/// The content type of `/metrics`.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the ops handlers read.
pub struct OpsState {
    pub relay: Relay,
    pub store: Arc<dyn QueueStore>,
    /// The relay's `smpx://` address.
    pub address: String,
    /// Unix time the relay started.
    pub started_at: u64,
}

/// The ops router: `/health` and `/metrics`.
pub fn router(state: Arc<OpsState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn health(State(s): State<Arc<OpsState>>) -> Response {
    let stats = s.relay.stats().snapshot();
    let store = s.store.stats().await;
    let (code, status) = match (&store, s.relay.is_shutting_down()) {
        (_, true) => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
        (Err(_), false) => (StatusCode::SERVICE_UNAVAILABLE, "storage_error"),
        (Ok(_), false) => (StatusCode::OK, "serving"),
    };
    let body = serde_json::json!({
        "status": status,
        "address": s.address,
        "queues": store.as_ref().ok().map(|st| st.queues),
        "connections": stats.connections_open,
    });
    (code, Json(body)).into_response()
}

async fn metrics(State(s): State<Arc<OpsState>>) -> Response {
    let stats = s.relay.stats().snapshot();
    // A failing store is reported as smpx_relay_store_up 0 (and no store gauges).
    let store = s.store.stats().await.ok();
    let body = render_metrics(&stats, store, s.relay.is_shutting_down(), s.started_at);
    ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], body).into_response()
}

/// The `/metrics` body.
pub fn render_metrics(
    stats: &StatsSnapshot,
    store: Option<StoreStats>,
    shutting_down: bool,
    started_at: u64,
) -> String {
    let mut out = String::with_capacity(4096);
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "# HELP smpx_relay_{name} {help}\n# TYPE smpx_relay_{name} {kind}\nsmpx_relay_{name} {value}\n"
        );
    };
    let counters: &[(&str, &str, u64)] = &[
        (
            "messages_in_total",
            "Messages accepted from senders.",
            stats.messages_in,
        ),
        (
            "messages_out_total",
            "Messages delivered to recipients (a redelivery counts again).",
            stats.messages_out,
        ),
        (
            "messages_over_quota_total",
            "Messages refused because the queue was full.",
            stats.messages_over_quota,
        ),
        (
            "messages_expired_total",
            "Messages removed by expiry.",
            stats.messages_expired,
        ),
        (
            "queues_created_total",
            "Queues created.",
            stats.queues_created,
        ),
        (
            "queues_deleted_total",
            "Queues deleted.",
            stats.queues_deleted,
        ),
        (
            "connections_total",
            "Connections accepted under the connection cap.",
            stats.connections_total,
        ),
        (
            "connections_refused_total",
            "Connections closed at once because the cap was reached.",
            stats.connections_refused,
        ),
        (
            "connections_timed_out_total",
            "Connections dropped for a slow or failed handshake, a slow block or idleness.",
            stats.connections_timed_out,
        ),
        (
            "auth_failures_total",
            "Commands answered with AUTH (bad signature or unknown queue).",
            stats.auth_failures,
        ),
        (
            "signatures_verified_total",
            "Ed25519 signatures verified to authorise commands (unknown ids against a dummy key).",
            stats.signatures_verified,
        ),
        (
            "malformed_total",
            "Blocks or transmissions that did not parse.",
            stats.malformed,
        ),
        (
            "subscriptions_ended_total",
            "Subscriptions moved to another connection.",
            stats.subscriptions_ended,
        ),
        (
            "forwarded_out_total",
            "Private routing: commands this relay forwarded as a proxy.",
            stats.forwarded_out,
        ),
        (
            "forwarded_in_total",
            "Private routing: forwarded commands this relay ran as a destination.",
            stats.forwarded_in,
        ),
        (
            "forward_failures_total",
            "Private routing: unreachable destinations and refused forwarded commands.",
            stats.forward_failures,
        ),
        (
            "destinations_refused_total",
            "Private routing: PRXYs refused before dialing (loopback, private or other non-public destination).",
            stats.destinations_refused,
        ),
        (
            "limited_total",
            "Commands refused with ERR LIMIT (queues created, bytes held per address, PRXY rate).",
            stats.limited,
        ),
        (
            "credits_earned_units_total",
            "Credit units (1 credit = 1,000,000) the operator's registry took for capacity paid here.",
            stats.credits_earned_units,
        ),
        (
            "payments_refused_total",
            "Payments the operator's registry refused (what they provisioned was cancelled).",
            stats.payments_refused,
        ),
    ];
    for &(name, help, value) in counters {
        metric(name, "counter", help, value);
    }
    metric(
        "connections_open",
        "gauge",
        "Connections open now.",
        stats.connections_open,
    );
    metric(
        "shutting_down",
        "gauge",
        "1 once graceful shutdown began.",
        u64::from(shutting_down),
    );
    metric(
        "start_time_seconds",
        "gauge",
        "Unix time the relay started.",
        started_at,
    );
    metric(
        "store_up",
        "gauge",
        "1 when the store answered this scrape.",
        u64::from(store.is_some()),
    );
    if let Some(st) = store {
        metric("queues", "gauge", "Queues stored now.", st.queues);
        metric(
            "messages",
            "gauge",
            "Undelivered messages stored now (including quota markers).",
            st.messages,
        );
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A strict parser for the subset of the text format we emit: HELP and TYPE before each
    /// sample, names `[a-zA-Z_:][a-zA-Z0-9_:]*`, counters named `_total`, values numbers,
    /// no duplicate series. Returns name → value.
    pub(crate) fn parse_exposition(text: &str) -> Result<HashMap<String, f64>, String> {
        let valid_name = |n: &str| {
            let mut c = n.chars();
            matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_' || ch == ':')
                && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':')
        };
        let mut help = HashMap::new();
        let mut types: HashMap<String, String> = HashMap::new();
        let mut values = HashMap::new();
        if !text.ends_with('\n') {
            return Err("no final newline".into());
        }
        for (i, line) in text.lines().enumerate() {
            let err = |m: &str| format!("line {}: {m}: {line:?}", i + 1);
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, doc) = rest
                    .split_once(' ')
                    .ok_or_else(|| err("HELP without text"))?;
                if !valid_name(name) || doc.is_empty() || help.insert(name.to_owned(), ()).is_some()
                {
                    return Err(err("bad or repeated HELP"));
                }
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest
                    .split_once(' ')
                    .ok_or_else(|| err("TYPE without kind"))?;
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                    return Err(err("unknown type"));
                }
                if kind == "counter" && !name.ends_with("_total") {
                    return Err(err("counter not named _total"));
                }
                if types.insert(name.to_owned(), kind.to_owned()).is_some() {
                    return Err(err("repeated TYPE"));
                }
            } else if line.starts_with('#') || line.is_empty() {
                return Err(err("unexpected comment or blank line"));
            } else {
                let (name, value) = line.split_once(' ').ok_or_else(|| err("no value"))?;
                if !valid_name(name) {
                    return Err(err("bad metric name"));
                }
                if !types.contains_key(name) || !help.contains_key(name) {
                    return Err(err("sample before its HELP and TYPE"));
                }
                let v: f64 = value.parse().map_err(|_| err("value is not a number"))?;
                if values.insert(name.to_owned(), v).is_some() {
                    return Err(err("repeated sample"));
                }
            }
        }
        Ok(values)
    }

    #[test]
    fn metrics_are_valid_exposition_text() {
        let stats = StatsSnapshot {
            messages_in: 7,
            connections_open: 2,
            auth_failures: 1,
            credits_earned_units: 2_500_000,
            ..Default::default()
        };
        let text = render_metrics(
            &stats,
            Some(StoreStats {
                queues: 3,
                messages: 4,
            }),
            false,
            1_700_000_000,
        );
        let m = parse_exposition(&text).unwrap();
        assert_eq!(m["smpx_relay_messages_in_total"], 7.0);
        assert_eq!(m["smpx_relay_connections_open"], 2.0);
        assert_eq!(m["smpx_relay_auth_failures_total"], 1.0);
        assert_eq!(m["smpx_relay_queues"], 3.0);
        assert_eq!(m["smpx_relay_messages"], 4.0);
        assert_eq!(m["smpx_relay_credits_earned_units_total"], 2_500_000.0);
        assert_eq!(m["smpx_relay_payments_refused_total"], 0.0);
        assert_eq!(m["smpx_relay_store_up"], 1.0);
        assert!(m.len() >= 20, "{} metrics", m.len());

        let text = render_metrics(&stats, None, true, 0);
        let m = parse_exposition(&text).unwrap();
        assert_eq!(m["smpx_relay_store_up"], 0.0);
        assert_eq!(m["smpx_relay_shutting_down"], 1.0);
        assert!(!m.contains_key("smpx_relay_queues"));
    }

    #[test]
    fn the_parser_refuses_what_prometheus_would() {
        assert!(parse_exposition("x 1\n").is_err());
        assert!(parse_exposition("# HELP x h\n# TYPE x counter\nx 1\n").is_err());
        assert!(parse_exposition("# HELP x h\n# TYPE x gauge\nx one\n").is_err());
        assert!(parse_exposition("# HELP x h\n# TYPE x gauge\nx 1").is_err());
        assert!(parse_exposition("# HELP x h\n# TYPE x gauge\nx 1\n").is_ok());
    }
}

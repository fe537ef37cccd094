//! Prometheus metrics for a service: one small registry of counters and fixed-bucket
//! histograms, rendered in the text exposition format 0.0.4, and the middleware that counts
//! every request.
//!
//! Hand-written rather than a metrics crate: a service needs a few counters and one
//! histogram, and owning the renderer keeps the label rules in one place. **Labels never
//! carry request data**: the route label is the *matched route template*
//! (`/v1/vouchers/{commitment}`, never the commitment), unrouted requests are `unmatched`,
//! the method is one of the standard ones or `other`, and every other label value a service
//! passes is a constant of its own (a protocol version, an error code).
//!
//! What every service gets from [`Metrics::new`] and [`serve_metered`](crate::serve_metered):
//!
//! * `smpx_http_requests_total{route,method,status}`
//! * `smpx_http_request_duration_seconds{route}` (histogram, [`BUCKETS`])
//! * `smpx_errors_total{code}` — the stable code of every typed error answered, including
//!   the limits `serve` enforces before a handler (`uri_too_long`, `body_too_large`, …).
//!
//! A service adds its own counters with [`Metrics::counter`] (so they read 0 before the first
//! event, which is what a rate over a scrape needs) and moves them with [`Metrics::inc`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use smpx_core::ErrorCode;

/// The content type of `/metrics`.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (seconds) of the request-duration histogram: 1 ms to 10 s, the span between
/// a cached read and a proof verification under load.
pub const BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

const REQUESTS: &str = "smpx_http_requests_total";
const DURATION: &str = "smpx_http_request_duration_seconds";
const ERRORS: &str = "smpx_errors_total";

/// Label names and values of one series, in the order given.
type Labels = Vec<(&'static str, String)>;

#[derive(Default)]
struct Histogram {
    /// Per bucket of [`BUCKETS`], not cumulative (made cumulative when rendered).
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum_seconds: f64,
}

enum Series {
    Counter(BTreeMap<Labels, u64>),
    Histogram(BTreeMap<Labels, Histogram>),
}

struct Family {
    help: &'static str,
    series: Series,
}

/// A service's metrics. Cheap to clone (one shared registry).
#[derive(Clone)]
pub struct Metrics {
    families: Arc<Mutex<BTreeMap<&'static str, Family>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with the HTTP families every service has.
    pub fn new() -> Metrics {
        let m = Metrics {
            families: Arc::new(Mutex::new(BTreeMap::new())),
        };
        m.counter(
            REQUESTS,
            "HTTP requests answered, by matched route template, method and status.",
        );
        m.counter(
            ERRORS,
            "Typed errors answered, by their stable code (smpx_core::ErrorCode).",
        );
        if let Ok(mut f) = m.families.lock() {
            f.insert(
                DURATION,
                Family {
                    help: "Time from the request reaching the service to its answer, by matched route template.",
                    series: Series::Histogram(BTreeMap::new()),
                },
            );
        }
        m
    }

    /// Registers the counter family `name` (which must end in `_total`). Registered
    /// families render even before their first increment: without labels as `name 0`.
    pub fn counter(&self, name: &'static str, help: &'static str) {
        debug_assert!(
            name.ends_with("_total"),
            "counter {name} must end in _total"
        );
        if let Ok(mut f) = self.families.lock() {
            f.entry(name).or_insert_with(|| Family {
                help,
                series: Series::Counter(BTreeMap::new()),
            });
        }
    }

    /// Registers a labelled series of a counter at 0 (so it renders before it moves).
    pub fn counter_series(&self, name: &'static str, labels: &[(&'static str, &str)]) {
        self.inc(name, labels, 0);
    }

    /// Adds `by` to the series of counter `name` with `labels`. Label values must be the
    /// service's own constants, never request data. An unregistered name is ignored (and a
    /// debug build says so).
    pub fn inc(&self, name: &'static str, labels: &[(&'static str, &str)], by: u64) {
        let Ok(mut families) = self.families.lock() else {
            return;
        };
        match families.get_mut(name).map(|f| &mut f.series) {
            Some(Series::Counter(series)) => {
                let key = labels.iter().map(|&(k, v)| (k, v.to_owned())).collect();
                let v = series.entry(key).or_insert(0);
                *v = v.saturating_add(by);
            }
            _ => debug_assert!(false, "metric {name} is not a registered counter"),
        }
    }

    /// The current value of a counter series (0 if it never moved); for tests and checks.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let Ok(families) = self.families.lock() else {
            return 0;
        };
        match families.get(name).map(|f| &f.series) {
            Some(Series::Counter(series)) => series
                .iter()
                .find(|(k, _)| {
                    k.len() == labels.len()
                        && k.iter()
                            .zip(labels)
                            .all(|((a, b), (c, d))| a == c && b == d)
                })
                .map_or(0, |(_, v)| *v),
            _ => 0,
        }
    }

    fn observe(&self, route: &str, method: &Method, status: u16, seconds: f64) {
        let method = method_label(method);
        let Ok(mut families) = self.families.lock() else {
            return;
        };
        if let Some(Series::Counter(s)) = families.get_mut(REQUESTS).map(|f| &mut f.series) {
            let key = vec![
                ("route", route.to_owned()),
                ("method", method.to_owned()),
                ("status", status.to_string()),
            ];
            *s.entry(key).or_insert(0) += 1;
        }
        if let Some(Series::Histogram(s)) = families.get_mut(DURATION).map(|f| &mut f.series) {
            let h = s.entry(vec![("route", route.to_owned())]).or_default();
            if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
                h.buckets[i] += 1;
            }
            h.count += 1;
            h.sum_seconds += seconds;
        }
    }

    /// The registry in the text exposition format 0.0.4: `# HELP` and `# TYPE` before each
    /// family, series sorted, histograms with cumulative `le` buckets, `+Inf`, `_sum` and
    /// `_count`.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let Ok(families) = self.families.lock() else {
            return out;
        };
        // Writing to a String cannot fail.
        for (name, family) in families.iter() {
            let kind = match family.series {
                Series::Counter(_) => "counter",
                Series::Histogram(_) => "histogram",
            };
            let _ = writeln!(out, "# HELP {name} {}", escape_help(family.help));
            let _ = writeln!(out, "# TYPE {name} {kind}");
            match &family.series {
                Series::Counter(series) if series.is_empty() => {
                    let _ = writeln!(out, "{name} 0");
                }
                Series::Counter(series) => {
                    for (labels, v) in series {
                        let _ = writeln!(out, "{name}{} {v}", render_labels(labels, None));
                    }
                }
                Series::Histogram(series) => {
                    for (labels, h) in series {
                        let mut cumulative = 0;
                        for (bound, n) in BUCKETS.iter().zip(h.buckets) {
                            cumulative += n;
                            let le = bound.to_string();
                            let _ = writeln!(
                                out,
                                "{name}_bucket{} {cumulative}",
                                render_labels(labels, Some(&le))
                            );
                        }
                        let _ = writeln!(
                            out,
                            "{name}_bucket{} {}",
                            render_labels(labels, Some("+Inf")),
                            h.count
                        );
                        let l = render_labels(labels, None);
                        let _ = writeln!(out, "{name}_sum{l} {}", h.sum_seconds);
                        let _ = writeln!(out, "{name}_count{l} {}", h.count);
                    }
                }
            }
        }
        out
    }

    /// `router` with every request counted and timed (by its matched route template) and
    /// every typed error counted by code. [`serve_metered`](crate::serve_metered) applies it
    /// outside the request limits, so their refusals are counted too.
    pub fn layer<S: Clone + Send + Sync + 'static>(&self, router: Router<S>) -> Router<S> {
        router.layer(axum::middleware::from_fn_with_state(self.clone(), record))
    }

    /// The `GET /metrics` route, to merge into a service's router (unauthenticated, like
    /// `/v1/health`: it holds counts, never request data).
    pub fn route<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let m = self.clone();
        Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let m = m.clone();
                async move { ([(header::CONTENT_TYPE, CONTENT_TYPE)], m.render()).into_response() }
            }),
        )
    }
}

async fn record(State(m): State<Metrics>, req: Request, next: Next) -> Response {
    // The template, not the path: `/v1/issuers/{id}`, never the id asked for.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().clone();
    let started = Instant::now();
    let resp = next.run(req).await;
    m.observe(
        &route,
        &method,
        resp.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    if let Some(code) = resp.extensions().get::<ErrorCode>() {
        m.inc(ERRORS, &[("code", code.as_str())], 1);
    }
    resp
}

/// A standard method's name; anything else (an extension method is request data) `other`.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn render_labels(labels: &Labels, le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_value(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_zero_before_they_move_and_sum_after() {
        let m = Metrics::new();
        m.counter("smpx_things_total", "Things.");
        assert!(m.render().contains("\nsmpx_things_total 0\n"));
        m.counter("smpx_kinds_total", "Kinds.");
        m.counter_series("smpx_kinds_total", &[("version", "v0.1")]);
        m.inc("smpx_kinds_total", &[("version", "v0.2")], 2);
        m.inc("smpx_kinds_total", &[("version", "v0.2")], 3);
        let text = m.render();
        assert!(
            text.contains("smpx_kinds_total{version=\"v0.1\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("smpx_kinds_total{version=\"v0.2\"} 5\n"),
            "{text}"
        );
        assert_eq!(m.get("smpx_kinds_total", &[("version", "v0.2")]), 5);
        assert_eq!(m.get("smpx_kinds_total", &[("version", "v0.3")]), 0);
    }

    #[test]
    fn histograms_are_cumulative_with_inf_sum_and_count() {
        let m = Metrics::new();
        m.observe("/v1/x/{id}", &Method::GET, 200, 0.003);
        m.observe("/v1/x/{id}", &Method::GET, 200, 0.2);
        m.observe("/v1/x/{id}", &Method::GET, 404, 20.0);
        let text = m.render();
        let b = |le: &str| {
            let prefix = format!(
                "smpx_http_request_duration_seconds_bucket{{route=\"/v1/x/{{id}}\",le=\"{le}\"}} "
            );
            text.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .unwrap()
                .parse::<u64>()
                .unwrap()
        };
        assert_eq!(
            (b("0.001"), b("0.005"), b("0.25"), b("10"), b("+Inf")),
            (0, 1, 2, 2, 3)
        );
        assert!(text.contains("smpx_http_request_duration_seconds_count{route=\"/v1/x/{id}\"} 3\n"));
        assert_eq!(
            m.get(
                REQUESTS,
                &[
                    ("route", "/v1/x/{id}"),
                    ("method", "GET"),
                    ("status", "200")
                ]
            ),
            2
        );
    }

    #[test]
    fn label_values_are_escaped_and_odd_methods_are_other() {
        let m = Metrics::new();
        m.counter("smpx_q_total", "Q.");
        m.inc("smpx_q_total", &[("v", "a\"b\\c\nd")], 1);
        assert!(m
            .render()
            .contains("smpx_q_total{v=\"a\\\"b\\\\c\\nd\"} 1\n"));
        assert_eq!(
            method_label(&Method::from_bytes(b"SECRET").unwrap()),
            "other"
        );
    }
}

//! The web page in a real browser: headless Chromium (`smpx_testkit::browser`) loads `/` and
//! a relay's page from a running directory; the rows are checked against `/v1/relays`, and
//! screenshots at a phone's width are saved beside the test binaries.

use crate::support::{Dir, Relay};
use serde_json::Value;
use smpx_testkit::browser::{Browser, PHONE};
use smpx_testkit::Backend;

const HOUR: u64 = 3600;

/// The `<tr>` of one relay in the page's DOM.
fn row<'a>(dom: &'a str, fingerprint: &str) -> &'a str {
    let start = dom
        .find(&format!("<tr data-fingerprint=\"{fingerprint}\""))
        .unwrap_or_else(|| panic!("no row for {fingerprint} in the page"));
    let end = dom[start..].find("</tr>").expect("row not closed") + start;
    &dom[start..end]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_what_the_api_says_in_a_real_browser() {
    let d = Dir::start(Backend::Sqlite).await;
    let relays = [
        Relay::new("op-a", 1, "10.1.0.1"),
        Relay::new("op-a", 1, "10.2.0.1"),
        Relay::new("op-b", 2, "10.3.0.1"),
    ];
    for r in &relays {
        assert_eq!(d.register(r).await.0, 200);
    }
    // A day probed hourly; the third relay down for the last quarter of it.
    for k in 0..24 {
        d.prober.set(&relays[2].fingerprint(), k < 18, 35);
        d.prober.set(&relays[0].fingerprint(), true, 12);
        d.probe_round().await;
        d.clock.advance(HOUR);
    }
    // And once more now, so the relays up are Running.
    d.prober.set(&relays[2].fingerprint(), false, 35);
    d.probe_round().await;
    smpx_directory::view::issue_statements(&d.state)
        .await
        .unwrap();

    let browser = Browser::find().unwrap();
    let dom = browser.dom(&format!("{}/", d.url)).await.unwrap();
    let (s, api) = d.get("/v1/relays").await;
    assert_eq!(s, 200);
    let api = api.as_array().unwrap();
    assert_eq!(api.len(), 3);
    assert_eq!(dom.matches("<tr data-fingerprint=").count(), 3);
    let running = api.iter().filter(|r| r["status"] == "running").count();
    assert_eq!(running, 2, "{api:?}");
    assert!(
        dom.contains(&format!("{running} running of 3 listed")),
        "{dom}"
    );
    for r in api {
        let fp = r["fingerprint"].as_str().unwrap();
        let tr = row(&dom, fp);
        let status = r["status"].as_str().unwrap();
        assert!(
            tr.contains(&format!(">{status}<")),
            "{fp}: the page does not say {status}: {tr}"
        );
        let uptime = format!("{:.2}%", r["uptime"].as_f64().unwrap() * 100.0);
        assert!(tr.contains(&uptime), "{fp}: uptime {uptime} not in {tr}");
        if let Some(p50) = r["latency_p50_ms"].as_u64() {
            assert!(
                tr.contains(&format!("{p50} ms")),
                "{fp}: p50 {p50} not in {tr}"
            );
        }
        assert!(tr.contains(r["operator_id"].as_str().unwrap()));
        assert!(tr.contains(r["region"].as_str().unwrap()));
        for f in r["flags"].as_array().unwrap() {
            assert!(
                tr.contains(&format!(">{}<", f.as_str().unwrap())),
                "{fp}: flag {f}"
            );
        }
    }
    // The down relay is shown down, and its operator's share as the statement says.
    let down = row(&dom, &relays[2].fingerprint());
    assert!(down.contains(">down<"), "{down}");
    let (_, st) = d.get("/v1/statements?operator=op-b").await;
    let statement: Value = serde_json::from_str(st["payload"].as_str().unwrap()).unwrap();
    let bps = statement["share"]["share_bps"].as_u64().unwrap();
    assert!(
        down.contains(&format!("{}.{:02}%", bps / 100, bps % 100)),
        "share {bps} bps not in {down}"
    );

    // A relay's page: its uptime chart has a bar for each hour it was probed, and the
    // probes it counts are the history's.
    let fp = relays[2].fingerprint();
    let page = browser
        .dom(&format!("{}/relays/{fp}", d.url))
        .await
        .unwrap();
    assert!(page.contains("<svg id=\"uptime\""), "{page}");
    let probes: u32 = page
        .split("data-probes=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap().parse::<u32>().unwrap())
        .sum();
    let ups: u32 = page
        .split("data-up=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap().parse::<u32>().unwrap())
        .sum();
    assert_eq!((probes, ups), (25, 18));
    // An unknown relay is a 404 page, not an error body.
    let (status, _) = d.get("/relays/no-such-relay").await;
    assert_eq!(status, 404);

    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    browser
        .screenshot(
            &format!("{}/", d.url),
            &out.join("directory-index.png"),
            PHONE,
        )
        .await
        .unwrap();
    browser
        .screenshot(
            &format!("{}/relays/{fp}", d.url),
            &out.join("directory-relay.png"),
            PHONE,
        )
        .await
        .unwrap();
}

/// The pages forbid scripts, other origins' resources and framing.
#[tokio::test]
async fn pages_are_served_with_a_policy_that_forbids_scripts() {
    let d = Dir::start(Backend::Sqlite).await;
    let resp = d.http.get(format!("{}/", d.url)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers();
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && !csp.contains("script-src"));
    assert_eq!(h["x-content-type-options"], "nosniff");
    let body = resp.text().await.unwrap();
    assert!(body.contains("0 running of 0 listed"));
    assert!(!body.contains("<script"));
}

/// `GET /metrics` counts what the directory did: registrations, probes by result, statements,
/// and requests by route template (never a fingerprint).
#[tokio::test]
async fn metrics_count_registrations_probes_and_statements() {
    let d = Dir::start(Backend::Sqlite).await;
    let relays = [
        Relay::new("op-a", 1, "10.1.0.1"),
        Relay::new("op-b", 2, "10.3.0.1"),
    ];
    for r in &relays {
        assert_eq!(d.register(r).await.0, 200);
    }
    d.prober.set(&relays[1].fingerprint(), false, 0);
    d.probe_round().await;
    d.probe_round().await;
    smpx_directory::view::issue_statements(&d.state)
        .await
        .unwrap();
    let fp = relays[0].fingerprint();
    assert_eq!(d.get(&format!("/v1/relays/{fp}")).await.0, 200);
    let text = d
        .http
        .get(format!("{}/metrics", d.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |series: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    assert_eq!(value("smpx_directory_registrations_total"), 2);
    assert_eq!(value("smpx_directory_probes_total{result=\"up\"}"), 2);
    assert_eq!(value("smpx_directory_probes_total{result=\"down\"}"), 2);
    assert_eq!(value("smpx_directory_statements_total"), 2);
    assert!(
        text.contains("route=\"/v1/relays/{fingerprint}\""),
        "{text}"
    );
    assert!(!text.contains(&fp), "a fingerprint in a label");
}

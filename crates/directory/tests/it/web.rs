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

/// An operator's page in a real browser: its relays are the API's, each marked counted or
/// not; it says "anonymous" until an attestation by a trusted key is handed in, then names
/// the legal identity and the attester; its statement's factors and digest are the signed
/// statement's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_page_shows_its_relays_identity_and_statement_in_a_real_browser() {
    let attester = smpx_core::crypto::sign::SigningKey::from_bytes(&[0xa7; 32]);
    let config = smpx_directory::DirectoryConfig {
        attester_names: [(
            attester.verifying_key().to_hex(),
            "Example Registry".to_string(),
        )]
        .into(),
        ..crate::support::test_config(&attester)
    };
    let d = Dir::start_with(Backend::Sqlite, config, attester).await;
    // Three relays in one /24: the third is beyond the subnet limit (2).
    let relays = [
        Relay::new("op-a", 1, "10.1.0.1"),
        Relay::new("op-a", 1, "10.1.0.2"),
        Relay::new("op-a", 1, "10.1.0.3"),
    ];
    for r in &relays {
        assert_eq!(d.register(r).await.0, 200);
        d.clock.advance(60);
    }
    for k in 0..6 {
        d.prober.set(&relays[1].fingerprint(), k % 3 != 0, 30);
        d.probe_round().await;
        d.clock.advance(HOUR);
    }
    d.probe_round().await;
    smpx_directory::view::issue_statements(&d.state)
        .await
        .unwrap();

    let browser = Browser::find().unwrap();
    let url = format!("{}/operators/op-a", d.url);
    let dom = browser.dom(&url).await.unwrap();
    let (s, api) = d.get("/v1/operators/op-a").await;
    assert_eq!(s, 200);
    assert!(dom.contains(api["operator_key"].as_str().unwrap()), "{dom}");
    assert!(
        dom.contains("anonymous — no verified identity"),
        "before any attestation: {dom}"
    );
    let fps = api["relays"].as_array().unwrap();
    assert_eq!(fps.len(), 3);
    assert_eq!(dom.matches("<tr data-fingerprint=").count(), 3);
    let (_, listed) = d.get("/v1/relays?operator=op-a").await;
    for r in listed.as_array().unwrap() {
        let fp = r["fingerprint"].as_str().unwrap();
        assert!(fps.iter().any(|f| f == fp));
        let tr = row(&dom, fp);
        assert!(tr.contains(&format!("href=\"/relays/{fp}\"")), "{tr}");
        let status = r["status"].as_str().unwrap();
        assert!(tr.contains(&format!(">{status}<")), "{fp}: {status}: {tr}");
        let uptime = format!("{:.2}%", r["uptime"].as_f64().unwrap() * 100.0);
        assert!(tr.contains(&uptime), "{fp}: uptime {uptime} not in {tr}");
        let weight = if r["counted"] == false {
            "not counted: beyond the subnet limit"
        } else {
            "counted at half: on probation"
        };
        assert!(tr.contains(weight), "{fp}: {weight} not in {tr}");
    }
    assert!(row(&dom, &relays[2].fingerprint()).contains("beyond the subnet limit"));
    // The statement: each factor as signed, and its digest linking to the JSON.
    let signed: smpx_core::receipt::Signed<smpx_core::directory::ShareStatement> =
        serde_json::from_value(api["statement"].clone()).unwrap();
    let share = signed.body.share;
    for bps in [
        share.identity_bps,
        share.tenure_bps,
        share.uptime_bps,
        share.cap_bps,
        share.share_bps,
    ] {
        assert!(
            dom.contains(&format!("data-bps=\"{bps}\"")),
            "{bps} not in {dom}"
        );
    }
    let digest = smpx_core::directory::statement_digest(&signed);
    let link = format!("/v1/statements/{}?operator=op-a", signed.body.period_start);
    assert!(
        dom.contains(&format!(
            "<a href=\"{link}\"><code id=\"digest\">{digest}</code>"
        )),
        "{dom}"
    );
    let (s, linked) = d.get(&link).await;
    assert_eq!(s, 200);
    assert_eq!(linked[0], api["statement"]);
    // The index and the relay page link here.
    let index = browser.dom(&format!("{}/", d.url)).await.unwrap();
    assert!(index.contains("href=\"/operators/op-a\""), "{index}");
    let fp = relays[0].fingerprint();
    let relay_page = browser
        .dom(&format!("{}/relays/{fp}", d.url))
        .await
        .unwrap();
    assert!(relay_page.contains("href=\"/operators/op-a\""));

    // Attested: the page names the identity, the attester and its key.
    let a = smpx_core::directory::wire::attest(
        &d.attester,
        relays[0].operator.verifying_key(),
        "Example GmbH",
        "DE",
        d.clock_now(),
    )
    .unwrap();
    let (s, v) = d
        .post(
            "/v1/operators/op-a/attestations",
            &serde_json::to_value(&a).unwrap(),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let dom = browser.dom(&url).await.unwrap();
    assert!(!dom.contains("anonymous"), "{dom}");
    assert!(dom.contains("<strong class=\"legal-name\">Example GmbH</strong>"));
    assert!(dom.contains(&format!(
        "attested by Example Registry (key <code>{}</code>) on {}",
        d.attester.verifying_key().to_hex(),
        smpx_directory::web::utc(d.clock_now())
    )));

    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    browser
        .screenshot(&url, &out.join("directory-operator.png"), PHONE)
        .await
        .unwrap();
}

/// An operator id and metadata holding markup are shown as text, on the operator's page and
/// the index; an unknown operator is a 404 page.
#[tokio::test]
async fn operator_pages_escape_what_operators_wrote_and_404_when_unknown() {
    let d = Dir::start(Backend::Sqlite).await;
    let hostile = "<script>alert(1)</script>";
    let r = Relay::new(hostile, 1, "10.1.0.1");
    let (challenge, difficulty) = d.challenge().await;
    let mut body = r.body(&challenge, d.clock_now());
    body.metadata.operator_name = Some("<img src=x onerror=alert(2)>".into());
    let (s, v) = d
        .post(
            "/v1/relays",
            &serde_json::to_value(r.request(&body, difficulty)).unwrap(),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let get = |path: String| {
        let http = d.http.clone();
        let url = format!("{}{path}", d.url);
        async move {
            let resp = http.get(url).send().await.unwrap();
            let status = resp.status().as_u16();
            let csp = resp.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .to_owned();
            (status, csp, resp.text().await.unwrap())
        }
    };
    let encoded = "%3Cscript%3Ealert%281%29%3C%2Fscript%3E";
    let (status, csp, page) = get(format!("/operators/{encoded}")).await;
    assert_eq!(status, 200, "{page}");
    assert!(csp.contains("default-src 'none'"));
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    assert!(
        !page.contains("<script") && !page.contains("<img"),
        "{page}"
    );
    let (_, _, index) = get("/".into()).await;
    assert!(
        index.contains(&format!("href=\"/operators/{encoded}\"")),
        "{index}"
    );
    assert!(index.contains("&lt;img src=x onerror=alert(2)&gt;"));
    assert!(!index.contains("<script") && !index.contains("<img"));
    let (status, _, page) = get("/operators/op-nobody".into()).await;
    assert_eq!(status, 404);
    assert!(page.contains("No such operator"), "{page}");
}

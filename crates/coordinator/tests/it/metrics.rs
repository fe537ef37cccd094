//! `GET /metrics` on the coordinator, the issuer and the operator of the test network: a
//! purchase, a publish (and its retry), a v0.1 redemption and some refusals move each counter
//! by exactly what was done; the text parses as the exposition format; and no label holds
//! anything a request carried.

use smpx_core::api::*;
use smpx_core::crypto::b64;
use smpx_core::crypto::blind::IssuerPublicKey;
use smpx_core::crypto::voucher::{commitment, VoucherSecret};
use smpx_core::issuance::voucher_message;
use smpx_core::redemption::seal_v1;
use smpx_http::ApiClient;
use smpx_testkit::net::{Network, ISSUER_ID, OPERATOR_ID};
use smpx_testkit::Backend;
use std::collections::BTreeMap;

/// A scrape: `name{labels}` (labels as rendered) → value.
pub(crate) type Scrape = BTreeMap<String, f64>;

/// A strict reader of the text format the services write: every sample after its family's
/// `# HELP` and `# TYPE`, names `[a-zA-Z_:][a-zA-Z0-9_:]*`, labels `k="v"` with `\\`, `\"`
/// and `\n` escapes, values numbers, counters named `_total`, no series twice.
pub(crate) fn parse(text: &str) -> Result<Scrape, String> {
    let name_ok = |n: &str| {
        let mut c = n.chars();
        matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_' || ch == ':')
            && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':')
    };
    let mut typed: BTreeMap<String, String> = BTreeMap::new();
    let mut helped = std::collections::BTreeSet::new();
    let mut out = Scrape::new();
    if !text.ends_with('\n') {
        return Err("no final newline".into());
    }
    for line in text.lines() {
        let bad = |why: &str| format!("{why}: {line:?}");
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').ok_or_else(|| bad("HELP"))?;
            if !name_ok(name) || help.is_empty() || !helped.insert(name.to_owned()) {
                return Err(bad("HELP"));
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or_else(|| bad("TYPE"))?;
            if !["counter", "gauge", "histogram"].contains(&kind)
                || (kind == "counter" && !name.ends_with("_total"))
                || typed.insert(name.to_owned(), kind.to_owned()).is_some()
            {
                return Err(bad("TYPE"));
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').ok_or_else(|| bad("no value"))?;
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, Some(l.strip_suffix('}').ok_or_else(|| bad("labels"))?)),
            None => (series, None),
        };
        if !name_ok(name) {
            return Err(bad("name"));
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|f| typed.get(*f).is_some_and(|k| k == "histogram"))
            .unwrap_or(name);
        if !typed.contains_key(family) || !helped.contains(family) {
            return Err(bad("sample before its HELP and TYPE"));
        }
        if let Some(labels) = labels {
            let mut rest = labels;
            while !rest.is_empty() {
                let (key, after) = rest.split_once("=\"").ok_or_else(|| bad("label"))?;
                if !name_ok(key) {
                    return Err(bad("label name"));
                }
                let mut chars = after.char_indices();
                let end = loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, '\\' | '"' | 'n')) => {}
                            _ => return Err(bad("escape")),
                        },
                        Some((i, '"')) => break i,
                        Some((_, '\n')) | None => return Err(bad("unterminated label")),
                        Some(_) => {}
                    }
                };
                rest = &after[end + 1..];
                rest = rest.strip_prefix(',').unwrap_or(rest);
            }
        }
        let v: f64 = value.parse().map_err(|_| bad("value"))?;
        if out.insert(series.to_owned(), v).is_some() {
            return Err(bad("series twice"));
        }
    }
    Ok(out)
}

pub(crate) async fn scrape(url: &str) -> (Scrape, String) {
    let resp = reqwest::get(format!("{url}/metrics")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = resp.text().await.unwrap();
    (parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}")), text)
}

/// How much each series moved between two scrapes (only those that moved).
pub(crate) fn moved(before: &Scrape, after: &Scrape) -> BTreeMap<String, f64> {
    after
        .iter()
        .filter(|(k, _)| !k.contains("_duration_seconds"))
        .filter_map(|(k, v)| {
            let d = v - before.get(k).copied().unwrap_or(0.0);
            (d != 0.0).then(|| (k.clone(), d))
        })
        .collect()
}

fn requests(route: &str, method: &str, status: u16) -> String {
    format!("smpx_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}}")
}

fn errors(code: &str) -> String {
    format!("smpx_errors_total{{code=\"{code}\"}}")
}

/// Everything a scrape holds that a request could have put there.
const SECRET: &str = "do-not-label-me";

#[tokio::test]
async fn every_service_counts_what_it_did_and_nothing_it_was_told() {
    let net = Network::start(Backend::Sqlite).await.unwrap();
    let (c0, text) = scrape(&net.coordinator_url).await;
    let (i0, _) = scrape(&net.issuer_url).await;
    let (o0, _) = scrape(&net.operator_url).await;
    // The domain counters exist before anything happened.
    assert_eq!(c0["smpx_publishes_total"], 0.0, "{text}");
    assert_eq!(c0["smpx_redemptions_total{version=\"v0.1\"}"], 0.0);
    assert_eq!(c0["smpx_redemptions_total{version=\"v0.2\"}"], 0.0);
    assert_eq!(i0["smpx_purchases_total"], 0.0);
    assert_eq!(o0["smpx_credit_outputs_signed_total"], 0.0);
    assert_eq!(o0["smpx_credit_tokens_spent_total"], 0.0);

    // A purchase as a wallet makes it: the current key from the coordinator, blinded.
    let coordinator = ApiClient::new(&net.coordinator_url);
    let p: ParamsResponse = coordinator.get("/v1/params").await.unwrap();
    let d = p.params.denominations[0];
    let keys: Vec<IssuerKeyInfo> = coordinator
        .get(&format!(
            "/v1/issuer-keys?issuer={ISSUER_ID}&denomination={d}"
        ))
        .await
        .unwrap();
    let key = keys
        .iter()
        .filter(|k| k.valid_from <= p.now)
        .max_by_key(|k| k.valid_from)
        .unwrap();
    let pk = IssuerPublicKey::from_spki(&b64::decode(&key.public_key).unwrap()).unwrap();
    let s = VoucherSecret::random(&mut rand::rngs::OsRng);
    let c = commitment(&s, d);
    let msg = voucher_message(&c);
    let (blinded, state) = pk.blind(&msg, &mut rand::rngs::OsRng).unwrap();
    let bought: PurchaseResponse = ApiClient::new(&net.issuer_url)
        .post(
            "/v1/purchases",
            &PurchaseRequest {
                denomination: d,
                key_id: key.key_id.clone(),
                blinded_message: blinded,
                payment: Payment::Devnet,
            },
        )
        .await
        .unwrap();
    let signature = pk.finalize(&bought.blind_signature, &state, &msg).unwrap();
    let publish = PublishRequest {
        commitment: c,
        denomination: d,
        key_id: key.key_id.clone(),
        signature,
    };
    // Published, and the same request again (a retry: answered, not published twice).
    for _ in 0..2 {
        let _: smpx_core::receipt::Signed<PublishReceipt> =
            coordinator.post("/v1/vouchers", &publish).await.unwrap();
    }
    // Redeemed at the operator, which forwards to the coordinator.
    let envelope = seal_v1(&p.envelope_key, &s, d, OPERATOR_ID, &mut rand::rngs::OsRng).unwrap();
    let redeem = RedeemRequest {
        version: 1,
        envelope: Some(envelope),
        zk: None,
        outputs: None,
    };
    let operator = ApiClient::new(&net.operator_url);
    let _: RedeemResponse = operator.post("/v1/redeem", &redeem).await.unwrap();
    // Refusals, each carrying something no label may repeat.
    let unknown: Result<IssuerInfo, _> = coordinator.get(&format!("/v1/issuers/{SECRET}")).await;
    assert_eq!(
        unknown.unwrap_err().code(),
        Some(smpx_core::ErrorCode::NotFound)
    );
    let nowhere: Result<serde_json::Value, _> = coordinator.get(&format!("/v1/{SECRET}")).await;
    assert_eq!(
        nowhere.unwrap_err().code(),
        Some(smpx_core::ErrorCode::NotFound)
    );
    let long = reqwest::get(format!(
        "{}/v1/issuers/{}",
        net.coordinator_url,
        "x".repeat(9000)
    ))
    .await
    .unwrap();
    assert_eq!(
        long.status(),
        414,
        "refused by the limits before any handler"
    );

    let (c1, ctext) = scrape(&net.coordinator_url).await;
    let (i1, itext) = scrape(&net.issuer_url).await;
    let (o1, otext) = scrape(&net.operator_url).await;
    for text in [&ctext, &itext, &otext] {
        assert!(
            !text.contains(SECRET),
            "a request value in a label:\n{text}"
        );
        assert!(!text.contains("xxxx"), "a request path in a label:\n{text}");
    }

    let coordinator_moved = moved(&c0, &c1);
    let want: BTreeMap<String, f64> = [
        (requests("/metrics", "GET", 200), 1.0), // the first scrape
        (requests("/v1/params", "GET", 200), 1.0),
        (requests("/v1/issuer-keys", "GET", 200), 1.0),
        (requests("/v1/issuers/{id}", "GET", 200), 1.0), // the issuer asking for its limit
        (requests("/v1/issuers/{id}", "GET", 404), 1.0),
        (requests("/v1/issuers/{id}", "GET", 414), 1.0),
        (requests("unmatched", "GET", 404), 1.0),
        (requests("/v1/vouchers", "POST", 200), 2.0),
        (requests("/v1/redemptions", "POST", 200), 1.0),
        (errors("not_found"), 2.0),
        (errors("uri_too_long"), 1.0),
        ("smpx_publishes_total".to_owned(), 1.0),
        ("smpx_redemptions_total{version=\"v0.1\"}".to_owned(), 1.0),
    ]
    .into_iter()
    .collect();
    assert_eq!(coordinator_moved, want, "{ctext}");
    // Every answered request was timed under its route.
    assert_eq!(
        c1["smpx_http_request_duration_seconds_count{route=\"/v1/vouchers\"}"]
            - c0.get("smpx_http_request_duration_seconds_count{route=\"/v1/vouchers\"}")
                .copied()
                .unwrap_or(0.0),
        2.0
    );
    assert_eq!(
        c1["smpx_http_request_duration_seconds_bucket{route=\"/v1/vouchers\",le=\"+Inf\"}"],
        c1["smpx_http_request_duration_seconds_count{route=\"/v1/vouchers\"}"]
    );

    let value = p.params.voucher_value(d).unwrap().0 as f64;
    let want: BTreeMap<String, f64> = [
        (requests("/metrics", "GET", 200), 1.0),
        (requests("/v1/purchases", "POST", 200), 1.0),
        ("smpx_purchases_total".to_owned(), 1.0),
        ("smpx_sold_units_total".to_owned(), value),
    ]
    .into_iter()
    .collect();
    assert_eq!(moved(&i0, &i1), want, "{itext}");

    let want: BTreeMap<String, f64> = [
        (requests("/metrics", "GET", 200), 1.0),
        (requests("/v1/redeem", "POST", 200), 1.0),
        ("smpx_redemptions_total{version=\"v0.1\"}".to_owned(), 1.0),
    ]
    .into_iter()
    .collect();
    assert_eq!(moved(&o0, &o1), want, "{otext}");
    net.stop().await.unwrap();
}

#[test]
fn the_parser_refuses_what_prometheus_would() {
    let ok = "# HELP a_total h\n# TYPE a_total counter\na_total{k=\"v\\\"w\"} 1\n";
    assert_eq!(parse(ok).unwrap()["a_total{k=\"v\\\"w\"}"], 1.0);
    for bad in [
        "a_total 1\n",
        "# HELP a h\n# TYPE a counter\na 1\n",
        "# HELP a h\n# TYPE a gauge\na one\n",
        "# HELP a h\n# TYPE a gauge\na 1",
        "# HELP a h\n# TYPE a gauge\na{k=\"v} 1\n",
        "# HELP a h\n# TYPE a gauge\na{k=\"\\x\"} 1\n",
        "# HELP a h\n# TYPE a gauge\na 1\na 2\n",
    ] {
        assert!(parse(bad).is_err(), "{bad:?}");
    }
}

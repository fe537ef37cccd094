//! `smpx relays choose` and `smpx chat invite/accept` without `--relay`, as a user runs them:
//! the `smpx` binary against three real directories (`smpx_testkit::directory`, their probes
//! scripted) listing two real relays and one that the honest two find down.

use smpx_testkit::directory::{RelayListing, TestDirectory};
use smpx_testkit::Backend;
use std::path::Path;
use std::process::Output;

const BIN: &str = env!("CARGO_BIN_EXE_smpx");

async fn smpx(args: &[&str]) -> Output {
    tokio::process::Command::new(BIN)
        .args(args)
        .env("SMPX_WALLET_PASSPHRASE", "pw")
        .env_remove("SMPX_RELAY")
        .env_remove("SMPX_DIRECTORIES")
        .output()
        .await
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(out)).unwrap()
}

async fn chat(wallet: &Path, args: &[&str]) -> Output {
    let mut all = vec!["chat", "--wallet", wallet.to_str().unwrap()];
    all.extend_from_slice(args);
    smpx(&all).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_choose_explains_the_agreed_choice_and_chat_queues_on_it() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let node_a = smpx_testkit::relay::start(&t.join("ra"), None)
        .await
        .unwrap();
    let node_b = smpx_testkit::relay::start(&t.join("rb"), None)
        .await
        .unwrap();
    let a = RelayListing::existing(&t.join("ra"), node_a.address().clone(), "A").unwrap();
    let b = RelayListing::existing(&t.join("rb"), node_b.address().clone(), "B").unwrap();
    std::fs::create_dir_all(t.join("rc")).unwrap();
    let c = RelayListing::create(&t.join("rc"), "C", "c.example", "eu").unwrap();
    let now = smpx_http::Clock::now(&smpx_http::SystemClock);
    let mut dirs = Vec::new();
    for (i, name) in ["d1", "d2", "d3"].into_iter().enumerate() {
        let d = TestDirectory::start(Backend::Sqlite, name, now)
            .await
            .unwrap();
        for r in [&a, &b, &c] {
            d.register(r).await.unwrap();
        }
        // The third directory says c is up; the other two find it down.
        if i < 2 {
            d.prober.set(&c.fingerprint(), false, 0);
        }
        d.probe_rounds(3, 600).await.unwrap();
        dirs.push(d);
    }
    let cache = t.join("view.json");
    let mut args: Vec<String> = vec!["relays".into(), "choose".into()];
    for d in &dirs {
        args.extend(["--directory".into(), d.url.clone()]);
    }
    args.extend(["--view-cache".into(), cache.to_str().unwrap().into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let with_json = [args.as_slice(), &["--json"]].concat();

    let got = json(&smpx(&with_json).await);
    assert_eq!(got["view"]["source"], "directories");
    assert_eq!(got["view"]["answered"].as_array().unwrap().len(), 3);
    assert_eq!(
        (
            got["view"]["configured"].as_u64(),
            got["view"]["needed"].as_u64()
        ),
        (Some(3), Some(2))
    );
    let choice = &got["choice"];
    assert_eq!(choice["source"], "agreed");
    assert_eq!(choice["distinct_operators"], true);
    let ops = [
        &choice["destination"]["operator_id"],
        &choice["proxy"]["operator_id"],
    ];
    let mut ops: Vec<&str> = ops.iter().map(|o| o.as_str().unwrap()).collect();
    ops.sort();
    assert_eq!(
        ops,
        ["A", "B"],
        "c is not running by the majority: never chosen"
    );
    assert_eq!(choice["excluded"][0]["fingerprint"], c.fingerprint());
    // The two real relays were measured from here, and the score used that.
    let own = got["own_rtt_ms"].as_object().unwrap();
    assert!(
        own.contains_key(&a.fingerprint()) && own.contains_key(&b.fingerprint()),
        "{own:?}"
    );
    assert_eq!(choice["destination"]["score"]["latency_source"], "own");

    let text = ok(&smpx(&args).await);
    assert!(
        text.contains("view: agreed now (3 of 3 directories answered, a relay needs 2)"),
        "{text}"
    );
    assert!(
        text.contains("choice from the agreed view: 2 running relays of 2 operators"),
        "{text}"
    );
    for role in ["destination", "proxy", "fallback"] {
        assert!(text.contains(role), "{text}");
    }
    assert!(text.contains("measured here"), "{text}");
    assert!(
        text.contains(&format!("excluded     {}", c.fingerprint())),
        "{text}"
    );

    // Chat without --relay: the queue goes on the chosen destination, one of the two.
    let (alice, bob) = (t.join("alice.db"), t.join("bob.db"));
    for w in [&alice, &bob] {
        ok(&smpx(&["wallet", "--wallet", w.to_str().unwrap(), "init"]).await);
    }
    let dir_list = dirs
        .iter()
        .map(|d| d.url.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let out = chat(
        &alice,
        &["invite", "--name", "bob", "--directory", &dir_list],
    )
    .await;
    let invitation = ok(&out).trim().to_owned();
    assert!(String::from_utf8_lossy(&out.stderr).contains("chosen as `smpx relays choose` chooses"));
    let real = [a.address.to_string(), b.address.to_string()];
    let contacts = json(&chat(&alice, &["--json", "contacts"]).await);
    assert!(
        real.contains(&contacts[0]["my_relay"].as_str().unwrap().to_string()),
        "{contacts}"
    );
    ok(&chat(
        &bob,
        &[
            "accept",
            &invitation,
            "--name",
            "alice",
            "--directory",
            &dir_list,
        ],
    )
    .await);
    let contacts = json(&chat(&bob, &["--json", "contacts"]).await);
    assert!(
        real.contains(&contacts[0]["my_relay"].as_str().unwrap().to_string()),
        "{contacts}"
    );
    let out = ok(&chat(&alice, &["receive", "--wait", "5"]).await);
    assert!(out.contains("connected: bob"), "{out}");

    // The directories gone: the cached view, and it says so.
    for d in &mut dirs {
        d.stop().await.unwrap();
    }
    let got = json(&smpx(&with_json).await);
    assert_eq!(got["view"]["source"], "cache");
    assert_eq!(got["view"]["unreachable"].as_array().unwrap().len(), 3);
    assert_eq!(got["choice"]["source"], "agreed");
    assert!(ok(&smpx(&args).await).contains("view: cached, agreed at"));

    // Only core relays: chosen from them.
    let core_b = format!("B={}", b.address);
    let got = json(
        &smpx(&[
            "relays",
            "choose",
            "--core-relay",
            &a.address.to_string(),
            "--core-relay",
            &core_b,
            "--view-cache",
            cache.to_str().unwrap(),
            "--json",
        ])
        .await,
    );
    assert_eq!(got["view"]["source"], "core_relays");
    assert_eq!(got["choice"]["source"], "core_relays");
    assert_eq!(got["choice"]["distinct_operators"], true);
    // Nothing to choose from: said so.
    let out = smpx(&["relays", "choose"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to choose from"));

    node_a.shutdown().await.unwrap();
    node_b.shutdown().await.unwrap();
}

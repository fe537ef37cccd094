//! `smpx directory init|run|key|attest` and `smpx relays` as a user runs them: separate
//! processes, a real directory on loopback.

use smpx_testkit::process::Process;
use std::process::{Command, Output};
use std::time::Duration;

fn smpx(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_smpx"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn a_directory_is_created_run_listed_and_stopped() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("directory");
    let d = dir.to_str().unwrap();
    let attester = home.path().join("attester.key");
    let a = attester.to_str().unwrap();

    // An attester makes its key first; the directory is told to trust it.
    let printed = ok(&smpx(&["directory", "attest", "--key", a]));
    let attester_key = printed
        .strip_prefix("attester key ")
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(attester_key.len(), 64);

    let init = ok(&smpx(&[
        "directory",
        "init",
        "--dir",
        d,
        "--name",
        "dir-test",
        "--listen",
        "127.0.0.1:0",
        "--pow-difficulty",
        "4",
        "--attester",
        &attester_key,
        "--coordinator",
        "http://127.0.0.1:9",
    ]));
    assert!(init.contains("directory dir-test in"), "{init}");
    let key_line = init
        .lines()
        .find_map(|l| l.strip_prefix("share statement key "))
        .unwrap();
    let key = key_line.split_whitespace().next().unwrap();
    // Init twice: refused, nothing overwritten.
    let again = smpx(&["directory", "init", "--dir", d]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a directory"));
    let json: serde_json::Value =
        serde_json::from_str(&ok(&smpx(&["directory", "key", "--dir", d, "--json"]))).unwrap();
    assert_eq!(json["statement_key"], key);
    assert_eq!(json["name"], "dir-test");
    assert!(std::fs::read_to_string(dir.join("directory.toml"))
        .unwrap()
        .contains(&attester_key));
    assert!(std::fs::read_to_string(dir.join("directory.toml"))
        .unwrap()
        .contains("coordinators = [\"http://127.0.0.1:9\"]"));

    let mut run = Process::spawn(
        env!("CARGO_BIN_EXE_smpx"),
        ["directory", "run", "--dir", d],
        &[],
    )
    .unwrap();
    let url = run.wait_for_url("directory").unwrap();

    let listed: serde_json::Value =
        serde_json::from_str(&ok(&smpx(&["relays", "--directory", &url, "--json"]))).unwrap();
    assert_eq!(listed, serde_json::json!([]));
    assert!(ok(&smpx(&["relays", "--directory", &url, "--running"])).contains("no relays listed"));
    let (status, page) = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let r = reqwest::get(format!("{url}/")).await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    assert_eq!(status, 200);
    assert!(page.contains("dir-test — relays"));

    // An attestation for an operator the directory has never seen: a clear refusal.
    let refused = smpx(&[
        "directory",
        "attest",
        "--key",
        a,
        "--directory",
        &url,
        "--operator",
        "op-1",
        "--operator-key",
        &"11".repeat(32),
        "--legal-name",
        "Example GmbH",
        "--country",
        "DE",
    ]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("handing the attestation"), "{err}");

    run.signal("TERM").unwrap();
    assert!(run.wait_exit(Duration::from_secs(30)).unwrap().success());

    // The directory gone: `smpx relays` says what it could not do.
    let gone = smpx(&["relays", "--directory", &url]);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains(&format!("asking {url}")));
}

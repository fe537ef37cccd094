//! How a failed `smpx` command ends, as a script sees it: the message once on stderr, an
//! exit code per kind of failure (1 local, 2 usage, 3 network, 4 refused by a service), and
//! under `--json` the error as `{"error": {"code", "message"}}` on stdout.

use std::process::Output;

fn smpx(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_smpx"))
        .args(args)
        .env("SMPX_WALLET_PASSPHRASE", "not used")
        .env_remove("SMPX_COORDINATOR")
        .output()
        .unwrap()
}

fn json_error(out: &Output) -> (String, String) {
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let code = v["error"]["code"].as_str().unwrap().to_owned();
    let message = v["error"]["message"].as_str().unwrap().to_owned();
    (code, message)
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn an_unreachable_service_is_exit_3() {
    let url = format!("http://127.0.0.1:{}", closed_port());
    let out = smpx(&["ledger", "--coordinator", &url, "--json"]);
    assert_eq!(out.status.code(), Some(3));
    let (code, message) = json_error(&out);
    assert_eq!(code, "unreachable");
    assert!(message.contains(&url), "{message}");
    let out = smpx(&["ledger", "--coordinator", &url]);
    assert_eq!(out.status.code(), Some(3));
    assert!(out.stdout.is_empty());
}

#[tokio::test]
async fn a_refusal_is_exit_4_with_the_services_code_said_once() {
    // A service whose every path is `404 not_found` (the JSON error shape).
    let server = smpx_testkit::net::serve_router(smpx_http::finish_router(axum::Router::new()))
        .await
        .unwrap();
    let url = server.url.clone();
    let out = tokio::task::spawn_blocking(move || smpx(&["ledger", "--coordinator", &url]))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert_eq!(line.matches("not_found").count(), 1, "{line}");
    let url = server.url.clone();
    let out =
        tokio::task::spawn_blocking(move || smpx(&["ledger", "--coordinator", &url, "--json"]))
            .await
            .unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(json_error(&out).0, "not_found");
    server.stop().await.unwrap();
}

#[test]
fn a_local_failure_is_exit_1_and_a_bad_command_line_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let wallet = dir.path().join("none.db");
    let out = smpx(&[
        "wallet",
        "--wallet",
        wallet.to_str().unwrap(),
        "--json",
        "list",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let (code, message) = json_error(&out);
    assert_eq!(code, "local");
    assert!(message.contains("none.db"), "{message}");
    assert_eq!(smpx(&["wallet", "--no-such-flag"]).status.code(), Some(2));
}

#[test]
fn without_a_terminal_the_passphrase_message_names_the_other_ways() {
    let dir = tempfile::tempdir().unwrap();
    let wallet = dir.path().join("w.db");
    // `setsid` detaches the command from any controlling terminal, as under cron or CI.
    let out = std::process::Command::new("setsid")
        .arg(env!("CARGO_BIN_EXE_smpx"))
        .args(["wallet", "--wallet", wallet.to_str().unwrap(), "init"])
        .env_remove("SMPX_WALLET_PASSPHRASE")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--passphrase-file") && stderr.contains("SMPX_WALLET_PASSPHRASE"),
        "{stderr}"
    );
    assert!(!stderr.contains("os error"), "{stderr}");
    assert!(!wallet.exists(), "no wallet was made without a passphrase");
}

//! `smpx admin suspend` against the test network's coordinator: the operator is suspended
//! (its share view says so) and `--resume` lifts it.

use smpx_coordinator::OperatorShare;
use smpx_http::ApiClient;
use smpx_testkit::net::{Network, OPERATOR_ID};
use smpx_testkit::Backend;

#[tokio::test]
async fn admin_suspends_and_resumes_an_operator() {
    let net = Network::start(Backend::Sqlite).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, &net.admin_token).unwrap();
    let run = |resume: bool| {
        let mut args = vec![
            "admin".to_owned(),
            "--coordinator".to_owned(),
            net.coordinator_url.clone(),
            "--token-file".to_owned(),
            token_file.display().to_string(),
            "suspend".to_owned(),
            "--id".to_owned(),
            OPERATOR_ID.to_owned(),
        ];
        if resume {
            args.push("--resume".to_owned());
        }
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_smpx"))
                .args(&args)
                .output()
                .unwrap()
        })
    };
    let share = || async {
        let s: OperatorShare = ApiClient::new(&net.coordinator_url)
            .get(&format!("/v1/operators/{OPERATOR_ID}/share"))
            .await
            .unwrap();
        s
    };
    let out = run(false).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: OperatorShare = serde_json::from_slice(&out.stdout).unwrap();
    assert!(printed.suspended);
    assert_eq!(share().await, printed);
    let out = run(true).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = share().await;
    assert!(!after.suspended);
    assert_eq!(after.share_bps, smpx_testkit::net::OPERATOR_SHARE_BPS);
    net.stop().await.unwrap();
}

//! `smpx relay init` and `smpx relay run` as processes: the printed address works over TLS,
//! and SIGTERM stops the relay gracefully (exit 0) within a few seconds.

use smpx_relay_client::{Client, ClientConfig};
use smpx_relay_transport::{self as transport, RelayAddress};
use smpx_testkit::process;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_smpx");

#[tokio::test]
async fn init_prints_a_working_address_and_sigterm_stops_run_cleanly() {
    let dir = tempfile::tempdir().unwrap();

    // The address init prints has the port it was given (init binds nothing).
    let out = Command::new(BIN)
        .args(["relay", "init", "--dir"])
        .arg(dir.path().join("elsewhere"))
        .args(["--port", "4443", "--ops-listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let given: RelayAddress = address_line(&stdout).parse().unwrap();
    assert_eq!(given.port, 4443);

    // This one leaves the port to `run` (port 0), so the relay holds it before anyone
    // knows it.
    let relay_dir = dir.path().join("relay");
    let stdout = process::relay_init(Path::new(BIN), &relay_dir).unwrap();
    assert!(stdout.contains("ca.key"), "{stdout}");
    // (Port 0 is no address to connect to: it says `run` picks the port.)
    let printed = address_line(&stdout).to_owned();

    // Init again refuses to overwrite.
    let again = Command::new(BIN)
        .args(["relay", "init", "--dir"])
        .arg(&relay_dir)
        .output()
        .unwrap();
    assert!(!again.status.success());

    let mut relay =
        process::relay_run(Path::new(BIN), &relay_dir, &[("SMPX_LOG", "info")]).unwrap();
    let running: RelayAddress = relay.address.parse().unwrap();
    // The relay init printed (fingerprint and host), on the port it bound.
    assert_ne!(running.port, 0);
    assert_eq!(
        printed,
        RelayAddress {
            port: 0,
            ..running.clone()
        }
        .to_string()
    );

    let (tls, sid) = transport::connect(&running).await.unwrap();
    let (client, _events) = Client::connect(tls, sid, ClientConfig::default())
        .await
        .unwrap();
    let q = client.create_queue().await.unwrap();
    client.send(&q.sender_id, None, b"hi").await.unwrap();

    // SIGTERM with a client still connected: graceful, exit 0, quickly.
    relay.process.signal("TERM").unwrap();
    let code = relay
        .process
        .wait_exit(Duration::from_secs(5))
        .expect("relay did not exit within 5 s of SIGTERM");
    assert!(code.success(), "exit status {code:?}");
    // The logs name no key material.
    let logs = relay.process.stderr_lines().to_vec();
    assert!(
        logs.iter().any(|l| l.contains("relay stopped")),
        "{logs:#?}"
    );
    assert!(!logs.iter().any(|l| l.contains("PRIVATE KEY")), "{logs:#?}");
}

fn address_line(stdout: &str) -> &str {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("address  "))
        .unwrap()
        .trim()
}

/// `init --directory` writes the `[directory]` section and the operator key, and registers
/// at once; when the directory cannot be reached the relay is still initialised and the
/// error says how to register later. Without `ca.key`, `register` says to bring it back.
/// (Registration against a real directory: `crates/relay/tests/it/directory.rs`.)
#[test]
fn init_with_a_directory_writes_the_listing_and_register_needs_the_ca_key() {
    let dir = tempfile::tempdir().unwrap();
    let relay_dir = dir.path().join("relay");
    // A port nothing listens on: bound and dropped here, so the connection is refused.
    let unreachable = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", unreachable.local_addr().unwrap());
    drop(unreachable);
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(["relay"])
            .args(args)
            .arg("--dir")
            .arg(&relay_dir)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, _, err) = run(&["init", "--directory", &url, "--region", "eu"]);
    assert!(!ok);
    assert!(err.contains("--operator-id"), "{err}");
    assert!(!relay_dir.exists());

    let (ok, stdout, err) = run(&[
        "init",
        "--port",
        "5300",
        "--ops-listen",
        "127.0.0.1:0",
        "--directory",
        &url,
        "--operator-id",
        "op-1",
        "--region",
        "eu-west",
        "--country",
        "DE",
    ]);
    assert!(!ok, "{stdout}");
    assert!(err.contains("smpx relay register"), "{err}");
    let toml = std::fs::read_to_string(relay_dir.join("relay.toml")).unwrap();
    assert!(toml.contains(&format!("urls = [\"{url}\"]")), "{toml}");
    assert!(toml.contains("operator_id = \"op-1\""), "{toml}");
    assert!(toml.contains("country = \"DE\""), "{toml}");
    assert!(toml.contains("# hosting = "), "{toml}");
    assert!(relay_dir.join("operator.key").exists());

    std::fs::remove_file(relay_dir.join("ca.key")).unwrap();
    let (ok, _, err) = run(&["register"]);
    assert!(!ok);
    assert!(err.contains("bring ca.key back"), "{err}");
}

//! `smpx relay init` and `smpx relay run` as processes: the printed address works over TLS,
//! and SIGTERM stops the relay gracefully (exit 0) within a few seconds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use smpx_relay_client::{Client, ClientConfig};
use smpx_relay_transport::{self as transport, RelayAddress};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_smpx");

/// Killed when dropped (a failing test leaves no relay behind).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn init_prints_a_working_address_and_sigterm_stops_run_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let relay_dir = dir.path().join("relay");
    let port = free_port();
    let out = Command::new(BIN)
        .args(["relay", "init", "--dir"])
        .arg(&relay_dir)
        .args(["--port", &port.to_string(), "--ops-listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ca.key"), "{stdout}");
    let printed: RelayAddress = stdout
        .lines()
        .find_map(|l| l.strip_prefix("address  "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(printed.port, port);

    // Init again refuses to overwrite.
    let again = Command::new(BIN)
        .args(["relay", "init", "--dir"])
        .arg(&relay_dir)
        .output()
        .unwrap();
    assert!(!again.status.success());

    let mut child = Proc(
        Command::new(BIN)
            .args(["relay", "run", "--dir"])
            .arg(&relay_dir)
            .env("SMPX_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    let running: RelayAddress = loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("relay did not report listening");
        if let Some(rest) = line.strip_prefix("relay listening on ") {
            break rest.split(' ').next().unwrap().parse().unwrap();
        }
    };
    assert_eq!(running, printed);

    let (tls, sid) = transport::connect(&printed).await.unwrap();
    let (client, _events) = Client::connect(tls, sid, ClientConfig::default())
        .await
        .unwrap();
    let q = client.create_queue().await.unwrap();
    client.send(&q.sender_id, None, b"hi").await.unwrap();

    // SIGTERM with a client still connected: graceful, exit 0, quickly.
    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    let code = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "relay did not exit within 5 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(code.success(), "exit status {code:?}");
    // The logs name no key material.
    let logs: Vec<String> = rx.try_iter().collect();
    assert!(
        logs.iter().any(|l| l.contains("relay stopped")),
        "{logs:#?}"
    );
    assert!(!logs.iter().any(|l| l.contains("PRIVATE KEY")), "{logs:#?}");
}

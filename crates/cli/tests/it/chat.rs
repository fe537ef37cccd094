//! `smpx chat` as processes: a relay from `smpx relay init/run`, two wallets from
//! `smpx wallet init`, invite → accept → receive (connect) → send → receive, both ways.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
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

fn ok(out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn smpx(wallet: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("chat")
        .arg("--wallet")
        .arg(wallet)
        .args(args)
        .env("SMPX_WALLET_PASSPHRASE", "pw")
        .env_remove("SMPX_RELAY")
        .output()
        .unwrap()
}

#[test]
fn two_wallets_chat_through_a_relay_process() {
    let dir = tempfile::tempdir().unwrap();
    let relay_dir = dir.path().join("relay");
    let port = free_port();
    let init = ok(Command::new(BIN)
        .args(["relay", "init", "--dir"])
        .arg(&relay_dir)
        .args(["--port", &port.to_string(), "--ops-listen", "127.0.0.1:0"])
        .output()
        .unwrap());
    let address = init
        .lines()
        .find_map(|l| l.strip_prefix("address  "))
        .unwrap()
        .trim()
        .to_owned();
    let mut relay = Proc(
        Command::new(BIN)
            .args(["relay", "run", "--dir"])
            .arg(&relay_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = relay.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("relay did not report listening");
        if line.starts_with("relay listening on ") {
            break;
        }
    }

    let alice = dir.path().join("alice.db");
    let bob = dir.path().join("bob.db");
    for w in [&alice, &bob] {
        ok(Command::new(BIN)
            .arg("wallet")
            .arg("--wallet")
            .arg(w)
            .arg("init")
            .env("SMPX_WALLET_PASSPHRASE", "pw")
            .output()
            .unwrap());
    }

    // Without --relay and without a devnet, invite says what to do.
    let out = smpx(
        &alice,
        &[
            "invite",
            "--devnet-dir",
            dir.path().join("none").to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--relay"));

    let invitation = ok(smpx(
        &alice,
        &["invite", "--name", "bob", "--relay", &address],
    ));
    let invitation = invitation.trim();
    assert!(invitation.starts_with("smpx-invite:"), "{invitation}");
    ok(smpx(
        &bob,
        &["accept", invitation, "--name", "alice", "--relay", &address],
    ));
    let out = ok(smpx(&alice, &["receive", "--wait", "5"]));
    assert!(out.contains("connected: bob"), "{out}");
    let out = ok(smpx(&bob, &["receive", "--wait", "5"]));
    assert!(out.contains("connected: alice"), "{out}");

    ok(smpx(&bob, &["send", "alice", "hello alice"]));
    ok(smpx(&bob, &["send", "alice", "second"]));
    ok(smpx(&alice, &["send", "bob", "hi bob"]));
    let out = ok(smpx(&alice, &["receive", "--wait", "5"]));
    assert_eq!(out, "bob: hello alice\nbob: second\n");
    let out = ok(smpx(&bob, &["receive", "--wait", "5"]));
    assert_eq!(out, "alice: hi bob\n");

    let out = ok(smpx(&alice, &["contacts"]));
    assert!(out.starts_with("bob\tconnected\t"), "{out}");
    let out = ok(smpx(&alice, &["history", "bob"]));
    assert_eq!(out, "me: hi bob\nbob: hello alice\nbob: second\n");

    // Typed errors reach the user as messages, with a failing exit status.
    let out = smpx(&alice, &["send", "carol", "hi"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no contact named \"carol\""));
    let out = smpx(
        &bob,
        &[
            "accept",
            "smpx-invite:garbage",
            "--name",
            "x",
            "--relay",
            &address,
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a valid smpx invitation"));
}

/// `smpx relay init` + `run` on free ports; the relay, its address and its ops address.
fn start_relay(dir: &Path) -> (Proc, String, String) {
    let port = free_port();
    let ops = format!("127.0.0.1:{}", free_port());
    let init = ok(Command::new(BIN)
        .args(["relay", "init", "--dir"])
        .arg(dir)
        .args(["--port", &port.to_string(), "--ops-listen", &ops])
        .output()
        .unwrap());
    let address = init
        .lines()
        .find_map(|l| l.strip_prefix("address  "))
        .unwrap()
        .trim()
        .to_owned();
    let mut relay = Proc(
        Command::new(BIN)
            .args(["relay", "run", "--dir"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = relay.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("relay did not report listening");
        if line.starts_with("relay listening on ") {
            break;
        }
    }
    (relay, address, ops)
}

/// One counter of a relay's `/metrics`.
fn metric(ops: &str, name: &str) -> f64 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(ops).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: ops\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("smpx_relay_{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn chat_crosses_relays_through_the_senders_relay_unless_direct() {
    let dir = tempfile::tempdir().unwrap();
    let (_ra, a, a_ops) = start_relay(&dir.path().join("ra"));
    let (_rb, b, b_ops) = start_relay(&dir.path().join("rb"));
    let alice = dir.path().join("alice.db");
    let bob = dir.path().join("bob.db");
    for w in [&alice, &bob] {
        ok(Command::new(BIN)
            .arg("wallet")
            .arg("--wallet")
            .arg(w)
            .arg("init")
            .env("SMPX_WALLET_PASSPHRASE", "pw")
            .output()
            .unwrap());
    }
    let invitation = ok(smpx(&alice, &["invite", "--name", "bob", "--relay", &a]));
    ok(smpx(
        &bob,
        &[
            "accept",
            invitation.trim(),
            "--name",
            "alice",
            "--relay",
            &b,
        ],
    ));
    let out = ok(smpx(&alice, &["receive", "--wait", "5"]));
    assert!(out.contains("connected: bob"), "{out}");
    let out = ok(smpx(&bob, &["receive", "--wait", "5"]));
    assert!(out.contains("connected: alice"), "{out}");
    // The hello went from Bob's relay to Alice's, the ready back, both forwarded.
    assert_eq!(metric(&a_ops, "forwarded_in_total"), 1.0);
    assert_eq!(metric(&b_ops, "forwarded_out_total"), 1.0);

    ok(smpx(&bob, &["send", "alice", "via my relay"]));
    assert_eq!(metric(&a_ops, "forwarded_in_total"), 2.0);
    assert_eq!(metric(&b_ops, "forwarded_out_total"), 2.0);
    ok(smpx(&bob, &["send", "alice", "straight", "--direct"]));
    assert_eq!(metric(&a_ops, "forwarded_in_total"), 2.0);
    assert_eq!(metric(&a_ops, "messages_in_total"), 3.0);

    let out = ok(smpx(&alice, &["receive", "--wait", "5"]));
    assert_eq!(out, "bob: via my relay\nbob: straight\n");
    let help = ok(smpx(&alice, &["send", "--help"]));
    assert!(help.contains("--direct"), "{help}");
}

//! `smpx chat` as processes: a relay from `smpx relay init/run`, two wallets from
//! `smpx wallet init`, invite → accept → receive (connect) → send → receive, both ways.

use smpx_testkit::process::{self, RelayProcess};
use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_smpx");

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

/// `smpx wallet init` for Alice and Bob in `dir`; their wallet files.
fn two_wallets(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let alice = dir.join("alice.db");
    let bob = dir.join("bob.db");
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
    (alice, bob)
}

#[test]
fn two_wallets_chat_through_a_relay_process() {
    let dir = tempfile::tempdir().unwrap();
    let relay = start_relay(&dir.path().join("relay"));
    let address = relay.address.clone();

    let (alice, bob) = two_wallets(dir.path());

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

/// `smpx relay init` + `run`, on ports the relay picks (its printed address and ops
/// address say which).
fn start_relay(dir: &Path) -> RelayProcess {
    process::relay(Path::new(BIN), dir).unwrap()
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
    let ra = start_relay(&dir.path().join("ra"));
    let rb = start_relay(&dir.path().join("rb"));
    let (a, a_ops) = (ra.address.clone(), ra.ops.clone());
    let (b, b_ops) = (rb.address.clone(), rb.ops.clone());
    let (alice, bob) = two_wallets(dir.path());
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

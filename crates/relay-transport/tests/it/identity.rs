//! Identity files: create / load round trip, permissions, typed errors, rotation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use smpx_relay_transport::identity::{
    ca_key_path, CA_CERT_FILE, CA_KEY_FILE, FINGERPRINT_FILE, ONLINE_CERT_FILE, ONLINE_KEY_FILE,
    ONLINE_VALIDITY_DAYS,
};
use smpx_relay_transport::{CaFingerprint, IdentityError, RelayIdentity};

const ALL_FILES: [&str; 5] = [
    CA_KEY_FILE,
    CA_CERT_FILE,
    ONLINE_KEY_FILE,
    ONLINE_CERT_FILE,
    FINGERPRINT_FILE,
];

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn create_then_load_round_trips_with_0600_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("relay");
    let created = RelayIdentity::create(&dir).unwrap();
    assert_eq!(mode(&dir), 0o700);
    for name in ALL_FILES {
        assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
    }
    // No temporary files left behind.
    assert_eq!(fs::read_dir(&dir).unwrap().count(), ALL_FILES.len());

    let loaded = RelayIdentity::load(&dir).unwrap();
    assert_eq!(loaded.fingerprint(), created.fingerprint());
    assert_eq!(loaded.chain(), created.chain());
    assert_eq!(
        loaded.fingerprint(),
        CaFingerprint::of_certificate(loaded.ca_certificate())
    );
    let text = fs::read_to_string(dir.join(FINGERPRINT_FILE)).unwrap();
    assert_eq!(text.trim(), created.fingerprint().to_string());
    assert_eq!(ca_key_path(&dir), dir.join(CA_KEY_FILE));

    // PEM on disk, and the chain is [online, CA].
    let ca_pem = fs::read_to_string(dir.join(CA_CERT_FILE)).unwrap();
    assert!(ca_pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
    let key_pem = fs::read_to_string(dir.join(ONLINE_KEY_FILE)).unwrap();
    assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    assert_eq!(&created.chain()[1], created.ca_certificate());
    assert_eq!(&created.chain()[0], created.online_certificate());

    // Debug output never shows key material.
    let debug = format!("{loaded:?}");
    assert!(debug.contains(&created.fingerprint().to_string()));
    let key_body: String = key_pem.lines().nth(1).unwrap().chars().take(20).collect();
    assert!(!debug.contains(&key_body));

    // Validity: now yes, after the online certificate's lifetime no.
    assert!(loaded.online_cert_valid_at(SystemTime::now()));
    let later =
        SystemTime::now() + Duration::from_secs(u64::from(ONLINE_VALIDITY_DAYS + 2) * 86_400);
    assert!(!loaded.online_cert_valid_at(later));

    // Two identities have different fingerprints.
    let other = RelayIdentity::create(&tmp.path().join("other")).unwrap();
    assert_ne!(other.fingerprint(), created.fingerprint());
}

#[test]
fn create_refuses_to_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    RelayIdentity::create(tmp.path()).unwrap();
    let before = fs::read(tmp.path().join(CA_KEY_FILE)).unwrap();
    match RelayIdentity::create(tmp.path()) {
        Err(IdentityError::AlreadyExists { path }) => {
            assert_eq!(path, tmp.path().join(CA_KEY_FILE))
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(fs::read(tmp.path().join(CA_KEY_FILE)).unwrap(), before);
}

#[test]
fn the_relay_runs_without_the_ca_key_and_rotation_needs_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let created = RelayIdentity::create(dir).unwrap();
    let offline = tmp.path().join("offline-ca.key");
    fs::rename(dir.join(CA_KEY_FILE), &offline).unwrap();

    let loaded = RelayIdentity::load(dir).unwrap();
    assert_eq!(loaded.fingerprint(), created.fingerprint());
    match RelayIdentity::rotate_online(dir) {
        Err(IdentityError::CaKeyOffline { path }) => assert_eq!(path, dir.join(CA_KEY_FILE)),
        other => panic!("expected CaKeyOffline, got {other:?}"),
    }

    // The key comes back: a new online key and certificate, same fingerprint.
    fs::rename(&offline, dir.join(CA_KEY_FILE)).unwrap();
    let old_key = fs::read(dir.join(ONLINE_KEY_FILE)).unwrap();
    let rotated = RelayIdentity::rotate_online(dir).unwrap();
    assert_eq!(rotated.fingerprint(), created.fingerprint());
    assert_eq!(rotated.ca_certificate(), created.ca_certificate());
    assert_ne!(rotated.online_certificate(), created.online_certificate());
    assert_ne!(fs::read(dir.join(ONLINE_KEY_FILE)).unwrap(), old_key);
    for name in [ONLINE_KEY_FILE, ONLINE_CERT_FILE] {
        assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
    }
    let reloaded = RelayIdentity::load(dir).unwrap();
    assert_eq!(reloaded.chain(), rotated.chain());
}

#[test]
fn a_foreign_ca_key_cannot_rotate() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    RelayIdentity::create(&a).unwrap();
    RelayIdentity::create(&b).unwrap();
    let a_cert = fs::read(a.join(ONLINE_CERT_FILE)).unwrap();
    fs::copy(b.join(CA_KEY_FILE), a.join(CA_KEY_FILE)).unwrap();
    match RelayIdentity::rotate_online(&a) {
        Err(IdentityError::CaKeyMismatch { path }) => assert_eq!(path, a.join(CA_KEY_FILE)),
        other => panic!("expected CaKeyMismatch, got {other:?}"),
    }
    // Nothing was replaced.
    assert_eq!(fs::read(a.join(ONLINE_CERT_FILE)).unwrap(), a_cert);
    RelayIdentity::load(&a).unwrap();
}

#[test]
fn missing_and_corrupt_files_are_typed_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    RelayIdentity::create(dir).unwrap();
    let pristine: Vec<(&str, Vec<u8>)> = ALL_FILES
        .iter()
        .map(|n| (*n, fs::read(dir.join(n)).unwrap()))
        .collect();
    let restore = || {
        for (name, bytes) in &pristine {
            fs::write(dir.join(name), bytes).unwrap();
        }
    };

    for name in [CA_CERT_FILE, ONLINE_CERT_FILE, ONLINE_KEY_FILE] {
        fs::remove_file(dir.join(name)).unwrap();
        match RelayIdentity::load(dir) {
            Err(IdentityError::Missing { path }) => assert_eq!(path, dir.join(name)),
            other => panic!("{name}: expected Missing, got {other:?}"),
        }
        restore();

        let original = fs::read(dir.join(name)).unwrap();
        let corruptions: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"garbage".to_vec(),
            original[..original.len() / 2].to_vec(),
            // Valid PEM framing, damaged DER inside.
            {
                let text = String::from_utf8(original.clone()).unwrap();
                let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
                lines[1] = "A".repeat(lines[1].len());
                (lines.join("\n") + "\n").into_bytes()
            },
            // Two blocks.
            [original.clone(), original.clone()].concat(),
        ];
        for (i, bad) in corruptions.into_iter().enumerate() {
            fs::write(dir.join(name), &bad).unwrap();
            match RelayIdentity::load(dir) {
                Err(IdentityError::Corrupt { path, reason }) => {
                    assert_eq!(path, dir.join(name), "{name} #{i}: {reason}");
                }
                other => panic!("{name} #{i}: expected Corrupt, got {other:?}"),
            }
            restore();
        }
    }
    RelayIdentity::load(dir).unwrap();

    // A corrupt CA key: rotation says so.
    fs::write(
        dir.join(CA_KEY_FILE),
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    match RelayIdentity::rotate_online(dir) {
        Err(IdentityError::Corrupt { path, .. }) => assert_eq!(path, dir.join(CA_KEY_FILE)),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn mixed_up_files_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    RelayIdentity::create(&a).unwrap();
    RelayIdentity::create(&b).unwrap();

    // Another relay's online key.
    let a_key = fs::read(a.join(ONLINE_KEY_FILE)).unwrap();
    fs::copy(b.join(ONLINE_KEY_FILE), a.join(ONLINE_KEY_FILE)).unwrap();
    match RelayIdentity::load(&a) {
        Err(IdentityError::KeyMismatch { key, cert }) => {
            assert_eq!(key, a.join(ONLINE_KEY_FILE));
            assert_eq!(cert, a.join(ONLINE_CERT_FILE));
        }
        other => panic!("expected KeyMismatch, got {other:?}"),
    }
    fs::write(a.join(ONLINE_KEY_FILE), a_key).unwrap();

    // Another relay's CA certificate: the online certificate is not signed by it.
    fs::copy(b.join(CA_CERT_FILE), a.join(CA_CERT_FILE)).unwrap();
    match RelayIdentity::load(&a) {
        Err(IdentityError::OnlineCertNotValid(_)) => {}
        other => panic!("expected OnlineCertNotValid, got {other:?}"),
    }
}

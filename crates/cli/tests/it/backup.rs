//! `smpx wallet backup FILE`: a copy that opens with the same passphrase and holds the
//! wallet's state, private to its owner, never over another file.

use std::path::Path;
use std::process::Output;

fn wallet(path: &Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_smpx"))
        .arg("wallet")
        .arg("--wallet")
        .arg(path)
        .args(args)
        .env("SMPX_WALLET_PASSPHRASE", "correct horse")
        .env_remove("SMPX_COORDINATOR")
        .output()
        .unwrap()
}

#[test]
fn a_backup_opens_with_the_same_passphrase_and_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("wallet.db");
    let copy = dir.path().join("copy.db");
    let init = wallet(&original, &["--json", "init"]);
    assert!(init.status.success(), "{init:?}");
    let out = wallet(&original, &["--json", "backup", copy.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");

    // The copy is a wallet with the same state (here: no vouchers, the same balance).
    for args in [["--json", "list"], ["--json", "balance"]] {
        let a = wallet(&original, &args);
        let b = wallet(&copy, &args);
        assert!(b.status.success(), "{b:?}");
        assert_eq!(a.stdout, b.stdout, "{args:?}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&copy).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // A second backup to the same file is refused and leaves the first intact.
    let before = std::fs::read(&copy).unwrap();
    let again = wallet(&original, &["backup", copy.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    assert_eq!(std::fs::read(&copy).unwrap(), before);
}

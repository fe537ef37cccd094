//! A restart with the transcript that verified last time does not verify it again (that
//! took tens of seconds); any other transcript, or other levels, is verified in full.

use smpx_coordinator::zk::{TRANSCRIPT_FILE, VERIFIED_FILE};
use smpx_coordinator::{ZkKeys, ZkKeysError};
use smpx_testkit::ceremony::LEVELS;
use std::sync::atomic::{AtomicU64, Ordering};

#[test]
fn a_verified_transcript_is_not_verified_again_on_restart() {
    let ceremony = smpx_testkit::ceremony::keys(LEVELS).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(TRANSCRIPT_FILE), &ceremony.transcript).unwrap();
    let reports = AtomicU64::new(0);
    let counting = |_: smpx_ceremony::Stage, _: u64, _: u64| {
        reports.fetch_add(1, Ordering::SeqCst);
    };

    let first = ZkKeys::load(dir.path(), LEVELS, &counting)
        .unwrap()
        .unwrap();
    assert!(
        reports.load(Ordering::SeqCst) > 0,
        "the first start verifies"
    );
    assert!(dir.path().join(VERIFIED_FILE).is_file());

    reports.store(0, Ordering::SeqCst);
    let again = ZkKeys::load(dir.path(), LEVELS, &counting)
        .unwrap()
        .unwrap();
    assert_eq!(reports.load(Ordering::SeqCst), 0, "the restart does not");
    assert_eq!(again.info(), first.info());

    // Other levels: not taken from the record, so refused (the circuit differs).
    assert!(matches!(
        ZkKeys::load(dir.path(), LEVELS + 1, &counting),
        Err(ZkKeysError::Rejected { .. })
    ));

    // Another transcript under the old record: verified again, and refused.
    let mut bad = ceremony.transcript.to_vec();
    let n = bad.len();
    bad[n - 40] ^= 0x20;
    std::fs::write(dir.path().join(TRANSCRIPT_FILE), &bad).unwrap();
    assert!(matches!(
        ZkKeys::load(dir.path(), LEVELS, &counting),
        Err(ZkKeysError::Rejected { .. })
    ));

    // A damaged record is ignored: the transcript is verified, and the record rewritten.
    std::fs::write(dir.path().join(TRANSCRIPT_FILE), &ceremony.transcript).unwrap();
    std::fs::write(dir.path().join(VERIFIED_FILE), b"{not json").unwrap();
    reports.store(0, Ordering::SeqCst);
    let third = ZkKeys::load(dir.path(), LEVELS, &counting)
        .unwrap()
        .unwrap();
    assert!(reports.load(Ordering::SeqCst) > 0);
    assert_eq!(third.info(), first.info());
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(VERIFIED_FILE)).unwrap()).unwrap();
    assert_eq!(record["transcript_sha256"], first.info().transcript_sha256);
}

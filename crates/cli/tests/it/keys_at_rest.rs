//! The issuer's signing keys are not in its database in a usable form: every row is
//! encrypted under the key-encryption key in the issuer's home (0600), rows written in plain
//! by an earlier version are encrypted at the next start, and the issuer still signs with
//! them.

use smpx_core::crypto::blind::IssuerSecretKey;
use smpx_issuer::wrap::KeyWrap;
use smpx_issuer::IssuerHome;
use smpx_store::issuer::IssuerStore;
use smpx_store::Db;
use smpx_testkit::net::{Network, Service};
use smpx_testkit::Backend;
use smpx_wallet::{KdfParams, Payment, Wallet};

#[tokio::test]
async fn a_database_dump_holds_no_signing_key_and_plain_rows_are_encrypted_at_start() {
    let mut net = Network::start(Backend::Sqlite).await.unwrap();
    let store = IssuerStore::open(
        Db::connect(net.database_url(Service::Issuer))
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    let rows = store.stored_secrets().await.unwrap();
    assert!(!rows.is_empty());
    for (_, stored) in &rows {
        assert!(KeyWrap::is_wrapped(stored));
        assert!(IssuerSecretKey::from_der(stored).is_err());
    }
    let kek_file = net.home(Service::Issuer).join("key-encryption-key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&kek_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // As an earlier version left it: every key in plain DER.
    net.stop_service(Service::Issuer).await.unwrap();
    let kek = IssuerHome::open(&net.home(Service::Issuer))
        .unwrap()
        .key_wrap;
    let mut plain = Vec::new();
    for (id, stored) in &rows {
        let der = kek.unwrap(id, stored).unwrap();
        assert!(IssuerSecretKey::from_der(&der).is_ok());
        store.replace_secret(id, stored, &der).await.unwrap();
        plain.push((*id, der));
    }
    net.start_service(Service::Issuer).await.unwrap();
    for ((id, stored), (_, der)) in store.stored_secrets().await.unwrap().iter().zip(&plain) {
        assert!(KeyWrap::is_wrapped(stored), "encrypted at start");
        assert_eq!(&kek.unwrap(id, stored).unwrap(), der, "the same key");
    }

    // And the issuer signs with them: a purchase completes and its voucher publishes.
    let dir = tempfile::tempdir().unwrap();
    let (w, _) = Wallet::create_with(
        &dir.path().join("w.db"),
        "pass",
        KdfParams::insecure_for_tests(),
    )
    .await
    .unwrap();
    let v = w
        .buy(&net.coordinator_url, &net.issuer_url, 10, Payment::Devnet)
        .await
        .unwrap();
    w.publish(&net.coordinator_url, v.id, std::time::Duration::ZERO)
        .await
        .unwrap();
    net.stop().await.unwrap();
}

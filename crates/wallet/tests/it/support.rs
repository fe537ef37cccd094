//! Helpers the wallet's test modules share.

use smpx_wallet::Wallet;

/// The id of `w`'s voucher with `commitment` (a restored copy numbers them anew).
pub async fn id_of(w: &Wallet, commitment: &str) -> i64 {
    let vouchers = w.vouchers().await.unwrap();
    vouchers
        .into_iter()
        .find(|v| v.commitment == commitment)
        .unwrap()
        .id
}

/// A new wallet `w.db` in `dir`, with cheap key derivation.
pub async fn new_wallet(dir: &tempfile::TempDir) -> Wallet {
    Wallet::create_with(
        &dir.path().join("w.db"),
        "pw",
        smpx_wallet::KdfParams::insecure_for_tests(),
    )
    .await
    .unwrap()
    .0
}

//! [`Wallet`]: opening the file, and the voucher flows against the services.
//!
//! Every flow writes what it needs to finish or retry *before* the network call that depends
//! on it (the reserved index, the blinding state, the sealed envelope), so a crash or a lost
//! answer leaves the voucher in a state the same call can pick up again, never in one where
//! a secret is reused or a payment is lost.

use crate::credits::Prepared;
use crate::db::{self, InitialMeta, NewPurchase, RecoveredVoucher, Transition};
use crate::error::{Action, WalletError};
use crate::model::{
    Balance, CreditRecord, Event, LocalState, Scheduled, SyncFailure, SyncReport, VoucherRecord,
};
use crate::vault::{self, aad, KdfParams, VaultKey};
use crate::zk::{self, HttpMmrs, MmrChoice, Protocol, RedeemOptions, RedeemProgress};
pub use smpx_core::api::Payment;
use smpx_core::api::{
    IssuerKeyInfo, IssuerServiceInfo, MmrListResponse, OperatorCreditReceipt, OperatorServiceInfo,
    ParamsResponse, PublishReceipt, PublishRequest, PurchaseRequest, PurchaseResponse,
    RedeemRequest, RedeemResponse, VoucherState, VoucherStatus, ZkInfo, ZkRedemption,
};
use smpx_core::crypto::blind::{
    BlindSignature, BlindedMessage, BlindingState, IssuerPublicKey, VoucherSignature,
};
use smpx_core::crypto::envelope::Envelope;
use smpx_core::crypto::field::FieldBytes;
use smpx_core::crypto::seed::WalletSeed;
use smpx_core::crypto::voucher::{commitment, nullifier, Commitment, VoucherSecret};
use smpx_core::crypto::{b64, CryptoError};
use smpx_core::issuance::voucher_message;
use smpx_core::ledger::valid_id;
use smpx_core::receipt::{Signed, OPERATOR_DOMAIN, PUBLISH_DOMAIN, REDEMPTION_DOMAIN};
use smpx_core::redemption::{seal_v1, PROTOCOL_V1, PROTOCOL_V2};
use smpx_core::rules::anonymity::{self, AnonymitySet};
use smpx_core::rules::publish_delay::{self, PublishDelay, Schedule};
use smpx_core::{keys, mmr, rotation, Amount, ErrorCode, NetworkParams};
use smpx_http_client::{ApiClient, ClientError};
use smpx_os::{Clock, Entropy, OsEntropy, SystemClock};
use smpx_zk::{RedeemPublic, RedeemWitness};
use sqlx::sqlite::SqlitePool;
use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use zeroize::Zeroizing;

/// A community owner's wallet: one SQLite file holding the encrypted seed, the vouchers and
/// the credits received for them. Cheap to share across tasks (`&self` everywhere).
pub struct Wallet {
    pool: SqlitePool,
    key: VaultKey,
    seed: WalletSeed,
    path: PathBuf,
    /// Every time the wallet records or checks against (the system clock by default).
    clock: Arc<dyn Clock>,
    /// Every random value the wallet draws: the recovery phrase, salt and nonces, blinding,
    /// envelopes, proofs, chat keys, the publish delay (the OS by default).
    entropy: Arc<dyn Entropy>,
}

impl fmt::Debug for Wallet {
    // The key and seed must never reach a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wallet")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Wallet {
    // ---------------------------------------------------------------------------------------
    // The file

    /// Creates a new wallet file at `path` with a fresh 24-word recovery phrase, which is
    /// returned to be shown to the user once (the file keeps only the seed derived from it).
    /// Refuses to touch an existing file.
    pub async fn create(path: &Path, passphrase: &str) -> Result<(Wallet, String), WalletError> {
        Self::create_with(path, passphrase, KdfParams::default()).await
    }

    /// [`Wallet::create`] with explicit key-derivation costs (see [`KdfParams`]).
    pub async fn create_with(
        path: &Path,
        passphrase: &str,
        kdf: KdfParams,
    ) -> Result<(Wallet, String), WalletError> {
        Self::create_using(
            path,
            passphrase,
            kdf,
            Arc::new(SystemClock),
            Arc::new(OsEntropy),
        )
        .await
    }

    /// [`Wallet::create_with`] with the clock and randomness injected (tests: a
    /// `ManualClock` and a `SeededEntropy` make the recovery phrase and every request
    /// reproducible).
    pub async fn create_using(
        path: &Path,
        passphrase: &str,
        kdf: KdfParams,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
    ) -> Result<(Wallet, String), WalletError> {
        kdf.validate()?;
        let phrase = WalletSeed::generate_mnemonic(&mut entropy.rng());
        let seed = WalletSeed::from_mnemonic(&phrase)?;
        let wallet = Self::init(path, passphrase, seed, kdf, clock, entropy).await?;
        Ok((wallet, phrase))
    }

    /// Creates a wallet file at `path` from an existing recovery phrase. The file starts
    /// empty: call [`Wallet::recover`] to find the vouchers that were published.
    pub async fn restore(
        path: &Path,
        passphrase: &str,
        mnemonic: &str,
    ) -> Result<Wallet, WalletError> {
        Self::restore_with(path, passphrase, mnemonic, KdfParams::default()).await
    }

    /// [`Wallet::restore`] with explicit key-derivation costs.
    pub async fn restore_with(
        path: &Path,
        passphrase: &str,
        mnemonic: &str,
        kdf: KdfParams,
    ) -> Result<Wallet, WalletError> {
        kdf.validate()?;
        let seed = WalletSeed::from_mnemonic(mnemonic)?;
        Self::init(
            path,
            passphrase,
            seed,
            kdf,
            Arc::new(SystemClock),
            Arc::new(OsEntropy),
        )
        .await
    }

    async fn init(
        path: &Path,
        passphrase: &str,
        seed: WalletSeed,
        kdf: KdfParams,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
    ) -> Result<Wallet, WalletError> {
        create_file(path)?;
        match Self::init_file(path, passphrase, seed, kdf, clock, entropy).await {
            Ok(w) => Ok(w),
            Err(e) => {
                // The file is ours and half made; leave nothing that would block a retry.
                for p in [
                    path.to_path_buf(),
                    sidecar(path, "-wal"),
                    sidecar(path, "-shm"),
                ] {
                    let _ = std::fs::remove_file(p);
                }
                Err(e)
            }
        }
    }

    async fn init_file(
        path: &Path,
        passphrase: &str,
        seed: WalletSeed,
        kdf: KdfParams,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
    ) -> Result<Wallet, WalletError> {
        let salt = vault::new_salt(&*entropy);
        let key = derive_key(passphrase, &salt, kdf, entropy.clone()).await?;
        let kdf_json = serde_json::to_vec(&kdf)
            .map_err(|e| WalletError::Corrupt(format!("encoding parameters: {e}")))?;
        let seed_blob = key.seal(aad::SEED, seed.as_bytes())?;
        let pool = db::connect(path).await?;
        let meta = InitialMeta {
            kdf: &kdf_json,
            salt: &salt,
            key_check: &key.key_check()?,
            seed: &seed_blob,
        };
        if let Err(e) = db::initialize(&pool, &meta).await {
            pool.close().await;
            return Err(e);
        }
        tracing::info!(path = %path.display(), "wallet created");
        Ok(Wallet {
            pool,
            key,
            seed,
            path: path.to_path_buf(),
            clock,
            entropy,
        })
    }

    /// Opens an existing wallet. A passphrase that does not unlock it is
    /// [`WalletError::WrongPassphrase`].
    pub async fn open(path: &Path, passphrase: &str) -> Result<Wallet, WalletError> {
        if !path.is_file() {
            return Err(WalletError::NoWallet(path.to_path_buf()));
        }
        let not_a_wallet = |reason: String| WalletError::NotAWallet {
            path: path.to_path_buf(),
            reason,
        };
        let pool = db::connect(path)
            .await
            .map_err(|e| not_a_wallet(e.to_string()))?;
        let result = match Self::unlock(&pool, passphrase, &not_a_wallet).await {
            Ok(unlocked) => db::migrate(&pool).await.map(|()| unlocked),
            Err(e) => Err(e),
        };
        match result {
            Ok((key, seed)) => Ok(Wallet {
                pool,
                key,
                seed,
                path: path.to_path_buf(),
                clock: Arc::new(SystemClock),
                entropy: Arc::new(OsEntropy),
            }),
            Err(e) => {
                pool.close().await;
                Err(e)
            }
        }
    }

    async fn unlock(
        pool: &SqlitePool,
        passphrase: &str,
        not_a_wallet: &(dyn Fn(String) -> WalletError + Sync),
    ) -> Result<(VaultKey, WalletSeed), WalletError> {
        let meta = |name: &'static str| async move {
            match db::meta(pool, name).await {
                Ok(Some(v)) => Ok(v),
                Ok(None) => Err(not_a_wallet(format!("its {name} record is missing"))),
                Err(e) => Err(not_a_wallet(e.to_string())),
            }
        };
        if meta("format").await? != db::FORMAT {
            return Err(not_a_wallet(
                "it was written by an unknown version of the wallet".into(),
            ));
        }
        let kdf: KdfParams = serde_json::from_slice(&meta("kdf").await?)
            .map_err(|e| WalletError::Corrupt(format!("key-derivation parameters: {e}")))?;
        let salt = meta("salt").await?;
        let key = derive_key(passphrase, &salt, kdf, Arc::new(OsEntropy)).await?;
        if !key.matches_key_check(&meta("key_check").await?)? {
            return Err(WalletError::WrongPassphrase);
        }
        let seed_bytes = key.open_known(aad::SEED, &meta("seed").await?)?;
        let seed: [u8; 64] = seed_bytes
            .as_slice()
            .try_into()
            .map_err(|_| WalletError::Corrupt("the stored seed has the wrong length".into()))?;
        Ok((key, WalletSeed::from_bytes(seed)))
    }

    /// Closes the file cleanly (folds the write-ahead log back into it).
    pub async fn close(self) {
        self.pool.close().await;
    }

    /// Where the wallet file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes a consistent copy of this wallet to `dest` (a new file, mode 0600), including
    /// what is still in the `-wal` file; copying `wallet.db` alone can miss that. The copy
    /// opens with the same passphrase.
    pub async fn backup(&self, dest: &Path) -> Result<(), WalletError> {
        // Made empty and private first, refusing an existing file (atomically).
        create_file(dest)?;
        let copied = db::backup(&self.pool, dest).await;
        if copied.is_err() {
            let _ = std::fs::remove_file(dest);
        }
        copied
    }

    // ---------------------------------------------------------------------------------------
    // Listing

    pub async fn vouchers(&self) -> Result<Vec<VoucherRecord>, WalletError> {
        Ok(db::vouchers(&self.pool)
            .await?
            .into_iter()
            .map(|r| r.record)
            .collect())
    }

    pub async fn voucher(&self, id: i64) -> Result<VoucherRecord, WalletError> {
        Ok(db::voucher(&self.pool, id).await?.record)
    }

    pub async fn credits(&self) -> Result<Vec<CreditRecord>, WalletError> {
        db::credits(&self.pool).await
    }

    /// Count and value of vouchers per state, and credits per operator.
    pub async fn balance(&self) -> Result<Balance, WalletError> {
        let mut b = Balance::from_records(&self.vouchers().await?, &self.credits().await?);
        b.credit_tokens = self.unspent_credits().await?;
        Ok(b)
    }

    /// The next derivation index a purchase will reserve.
    pub async fn next_index(&self) -> Result<u64, WalletError> {
        db::next_index(&self.pool).await
    }

    // ---------------------------------------------------------------------------------------
    // Buying

    /// Buys one voucher of `denomination` from the issuer at `issuer`, paying with `payment`.
    ///
    /// The issuer's key is taken from the coordinator's registry, never from the issuer: an
    /// issuer that handed this buyer a key of its own could recognise the voucher when it is
    /// published. If the issuer call fails the voucher stays [`LocalState::Buying`] and the
    /// error is returned; [`Wallet::resume_buy`] retries it.
    pub async fn buy(
        &self,
        coordinator: &str,
        issuer: &str,
        denomination: u64,
        payment: Payment,
    ) -> Result<VoucherRecord, WalletError> {
        self.buy_telling(coordinator, issuer, denomination, payment, |_| {})
            .await
    }

    /// [`Wallet::buy`], calling `before` with the crowd of the chosen key (see
    /// [`Wallet::key_crowd`]) once the key is known and before anything is sent to the
    /// issuer, so a caller can show it without asking the services twice.
    pub async fn buy_telling(
        &self,
        coordinator: &str,
        issuer: &str,
        denomination: u64,
        payment: Payment,
        before: impl FnOnce(&KeyCrowd),
    ) -> Result<VoucherRecord, WalletError> {
        let (issuer_api, info, p, key) = purchase_key(coordinator, issuer, denomination).await?;
        before(&KeyCrowd::of(&key));
        let id = self
            .begin_purchase(&info.issuer_id, denomination, &key, p.now)
            .await?;
        self.send_purchase(&issuer_api, id, payment).await
    }

    /// Retries the purchase of a voucher left in [`LocalState::Buying`], re-sending the same
    /// blinded message. With the same top-up code the issuer answers with the same signature
    /// instead of charging again.
    pub async fn resume_buy(
        &self,
        issuer: &str,
        id: i64,
        payment: Payment,
    ) -> Result<VoucherRecord, WalletError> {
        let row = db::voucher(&self.pool, id).await?;
        require(&row.record, &[LocalState::Buying], Action::ResumeBuy)?;
        let issuer_api = ApiClient::new(issuer);
        let info: IssuerServiceInfo = issuer_api.get("/v1/info").await?;
        if info.issuer_id != row.record.issuer_id {
            return Err(WalletError::Verification(format!(
                "{issuer} is issuer {:?}, but voucher {id} is being bought from {:?}",
                info.issuer_id, row.record.issuer_id
            )));
        }
        self.send_purchase(&issuer_api, id, payment).await
    }

    /// Deletes a voucher stuck in [`LocalState::Buying`] (e.g. its payment was refused), so it
    /// no longer shows in listings and balances. Its index stays spent. If the issuer did sign
    /// it and only the answer was lost, that purchase is given up too: try
    /// [`Wallet::resume_buy`] with the same payment first.
    pub async fn abandon_buy(&self, id: i64) -> Result<VoucherRecord, WalletError> {
        let row = db::voucher(&self.pool, id).await?;
        require(&row.record, &[LocalState::Buying], Action::AbandonBuy)?;
        if !db::delete_buying(&self.pool, id).await? {
            let now = db::voucher(&self.pool, id).await?;
            return Err(WalletError::InvalidState {
                id,
                state: now.record.state,
                action: Action::AbandonBuy,
            });
        }
        tracing::info!(voucher = id, "purchase abandoned");
        Ok(row.record)
    }

    /// Reserves an index, derives the voucher, blinds it for `key` and stores it as Buying.
    pub(crate) async fn begin_purchase(
        &self,
        issuer_id: &str,
        denomination: u64,
        key: &ChosenKey,
        now: u64,
    ) -> Result<i64, WalletError> {
        // Durable before s is derived: a crash after this point burns the index, never reuses it.
        let index = db::reserve_index(&self.pool).await?;
        let s = self.seed.voucher_secret(index);
        let c = commitment(&s, denomination);
        let (blinded, state) = key
            .public
            .blind(&voucher_message(&c), &mut self.entropy.rng())?;
        let state_json = Zeroizing::new(
            serde_json::to_vec(&state)
                .map_err(|e| WalletError::Corrupt(format!("encoding the blinding state: {e}")))?,
        );
        let blinding_enc = self.key.seal(&aad::blinding(index), &state_json)?;
        let id = db::insert_purchase(
            &self.pool,
            &NewPurchase {
                index,
                denomination,
                issuer_id,
                key_id: &key.info.key_id,
                commitment: &c.0.to_hex(),
                issuer_key: &key.spki,
                publish_deadline: key.info.publish_deadline,
                blinded_message: &blinded.0,
                blinding_enc: &blinding_enc,
                now: now.max(self.now()),
            },
        )
        .await?;
        tracing::info!(
            voucher = id,
            denomination,
            issuer = issuer_id,
            "purchase started"
        );
        Ok(id)
    }

    async fn send_purchase(
        &self,
        issuer_api: &ApiClient,
        id: i64,
        payment: Payment,
    ) -> Result<VoucherRecord, WalletError> {
        let row = db::voucher(&self.pool, id).await?;
        let blinded = row
            .blinded_message
            .clone()
            .ok_or_else(|| WalletError::Corrupt(format!("voucher {id} has no blinded message")))?;
        let req = PurchaseRequest {
            denomination: row.record.denomination,
            key_id: row.record.key_id.clone(),
            blinded_message: BlindedMessage(blinded),
            payment,
        };
        let resp: PurchaseResponse = match issuer_api.post("/v1/purchases", &req).await {
            Ok(r) => r,
            Err(e) => {
                tracing::info!(voucher = id, error = %e, "purchase not completed; it can be resumed");
                return Err(e.into());
            }
        };
        if resp.key_id != row.record.key_id || resp.denomination != row.record.denomination {
            return Err(WalletError::Verification(format!(
                "the issuer answered for key {} / denomination {}, not the key {} / denomination {} that was asked for",
                resp.key_id, resp.denomination, row.record.key_id, row.record.denomination
            )));
        }
        tracing::info!(voucher = id, method = %resp.payment.method, note = %resp.payment.note, "issuer signed");
        self.finish_purchase(id, &resp.blind_signature).await
    }

    /// Unblinds and verifies the issuer's signature, stores it, Buying → Bought.
    pub(crate) async fn finish_purchase(
        &self,
        id: i64,
        blind_signature: &BlindSignature,
    ) -> Result<VoucherRecord, WalletError> {
        let row = db::voucher(&self.pool, id).await?;
        if row.record.state.apply(Event::Signed).is_none() {
            return Err(WalletError::InvalidState {
                id,
                state: row.record.state,
                action: Action::ResumeBuy,
            });
        }
        let index = row.record.index;
        let spki = row
            .issuer_key
            .as_deref()
            .ok_or_else(|| WalletError::Corrupt(format!("voucher {id} has no issuer key")))?;
        let public = IssuerPublicKey::from_spki(spki)?;
        let state_blob = row
            .blinding_enc
            .as_deref()
            .ok_or_else(|| WalletError::Corrupt(format!("voucher {id} has no blinding state")))?;
        let state_json = self.key.open_known(&aad::blinding(index), state_blob)?;
        let state: BlindingState = serde_json::from_slice(&state_json)
            .map_err(|e| WalletError::Corrupt(format!("stored blinding state: {e}")))?;
        let c = parse_commitment(&row.record.commitment)?;
        // finalize verifies the unblinded signature: a wrong or tagged signature stops here.
        let sig = public
            .finalize(blind_signature, &state, &voucher_message(&c))
            .map_err(|e| {
                WalletError::Verification(format!(
                    "the issuer's blind signature does not give a valid signature under key {} ({e})",
                    row.record.key_id
                ))
            })?;
        let sig_json = Zeroizing::new(
            serde_json::to_vec(&sig)
                .map_err(|e| WalletError::Corrupt(format!("encoding the signature: {e}")))?,
        );
        let sig_blob = self.key.seal(&aad::signature(index), &sig_json)?;
        // When to publish: drawn now, stored with the signature (a crash cannot leave a
        // bought voucher without its schedule).
        let now = self.now();
        let due =
            Schedule::default().due_at(now, row.record.publish_deadline, &mut self.entropy.rng());
        if !db::mark_bought(&self.pool, id, &sig_blob, due, now).await? {
            // Finished concurrently by another call; report what is stored now.
            let now = db::voucher(&self.pool, id).await?;
            require(&now.record, &[LocalState::Bought], Action::ResumeBuy)?;
            return Ok(now.record);
        }
        tracing::info!(voucher = id, "voucher bought");
        self.voucher(id).await
    }

    // ---------------------------------------------------------------------------------------
    // Publishing

    /// Reschedules the publication of a bought voucher: an instant drawn from `schedule`
    /// counted from now (not from the purchase), never later than an hour before its key's
    /// publish deadline; [`Schedule::NoDelay`] makes it due at once. [`Wallet::buy`] already
    /// scheduled it with [`Schedule::default()`]; this is for a caller that wants another
    /// window. Refuses a window below the minimum ([`publish_delay::MIN_FLOOR`]).
    pub async fn schedule_publish(
        &self,
        id: i64,
        schedule: Schedule,
    ) -> Result<VoucherRecord, WalletError> {
        let schedule = schedule.check()?;
        let row = db::voucher(&self.pool, id).await?;
        require(&row.record, &[LocalState::Bought], Action::Publish)?;
        let now = self.now();
        let due = schedule.due_at(now, row.record.publish_deadline, &mut self.entropy.rng());
        if !db::set_publish_due(&self.pool, id, due, now).await? {
            let row = db::voucher(&self.pool, id).await?;
            require(&row.record, &[LocalState::Bought], Action::Publish)?;
        }
        tracing::info!(voucher = id, "publication scheduled");
        self.voucher(id).await
    }

    /// Publishes one bought voucher if its scheduled time has come, else refuses with
    /// [`WalletError::NotDueYet`] (reschedule it with [`Schedule::NoDelay`] to publish it
    /// now). A voucher without a schedule is scheduled first, as by [`Wallet::publish_due`].
    pub async fn publish_if_due(
        &self,
        coordinator: &str,
        id: i64,
    ) -> Result<VoucherRecord, WalletError> {
        let v = self.voucher(id).await?;
        require(&v, &[LocalState::Bought], Action::Publish)?;
        let due_at = self.due_at(&v).await?;
        if due_at > self.now() {
            return Err(WalletError::NotDueYet { id, due_at });
        }
        self.publish_after(coordinator, id, Duration::ZERO).await
    }

    /// Publishes every bought voucher whose scheduled time has come, in random order (so
    /// purchases of one key are not published in the order they were bought), and reports
    /// what it did and what is still to come. A bought voucher without a schedule (bought by
    /// an older version) is scheduled now, with [`Schedule::default()`], rather than
    /// published at once. One voucher failing (the coordinator unreachable, say) does not
    /// stop the others; it stays due and the next sync tries again.
    pub async fn publish_due(&self, coordinator: &str) -> Result<SyncReport, WalletError> {
        let now = self.now();
        let mut scheduled = Vec::new();
        for v in self.vouchers().await? {
            if v.state != LocalState::Bought {
                continue;
            }
            scheduled.push((v.id, self.due_at(&v).await?));
        }
        let order = publish_delay::due_now(&scheduled, now, &mut self.entropy.rng());
        let mut report = SyncReport::default();
        for id in order {
            match self.publish_after(coordinator, id, Duration::ZERO).await {
                Ok(v) => report.published.push(v),
                Err(e) => report.failed.push(SyncFailure {
                    id,
                    error: e.to_string(),
                }),
            }
        }
        report.scheduled = scheduled
            .into_iter()
            .filter(|(_, due)| *due > now)
            .map(|(id, due)| Scheduled { id, due_at: due })
            .collect();
        report.scheduled.sort_by_key(|s| (s.due_at, s.id));
        Ok(report)
    }

    /// When bought voucher `v` is to be published; one without a schedule (bought by an older
    /// version) is scheduled now with [`Schedule::default()`].
    async fn due_at(&self, v: &VoucherRecord) -> Result<u64, WalletError> {
        match v.publish_due_at {
            Some(due) => Ok(due),
            None => Ok(self
                .schedule_publish(v.id, Schedule::default())
                .await?
                .publish_due_at
                .unwrap_or_else(|| self.now())),
        }
    }

    /// Publishes a bought voucher at the coordinator after waiting as `delay` says, and
    /// verifies the coordinator's signed receipt. Publishing right after buying would let the
    /// issuer and coordinator match the two by time, so pass [`PublishDelay::default()`] (a
    /// random wait, [`smpx_core::rules::publish_delay`]) unless you mean to opt out with
    /// [`PublishDelay::Immediately`] or an exact `Duration`. The random wait is drawn from the
    /// wallet's entropy; [`Wallet::publish_with_rng`] takes another generator.
    pub async fn publish(
        &self,
        coordinator: &str,
        id: i64,
        delay: impl Into<PublishDelay>,
    ) -> Result<VoucherRecord, WalletError> {
        self.publish_with_rng(coordinator, id, delay, &mut self.entropy.rng())
            .await
    }

    /// [`Wallet::publish`], drawing a random delay from `rng`.
    pub async fn publish_with_rng<R: rand::RngCore + ?Sized>(
        &self,
        coordinator: &str,
        id: i64,
        delay: impl Into<PublishDelay>,
        rng: &mut R,
    ) -> Result<VoucherRecord, WalletError> {
        // Drawn before any await: the generator is not held across one.
        let wait = delay.into().check()?.choose(rng);
        self.publish_after(coordinator, id, wait).await
    }

    async fn publish_after(
        &self,
        coordinator: &str,
        id: i64,
        delay: Duration,
    ) -> Result<VoucherRecord, WalletError> {
        let row = db::voucher(&self.pool, id).await?;
        require(&row.record, &[LocalState::Bought], Action::Publish)?;
        tokio::time::sleep(delay).await;
        // Another process may have published it while we slept.
        let row = db::voucher(&self.pool, id).await?;
        require(&row.record, &[LocalState::Bought], Action::Publish)?;

        let coord = ApiClient::new(coordinator);
        let p: ParamsResponse = coord.get("/v1/params").await?;
        let r = &row.record;
        let c = parse_commitment(&r.commitment)?;
        let sig_blob = row
            .signature_enc
            .as_deref()
            .ok_or_else(|| WalletError::Corrupt(format!("voucher {id} has no signature")))?;
        let sig_json = self.key.open_known(&aad::signature(r.index), sig_blob)?;
        let signature: VoucherSignature = serde_json::from_slice(&sig_json)
            .map_err(|e| WalletError::Corrupt(format!("stored signature: {e}")))?;
        let req = PublishRequest {
            commitment: c,
            denomination: r.denomination,
            key_id: r.key_id.clone(),
            signature,
        };
        match coord
            .post::<_, Signed<PublishReceipt>>("/v1/vouchers", &req)
            .await
        {
            Ok(receipt) => {
                receipt
                    .verify(PUBLISH_DOMAIN, &p.receipt_key)
                    .map_err(|e| {
                        WalletError::Verification(format!("publish receipt: {}", e.message))
                    })?;
                let b = &receipt.body;
                if b.commitment != c || b.denomination != r.denomination || b.key_id != r.key_id {
                    return Err(WalletError::Verification(
                        "the publish receipt is for another voucher".into(),
                    ));
                }
                check_paths(&b.paths, &c, &p.params)?;
                db::put_paths(&self.pool, id, &b.paths).await?;
                let receipt_json = serde_json::to_string(&receipt)
                    .map_err(|e| WalletError::Corrupt(format!("encoding the receipt: {e}")))?;
                self.move_to(
                    r,
                    Event::Published,
                    Some((b.published_at, b.expires_at)),
                    Some(&receipt_json),
                )
                .await?;
                tracing::info!(voucher = id, "voucher published");
                self.voucher(id).await
            }
            Err(e) if e.code() == Some(ErrorCode::AlreadyPublished) => {
                // Most likely our own earlier publish whose answer was lost: confirm.
                let status = fetch_status(&coord, &c).await?.ok_or_else(|| {
                    WalletError::Verification(
                        "the coordinator says the voucher is already published but does not know it".into(),
                    )
                })?;
                self.apply_status(r, &status).await
            }
            Err(e) => {
                if e.code() == Some(ErrorCode::KeyNotValid)
                    && r.publish_deadline.is_some_and(|d| p.now >= d)
                {
                    self.move_to(r, Event::PublishWindowMissed, None, None)
                        .await?;
                }
                Err(e.into())
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // Redeeming

    /// Redeems a published voucher at the operator at `operator` with the default options:
    /// protocol 2 (zero knowledge), the older MMR, the path updated to the latest root. See
    /// [`Wallet::redeem_with`].
    pub async fn redeem(
        &self,
        coordinator: &str,
        operator: &str,
        id: i64,
    ) -> Result<CreditRecord, WalletError> {
        self.redeem_with(
            coordinator,
            operator,
            id,
            &RedeemOptions::default(),
            &|_| {},
        )
        .await
    }

    /// Redeems a published voucher at the operator at `operator`, and verifies the operator's
    /// receipt and the coordinator's receipt inside it.
    ///
    /// * **Protocol 1**: seals `(C, s, d, operator)` to the coordinator and hands it to the
    ///   operator; the coordinator learns which voucher it is.
    /// * **Protocol 2** (default): proves in zero knowledge that the wallet knows the secret
    ///   of a voucher in the chosen MMR ([`RedeemOptions::mmr`]), revealing its nullifier,
    ///   the MMR, the denomination and the operator only. With [`RedeemOptions::update_path`]
    ///   (default) the wallet first downloads every leaf of that MMR it does not hold yet and
    ///   the latest signed checkpoint (see the crate docs for what that costs and why);
    ///   without it, it proves against the root of the path in its publish receipt. The first
    ///   redemption against a coordinator's ceremony also downloads and verifies the ceremony
    ///   transcript (cached afterwards). `progress` hears about each stage; proving and
    ///   transcript verification run on the blocking thread pool.
    ///
    /// The request (envelope or proof) is stored (encrypted) before it is sent, and a retry
    /// with the same operator and protocol re-sends the same one, which the services answer
    /// with the receipt they stored. So after a lost answer, call this again with the same
    /// operator and protocol, even if the voucher shows as redeemed. (A protocol-2 request
    /// the coordinator refuses for good — a root or MMR it no longer accepts, a proof it
    /// rejects — is dropped, so the next attempt makes a new one.)
    pub async fn redeem_with(
        &self,
        coordinator: &str,
        operator: &str,
        id: i64,
        options: &RedeemOptions,
        progress: &(dyn Fn(RedeemProgress) + Sync),
    ) -> Result<CreditRecord, WalletError> {
        match self
            .redeem_attempt(coordinator, operator, id, options, progress)
            .await
        {
            // The operator refused the credit outputs (made under a keyset that stopped being
            // current, or already used): they were dropped, so one more attempt sends the same
            // redemption with new ones.
            Err(e)
                if matches!(
                    e.code(),
                    Some(ErrorCode::KeysetNotCurrent | ErrorCode::OutputReused)
                ) =>
            {
                tracing::info!(voucher = id, error = %e, "credit outputs refused; sending new ones");
                self.redeem_attempt(coordinator, operator, id, options, progress)
                    .await
            }
            other => other,
        }
    }

    async fn redeem_attempt(
        &self,
        coordinator: &str,
        operator: &str,
        id: i64,
        options: &RedeemOptions,
        progress: &(dyn Fn(RedeemProgress) + Sync),
    ) -> Result<CreditRecord, WalletError> {
        let row = db::voucher(&self.pool, id).await?;
        let r = &row.record;
        let retry_only = match r.state {
            LocalState::Published => false,
            LocalState::Redeemed if !row.has_credit => true,
            _ => {
                return Err(WalletError::InvalidState {
                    id,
                    state: r.state,
                    action: Action::Redeem,
                })
            }
        };
        let op_api = ApiClient::new(operator);
        let op = crate::credits::operator_info(&op_api).await?;
        let coord = ApiClient::new(coordinator);
        let p: ParamsResponse = coord.get("/v1/params").await?;
        let to = Operator {
            api: &op_api,
            info: &op,
        };
        match options.protocol {
            Protocol::V1 => self.redeem_v1(r, retry_only, &to, &p).await,
            Protocol::V2 => {
                self.redeem_v2(r, retry_only, &to, &coord, &p, options, progress)
                    .await
            }
        }
    }

    async fn redeem_v1(
        &self,
        r: &VoucherRecord,
        retry_only: bool,
        to: &Operator<'_>,
        p: &ParamsResponse,
    ) -> Result<CreditRecord, WalletError> {
        let id = r.id;
        let operator_id = &to.info.operator_id;
        let envelope_key = hex::encode(p.envelope_key.0);
        let envelope_aad = aad::envelope(r.index, operator_id, &envelope_key);

        let stored = db::envelope(&self.pool, id, operator_id, &envelope_key).await?;
        let blob = match stored {
            Some(b) => b,
            // Redeemed elsewhere (another copy of the wallet, or another operator): there is
            // nothing of ours to retry here.
            None if retry_only => {
                return Err(WalletError::InvalidState {
                    id,
                    state: r.state,
                    action: Action::Redeem,
                })
            }
            None => {
                let s = self.secret_of(r)?;
                let env = seal_v1(
                    &p.envelope_key,
                    &s,
                    r.denomination,
                    operator_id,
                    &mut self.entropy.rng(),
                )
                .map_err(|e| {
                    WalletError::Verification(format!(
                        "cannot seal to the coordinator's envelope key: {}",
                        e.message
                    ))
                })?;
                let env_json =
                    Zeroizing::new(serde_json::to_vec(&env).map_err(|e| {
                        WalletError::Corrupt(format!("encoding the envelope: {e}"))
                    })?);
                let blob = self.key.seal(&envelope_aad, &env_json)?;
                db::put_envelope(
                    &self.pool,
                    id,
                    operator_id,
                    &envelope_key,
                    &blob,
                    self.now(),
                )
                .await?
            }
        };
        let env_json = self.key.open_known(&envelope_aad, &blob)?;
        let envelope: Envelope = serde_json::from_slice(&env_json)
            .map_err(|e| WalletError::Corrupt(format!("stored envelope: {e}")))?;
        let digest = envelope.digest();
        let issuance = self
            .issuance_outputs(to.api, operator_id, id, &envelope_key, r.value())
            .await?;
        let req = RedeemRequest {
            version: PROTOCOL_V1,
            envelope: Some(envelope),
            zk: None,
            outputs: issuance.as_ref().map(Prepared::messages),
        };
        self.submit(r, to, p, &req, &digest, &envelope_key, issuance.as_ref())
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn redeem_v2(
        &self,
        r: &VoucherRecord,
        retry_only: bool,
        to: &Operator<'_>,
        coord: &ApiClient,
        p: &ParamsResponse,
        options: &RedeemOptions,
        progress: &(dyn Fn(RedeemProgress) + Sync),
    ) -> Result<CreditRecord, WalletError> {
        let id = r.id;
        let operator_id = &to.info.operator_id;
        if !p.params.protocol_versions.contains(&PROTOCOL_V2) {
            return Err(WalletError::ZkUnavailable {
                reason: format!("its protocol versions are {:?}", p.params.protocol_versions),
            });
        }
        progress(RedeemProgress::FetchingKeys);
        let zk_info = zk::zk_info(coord).await?;
        // A pending request is only good for the ceremony keys it was proven with.
        let request_key = format!("zk:{}", zk_info.transcript_sha256);
        let request_aad = aad::zk_request(r.index, operator_id, &request_key);

        let stored = db::envelope(&self.pool, id, operator_id, &request_key).await?;
        let blob = match stored {
            Some(b) => b,
            None if retry_only => {
                return Err(WalletError::InvalidState {
                    id,
                    state: r.state,
                    action: Action::Redeem,
                })
            }
            None => {
                let zk = self
                    .prove_v2(r, to, coord, p, &zk_info, options, progress)
                    .await?;
                let json = serde_json::to_vec(&zk)
                    .map_err(|e| WalletError::Corrupt(format!("encoding the redemption: {e}")))?;
                let blob = self.key.seal(&request_aad, &json)?;
                db::put_envelope(&self.pool, id, operator_id, &request_key, &blob, self.now())
                    .await?
            }
        };
        let json = self.key.open_known(&request_aad, &blob)?;
        let zk: ZkRedemption = serde_json::from_slice(&json)
            .map_err(|e| WalletError::Corrupt(format!("stored redemption: {e}")))?;
        let digest = zk.digest();
        let issuance = self
            .issuance_outputs(to.api, operator_id, id, &request_key, r.value())
            .await?;
        let req = RedeemRequest {
            version: PROTOCOL_V2,
            envelope: None,
            zk: Some(zk),
            outputs: issuance.as_ref().map(Prepared::messages),
        };
        progress(RedeemProgress::Submitting);
        self.submit(r, to, p, &req, &digest, &request_key, issuance.as_ref())
            .await
    }

    /// Makes a protocol-2 redemption of voucher `r` for operator `to`.
    #[allow(clippy::too_many_arguments)]
    async fn prove_v2(
        &self,
        r: &VoucherRecord,
        to: &Operator<'_>,
        coord: &ApiClient,
        p: &ParamsResponse,
        zk_info: &ZkInfo,
        options: &RedeemOptions,
        progress: &(dyn Fn(RedeemProgress) + Sync),
    ) -> Result<ZkRedemption, WalletError> {
        let id = r.id;
        let s = self.secret_of(r)?;
        let c = parse_commitment(&r.commitment)?;
        let leaf = c.0.to_fr()?;
        let paths = db::paths(&self.pool, id).await?;
        let mmr_id = chosen_mmr(r, &paths, p, options.mmr)?;
        // The guard, before anything is downloaded or proven.
        let list: MmrListResponse = coord.get("/v1/mmrs").await?;
        let set = anonymity_in(r, &paths, mmr_id, &list, p, options.update_path)?;
        if let anonymity::Decision::Refuse { set, threshold } =
            anonymity::decide(&set, &options.requirement())
        {
            return Err(WalletError::AnonymityTooSmall {
                id,
                denomination: r.denomination,
                set,
                threshold,
                updated: options.update_path,
                now: p.now,
            });
        }
        let stored_path = paths.iter().find(|pr| pr.mmr.id == mmr_id);
        let levels = stored_path.map_or(p.params.mmr_levels, |pr| pr.mmr.levels);
        if zk_info.levels != levels {
            return Err(WalletError::ZkUnavailable {
                reason: format!(
                    "its circuit is for MMRs of {} levels, but MMR {mmr_id} has {levels}",
                    zk_info.levels
                ),
            });
        }
        if !options.update_path && stored_path.is_none() {
            return Err(WalletError::NoStoredPath { id, mmr_id });
        }
        let pk = zk::proving_key(&self.path, coord.base_url(), zk_info, progress).await?;

        let path = if options.update_path {
            let synced = zk::sync_mmr(
                &self.pool,
                &HttpMmrs(coord),
                &p.receipt_key,
                mmr_id,
                levels,
                progress,
                &*self.clock,
            )
            .await?;
            let size = synced.checkpoint.body.size;
            let index = match stored_path {
                Some(pr) => {
                    if synced.mmr.leaf(pr.leaf_index) != Some(leaf) {
                        return Err(WalletError::LeafMismatch {
                            id,
                            mmr_id,
                            leaf_index: Some(pr.leaf_index),
                        });
                    }
                    pr.leaf_index
                }
                // Searched locally, among every leaf: the coordinator is not asked.
                None => (0..size)
                    .find(|&i| synced.mmr.leaf(i) == Some(leaf))
                    .ok_or(WalletError::LeafMismatch {
                        id,
                        mmr_id,
                        leaf_index: None,
                    })?,
            };
            if index >= size {
                return Err(WalletError::LeafMismatch {
                    id,
                    mmr_id,
                    leaf_index: Some(index),
                });
            }
            synced.mmr.proof_at(index, size).map_err(|e| {
                WalletError::Corrupt(format!("membership proof in MMR {mmr_id}: {e}"))
            })?
        } else {
            stored_path
                .cloned()
                .ok_or(WalletError::NoStoredPath { id, mmr_id })?
        };
        let root = path
            .root()
            .map_err(|e| WalletError::Verification(format!("membership path: {e}")))?;
        mmr::verify(&root, &leaf, &path).map_err(|_| WalletError::LeafMismatch {
            id,
            mmr_id,
            leaf_index: Some(path.leaf_index),
        })?;
        let circuit_path = path
            .circuit_path()
            .map_err(|e| WalletError::Verification(format!("membership path: {e}")))?;
        let nf = nullifier(&s).0;
        let public = RedeemPublic {
            root,
            nullifier: nf.to_fr()?,
            denomination: r.denomination,
            binding: smpx_zk::binding_hash(&to.info.operator_id, 0),
        };
        progress(RedeemProgress::Proving);
        let proof = zk::prove(
            pk,
            public,
            RedeemWitness {
                secret: s,
                path: circuit_path,
            },
            self.entropy.clone(),
        )
        .await?;
        tracing::info!(
            voucher = id,
            mmr = mmr_id,
            size = path.size,
            "redemption proof made"
        );
        Ok(ZkRedemption {
            mmr_id,
            root: FieldBytes::from_fr(&root),
            nullifier: nf,
            denomination: r.denomination,
            fee: Amount::ZERO,
            proof: proof.to_bytes().to_vec(),
        })
    }

    /// Sends a redemption to the operator, verifies the receipts (and the credits issued
    /// with it, DLEQ against the operator's published keys) and records the credit.
    #[allow(clippy::too_many_arguments)]
    async fn submit(
        &self,
        r: &VoucherRecord,
        to: &Operator<'_>,
        p: &ParamsResponse,
        req: &RedeemRequest,
        digest: &[u8; 32],
        request_key: &str,
        issuance: Option<&Prepared>,
    ) -> Result<CreditRecord, WalletError> {
        let id = r.id;
        let answer: RedeemResponse = match to.api.post("/v1/redeem", req).await {
            Ok(answer) => answer,
            Err(e) => {
                // Outputs the operator will never sign: make new ones next time.
                if issuance.is_some()
                    && matches!(
                        e.code(),
                        Some(
                            ErrorCode::KeysetNotCurrent
                                | ErrorCode::OutputReused
                                | ErrorCode::UnknownKeyset
                                | ErrorCode::AmountMismatch
                                | ErrorCode::InvalidAmount
                        )
                    )
                {
                    self.drop_issuance(id, &to.info.operator_id, request_key)
                        .await?;
                }
                let event = match e.code() {
                    Some(ErrorCode::AlreadyRedeemed) => Some(Event::Redeemed),
                    Some(ErrorCode::VoucherExpired) => Some(Event::Released),
                    _ => None,
                };
                if let Some(event) = event {
                    if r.state.apply(event).is_some() {
                        self.move_to(r, event, None, None).await?;
                    }
                }
                // A proof refused for good: drop it, so that the next attempt makes a new one.
                if req.zk.is_some()
                    && matches!(
                        e.code(),
                        Some(
                            ErrorCode::InvalidProof
                                | ErrorCode::MalformedProof
                                | ErrorCode::UnknownRoot
                                | ErrorCode::RetiredRoot
                                | ErrorCode::UnknownMmr
                                | ErrorCode::OperatorMismatch
                        )
                    )
                {
                    db::delete_envelope(&self.pool, id, &to.info.operator_id, request_key).await?;
                }
                return Err(e.into());
            }
        };
        let receipt = answer.receipt;
        verify_credit(
            &receipt,
            to.info,
            p,
            r.denomination,
            digest,
            req.zk.as_ref(),
        )?;
        let tokens = match (issuance, &answer.signatures) {
            (Some(prepared), Some(signatures)) => self.issued_tokens(
                &to.info.operator_id,
                id,
                prepared,
                signatures,
                receipt.body.credited,
            )?,
            (Some(_), None) => {
                tracing::warn!(
                    voucher = id,
                    "the operator answered with a receipt but no credits"
                );
                Vec::new()
            }
            (None, _) => Vec::new(),
        };
        let issued = Amount(tokens.iter().map(|t| t.amount).sum());
        let credit = CreditRecord {
            voucher_id: id,
            operator_id: to.info.operator_id.clone(),
            credited: receipt.body.credited,
            receipt: serde_json::to_value(&receipt)
                .map_err(|e| WalletError::Corrupt(format!("encoding the receipt: {e}")))?,
            at: receipt.body.issued_at,
            protocol: req.version,
            issued,
        };
        db::record_credit(&self.pool, &credit, &tokens, self.now()).await?;
        tracing::info!(voucher = id, operator = %to.info.operator_id, credited = %credit.credited, protocol = req.version, "voucher redeemed");
        Ok(credit)
    }

    /// Voucher `id`'s anonymity set if it were redeemed now with protocol 2 and `options`
    /// (which MMR, whether the path is updated): the vouchers of its denomination in that
    /// MMR, and in its other MMR if that one still accepts redemptions. From the
    /// coordinator's public list of MMRs (`GET /v1/mmrs`, the same request from every
    /// wallet, so asking reveals nothing); the split by denomination is its statement. A
    /// protocol-1 redemption's set is always [`anonymity::V1_SET`].
    pub async fn anonymity(
        &self,
        coordinator: &str,
        id: i64,
        options: &RedeemOptions,
    ) -> Result<AnonymitySet, WalletError> {
        let r = self.voucher(id).await?;
        if r.state != LocalState::Published {
            return Err(WalletError::InvalidState {
                id,
                state: r.state,
                action: Action::Redeem,
            });
        }
        let (p, list) = public_mmrs(coordinator).await?;
        self.set_of(&r, &list, &p, options).await
    }

    /// [`Wallet::anonymity`] of every published voucher, asking the coordinator once for
    /// all of them (a failure to reach it is the `Err`; a voucher whose set cannot be
    /// worked out has its own).
    pub async fn anonymity_sets(
        &self,
        coordinator: &str,
        options: &RedeemOptions,
    ) -> Result<Vec<(i64, Result<AnonymitySet, WalletError>)>, WalletError> {
        let (p, list) = public_mmrs(coordinator).await?;
        let mut out = Vec::new();
        for r in self.vouchers().await? {
            if r.state == LocalState::Published {
                out.push((r.id, self.set_of(&r, &list, &p, options).await));
            }
        }
        Ok(out)
    }

    async fn set_of(
        &self,
        r: &VoucherRecord,
        list: &MmrListResponse,
        p: &ParamsResponse,
        options: &RedeemOptions,
    ) -> Result<AnonymitySet, WalletError> {
        let paths = db::paths(&self.pool, r.id).await?;
        let mmr_id = chosen_mmr(r, &paths, p, options.mmr)?;
        anonymity_in(r, &paths, mmr_id, list, p, options.update_path)
    }

    /// How many vouchers were published under the key a purchase of `denomination` from the
    /// issuer at `issuer` would use now (the crowd the buyer joins; the coordinator's
    /// statement). Below [`anonymity::SMALL_KEY_CROWD`] the issuer and the coordinator
    /// together can link the purchase to its publication by the key alone.
    pub async fn key_crowd(
        &self,
        coordinator: &str,
        issuer: &str,
        denomination: u64,
    ) -> Result<KeyCrowd, WalletError> {
        let (_, _, _, key) = purchase_key(coordinator, issuer, denomination).await?;
        Ok(KeyCrowd::of(&key))
    }

    /// The voucher's secret, after checking that it gives the stored commitment.
    fn secret_of(&self, r: &VoucherRecord) -> Result<VoucherSecret, WalletError> {
        let s = self.seed.voucher_secret(r.index);
        if commitment(&s, r.denomination).0.to_hex() != r.commitment {
            return Err(WalletError::Corrupt(format!(
                "voucher {}'s commitment is not derived from this wallet's seed",
                r.id
            )));
        }
        Ok(s)
    }

    /// The membership paths stored from the voucher's publish receipt (v0.2), oldest MMR first;
    /// empty for vouchers recovered or confirmed without a receipt.
    pub async fn paths(&self, id: i64) -> Result<Vec<mmr::Proof>, WalletError> {
        db::voucher(&self.pool, id).await?;
        db::paths(&self.pool, id).await
    }

    // ---------------------------------------------------------------------------------------
    // Following the coordinator

    /// Asks the coordinator about every bought or published voucher and updates its state:
    /// published (a publish whose answer was lost), redeemed, released at expiry (→ expired),
    /// or never published within its key's window (→ expired). Returns the vouchers that
    /// changed.
    ///
    /// Privacy: the coordinator sees all of this wallet's commitments asked for together,
    /// from one address, and can link them; run it as rarely as is useful.
    pub async fn refresh(&self, coordinator: &str) -> Result<Vec<VoucherRecord>, WalletError> {
        let coord = ApiClient::new(coordinator);
        let p: ParamsResponse = coord.get("/v1/params").await?;
        let mut changed = Vec::new();
        for row in db::vouchers(&self.pool).await? {
            let r = &row.record;
            if !matches!(r.state, LocalState::Bought | LocalState::Published) {
                continue;
            }
            let c = parse_commitment(&r.commitment)?;
            match fetch_status(&coord, &c).await? {
                Some(status) => {
                    let after = self.apply_status(r, &status).await?;
                    if after.state != r.state {
                        changed.push(after);
                    }
                }
                None => {
                    if r.state == LocalState::Bought
                        && r.publish_deadline.is_some_and(|d| p.now >= d)
                    {
                        self.move_to(r, Event::PublishWindowMissed, None, None)
                            .await?;
                        changed.push(self.voucher(r.id).await?);
                    } else if r.state == LocalState::Published {
                        tracing::warn!(
                            voucher = r.id,
                            "the coordinator does not know a voucher it published"
                        );
                    }
                }
            }
        }
        Ok(changed)
    }

    /// After [`Wallet::restore`]: finds this seed's published vouchers at the coordinator.
    ///
    /// For `i = 0, 1, …` derives `s_i` and, for each of the network's denominations, looks up
    /// `C = commitment(s_i, d)`. Stops after `gap_limit` consecutive indices where nothing is
    /// found (indices burned by failed purchases leave gaps, so keep it well above 1). Adds
    /// what it finds and moves `next_index` past the last index in use, so new purchases never
    /// reuse a recovered secret. Calls `progress(i)` before scanning index `i`.
    ///
    /// Vouchers that were bought but never published cannot be recovered: only the issuer
    /// ever saw them, blinded. Privacy: like [`Wallet::refresh`], the lookups let the
    /// coordinator link these commitments to one another.
    pub async fn recover(
        &self,
        coordinator: &str,
        gap_limit: u64,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Vec<VoucherRecord>, WalletError> {
        let coord = ApiClient::new(coordinator);
        let p: ParamsResponse = coord.get("/v1/params").await?;
        let local = db::vouchers(&self.pool).await?;
        let known: HashSet<String> = local.iter().map(|r| r.record.commitment.clone()).collect();
        let local_indices: HashSet<u64> = local.iter().map(|r| r.record.index).collect();

        let mut found = Vec::new();
        let mut last_used: Option<u64> = None;
        let mut gap = 0u64;
        let mut index = 0u64;
        while gap < gap_limit {
            progress(index);
            let s = self.seed.voucher_secret(index);
            let mut used = local_indices.contains(&index);
            for &d in &p.params.denominations {
                let c = commitment(&s, d);
                let hex_c = c.0.to_hex();
                if known.contains(&hex_c) {
                    used = true;
                    continue;
                }
                let Some(status) = fetch_status(&coord, &c).await? else {
                    continue;
                };
                if status.denomination != d {
                    return Err(WalletError::Verification(format!(
                        "the coordinator lists commitment {hex_c} with denomination {}, but it commits to {d}",
                        status.denomination
                    )));
                }
                used = true;
                let state = match status.state {
                    VoucherState::Live => LocalState::Published,
                    VoucherState::Redeemed => LocalState::Redeemed,
                    VoucherState::Released => LocalState::Expired,
                };
                let inserted = db::insert_recovered(
                    &self.pool,
                    &RecoveredVoucher {
                        index,
                        denomination: d,
                        state,
                        commitment: &hex_c,
                        issuer_id: &status.issuer_id,
                        key_id: &status.key_id,
                        published_at: status.published_at,
                        expires_at: status.expires_at,
                        now: self.now(),
                    },
                )
                .await?;
                if let Some(id) = inserted {
                    tracing::info!(voucher = id, index, denomination = d, %state, "voucher recovered");
                    found.push(self.voucher(id).await?);
                }
            }
            if used {
                last_used = Some(index);
                gap = 0;
            } else {
                gap += 1;
            }
            index = index.saturating_add(1);
        }
        if let Some(last) = last_used {
            db::raise_next_index(&self.pool, last.saturating_add(1)).await?;
        }
        Ok(found)
    }

    // ---------------------------------------------------------------------------------------
    // Helpers

    /// Applies what the coordinator says about a voucher, if it moves the local state.
    async fn apply_status(
        &self,
        r: &VoucherRecord,
        status: &VoucherStatus,
    ) -> Result<VoucherRecord, WalletError> {
        if status.commitment.0.to_hex() != r.commitment || status.denomination != r.denomination {
            return Err(WalletError::Verification(format!(
                "the coordinator's status for voucher {} names another commitment or denomination",
                r.id
            )));
        }
        let event = match status.state {
            VoucherState::Live => Event::Published,
            VoucherState::Redeemed => Event::Redeemed,
            VoucherState::Released => Event::Released,
        };
        if r.state.apply(event).is_some() {
            self.move_to(
                r,
                event,
                Some((status.published_at, status.expires_at)),
                None,
            )
            .await?;
        }
        self.voucher(r.id).await
    }

    /// One state-machine step, compare-and-set on the state `r` was read in.
    async fn move_to(
        &self,
        r: &VoucherRecord,
        event: Event,
        times: Option<(u64, u64)>,
        publish_receipt: Option<&str>,
    ) -> Result<(), WalletError> {
        let to = r.state.apply(event).ok_or(WalletError::InvalidState {
            id: r.id,
            state: r.state,
            action: match event {
                Event::Signed => Action::ResumeBuy,
                Event::Published | Event::PublishWindowMissed => Action::Publish,
                Event::Redeemed | Event::Released => Action::Redeem,
            },
        })?;
        let moved = db::transition(
            &self.pool,
            &Transition {
                id: r.id,
                from: r.state,
                to,
                published_at: times.map(|t| t.0),
                expires_at: times.map(|t| t.1),
                publish_receipt,
                now: self.now(),
            },
        )
        .await?;
        if moved {
            tracing::info!(voucher = r.id, from = %r.state, %to, "voucher state changed");
        } else {
            tracing::debug!(
                voucher = r.id,
                "voucher changed concurrently; transition skipped"
            );
        }
        Ok(())
    }

    /// Now, by the wallet's clock.
    pub(crate) fn now(&self) -> u64 {
        self.clock.now()
    }

    /// The wallet's clock.
    pub(crate) fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The wallet's source of randomness.
    pub(crate) fn entropy(&self) -> &Arc<dyn Entropy> {
        &self.entropy
    }

    /// The same wallet reading time from `clock` from now on.
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        Self { clock, ..self }
    }

    /// The same wallet drawing every random value from `entropy` from now on.
    pub fn with_entropy(self, entropy: Arc<dyn Entropy>) -> Self {
        Self {
            key: self.key.with_entropy(entropy.clone()),
            entropy,
            ..self
        }
    }

    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub(crate) fn vault_key(&self) -> &VaultKey {
        &self.key
    }

    pub(crate) fn seed(&self) -> &WalletSeed {
        &self.seed
    }
}

/// The issuer at `issuer`, the coordinator's parameters and the key a purchase of
/// `denomination` from it would blind for now.
async fn purchase_key(
    coordinator: &str,
    issuer: &str,
    denomination: u64,
) -> Result<(ApiClient, IssuerServiceInfo, ParamsResponse, ChosenKey), WalletError> {
    let issuer_api = ApiClient::new(issuer);
    let info: IssuerServiceInfo = issuer_api.get("/v1/info").await?;
    if !valid_id(&info.issuer_id) {
        return Err(WalletError::Verification(format!(
            "the issuer's id {:?} is not a valid id",
            info.issuer_id
        )));
    }
    if !info.denominations.contains(&denomination) {
        return Err(WalletError::UnsupportedDenomination {
            denomination,
            available: info.denominations,
        });
    }
    let coord = ApiClient::new(coordinator);
    let p: ParamsResponse = coord.get("/v1/params").await?;
    if !p.params.is_denomination(denomination) {
        return Err(WalletError::UnsupportedDenomination {
            denomination,
            available: p.params.denominations,
        });
    }
    let listed: Vec<IssuerKeyInfo> = coord
        .get(&format!(
            "/v1/issuer-keys?issuer={}&denomination={denomination}",
            info.issuer_id
        ))
        .await?;
    let key = current_key(&p, &info.issuer_id, denomination, listed)?;
    Ok((issuer_api, info, p, key))
}

/// The vouchers published under the key a purchase would use (see [`Wallet::key_crowd`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KeyCrowd {
    pub key_id: String,
    pub issuer_id: String,
    pub denomination: u64,
    pub published_count: u64,
}

impl KeyCrowd {
    fn of(key: &ChosenKey) -> KeyCrowd {
        KeyCrowd {
            key_id: key.info.key_id.clone(),
            issuer_id: key.info.issuer_id.clone(),
            denomination: key.info.denomination,
            published_count: key.info.published_count,
        }
    }
}

/// The coordinator's parameters and its public list of MMRs.
async fn public_mmrs(coordinator: &str) -> Result<(ParamsResponse, MmrListResponse), WalletError> {
    let coord = ApiClient::new(coordinator);
    let p: ParamsResponse = coord.get("/v1/params").await?;
    let list: MmrListResponse = coord.get("/v1/mmrs").await?;
    Ok((p, list))
}

/// The anonymity set of redeeming `r` against `mmr_id`, from the coordinator's `list` (see
/// [`Wallet::anonymity`]).
fn anonymity_in(
    r: &VoucherRecord,
    paths: &[mmr::Proof],
    mmr_id: u64,
    list: &MmrListResponse,
    p: &ParamsResponse,
    updated: bool,
) -> Result<AnonymitySet, WalletError> {
    let accepting: Vec<u64> = voucher_mmrs(r, paths, p)?
        .into_iter()
        .filter(|&k| rotation::mmr_accepts_redemptions(&p.params, k, p.now))
        .collect();
    let leaf_index = |k: u64| {
        paths
            .iter()
            .find(|pr| pr.mmr.id == k)
            .map(|pr| pr.leaf_index)
    };
    zk::anonymity_set(
        &accepting,
        mmr_id,
        &list.mmrs,
        r.denomination,
        updated,
        leaf_index,
    )
    .ok_or_else(|| {
        WalletError::Verification(format!(
            "the coordinator does not list MMR {mmr_id}, which voucher {} is in",
            r.id
        ))
    })
}

/// The MMRs voucher `r` is in: from its publish receipt (`paths`), or else (recovered, or
/// the receipt was lost) the ones open when it was published.
fn voucher_mmrs(
    r: &VoucherRecord,
    paths: &[mmr::Proof],
    p: &ParamsResponse,
) -> Result<Vec<u64>, WalletError> {
    let mmrs: Vec<u64> = paths.iter().map(|pr| pr.mmr.id).collect();
    if !mmrs.is_empty() {
        return Ok(mmrs);
    }
    let published = r.published_at.ok_or_else(|| {
        WalletError::Corrupt(format!("published voucher {} has no publish time", r.id))
    })?;
    Ok(rotation::open_mmrs(&p.params, published))
}

/// The MMR a protocol-2 redemption of `r` uses with `choice`.
fn chosen_mmr(
    r: &VoucherRecord,
    paths: &[mmr::Proof],
    p: &ParamsResponse,
    choice: MmrChoice,
) -> Result<u64, WalletError> {
    let mmrs = voucher_mmrs(r, paths, p)?;
    zk::choose_mmr(&p.params, &mmrs, choice, p.now)
        .ok_or(WalletError::NoRedeemableMmr { id: r.id, mmrs })
}

/// The issuer key to blind for: the coordinator's registered key of this issuer and
/// denomination for the current period.
pub(crate) struct ChosenKey {
    pub info: IssuerKeyInfo,
    pub public: IssuerPublicKey,
    pub spki: Vec<u8>,
}

pub(crate) fn current_key(
    p: &ParamsResponse,
    issuer_id: &str,
    denomination: u64,
    listed: Vec<IssuerKeyInfo>,
) -> Result<ChosenKey, WalletError> {
    let period = keys::period_at(&p.params, p.now);
    let mut current: Vec<IssuerKeyInfo> = listed
        .into_iter()
        .filter(|k| {
            k.issuer_id == issuer_id && k.denomination == denomination && k.period == period
        })
        .collect();
    let info = match current.len() {
        0 => {
            return Err(WalletError::NoIssuerKey {
                issuer: issuer_id.to_owned(),
                denomination,
            })
        }
        1 => current.remove(0),
        // One key per issuer, denomination and period is what keeps buyers in one crowd.
        _ => {
            return Err(WalletError::Verification(format!(
                "the coordinator lists {} keys of issuer {issuer_id:?} for denomination {denomination} in one period",
                current.len()
            )))
        }
    };
    let spki = b64::decode(&info.public_key)?;
    let public = IssuerPublicKey::from_spki(&spki)?;
    if hex::encode(public.key_id()?) != info.key_id {
        return Err(WalletError::Verification(format!(
            "issuer key {} does not hash to its id",
            info.key_id
        )));
    }
    Ok(ChosenKey { info, public, spki })
}

/// The operator a redemption goes to.
struct Operator<'a> {
    api: &'a ApiClient,
    info: &'a OperatorServiceInfo,
}

/// Checks an operator's credit receipt against what was sent and who was asked: `digest` is
/// the request's (the envelope's for protocol 1, the [`ZkRedemption`]'s for protocol 2), and
/// a protocol-2 receipt must name the proof's nullifier and MMR.
fn verify_credit(
    receipt: &Signed<OperatorCreditReceipt>,
    op: &OperatorServiceInfo,
    p: &ParamsResponse,
    denomination: u64,
    digest: &[u8; 32],
    zk: Option<&ZkRedemption>,
) -> Result<(), WalletError> {
    let v = |what: &str| WalletError::Verification(what.to_owned());
    receipt
        .verify(OPERATOR_DOMAIN, &op.receipt_key)
        .map_err(|e| v(&format!("operator receipt: {}", e.message)))?;
    let b = &receipt.body;
    if b.operator_id != op.operator_id || b.denomination != denomination {
        return Err(v(
            "the operator's receipt names another operator or denomination",
        ));
    }
    b.coordinator_receipt
        .verify(REDEMPTION_DOMAIN, &p.receipt_key)
        .map_err(|e| v(&format!("coordinator's redemption receipt: {}", e.message)))?;
    let cr = &b.coordinator_receipt.body;
    if cr.operator_id != op.operator_id || cr.denomination != denomination {
        return Err(v(
            "the coordinator's receipt names another operator or denomination",
        ));
    }
    // The digest ties the coordinator's receipt to this very request, not some other
    // redemption the operator could show us.
    if cr.envelope_digest != *digest {
        return Err(v("the coordinator's receipt is for another redemption"));
    }
    if let Some(z) = zk {
        if cr.nullifier != Some(z.nullifier) || cr.mmr_id != Some(z.mmr_id) {
            return Err(v(
                "the coordinator's receipt names another nullifier or MMR than the proof",
            ));
        }
    }
    Ok(())
}

/// Checks the membership paths of a publish receipt: each in a distinct MMR of the network's
/// levels, and each climbing from the voucher's commitment to the root its peaks give.
fn check_paths(
    paths: &[mmr::Proof],
    c: &Commitment,
    params: &NetworkParams,
) -> Result<(), WalletError> {
    let leaf = c.0.to_fr()?;
    let mut seen = HashSet::new();
    for path in paths {
        let bad = |why: String| {
            WalletError::Verification(format!(
                "the publish receipt's path in MMR {}: {why}",
                path.mmr.id
            ))
        };
        if path.mmr.levels != params.mmr_levels {
            return Err(bad(format!(
                "{} levels, but the network's MMRs have {}",
                path.mmr.levels, params.mmr_levels
            )));
        }
        if !seen.insert(path.mmr.id) {
            return Err(bad("a second path in the same MMR".into()));
        }
        let root = path.root().map_err(|e| bad(e.to_string()))?;
        mmr::verify(&root, &leaf, path).map_err(|e| bad(e.to_string()))?;
    }
    Ok(())
}

/// `GET /v1/vouchers/{C}`; `None` if the coordinator does not know it.
async fn fetch_status(
    coord: &ApiClient,
    c: &Commitment,
) -> Result<Option<VoucherStatus>, WalletError> {
    match coord
        .get::<VoucherStatus>(&format!("/v1/vouchers/{c}"))
        .await
    {
        Ok(s) if s.commitment == *c => Ok(Some(s)),
        Ok(_) => Err(WalletError::Verification(
            "the coordinator answered about another commitment".into(),
        )),
        Err(ClientError::Api {
            code: ErrorCode::UnknownVoucher,
            ..
        }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn require(r: &VoucherRecord, allowed: &[LocalState], action: Action) -> Result<(), WalletError> {
    if allowed.contains(&r.state) {
        Ok(())
    } else {
        Err(WalletError::InvalidState {
            id: r.id,
            state: r.state,
            action,
        })
    }
}

fn parse_commitment(hex_c: &str) -> Result<Commitment, WalletError> {
    FieldBytes::from_hex(hex_c)
        .map(Commitment)
        .map_err(|_: CryptoError| WalletError::Corrupt(format!("stored commitment {hex_c:?}")))
}

/// Argon2 takes tens of milliseconds of CPU by design; keep it off the async workers.
async fn derive_key(
    passphrase: &str,
    salt: &[u8],
    kdf: KdfParams,
    entropy: Arc<dyn Entropy>,
) -> Result<VaultKey, WalletError> {
    let passphrase = Zeroizing::new(passphrase.to_owned());
    let salt = salt.to_vec();
    tokio::task::spawn_blocking(move || VaultKey::derive(&passphrase, &salt, &kdf, entropy))
        .await
        .map_err(|e| WalletError::Corrupt(format!("key derivation task failed: {e}")))?
}

/// Creates the wallet file, failing if anything exists at `path` (atomically: two `create`s
/// racing for one path cannot both succeed). Owner-only permissions where the OS has them.
fn create_file(path: &Path) -> Result<(), WalletError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(WalletError::AlreadyExists(path.to_path_buf()))
        }
        Err(e) => Err(e.into()),
    }
}

fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

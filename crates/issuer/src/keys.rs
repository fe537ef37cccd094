//! Key rotation. For every denomination the issuer keeps a key for the current key period
//! and one for the next, so a new period never starts without a registered key. Keys are
//! stored before they are registered, and registration is retried until the coordinator has
//! them; two issuer processes sharing a database agree on one key per period through the
//! store's unique constraint.

use crate::Issuer;
use smpx_core::api::{IssuerKeyInfo, RegisterKeyRequest};
use smpx_core::crypto::b64;
use smpx_core::crypto::blind::IssuerSecretKey;
use smpx_core::keys::period_at;
use smpx_store::issuer::SigningKeyRow;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("generating an RSA key: {0}")]
    Generate(String),
    #[error("storing a key: {0}")]
    Store(#[from] smpx_store::StoreError),
    #[error("registering a key with the coordinator: {0}")]
    Register(#[from] smpx_http::ClientError),
    #[error("the coordinator answered with a different key for period {0}")]
    Mismatch(u64),
    #[error(transparent)]
    Wrap(#[from] crate::wrap::WrapError),
}

impl Issuer {
    /// Makes sure keys for the current and the next period exist and are registered.
    pub async fn ensure_keys(&self) -> Result<(), KeyError> {
        let current = period_at(&self.params, self.now());
        for &d in &self.params.denominations {
            for period in [current, current + 1] {
                let row = match self.store.key_for(d, period).await? {
                    Some(row) => row,
                    None => self.create_key(d, period).await?,
                };
                if !row.registered {
                    self.register(&row).await?;
                }
            }
        }
        Ok(())
    }

    /// Encrypts signing keys stored in plain by an earlier version (see [`crate::wrap`]).
    pub(crate) async fn wrap_plain_keys(&self) -> Result<(), KeyError> {
        let mut wrapped = 0;
        for (id, stored) in self.store.stored_secrets().await? {
            if crate::wrap::KeyWrap::is_wrapped(&stored) {
                continue;
            }
            let sealed = self.key_wrap.wrap(&id, &stored)?;
            self.store.replace_secret(&id, &stored, &sealed).await?;
            wrapped += 1;
        }
        if wrapped > 0 {
            tracing::info!(keys = wrapped, "signing keys encrypted at rest");
        }
        Ok(())
    }

    async fn create_key(&self, denomination: u64, period: u64) -> Result<SigningKeyRow, KeyError> {
        let bits = self.config.key_bits;
        // RSA key generation takes a while; keep it off the async workers.
        let sk = tokio::task::spawn_blocking(move || {
            IssuerSecretKey::generate(bits, &mut rand::rngs::OsRng)
        })
        .await
        .map_err(|e| KeyError::Generate(e.to_string()))?
        .map_err(|e| KeyError::Generate(e.to_string()))?;
        let pk = sk
            .public_key()
            .map_err(|e| KeyError::Generate(e.to_string()))?;
        let key_id = pk.key_id().map_err(|e| KeyError::Generate(e.to_string()))?;
        let der = sk.to_der().map_err(|e| KeyError::Generate(e.to_string()))?;
        let row = SigningKeyRow {
            key_id,
            denomination,
            period,
            secret_der: self.key_wrap.wrap(&key_id, &der)?,
            public_spki: pk
                .to_spki()
                .map_err(|e| KeyError::Generate(e.to_string()))?,
            registered: false,
        };
        match self.store.insert_key(&row, self.now()).await {
            Ok(()) => {
                tracing::info!(denomination, period, key_id = %hex::encode(row.key_id), "new signing key");
                Ok(row)
            }
            // Another process of this issuer created it first: use theirs.
            Err(e) if e.is_duplicate() => self
                .store
                .key_for(denomination, period)
                .await?
                .ok_or(KeyError::Mismatch(period)),
            Err(e) => Err(e.into()),
        }
    }

    async fn register(&self, row: &SigningKeyRow) -> Result<(), KeyError> {
        let info: IssuerKeyInfo = self
            .coordinator
            .post(
                "/v1/issuer-keys",
                &RegisterKeyRequest {
                    denomination: row.denomination,
                    period: row.period,
                    public_key: b64::encode(&row.public_spki),
                },
            )
            .await?;
        if info.key_id != hex::encode(row.key_id) {
            return Err(KeyError::Mismatch(row.period));
        }
        self.store.mark_registered(&row.key_id).await?;
        Ok(())
    }

    /// The parsed secret key for `key_id`, if this issuer has it.
    pub(crate) async fn secret_key(
        &self,
        key_id: &[u8; 32],
    ) -> Result<Option<(SigningKeyRow, Arc<IssuerSecretKey>)>, KeyError> {
        let Some(row) = self.store.key(key_id).await? else {
            return Ok(None);
        };
        if let Some(k) = self.cached_key(key_id) {
            return Ok(Some((row, k)));
        }
        let sk = Arc::new(
            IssuerSecretKey::from_der(&self.key_wrap.unwrap(key_id, &row.secret_der)?)
                .map_err(|e| KeyError::Generate(e.to_string()))?,
        );
        self.cache_key(*key_id, sk.clone());
        Ok(Some((row, sk)))
    }
}

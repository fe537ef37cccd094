//! Operator credits on the wallet's side: tokens issued at redemption, balance per operator,
//! spending with change, collecting change whose answer was lost, restoring from the seed.
//!
//! The cryptography is [`smpx_core::credits`] (Cashu's NUT-00 blind Diffie-Hellman, NUT-12
//! DLEQ proofs, NUT-13 deterministic secrets); the operator's side is `smpx-operator`.
//!
//! * **Every output comes from the seed** (NUT-13): output `n` of keyset `K` has the secret
//!   and blinding factor `deterministic_secret(seed, K, n)`. The counters of a request are
//!   reserved and committed to the wallet file *before* anything is derived from them, so a
//!   crash burns counters at worst and never sends one secret twice.
//! * **Nothing unchecked is stored**: keys are used only once their keyset id commits to them
//!   (`KeysetKeys::verify_id`, which also binds the unit and the final expiry), and every
//!   blind signature must carry a DLEQ proof that it was made with the key the operator
//!   publishes for that keyset and amount — a signature under any other key (a key kept for
//!   tagging one wallet) is refused and nothing from that answer is stored.
//! * **Tokens at rest**: the proof (secret, `C`, and the DLEQ with its blinding factor `r`)
//!   is sealed with the wallet's key; amount, keyset, `Y`, `C`, state and counter are in the
//!   clear (what listing and `POST /v1/checkstate` need). `Debug` of every type here shows no
//!   secret, and nothing here logs one.
//! * **Spending** is a NUT-03 swap: inputs worth at least the amount, and change outputs for
//!   `inputs − amount` in power-of-two denominations under the operator's current keyset.
//!   `POST /v1/swap` charges no price, so the amount paid is what the outputs leave to the
//!   operator (`Σ inputs − Σ outputs`): that is the payment. The relay's capacity purchases
//!   (issue 5) attach what is bought to the same request. The spend is recorded (inputs
//!   `pending`, the outputs' counters) before the request is sent; its id is
//!   `SwapId = H(Ys, outputs)`, so a lost answer is collected later with
//!   `GET /v1/swap/{id}` ([`Wallet::collect_credits`]). The same spend sent again is the same
//!   spend at the operator (idempotent), never a second payment.
//! * **Two copies of one wallet** (a file copied, or a restore next to the original) share
//!   tokens: the first to spend one wins; the other is refused (`token_spent`), asks
//!   `POST /v1/checkstate`, marks the tokens the operator reports spent, and returns
//!   [`WalletError::CreditsAlreadySpent`]. Copies also share NUT-13 counters, so they may
//!   derive the same change outputs; the operator refuses a reused output (`output_reused`)
//!   and the wallet treats it the same way. Use one copy at a time.
//! * **Restore** (NUT-09, [`Wallet::restore_credits`]): for every keyset the operator still
//!   knows, the wallet derives its outputs again in batches of counters and asks
//!   `POST /v1/restore` which were signed, until a run of empty batches; it checks each
//!   signature's DLEQ, unblinds, asks `POST /v1/checkstate`, keeps the unspent tokens and
//!   moves its counters past every output found. With the defaults and an operator's 90 live
//!   keysets that is about 27,000 outputs derived and looked up (about 140 requests): 2 s
//!   against a local devnet. Outputs of spends still pending at the operator are not
//!   returned by it; restore again once they finish.

use crate::credit_db::{self, IssuancePlan, NewToken, Origin, OutputPlan, SpendRow, TokenRow};
use crate::error::WalletError;
use crate::vault::VaultKey;
use crate::wallet::Wallet;
use serde::Serialize;
use smpx_core::api::{
    CheckStateRequest, CheckStateResponse, CreditKeysResponse, CreditKeysetsResponse,
    CreditRestoreRequest, CreditRestoreResponse, OperatorServiceInfo, SwapId, SwapState,
    SwapStatus, TokenState as OperatorTokenState,
};
use smpx_core::credits::{
    deterministic_outputs, finalize_all, split, BlindSignature, BlindedMessage, CreditError,
    KeysetId, KeysetKeys, PreparedOutput, Proof, SwapRequest, SwapResponse, CREDIT_UNIT,
};
use smpx_core::crypto::seed::WalletSeed;
use smpx_core::ledger::valid_id;
use smpx_core::{Amount, ErrorCode};
use smpx_http_client::{ApiClient, ClientError};
use std::collections::{BTreeMap, HashMap};
use zeroize::Zeroizing;

/// Tokens this close to their keyset's final expiry are not offered as inputs (the request
/// could arrive after it).
const EXPIRY_MARGIN_SECS: u64 = 120;

/// At most this many `Ys` per `POST /v1/checkstate` (the operator's default limit is 1,000;
/// about 70 bytes each, well under the services' 64 KiB body limit).
const MAX_PER_REQUEST: usize = 500;

/// At most this many outputs per `POST /v1/restore` (about 170 bytes each).
const MAX_RESTORE_OUTPUTS: usize = 200;

/// A token's state in this wallet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenState {
    /// Spendable (unless its keyset expired: see [`CreditToken::final_expiry`]).
    Unspent,
    /// Sent in a spend whose answer has not arrived ([`Wallet::collect_credits`]).
    Pending,
    Spent,
}

/// A credit token as listed: no secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CreditToken {
    pub id: i64,
    pub operator_id: String,
    /// Keyset id, hex (one keyset per day at the operator).
    pub keyset_id: String,
    pub amount: Amount,
    /// `Y = hash_to_curve(secret)`, hex: the token's public identity (what
    /// `POST /v1/checkstate` asks about); it does not reveal the secret.
    pub y: String,
    pub state: TokenState,
    /// Unix seconds; the operator refuses the token from then on.
    pub final_expiry: u64,
    /// `redeem`, `change` or `restore`.
    pub origin: String,
    /// The voucher whose redemption issued it (origin `redeem`).
    pub voucher_id: Option<i64>,
    /// The NUT-13 counter its secret was derived from.
    pub counter: Option<u32>,
}

/// Credits held at one operator.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OperatorCredits {
    pub operator_id: String,
    /// Unspent and unexpired: what can be spent.
    pub unspent: Amount,
    pub unspent_tokens: u64,
    /// In spends whose answer has not arrived.
    pub pending: Amount,
    /// Unspent but past their keyset's final expiry: worth nothing now.
    pub expired: Amount,
    pub spent: Amount,
}

/// What [`Wallet::spend_credits`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CreditSpend {
    /// The spend's id at the operator (`SwapId`, hex).
    pub spend_id: String,
    pub operator_id: String,
    /// Left to the operator: `inputs − change`.
    pub paid: Amount,
    pub inputs: Amount,
    pub input_tokens: usize,
    pub change: Amount,
    pub change_tokens: usize,
    /// Unspent credits at this operator afterwards.
    pub balance: Amount,
}

/// What [`Wallet::collect_credits`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CollectReport {
    /// Spends completed: inputs spent, change stored.
    pub completed: u64,
    pub change: Amount,
    /// Spends the operator cancelled or refused: their inputs are unspent again (unless the
    /// operator reports them spent by another spend).
    pub cancelled: u64,
    /// Still pending at the operator: collect again later.
    pub pending: u64,
}

/// How [`Wallet::restore_credits`] scans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestoreOptions {
    /// Counters asked per keyset per round.
    pub batch: u32,
    /// A keyset is done after this many batches in a row with nothing signed.
    pub empty_batches: u32,
}

impl Default for RestoreOptions {
    /// NUT-13's suggestion: batches of 100, stop after three empty ones.
    fn default() -> Self {
        Self {
            batch: 100,
            empty_batches: 3,
        }
    }
}

/// What [`Wallet::restore_credits`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RestoreReport {
    pub operator_id: String,
    pub keysets_scanned: usize,
    /// Outputs of this wallet the operator had signed.
    pub signed: u64,
    /// Unspent tokens stored (new to this wallet file).
    pub restored: u64,
    /// Value of the unspent tokens found (new or already held).
    pub restored_value: Amount,
    /// Signed but already spent (dropped).
    pub spent: u64,
    /// Signed but in a spend still pending at the operator (not stored; restore again later).
    pub pending: u64,
    /// Unspent credits at this operator afterwards.
    pub balance: Amount,
}

/// Outputs prepared for a request, with the keys their signatures must verify against.
pub(crate) struct Prepared {
    pub keys: KeysetKeys,
    pub outputs: Vec<PreparedOutput>,
}

impl Prepared {
    pub(crate) fn messages(&self) -> Vec<BlindedMessage> {
        self.outputs.iter().map(|o| o.message.clone()).collect()
    }
}

fn credit(e: CreditError) -> WalletError {
    WalletError::Verification(format!("credits: {e}"))
}

fn corrupt(e: impl std::fmt::Display) -> WalletError {
    WalletError::Corrupt(format!("credit data: {e}"))
}

/// The `orders` of a keyset: one past the largest power of two it has a key for.
fn orders(keys: &KeysetKeys) -> u8 {
    keys.keys
        .keys()
        .next_back()
        .map_or(1, |a| u8::try_from(a.0.trailing_zeros() + 1).unwrap_or(64))
}

/// Outputs for `plan` under `keys`, derived from the seed.
fn derive(
    seed: &WalletSeed,
    id: &KeysetId,
    plan: &[OutputPlan],
) -> Result<Vec<PreparedOutput>, WalletError> {
    let mut out = Vec::with_capacity(plan.len());
    for p in plan {
        out.extend(
            deterministic_outputs(seed, id, p.counter, &[Amount(p.amount)]).map_err(credit)?,
        );
    }
    Ok(out)
}

fn token_aad(y: &str) -> Vec<u8> {
    format!("smpx-wallet/v3/credit-token/{y}").into_bytes()
}

/// Seals a checked token for storage.
fn new_token<'a>(
    key: &VaultKey,
    operator_id: &'a str,
    keys: &KeysetKeys,
    proof: &Proof,
    counter: Option<u32>,
    origin: Origin,
    voucher_id: Option<i64>,
) -> Result<NewToken<'a>, WalletError> {
    let y = proof.y().map_err(credit)?.to_hex();
    let json = Zeroizing::new(serde_json::to_vec(proof).map_err(corrupt)?);
    Ok(NewToken {
        operator_id,
        keyset_id: keys.id.to_hex(),
        amount: proof.amount.0,
        c: proof.signature.to_hex(),
        proof_enc: key.seal(&token_aad(&y), &json)?,
        y,
        counter,
        final_expiry: keys.final_expiry,
        origin,
        voucher_id,
    })
}

fn state_of(s: &str) -> Result<TokenState, WalletError> {
    match s {
        "unspent" => Ok(TokenState::Unspent),
        "pending" => Ok(TokenState::Pending),
        "spent" => Ok(TokenState::Spent),
        other => Err(corrupt(format!("token state {other:?}"))),
    }
}

fn listed(r: TokenRow) -> Result<CreditToken, WalletError> {
    Ok(CreditToken {
        id: r.id,
        operator_id: r.operator_id,
        keyset_id: r.keyset_id,
        amount: Amount(r.amount),
        y: r.y,
        state: state_of(&r.state)?,
        final_expiry: r.final_expiry,
        origin: r.origin,
        voucher_id: r.voucher_id,
        counter: r.counter,
    })
}

fn sum(amounts: impl IntoIterator<Item = u64>) -> Amount {
    Amount(amounts.into_iter().fold(0u64, u64::saturating_add))
}

/// The operator at `url`: its API and its id.
pub(crate) async fn operator_at(url: &str) -> Result<(ApiClient, String), WalletError> {
    let api = ApiClient::new(url);
    let info = operator_info(&api).await?;
    Ok((api, info.operator_id))
}

/// `GET /v1/info` of an operator, with its id checked.
pub(crate) async fn operator_info(api: &ApiClient) -> Result<OperatorServiceInfo, WalletError> {
    let info: OperatorServiceInfo = api.get("/v1/info").await?;
    if !valid_id(&info.operator_id) {
        return Err(WalletError::Verification(format!(
            "the operator's id {:?} is not a valid id",
            info.operator_id
        )));
    }
    Ok(info)
}

/// Does this error say the operator has no credit endpoints (an operator from before
/// credits)?
fn no_credits(e: &ClientError) -> bool {
    matches!(e, ClientError::Api { status: 404, code, .. } if *code != ErrorCode::UnknownKeyset)
        || matches!(e, ClientError::Decode { status: 404, .. })
}

impl Wallet {
    // ---------------------------------------------------------------------------------------
    // Keys

    /// Checks `keys` (id commits to keys, unit, final expiry) and caches them.
    async fn accept_keys(&self, operator_id: &str, keys: &KeysetKeys) -> Result<(), WalletError> {
        keys.verify_id().map_err(credit)?;
        if keys.unit != CREDIT_UNIT {
            return Err(WalletError::Verification(format!(
                "keyset {} is in unit {:?}, not {CREDIT_UNIT}",
                keys.id, keys.unit
            )));
        }
        let json = serde_json::to_string(keys).map_err(corrupt)?;
        credit_db::put_keyset(
            self.pool(),
            operator_id,
            &keys.id.to_hex(),
            keys.final_expiry,
            &json,
        )
        .await
    }

    /// The operator's current keyset (the newest of `GET /v1/keys`), checked; `None` if the
    /// operator does not offer credits.
    pub(crate) async fn current_keys(
        &self,
        api: &ApiClient,
        operator_id: &str,
    ) -> Result<Option<KeysetKeys>, WalletError> {
        let listed: CreditKeysResponse = match api.get("/v1/keys").await {
            Ok(k) => k,
            Err(e) if no_credits(&e) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let keys = listed
            .keysets
            .into_iter()
            .max_by_key(|k| k.final_expiry)
            .ok_or_else(|| {
                WalletError::Verification("the operator lists no active credit keyset".into())
            })?;
        self.accept_keys(operator_id, &keys).await?;
        Ok(Some(keys))
    }

    /// The keys of keyset `id` at the operator: from the wallet file, else
    /// `GET /v1/keys/{id}`, checked against the id.
    pub(crate) async fn keys_of(
        &self,
        api: &ApiClient,
        operator_id: &str,
        id: &str,
    ) -> Result<KeysetKeys, WalletError> {
        if let Some(json) = credit_db::keyset(self.pool(), operator_id, id).await? {
            let keys: KeysetKeys = serde_json::from_str(&json).map_err(corrupt)?;
            keys.verify_id().map_err(credit)?;
            return Ok(keys);
        }
        let listed: CreditKeysResponse = api.get(&format!("/v1/keys/{id}")).await?;
        let keys = listed
            .keysets
            .into_iter()
            .find(|k| k.id.to_hex() == id)
            .ok_or_else(|| {
                WalletError::Verification(format!("the operator did not return keyset {id}"))
            })?;
        self.accept_keys(operator_id, &keys).await?;
        Ok(keys)
    }

    /// Reserves counters (committed) and derives outputs for `amounts` under `keys`.
    async fn fresh_outputs(
        &self,
        keys: &KeysetKeys,
        amounts: &[Amount],
    ) -> Result<(Vec<OutputPlan>, Vec<PreparedOutput>), WalletError> {
        let n = u32::try_from(amounts.len()).map_err(|_| corrupt("too many outputs"))?;
        let first = credit_db::reserve_counters(self.pool(), &keys.id.to_hex(), n).await?;
        let outputs =
            deterministic_outputs(self.seed(), &keys.id, first, amounts).map_err(credit)?;
        let plan = outputs
            .iter()
            .map(|o| {
                Ok(OutputPlan {
                    amount: o.message.amount.0,
                    counter: o
                        .counter
                        .ok_or_else(|| corrupt("an output without counter"))?,
                })
            })
            .collect::<Result<_, WalletError>>()?;
        Ok((plan, outputs))
    }

    // ---------------------------------------------------------------------------------------
    // Issuance at redemption

    /// The outputs to send with a redemption of `value` at the operator: the ones kept for
    /// this request if there are (a retry must send the same outputs: the operator answers a
    /// retried redemption with the signatures it gave the first time), else new ones for
    /// `value` split into power-of-two amounts under the operator's current keyset, kept
    /// before they are sent. `None` if the operator does not offer credits.
    pub(crate) async fn issuance_outputs(
        &self,
        api: &ApiClient,
        operator_id: &str,
        voucher_id: i64,
        request_key: &str,
        value: Amount,
    ) -> Result<Option<Prepared>, WalletError> {
        let stored = credit_db::issuance(self.pool(), voucher_id, operator_id, request_key).await?;
        let plan = match stored {
            Some(plan) => plan,
            None => {
                let Some(keys) = self.current_keys(api, operator_id).await? else {
                    return Ok(None);
                };
                let amounts = split(value, orders(&keys));
                let (outputs, _) = self.fresh_outputs(&keys, &amounts).await?;
                credit_db::put_issuance(
                    self.pool(),
                    voucher_id,
                    operator_id,
                    request_key,
                    &IssuancePlan {
                        keyset_id: keys.id.to_hex(),
                        outputs,
                    },
                    self.now(),
                )
                .await?
            }
        };
        let keys = self.keys_of(api, operator_id, &plan.keyset_id).await?;
        let outputs = derive(self.seed(), &keys.id, &plan.outputs)?;
        Ok(Some(Prepared { keys, outputs }))
    }

    /// Checks the operator's signatures on a redemption's outputs (DLEQ against the published
    /// keys; they must add up to `credited`) and seals the tokens for storage.
    pub(crate) fn issued_tokens<'a>(
        &self,
        operator_id: &'a str,
        voucher_id: i64,
        prepared: &Prepared,
        signatures: &[BlindSignature],
        credited: Amount,
    ) -> Result<Vec<NewToken<'a>>, WalletError> {
        let proofs = finalize_all(&prepared.outputs, signatures, &prepared.keys).map_err(credit)?;
        let total = sum(proofs.iter().map(|p| p.amount.0));
        if total != credited {
            return Err(WalletError::Verification(format!(
                "the credits issued add up to {total}, but the receipt credits {credited}"
            )));
        }
        proofs
            .iter()
            .zip(&prepared.outputs)
            .map(|(p, o)| {
                new_token(
                    self.vault_key(),
                    operator_id,
                    &prepared.keys,
                    p,
                    o.counter,
                    Origin::Redeem,
                    Some(voucher_id),
                )
            })
            .collect()
    }

    /// Forgets the outputs kept for a redemption the operator refused them for, so the next
    /// attempt makes new ones.
    pub(crate) async fn drop_issuance(
        &self,
        voucher_id: i64,
        operator_id: &str,
        request_key: &str,
    ) -> Result<(), WalletError> {
        credit_db::delete_issuance(self.pool(), voucher_id, operator_id, request_key).await
    }

    // ---------------------------------------------------------------------------------------
    // Listing

    /// Every credit token (of `operator_id`, if given), oldest first. No secrets.
    pub async fn credit_tokens(
        &self,
        operator_id: Option<&str>,
    ) -> Result<Vec<CreditToken>, WalletError> {
        credit_db::tokens(self.pool(), operator_id)
            .await?
            .into_iter()
            .map(listed)
            .collect()
    }

    /// Credits held per operator (from the tokens in the wallet file; no network).
    pub async fn credit_balance(&self) -> Result<Vec<OperatorCredits>, WalletError> {
        let now = self.now();
        let mut by: BTreeMap<String, OperatorCredits> = BTreeMap::new();
        for t in self.credit_tokens(None).await? {
            let e = by
                .entry(t.operator_id.clone())
                .or_insert_with(|| OperatorCredits {
                    operator_id: t.operator_id.clone(),
                    ..OperatorCredits::default()
                });
            let add = |a: &mut Amount| *a = Amount(a.0.saturating_add(t.amount.0));
            match t.state {
                TokenState::Unspent if t.final_expiry > now => {
                    add(&mut e.unspent);
                    e.unspent_tokens += 1;
                }
                TokenState::Unspent => add(&mut e.expired),
                TokenState::Pending => add(&mut e.pending),
                TokenState::Spent => add(&mut e.spent),
            }
        }
        Ok(by.into_values().collect())
    }

    /// Unspent, unexpired credits per operator id.
    pub(crate) async fn unspent_credits(&self) -> Result<BTreeMap<String, Amount>, WalletError> {
        Ok(credit_db::unspent_by_operator(self.pool(), self.now())
            .await?
            .into_iter()
            .collect())
    }

    async fn unspent_at(&self, operator_id: &str) -> Result<Amount, WalletError> {
        Ok(self
            .unspent_credits()
            .await?
            .get(operator_id)
            .copied()
            .unwrap_or(Amount::ZERO))
    }

    fn open_proof(&self, row: &TokenRow) -> Result<Proof, WalletError> {
        let json = self
            .vault_key()
            .open_known(&token_aad(&row.y), &row.proof_enc)?;
        serde_json::from_slice(&json).map_err(corrupt)
    }

    // ---------------------------------------------------------------------------------------
    // Spending

    /// Pays `amount` to the operator at `operator` from this wallet's credits there.
    ///
    /// Picks unspent tokens (largest first) worth at least `amount`, derives change outputs
    /// for the difference (power-of-two amounts under the operator's current keyset, NUT-13
    /// counters reserved first), records the spend, and sends `POST /v1/swap`. The swap
    /// endpoint charges no price: what the outputs leave over is the payment (the relay's
    /// capacity purchases, issue 5, attach what is bought to this same request). Every change
    /// signature is checked (DLEQ) before it is stored.
    ///
    /// * Not enough credits: [`WalletError::InsufficientCredits`] (nothing sent).
    /// * Tokens already spent elsewhere (another copy of this wallet): the operator refuses;
    ///   the wallet marks the tokens it reports spent and returns
    ///   [`WalletError::CreditsAlreadySpent`]. Retry to spend from the rest.
    /// * No answer, or the operator says the spend is pending: the spend stays recorded and
    ///   [`WalletError::SpendPending`] is returned; [`Wallet::collect_credits`] finishes it.
    /// * Any other refusal: the inputs are unspent again and the error is returned.
    pub async fn spend_credits(
        &self,
        operator: &str,
        amount: Amount,
    ) -> Result<CreditSpend, WalletError> {
        self.spend_credits_via(operator, amount, |api, request| async move {
            api.post::<_, SwapResponse>("/v1/swap", &request)
                .await
                .map(|r| r.signatures)
        })
        .await
    }

    /// [`Wallet::spend_credits`], with the swap request delivered by `send` instead of
    /// `POST /v1/swap` at the operator: a relay's PAY carries it to the operator's registry
    /// and provisions what it buys ([`Wallet::pay_relay`]). `send` gets the operator's API
    /// (for reading state) and the request, and answers as the operator would: the change's
    /// signatures, or the operator's error (a `swap_pending` or transport error leaves the
    /// spend pending, to collect later).
    pub async fn spend_credits_via<F, Fut>(
        &self,
        operator: &str,
        amount: Amount,
        send: F,
    ) -> Result<CreditSpend, WalletError>
    where
        F: FnOnce(ApiClient, SwapRequest) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<BlindSignature>, ClientError>>,
    {
        if amount == Amount::ZERO {
            return Err(WalletError::Verification(
                "the amount to spend must be more than zero".into(),
            ));
        }
        let (api, operator_id) = operator_at(operator).await?;
        let keys = self
            .current_keys(&api, &operator_id)
            .await?
            .ok_or_else(|| WalletError::NoCredits {
                operator: operator_id.clone(),
            })?;
        let now = self.now();
        let available =
            credit_db::spendable(self.pool(), &operator_id, now + EXPIRY_MARGIN_SECS).await?;
        let mut inputs = Vec::new();
        let mut total = 0u64;
        for t in available {
            if total >= amount.0 {
                break;
            }
            total = total.saturating_add(t.amount);
            inputs.push(t);
        }
        if total < amount.0 {
            return Err(WalletError::InsufficientCredits {
                operator: operator_id,
                needed: amount,
                available: Amount(total),
            });
        }
        let change = Amount(total - amount.0);
        let amounts = split(change, orders(&keys));
        let (plan, outputs) = self.fresh_outputs(&keys, &amounts).await?;
        let proofs = inputs
            .iter()
            .map(|t| self.open_proof(t).map(|p| p.for_spending()))
            .collect::<Result<Vec<_>, _>>()?;
        let request = SwapRequest {
            inputs: proofs,
            outputs: outputs.iter().map(|o| o.message.clone()).collect(),
        };
        let id = SwapId::of_request(&request).map_err(credit)?.to_hex();
        let spend = SpendRow {
            id: id.clone(),
            operator_id: operator_id.clone(),
            paid: amount.0,
            keyset_id: keys.id.to_hex(),
            inputs: inputs.iter().map(|t| t.id).collect(),
            outputs: plan,
        };
        if !credit_db::begin_spend(self.pool(), &spend, now).await? {
            return Err(WalletError::Verification(
                "the credits chosen were taken by another spend of this wallet; try again".into(),
            ));
        }
        tracing::info!(spend = %id, operator = %operator_id, paid = %amount, "spending credits");
        let prepared = Prepared { keys, outputs };
        let sent = send(api.clone(), request).await;
        self.settle(&api, &spend, &prepared, sent).await?;
        Ok(CreditSpend {
            spend_id: id,
            operator_id: operator_id.clone(),
            paid: amount,
            inputs: Amount(total),
            input_tokens: inputs.len(),
            change,
            change_tokens: prepared.outputs.len(),
            balance: self.unspent_at(&operator_id).await?,
        })
    }

    /// Applies the operator's answer to a pending spend: change stored, or inputs returned,
    /// or left pending. `Ok(())` only when the spend completed.
    async fn settle(
        &self,
        api: &ApiClient,
        spend: &SpendRow,
        prepared: &Prepared,
        answer: Result<Vec<BlindSignature>, ClientError>,
    ) -> Result<(), WalletError> {
        let now = self.now();
        match answer {
            Ok(signatures) => {
                let proofs =
                    finalize_all(&prepared.outputs, &signatures, &prepared.keys).map_err(credit)?;
                let change = proofs
                    .iter()
                    .zip(&prepared.outputs)
                    .map(|(p, o)| {
                        new_token(
                            self.vault_key(),
                            &spend.operator_id,
                            &prepared.keys,
                            p,
                            o.counter,
                            Origin::Change,
                            None,
                        )
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                credit_db::complete_spend(self.pool(), &spend.id, &change, now).await?;
                tracing::info!(spend = %spend.id, "credit spend completed");
                Ok(())
            }
            Err(e) => match e.code() {
                Some(ErrorCode::TokenSpent | ErrorCode::OutputReused) => {
                    // Nothing of this request was registered. Which inputs are spent? (Or being
                    // spent by another request: counted as spent here, since that spend
                    // almost always completes; `restore_credits` finds them again if not.)
                    let rows = credit_db::tokens_by_id(self.pool(), &spend.inputs).await?;
                    let states = self.operator_states(api, &rows).await?;
                    let spent: Vec<i64> = rows
                        .iter()
                        .zip(&states)
                        .filter(|(_, s)| **s != OperatorTokenState::Unspent)
                        .map(|(t, _)| t.id)
                        .collect();
                    credit_db::abandon_spend(self.pool(), &spend.id, "refused", &spent, now)
                        .await?;
                    if spent.is_empty() {
                        return Err(e.into());
                    }
                    let value = sum(rows
                        .iter()
                        .filter(|t| spent.contains(&t.id))
                        .map(|t| t.amount));
                    tracing::warn!(spend = %spend.id, tokens = spent.len(), "credits were already spent elsewhere");
                    Err(WalletError::CreditsAlreadySpent {
                        operator: spend.operator_id.clone(),
                        tokens: spent.len(),
                        value,
                    })
                }
                Some(ErrorCode::SwapCancelled) => {
                    credit_db::abandon_spend(self.pool(), &spend.id, "cancelled", &[], now).await?;
                    Err(e.into())
                }
                Some(
                    ErrorCode::SwapPending
                    | ErrorCode::SpendRepeated
                    | ErrorCode::Internal
                    | ErrorCode::UpstreamUnavailable,
                )
                | None => {
                    tracing::info!(spend = %spend.id, error = %e, "credit spend not answered; collect it later");
                    Err(WalletError::SpendPending {
                        operator: spend.operator_id.clone(),
                        spend_id: spend.id.clone(),
                        reason: e.to_string(),
                    })
                }
                Some(_) => {
                    // Refused by the operator's checks, before its registry: nothing taken.
                    credit_db::abandon_spend(self.pool(), &spend.id, "refused", &[], now).await?;
                    Err(e.into())
                }
            },
        }
    }

    /// `POST /v1/checkstate` for `rows`, in order.
    async fn operator_states(
        &self,
        api: &ApiClient,
        rows: &[TokenRow],
    ) -> Result<Vec<OperatorTokenState>, WalletError> {
        let mut out = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(MAX_PER_REQUEST) {
            let ys = chunk
                .iter()
                .map(|t| smpx_core::credits::Point::from_hex(&t.y).map_err(corrupt))
                .collect::<Result<Vec<_>, _>>()?;
            out.extend(self.check_states(api, ys).await?);
        }
        Ok(out)
    }

    async fn check_states(
        &self,
        api: &ApiClient,
        ys: Vec<smpx_core::credits::Point>,
    ) -> Result<Vec<OperatorTokenState>, WalletError> {
        let asked = ys.clone();
        let r: CheckStateResponse = api
            .post("/v1/checkstate", &CheckStateRequest { ys })
            .await?;
        if r.states.len() != asked.len() || r.states.iter().zip(&asked).any(|(s, y)| s.y != *y) {
            return Err(WalletError::Verification(
                "the operator's token states do not answer the tokens asked about".into(),
            ));
        }
        Ok(r.states.into_iter().map(|s| s.state).collect())
    }

    /// Finishes this wallet's spends at the operator at `operator` whose answer was lost or
    /// pending: asks `GET /v1/swap/{id}` for each; done → the change is checked and stored
    /// and the inputs are spent; cancelled → the inputs are unspent again; unknown to the
    /// operator (the request never arrived) → the identical request is sent again (the same
    /// spend, never a second payment); pending → left for later.
    pub async fn collect_credits(&self, operator: &str) -> Result<CollectReport, WalletError> {
        let (api, operator_id) = operator_at(operator).await?;
        let mut report = CollectReport::default();
        for spend in credit_db::pending_spends(self.pool(), &operator_id).await? {
            let keys = self.keys_of(&api, &operator_id, &spend.keyset_id).await?;
            let prepared = Prepared {
                outputs: derive(self.seed(), &keys.id, &spend.outputs)?,
                keys,
            };
            let change = sum(spend.outputs.iter().map(|o| o.amount));
            let answer = match api
                .get::<SwapStatus>(&format!("/v1/swap/{}", spend.id))
                .await
            {
                Ok(status) => match (status.state, status.signatures) {
                    (SwapState::Done, Some(signatures)) => Ok(signatures),
                    (SwapState::Done, None) => {
                        return Err(WalletError::Verification(
                            "the operator says the spend is done but gives no change".into(),
                        ))
                    }
                    (SwapState::Pending, _) => {
                        report.pending += 1;
                        continue;
                    }
                    (SwapState::Cancelled, _) => {
                        credit_db::abandon_spend(
                            self.pool(),
                            &spend.id,
                            "cancelled",
                            &[],
                            self.now(),
                        )
                        .await?;
                        report.cancelled += 1;
                        continue;
                    }
                },
                Err(e) if e.code() == Some(ErrorCode::UnknownSwap) => {
                    let rows = credit_db::tokens_by_id(self.pool(), &spend.inputs).await?;
                    let request = SwapRequest {
                        inputs: rows
                            .iter()
                            .map(|t| self.open_proof(t).map(|p| p.for_spending()))
                            .collect::<Result<_, _>>()?,
                        outputs: prepared.messages(),
                    };
                    if SwapId::of_request(&request).map_err(credit)?.to_hex() != spend.id {
                        return Err(corrupt("a stored spend does not match its id"));
                    }
                    api.post::<_, SwapResponse>("/v1/swap", &request)
                        .await
                        .map(|r| r.signatures)
                }
                Err(e) => return Err(e.into()),
            };
            match self.settle(&api, &spend, &prepared, answer).await {
                Ok(()) => {
                    report.completed += 1;
                    report.change = Amount(report.change.0.saturating_add(change.0));
                }
                Err(WalletError::SpendPending { .. }) => report.pending += 1,
                Err(WalletError::CreditsAlreadySpent { .. }) => report.cancelled += 1,
                Err(e @ WalletError::Service(_)) => {
                    tracing::info!(spend = %spend.id, error = %e, "spend refused");
                    report.cancelled += 1;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }

    // ---------------------------------------------------------------------------------------
    // Restore

    /// Finds this wallet's credits at the operator at `operator` from the seed alone
    /// (NUT-09 with NUT-13 secrets): for every keyset the operator still knows, derives
    /// outputs in batches of counters and asks `POST /v1/restore` which were signed, until
    /// `options.empty_batches` batches in a row come back empty; checks each signature's DLEQ
    /// against the published key, unblinds, asks `POST /v1/checkstate`, and stores the
    /// unspent tokens. Counters move past every output found, so new outputs never repeat
    /// one. Safe to run again (tokens already held are kept as they are).
    pub async fn restore_credits(
        &self,
        operator: &str,
        options: RestoreOptions,
    ) -> Result<RestoreReport, WalletError> {
        let (api, operator_id) = operator_at(operator).await?;
        let batch = options.batch.max(1);
        let listed: CreditKeysetsResponse = match api.get("/v1/keysets").await {
            Ok(k) => k,
            Err(e) if no_credits(&e) => {
                return Err(WalletError::NoCredits {
                    operator: operator_id,
                })
            }
            Err(e) => return Err(e.into()),
        };
        let now = self.now();
        struct Scan {
            keys: KeysetKeys,
            next: u32,
            empty: u32,
            highest: Option<u32>,
        }
        let mut scans = Vec::new();
        for k in listed.keysets.iter().filter(|k| k.final_expiry > now) {
            let keys = self.keys_of(&api, &operator_id, &k.id.to_hex()).await?;
            scans.push(Scan {
                keys,
                next: 0,
                empty: 0,
                highest: None,
            });
        }
        let mut report = RestoreReport {
            operator_id: operator_id.clone(),
            keysets_scanned: scans.len(),
            ..RestoreReport::default()
        };
        let mut found: Vec<(usize, Proof, u32)> = Vec::new();
        loop {
            let active: Vec<usize> = (0..scans.len())
                .filter(|&i| scans[i].empty < options.empty_batches.max(1))
                .collect();
            if active.is_empty() {
                break;
            }
            // This round's outputs, by B_ (the amount asked is a placeholder).
            let mut asked: HashMap<smpx_core::credits::Point, (usize, PreparedOutput)> =
                HashMap::new();
            let mut messages = Vec::new();
            for &i in &active {
                let s = &scans[i];
                let amounts = vec![Amount(1); batch as usize];
                for o in deterministic_outputs(self.seed(), &s.keys.id, s.next, &amounts)
                    .map_err(credit)?
                {
                    messages.push(o.message.clone());
                    asked.insert(o.message.blinded_secret, (i, o));
                }
            }
            let mut hits = vec![false; scans.len()];
            for chunk in messages.chunks(MAX_RESTORE_OUTPUTS) {
                let r: CreditRestoreResponse = api
                    .post(
                        "/v1/restore",
                        &CreditRestoreRequest {
                            outputs: chunk.to_vec(),
                        },
                    )
                    .await?;
                if r.outputs.len() != r.signatures.len() {
                    return Err(WalletError::Verification(
                        "the operator's restore answer pairs no signature with an output".into(),
                    ));
                }
                for (out, sig) in r.outputs.iter().zip(&r.signatures) {
                    let (i, prepared) = asked.get(&out.blinded_secret).ok_or_else(|| {
                        WalletError::Verification(
                            "the operator restored an output that was not asked for".into(),
                        )
                    })?;
                    let keys = &scans[*i].keys;
                    if out.id != keys.id {
                        return Err(WalletError::Verification(
                            "a restored output is under another keyset".into(),
                        ));
                    }
                    let mut signed = prepared.clone();
                    signed.message.amount = out.amount;
                    let proof = signed.finalize(sig, keys).map_err(credit)?;
                    let counter = prepared
                        .counter
                        .ok_or_else(|| corrupt("a derived output without counter"))?;
                    let s = &mut scans[*i];
                    s.highest = Some(s.highest.map_or(counter, |h| h.max(counter)));
                    hits[*i] = true;
                    found.push((*i, proof, counter));
                }
            }
            for &i in &active {
                let s = &mut scans[i];
                s.empty = if hits[i] { 0 } else { s.empty + 1 };
                s.next = s.next.saturating_add(batch);
            }
        }
        report.signed = found.len() as u64;
        // Never derive a found output again.
        for s in &scans {
            if let Some(h) = s.highest {
                credit_db::raise_counter(self.pool(), &s.keys.id.to_hex(), h.saturating_add(1))
                    .await?;
            }
        }
        // Keep what is unspent.
        let mut keep = Vec::new();
        for chunk in found.chunks(MAX_PER_REQUEST) {
            let ys = chunk
                .iter()
                .map(|(_, p, _)| p.y().map_err(credit))
                .collect::<Result<Vec<_>, _>>()?;
            let states = self.check_states(&api, ys).await?;
            for ((i, proof, counter), state) in chunk.iter().zip(states) {
                match state {
                    OperatorTokenState::Spent => report.spent += 1,
                    OperatorTokenState::Pending => report.pending += 1,
                    OperatorTokenState::Unspent => keep.push(new_token(
                        self.vault_key(),
                        &operator_id,
                        &scans[*i].keys,
                        proof,
                        Some(*counter),
                        Origin::Restore,
                        None,
                    )?),
                }
            }
        }
        report.restored = credit_db::insert_tokens(self.pool(), &keep, now).await?;
        report.restored_value = sum(keep.iter().map(|t| t.amount));
        report.balance = self.unspent_at(&operator_id).await?;
        tracing::info!(
            operator = %operator_id,
            signed = report.signed,
            restored = report.restored,
            "credits restored"
        );
        Ok(report)
    }

    /// The next NUT-13 counter of keyset `keyset_id` (hex).
    pub async fn credit_counter(&self, keyset_id: &str) -> Result<u32, WalletError> {
        credit_db::counter(self.pool(), keyset_id).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use smpx_core::credits::{sign_outputs, KeyRing, KeysetParams, MasterSecret};

    /// A fake operator's answers to a redemption's outputs: honest ones are accepted; a
    /// signature made with a key the operator does not publish (to tag this wallet), or
    /// credits that do not add up to the receipt, are refused before anything is stored.
    #[tokio::test]
    async fn credits_signed_under_an_unpublished_key_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (w, _) = Wallet::create_with(
            &dir.path().join("w.db"),
            "pw",
            crate::KdfParams::insecure_for_tests(),
        )
        .await
        .unwrap();
        let now = smpx_os::Clock::now(&smpx_os::SystemClock);
        let params = KeysetParams {
            orders: 8,
            ..KeysetParams::default()
        };
        let ring = KeyRing::new(MasterSecret::from_bytes([1; 32]), params.clone(), now).unwrap();
        let keys = ring.current(now).unwrap().keys();
        w.accept_keys("op", &keys).await.unwrap();
        let amounts = split(Amount(13), orders(&keys));
        assert_eq!(amounts, vec![Amount(1), Amount(4), Amount(8)]);
        let (plan, outputs) = w.fresh_outputs(&keys, &amounts).await.unwrap();
        assert_eq!(
            plan.iter().map(|p| p.counter).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        // Reserved before anything was derived: the next request starts after them.
        assert_eq!(w.credit_counter(&keys.id.to_hex()).await.unwrap(), 3);
        let prepared = Prepared {
            keys: keys.clone(),
            outputs,
        };
        assert!(!format!("{:?}", prepared.outputs).contains(prepared.outputs[0].secret.as_str()));

        let honest = sign_outputs(&prepared.messages(), &ring).unwrap();
        let tokens = w
            .issued_tokens("op", 1, &prepared, &honest, Amount(13))
            .unwrap();
        assert_eq!(sum(tokens.iter().map(|t| t.amount)), Amount(13));
        assert!(matches!(
            w.issued_tokens("op", 1, &prepared, &honest, Amount(14)),
            Err(WalletError::Verification(_))
        ));

        // Tagging: the same outputs signed with another key (an honest DLEQ for *that* key),
        // labelled with the published keyset's id.
        let other = KeyRing::new(MasterSecret::from_bytes([2; 32]), params, now).unwrap();
        let other_id = *other.current(now).unwrap().id();
        let relabelled: Vec<_> = prepared
            .messages()
            .into_iter()
            .map(|mut m| {
                m.id = other_id;
                m
            })
            .collect();
        let mut tagged = sign_outputs(&relabelled, &other).unwrap();
        for s in &mut tagged {
            s.id = keys.id;
        }
        let e = w
            .issued_tokens("op", 1, &prepared, &tagged, Amount(13))
            .unwrap_err();
        assert!(e.to_string().contains("DLEQ"), "{e}");
        // One tagged signature among honest ones is enough to refuse the whole answer.
        let mut mixed = honest.clone();
        mixed[1] = tagged[1].clone();
        assert!(w
            .issued_tokens("op", 1, &prepared, &mixed, Amount(13))
            .is_err());
        // Keys that do not match their id are refused before use.
        let mut lying = keys.clone();
        lying.final_expiry += 1;
        assert!(w.accept_keys("op", &lying).await.is_err());
        assert!(w.credit_tokens(None).await.unwrap().is_empty());

        // Stored, the tokens' secrets and blinding factors are sealed: not in the file.
        assert_eq!(
            credit_db::insert_tokens(w.pool(), &tokens, now)
                .await
                .unwrap(),
            3
        );
        let listed = w.credit_tokens(Some("op")).await.unwrap();
        assert_eq!(sum(listed.iter().map(|t| t.amount.0)), Amount(13));
        let proof = w
            .open_proof(&credit_db::tokens(w.pool(), None).await.unwrap()[0])
            .unwrap();
        let secrets: Vec<String> = prepared
            .outputs
            .iter()
            .flat_map(|o| [o.secret.as_str().to_owned(), hex::encode(o.r.to_bytes())])
            .collect();
        assert!(secrets.contains(&proof.secret.as_str().to_owned()));
        let path = w.path().to_path_buf();
        w.close().await;
        let mut bytes = std::fs::read(&path).unwrap();
        if let Ok(wal) = std::fs::read(format!("{}-wal", path.display())) {
            bytes.extend(wal);
        }
        let text = String::from_utf8_lossy(&bytes);
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "a token secret is in the file");
        }
    }
}

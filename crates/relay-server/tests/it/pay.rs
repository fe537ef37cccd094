//! Paid capacity: PAY provisions at once, keeps what the operator's registry accepts and
//! cancels what it refuses (also when the answer comes later); INFO tells clients whom to
//! pay. The registry is a scripted fake here; `smpx demo` pays a real operator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::{client, relay_err, signing_key, start, test_config};
use smpx_core::api::SwapId;
use smpx_core::credits::{BlindSignature, SwapRequest};
use smpx_relay_client::{Client, ClientError, RecipientQueue};
use smpx_relay_protocol::capacity::{Bought, PayAnswer};
use smpx_relay_protocol::command::Command;
use smpx_relay_protocol::{CmdError, ErrorCode};
use smpx_relay_server::capacity::{Pricing, RedeemOutcome, Redeemer, MONTH_SECS};
use smpx_relay_server::ServerConfig;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const KEYSET: &str = "00882760bfa2eb41";
const POINT: &str = "024369d2d22a80ecf78f3937da9d5f30c1b9f74f0c32684d583cca0fa6a61cdcfc";

/// A swap request worth `inputs` in, `outputs` back (the signatures are not checked by the
/// relay, only by the operator's registry, which is faked here).
/// Pays one month (16,384 units) for queue `q`, as its recipient.
async fn pay_month(c: &Client, q: &RecipientQueue) -> Result<PayAnswer, ClientError> {
    c.pay(&q.recipient_id, &q.recipient_key, &swap(&[16_384], &[]))
        .await
}

fn swap(inputs: &[u64], outputs: &[u64]) -> SwapRequest {
    let inputs: Vec<String> = inputs
        .iter()
        .map(|a| {
            let secret = hex::encode(rand::random::<[u8; 32]>());
            format!(r#"{{"amount":{a},"id":"{KEYSET}","secret":"{secret}","C":"{POINT}"}}"#)
        })
        .collect();
    let outputs: Vec<String> = outputs
        .iter()
        .map(|a| format!(r#"{{"amount":{a},"id":"{KEYSET}","B_":"{POINT}"}}"#))
        .collect();
    let json = format!(
        r#"{{"inputs":[{}],"outputs":[{}]}}"#,
        inputs.join(","),
        outputs.join(",")
    );
    serde_json::from_str(&json).unwrap()
}

/// The operator's registry as a script: what `swap` and then `status` answer.
#[derive(Debug)]
struct Fake {
    swap: Mutex<Vec<RedeemOutcome>>,
    status: Mutex<Vec<RedeemOutcome>>,
    swaps: Mutex<Vec<SwapId>>,
}

impl Fake {
    fn new(swap: Vec<RedeemOutcome>, status: Vec<RedeemOutcome>) -> Arc<Self> {
        Arc::new(Self {
            swap: Mutex::new(swap),
            status: Mutex::new(status),
            swaps: Mutex::new(vec![]),
        })
    }
}

fn next(v: &Mutex<Vec<RedeemOutcome>>) -> RedeemOutcome {
    let mut v = v.lock().unwrap();
    if v.is_empty() {
        RedeemOutcome::Pending {
            message: "script ended".into(),
        }
    } else {
        v.remove(0)
    }
}

#[async_trait::async_trait]
impl Redeemer for Fake {
    fn operator_url(&self) -> &str {
        "http://operator.test"
    }
    async fn swap(&self, request: &SwapRequest) -> RedeemOutcome {
        self.swaps
            .lock()
            .unwrap()
            .push(SwapId::of_request(request).unwrap());
        next(&self.swap)
    }
    async fn status(&self, _: &SwapId) -> RedeemOutcome {
        next(&self.status)
    }
}

fn spent() -> RedeemOutcome {
    RedeemOutcome::Spent {
        signatures: Vec::<BlindSignature>::new(),
    }
}

fn refused() -> RedeemOutcome {
    RedeemOutcome::Refused {
        status: 409,
        code: smpx_core::ErrorCode::TokenSpent,
        message: "token already spent".into(),
    }
}

fn config(fake: Option<Arc<Fake>>) -> ServerConfig {
    ServerConfig {
        quota: 4,
        pricing: Pricing {
            paid_quota: 10,
            units_per_queue_month: 10_000,
            ..Pricing::default()
        },
        redeemer: fake.map(|f| f as Arc<dyn Redeemer>),
        ..test_config()
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Sends until the relay says QUOTA; returns how many it accepted (at most `max`).
async fn fill(
    c: &smpx_relay_client::Client,
    sid: &smpx_relay_protocol::EntityId,
    max: usize,
) -> usize {
    for i in 0..max {
        match c.send(sid, None, b"hello").await {
            Ok(()) => {}
            Err(ClientError::Relay(ErrorCode::Quota)) => return i,
            Err(e) => panic!("send: {e}"),
        }
    }
    max
}

#[tokio::test]
async fn info_names_the_operator_and_the_prices() {
    let (_, addr) = start(config(Some(Fake::new(vec![], vec![])))).await;
    let (c, _) = client(addr).await;
    let info = c.info().await.unwrap();
    assert_eq!(info.operator_url.as_deref(), Some("http://operator.test"));
    assert_eq!(info.free_quota, 4);
    assert_eq!(info.paid_quota, 10);
    assert_eq!(info.units_per_queue_month, 10_000);

    let (_, addr) = start(config(None)).await;
    let (c, _) = client(addr).await;
    assert_eq!(c.info().await.unwrap().operator_url, None);
}

#[tokio::test]
async fn a_relay_without_an_operator_refuses_payment() {
    let (_, addr) = start(config(None)).await;
    let (c, _) = client(addr).await;
    let q = c.create_queue().await.unwrap();
    let r = pay_month(&c, &q).await;
    assert!(matches!(r, Err(ClientError::Relay(ErrorCode::Payment))));
}

#[tokio::test]
async fn an_accepted_payment_raises_the_quota_for_the_months_paid() {
    let fake = Fake::new(vec![spent()], vec![]);
    let (relay, addr) = start(config(Some(fake.clone()))).await;
    let (c, _) = client(addr).await;
    let q = c.create_queue().await.unwrap();
    // 32,768 in, 8,192 + 4,096 back: 20,480 paid = two months at 10,000 (the rest is a tip).
    let req = swap(&[32_768], &[8_192, 4_096]);
    let answer = c
        .pay(&q.recipient_id, &q.recipient_key, &req)
        .await
        .unwrap();
    let PayAnswer::Paid {
        swap_id,
        paid_units,
        bought: Bought::Queue { quota, paid_until },
        ..
    } = answer
    else {
        panic!("expected Paid for a queue, got {answer:?}")
    };
    assert_eq!(swap_id, SwapId::of_request(&req).unwrap());
    assert_eq!(*fake.swaps.lock().unwrap(), vec![swap_id]);
    assert_eq!(paid_units, 20_480);
    assert_eq!(quota, 10);
    let expect = now() + 2 * MONTH_SECS;
    assert!(paid_until.abs_diff(expect) < 60, "{paid_until} vs {expect}");
    assert_eq!(fill(&c, &q.sender_id, 20).await, 10);
    let s = relay.stats().snapshot();
    assert_eq!(s.credits_earned_units, 20_480);
    assert_eq!(s.payments_refused, 0);
}

#[tokio::test]
async fn a_refused_payment_cancels_what_was_provisioned() {
    let (relay, addr) = start(config(Some(Fake::new(vec![refused()], vec![])))).await;
    let (c, _) = client(addr).await;
    let q = c.create_queue().await.unwrap();
    let answer = pay_month(&c, &q).await.unwrap();
    assert!(
        matches!(
            &answer,
            PayAnswer::Refused {
                code: smpx_core::ErrorCode::TokenSpent,
                ..
            }
        ),
        "{answer:?}"
    );
    assert_eq!(
        fill(&c, &q.sender_id, 20).await,
        4,
        "the free quota is back"
    );
    let s = relay.stats().snapshot();
    assert_eq!(s.credits_earned_units, 0);
    assert_eq!(s.payments_refused, 1);
}

#[tokio::test]
async fn a_pending_payment_keeps_the_capacity_until_the_operator_decides() {
    // Pending now, pending at the first look, then refused: cancelled in the background.
    let fake = Fake::new(
        vec![RedeemOutcome::Pending {
            message: "registry busy".into(),
        }],
        vec![
            RedeemOutcome::Pending {
                message: "still".into(),
            },
            refused(),
        ],
    );
    let (relay, addr) = start(config(Some(fake))).await;
    let (c, _) = client(addr).await;
    let q = c.create_queue().await.unwrap();
    let answer = pay_month(&c, &q).await.unwrap();
    assert!(
        matches!(
            answer,
            PayAnswer::Pending {
                paid_units: 16_384,
                ..
            }
        ),
        "{answer:?}"
    );
    assert_eq!(fill(&c, &q.sender_id, 6).await, 6, "provisioned meanwhile");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while relay.stats().snapshot().payments_refused == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never resolved");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Back to the free quota: the 6 held stay, more are refused.
    assert_eq!(fill(&c, &q.sender_id, 2).await, 0);

    // Pending, then done at the first look: kept and counted.
    let fake = Fake::new(
        vec![RedeemOutcome::Pending {
            message: "no answer".into(),
        }],
        vec![spent()],
    );
    let (relay, addr) = start(config(Some(fake))).await;
    let (c, _) = client(addr).await;
    let q = c.create_queue().await.unwrap();
    c.pay(&q.recipient_id, &q.recipient_key, &swap(&[16_384], &[]))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while relay.stats().snapshot().credits_earned_units == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never resolved");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(relay.stats().snapshot().credits_earned_units, 16_384);
    assert_eq!(fill(&c, &q.sender_id, 20).await, 10);
}

#[tokio::test]
async fn bad_payments_are_refused_before_the_operator_is_asked() {
    let fake = Fake::new(vec![spent()], vec![]);
    let (relay, addr) = start(config(Some(fake.clone()))).await;
    let (c, _) = client(addr).await;
    let q = c.create_queue().await.unwrap();
    // Below the price of one month.
    let r = c
        .pay(&q.recipient_id, &q.recipient_key, &swap(&[8_192], &[]))
        .await;
    assert_eq!(relay_err(r), ErrorCode::Payment);
    // Change worth more than the inputs.
    let r = c
        .pay(
            &q.recipient_id,
            &q.recipient_key,
            &swap(&[8_192], &[16_384]),
        )
        .await;
    assert_eq!(relay_err(r), ErrorCode::Payment);
    // Signed by someone else; an unknown queue.
    let r = c
        .pay(&q.recipient_id, &signing_key(), &swap(&[16_384], &[]))
        .await;
    assert_eq!(relay_err(r), ErrorCode::Auth);
    let r = c
        .pay(&q.sender_id, &q.recipient_key, &swap(&[16_384], &[]))
        .await;
    assert_eq!(relay_err(r), ErrorCode::Auth);
    // Not a swap request.
    let r = c
        .request(
            Some(&q.recipient_id),
            Some(&q.recipient_key),
            &Command::Pay {
                request: b"{\"inputs\": 7}".to_vec(),
            },
        )
        .await;
    assert_eq!(relay_err(r), ErrorCode::Cmd(CmdError::Syntax));
    assert!(
        fake.swaps.lock().unwrap().is_empty(),
        "the operator was asked"
    );
    assert_eq!(fill(&c, &q.sender_id, 20).await, 4);
    assert_eq!(relay.stats().snapshot().credits_earned_units, 0);
}

#[tokio::test]
async fn paid_quota_ends_when_its_time_is_up() {
    // Messages outlive the paid month here, so what is held is not expired with it.
    let cfg = ServerConfig {
        retention_secs: 365 * 86_400,
        ..config(Some(Fake::new(vec![spent()], vec![])))
    };
    let (relay, addr) = start(cfg).await;
    let (c, _) = client(addr).await;
    let q = c.create_queue().await.unwrap();
    let PayAnswer::Paid {
        bought: Bought::Queue { paid_until, .. },
        ..
    } = pay_month(&c, &q).await.unwrap()
    else {
        panic!("not paid")
    };
    relay.expire_once(paid_until - 1).await.unwrap();
    assert_eq!(fill(&c, &q.sender_id, 3).await, 3, "still paid");
    relay.expire_once(paid_until + 1).await.unwrap();
    assert_eq!(
        fill(&c, &q.sender_id, 20).await,
        1,
        "3 held: one more fits the free quota of 4"
    );
}

//! Paying relays for capacity with operator credits, against the real services: the test
//! kit's operator and two relays of that operator (TLS on loopback). A payment raises the
//! queue's quota and the wallet keeps its change; the identical payment presented twice —
//! to two relays at once, or to one relay for another queue — buys once: the operator's
//! registry flags the repeat and the relay that got it cancels what it provisioned.

use smpx_core::api::Payment;
use smpx_core::credits::BlindSignature;
use smpx_core::Amount;
use smpx_http::ClientError as HttpError;
use smpx_relay::RunningNode;
use smpx_relay_client::{connect_tls, Client, ClientConfig, ClientError};
use smpx_relay_protocol::capacity::{Bought, PayAnswer};
use smpx_relay_protocol::{EntityId, ErrorCode};
use smpx_testkit::net::Network;
use smpx_testkit::Backend;
use smpx_wallet::{KdfParams, Protocol, RedeemOptions, Wallet, WalletError};
use std::time::Duration;

async fn relay(dir: &std::path::Path, operator_url: &str) -> RunningNode {
    smpx_testkit::relay::start(dir, Some(operator_url))
        .await
        .unwrap()
}

async fn client(node: &RunningNode) -> Client {
    connect_tls(node.address(), ClientConfig::default())
        .await
        .unwrap()
        .0
}

/// Sends until QUOTA; how many were accepted (at most `max`).
async fn fill(c: &Client, sid: &EntityId, max: u32) -> u32 {
    for i in 0..max {
        match c.send(sid, None, b"x").await {
            Ok(()) => {}
            Err(ClientError::Relay(ErrorCode::Quota)) => return i,
            Err(e) => panic!("send: {e}"),
        }
    }
    max
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_sell_capacity_for_credits_once_per_payment() {
    let dir = tempfile::tempdir().unwrap();
    let net = Network::start(Backend::Sqlite).await.unwrap();
    let w = Wallet::create_with(
        &dir.path().join("w.db"),
        "pw",
        KdfParams::insecure_for_tests(),
    )
    .await
    .unwrap()
    .0;
    let v = w
        .buy(&net.coordinator_url, &net.issuer_url, 10, Payment::Devnet)
        .await
        .unwrap();
    w.publish(&net.coordinator_url, v.id, Duration::ZERO)
        .await
        .unwrap();
    let options = RedeemOptions {
        protocol: Protocol::V1,
        ..RedeemOptions::default()
    };
    w.redeem_with(
        &net.coordinator_url,
        &net.operator_url,
        v.id,
        &options,
        &|_| {},
    )
    .await
    .unwrap();

    let a = relay(&dir.path().join("a"), &net.operator_url).await;
    let b = relay(&dir.path().join("b"), &net.operator_url).await;
    let (ca, cb) = (client(&a).await, client(&b).await);
    let info = ca.info().await.unwrap();
    assert_eq!(
        info.operator_url.as_deref(),
        Some(net.operator_url.as_str())
    );

    // A plain payment: the quota rises, the relay earns the price, the change comes back.
    let qa = ca.create_queue().await.unwrap();
    let paid = w
        .pay_relay(&ca, &qa.recipient_id, &qa.recipient_key, None)
        .await
        .unwrap();
    assert_eq!(paid.spend.paid, Amount(info.units_per_queue_month));
    assert_eq!(
        paid.spend.balance,
        Amount(10_000_000 - info.units_per_queue_month)
    );
    assert!(matches!(paid.bought, Bought::Queue { quota, .. } if quota == info.paid_quota));
    assert_eq!(
        a.relay().stats().snapshot().credits_earned_units,
        info.units_per_queue_month
    );
    assert_eq!(
        fill(&ca, &qa.sender_id, info.free_quota + 5).await,
        info.free_quota + 5
    );

    // The same payment presented to two relays of the operator at once: one sells, the
    // other is told the credits are spent and cancels its provision.
    let qa2 = ca.create_queue().await.unwrap();
    let qb = cb.create_queue().await.unwrap();
    let (answers_tx, mut answers_rx) = tokio::sync::mpsc::unbounded_channel();
    let price = Amount(info.units_per_queue_month);
    let r = w
        .spend_credits_via(&net.operator_url, price, |_, request| {
            let (ca, cb, qa2, qb, tx) = (&ca, &cb, &qa2, &qb, answers_tx.clone());
            async move {
                let (x, y) = tokio::join!(
                    ca.pay(&qa2.recipient_id, &qa2.recipient_key, &request),
                    cb.pay(&qb.recipient_id, &qb.recipient_key, &request),
                );
                let (x, y) = (x.unwrap(), y.unwrap());
                let sigs: Option<Vec<BlindSignature>> =
                    [&x, &y].into_iter().find_map(|p| match p {
                        PayAnswer::Paid { signatures, .. } => Some(signatures.clone()),
                        _ => None,
                    });
                tx.send((x, y, request)).unwrap();
                sigs.ok_or(HttpError::Transport {
                    url: "test".into(),
                    message: "neither relay sold".into(),
                })
            }
        })
        .await;
    assert!(r.is_ok(), "{r:?}");
    let (x, y, request) = answers_rx.recv().await.unwrap();
    let sold = [&x, &y]
        .iter()
        .filter(|p| matches!(p, PayAnswer::Paid { .. }))
        .count();
    let refused = [&x, &y]
        .iter()
        .filter(|p| {
            matches!(
                p,
                PayAnswer::Refused {
                    code: smpx_core::ErrorCode::TokenSpent | smpx_core::ErrorCode::SpendRepeated,
                    ..
                }
            )
        })
        .count();
    assert_eq!((sold, refused), (1, 1), "{x:?} / {y:?}");
    let (sa, sb) = (a.relay().stats().snapshot(), b.relay().stats().snapshot());
    assert_eq!(
        sa.credits_earned_units + sb.credits_earned_units,
        2 * info.units_per_queue_month,
        "one sale each for the first payment and for this one"
    );
    assert_eq!(sa.payments_refused + sb.payments_refused, 1);
    // The queue whose payment was refused holds the free quota only.
    let (free_client, free_queue) = if matches!(x, PayAnswer::Refused { .. }) {
        (&ca, &qa2)
    } else {
        (&cb, &qb)
    };
    assert_eq!(
        fill(free_client, &free_queue.sender_id, info.free_quota + 5).await,
        info.free_quota
    );

    // Once more, later, to the relay that sold it, for a third queue: refused too.
    let qc = ca.create_queue().await.unwrap();
    let again = ca
        .pay(&qc.recipient_id, &qc.recipient_key, &request)
        .await
        .unwrap();
    assert!(matches!(again, PayAnswer::Refused { .. }), "{again:?}");
    assert_eq!(
        fill(&ca, &qc.sender_id, info.free_quota + 5).await,
        info.free_quota
    );

    // Paying with more credits than the wallet holds: nothing is sent.
    let r = w
        .pay_relay(
            &ca,
            &qc.recipient_id,
            &qc.recipient_key,
            Some(Amount(50_000_000)),
        )
        .await;
    assert!(
        matches!(r, Err(WalletError::InsufficientCredits { .. })),
        "{r:?}"
    );

    // `smpx chat upgrade`: a contact's receiving queue, paid for two months.
    let chat = w.chat();
    let (_, invitation) = chat.create_contact(a.address(), Some("bob")).await.unwrap();
    let up = chat.upgrade("bob", 2).await.unwrap();
    assert_eq!(up.spend.paid, Amount(2 * info.units_per_queue_month));
    let Bought::Queue { quota, paid_until } = up.bought else {
        panic!("{:?}", up.bought)
    };
    assert_eq!(quota, info.paid_quota);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(paid_until.abs_diff(now + 60 * 86_400) < 120);
    let sid = invitation
        .parse::<smpx_wallet::Invitation>()
        .unwrap()
        .sender_id;
    assert_eq!(
        fill(&ca, &sid, info.free_quota + 5).await,
        info.free_quota + 5
    );
    assert!(matches!(
        chat.upgrade("nobody", 1).await,
        Err(smpx_wallet::ChatError::UnknownContact(_))
    ));

    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    net.stop().await.unwrap();
}

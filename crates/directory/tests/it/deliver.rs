//! Share statements reach the coordinator: after a round the directory posts each operator's
//! statement for the period to the coordinators in `coordinators`; a coordinator that does
//! not trust the directory's key refuses it (and keeps the administrator's number), one that
//! does pays the operator the statement's share from then on. The real coordinator of the
//! test network, on the directory's manual clock.

use crate::support::{Dir, Relay, T0};
use smpx_core::directory::statement_digest;
use smpx_core::directory::ShareStatement;
use smpx_core::receipt::Signed;
use smpx_core::rules::measure::PROBATION_SECS;
use smpx_directory::deliver::{deliver_statements, Delivery};
use smpx_directory::{Directory, DirectoryHome};
use smpx_testkit::net::{Network, Options, Service, OPERATOR_ID, OPERATOR_SHARE_BPS};
use smpx_testkit::Backend;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_reach_the_coordinator_that_trusts_the_directory() {
    let d = Dir::start(Backend::Sqlite).await;
    let mut opts = Options::new(Backend::Sqlite);
    opts.clock = std::sync::Arc::new((*d.clock).clone());
    let mut net = Network::start_with(opts).await.unwrap();

    // The directory as configured to deliver to the network's coordinator.
    let mut home = DirectoryHome::load(&d.home).unwrap();
    home.config.coordinators = vec![net.coordinator_url.clone()];
    let dir = Directory::new(
        d.state.store().clone(),
        home,
        d.clock.clone(),
        d.prober.clone(),
    );

    let relay = Relay::new(OPERATOR_ID, 9, "192.0.2.20");
    assert_eq!(d.register(&relay).await.0, 200);
    while d.clock_now() < T0 + PROBATION_SECS + 86_400 {
        smpx_directory::probe::probe_round(&dir).await.unwrap();
        d.clock.advance(6 * 3600);
    }
    smpx_directory::probe::probe_round(&dir).await.unwrap();
    assert_eq!(
        smpx_directory::view::issue_statements(&dir).await.unwrap(),
        1
    );

    let share_at = |net: &Network| {
        let url = format!("{}/v1/operators/{OPERATOR_ID}/share", net.coordinator_url);
        async move {
            reqwest::get(url)
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };

    // Not trusted yet: refused, the administrator's number stands.
    let refused = deliver_statements(&dir).await.unwrap();
    assert_eq!(
        refused,
        Delivery {
            taken: 0,
            refused: 1,
            unreachable: 0
        }
    );
    let s = share_at(&net).await;
    assert_eq!(
        (s["source"].as_str(), s["share_bps"].as_u64()),
        (Some("admin"), Some(u64::from(OPERATOR_SHARE_BPS))),
        "{s}"
    );

    // Trusted: taken; the coordinator pays the statement's share (under its cap).
    std::fs::write(
        net.home(Service::Coordinator)
            .join(smpx_coordinator::CONFIG_FILE),
        serde_json::to_vec(&serde_json::json!({
            "trusted_directories": [d.state.statement_key().to_hex()]
        }))
        .unwrap(),
    )
    .unwrap();
    net.restart(Service::Coordinator).await.unwrap();
    let taken = deliver_statements(&dir).await.unwrap();
    assert_eq!(
        taken,
        Delivery {
            taken: 1,
            refused: 0,
            unreachable: 0
        }
    );
    // Delivering again changes nothing (the coordinator answers a repeat as taken).
    assert_eq!(deliver_statements(&dir).await.unwrap().taken, 1);

    let (_, st) = d
        .get(&format!("/v1/statements?operator={OPERATOR_ID}"))
        .await;
    let signed: Signed<ShareStatement> = serde_json::from_value(st).unwrap();
    let stated = signed.body.share.share_bps;
    assert!(
        stated > 0,
        "a measured relay past probation earns something"
    );
    let s = share_at(&net).await;
    assert_eq!(s["source"], "statement", "{s}");
    assert_eq!(s["statement"], statement_digest(&signed).as_str());
    assert_eq!(
        s["share_bps"].as_u64().unwrap(),
        stated.min(u64::from(OPERATOR_SHARE_BPS))
    );

    // A coordinator that is down: counted, not fatal.
    net.stop_service(Service::Coordinator).await.unwrap();
    let down = deliver_statements(&dir).await.unwrap();
    assert_eq!(down.unreachable, 1);
}

//! `magma-estimate` against the simulator and `magma-status` over channel sets and addresses
//! built in the emulated node (design.md §4, §6). Every expected figure is worked out by hand in
//! the comments.

mod common;

use common::{WAIT, config, expect_error, finish, sim, start};
use lightningd_emulator::{AddrType, ChannelSpec, ChannelState, Emulator, NetAddress, peer_id};
use magma_sim::{Fault, Operation};
use serde_json::{Value, json};

const ONION: &str = "vww6ybal4bd7szmgncyruucpgfkqahzddi37ktceo3ah7ngmcopnpyyd.onion";

/// The parts of a quote that depend on the price and the amount.
fn figures(q: &Value) -> (u64, u64, u64, u64, bool) {
    let n = |k: &str| q[k].as_u64().unwrap_or_else(|| panic!("{k} in {q}"));
    (
        n("usd_cents"),
        n("expected_inbound_sat"),
        n("expected_cost_sat"),
        n("price_ppm"),
        q["raised_to_minimum"].as_bool().unwrap(),
    )
}

// --- 5. magma-estimate ---------------------------------------------------------------------

#[tokio::test]
async fn estimate_prices_by_usd_cents_and_by_amount_named_and_positional() {
    let (sim, server) = sim().await;
    let emu = start(config(&server.graphql_url)).await;

    // The simulator's price: 543,260 sats of inbound per USD, 501.09 USD of capacity per USD.
    // $50.00: inbound = 5000 × 543,260 / 100 = 27,163,000 sats;
    // cost = 27,163,000 / 501.09 = 54,207.83 → 54,208 sats (rounded up);
    // ppm = 54,208 / 27,163,000 × 1e6 = 1995.66 → 1996 (rounded up).
    for params in [
        json!({"usd_cents": 5000}),
        json!([5000]),
        json!({"usd_cents": "5000"}),
    ] {
        let q = emu.call("magma-estimate", params.clone()).await.unwrap();
        assert_eq!(q["sats_per_usd"], json!(543_260), "{params}");
        assert_eq!(q["usd_capacity_per_usd"], json!("501.09"), "{params}");
        assert_eq!(
            figures(&q),
            (5000, 27_163_000, 54_208, 1996, false),
            "{params}"
        );
        assert_eq!(q["allowed"], json!(true), "{q}");
        assert_eq!(q["refusals"], json!([]));
    }

    // 10,000,000 sats wanted: cents = ceil(10,000,000 × 100 / 543,260) = ceil(1840.74) = 1841;
    // inbound = 1841 × 543,260 / 100 = 10,001,416.6 → 10,001,416 (rounded down: never promise
    // more than Magma delivers); cost = 10,001,416.6 / 501.09 = 19,959.72 → 19,960;
    // ppm = 19,960 / 10,001,416 × 1e6 = 1995.72 → 1996.
    for params in [json!({"amount_sat": 10_000_000}), json!([null, 10_000_000])] {
        let q = emu.call("magma-estimate", params.clone()).await.unwrap();
        assert_eq!(
            figures(&q),
            (1841, 10_001_416, 19_960, 1996, false),
            "{params}"
        );
    }

    // 1,000,000 sats needs only ceil(184.07) = 185 cents: raised to Magma's 500-cent minimum,
    // which buys 500 × 543,260 / 100 = 2,716,300 sats for 2,716,300 / 501.09 = 5420.78 → 5421
    // sats; ppm = 5421 / 2,716,300 × 1e6 = 1995.73 → 1996.
    let q = emu
        .call("magma-estimate", json!({"amount_sat": 1_000_000}))
        .await
        .unwrap();
    assert_eq!(figures(&q), (500, 2_716_300, 5_421, 1996, true));
    // No argument: the configured smallest order (500 cents), the same figures, not "raised".
    let q = emu.call("magma-estimate", json!({})).await.unwrap();
    assert_eq!(figures(&q), (500, 2_716_300, 5_421, 1996, false));

    // A new price: 600,000 sats and 550.5 USD of capacity per USD.
    // $50.00: inbound = 5000 × 600,000 / 100 = 30,000,000; cost = 30,000,000 / 550.5 =
    // 54,495.91 → 54,496; ppm = 54,496 / 30,000,000 × 1e6 = 1816.53 → 1817.
    sim.set_price("600000", "550.5").unwrap();
    let q = emu
        .call("magma-estimate", json!({"usd_cents": 5000}))
        .await
        .unwrap();
    assert_eq!(q["sats_per_usd"], json!(600_000));
    assert_eq!(q["usd_capacity_per_usd"], json!("550.5"));
    assert_eq!(figures(&q), (5000, 30_000_000, 54_496, 1817, false));

    // Each estimate asked Magma once for the price, and for nothing else.
    let log = sim.request_log();
    assert_eq!(log.len(), 8, "{log:?}");
    assert!(
        log.iter().all(|r| r.operation == Operation::Price),
        "{log:?}"
    );
    assert!(sim.orders().is_empty(), "an estimate buys nothing");
    finish(emu).await;
}

#[tokio::test]
async fn estimate_reports_every_cap_that_refuses_the_purchase() {
    let (sim, server) = sim().await;
    // 1995 ppm is just under the market's 1996.
    let emu = start(
        config(&server.graphql_url)
            .option("magma-max-fee-ppm", 1995)
            .option("magma-order-min-usd-cents", 1000)
            .option("magma-order-max-usd-cents", 4000)
            .option("magma-budget-usd-cents", 3000),
    )
    .await;

    // 2000 cents: inside 1000..4000 and the 3000 budget; only the price is too high.
    let q = emu
        .call("magma-estimate", json!({"usd_cents": 2000}))
        .await
        .unwrap();
    assert_eq!(q["allowed"], json!(false));
    assert_eq!(
        q["caps"],
        json!({"max_fee_ppm": 1995, "price_ok": false, "order_min_usd_cents": 1000,
               "order_max_usd_cents": 4000, "size_ok": true, "budget_usd_cents": 3000,
               "within_budget": true})
    );
    assert_eq!(
        q["refusals"],
        json!(["price 1996 ppm is above magma-max-fee-ppm (1995)"])
    );

    // A cheaper market: 1,000,000 sats and 1000 USD of capacity per USD → $1 of fees buys
    // $1000 of capacity: cost = 2000 × 1,000,000 / 100 / 1000 = 20,000 sats for
    // 20,000,000 sats of inbound = 1000 ppm, under the cap.
    sim.set_price("1000000", "1000").unwrap();
    let q = emu
        .call("magma-estimate", json!({"usd_cents": 2000}))
        .await
        .unwrap();
    assert_eq!(figures(&q), (2000, 20_000_000, 20_000, 1000, false));
    assert_eq!((&q["allowed"], &q["refusals"]), (&json!(true), &json!([])));

    // 500 cents is Magma's minimum but below ours.
    let q = emu
        .call("magma-estimate", json!({"usd_cents": 500}))
        .await
        .unwrap();
    assert_eq!(q["allowed"], json!(false));
    assert_eq!(
        q["refusals"],
        json!([
            "500 cents is outside magma-order-min-usd-cents..magma-order-max-usd-cents (1000..4000)"
        ])
    );
    // 3500 cents: a valid size, over the budget.
    let q = emu
        .call("magma-estimate", json!({"usd_cents": 3500}))
        .await
        .unwrap();
    assert_eq!(
        q["refusals"],
        json!(["3500 cents is more than magma-budget-usd-cents (3000)"])
    );
    assert_eq!(
        (&q["caps"]["size_ok"], &q["caps"]["within_budget"]),
        (&json!(true), &json!(false))
    );
    // 50,000,000 sats needs 5000 cents: both too large and over budget.
    let q = emu
        .call("magma-estimate", json!({"amount_sat": 50_000_000}))
        .await
        .unwrap();
    assert_eq!(q["usd_cents"], json!(5000));
    assert_eq!(q["refusals"].as_array().unwrap().len(), 2, "{q}");
    assert_eq!(q["allowed"], json!(false));
    finish(emu).await;
}

#[tokio::test]
async fn estimate_refuses_bad_arguments_naming_the_field() {
    let (sim, server) = sim().await;
    let emu = start(config(&server.graphql_url)).await;
    let cases: Vec<(Value, &[&str])> = vec![
        (
            json!({"usd_cents": -5}),
            &["usd_cents must be a positive whole number", "-5"],
        ),
        (
            json!({"usd_cents": 0}),
            &["usd_cents must be a positive whole number"],
        ),
        (
            json!({"amount_sat": 0}),
            &["amount_sat must be a positive whole number"],
        ),
        (
            json!({"amount_sat": -1}),
            &["amount_sat must be a positive whole number"],
        ),
        (
            json!({"usd_cents": "lots"}),
            &["usd_cents must be a positive whole number", "lots"],
        ),
        (
            json!({"amount_sat": 12.5}),
            &["amount_sat must be a positive whole number"],
        ),
        (
            json!({"usd_cents": true}),
            &["usd_cents must be a positive whole number"],
        ),
        (
            json!(["abc"]),
            &["usd_cents must be a positive whole number"],
        ),
        (
            json!([null, "1e6"]),
            &["amount_sat must be a positive whole number"],
        ),
        (
            json!({"usd_cents": 1000, "amount_sat": 1_000_000}),
            &["usd_cents or amount_sat, not both"],
        ),
        (
            json!([1000, 1_000_000]),
            &["usd_cents or amount_sat, not both"],
        ),
        (
            json!({"usd_cents": 499}),
            &["usd_cents must be at least 500", "Magma's minimum", "499"],
        ),
        (json!([1]), &["usd_cents must be at least 500"]),
        (
            json!({"usd": 5000}),
            &["unknown argument \"usd\"", "usd_cents, amount_sat"],
        ),
        (json!([1000, null, 3]), &["too many arguments", "at most 2"]),
    ];
    for (params, words) in cases {
        let e = expect_error(
            emu.call("magma-estimate", params.clone()).await,
            -32602,
            words,
        );
        assert!(!e.message.is_empty(), "{params}");
    }
    // Refused before Magma was asked anything.
    assert_eq!(sim.request_log(), vec![]);
    // magma-status takes no argument at all.
    expect_error(
        emu.call("magma-status", json!({"verbose": true})).await,
        -32602,
        &["unknown argument \"verbose\"", "no arguments"],
    );
    expect_error(
        emu.call("magma-status", json!([1])).await,
        -32602,
        &["too many arguments"],
    );
    finish(emu).await;
}

#[tokio::test]
async fn a_magma_failure_is_error_1601_and_the_plugin_keeps_working() {
    let (sim, server) = sim().await;
    let emu = start(config(&server.graphql_url)).await;
    sim.inject_fault(Operation::Price, Fault::Http500, Some(1));
    let e = expect_error(
        emu.call("magma-estimate", json!({"usd_cents": 1000})).await,
        1601,
        &["Magma is temporarily unavailable", "HTTP 500"],
    );
    assert_eq!(e.data, Some(json!({"class": "transient"})));

    sim.inject_fault(
        Operation::Price,
        Fault::GraphqlError {
            message: "Something broke".into(),
            code: "INTERNAL_SERVER_ERROR".into(),
        },
        Some(1),
    );
    let e = expect_error(
        emu.call("magma-estimate", json!({})).await,
        1601,
        &["Something broke"],
    );
    assert!(e.data.is_some(), "{e:?}");

    // The next call works: the plugin is still up and answers.
    let q = emu
        .call("magma-estimate", json!({"usd_cents": 5000}))
        .await
        .unwrap();
    assert_eq!(figures(&q), (5000, 27_163_000, 54_208, 1996, false));
    assert!(emu.plugin_running());
    finish(emu).await;
}

#[tokio::test]
async fn an_unreachable_magma_is_error_1601_too() {
    // Bind and drop a listener: nothing answers on that port.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let emu = start(config(&format!("http://127.0.0.1:{port}/graphql"))).await;
    let e = expect_error(
        emu.call("magma-estimate", json!({})).await,
        1601,
        &["Magma is temporarily unavailable"],
    );
    assert_eq!(e.data, Some(json!({"class": "transient"})));
    assert!(emu.plugin_running());
    finish(emu).await;
}

// --- 6. magma-status -----------------------------------------------------------------------

async fn inbound(emu: &Emulator) -> Value {
    emu.call("magma-status", json!({})).await.unwrap()["inbound"].clone()
}

/// (usable, offline, pending, spendable, total, normal channels, opening channels)
fn inbound_figures(i: &Value) -> (u64, u64, u64, u64, u64, u64, u64) {
    let n = |k: &str| i[k].as_u64().unwrap_or_else(|| panic!("{k} in {i}"));
    assert_eq!(i["pending_sat"], i["opening_channels_sat"], "no orders yet");
    (
        n("usable_sat"),
        n("offline_sat"),
        n("pending_sat"),
        n("spendable_outbound_sat"),
        n("total_sat"),
        n("normal_channels"),
        n("opening_channels"),
    )
}

#[tokio::test]
async fn status_sums_inbound_over_the_nodes_channels() {
    let (_sim, server) = sim().await;
    let emu = start(config(&server.graphql_url).option("magma-min-inbound-sat", 5_000_000)).await;
    let node = emu.node();
    let i = inbound(&emu).await;
    assert_eq!(inbound_figures(&i), (0, 0, 0, 0, 0, 0, 0));
    assert_eq!(i["min_inbound_sat"], json!(5_000_000));
    assert_eq!(
        i["target_inbound_sat"],
        json!(10_000_000),
        "twice the minimum"
    );
    assert_eq!(i["below_minimum"], json!(true));

    // The emulated node's arithmetic (the fixtures'): reserve = 1 % of the capacity; the opener
    // also keeps 11,282 sats for the commitment fee.

    // 1. alice opened 2,000,000 sats to us, all on her side:
    //    receivable = 2,000,000 − 20,000 reserve − 11,282 fee = 1,968,718 sats.
    node.add_channel(
        ChannelSpec::remote_opened(&peer_id("alice"), 2_000_000_000).state(ChannelState::Normal),
    );
    assert_eq!(
        inbound_figures(&inbound(&emu).await),
        (1_968_718, 0, 0, 0, 1_968_718, 1, 0)
    );

    // 2. we opened 1,000,000 sats to bob, all on our side: no inbound (1 % reserve of nothing);
    //    spendable = 1,000,000 − 10,000 − 11,282 = 978,718 sats.
    node.add_channel(
        ChannelSpec::local_opened(&peer_id("bob"), 1_000_000_000).state(ChannelState::Normal),
    );
    assert_eq!(
        inbound_figures(&inbound(&emu).await),
        (1_968_718, 0, 0, 978_718, 1_968_718, 2, 0)
    );

    // 3. carol is opening 3,000,000 sats to us: pending, not usable;
    //    3,000,000 − 30,000 − 11,282 = 2,958,718 sats. Total 1,968,718 + 2,958,718 = 4,927,436,
    //    still under the 5,000,000 minimum.
    node.open_channel(ChannelSpec::remote_opened(&peer_id("carol"), 3_000_000_000));
    let i = inbound(&emu).await;
    assert_eq!(
        inbound_figures(&i),
        (1_968_718, 0, 2_958_718, 978_718, 4_927_436, 2, 1)
    );
    assert_eq!(i["below_minimum"], json!(true));

    // 4. we are opening 500,000 sats to erin: adds nothing anywhere.
    node.open_channel(ChannelSpec::local_opened(&peer_id("erin"), 500_000_000));
    assert_eq!(
        inbound_figures(&inbound(&emu).await),
        (1_968_718, 0, 2_958_718, 978_718, 4_927_436, 2, 1)
    );

    // 5. dave, disconnected, has a normal 1,000,000-sat channel we opened, 600,000 ours:
    //    receivable = 1,000,000 − 600,000 − 10,000 reserve = 390,000 sats, usable but offline;
    //    his 578,718 spendable cannot carry a payment now, so spendable stays 978,718.
    //    Total 2,358,718 + 2,958,718 = 5,317,436 ≥ 5,000,000.
    let mut spec =
        ChannelSpec::local_opened(&peer_id("dave"), 1_000_000_000).state(ChannelState::Normal);
    spec.to_us_msat = 600_000_000;
    spec.peer_connected = false;
    node.add_channel(spec);
    let i = inbound(&emu).await;
    assert_eq!(
        inbound_figures(&i),
        (2_358_718, 390_000, 2_958_718, 978_718, 5_317_436, 3, 1)
    );
    assert_eq!(i["below_minimum"], json!(false));

    // bob goes offline: his channel has no inbound, but its 978,718 spendable is gone.
    node.disconnect_peer(&peer_id("bob"));
    assert_eq!(
        inbound_figures(&inbound(&emu).await),
        (2_358_718, 390_000, 2_958_718, 0, 5_317_436, 3, 1)
    );
    // alice goes offline: all her 1,968,718 still counts as usable, now offline too.
    node.disconnect_peer(&peer_id("alice"));
    assert_eq!(
        inbound_figures(&inbound(&emu).await),
        (2_358_718, 2_358_718, 2_958_718, 0, 5_317_436, 3, 1)
    );

    // Thresholds at run time: a minimum above the total flips below_minimum.
    emu.setconfig("magma-target-inbound-sat", json!(8_000_000))
        .await
        .unwrap();
    emu.setconfig("magma-min-inbound-sat", json!(5_317_437))
        .await
        .unwrap();
    let i = inbound(&emu).await;
    assert_eq!(
        (
            &i["min_inbound_sat"],
            &i["target_inbound_sat"],
            &i["below_minimum"]
        ),
        (&json!(5_317_437), &json!(8_000_000), &json!(true))
    );
    finish(emu).await;
}

#[tokio::test]
async fn status_derives_the_connection_uri_from_the_announced_address() {
    let (_sim, server) = sim().await;
    // Mainnet: the plugin as a user builds it (a test-hooks build runs only on regtest).
    let mut cfg = config(&server.graphql_url);
    cfg.plugin = common::RELEASE_LIKE_PLUGIN.into();
    cfg.network = "bitcoin".into();
    let emu = start(cfg).await;
    let node = emu.node();
    let id = node.id();
    let connection =
        || async { emu.call("magma-status", json!({})).await.unwrap()["connection_uri"].clone() };
    let announced = |uri: String| json!({"uri": uri, "source": "announced address"});

    node.set_addresses(vec![NetAddress::new(AddrType::Ipv4, "203.0.114.7", 9735)]);
    assert_eq!(
        connection().await,
        announced(format!("{id}@203.0.114.7:9735"))
    );

    node.set_addresses(vec![NetAddress::new(AddrType::Ipv6, "2a01:4f8::1", 9736)]);
    assert_eq!(
        connection().await,
        announced(format!("{id}@[2a01:4f8::1]:9736"))
    );

    node.set_addresses(vec![NetAddress::new(AddrType::Torv3, ONION, 9735)]);
    assert_eq!(connection().await, announced(format!("{id}@{ONION}:9735")));

    node.set_addresses(vec![NetAddress::new(
        AddrType::Dns,
        "node.example.net",
        9735,
    )]);
    assert_eq!(
        connection().await,
        announced(format!("{id}@node.example.net:9735"))
    );

    // IPv4 first, whatever the order they are announced in.
    node.set_addresses(vec![
        NetAddress::new(AddrType::Torv3, ONION, 9735),
        NetAddress::new(AddrType::Dns, "node.example.net", 9735),
        NetAddress::new(AddrType::Ipv4, "8.8.4.4", 9735),
    ]);
    assert_eq!(connection().await, announced(format!("{id}@8.8.4.4:9735")));

    // Nothing a seller can reach on mainnet: a private announced address, a loopback binding.
    node.set_addresses(vec![NetAddress::new(AddrType::Ipv4, "192.168.1.5", 9735)]);
    node.set_bindings(vec![NetAddress::new(AddrType::Ipv4, "127.0.0.1", 9735)]);
    let c = connection().await;
    assert_eq!(c["uri"], Value::Null);
    let error = c["error"].as_str().unwrap();
    assert!(error.contains("magma-connection-uri"), "{error}");
    assert!(
        error.contains("announces 192.168.1.5:9735 and binds 127.0.0.1:9735"),
        "{error}"
    );
    node.set_addresses(vec![]);
    node.set_bindings(vec![]);
    let c = connection().await;
    assert!(
        c["error"]
            .as_str()
            .unwrap()
            .contains("announces nothing and binds nothing"),
        "{c}"
    );

    // The override wins over nothing at all, and over a usable address.
    let over = format!("{id}@[2001:db9::5]:9999");
    emu.setconfig("magma-connection-uri", json!(over))
        .await
        .unwrap();
    assert_eq!(
        connection().await,
        json!({"uri": over, "source": "magma-connection-uri"})
    );
    node.set_addresses(vec![NetAddress::new(AddrType::Ipv4, "203.0.114.7", 9735)]);
    assert_eq!(
        connection().await,
        json!({"uri": over, "source": "magma-connection-uri"})
    );
    let status = emu.call("magma-status", json!({})).await.unwrap();
    assert_eq!(status["network"], json!("bitcoin"));
    finish(emu).await;
}

#[tokio::test]
async fn a_node_with_no_usable_address_is_reported_at_startup() {
    let (_sim, server) = sim().await;
    // Mainnet: the plugin as a user builds it (a test-hooks build runs only on regtest).
    let mut cfg = config(&server.graphql_url);
    cfg.plugin = common::RELEASE_LIKE_PLUGIN.into();
    cfg.network = "bitcoin".into();
    cfg.node.addresses = vec![];
    cfg.node.bindings = vec![NetAddress::new(AddrType::Ipv4, "127.0.0.1", 9735)];
    let emu = start(cfg).await;
    let line = emu
        .wait_for_log("no address sellers can reach", WAIT)
        .await
        .unwrap();
    assert_eq!(line.level, "warn");
    assert!(line.message.contains("magma-connection-uri"), "{line:?}");
    finish(emu).await;
}

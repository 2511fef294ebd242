//! The node model wired to the Magma simulator (feature `magma-sim`): buying liquidity,
//! paying the hold invoice through `pay`, the seller's channel appearing and locking in.

use lightningd_emulator::{
    ChannelSpec, ChannelState, Emulator, EmulatorConfig, Opener, magma, peer_id,
};
use magma_sim::{SellerScript, Sim, SimConfig};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A minimal HTTP/1.1 POST of a GraphQL request (no HTTP client in this crate's dependencies).
async fn graphql(url: &str, query: &str, variables: Value) -> Value {
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest.split_once('/').expect("url path");
    let body = json!({"query": query, "variables": variables}).to_string();
    let mut s = tokio::net::TcpStream::connect(host).await.expect("connect");
    let req = format!(
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.expect("read");
    let (_, body) = resp.split_once("\r\n\r\n").expect("http body");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

const BUY: &str = "mutation Buy($input: LiquidityOrderInput!) { liquidity { buy(input: $input) { order { transaction_id } payment { lightning_invoice amount { sats } } } } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buy_pay_and_receive_the_channel() {
    let sim = Sim::new(SimConfig {
        default_seller: SellerScript::Happy,
        block_interval_secs: 0,
        ..SimConfig::default()
    });
    let server = sim.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let emu = Emulator::start_node(EmulatorConfig::new("/none"))
        .await
        .unwrap();
    emu.node().add_channel(
        ChannelSpec::local_opened(&peer_id("hub"), 10_000_000_000).state(ChannelState::Normal),
    );
    let _follow = magma::attach(emu.node(), &sim);

    let input = json!({"connection_uri": format!("{}@127.0.0.1:9735", emu.node().id()), "usd_cents": "5000"});
    let r = graphql(&server.graphql_url, BUY, json!({"input": input})).await;
    let buy = &r["data"]["liquidity"]["buy"];
    let order_id = buy["order"]["transaction_id"]
        .as_str()
        .expect("order id")
        .to_string();
    let invoice = buy["payment"]["lightning_invoice"]
        .as_str()
        .expect("invoice")
        .to_string();

    let path = emu.rpc_path();
    let pay = tokio::spawn(async move {
        lightningd_emulator::rpc_server::call(&path, json!(1), "pay", json!({"bolt11": invoice}))
            .await
    });
    // Drive the seller: virtual time and blocks (mined on the node, hence on the simulator).
    let mut channel = None;
    for _ in 0..400 {
        sim.advance(Duration::from_secs(30));
        emu.node().mine_blocks(1);
        tokio::time::sleep(Duration::from_millis(5)).await;
        channel = emu
            .node()
            .channels()
            .into_iter()
            .find(|c| c.opener == Opener::Remote && c.state == ChannelState::Normal);
        if channel.is_some() && pay.is_finished() {
            break;
        }
    }
    let order = sim.order(&order_id).expect("order");
    let channel = channel.unwrap_or_else(|| panic!("no channel; order {order:#?}"));
    assert_eq!(channel.peer_id, sim.node_pubkey());
    assert_eq!(channel.total_msat, order.channel_size_sat * 1000);
    assert_eq!(Some(channel.funding_txid.clone()), order.funding_txid);
    let paid = pay
        .await
        .unwrap()
        .expect("pay succeeds once the seller settles");
    assert_eq!(paid["status"], json!("complete"));
    assert_eq!(
        paid["payment_hash"].as_str().unwrap(),
        order.payment_hash.as_str()
    );
    server.shutdown().await;
}

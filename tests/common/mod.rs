//! Helpers shared by the integration tests: the real plugin binary under the lightningd
//! emulator, the Magma simulator, a recording SOCKS5 proxy, and the checks every test ends with.
#![allow(dead_code)] // each test binary uses its own subset

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lightningd_emulator::{Emulator, EmulatorConfig, RpcError};
use magma_sim::{Sim, SimConfig, SimServer};
use serde_json::Value;

/// The plugin built with its test switches (fast polling, crash points), in its own target
/// directory: never the `target/*/cln-magma` a node would load.
pub fn plugin() -> std::path::PathBuf {
    lightningd_emulator::test_plugin::path(lightningd_emulator::test_plugin::Profile::Debug)
        .expect("the test-hooks plugin builds")
}

/// The plugin exactly as a user builds it (no test switches), as cargo built it for these tests.
pub const RELEASE_LIKE_PLUGIN: &str = env!("CARGO_BIN_EXE_cln-magma");

/// Generous: only for waiting on something that normally happens at once.
pub const WAIT: Duration = Duration::from_secs(10);

/// A simulator with its default price (543,260 sats and 501.09 USD of capacity per USD).
pub async fn sim() -> (Sim, SimServer) {
    sim_with(SimConfig::default()).await
}

pub async fn sim_with(cfg: SimConfig) -> (Sim, SimServer) {
    let sim = Sim::new(cfg);
    let server = sim
        .serve(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("the simulator starts");
    (sim, server)
}

/// The plugin under the emulator, pointed at `api_url`. `AMBOSS_API_KEY` is cleared so the
/// environment the tests run in cannot leak a credential in; a later `.env` overrides it.
pub fn config(api_url: &str) -> EmulatorConfig {
    bare_config().option("magma-api-url", api_url)
}

/// Like [`config`] without any option set.
pub fn bare_config() -> EmulatorConfig {
    EmulatorConfig::new(plugin()).env("AMBOSS_API_KEY", "")
}

/// Starts the plugin and checks it is up: accepted by lightningd, not disabled, started.
pub async fn start(cfg: EmulatorConfig) -> Emulator {
    let emu = Emulator::start(cfg)
        .await
        .expect("lightningd accepts the plugin");
    assert_eq!(emu.disabled(), None, "logs: {:?}", emu.logs());
    emu.wait_for_log("started", WAIT)
        .await
        .expect("the plugin logs its start");
    emu
}

/// The end of every test: nothing but JSON-RPC on stdout, and a clean exit on `shutdown`.
/// Returns the emulator for checks on what it recorded.
pub async fn finish(mut emu: Emulator) -> Emulator {
    assert_eq!(emu.stdout_violations(), Vec::<String>::new(), "stdout");
    let status = emu.shutdown().await.expect("the plugin shuts down");
    assert_eq!(
        status.code(),
        Some(0),
        "exit status; stderr: {:?}; logs: {:?}; lightningd: {:?}",
        emu.stderr(),
        emu.logs(),
        emu.emulator_log()
    );
    assert_eq!(emu.stdout_violations(), Vec::<String>::new(), "stdout");
    emu
}

/// A command's JSON-RPC error, checked for its code and the words its message must hold.
pub fn expect_error(result: Result<Value, RpcError>, code: i64, words: &[&str]) -> RpcError {
    let e = match result {
        Ok(v) => panic!("expected error {code} with {words:?}, got result {v}"),
        Err(e) => e,
    };
    assert_eq!(e.code, code, "{e:?}");
    for w in words {
        assert!(e.message.contains(w), "{:?} lacks {w:?}", e.message);
    }
    e
}

/// `host:port` of the simulator, as a proxy is asked to connect to it.
pub fn sim_authority(server: &SimServer) -> String {
    server.addr.to_string()
}

/// A minimal SOCKS5 proxy (no auth, CONNECT only) that records where it was asked to connect.
pub async fn socks5_proxy() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut head = [0u8; 2];
                inbound.read_exact(&mut head).await?;
                let mut methods = vec![0u8; head[1] as usize];
                inbound.read_exact(&mut methods).await?;
                inbound.write_all(&[5, 0]).await?;
                let mut req = [0u8; 4];
                inbound.read_exact(&mut req).await?;
                let host = match req[3] {
                    1 => {
                        let mut ip = [0u8; 4];
                        inbound.read_exact(&mut ip).await?;
                        std::net::Ipv4Addr::from(ip).to_string()
                    }
                    3 => {
                        let len = inbound.read_u8().await?;
                        let mut name = vec![0u8; len as usize];
                        inbound.read_exact(&mut name).await?;
                        String::from_utf8_lossy(&name).into_owned()
                    }
                    _ => return Ok::<(), std::io::Error>(()),
                };
                let port = inbound.read_u16().await?;
                record.lock().unwrap().push(format!("{host}:{port}"));
                let mut outbound = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
                inbound.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await?;
                Ok(())
            });
        }
    });
    (addr, seen)
}

// ---- Purchases: the plugin under the emulator, wired to the Magma simulator ----

/// The tracker's polling period in the purchase tests (the plugin's test switch).
pub const POLL_MS: u64 = 100;

/// The outbound the purchase tests' node pays from: 10M sats on one channel to a hub.
pub const HUB_MSAT: u64 = 10_000_000_000;

/// A simulator with `sim_cfg`, the plugin under the emulator pointed at it (with the fast
/// polling cadence and whatever `tweak` adds), 10M sats of outbound, and the simulator wired in
/// as payee of its invoices and opener of its sellers' channels.
pub async fn purchase_world(
    sim_cfg: SimConfig,
    tweak: impl FnOnce(EmulatorConfig) -> EmulatorConfig,
) -> (Sim, SimServer, Emulator, tokio::task::JoinHandle<()>) {
    use lightningd_emulator::{ChannelSpec, ChannelState, magma, peer_id};
    let (sim, server) = sim_with(sim_cfg).await;
    let cfg = config(&server.graphql_url).env("CLN_MAGMA_TEST_POLL_MS", &POLL_MS.to_string());
    let emu = start(tweak(cfg)).await;
    emu.node().add_channel(
        ChannelSpec::local_opened(&peer_id("hub"), HUB_MSAT).state(ChannelState::Normal),
    );
    let follow = magma::attach(emu.node(), &sim);
    (sim, server, emu, follow)
}

/// One order as `magma-orders` shows it.
pub async fn order_state(emu: &Emulator, id: &str) -> Value {
    let r = emu
        .call("magma-orders", serde_json::json!({"id": id}))
        .await
        .expect("magma-orders");
    r["orders"][0].clone()
}

/// Drives the seller's clock and the chain until the order reaches `state` (or gives up).
pub async fn drive_until(sim: &Sim, emu: &Emulator, id: &str, state: &str) -> Value {
    for _ in 0..600 {
        let o = order_state(emu, id).await;
        if o["state"] == state {
            return o;
        }
        sim.advance(Duration::from_secs(30));
        emu.node().mine_blocks(1);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "order {id} never reached {state}: {:#}",
        order_state(emu, id).await
    );
}

/// Waits, without moving the seller's clock or the chain, until `magma-orders` shows the order
/// satisfying `done` (or gives up).
pub async fn wait_order(
    emu: &Emulator,
    id: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    for _ in 0..1000 {
        let o = order_state(emu, id).await;
        if done(&o) {
            return o;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "order {id} never got {what}: {:#}",
        order_state(emu, id).await
    );
}

/// The session key as the plugin stored it in the node's datastore (the only place it may
/// be); `None` for an order placed with the API key or never placed.
pub fn stored_session_key(emu: &Emulator, id: &str) -> Option<String> {
    let raw = emu
        .node()
        .datastore_get(&["magma", "orders", id])
        .expect("the order is in the datastore");
    let record: Value = serde_json::from_slice(&raw).expect("the record is JSON");
    record["placement"]["session_key"]
        .as_str()
        .map(str::to_string)
}

//! `pay` blocks while the payee holds the HTLC, then succeeds or fails; listpays/listsendpays.

use lightningd_emulator::bolt11::{NewInvoice, create_invoice};
use lightningd_emulator::util::{hex, now_secs, secret_from_seed, sha256};
use lightningd_emulator::{
    ChannelSpec, ChannelState, Emulator, EmulatorConfig, ManualPayee, PayStatus, peer_id,
};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

fn invoice(n: u8, amount: u64) -> (String, String, String) {
    let preimage = sha256(&[n, 42]);
    let bolt11 = create_invoice(
        &secret_from_seed("seller"),
        &NewInvoice {
            network: "regtest",
            amount_msat: Some(amount),
            description: "inbound liquidity",
            preimage,
            expiry_secs: 3600,
            created_at: now_secs(),
        },
    )
    .unwrap();
    (
        bolt11,
        hex::encode(&preimage),
        hex::encode(&sha256(&preimage)),
    )
}

async fn node_with_outbound(spendable_sat: u64) -> (Emulator, Arc<ManualPayee>, String) {
    let emu = Emulator::start_node(EmulatorConfig::new("/none"))
        .await
        .unwrap();
    let cid = emu.node().add_channel(
        ChannelSpec::local_opened(&peer_id("hub"), spendable_sat * 2000)
            .state(ChannelState::Normal),
    );
    emu.node()
        .set_channel_limits(&cid, Some(spendable_sat * 1000), None);
    let payee = Arc::new(ManualPayee::new());
    emu.node().add_payee(payee.clone());
    (emu, payee, cid)
}

fn spawn_pay(
    emu: &Emulator,
    bolt11: &str,
) -> tokio::task::JoinHandle<Result<Value, lightningd_emulator::RpcError>> {
    let path = emu.rpc_path();
    let bolt11 = bolt11.to_string();
    tokio::spawn(async move {
        lightningd_emulator::rpc_server::call(&path, json!(7), "pay", json!({"bolt11": bolt11}))
            .await
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pay_blocks_until_settled() {
    let (emu, payee, cid) = node_with_outbound(100_000).await;
    let (bolt11, preimage, hash) = invoice(1, 50_000_000);
    let pay = spawn_pay(&emu, &bolt11);
    tokio::time::timeout(Duration::from_secs(10), payee.wait_held(&hash))
        .await
        .unwrap();

    // While held: pending everywhere, the HTLC is on the channel, pay still blocked.
    assert!(!pay.is_finished());
    let lp = emu
        .call("listpays", json!({"payment_hash": hash}))
        .await
        .unwrap();
    assert_eq!(lp["pays"][0]["status"], json!("pending"));
    let lsp = emu
        .call("listsendpays", json!({"bolt11": bolt11}))
        .await
        .unwrap();
    assert_eq!(lsp["payments"][0]["status"], json!("pending"));
    let ch = emu.call("listpeerchannels", json!({})).await.unwrap();
    assert_eq!(ch["channels"][0]["htlcs"][0]["payment_hash"], json!(hash));
    assert_eq!(ch["channels"][0]["spendable_msat"], json!(50_000_000u64));
    // A second pay of the same invoice while pending is refused.
    let e = emu.call("pay", json!([bolt11])).await.unwrap_err();
    assert_eq!(e.code, 200);

    payee.settle(&hash, &preimage);
    let r = tokio::time::timeout(Duration::from_secs(10), pay)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(r["status"], json!("complete"));
    assert_eq!(r["payment_preimage"], json!(preimage));
    assert_eq!(r["amount_msat"], json!(50_000_000u64));
    let lp = emu
        .call("listpays", json!({"bolt11": bolt11}))
        .await
        .unwrap();
    assert_eq!(lp["pays"][0]["status"], json!("complete"));
    assert_eq!(lp["pays"][0]["preimage"], json!(preimage));
    let c = emu
        .node()
        .channels()
        .into_iter()
        .find(|c| c.channel_id == cid)
        .unwrap();
    assert_eq!(c.to_us_msat, 200_000_000 - 50_000_000);
    assert!(c.htlcs_out.is_empty());
    // Paying again returns the earlier success without a new payment.
    let again = emu.call("pay", json!({"bolt11": bolt11})).await.unwrap();
    assert_eq!(again["payment_preimage"], json!(preimage));
    assert_eq!(emu.node().payments().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pay_fails_when_the_payee_cancels() {
    let (emu, payee, _) = node_with_outbound(100_000).await;
    emu.node().set_listpays_pending_after_failure(1);
    let (bolt11, _, hash) = invoice(2, 10_000_000);
    let pay = spawn_pay(&emu, &bolt11);
    payee.wait_held(&hash).await;
    payee.cancel(&hash);
    let e = pay.await.unwrap().unwrap_err();
    assert_eq!(e.code, 203);
    assert_eq!(
        e.message,
        "Destination said it doesn't know invoice: incorrect_or_unknown_payment_details"
    );
    // The modelled lag: listpays says pending once more while listsendpays says failed.
    let lsp = emu
        .call("listsendpays", json!({"payment_hash": hash}))
        .await
        .unwrap();
    assert_eq!(lsp["payments"][0]["status"], json!("failed"));
    let lp = emu
        .call("listpays", json!({"payment_hash": hash}))
        .await
        .unwrap();
    assert_eq!(lp["pays"][0]["status"], json!("pending"));
    let lp = emu
        .call("listpays", json!({"payment_hash": hash}))
        .await
        .unwrap();
    assert_eq!(lp["pays"][0]["status"], json!("failed"));
    assert_eq!(emu.node().payments()[0].status, PayStatus::Failed);
    assert!(
        emu.node().channels()[0].htlcs_out.is_empty(),
        "HTLC released"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pay_checks_outbound_expiry_and_amount() {
    let (emu, _payee, _) = node_with_outbound(1_000).await;
    let (bolt11, _, _) = invoice(3, 5_000_000);
    let e = emu
        .call("pay", json!({"bolt11": bolt11}))
        .await
        .unwrap_err();
    assert_eq!(e.code, 205, "{e}");
    assert!(
        emu.node().payments().is_empty(),
        "no attempt without a route"
    );
    let e = emu
        .call("pay", json!({"bolt11": bolt11, "amount_msat": 1000}))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (-32602, "amount_msat parameter unnecessary")
    );
    let expired = create_invoice(
        &secret_from_seed("seller"),
        &NewInvoice {
            network: "regtest",
            amount_msat: Some(1000),
            description: "old",
            preimage: sha256(b"old"),
            expiry_secs: 60,
            created_at: now_secs() - 3600,
        },
    )
    .unwrap();
    let e = emu
        .call("pay", json!({"bolt11": expired}))
        .await
        .unwrap_err();
    assert_eq!(e.code, 207);
    let e = emu
        .call("pay", json!({"bolt11": "lnbc1garbage"}))
        .await
        .unwrap_err();
    assert_eq!(e.code, -32602);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_destination_fails_like_the_fixture() {
    let emu = Emulator::start_node(EmulatorConfig::new("/none"))
        .await
        .unwrap();
    emu.node().add_channel(
        ChannelSpec::local_opened(&peer_id("hub"), 1_000_000_000).state(ChannelState::Normal),
    );
    let (bolt11, _, _) = invoice(4, 1_000_000);
    let e = emu
        .call("pay", json!({"bolt11": bolt11}))
        .await
        .unwrap_err();
    assert_eq!(e.code, 203);
}

//! lightningd's manifest rules, the datastore's generations and error codes, BOLT11 decoding.

mod common;

use lightningd_emulator::bolt11::{NewInvoice, create_invoice, decode};
use lightningd_emulator::datastore::{Datastore, Mode};
use lightningd_emulator::manifest::{self, ManifestOutcome, validate};
use lightningd_emulator::util::{hex, pubkey_from_seed, secret_from_seed, sha256};
use lightningd_emulator::{Emulator, EmulatorConfig};
use serde_json::{Value, json};

fn base() -> Value {
    json!({
        "options": [
            {"name": "magma-mode", "type": "string", "default": "off", "description": "mode", "dynamic": true, "multi": false},
            {"name": "magma-min-inbound-sat", "type": "int", "default": 0, "description": "min", "dynamic": true, "multi": false},
            {"name": "magma-private", "type": "bool", "default": false, "description": "p", "dynamic": true, "multi": false},
            {"name": "magma-api-key-file", "type": "string", "description": "file", "dynamic": false, "multi": false},
            {"name": "magma-verbose", "type": "flag", "description": "v", "dynamic": false, "multi": false}
        ],
        "rpcmethods": [{"name": "magma-status", "description": "status", "usage": ""}],
        "subscriptions": ["channel_state_changed"],
        "notifications": [{"method": "magma_order"}],
        "hooks": [],
        "dynamic": false,
        "featurebits": {},
        "nonnumericids": true
    })
}

fn with(f: impl FnOnce(&mut Value)) -> Value {
    let mut m = base();
    f(&mut m);
    m
}

fn refused(m: Value) -> String {
    match validate(&m) {
        Err(e) => e.to_string(),
        Ok(o) => panic!("accepted: {o:?}"),
    }
}

#[test]
fn good_manifest_and_typed_init_options() {
    let ManifestOutcome::Accepted(m) = validate(&base()).unwrap() else {
        panic!("disabled");
    };
    let opts = manifest::init_options(
        &m,
        &[
            ("magma-min-inbound-sat".into(), json!("250000")),
            ("magma-private".into(), json!(true)),
            ("magma-verbose".into(), json!(true)),
        ],
    )
    .unwrap();
    assert_eq!(
        Value::Object(opts),
        json!({
            "magma-mode": "off",
            "magma-min-inbound-sat": 250000,
            "magma-private": true,
            "magma-verbose": true
        }),
        "defaults applied, int as number, bool as bool, unset option without default omitted"
    );
    let opts = manifest::init_options(&m, &[]).unwrap();
    assert_eq!(opts.get("magma-verbose"), None, "an unset flag is absent");
    assert_eq!(opts["magma-private"], json!(false));
}

#[test]
fn bad_manifests_are_refused_with_lightningds_messages() {
    let cases: Vec<(Value, &str)> = vec![
        (
            with(|m| m["options"][0]["name"] = json!("Magma-Mode")),
            "Option \"name\" must be lowercase alphanumeric, plus _ or -'",
        ),
        (
            with(|m| m["options"][0]["type"] = json!("float")),
            "Only \"string\", \"int\", \"bool\", and \"flag\" options are supported",
        ),
        (
            with(|m| m["options"][4]["default"] = json!(true)),
            "--magma-verbose type flag default must be 'false' not true",
        ),
        (
            with(|m| m["options"][2]["multi"] = json!(true)),
            "bool type cannot be multi",
        ),
        (
            with(|m| m["options"][1]["default"] = json!("lots")),
            "Invalid default 'lots': 'lots' is not a number",
        ),
        (
            with(|m| m["options"][1]["name"] = json!("magma-mode")),
            "option name 'magma-mode' is already taken",
        ),
        (
            with(|m| m["options"][1]["name"] = json!("network")),
            "option name 'network' is already taken",
        ),
        (
            with(|m| {
                m["options"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("description")
                    .map(|_| ())
                    .unwrap()
            }),
            "An option is missing either \"name\", \"description\" or \"type\"",
        ),
        (
            with(|m| {
                m["rpcmethods"] = json!([{"name": "getinfo", "description": "", "usage": ""}])
            }),
            "Could not register method \"getinfo\", a method with that name is already registered",
        ),
        (
            with(|m| {
                m["rpcmethods"] = json!([
                    {"name": "magma-x", "description": "", "usage": ""},
                    {"name": "magma-x", "description": "", "usage": ""}
                ])
            }),
            "Could not register method \"magma-x\"",
        ),
        (
            with(|m| m["rpcmethods"] = json!([{"name": "magma-x", "description": ""}])),
            "\"usage\" not provided by plugin",
        ),
        (
            with(|m| m["notifications"] = json!([{"method": "block_added"}])),
            "plugin attempted to register a native notification topic \"block_added\"",
        ),
        (
            with(|m| m["nonnumericids"] = json!(false)),
            "Plugin does not allow nonnumericids",
        ),
        (
            with(|m| m["dynamic"] = json!("yes")),
            "getmanifest: invalid \"dynamic\" field \"yes\"",
        ),
        (
            with(|m| m["hooks"] = json!([{"name": "no_such_hook"}])),
            "could not register hook 'no_such_hook'",
        ),
        (
            with(|m| {
                m.as_object_mut().unwrap().remove("options");
            }),
            "\"result.options\" was not found in the manifest",
        ),
        (
            with(|m| {
                m["dynamic"] = json!(true);
                m["featurebits"] = json!({"node": "0200"});
            }),
            "Custom featurebits only allows for non-dynamic plugins",
        ),
    ];
    for (m, want) in cases {
        let got = refused(m);
        assert!(got.starts_with("Killing plugin: "), "{got}");
        assert!(got.contains(want), "want {want:?}, got {got:?}");
    }
}

#[test]
fn disable_in_manifest_and_operator_values() {
    assert_eq!(
        validate(&json!({"disable": "not today"})).unwrap(),
        ManifestOutcome::Disabled("not today".into())
    );
    let ManifestOutcome::Accepted(m) = validate(&base()).unwrap() else {
        panic!()
    };
    let bad = |k: &str, v: Value| manifest::init_options(&m, &[(k.into(), v)]).unwrap_err();
    assert!(bad("magma-min-inbound-sat", json!("abc")).contains("'abc' is not a number"));
    assert!(bad("magma-private", json!("maybe")).contains("Invalid argument 'maybe'"));
    assert!(bad("magma-private", json!(1)).contains("must be true or false"));
    assert!(bad("nope", json!(1)).contains("unknown parameter nope"));
}

fn k(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

#[test]
fn datastore_generations_and_error_codes() {
    let mut d = Datastore::default();
    let key = k(&["magma", "orders", "1"]);
    let r = d
        .put(key.clone(), b"a".to_vec(), Mode::MustCreate, None)
        .unwrap();
    assert_eq!(r["generation"], json!(0));
    assert_eq!(
        d.put(key.clone(), b"b".to_vec(), Mode::MustCreate, None)
            .unwrap_err()
            .code,
        1202
    );
    assert_eq!(
        d.put(k(&["magma", "x"]), b"b".to_vec(), Mode::MustReplace, None)
            .unwrap_err()
            .code,
        1203
    );
    // Compare-and-swap.
    let r = d
        .put(key.clone(), b"b".to_vec(), Mode::MustReplace, Some(0))
        .unwrap();
    assert_eq!(r["generation"], json!(1));
    let e = d
        .put(key.clone(), b"c".to_vec(), Mode::MustReplace, Some(0))
        .unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (1204, "generation is different")
    );
    let r = d
        .put(key.clone(), b"c".to_vec(), Mode::MustAppend, Some(1))
        .unwrap();
    assert_eq!(
        (r["generation"].clone(), r["string"].clone()),
        (json!(2), json!("bc"))
    );
    let r = d
        .put(key.clone(), b"d".to_vec(), Mode::CreateOrAppend, None)
        .unwrap();
    assert_eq!(r["string"], json!("bcd"));
    let r = d
        .put(key.clone(), vec![0xca, 0xfe], Mode::CreateOrReplace, None)
        .unwrap();
    assert_eq!(
        r,
        json!({"key": key, "generation": 4, "hex": "cafe"}),
        "no string for non-UTF-8"
    );
    assert_eq!(
        d.put(key.clone(), b"x".to_vec(), Mode::CreateOrReplace, Some(4))
            .unwrap_err()
            .code,
        -32602,
        "generation only with must-replace/must-append"
    );
    // Hierarchy.
    assert_eq!(
        d.put(
            k(&["magma", "orders"]),
            b"x".to_vec(),
            Mode::MustCreate,
            None
        )
        .unwrap_err()
        .code,
        1205
    );
    assert_eq!(
        d.put(
            k(&["magma", "orders", "1", "sub"]),
            b"x".to_vec(),
            Mode::MustCreate,
            None
        )
        .unwrap_err()
        .code,
        1206
    );
    // Delete with generation.
    assert_eq!(d.delete(&key, Some(3)).unwrap_err().code, 1201);
    assert_eq!(d.delete(&key, Some(4)).unwrap()["generation"], json!(4));
    assert_eq!(d.delete(&key, None).unwrap_err().code, 1200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datastore_over_the_socket() {
    let emu = Emulator::start_node(EmulatorConfig::new("/none"))
        .await
        .unwrap();
    let r = emu
        .call("datastore", json!(["magma", "v1", "must-create"]))
        .await
        .unwrap_err();
    assert_eq!(
        r.code, -32602,
        "key must be a list or string; hex/string by name"
    );
    emu.call("datastore", json!({"key": "magma", "string": "v1"}))
        .await
        .unwrap();
    let e = emu
        .call(
            "datastore",
            json!({"key": ["magma"], "string": "v2", "mode": "must-replace", "generation": 7}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, 1204);
    let l = emu.call("listdatastore", json!({})).await.unwrap();
    assert_eq!(l["datastore"][0]["string"], json!("v1"));
    assert_eq!(emu.node().datastore_get(&["magma"]), Some(b"v1".to_vec()));
}

#[test]
fn decode_a_real_invoice() {
    let secret = secret_from_seed("decode-payee");
    let preimage = sha256(b"pre");
    let bolt11 = create_invoice(
        &secret,
        &NewInvoice {
            network: "regtest",
            amount_msat: Some(123_456),
            description: "liquidity",
            preimage,
            expiry_secs: 900,
            created_at: 1_795_634_769,
        },
    )
    .unwrap();
    let inv = decode(&bolt11).unwrap();
    assert_eq!(inv.currency, "bcrt");
    assert_eq!(inv.payee, pubkey_from_seed("decode-payee"));
    assert_eq!(inv.payment_hash, hex::encode(&sha256(&preimage)));
    assert_eq!(inv.amount_msat, Some(123_456));
    assert_eq!(inv.expires_at(), 1_795_634_769 + 900);
    let j = &inv.json;
    assert_eq!(j["type"], json!("bolt11 invoice"));
    assert_eq!(j["description"], json!("liquidity"));
    assert_eq!(j["expiry"], json!(900));
    assert_eq!(j["created_at"], json!(1_795_634_769u64));
    assert_eq!(j["valid"], json!(true));
    assert!(
        j["signature"].as_str().unwrap().starts_with("30"),
        "DER signature"
    );
    // Any other network's prefix decodes with its currency.
    let tb = create_invoice(
        &secret,
        &NewInvoice {
            network: "testnet",
            amount_msat: None,
            description: "x",
            preimage,
            expiry_secs: 60,
            created_at: 1_795_634_769,
        },
    )
    .unwrap();
    let inv = decode(&tb).unwrap();
    assert_eq!((inv.currency.as_str(), inv.amount_msat), ("tb", None));
    // Corrupt one character: bad checksum.
    let mut broken = bolt11.clone().into_bytes();
    let last = broken.len() - 1;
    broken[last] = if broken[last] == b'q' { b'p' } else { b'q' };
    let e = decode(std::str::from_utf8(&broken).unwrap()).unwrap_err();
    assert_eq!(e.code, -32602);
    assert!(
        e.message.starts_with("string: Bad bech32 string"),
        "{}",
        e.message
    );
}

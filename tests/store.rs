//! The order store against the lightningd emulator's datastore, through the real RPC socket:
//! the same `datastore`/`listdatastore` calls, answers and error codes lightningd gives.

use std::convert::Infallible;
use std::sync::Arc;

use cln_magma::node::Node;
use cln_magma::store::{
    Datastore, LightningDatastore, OrderStore, StoreError, UpdateError, Versioned, codes,
};
use lightningd_emulator::{Emulator, EmulatorConfig};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    state: String,
    transitions: Vec<String>,
}

fn order(state: &str) -> Order {
    Order {
        state: state.into(),
        transitions: vec![state.into()],
    }
}

/// A transition: sets the state and records it, unless it is already recorded.
fn to(state: String) -> impl FnMut(&mut Order) -> Result<bool, Infallible> {
    move |o: &mut Order| {
        if o.transitions.contains(&state) {
            return Ok(false);
        }
        o.state = state.clone();
        o.transitions.push(state.clone());
        Ok(true)
    }
}

async fn node() -> Emulator {
    Emulator::start_node(EmulatorConfig::new("/nonexistent"))
        .await
        .expect("the emulated node starts")
}

fn store(emu: &Emulator) -> OrderStore<LightningDatastore> {
    OrderStore::new(LightningDatastore::new(Node::new(emu.rpc_path())))
}

/// The entry as `listdatastore` shows it.
async fn listed(emu: &Emulator, key: &[&str]) -> Value {
    let l = emu
        .call("listdatastore", json!({ "key": key }))
        .await
        .unwrap();
    l["datastore"][0].clone()
}

async fn raw_put(emu: &Emulator, key: &[&str], data: Value) {
    let mut params = json!({ "key": key, "mode": "must-create" });
    params
        .as_object_mut()
        .unwrap()
        .extend(data.as_object().unwrap().clone());
    emu.call("datastore", params).await.unwrap();
}

#[tokio::test]
async fn must_create_refuses_an_existing_id_and_keeps_the_first_record() {
    let emu = node().await;
    let s = store(&emu);
    let v = s.insert("o1", &order("PLACING")).await.unwrap();
    assert_eq!(v.generation, 0);
    let e = s.insert("o1", &order("PLACED")).await.unwrap_err();
    assert_eq!(e, StoreError::Exists);

    let entry = listed(&emu, &["magma", "orders", "o1"]).await;
    assert_eq!(entry["generation"], 0);
    let text = entry["string"].as_str().unwrap();
    assert_eq!(
        serde_json::from_str::<Order>(text).unwrap(),
        order("PLACING")
    );
    assert_eq!(s.get::<Order>("o1").await.unwrap(), Some(v));
    assert_eq!(s.get::<Order>("nope").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_writing_one_record_concurrently_keep_both_transitions() {
    let emu = node().await;
    let a = Arc::new(store(&emu));
    let b = Arc::new(store(&emu));
    let v = a.insert("o1", &order("PLACING")).await.unwrap();
    // Both start from the same copy (generation 0): one of them must hit the CAS conflict.
    let (va, vb) = (v.clone(), v.clone());
    let ta = tokio::spawn({
        let a = a.clone();
        async move { a.update(&va, to("FROM_A".into())).await }
    });
    let tb = tokio::spawn({
        let b = b.clone();
        async move { b.update(&vb, to("FROM_B".into())).await }
    });
    let ra = ta.await.unwrap().unwrap();
    let rb = tb.await.unwrap().unwrap();
    assert_eq!(ra.generation.max(rb.generation), 2);

    let end: Versioned<Order> = b.get("o1").await.unwrap().unwrap();
    assert_eq!(end.generation, 2);
    let mut t = end.record.transitions.clone();
    assert_eq!(t[0], "PLACING");
    t.sort();
    assert_eq!(t, ["FROM_A", "FROM_B", "PLACING"]);
    // The later writer's answer is what is stored.
    let last = if ra.generation == 2 { ra } else { rb };
    assert_eq!(last, end);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_writers_lose_no_transition() {
    let emu = node().await;
    let first = store(&emu);
    let v = first.insert("o1", &order("PLACING")).await.unwrap();
    let writers = 8;
    let mut tasks = vec![];
    for i in 0..writers {
        let s = store(&emu);
        let v = v.clone();
        tasks.push(tokio::spawn(async move {
            s.update(&v, to(format!("W{i}"))).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let end: Versioned<Order> = first.get("o1").await.unwrap().unwrap();
    assert_eq!(end.generation, writers);
    assert_eq!(end.record.transitions.len() as u64, writers + 1);
    for i in 0..writers {
        assert!(end.record.transitions.contains(&format!("W{i}")), "{end:?}");
    }
    assert_eq!(
        listed(&emu, &["magma", "orders", "o1"]).await["generation"],
        writers
    );
}

#[tokio::test]
async fn a_stale_copy_is_refused_then_rebased() {
    let emu = node().await;
    let s = store(&emu);
    let v0 = s.insert("o1", &order("PLACING")).await.unwrap();
    let v1 = s.update(&v0, to("PLACED".into())).await.unwrap();
    assert_eq!(v1.generation, 1);
    // From the stale generation-0 copy: lightningd refuses, the store re-reads and re-applies.
    let v2 = s.update(&v0, to("PAYING".into())).await.unwrap();
    assert_eq!(v2.generation, 2);
    assert_eq!(v2.record.transitions, ["PLACING", "PLACED", "PAYING"]);
    // Re-applying a transition that is already there writes nothing.
    let same = s.update(&v0, to("PLACED".into())).await.unwrap();
    assert_eq!(same, v2);
    assert_eq!(
        listed(&emu, &["magma", "orders", "o1"]).await["generation"],
        2
    );
    // A refused change writes nothing either.
    let e = s
        .update(&v2, |_: &mut Order| Err::<bool, _>("no"))
        .await
        .unwrap_err();
    assert!(matches!(e, UpdateError::Aborted("no")), "{e:?}");
    assert_eq!(
        listed(&emu, &["magma", "orders", "o1"]).await["generation"],
        2
    );
}

#[tokio::test]
async fn unreadable_entries_come_back_beside_the_good_ones() {
    let emu = node().await;
    let s = store(&emu);
    s.insert("good", &order("PLACING")).await.unwrap();
    raw_put(
        &emu,
        &["magma", "orders", "notjson"],
        json!({"string": "{\"state\":"}),
    )
    .await;
    raw_put(
        &emu,
        &["magma", "orders", "binary"],
        json!({"hex": "fffe00"}),
    )
    .await;
    raw_put(
        &emu,
        &["magma", "orders", "shape"],
        json!({"string": "{\"state\": [1]}"}),
    )
    .await;
    raw_put(
        &emu,
        &["magma", "orders", "deeper", "x"],
        json!({"string": "{}"}),
    )
    .await;
    raw_put(
        &emu,
        &["magma", "orders", "bad.id"],
        json!({"string": "{\"state\":\"PAID\",\"transitions\":[]}"}),
    )
    .await;

    let (good, bad) = s.load_all::<Order>().await.unwrap();
    assert_eq!(good.len(), 1);
    assert_eq!(good[0].id, "good");
    assert_eq!(good[0].record, order("PLACING"));
    let mut keys: Vec<String> = bad
        .iter()
        .map(|e| match e {
            StoreError::Corrupt { key, .. } => key.join("/"),
            other => panic!("not Corrupt: {other:?}"),
        })
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "magma/orders/bad.id",
            "magma/orders/binary",
            "magma/orders/deeper",
            "magma/orders/notjson",
            "magma/orders/shape",
        ]
    );
    for id in ["notjson", "binary", "shape", "deeper"] {
        let e = s.get::<Order>(id).await.unwrap_err();
        assert!(matches!(e, StoreError::Corrupt { .. }), "{id}: {e:?}");
    }
}

#[tokio::test]
async fn only_the_orders_children_are_listed() {
    let emu = node().await;
    let s = store(&emu);
    raw_put(&emu, &["magma", "config"], json!({"string": "{}"})).await;
    raw_put(&emu, &["magma", "ordersx", "o1"], json!({"string": "{}"})).await;
    raw_put(&emu, &["magma", "order"], json!({"string": "{}"})).await;
    raw_put(
        &emu,
        &["other-plugin", "orders", "o1"],
        json!({"string": "{}"}),
    )
    .await;
    raw_put(&emu, &["morders", "o1"], json!({"string": "{}"})).await;
    let (good, bad) = s.load_all::<Order>().await.unwrap();
    assert!(good.is_empty() && bad.is_empty(), "{good:?} {bad:?}");

    s.insert("b", &order("PLACED")).await.unwrap();
    s.insert("a", &order("PLACING")).await.unwrap();
    let (good, bad) = s.load_all::<Order>().await.unwrap();
    let ids: Vec<&str> = good.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    assert!(bad.is_empty());

    // The adapter's own listing: children of the prefix only.
    let ds = LightningDatastore::new(Node::new(emu.rpc_path()));
    let l = ds.list(&["magma"]).await.unwrap();
    let keys: Vec<String> = l.iter().map(|e| e.key.join("/")).collect();
    assert_eq!(
        keys,
        [
            "magma/config",
            "magma/order",
            "magma/orders",
            "magma/ordersx"
        ]
    );
    assert!(l[2].has_children && l[3].has_children && !l[0].has_children);
}

/// The codes the adapter maps are the ones lightningd (here its emulator) sends.
#[tokio::test]
async fn datastore_error_codes_are_lightningds() {
    let emu = node().await;
    let key = json!(["magma", "orders", "o1"]);
    emu.call(
        "datastore",
        json!({"key": key, "string": "{}", "mode": "must-create"}),
    )
    .await
    .unwrap();
    let code = |r: Result<Value, lightningd_emulator::RpcError>| r.unwrap_err().code;
    assert_eq!(
        code(
            emu.call(
                "datastore",
                json!({"key": key, "string": "x", "mode": "must-create"})
            )
            .await
        ),
        codes::UPDATE_ALREADY_EXISTS
    );
    assert_eq!(
        code(emu
            .call(
                "datastore",
                json!({"key": ["magma", "orders", "o2"], "string": "x", "mode": "must-replace", "generation": 0}),
            )
            .await),
        codes::UPDATE_DOES_NOT_EXIST
    );
    assert_eq!(
        code(
            emu.call(
                "datastore",
                json!({"key": key, "string": "x", "mode": "must-replace", "generation": 5}),
            )
            .await
        ),
        codes::UPDATE_WRONG_GENERATION
    );
    assert_eq!(
        code(
            emu.call(
                "datastore",
                json!({"key": ["magma", "orders"], "string": "x", "mode": "must-create"})
            )
            .await
        ),
        codes::UPDATE_HAS_CHILDREN
    );
    assert_eq!(
        code(emu
            .call(
                "datastore",
                json!({"key": ["magma", "orders", "o1", "x"], "string": "x", "mode": "must-create"}),
            )
            .await),
        codes::UPDATE_NO_CHILDREN
    );

    // And the adapter turns them into the variants.
    let ds = LightningDatastore::new(Node::new(emu.rpc_path()));
    let o1 = ["magma", "orders", "o1"];
    assert_eq!(ds.create(&o1, "x").await, Err(StoreError::Exists));
    assert_eq!(
        ds.replace(&["magma", "orders", "o2"], "x", 0).await,
        Err(StoreError::Missing)
    );
    assert_eq!(ds.replace(&o1, "x", 5).await, Err(StoreError::Conflict));
    assert_eq!(ds.replace(&o1, "y", 0).await, Ok(1));
    assert_eq!(ds.create(&["magma", "orders", "o2"], "z").await, Ok(0));
    let e = ds
        .create(&["magma", "orders", "o1", "x"], "x")
        .await
        .unwrap_err();
    assert!(
        matches!(&e, StoreError::Node(m) if m.contains("1206")),
        "{e:?}"
    );
    let e = ds.create(&["magma", "orders"], "x").await.unwrap_err();
    assert!(
        matches!(&e, StoreError::Node(m) if m.contains("1205")),
        "{e:?}"
    );
    // Reads: the entry itself, a key with sub-keys, nothing.
    let got = ds.get(&o1).await.unwrap().unwrap();
    assert_eq!((got.generation, got.value.as_deref()), (1, Some("y")));
    let parent = ds.get(&["magma", "orders"]).await.unwrap().unwrap();
    assert!(parent.has_children);
    assert_eq!(ds.get(&["magma", "orders", "o9"]).await.unwrap(), None);
}

#[tokio::test]
async fn an_unreachable_lightningd_is_a_node_error() {
    let dir = tempfile::tempdir().unwrap();
    let s = OrderStore::new(LightningDatastore::new(Node::new(
        dir.path().join("lightning-rpc"),
    )));
    assert!(matches!(
        s.insert("o1", &order("PLACING")).await,
        Err(StoreError::Node(_))
    ));
    assert!(matches!(
        s.load_all::<Order>().await,
        Err(StoreError::Node(_))
    ));
    assert!(matches!(
        s.get::<Order>("o1").await,
        Err(StoreError::Node(_))
    ));
    let v = Versioned {
        id: "o1".into(),
        generation: 0,
        record: order("PLACING"),
    };
    let e = s.update(&v, to("PLACED".into())).await.unwrap_err();
    assert!(
        matches!(e, UpdateError::Store(StoreError::Node(_))),
        "{e:?}"
    );
}

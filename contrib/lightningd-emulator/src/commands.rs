//! The RPC commands lightningd answers itself, and forwarding of the plugin's commands.

use crate::bolt11;
use crate::datastore::{self, Mode};
use crate::manifest::{self, OptionType};
use crate::node::{AddrType, NetAddress, NodeHandle};
use crate::pay;
use crate::plugin_host::{PluginConn, await_reply};
use crate::protocol::{Params, RpcError, codes};
use crate::util::hex;
use bitcoin::secp256k1::PublicKey;
use serde_json::{Map, Value, json};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Static facts of the emulated lightningd.
#[derive(Debug, Clone)]
pub struct Settings {
    pub network: String,
    pub lightning_dir: PathBuf,
    pub rpc_file: String,
    pub plugin_path: PathBuf,
    pub proxy: Option<SocketAddr>,
    pub always_use_proxy: bool,
}

/// The plugin currently loaded, and the option values the operator set (updated by
/// `setconfig`, reused on restart as lightningd's config file would be).
#[derive(Default)]
pub struct PluginSlot {
    current: Mutex<Option<Arc<PluginConn>>>,
    options: Mutex<Vec<(String, Value)>>,
    pids: Mutex<Vec<u32>>,
}

impl PluginSlot {
    /// Remembers a plugin process id (RPC connections from it are the plugin's calls).
    pub fn add_pid(&self, pid: u32) {
        self.pids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(pid);
    }

    pub fn is_plugin_pid(&self, pid: u32) -> bool {
        self.pids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&pid)
    }

    pub fn current(&self) -> Option<Arc<PluginConn>> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .filter(|c| c.is_alive())
    }

    pub fn set_current(&self, conn: Option<Arc<PluginConn>>) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = conn;
    }

    pub fn options(&self) -> Vec<(String, Value)> {
        self.options
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn set_options(&self, opts: Vec<(String, Value)>) {
        *self.options.lock().unwrap_or_else(|p| p.into_inner()) = opts;
    }

    fn replace_option(&self, name: &str, v: Value) {
        let mut o = self.options.lock().unwrap_or_else(|p| p.into_inner());
        o.retain(|(n, _)| n != name);
        o.push((name.to_string(), v));
    }
}

/// Everything the RPC server needs.
pub struct Context {
    pub node: NodeHandle,
    pub slot: PluginSlot,
    pub settings: Settings,
}

/// How long a forwarded call may take (pay-like plugin commands may block for long).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Handles one request arriving on the RPC socket.
pub async fn dispatch(
    ctx: &Context,
    method: &str,
    params: Value,
    client_id: &Value,
    from_plugin: bool,
) -> Result<Value, RpcError> {
    ctx.node.record_call(method, &params, from_plugin);
    if let Some(conn) = ctx.slot.current()
        && conn.manifest().is_some_and(|m| m.method(method).is_some())
    {
        let prefix = id_prefix(client_id);
        let rx = conn.request(method, params, Some(&prefix));
        return await_reply(rx, FORWARD_TIMEOUT).await;
    }
    let node = &ctx.node;
    match method {
        "getinfo" => Ok(getinfo(ctx)),
        "listpeerchannels" => listpeerchannels(node, &params),
        "listpeers" => listpeers(node, &params),
        "listfunds" => Ok(listfunds(node)),
        "decode" => {
            let p = Params::parse(&params, &["string"])?;
            Ok(bolt11::decode(p.req_str("string")?)?.json)
        }
        "pay" => pay::pay(node, &params).await,
        "listpays" => pay::listpays(node, &params),
        "listsendpays" => pay::listsendpays(node, &params),
        "datastore" => datastore_cmd(node, &params),
        "listdatastore" => {
            let p = Params::parse(&params, &["key"])?;
            let key = p.get("key").map(datastore::parse_key).transpose()?;
            Ok(node.state().datastore.list(key.as_deref()))
        }
        "deldatastore" => {
            let p = Params::parse(&params, &["key", "generation"])?;
            let key = datastore::parse_key(p.required("key")?)?;
            let generation = p.opt_u64("generation")?;
            node.state().datastore.delete(&key, generation)
        }
        "connect" => connect(node, &params),
        "invoice" => crate::invoice::invoice(node, &params),
        "listinvoices" => crate::invoice::listinvoices(node, &params),
        "fundchannel" => crate::invoice::fundchannel(node, &params),
        "waitblockheight" => waitblockheight(node, &params).await,
        "help" => help(ctx, &params),
        "listconfigs" => Ok(listconfigs(ctx)),
        "setconfig" => setconfig(ctx, &params, client_id).await,
        _ => Err(RpcError::unknown_command(method)),
    }
}

/// The client's id as lightningd prefixes it to the ids it sends the plugin.
fn id_prefix(id: &Value) -> String {
    match id {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn getinfo(ctx: &Context) -> Value {
    let st = ctx.node.state();
    let peers = st.peers.iter().filter(|(_, c)| *c).count();
    let count =
        |f: &dyn Fn(&crate::channel::Channel) -> bool| st.channels.iter().filter(|c| f(c)).count();
    use crate::channel::ChannelState as S;
    json!({
        "id": st.id,
        "alias": st.alias,
        "color": st.color,
        "num_peers": peers,
        "num_pending_channels": count(&|c| matches!(c.state, S::AwaitingLockin | S::Openingd)),
        "num_active_channels": count(&|c| c.state == S::Normal && c.peer_connected),
        "num_inactive_channels": count(&|c| !(matches!(c.state, S::AwaitingLockin | S::Openingd) || (c.state == S::Normal && c.peer_connected))),
        "address": st.addresses.iter().map(NetAddress::to_json).collect::<Vec<_>>(),
        "binding": st.bindings.iter().map(NetAddress::to_json).collect::<Vec<_>>(),
        "version": crate::node::LIGHTNINGD_VERSION,
        "blockheight": st.blockheight,
        "network": st.network,
        "fees_collected_msat": 0,
        "lightning-dir": st.lightning_dir,
        "our_features": {
            "init": "800898880a8a59a1",
            "node": "808898880a8a59a1",
            "channel": "",
            "invoice": "02000002024100"
        }
    })
}

fn listpeerchannels(node: &NodeHandle, params: &Value) -> Result<Value, RpcError> {
    let p = Params::parse(params, &["id", "short_channel_id"])?;
    let id = p.opt_str("id")?;
    if let (Some(id), Some(v)) = (id, p.get("id"))
        && PublicKey::from_str(id).is_err()
    {
        return Err(RpcError::bad_param("id", v, "should be a node id"));
    }
    let scid = p.opt_str("short_channel_id")?;
    let st = node.state();
    let channels: Vec<Value> = st
        .channels
        .iter()
        .filter(|c| id.is_none_or(|i| i == c.peer_id))
        .filter(|c| scid.is_none_or(|s| c.short_channel_id.as_deref() == Some(s)))
        .map(|c| c.to_listpeerchannels(&st.id))
        .collect();
    Ok(json!({ "channels": channels }))
}

fn listpeers(node: &NodeHandle, params: &Value) -> Result<Value, RpcError> {
    let p = Params::parse(params, &["id", "level"])?;
    let id = p.opt_str("id")?;
    let st = node.state();
    let peers: Vec<Value> = st
        .peers
        .iter()
        .filter(|(p, _)| id.is_none_or(|i| i == p))
        .map(|(p, connected)| {
            let mut m = Map::new();
            m.insert("id".into(), json!(p));
            m.insert("connected".into(), json!(connected));
            m.insert(
                "num_channels".into(),
                json!(st.channels.iter().filter(|c| c.peer_id == *p).count()),
            );
            if *connected {
                m.insert("netaddr".into(), json!(["127.0.0.1:9735"]));
                m.insert("features".into(), json!("800898880a8a59a1"));
            }
            Value::Object(m)
        })
        .collect();
    Ok(json!({ "peers": peers }))
}

fn listfunds(node: &NodeHandle) -> Value {
    let st = node.state();
    let outputs: Vec<Value> = st
        .outputs
        .iter()
        .map(|u| {
            let spk_hash = crate::util::fake_hash_hex(&format!("spk:{}", u.txid));
            let mut m = Map::new();
            m.insert("txid".into(), json!(u.txid));
            m.insert("output".into(), json!(u.output));
            m.insert("amount_msat".into(), json!(u.amount_msat));
            m.insert("scriptpubkey".into(), json!(format!("5120{spk_hash}")));
            m.insert(
                "address".into(),
                json!(format!("{}1p{}", bech_hrp(&st.network), &spk_hash[..58])),
            );
            m.insert(
                "status".into(),
                json!(if u.blockheight.is_some() {
                    "confirmed"
                } else {
                    "unconfirmed"
                }),
            );
            if let Some(h) = u.blockheight {
                m.insert("blockheight".into(), json!(h));
            }
            m.insert("reserved".into(), json!(u.reserved));
            Value::Object(m)
        })
        .collect();
    let channels: Vec<Value> = st.channels.iter().map(|c| c.to_listfunds()).collect();
    json!({ "outputs": outputs, "channels": channels })
}

fn bech_hrp(network: &str) -> &'static str {
    match network {
        "bitcoin" => "bc",
        "testnet" | "signet" | "testnet4" => "tb",
        _ => "bcrt",
    }
}

fn datastore_cmd(node: &NodeHandle, params: &Value) -> Result<Value, RpcError> {
    let p = Params::parse(params, &["key", "string", "hex", "mode", "generation"])?;
    let key = datastore::parse_key(p.required("key")?)?;
    let string = p.opt_str("string")?;
    let hexdata = match p.get("hex") {
        None => None,
        Some(v) => Some(
            v.as_str()
                .and_then(hex::decode)
                .ok_or_else(|| RpcError::bad_param("hex", v, "should be a hex string"))?,
        ),
    };
    let data = match (string, hexdata) {
        (Some(_), Some(_)) => {
            return Err(RpcError::invalid_params("Cannot have both hex and string"));
        }
        (Some(s), None) => s.as_bytes().to_vec(),
        (None, Some(h)) => h,
        (None, None) => {
            return Err(RpcError::invalid_params("Must have either hex or string"));
        }
    };
    let mode = match p.get("mode") {
        None => Mode::MustCreate,
        Some(v) => Mode::parse(v)?,
    };
    let generation = p.opt_u64("generation")?;
    node.state().datastore.put(key, data, mode, generation)
}

fn connect(node: &NodeHandle, params: &Value) -> Result<Value, RpcError> {
    let p = Params::parse(params, &["id", "host", "port"])?;
    let idv = p.required("id")?.clone();
    let full = p.req_str("id")?;
    let (id, at) = match full.split_once('@') {
        Some((i, rest)) => (i, Some(rest)),
        None => (full, None),
    };
    if PublicKey::from_str(id).is_err() {
        return Err(RpcError::bad_param("id", &idv, "should be a node id"));
    }
    let (mut host, mut port) = (p.opt_str("host")?.map(str::to_owned), p.opt_u64("port")?);
    if let Some(at) = at {
        match at.rsplit_once(':') {
            Some((h, pt)) => {
                host = Some(h.to_string());
                port = pt.parse().ok();
            }
            None => host = Some(at.to_string()),
        }
    }
    if id == node.id() {
        return Err(RpcError::invalid_params("Connection to ourselves?"));
    }
    let Some(host) = host else {
        return Err(RpcError::new(
            codes::CONNECT_ALL_ADDRESSES_FAILED,
            format!("Unable to connect, no address known for peer {id}"),
        ));
    };
    let kind = if host.parse::<std::net::Ipv4Addr>().is_ok() {
        AddrType::Ipv4
    } else if host.parse::<std::net::Ipv6Addr>().is_ok() {
        AddrType::Ipv6
    } else if host.ends_with(".onion") {
        AddrType::Torv3
    } else {
        AddrType::Dns
    };
    let addr = NetAddress::new(kind, &host, port.unwrap_or(9735) as u16);
    node.connect_peer(id, addr.clone(), "out");
    Ok(json!({
        "id": id,
        "features": "800898880a8a59a1",
        "direction": "out",
        "address": addr.to_json(),
    }))
}

async fn waitblockheight(node: &NodeHandle, params: &Value) -> Result<Value, RpcError> {
    let p = Params::parse(params, &["blockheight", "timeout"])?;
    let target = p
        .opt_u64("blockheight")?
        .ok_or_else(|| RpcError::invalid_params("missing required parameter: blockheight"))?;
    let timeout = p.opt_u64("timeout")?.unwrap_or(60);
    let mut rx = node.subscribe();
    let wait = async {
        loop {
            let h = node.blockheight();
            if u64::from(h) >= target {
                return h;
            }
            if rx.changed().await.is_err() {
                return h;
            }
        }
    };
    match tokio::time::timeout(Duration::from_secs(timeout), wait).await {
        Ok(h) => Ok(json!({ "blockheight": h })),
        Err(_) => Err(RpcError::new(2000, "Timed out.")),
    }
}

fn help(ctx: &Context, params: &Value) -> Result<Value, RpcError> {
    let p = Params::parse(params, &["command"])?;
    let want = p.opt_str("command")?;
    let mut entries: Vec<Value> = manifest::BUILTIN_COMMANDS
        .iter()
        .filter(|c| IMPLEMENTED.contains(c))
        .map(|c| json!({"command": c, "category": "utility", "description": "", "verbose": ""}))
        .collect();
    if let Some(conn) = ctx.slot.current()
        && let Some(m) = conn.manifest()
    {
        for meth in &m.rpcmethods {
            let command = if meth.usage.is_empty() {
                meth.name.clone()
            } else {
                format!("{} {}", meth.name, meth.usage)
            };
            entries.push(json!({
                "command": command,
                "category": meth.category,
                "description": meth.description,
                "verbose": meth.long_description.clone().unwrap_or_else(|| meth.description.clone()),
            }));
        }
    }
    if let Some(w) = want {
        entries.retain(|e| {
            e["command"]
                .as_str()
                .is_some_and(|c| c.split(' ').next() == Some(w))
        });
        if entries.is_empty() {
            return Err(RpcError::new(
                codes::METHOD_NOT_FOUND,
                format!("Unknown command {w}"),
            ));
        }
    }
    Ok(json!({ "help": entries, "format-hint": "simple" }))
}

const IMPLEMENTED: &[&str] = &[
    "connect",
    "datastore",
    "decode",
    "deldatastore",
    "fundchannel",
    "getinfo",
    "help",
    "invoice",
    "listinvoices",
    "listconfigs",
    "listdatastore",
    "listfunds",
    "listpays",
    "listpeerchannels",
    "listpeers",
    "listsendpays",
    "pay",
    "setconfig",
    "waitblockheight",
];

fn config_value(typ: OptionType, v: &Value) -> (&'static str, Value) {
    match typ {
        OptionType::Int => ("value_int", v.clone()),
        OptionType::Bool | OptionType::Flag => ("value_bool", v.clone()),
        OptionType::String => ("value_str", v.clone()),
    }
}

fn listconfigs(ctx: &Context) -> Value {
    let s = &ctx.settings;
    let mut configs = Map::new();
    configs.insert(
        "network".into(),
        json!({"value_str": s.network, "source": "cmdline"}),
    );
    configs.insert(
        "lightning-dir".into(),
        json!({"value_str": s.lightning_dir, "source": "cmdline"}),
    );
    configs.insert(
        "rpc-file".into(),
        json!({"value_str": s.rpc_file, "source": "default"}),
    );
    configs.insert(
        "always-use-proxy".into(),
        json!({"value_bool": s.always_use_proxy, "source": "cmdline"}),
    );
    if let Some(p) = s.proxy {
        configs.insert(
            "proxy".into(),
            json!({"value_str": p.to_string(), "source": "cmdline"}),
        );
    }
    if let Some(conn) = ctx.slot.current()
        && let Some(m) = conn.manifest()
        && let Ok(values) = manifest::init_options(m, &ctx.slot.options())
    {
        for spec in &m.options {
            if let Some(v) = values.get(&spec.name) {
                let (k, v) = config_value(spec.typ, v);
                configs.insert(
                    spec.name.clone(),
                    json!({k: v, "source": "cmdline", "plugin": s.plugin_path, "dynamic": spec.dynamic}),
                );
            }
        }
    }
    json!({ "configs": configs })
}

async fn setconfig(ctx: &Context, params: &Value, client_id: &Value) -> Result<Value, RpcError> {
    let p = Params::parse(params, &["config", "val", "transient"])?;
    let cfgv = p.required("config")?.clone();
    let name = p.req_str("config")?;
    let conn = ctx.slot.current();
    let spec = conn
        .as_ref()
        .and_then(|c| c.manifest())
        .and_then(|m| m.option(name))
        .cloned();
    let Some(spec) = spec else {
        return Err(RpcError::bad_param(
            "config",
            &cfgv,
            "Unknown config option",
        ));
    };
    if !spec.dynamic {
        return Err(RpcError::bad_param(
            "config",
            &cfgv,
            "Not a dynamic config option",
        ));
    }
    let val = p.get("val");
    let text = match (spec.typ, val) {
        (OptionType::Flag, Some(v)) => {
            return Err(RpcError::bad_param("val", v, "flag options take no value"));
        }
        (OptionType::Flag, None) => None,
        (_, None) => {
            return Err(RpcError::invalid_params("missing required parameter: val"));
        }
        (typ, Some(v)) => {
            let t = manifest::operator_text(v);
            manifest::parse_value(typ, &t)
                .map_err(|e| RpcError::invalid_params(format!("Error setting {name}: {e}")))?;
            Some(t)
        }
    };
    let Some(conn) = conn else {
        return Err(RpcError::bad_param(
            "config",
            &cfgv,
            "Unknown config option",
        ));
    };
    let mut req = Map::new();
    req.insert("config".into(), json!(name));
    if let Some(t) = &text {
        req.insert("val".into(), json!(t));
    }
    let rx = conn.request("setconfig", Value::Object(req), Some(&id_prefix(client_id)));
    await_reply(rx, FORWARD_TIMEOUT).await?;
    let typed = match &text {
        Some(t) => manifest::parse_value(spec.typ, t).unwrap_or(Value::Null),
        None => Value::Bool(true),
    };
    ctx.slot.replace_option(name, typed.clone());
    let (k, v) = config_value(spec.typ, &typed);
    Ok(json!({"config": {
        "config": name,
        "source": format!("{}/config:1", ctx.settings.lightning_dir.display()),
        "plugin": ctx.settings.plugin_path,
        "dynamic": true,
        k: v,
    }}))
}

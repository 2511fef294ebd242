//! lightningd's rules for a plugin's `getmanifest` answer (lightningd/plugin.c,
//! `plugin_parse_getmanifest_response` and the functions it calls), and for turning the
//! operator's option values into the typed `init.options` object.
//!
//! Error texts follow lightningd's wording, so a refused manifest reads the same as in the node's
//! log (`Killing plugin: <message>`).

use serde_json::{Map, Value};
use std::fmt;

/// Commands lightningd itself (with its built-in plugins) registers: a plugin may not take them.
pub const BUILTIN_COMMANDS: &[&str] = &[
    "addgossip",
    "autoclean-once",
    "autoclean-status",
    "batching",
    "bkpr-listbalances",
    "blacklistrune",
    "check",
    "checkmessage",
    "checkrune",
    "close",
    "connect",
    "createinvoice",
    "createonion",
    "createrune",
    "datastore",
    "datastoreusage",
    "decode",
    "decodepay",
    "deldatastore",
    "delinvoice",
    "delpay",
    "disconnect",
    "feerates",
    "fetchinvoice",
    "fundchannel",
    "fundpsbt",
    "getinfo",
    "getlog",
    "getroute",
    "help",
    "invoice",
    "keysend",
    "listchannels",
    "listconfigs",
    "listdatastore",
    "listforwards",
    "listfunds",
    "listinvoices",
    "listnodes",
    "listpays",
    "listpeerchannels",
    "listpeers",
    "listsendpays",
    "listtransactions",
    "newaddr",
    "notifications",
    "offer",
    "pay",
    "ping",
    "plugin",
    "sendpay",
    "setconfig",
    "signmessage",
    "stop",
    "txprepare",
    "waitanyinvoice",
    "waitblockheight",
    "waitinvoice",
    "waitsendpay",
    "withdraw",
    "xpay",
];

/// lightningd's own options: a plugin option of the same name is refused at startup.
pub const BUILTIN_OPTIONS: &[&str] = &[
    "addr",
    "alias",
    "always-use-proxy",
    "announce-addr",
    "bind-addr",
    "conf",
    "daemon",
    "disable-plugin",
    "fee-base",
    "fee-per-satoshi",
    "funding-confirms",
    "important-plugin",
    "lightning-dir",
    "log-file",
    "log-level",
    "mainnet",
    "network",
    "plugin",
    "plugin-dir",
    "proxy",
    "regtest",
    "rgb",
    "rpc-file",
    "signet",
    "testnet",
];

/// Notification topics only lightningd may emit.
pub const NATIVE_TOPICS: &[&str] = &[
    "balance_snapshot",
    "block_added",
    "channel_open_failed",
    "channel_opened",
    "channel_state_changed",
    "coin_movement",
    "connect",
    "custommsg",
    "deprecated_oneshot",
    "disconnect",
    "forward_event",
    "invoice_creation",
    "invoice_payment",
    "log",
    "onionmessage_forward_fail",
    "openchannel_peer_sigs",
    "pay_part_end",
    "pay_part_start",
    "plugin_started",
    "plugin_stopped",
    "sendpay_failure",
    "sendpay_success",
    "shutdown",
    "warning",
];

/// Hooks lightningd offers.
pub const KNOWN_HOOKS: &[&str] = &[
    "commitment_revocation",
    "custommsg",
    "db_write",
    "htlc_accepted",
    "invoice_payment",
    "onion_message_recv",
    "onion_message_recv_secret",
    "openchannel",
    "openchannel2",
    "openchannel2_changed",
    "openchannel2_sign",
    "peer_connected",
    "rbf_channel",
    "recover",
    "rpc_command",
];

/// A manifest lightningd refuses; `0` is lightningd's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError(pub String);

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Killing plugin: {}", self.0)
    }
}

impl std::error::Error for ManifestError {}

fn err<T>(msg: impl Into<String>) -> Result<T, ManifestError> {
    Err(ManifestError(msg.into()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionType {
    String,
    Int,
    Bool,
    Flag,
}

impl OptionType {
    pub fn as_str(self) -> &'static str {
        match self {
            OptionType::String => "string",
            OptionType::Int => "int",
            OptionType::Bool => "bool",
            OptionType::Flag => "flag",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct OptionSpec {
    pub name: String,
    pub typ: OptionType,
    /// The default as lightningd keeps it: the JSON token's text (strings without quotes).
    pub default: Option<String>,
    pub description: String,
    pub multi: bool,
    pub dynamic: bool,
    pub deprecated: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MethodSpec {
    pub name: String,
    pub description: String,
    pub usage: String,
    pub category: String,
    pub long_description: Option<String>,
}

/// A validated manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub options: Vec<OptionSpec>,
    pub rpcmethods: Vec<MethodSpec>,
    pub subscriptions: Vec<String>,
    pub notifications: Vec<String>,
    pub hooks: Vec<String>,
    pub dynamic: bool,
    pub nonnumericids: bool,
    pub cancheck: bool,
    pub raw: Value,
}

/// What a getmanifest answer amounts to.
#[derive(Debug, Clone, PartialEq)]
pub enum ManifestOutcome {
    Accepted(Manifest),
    /// `{"disable": reason}`: the plugin disabled itself.
    Disabled(String),
}

impl Manifest {
    pub fn option(&self, name: &str) -> Option<&OptionSpec> {
        self.options.iter().find(|o| o.name == name)
    }

    pub fn method(&self, name: &str) -> Option<&MethodSpec> {
        self.rpcmethods.iter().find(|m| m.name == name)
    }

    pub fn is_subscribed(&self, topic: &str) -> bool {
        self.subscriptions.iter().any(|s| s == topic || s == "*")
    }

    pub fn declares_notification(&self, topic: &str) -> bool {
        self.notifications.iter().any(|n| n == topic)
    }
}

/// JSON token text as lightningd's `json_strdup` gives it: strings unquoted, others verbatim.
fn token_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn bool_setting(
    obj: &Map<String, Value>,
    optname: &str,
    field: &str,
) -> Result<bool, ManifestError> {
    match obj.get(field) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => err(format!("{optname}: invalid \"{field}\" field {v}")),
    }
}

/// Validates a getmanifest `result` with lightningd's rules.
pub fn validate(result: &Value) -> Result<ManifestOutcome, ManifestError> {
    let Some(obj) = result.as_object() else {
        return err(format!("Invalid/missing result tok in '{result}'"));
    };
    if let Some(reason) = obj.get("disable") {
        return Ok(ManifestOutcome::Disabled(token_text(reason)));
    }
    let dynamic = bool_setting(obj, "getmanifest", "dynamic")?;

    if let Some(fb) = obj.get("featurebits") {
        let mut have = false;
        if let Some(fbo) = fb.as_object() {
            for place in ["init", "node", "channel", "invoice"] {
                if let Some(t) = fbo.get(place) {
                    let s = t.as_str().unwrap_or_default();
                    if !t.is_string()
                        || !s.len().is_multiple_of(2)
                        || !s.bytes().all(|b| b.is_ascii_hexdigit())
                    {
                        return err(format!(
                            "Featurebits returned by plugin is not a valid hexadecimal string: {t}"
                        ));
                    }
                    have |= !s.is_empty();
                }
            }
        }
        if dynamic && have {
            return err(format!(
                "Custom featurebits only allows for non-dynamic plugins: dynamic=1, featurebits={fb}"
            ));
        }
    }

    if let Some(cm) = obj.get("custommessages") {
        let Some(arr) = cm.as_array() else {
            return err(format!("custommessages must be array, not '{cm}'"));
        };
        for (i, t) in arr.iter().enumerate() {
            if t.as_u64().is_none_or(|n| n > u64::from(u16::MAX)) {
                return err(format!("custommessages {i} not a u16: '{t}'"));
            }
        }
    }

    let nonnumericids = match obj.get("nonnumericids") {
        None => true,
        Some(Value::Bool(true)) => true,
        // Allowing numeric ids was deprecated in v23.08 and removed in v24.08.
        Some(Value::Bool(false)) => return err("Plugin does not allow nonnumericids"),
        Some(t) => return err(format!("Invalid nonnumericids: {t}")),
    };
    let cancheck = match obj.get("cancheck") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(t) => return err(format!("Invalid cancheck: {t}")),
    };

    let notifications = parse_notifications(obj)?;
    let options = parse_options(obj)?;
    let rpcmethods = parse_methods(obj)?;
    let subscriptions = parse_subscriptions(obj)?;
    let hooks = parse_hooks(obj)?;

    Ok(ManifestOutcome::Accepted(Manifest {
        options,
        rpcmethods,
        subscriptions,
        notifications,
        hooks,
        dynamic,
        nonnumericids,
        cancheck,
        raw: result.clone(),
    }))
}

fn parse_notifications(obj: &Map<String, Value>) -> Result<Vec<String>, ManifestError> {
    let Some(n) = obj.get("notifications") else {
        return Ok(vec![]);
    };
    let Some(arr) = n.as_array() else {
        return err("\"result.notifications\" is not an array");
    };
    let mut out = vec![];
    for (i, o) in arr.iter().enumerate() {
        if !o.is_object() {
            return err(format!("\"result.notifications[{i}]\" is not an object"));
        }
        let Some(m) = o.get("method").and_then(Value::as_str) else {
            return err(format!(
                "\"result.notifications[{i}].name\" missing or not a string."
            ));
        };
        if NATIVE_TOPICS.contains(&m) {
            return err(format!(
                "plugin attempted to register a native notification topic \"{m}\", these may however only be sent by lightningd"
            ));
        }
        out.push(m.to_string());
    }
    Ok(out)
}

fn parse_options(obj: &Map<String, Value>) -> Result<Vec<OptionSpec>, ManifestError> {
    let Some(opts) = obj.get("options") else {
        return err("\"result.options\" was not found in the manifest");
    };
    let Some(arr) = opts.as_array() else {
        return err("\"result.options\" is not an array");
    };
    let mut out: Vec<OptionSpec> = vec![];
    for opt in arr {
        let o = opt.as_object();
        let get = |k: &str| o.and_then(|o| o.get(k));
        let (Some(name), Some(typ), Some(desc)) = (get("name"), get("type"), get("description"))
        else {
            return err("An option is missing either \"name\", \"description\" or \"type\"");
        };
        let name = token_text(name);
        if !name
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'_' || b == b'-')
        {
            return err("Option \"name\" must be lowercase alphanumeric, plus _ or -'");
        }
        if BUILTIN_OPTIONS.contains(&name.as_str()) || out.iter().any(|p| p.name == name) {
            return err(format!("option name '{name}' is already taken"));
        }
        let o = o.cloned().unwrap_or_default();
        let dashed = format!("--{name}");
        let deprecated = match o.get("deprecated") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::Array(a)) if !a.is_empty() && a.len() <= 2 => true,
            Some(t) => {
                return err(format!(
                    "\"deprecated\" must be an array of 1 or 2 elements, not {t}"
                ));
            }
        };
        let multi = bool_setting(&o, &dashed, "multi")?;
        let dynamic = bool_setting(&o, &dashed, "dynamic")?;
        let typ = match typ.as_str() {
            Some("string") => OptionType::String,
            Some("int") => OptionType::Int,
            Some("bool") => OptionType::Bool,
            Some("flag") => OptionType::Flag,
            _ => {
                return err(
                    "Only \"string\", \"int\", \"bool\", and \"flag\" options are supported",
                );
            }
        };
        let mut default = o.get("default").filter(|d| !d.is_null()).map(token_text);
        match typ {
            OptionType::Flag => {
                if let Some(d) = o.get("default")
                    && d != &Value::Bool(false)
                {
                    return err(format!(
                        "{dashed} type flag default must be 'false' not {d}"
                    ));
                }
                if multi {
                    return err("flag type cannot be multi");
                }
                default = None;
            }
            OptionType::Bool if multi => return err("bool type cannot be multi"),
            _ => {}
        }
        if let Some(d) = &default
            && let Err(problem) = parse_value(typ, d)
        {
            return err(format!("Invalid default '{d}': {problem}"));
        }
        out.push(OptionSpec {
            name,
            typ,
            default,
            description: token_text(desc),
            multi,
            dynamic,
            deprecated,
        });
    }
    Ok(out)
}

fn parse_methods(obj: &Map<String, Value>) -> Result<Vec<MethodSpec>, ManifestError> {
    let Some(methods) = obj.get("rpcmethods") else {
        return err("\"result.rpcmethods\" missing");
    };
    let Some(arr) = methods.as_array() else {
        return err("\"result.rpcmethods\" is not an array");
    };
    let mut out: Vec<MethodSpec> = vec![];
    for m in arr {
        let get = |k: &str| m.get(k);
        let Some(name) = get("name").and_then(Value::as_str) else {
            return err(format!("rpcmethod does not have a string \"name\": {m}"));
        };
        let Some(description) = get("description").and_then(Value::as_str) else {
            return err(format!(
                "rpcmethod does not have a string \"description\": {m}"
            ));
        };
        let long_description = match get("long_description") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return err(format!("\"long_description\" is not a string: {m}")),
        };
        let usage = match get("usage") {
            None => return err("\"usage\" not provided by plugin"),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return err(format!("\"usage\" is not a string: {m}")),
        };
        if BUILTIN_COMMANDS.contains(&name) {
            return err(format!(
                "Could not register method \"{name}\", a method with that name is already registered"
            ));
        }
        if out.iter().any(|x| x.name == name) {
            return err(format!(
                "Could not register method \"{name}\", a method with that name is already registered by this plugin"
            ));
        }
        out.push(MethodSpec {
            name: name.to_string(),
            description: description.to_string(),
            usage,
            category: get("category")
                .map(token_text)
                .unwrap_or_else(|| "plugin".into()),
            long_description,
        });
    }
    Ok(out)
}

fn parse_subscriptions(obj: &Map<String, Value>) -> Result<Vec<String>, ManifestError> {
    let Some(s) = obj.get("subscriptions") else {
        return Ok(vec![]);
    };
    let Some(arr) = s.as_array() else {
        return err("\"result.subscriptions\" is not an array");
    };
    arr.iter()
        .enumerate()
        .map(|(i, t)| match t {
            Value::String(s) => Ok(s.clone()),
            other => err(format!(
                "result.subscriptions[{i}] is not a string: '{other}'"
            )),
        })
        .collect()
}

fn parse_hooks(obj: &Map<String, Value>) -> Result<Vec<String>, ManifestError> {
    let Some(h) = obj.get("hooks") else {
        return Ok(vec![]);
    };
    let arr = h.as_array().cloned().unwrap_or_default();
    let mut out = vec![];
    for t in &arr {
        let name = if t.is_object() {
            match t.get("name") {
                Some(n) => token_text(n),
                None => return err(format!("no name in hook obj {t}")),
            }
        } else {
            token_text(t)
        };
        if !KNOWN_HOOKS.contains(&name.as_str()) || out.contains(&name) {
            return err(format!(
                "could not register hook '{name}', either the name doesn't exist or another plugin already registered it."
            ));
        }
        out.push(name);
    }
    Ok(out)
}

/// Parses one option value given as text, as lightningd's option callbacks do; returns the JSON
/// value `init` carries (int as number, bool as bool, string as string, flag as `true`).
pub fn parse_value(typ: OptionType, text: &str) -> Result<Value, String> {
    match typ {
        OptionType::String => Ok(Value::String(text.to_string())),
        OptionType::Int => parse_long(text)
            .map(Value::from)
            .ok_or_else(|| format!("'{text}' is not a number")),
        OptionType::Bool => match text {
            "true" | "yes" => Ok(Value::Bool(true)),
            "false" | "no" => Ok(Value::Bool(false)),
            "1" | "0" => Err("boolean plugin arguments must be true or false".into()),
            _ => Err(format!("Invalid argument '{text}'")),
        },
        OptionType::Flag => Ok(Value::Bool(true)),
    }
}

/// `strtol(.., 0)`: decimal, `0x` hex or leading-`0` octal, optional sign.
fn parse_long(text: &str) -> Option<i64> {
    let (neg, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let v = if let Some(h) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        i64::from_str_radix(h, 16).ok()?
    } else if digits.len() > 1 && digits.starts_with('0') {
        i64::from_str_radix(&digits[1..], 8).ok()?
    } else {
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()?
    };
    Some(if neg { -v } else { v })
}

/// An operator-supplied value (as in a config file: any JSON scalar) as option text.
pub fn operator_text(v: &Value) -> String {
    token_text(v)
}

/// Builds `init.options`: the operator's values (type-checked like lightningd does at startup),
/// defaults where none was given, nothing for unset options without default.
pub fn init_options(
    manifest: &Manifest,
    operator: &[(String, Value)],
) -> Result<Map<String, Value>, String> {
    for (name, _) in operator {
        if manifest.option(name).is_none() {
            return Err(format!("unknown parameter {name}"));
        }
    }
    let mut out = Map::new();
    for spec in &manifest.options {
        let given: Vec<&Value> = operator
            .iter()
            .filter(|(n, _)| *n == spec.name)
            .map(|(_, v)| v)
            .collect();
        let mut values = vec![];
        for v in &given {
            // A multi option may be given as a JSON array of values.
            let items: Vec<&Value> = match v {
                Value::Array(a) if spec.multi => a.iter().collect(),
                other => vec![*other],
            };
            for item in items {
                if spec.typ == OptionType::Flag {
                    match item {
                        Value::Bool(false) => continue,
                        Value::Bool(true) | Value::Null => {}
                        other => {
                            return Err(format!(
                                "--{}: flag option takes no value (got {other})",
                                spec.name
                            ));
                        }
                    }
                }
                let text = operator_text(item);
                let parsed = parse_value(spec.typ, &text)
                    .map_err(|p| format!("--{}={text}: {p}", spec.name))?;
                values.push(parsed);
            }
        }
        if !spec.multi && values.len() > 1 {
            // Later settings override earlier ones for single-valued options.
            values.drain(..values.len() - 1);
        }
        if values.is_empty() {
            let Some(d) = &spec.default else { continue };
            values.push(parse_value(spec.typ, d).map_err(|p| format!("--{}: {p}", spec.name))?);
        }
        let v = if spec.multi {
            Value::Array(values)
        } else {
            values.pop().unwrap_or(Value::Null)
        };
        out.insert(spec.name.clone(), v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strtol_like() {
        assert_eq!(parse_long("42"), Some(42));
        assert_eq!(parse_long("-7"), Some(-7));
        assert_eq!(parse_long("0x10"), Some(16));
        assert_eq!(parse_long("010"), Some(8));
        assert_eq!(parse_long("4x"), None);
        assert_eq!(parse_long(""), None);
    }

    #[test]
    fn cln_plugin_style_manifest_is_accepted() {
        let m = json!({
            "options": [{"name": "x-mode", "type": "string", "default": "off", "description": "d", "dynamic": true, "multi": false}],
            "rpcmethods": [{"name": "x-do", "description": "", "usage": ""}],
            "subscriptions": ["block_added"], "notifications": [{"method": "x_event"}],
            "hooks": [], "dynamic": false, "featurebits": {}, "nonnumericids": true
        });
        let ManifestOutcome::Accepted(m) = validate(&m).unwrap() else {
            panic!("disabled")
        };
        assert!(m.option("x-mode").unwrap().dynamic);
        assert!(m.is_subscribed("block_added"));
        let opts = init_options(&m, &[]).unwrap();
        assert_eq!(opts["x-mode"], json!("off"));
    }
}

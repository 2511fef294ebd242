//! The plugin's shared state, built once from `init`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde_json::Value;

use crate::config::Config;
use crate::credential::{self, KeySource};
use crate::magma::{ClientOptions, MagmaClient};
use crate::node::Node;
use crate::record::OrderRecord;
use crate::secret::Secret;
use crate::store::{LightningDatastore, OrderStore};

/// What lightningd tells the plugin in `init.configuration` that the plugin uses.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    pub lightning_dir: PathBuf,
    pub rpc_file: String,
    pub network: String,
    /// `host:port` of the node's SOCKS proxy when lightningd runs with `always-use-proxy`.
    pub forced_proxy: Option<String>,
}

/// The whole-request limit of every Magma call: the client's 30 s, except in test builds that
/// ask for a shorter one (a test of a timed-out call cannot wait 30 s per try). Release builds
/// have no such switch.
fn http_timeout() -> std::time::Duration {
    #[cfg(feature = "test-hooks")]
    if let Some(ms) = std::env::var("CLN_MAGMA_TEST_HTTP_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        return std::time::Duration::from_millis(ms);
    }
    ClientOptions::default().timeout
}

#[derive(Clone)]
pub struct App(Arc<Inner>);

pub struct Inner {
    config: RwLock<Config>,
    pub client: MagmaClient,
    pub node: Node,
    pub api_key: Option<Secret>,
    pub key_source: KeySource,
    pub settings: NodeSettings,
    pub store: OrderStore<LightningDatastore>,
    /// Wakes the tracker at once (a new order, a payment outcome).
    pub wake: tokio::sync::Notify,
    /// Held from a purchase's limit checks until its intent is stored, so two purchases
    /// (a manual one and an automatic one, say) cannot both pass `magma-max-inflight`.
    pub purchase_lock: tokio::sync::Mutex<()>,
    /// Wakes the automatic check (a channel event, a policy option changed).
    pub policy_wake: tokio::sync::Notify,
    /// The last automatic decision and when the next periodic check is due, for magma-status.
    last_decision: std::sync::Mutex<Option<serde_json::Value>>,
    next_check: std::sync::Mutex<Option<u64>>,
    /// `magma_order` notifications on their way to lightningd.
    notices: tokio::sync::mpsc::UnboundedSender<serde_json::Value>,
}

impl std::ops::Deref for App {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// Why the plugin refuses to start; the text names the option and the rule.
pub type SetupError = String;

/// The receiving end of the `magma_order` notifications, drained by main into lightningd.
pub type Notices = tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>;

impl App {
    /// Validates every option and builds the Magma client. `env_key` is `AMBOSS_API_KEY`.
    /// Returns the app and the warnings to log.
    pub fn setup(
        values: &BTreeMap<String, Value>,
        settings: NodeSettings,
        env_key: Option<String>,
    ) -> Result<(App, Vec<String>, Notices), SetupError> {
        let config = Config::from_values(values).map_err(|e| e.to_string())?;
        let key = credential::load(
            config.api_key_file.as_deref(),
            &settings.lightning_dir,
            env_key,
        )?;
        let client = MagmaClient::new(&ClientOptions {
            api_url: config.api_url.to_string(),
            socks_proxy: settings.forced_proxy.clone(),
            timeout: http_timeout(),
            ..ClientOptions::default()
        })
        .map_err(|e| format!("cannot reach Magma: {e}"))?;
        let node = Node::new(Path::new(&settings.lightning_dir).join(&settings.rpc_file));
        let (notices, receiver) = tokio::sync::mpsc::unbounded_channel();
        let app = App(Arc::new(Inner {
            config: RwLock::new(config),
            client,
            store: OrderStore::new(LightningDatastore::new(node.clone())),
            node,
            api_key: key.key,
            key_source: key.source,
            settings,
            wake: tokio::sync::Notify::new(),
            policy_wake: tokio::sync::Notify::new(),
            purchase_lock: tokio::sync::Mutex::new(()),
            last_decision: std::sync::Mutex::new(None),
            next_check: std::sync::Mutex::new(None),
            notices,
        }));
        Ok((app, key.warnings, receiver))
    }

    pub fn set_last_decision(&self, v: serde_json::Value) {
        if let Ok(mut g) = self.last_decision.lock() {
            *g = Some(v);
        }
    }

    pub fn last_decision(&self) -> Option<serde_json::Value> {
        self.last_decision.lock().ok().and_then(|g| g.clone())
    }

    pub fn set_next_check(&self, at: u64) {
        if let Ok(mut g) = self.next_check.lock() {
            *g = Some(at);
        }
    }

    pub fn next_check(&self) -> Option<u64> {
        self.next_check.lock().ok().and_then(|g| *g)
    }

    /// Queues a `magma_decision` notification.
    pub fn notify_decision(&self, decision: serde_json::Value) {
        let _ = self
            .notices
            .send(serde_json::json!({"topic": "magma_decision", "body": decision}));
    }

    /// Queues a `magma_order` notification about `record`; secrets are not in the view.
    pub fn notify_order(&self, record: &OrderRecord, event: &str) {
        let l = &record.lifecycle;
        let _ = self
            .notices
            .send(serde_json::json!({"topic": "magma_order", "body": {
                "event": event,
                "id": record.id,
                "order_id": record.placement.as_ref().map(|p| p.order_id.clone()),
                "state": l.state,
                "status": l.status,
                "payment_status": l.payment_status,
                "usd_cents": record.request.usd_cents,
                "expected_inbound_sat": record.request.expected_inbound_sat,
                "invoice_sat": record.invoice.as_ref().map(|i| i.amount_sat),
                "reason": l.reason,
            }}));
    }

    /// The node's channels, for inbound and delivery checks.
    pub async fn channels(
        &self,
    ) -> Result<Vec<crate::inbound::PeerChannel>, crate::rpcerror::CommandError> {
        self.node
            .peer_channels()
            .await
            .map_err(|e| crate::rpcerror::CommandError::node("listpeerchannels", e))
    }

    /// Every stored order; unreadable records are logged, never dropped silently.
    pub async fn orders(
        &self,
    ) -> Result<Vec<crate::store::Versioned<OrderRecord>>, crate::rpcerror::CommandError> {
        let (orders, unreadable) = self
            .store
            .load_all::<OrderRecord>()
            .await
            .map_err(|e| crate::rpcerror::CommandError::node("listdatastore", e))?;
        for bad in &unreadable {
            log::warn!("a stored order cannot be read: {bad}");
        }
        Ok(orders)
    }

    /// A snapshot of the configuration; cheap, and never holds the lock across an await.
    pub fn config(&self) -> Config {
        match self.config.read() {
            Ok(c) => c.clone(),
            // A writer panicked mid-update; the value itself is always a whole Config.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Applies one `setconfig` change; the old configuration stays when it is refused.
    pub fn set_option(
        &self,
        name: &str,
        value: &Value,
    ) -> Result<Config, crate::config::OptionError> {
        let mut guard = match self.config.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let next = guard.with(name, value)?;
        *guard = next.clone();
        Ok(next)
    }
}

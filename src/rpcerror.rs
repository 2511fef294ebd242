//! Errors as the plugin's RPC commands return them: a JSON-RPC code and a message that names
//! what was wrong.

use serde::Serialize;
use serde_json::Value;

use crate::magma::MagmaError;

/// JSON-RPC "invalid params": a bad argument or option value.
pub const INVALID_PARAMS: i32 = -32602;
/// Magma could not be asked, or answered with an error (`data.class` says which kind).
pub const MAGMA_FAILED: i32 = 1601;
/// lightningd did not answer a call the command needed.
pub const NODE_FAILED: i32 = 1602;
/// The node cannot take part (for example: no connection URI sellers can reach).
pub const NOT_READY: i32 = 1603;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CommandError {
    pub code: i32,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl CommandError {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        CommandError {
            code,
            message: message.into(),
            data: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        CommandError::new(INVALID_PARAMS, message)
    }

    pub fn node(context: &str, e: impl std::fmt::Display) -> Self {
        CommandError::new(NODE_FAILED, format!("{context}: {e}"))
    }

    /// cln-plugin turns a handler's error into the JSON-RPC error object when its text is one.
    pub fn into_anyhow(self) -> anyhow::Error {
        match serde_json::to_string(&self) {
            Ok(json) => anyhow::anyhow!(json),
            Err(_) => anyhow::anyhow!(self.message),
        }
    }
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (code {})", self.message, self.code)
    }
}

impl From<MagmaError> for CommandError {
    fn from(e: MagmaError) -> Self {
        CommandError {
            code: MAGMA_FAILED,
            message: e.to_string(),
            data: Some(serde_json::json!({ "class": e.class() })),
        }
    }
}

//! Accounts and credentials: configured API keys and session keys minted by anonymous buys.

use std::collections::HashMap;

use bitcoin::hex::DisplayHex;
use rand::Rng;
use uuid::Uuid;

use crate::model::OwnerKind;
use crate::request_log::CredentialKind;

/// Who is calling, resolved from the `Authorization` header. Holds a secret: never log it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Caller {
    /// No `Authorization` header.
    Anonymous,
    /// A known API key or session key (`session_key`: the key itself, for session callers).
    Account {
        id: String,
        kind: OwnerKind,
        session_key: Option<String>,
    },
    /// A header that is not `Bearer <known key>`.
    Invalid,
}

impl Caller {
    pub fn credential_kind(&self) -> CredentialKind {
        match self {
            Caller::Anonymous => CredentialKind::None,
            Caller::Account {
                kind: OwnerKind::ApiKey,
                ..
            } => CredentialKind::ApiKey,
            Caller::Account {
                kind: OwnerKind::SessionKey,
                ..
            } => CredentialKind::SessionKey,
            Caller::Invalid => CredentialKind::Invalid,
        }
    }
}

/// A freshly created anonymous session account.
pub(crate) struct NewSession {
    pub account_id: String,
    pub session_key: String,
}

/// The credential table. Keys are secrets: never log them.
#[derive(Default)]
pub(crate) struct Accounts {
    api_keys: HashMap<String, String>,
    sessions: HashMap<String, String>,
}

impl Accounts {
    pub fn with_api_keys(keys: &[String]) -> Accounts {
        let api_keys = keys
            .iter()
            .map(|k| (k.clone(), Uuid::new_v4().to_string()))
            .collect();
        Accounts {
            api_keys,
            sessions: HashMap::new(),
        }
    }

    /// Resolves an `Authorization` header value (`None` = header absent).
    pub fn resolve(&self, header: Option<&str>) -> Caller {
        let Some(header) = header else {
            return Caller::Anonymous;
        };
        let Some(token) = bearer_token(header) else {
            return Caller::Invalid;
        };
        if let Some(id) = self.api_keys.get(token) {
            Caller::Account {
                id: id.clone(),
                kind: OwnerKind::ApiKey,
                session_key: None,
            }
        } else if let Some(id) = self.sessions.get(token) {
            Caller::Account {
                id: id.clone(),
                kind: OwnerKind::SessionKey,
                session_key: Some(token.to_string()),
            }
        } else {
            Caller::Invalid
        }
    }

    /// Mints an anonymous session account with a random 32-hex-digit session key.
    pub fn new_session(&mut self) -> NewSession {
        let key: [u8; 16] = rand::thread_rng().r#gen();
        let session = NewSession {
            account_id: Uuid::new_v4().to_string(),
            session_key: key.to_lower_hex_string(),
        };
        self.sessions
            .insert(session.session_key.clone(), session.account_id.clone());
        session
    }
}

/// `Bearer <token>` (scheme case-insensitive) → token.
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_each_credential_kind() {
        let mut accounts = Accounts::with_api_keys(&["amboss_k".to_string()]);
        let session = accounts.new_session();
        assert_eq!(session.session_key.len(), 32);
        assert!(accounts.resolve(None) == Caller::Anonymous);
        assert_eq!(
            accounts.resolve(Some("Bearer amboss_k")).credential_kind(),
            CredentialKind::ApiKey
        );
        let caller = accounts.resolve(Some(&format!("bearer {}", session.session_key)));
        assert!(
            caller
                == Caller::Account {
                    id: session.account_id,
                    kind: OwnerKind::SessionKey,
                    session_key: Some(session.session_key.clone()),
                }
        );
        for bad in ["Bearer nope", "amboss_k", "Bearer "] {
            assert!(accounts.resolve(Some(bad)) == Caller::Invalid, "{bad}");
        }
    }
}

//! Business and auth errors of the GraphQL API (sent with HTTP 200 in `errors[]`).

/// An error with the documented message and an `extensions.code`. Deliberately not
/// `Display`: async-graphql converts any `Display` type into an error without a code, so the
/// only conversion is the explicit one in `schema.rs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub message: String,
    pub code: &'static str,
}

impl ApiError {
    fn new(message: impl Into<String>, code: &'static str) -> ApiError {
        ApiError {
            message: message.into(),
            code,
        }
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new("Unauthorized token", "UNAUTHORIZED")
    }

    /// Code `FORBIDDEN` is an inference; the documented message is `Forbidden`.
    pub fn forbidden() -> ApiError {
        ApiError::new("Forbidden", "FORBIDDEN")
    }

    pub fn invalid_id() -> ApiError {
        ApiError::new("Invalid ID", "BAD_USER_INPUT")
    }

    pub fn bad_input(message: impl Into<String>) -> ApiError {
        ApiError::new(message, "BAD_USER_INPUT")
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(message, "INTERNAL_SERVER_ERROR")
    }
}

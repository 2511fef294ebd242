//! Apollo-style request errors: parse and validation failures get Apollo's codes and wording
//! (`Cannot query field "x" on type "T".`), so clients see what the real service sends.

use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextValidation,
};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{ServerError, ServerResult, ValidationResult, Variables};

const PARSE_FAILED: &str = "GRAPHQL_PARSE_FAILED";
const VALIDATION_FAILED: &str = "GRAPHQL_VALIDATION_FAILED";
const BAD_USER_INPUT: &str = "BAD_USER_INPUT";

/// Schema extension that rewrites parse and validation errors.
pub(crate) struct ApolloErrors;

impl ExtensionFactory for ApolloErrors {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ApolloErrorsExtension)
    }
}

struct ApolloErrorsExtension;

#[async_graphql::async_trait::async_trait]
impl Extension for ApolloErrorsExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        next.run(ctx, query, variables)
            .await
            .map_err(|e| with_code(e, PARSE_FAILED))
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx)
            .await
            .map_err(|errors| errors.into_iter().map(rewrite_validation_error).collect())
    }
}

fn with_code(mut e: ServerError, code: &str) -> ServerError {
    e.extensions
        .get_or_insert_with(Default::default)
        .set("code", code);
    e
}

/// Apollo wording for unknown fields; variable values that do not fit their type are
/// `BAD_USER_INPUT`, every other rule violation `GRAPHQL_VALIDATION_FAILED`.
fn rewrite_validation_error(mut e: ServerError) -> ServerError {
    if let Some(rest) = e.message.strip_prefix("Unknown field ") {
        e.message = format!("Cannot query field {rest}");
    }
    let code = if e.message.starts_with("Invalid value for argument") {
        BAD_USER_INPUT
    } else {
        VALIDATION_FAILED
    };
    with_code(e, code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_field_gets_apollo_wording() {
        let e = rewrite_validation_error(ServerError::new(
            r#"Unknown field "foo" on type "MarketOrder"."#,
            None,
        ));
        assert_eq!(
            e.message,
            r#"Cannot query field "foo" on type "MarketOrder"."#
        );
        let code = e.extensions.as_ref().and_then(|x| x.get("code")).cloned();
        assert_eq!(code, Some(async_graphql::Value::from(VALIDATION_FAILED)));
    }
}

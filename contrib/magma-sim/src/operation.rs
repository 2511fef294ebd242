//! Recognises which buyer operation a GraphQL document performs, from its root field path.

use std::collections::HashSet;

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, Field, OperationDefinition, OperationType, Selection,
    SelectionSet,
};
use async_graphql::{Name, Value, Variables};

use crate::faults::Operation;

/// What a request does, as far as the simulator needs to know before executing it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Analysis {
    pub operation: Operation,
    /// The `order_id` argument of `get_order`.
    pub order_id: Option<String>,
    /// A required variable that is missing or null (Apollo rejects these with HTTP 400).
    pub variable_error: Option<String>,
}

const PATHS: &[(OperationType, &[&str], Operation)] = &[
    (
        OperationType::Query,
        &["market", "liquidity", "liquidity_per_usd"],
        Operation::Price,
    ),
    (
        OperationType::Mutation,
        &["liquidity", "buy"],
        Operation::Buy,
    ),
    (
        OperationType::Query,
        &["user", "market", "orders", "get_order"],
        Operation::GetOrder,
    ),
    (
        OperationType::Query,
        &["user", "market", "orders", "purchases"],
        Operation::Purchases,
    ),
    (
        OperationType::Query,
        &["user", "transactions", "transaction_list"],
        Operation::TransactionList,
    ),
];

const MAX_DEPTH: usize = 4;

/// Analyses a request; anything that does not parse or match is `Operation::Other`.
pub(crate) fn analyze(
    query: &str,
    operation_name: Option<&str>,
    variables: &Variables,
) -> Analysis {
    let mut analysis = Analysis {
        operation: Operation::Other,
        order_id: None,
        variable_error: None,
    };
    let Ok(doc) = async_graphql::parser::parse_query(query) else {
        return analysis;
    };
    let Some(op) = select_operation(&doc, operation_name) else {
        return analysis;
    };
    analysis.variable_error = variable_error(op, variables);
    let mut fields = Vec::new();
    let mut visited = HashSet::new();
    collect(
        &doc,
        &op.selection_set.node,
        &mut Vec::new(),
        &mut visited,
        &mut fields,
    );
    for (path, field) in &fields {
        let found = PATHS
            .iter()
            .find(|(ty, p, _)| *ty == op.ty && p.iter().eq(path.iter()));
        if let Some((_, _, operation)) = found {
            analysis.operation = *operation;
            if *operation == Operation::GetOrder {
                analysis.order_id = order_id_argument(field, variables);
            }
            break;
        }
    }
    analysis
}

/// Apollo's message for the first non-null variable without a default that is missing or null.
fn variable_error(op: &OperationDefinition, variables: &Variables) -> Option<String> {
    op.variable_definitions.iter().find_map(|def| {
        let def = &def.node;
        let ty = &def.var_type.node;
        if ty.nullable || def.default_value.is_some() {
            return None;
        }
        let name = &def.name.node;
        match variables.get(name) {
            None => Some(format!(
                r#"Variable "${name}" of required type "{ty}" was not provided."#
            )),
            Some(Value::Null) => Some(format!(
                r#"Variable "${name}" of non-null type "{ty}" must not be null."#
            )),
            Some(_) => None,
        }
    })
}

fn select_operation<'d>(
    doc: &'d ExecutableDocument,
    name: Option<&str>,
) -> Option<&'d OperationDefinition> {
    match (&doc.operations, name) {
        (DocumentOperations::Single(op), _) => Some(&op.node),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name).map(|op| &op.node),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            ops.values().next().map(|op| &op.node)
        }
        (DocumentOperations::Multiple(_), None) => None,
    }
}

/// Collects `(field-name path, field)` for every field up to `MAX_DEPTH`, in document order,
/// looking through fragments.
fn collect<'d>(
    doc: &'d ExecutableDocument,
    set: &'d SelectionSet,
    path: &mut Vec<&'d str>,
    visited: &mut HashSet<&'d Name>,
    out: &mut Vec<(Vec<&'d str>, &'d Field)>,
) {
    for item in &set.items {
        match &item.node {
            Selection::Field(field) => {
                path.push(field.node.name.node.as_str());
                out.push((path.clone(), &field.node));
                if path.len() < MAX_DEPTH {
                    collect(doc, &field.node.selection_set.node, path, visited, out);
                }
                path.pop();
            }
            Selection::InlineFragment(fragment) => {
                collect(doc, &fragment.node.selection_set.node, path, visited, out);
            }
            Selection::FragmentSpread(spread) => {
                let name = &spread.node.fragment_name.node;
                if let Some(fragment) = doc.fragments.get(name)
                    && visited.insert(name)
                {
                    collect(doc, &fragment.node.selection_set.node, path, visited, out);
                }
            }
        }
    }
}

fn order_id_argument(field: &Field, variables: &Variables) -> Option<String> {
    let value = field.get_argument("order_id")?;
    let value = value
        .node
        .clone()
        .into_const_with(|name| variables.get(&name).cloned().ok_or(()))
        .ok()?;
    match value {
        Value::String(s) => Some(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(q: &str) -> Operation {
        analyze(q, None, &Variables::default()).operation
    }

    #[test]
    fn recognises_the_buyer_operations() {
        assert_eq!(
            op("{ market { liquidity { liquidity_per_usd { sats } } } }"),
            Operation::Price
        );
        assert_eq!(
            op(
                "mutation B($i: LiquidityOrderInput!) { liquidity { buy(input: $i) { order { transaction_id } } } }"
            ),
            Operation::Buy
        );
        assert_eq!(
            op("{ user { market { orders { purchases { total } } } } }"),
            Operation::Purchases
        );
        assert_eq!(
            op("query R { user { transactions { transaction_list { total } } } }"),
            Operation::TransactionList
        );
        assert_eq!(op("{ user { id email } }"), Operation::Other);
        assert_eq!(op("{ market { liquidity"), Operation::Other);
        // A query cannot be a buy.
        assert_eq!(
            op("{ liquidity { buy { order { transaction_id } } } }"),
            Operation::Other
        );
    }

    #[test]
    fn extracts_order_id_from_literal_and_variable() {
        let c = analyze(
            r#"{ user { market { orders { get_order(order_id: "abc") { id } } } } }"#,
            None,
            &Variables::default(),
        );
        assert_eq!(c.operation, Operation::GetOrder);
        assert_eq!(c.order_id.as_deref(), Some("abc"));

        let vars = Variables::from_json(serde_json::json!({ "id": "xyz" }));
        let c = analyze(
            "query G($id: String!) { ...F } fragment F on Query { user { market { orders { get_order(order_id: $id) { id } } } } }",
            Some("G"),
            &vars,
        );
        assert_eq!(c.operation, Operation::GetOrder);
        assert_eq!(c.order_id.as_deref(), Some("xyz"));
        assert_eq!(c.variable_error, None);
    }

    #[test]
    fn reports_missing_required_variables() {
        let q = "mutation B($input: LiquidityOrderInput!, $x: String) { liquidity { buy(input: $input) { account { id } } } }";
        let c = analyze(q, None, &Variables::default());
        assert_eq!(
            c.variable_error.as_deref(),
            Some(r#"Variable "$input" of required type "LiquidityOrderInput!" was not provided."#)
        );
        let vars = Variables::from_json(serde_json::json!({ "input": null }));
        let c = analyze(q, None, &vars);
        assert_eq!(
            c.variable_error.as_deref(),
            Some(r#"Variable "$input" of non-null type "LiquidityOrderInput!" must not be null."#)
        );
    }
}

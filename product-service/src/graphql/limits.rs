//! The shape limits checked right after parsing, before async-graphql looks at the document.
//!
//! - Depth: fields may nest at most `GRAPHQL_MAX_DEPTH` levels. Introspection (`__schema`, `__type`) is answered
//!   from the in-memory schema, never the database, and the standard introspection query GraphiQL sends nests
//!   13 levels (`ofType { ofType { … } }`); it gets its own allowance so a low depth limit for data does not
//!   break the GraphiQL documentation explorer.
//! - Size: at most [`MAX_SELECTIONS`] selections once fragments are expanded. Fragments may spread other
//!   fragments several times each, so a few hundred bytes can expand to billions of fields; the walk counts
//!   as it goes and stops at the limit. Fragment cycles are refused here too.
//!
//! This must run before async-graphql's own passes, which expand fragments the same way without any bound:
//! its recursion-depth check (run as part of parsing, before any `parse_query` extension sees the document)
//! would spend hours on such a document. So the check runs in the `prepare_request` hook, on the document
//! parsed ahead of time with `Request::parsed_query`, which async-graphql then reuses instead of parsing again.
//!
//! Documents that passed are remembered by their text (at most [`REMEMBERED_DOCUMENTS`], each at most
//! [`REMEMBERED_QUERY_BYTES`]): the gateway sends the same few operations with different variables, and
//! parsing them again on every request was the product-service's largest cost.
//!
//! The cost of what remains is bounded by `GRAPHQL_MAX_COMPLEXITY`, which async-graphql checks during
//! validation (see `graphql::DATABASE_FIELD_COST`).
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use async_graphql::{
    Name, Positioned, Request, ServerError, ServerResult,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextPrepareRequest},
    parser::types::{ExecutableDocument, FragmentDefinition, Selection, SelectionSet},
};

/// Deep enough for the introspection query of GraphiQL and graphql-js (13 levels).
pub const INTROSPECTION_MAX_DEPTH: usize = 15;
/// Far above any real query of this schema (the full introspection query has about 300).
pub const MAX_SELECTIONS: usize = 2_000;

pub const TOO_DEEP: &str = "Query is nested too deep.";
pub const TOO_LARGE: &str = "Query is too large.";
pub const FRAGMENT_CYCLE: &str = "Query contains a fragment cycle.";

/// How many checked documents are kept. Filled once and never evicted: distinct queries beyond it are
/// simply parsed every time, so a client sending endless variations cannot grow the memory.
pub const REMEMBERED_DOCUMENTS: usize = 256;
/// Longer query texts are not remembered.
pub const REMEMBERED_QUERY_BYTES: usize = 4096;

/// The async-graphql extension that applies the limits; one shared instance serves every request.
pub struct QueryShapeLimit(Arc<ShapeCheck>);

impl QueryShapeLimit {
    pub fn new(max_depth: usize) -> Self {
        Self(Arc::new(ShapeCheck { max_depth, checked: Mutex::default() }))
    }
}

impl ExtensionFactory for QueryShapeLimit {
    fn create(&self) -> Arc<dyn Extension> {
        self.0.clone()
    }
}

struct ShapeCheck {
    max_depth: usize,
    /// Query text → its parsed document, for documents that passed the check.
    checked: Mutex<HashMap<String, ExecutableDocument>>,
}

impl ShapeCheck {
    fn remembered(&self, query: &str) -> Option<ExecutableDocument> {
        self.checked.lock().ok()?.get(query).cloned()
    }

    /// Whether a document for this query text would be kept (checked first, so that nothing is cloned
    /// for documents that will not be).
    fn would_remember(&self, query: &str) -> bool {
        query.len() <= REMEMBERED_QUERY_BYTES
            && self.checked.lock().is_ok_and(|checked| checked.len() < REMEMBERED_DOCUMENTS)
    }

    fn remember(&self, query: String, document: ExecutableDocument) {
        if let Ok(mut checked) = self.checked.lock()
            && checked.len() < REMEMBERED_DOCUMENTS
        {
            checked.insert(query, document);
        }
    }
}

#[async_trait::async_trait]
impl Extension for ShapeCheck {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        if let Some(document) = self.remembered(&request.query) {
            request.set_parsed_query(document);
        } else {
            let keep = self.would_remember(&request.query);
            // (A syntax error is left to async-graphql, which reports it as usual.)
            if let Ok(document) = request.parsed_query() {
                check_shape(document, self.max_depth).map_err(|message| ServerError::new(message, None))?;
                if keep {
                    let document = document.clone();
                    self.remember(request.query.clone(), document);
                }
            }
        }
        next.run(ctx, request).await
    }
}

/// Checks every operation of the document; the error is the message for the client.
pub fn check_shape(document: &ExecutableDocument, max_depth: usize) -> Result<(), &'static str> {
    let mut walk = Walk { fragments: &document.fragments, max_depth, selections: 0, fragment_path: Vec::new() };
    for (_, operation) in document.operations.iter() {
        walk.selection_set(&operation.node.selection_set.node, 0, false)?;
    }
    Ok(())
}

struct Walk<'a> {
    fragments: &'a HashMap<Name, Positioned<FragmentDefinition>>,
    max_depth: usize,
    selections: usize,
    /// Fragments being expanded right now, to detect cycles.
    fragment_path: Vec<&'a Name>,
}

impl<'a> Walk<'a> {
    fn selection_set(
        &mut self,
        set: &'a SelectionSet,
        depth: usize,
        in_introspection: bool,
    ) -> Result<(), &'static str> {
        for selection in &set.items {
            self.selections += 1;
            if self.selections > MAX_SELECTIONS {
                return Err(TOO_LARGE);
            }
            match &selection.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    let in_introspection =
                        in_introspection || matches!(field.name.node.as_str(), "__schema" | "__type");
                    let limit =
                        if in_introspection { self.max_depth.max(INTROSPECTION_MAX_DEPTH) } else { self.max_depth };
                    if depth + 1 > limit {
                        return Err(TOO_DEEP);
                    }
                    self.selection_set(&field.selection_set.node, depth + 1, in_introspection)?;
                }
                Selection::InlineFragment(fragment) => {
                    self.selection_set(&fragment.node.selection_set.node, depth, in_introspection)?;
                }
                Selection::FragmentSpread(spread) => {
                    let name = &spread.node.fragment_name.node;
                    if self.fragment_path.contains(&name) {
                        return Err(FRAGMENT_CYCLE);
                    }
                    // An unknown fragment is reported by validation.
                    if let Some(fragment) = self.fragments.get(name) {
                        self.fragment_path.push(name);
                        let result = self.selection_set(&fragment.node.selection_set.node, depth, in_introspection);
                        self.fragment_path.pop();
                        result?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(query: &str, max_depth: usize) -> Result<(), &'static str> {
        let document = async_graphql::parser::parse_query(query).expect("the test query parses");
        check_shape(&document, max_depth)
    }

    #[test]
    fn depth_counts_nested_fields_through_fragments() {
        let query = "query { a { b { c } } } fragment F on T { a { b } }";
        assert_eq!(check(query, 3), Ok(()));
        assert_eq!(check(query, 2), Err(TOO_DEEP));
        let via_fragment = "query { a { ...F } } fragment F on T { b { c } }";
        assert_eq!(check(via_fragment, 2), Err(TOO_DEEP));
        let via_inline = "query { a { ... on T { b { c } } } }";
        assert_eq!(check(via_inline, 2), Err(TOO_DEEP));
    }

    #[test]
    fn introspection_has_its_own_depth_allowance() {
        let nested = |levels: usize| {
            format!("{{ __schema {{ types {{ {}name{} }} }} }}", "ofType { ".repeat(levels), " }".repeat(levels))
        };
        assert_eq!(check(&nested(INTROSPECTION_MAX_DEPTH - 3), 2), Ok(()));
        assert_eq!(check(&nested(INTROSPECTION_MAX_DEPTH - 2), 2), Err(TOO_DEEP));
    }

    #[test]
    fn fragment_bombs_stop_at_the_selection_budget() {
        let mut query = String::from("query { ...F0 }");
        for level in 0..40 {
            let next = level + 1;
            query.push_str(&format!(" fragment F{level} on Q {{ ...F{next} ...F{next} }}"));
        }
        query.push_str(" fragment F40 on Q { a }");
        assert_eq!(check(&query, 10), Err(TOO_LARGE));
    }

    #[test]
    fn fragment_cycles_are_refused() {
        let query = "query { ...A } fragment A on Q { a ...B } fragment B on Q { b ...A }";
        assert_eq!(check(query, 10), Err(FRAGMENT_CYCLE));
        let reused_not_cyclic = "query { ...A ...A } fragment A on Q { a ...B ...B } fragment B on Q { b }";
        assert_eq!(check(reused_not_cyclic, 10), Ok(()));
    }
}

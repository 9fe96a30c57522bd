//! The GraphQL API at `/graphql`: schema, resolvers and the limits that guard them.
mod caller;
pub mod limits;
mod mutation;
mod product;
mod query;

use async_graphql::{EmptySubscription, Schema};

pub use caller::Caller;
pub use mutation::MutationRoot;
pub use query::QueryRoot;

use crate::{config::GraphqlLimits, state::AppState};

pub type ProductSchema = Schema<QueryRoot, MutationRoot, EmptySubscription>;

/// Complexity of a field that may reach the database; every other field costs 1. With the default limit of
/// 500 a request can touch the database about 45 times at most (e.g. through aliases), while a full page
/// with every field (10 + 6) stays far below it. List fields are not multiplied by their page size: pages are
/// capped at 100 and `Product` has only scalar fields, so a page's cost is bounded anyway.
pub const DATABASE_FIELD_COST: usize = 10;

/// Built once at startup: building it walks every type, far too slow to do per request.
pub fn build_schema(state: AppState, limits: &GraphqlLimits) -> ProductSchema {
    Schema::build(QueryRoot::new(state.clone()), MutationRoot::new(state), EmptySubscription)
        .limit_complexity(limits.max_complexity)
        .extension(limits::QueryShapeLimit::new(limits.max_depth))
        .finish()
}

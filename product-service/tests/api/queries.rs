use crate::support;

use serde_json::{Value, json};
use support::{error_code, ids};

const PAGE: &str = "query($first: Int, $after: String, $search: String) {
    products(first: $first, after: $after, search: $search) { id name }
}";

async fn page(app: &support::TestApp, variables: Value) -> Value {
    app.graphql(PAGE, variables).await
}

#[tokio::test]
async fn products_lists_the_catalogue_in_id_order() {
    let app = support::spawn(&[("PRODUCT_CACHE_TTL_MS", "0")]).await;
    app.add_product("Souris", 19.99, None).await;
    let body = app.graphql("{ products { id name price description } }", json!({})).await;
    assert_eq!(ids(&body["data"]["products"]), ["1", "2", "3", "4", "5"]);
    assert_eq!(
        body["data"]["products"][4],
        json!({ "id": "5", "name": "Souris", "price": 19.99, "description": null })
    );
}

#[tokio::test]
async fn product_returns_the_product_with_that_id() {
    let app = support::spawn(&[]).await;
    let body = app.graphql(r#"{ product(id: "3") { id name price description } }"#, json!({})).await;
    assert_eq!(
        body["data"]["product"],
        json!({ "id": "3", "name": "Tablette", "price": 499.99, "description": "Tablette puissante et légère" })
    );
}

#[tokio::test]
async fn product_with_an_unknown_or_malformed_id_is_null_without_error() {
    let app = support::spawn(&[]).await;
    for id in ["999", "0", "-1", "01", "abc", "", r#"{"$ne":null}"#, r#"{"$gt":""}"#] {
        let body = app.graphql("query($id: ID!) { product(id: $id) { id } }", json!({ "id": id })).await;
        assert_eq!(body, json!({ "data": { "product": null } }), "id {id:?}");
    }
}

#[tokio::test]
async fn an_operator_object_where_an_id_is_expected_is_a_validation_error() {
    let app = support::spawn(&[]).await;
    let body = app.graphql("query($id: ID!) { product(id: $id) { id } }", json!({ "id": { "$ne": null } })).await;
    assert!(body["errors"][0]["message"].is_string(), "{body}");
    assert_eq!(body["data"], Value::Null);
}

#[tokio::test]
async fn search_matches_names_and_descriptions_case_insensitively() {
    let app = support::spawn(&[]).await;
    let body = page(&app, json!({ "search": "ORDINATEUR" })).await;
    assert_eq!(ids(&body["data"]["products"]), ["2"]);
    // "légère" is only in the description of product 3; "é" must fold with the rest of the word.
    let body = page(&app, json!({ "search": "LÉGÈRE" })).await;
    assert_eq!(ids(&body["data"]["products"]), ["3"]);
    let body = page(&app, json!({ "search": "portable" })).await;
    assert_eq!(ids(&body["data"]["products"]), ["2"]);
    let body = page(&app, json!({ "search": "haut de gamme" })).await;
    assert_eq!(ids(&body["data"]["products"]), ["1"]);
    let body = page(&app, json!({ "search": "introuvable" })).await;
    assert_eq!(ids(&body["data"]["products"]), Vec::<String>::new());
    let body = page(&app, json!({ "search": "   " })).await;
    assert_eq!(ids(&body["data"]["products"]), ["1", "2", "3", "4"], "a blank search filters nothing");
}

#[tokio::test]
async fn search_treats_regex_metacharacters_and_operators_literally() {
    let app = support::spawn(&[("PRODUCT_CACHE_TTL_MS", "0")]).await;
    let literal = app.add_product("Câble (USB-C) 2.0 *rapide*", 9.99, Some("prix: $5 [promo] a|b ^x")).await;
    for search in [".*", "(", ")", "[", "a.c", "^", "$", "|", "\\", "{1,}", "?", "+"] {
        let body = page(&app, json!({ "search": search })).await;
        let found = ids(&body["data"]["products"]);
        assert!(
            found.is_empty() || found == [literal["id"].as_str().unwrap()],
            "search {search:?} must match literally, got {found:?}"
        );
    }
    for search in ["(USB-C)", "2.0 *rapide*", "$5 [promo]", "a|b", "^x"] {
        let body = page(&app, json!({ "search": search })).await;
        assert_eq!(ids(&body["data"]["products"]), [literal["id"].as_str().unwrap()], "search {search:?}");
    }
    for search in [".*", "a.c", r#"{"$regex": ".*"}"#, r#"{"$ne": null}"#, "' || '1'=='1"] {
        let body = page(&app, json!({ "search": search })).await;
        assert!(ids(&body["data"]["products"]).is_empty(), "search {search:?} matched something");
    }
}

#[tokio::test]
async fn search_longer_than_100_characters_is_bad_user_input() {
    let app = support::spawn(&[]).await;
    let body = page(&app, json!({ "search": "a".repeat(101) })).await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
    assert_eq!(body["errors"][0]["extensions"]["field"], "search");
    let body = page(&app, json!({ "search": "a".repeat(100) })).await;
    assert!(body["errors"].is_null(), "{body}");
}

#[tokio::test]
async fn first_and_after_walk_the_catalogue_page_by_page() {
    let app = support::spawn(&[]).await;
    let body = page(&app, json!({ "first": 2 })).await;
    assert_eq!(ids(&body["data"]["products"]), ["1", "2"]);
    let body = page(&app, json!({ "first": 2, "after": "2" })).await;
    assert_eq!(ids(&body["data"]["products"]), ["3", "4"]);
    let body = page(&app, json!({ "first": 2, "after": "4" })).await;
    assert_eq!(ids(&body["data"]["products"]), Vec::<String>::new());
    let body = page(&app, json!({ "first": 1, "after": "1", "search": "o" })).await;
    assert_eq!(ids(&body["data"]["products"]), ["2"], "after and search combine");
}

#[tokio::test]
async fn paging_continues_after_a_deleted_cursor() {
    let app = support::spawn(&[("PRODUCT_CACHE_TTL_MS", "0")]).await;
    app.graphql_as_admin(r#"mutation { deleteProduct(id: "2") { id } }"#, json!({})).await;
    let body = page(&app, json!({ "first": 5, "after": "2" })).await;
    assert_eq!(ids(&body["data"]["products"]), ["3", "4"]);
}

#[tokio::test]
async fn first_outside_1_to_100_is_bad_user_input() {
    let app = support::spawn(&[]).await;
    for first in [0, -5, 101] {
        let body = page(&app, json!({ "first": first })).await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "first {first}");
        assert_eq!(body["errors"][0]["extensions"]["field"], "first");
    }
    let body = page(&app, json!({ "first": 100 })).await;
    assert_eq!(ids(&body["data"]["products"]).len(), 4);
}

#[tokio::test]
async fn after_that_is_not_a_product_id_is_bad_user_input() {
    let app = support::spawn(&[]).await;
    for after in ["abc", "0", "-1", "1.5", r#"{"$gt":0}"#] {
        let body = page(&app, json!({ "after": after })).await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "after {after:?}");
        assert_eq!(body["errors"][0]["extensions"]["field"], "after");
    }
}

#[tokio::test]
async fn the_schema_matches_the_published_contract() {
    let app = support::spawn(&[]).await;
    let body = app
        .graphql(
            r#"{ query: __type(name: "Query") { fields { name args { name defaultValue type { name kind } } } }
                 product: __type(name: "Product") { fields { name type { kind ofType { name } } } } }"#,
            json!({}),
        )
        .await;
    let products = body["data"]["query"]["fields"]
        .as_array()
        .unwrap_or_else(|| panic!("no Query type: {body}"))
        .iter()
        .find(|field| field["name"] == "products")
        .expect("a products field")
        .clone();
    assert_eq!(
        products["args"][0],
        json!({ "name": "first", "defaultValue": "50", "type": { "name": "Int", "kind": "SCALAR" } })
    );
    let fields: Vec<(String, Value)> = body["data"]["product"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|field| (field["name"].as_str().unwrap().to_owned(), field["type"].clone()))
        .collect();
    let non_null = |name: &str| json!({ "kind": "NON_NULL", "ofType": { "name": name } });
    assert_eq!(
        fields,
        [
            ("id".to_owned(), non_null("ID")),
            ("name".to_owned(), non_null("String")),
            ("price".to_owned(), non_null("Float")),
            ("description".to_owned(), json!({ "kind": "SCALAR", "ofType": null })),
            ("createdAt".to_owned(), non_null("String")),
            ("updatedAt".to_owned(), non_null("String")),
        ]
    );
}

#[tokio::test]
async fn a_remembered_query_text_answers_each_request_with_its_own_variables() {
    // The second and later requests reuse the parsed document: the answers must still follow the variables.
    let app = support::spawn(&[("PRODUCT_CACHE_TTL_MS", "0")]).await;
    let query = "query Product($id: ID!) { product(id: $id) { id name } }";
    for (id, name) in [("1", "Smartphone"), ("3", "Tablette"), ("1", "Smartphone"), ("2", "Ordinateur portable")] {
        let body = app.graphql(query, json!({ "id": id })).await;
        assert_eq!(body["data"]["product"]["id"], id, "{body}");
        assert_eq!(body["data"]["product"]["name"], name, "{body}");
    }
    let body = app.graphql(query, json!({ "id": "999" })).await;
    assert!(body["data"]["product"].is_null(), "{body}");
}

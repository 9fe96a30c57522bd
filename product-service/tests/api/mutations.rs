use crate::support;

use serde_json::{Value, json};
use support::error_code;

const ADD: &str = "mutation($name: String!, $price: Float!, $description: String) {
    addProduct(name: $name, price: $price, description: $description) { id name price description createdAt updatedAt }
}";
const UPDATE: &str = "mutation($id: ID!, $name: String, $price: Float, $description: String) {
    updateProduct(id: $id, name: $name, price: $price, description: $description) {
        id name price description createdAt updatedAt
    }
}";
const DELETE: &str = "mutation($id: ID!) { deleteProduct(id: $id) { id name price } }";
const GET: &str = "query($id: ID!) { product(id: $id) { id name price description createdAt updatedAt } }";

async fn get(app: &support::TestApp, id: &str) -> Value {
    app.graphql(GET, json!({ "id": id })).await["data"]["product"].clone()
}

#[tokio::test]
async fn add_product_creates_a_product_with_a_fresh_id_and_a_two_decimal_price() {
    let app = support::spawn(&[("PRODUCT_CACHE_TTL_MS", "0")]).await;
    let body =
        app.graphql_as_admin(ADD, json!({ "name": "  Clavier  ", "price": 49.9, "description": "Mécanique" })).await;
    let added = &body["data"]["addProduct"];
    assert_eq!(added["id"], "5");
    assert_eq!(added["name"], "Clavier", "the name is trimmed");
    assert_eq!(added["price"], json!(49.9));
    assert_eq!(added["description"], "Mécanique");
    assert_eq!(added["createdAt"], added["updatedAt"]);
    assert_eq!(get(&app, "5").await, *added, "what addProduct returns is what is stored");
}

#[tokio::test]
async fn add_product_accepts_the_price_bounds() {
    let app = support::spawn(&[]).await;
    assert_eq!(app.add_product("Gomme", 0.01, None).await["price"], json!(0.01));
    assert_eq!(app.add_product("Yacht", 1_000_000.0, None).await["price"], json!(1_000_000.0));
}

#[tokio::test]
async fn add_product_rejects_each_invalid_field_with_bad_user_input() {
    let app = support::spawn(&[("PRODUCT_CACHE_TTL_MS", "0")]).await;
    let long_name = "n".repeat(201);
    let long_description = "d".repeat(2_001);
    let cases = [
        (json!({ "name": "Gratuit", "price": 0 }), "price"),
        (json!({ "name": "Négatif", "price": -1 }), "price"),
        (json!({ "name": "Trop cher", "price": 1_000_000.01 }), "price"),
        (json!({ "name": "Trois décimales", "price": 899.999 }), "price"),
        (json!({ "name": "", "price": 1 }), "name"),
        (json!({ "name": "   ", "price": 1 }), "name"),
        (json!({ "name": long_name, "price": 1 }), "name"),
        (json!({ "name": "Deux\nlignes", "price": 1 }), "name"),
        (json!({ "name": "Bavard", "price": 1, "description": long_description }), "description"),
    ];
    for (variables, field) in cases {
        let body = app.graphql_as_admin(ADD, variables.clone()).await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{variables}");
        assert_eq!(body["errors"][0]["extensions"]["field"], field, "{variables}");
        assert_eq!(body["data"], Value::Null);
    }
    assert_eq!(app.product_ids().await, ["1", "2", "3", "4"], "nothing was written");
}

#[tokio::test]
async fn add_product_with_a_price_that_is_not_a_number_is_a_validation_error() {
    let app = support::spawn(&[]).await;
    let body = app.graphql_as_admin(ADD, json!({ "name": "Texte", "price": "12.50" })).await;
    assert!(body["errors"][0]["message"].is_string(), "{body}");
    assert_eq!(body["data"], Value::Null);
}

#[tokio::test]
async fn update_product_changes_only_the_given_fields() {
    let app = support::spawn(&[("PRODUCT_CACHE_TTL_MS", "0")]).await;
    let before = get(&app, "1").await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let body = app.graphql_as_admin(UPDATE, json!({ "id": "1", "price": 799.5 })).await;
    let updated = &body["data"]["updateProduct"];
    assert_eq!(updated["price"], json!(799.5));
    assert_eq!(updated["name"], before["name"]);
    assert_eq!(updated["description"], before["description"]);
    assert_eq!(updated["createdAt"], before["createdAt"]);
    assert_ne!(updated["updatedAt"], before["updatedAt"]);
    assert_eq!(get(&app, "1").await, *updated);

    let body = app.graphql_as_admin(UPDATE, json!({ "id": "1", "name": "Téléphone" })).await;
    assert_eq!(body["data"]["updateProduct"]["name"], "Téléphone");
    assert_eq!(body["data"]["updateProduct"]["price"], json!(799.5), "the earlier price change stays");
}

#[tokio::test]
async fn update_product_replaces_clears_or_keeps_the_description() {
    let app = support::spawn(&[("PRODUCT_CACHE_TTL_MS", "0")]).await;
    let body = app.graphql_as_admin(UPDATE, json!({ "id": "2", "description": "Nouveau texte" })).await;
    assert_eq!(body["data"]["updateProduct"]["description"], "Nouveau texte");
    let body = app.graphql_as_admin(UPDATE, json!({ "id": "2", "name": "Portable", "description": null })).await;
    assert_eq!(body["data"]["updateProduct"]["description"], "Nouveau texte", "null leaves it unchanged");
    let body = app.graphql_as_admin(UPDATE, json!({ "id": "3", "description": "" })).await;
    assert_eq!(body["data"]["updateProduct"]["description"], Value::Null, "an empty string clears it");
    assert_eq!(get(&app, "3").await["description"], Value::Null);
    assert_eq!(get(&app, "3").await["name"], "Tablette");
}

#[tokio::test]
async fn update_product_without_any_field_is_bad_user_input() {
    let app = support::spawn(&[]).await;
    let body = app.graphql_as_admin(r#"mutation { updateProduct(id: "1") { id } }"#, json!({})).await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
    // Variables that are declared but not sent are "not given" too.
    let body = app.graphql_as_admin(UPDATE, json!({ "id": "1" })).await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
}

#[tokio::test]
async fn update_product_rejects_each_invalid_field_with_bad_user_input() {
    let app = support::spawn(&[("PRODUCT_CACHE_TTL_MS", "0")]).await;
    let cases = [
        (json!({ "id": "1", "price": 0 }), "price"),
        (json!({ "id": "1", "price": 12.345 }), "price"),
        (json!({ "id": "1", "price": 2_000_000 }), "price"),
        (json!({ "id": "1", "name": " " }), "name"),
        (json!({ "id": "1", "name": "x".repeat(201) }), "name"),
        (json!({ "id": "1", "description": "d".repeat(2_001) }), "description"),
    ];
    for (variables, field) in cases {
        let body = app.graphql_as_admin(UPDATE, variables.clone()).await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{variables}");
        assert_eq!(body["errors"][0]["extensions"]["field"], field, "{variables}");
    }
    assert_eq!(get(&app, "1").await["price"], json!(899.99), "nothing was written");
}

#[tokio::test]
async fn update_and_delete_of_an_unknown_or_malformed_id_are_not_found() {
    let app = support::spawn(&[]).await;
    for id in ["999", "abc", "0", r#"{"$ne":null}"#, r#"{"$gt":""}"#] {
        let body = app.graphql_as_admin(UPDATE, json!({ "id": id, "price": 10 })).await;
        assert_eq!(error_code(&body), "NOT_FOUND", "update {id:?}");
        let body = app.graphql_as_admin(DELETE, json!({ "id": id })).await;
        assert_eq!(error_code(&body), "NOT_FOUND", "delete {id:?}");
    }
    assert_eq!(app.product_ids().await, ["1", "2", "3", "4"]);
}

#[tokio::test]
async fn delete_product_returns_the_product_and_removes_it() {
    let app = support::spawn(&[("PRODUCT_CACHE_TTL_MS", "0")]).await;
    let body = app.graphql_as_admin(DELETE, json!({ "id": "4" })).await;
    assert_eq!(body["data"]["deleteProduct"], json!({ "id": "4", "name": "Écouteurs sans fil", "price": 149.99 }));
    assert_eq!(get(&app, "4").await, Value::Null);
    assert_eq!(app.product_ids().await, ["1", "2", "3"]);
    let body = app.graphql_as_admin(DELETE, json!({ "id": "4" })).await;
    assert_eq!(error_code(&body), "NOT_FOUND", "a second delete finds nothing");
}

#[tokio::test]
async fn ids_are_never_reused_after_a_delete() {
    let app = support::spawn(&[("PRODUCT_CACHE_TTL_MS", "0")]).await;
    let first = app.add_product("Premier", 1.0, None).await;
    assert_eq!(first["id"], "5");
    app.graphql_as_admin(DELETE, json!({ "id": "5" })).await;
    app.graphql_as_admin(DELETE, json!({ "id": "4" })).await;
    let second = app.add_product("Second", 2.0, None).await;
    assert_eq!(second["id"], "6");
    assert_eq!(app.product_ids().await, ["1", "2", "3", "6"]);
}

#[tokio::test]
async fn concurrent_adds_get_distinct_ids() {
    let app = support::spawn(&[("PRODUCT_CACHE_TTL_MS", "0")]).await;
    let adds = (0..8).map(|n| {
        let app = &app;
        async move { app.add_product(&format!("Produit {n}"), 10.0, None).await["id"].as_str().unwrap().to_owned() }
    });
    let mut added = futures::future::join_all(adds).await;
    added.sort_by_key(|id| id.parse::<u32>().unwrap());
    assert_eq!(added, ["5", "6", "7", "8", "9", "10", "11", "12"]);
}

#[tokio::test]
async fn a_mutation_empties_the_read_cache_at_once() {
    // A TTL far longer than the test: only invalidation can make the new values visible.
    let app = support::spawn(&[("PRODUCT_CACHE_TTL_MS", "600000")]).await;
    assert_eq!(get(&app, "1").await["price"], json!(899.99));
    assert_eq!(app.product_ids().await, ["1", "2", "3", "4"]);
    assert_eq!(get(&app, "77").await, Value::Null);

    app.graphql_as_admin(UPDATE, json!({ "id": "1", "price": 1.5 })).await;
    assert_eq!(get(&app, "1").await["price"], json!(1.5));
    app.add_product("Nouveau", 3.0, None).await;
    assert_eq!(app.product_ids().await, ["1", "2", "3", "4", "5"]);
    app.graphql_as_admin(DELETE, json!({ "id": "2" })).await;
    assert_eq!(get(&app, "2").await, Value::Null);
    assert_eq!(app.product_ids().await, ["1", "3", "4", "5"]);
}

#[tokio::test]
async fn reads_are_served_from_the_cache_until_the_ttl_expires() {
    // Two replicas on one database: a write through one is seen by the other only once its cache expires.
    let database = support::unique_database();
    let writer = support::spawn(&[("MONGODB_DATABASE", database.as_str()), ("PRODUCT_CACHE_TTL_MS", "0")]).await;
    let reader = support::spawn(&[("MONGODB_DATABASE", database.as_str()), ("PRODUCT_CACHE_TTL_MS", "3000")]).await;
    assert_eq!(get(&reader, "1").await["price"], json!(899.99));
    writer.graphql_as_admin(UPDATE, json!({ "id": "1", "price": 5.0 })).await;
    assert_eq!(get(&reader, "1").await["price"], json!(899.99), "still cached");
    tokio::time::sleep(std::time::Duration::from_millis(3_100)).await;
    assert_eq!(get(&reader, "1").await["price"], json!(5.0), "expired and reloaded");
}

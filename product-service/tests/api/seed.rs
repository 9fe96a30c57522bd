use crate::support;

use serde_json::{Value, json};

const ALL_FIELDS: &str = "{ products { id name price description createdAt updatedAt } }";

#[tokio::test]
async fn a_fresh_database_is_seeded_with_the_four_original_products() {
    let app = support::spawn(&[]).await;
    let body = app.graphql(ALL_FIELDS, json!({})).await;
    let products = body["data"]["products"].as_array().expect("a list").clone();
    let summary: Vec<(Value, Value, Value, Value)> = products
        .iter()
        .map(|p| (p["id"].clone(), p["name"].clone(), p["price"].clone(), p["description"].clone()))
        .collect();
    assert_eq!(
        summary,
        [
            (json!("1"), json!("Smartphone"), json!(899.99), json!("Dernier modèle de smartphone haut de gamme")),
            (
                json!("2"),
                json!("Ordinateur portable"),
                json!(1299.99),
                json!("Ordinateur portable pour professionnels")
            ),
            (json!("3"), json!("Tablette"), json!(499.99), json!("Tablette puissante et légère")),
            (json!("4"), json!("Écouteurs sans fil"), json!(149.99), json!("Écouteurs avec réduction de bruit active")),
        ]
    );
    for product in &products {
        let created = product["createdAt"].as_str().expect("createdAt");
        assert!(created.ends_with('Z') && created.contains('T'), "not RFC 3339: {created}");
        assert_eq!(product["updatedAt"], product["createdAt"]);
    }
}

#[tokio::test]
async fn two_apps_starting_together_on_one_database_seed_it_once() {
    let database = support::unique_database();
    let settings = [("MONGODB_DATABASE", database.as_str()), ("PRODUCT_CACHE_TTL_MS", "0")];
    let (first, second) = tokio::join!(support::spawn(&settings), support::spawn(&settings));
    assert_eq!(first.product_ids().await, ["1", "2", "3", "4"]);
    assert_eq!(second.product_ids().await, ["1", "2", "3", "4"]);
    // And a product added afterwards does not collide with a seed on either replica.
    let added = second.add_product("Lampe", 25.0, None).await;
    assert_eq!(added["id"], "5");
    assert_eq!(first.product_ids().await, ["1", "2", "3", "4", "5"]);
}

#[tokio::test]
async fn products_survive_a_restart_and_deleted_seeds_stay_deleted() {
    let database = support::unique_database();
    let settings = [("MONGODB_DATABASE", database.as_str())];
    let app = support::spawn(&settings).await;
    let added = app.add_product("Casque", 79.5, Some("Casque audio")).await;
    assert_eq!(added["id"], "5");
    let deleted = app.graphql_as_admin(r#"mutation { deleteProduct(id: "1") { id } }"#, json!({})).await;
    assert_eq!(deleted["data"]["deleteProduct"]["id"], "1");
    app.stop().await;

    let restarted = support::spawn(&settings).await;
    assert_eq!(restarted.product_ids().await, ["2", "3", "4", "5"], "seed 1 must not come back");
    let body = restarted.graphql(r#"{ product(id: "5") { name price description } }"#, json!({})).await;
    assert_eq!(body["data"]["product"], json!({ "name": "Casque", "price": 79.5, "description": "Casque audio" }));
    let next = restarted.add_product("Enceinte", 59.99, None).await;
    assert_eq!(next["id"], "6", "the id counter survives the restart");
}

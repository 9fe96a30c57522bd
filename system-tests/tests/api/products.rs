//! /products and /graphql through the gateway.
use serde_json::{Value, json};
use system_tests::Stack;

#[tokio::test]
async fn lists_and_reads_the_seeded_catalogue() {
    let stack = Stack::start().await;
    let list = stack.get("/products", None).await;
    assert_eq!(list.status(), 200);
    let list: Value = list.json().await.unwrap();
    let names: Vec<&str> = list["products"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Smartphone", "Ordinateur portable", "Tablette", "Écouteurs sans fil"]);

    let one: Value = stack.get("/products/4", None).await.json().await.unwrap();
    assert_eq!(one["product"]["price"], 149.99);
    assert_eq!(one["product"]["description"], "Écouteurs avec réduction de bruit active");

    let page: Value = stack.get("/products?first=2&after=2", None).await.json().await.unwrap();
    let ids: Vec<&str> = page["products"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["3", "4"]);
    let found: Value = stack.get("/products?search=tablet", None).await.json().await.unwrap();
    assert_eq!(found["products"].as_array().unwrap().len(), 1);
    assert_eq!(stack.get("/products?first=many", None).await.status(), 400);
    assert_eq!(stack.get("/products?first=0", None).await.status(), 400);
    assert_eq!(stack.get("/products?colour=red", None).await.status(), 400);
}

#[tokio::test]
async fn an_unknown_product_is_a_json_404() {
    let stack = Stack::start().await;
    let response = stack.get("/products/999", None).await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["success"], false);
}

#[tokio::test]
async fn injection_attempts_through_the_path_are_plain_unknown_ids() {
    let stack = Stack::start().await;
    for id in ["1\")%7Bid%7D%7D%23", "%7B%22$ne%22:null%7D", "1%20OR%201=1", "..%2F..%2Fetc", "%00"] {
        let response = stack.get(&format!("/products/{id}"), None).await;
        assert_eq!(response.status(), 404, "{id}");
    }
}

#[tokio::test]
async fn admins_create_update_and_delete_products() {
    let stack = Stack::start().await;
    let (_, admin) = stack.admin().await;
    let created = stack
        .post("/products", Some(&admin), &json!({"name": "Montre", "price": 199.5, "description": "Connectée"}))
        .await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let id = created["product"]["id"].as_str().unwrap().to_owned();
    assert_eq!(created["product"]["price"], 199.5);

    let updated = stack
        .client
        .patch(stack.url(&format!("/products/{id}")))
        .bearer_auth(&admin)
        .json(&json!({"price": 149.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(updated.status(), 200);
    let updated: Value = updated.json().await.unwrap();
    assert_eq!(updated["product"]["price"], 149.0);
    assert_eq!(updated["product"]["name"], "Montre", "fields not sent are unchanged");

    let deleted = stack.client.delete(stack.url(&format!("/products/{id}"))).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(deleted.status(), 200);
    assert_eq!(stack.get(&format!("/products/{id}"), None).await.status(), 404);
    let again = stack.client.delete(stack.url(&format!("/products/{id}"))).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(again.status(), 404);
}

#[tokio::test]
async fn product_writes_need_an_admin_and_valid_input() {
    let stack = Stack::start().await;
    let body = json!({"name": "Montre", "price": 199.5});
    assert_eq!(stack.post("/products", None, &body).await.status(), 401);
    let (_, customer) = stack.customer().await;
    assert_eq!(stack.post("/products", Some(&customer), &body).await.status(), 403);
    let (_, admin) = stack.admin().await;
    for bad in [
        json!({"name": "", "price": 1.0}),
        json!({"name": "x", "price": -1.0}),
        json!({"name": "x", "price": 1.001}),
        json!({"name": "x", "price": 2_000_000.0}),
        json!({"name": "x", "price": "1"}),
        json!({"name": "x", "price": 1.0, "stock": 3}),
    ] {
        assert_eq!(stack.post("/products", Some(&admin), &bad).await.status(), 400, "{bad}");
    }
    let missing = stack
        .client
        .patch(stack.url("/products/999"))
        .bearer_auth(&admin)
        .json(&json!({"price": 1.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn graphql_is_forwarded_with_the_callers_authorization() {
    let stack = Stack::start().await;
    let query = json!({"query": "{ product(id: \"1\") { name price } }"});
    let read: Value = stack.post("/graphql", None, &query).await.json().await.unwrap();
    assert_eq!(read["data"]["product"]["name"], "Smartphone");

    let mutation = json!({"query": "mutation { addProduct(name: \"Câble\", price: 9.99) { id } }"});
    let anonymous: Value = stack.post("/graphql", None, &mutation).await.json().await.unwrap();
    assert_eq!(anonymous["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    let (_, admin) = stack.admin().await;
    let added: Value = stack.post("/graphql", Some(&admin), &mutation).await.json().await.unwrap();
    assert!(added["data"]["addProduct"]["id"].is_string(), "{added}");
}

#[tokio::test]
async fn graphiql_is_served_through_the_gateway_and_posts_back_to_it() {
    let stack = Stack::start().await;
    let page = stack.client.get(stack.url("/graphql")).header("accept", "text/html").send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(html.contains("graphiql"), "{html}");
    // A relative endpoint: the page's queries go to the gateway it was loaded from.
    assert!(html.contains("\"/graphql\"") || html.contains("'/graphql'"), "{html}");
    stack.stop().await;
}

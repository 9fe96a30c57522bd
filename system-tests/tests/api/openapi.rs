//! GET /openapi.json and GET /docs: the OpenAPI document matches the routes the gateway serves, and
//! Swagger UI comes from the gateway itself (the browser test, swagger_ui.rs, clicks through it).
use std::collections::BTreeSet;

use serde_json::Value;
use system_tests::Stack;

/// Every route of the gateway's router (api-gateway/src/routes/mod.rs), as (method, OpenAPI path).
const ROUTES: &[(&str, &str)] = &[
    ("get", "/health"),
    ("get", "/ready"),
    ("post", "/users/register"),
    ("post", "/users/login"),
    ("get", "/users/me"),
    ("get", "/products"),
    ("post", "/products"),
    ("get", "/products/{id}"),
    ("patch", "/products/{id}"),
    ("delete", "/products/{id}"),
    ("get", "/graphql"),
    ("post", "/graphql"),
    ("get", "/orders"),
    ("post", "/orders"),
    ("get", "/orders/{id}"),
    ("post", "/payments"),
];

/// The routes anyone may call without a token.
const PUBLIC: &[(&str, &str)] = &[
    ("get", "/health"),
    ("get", "/ready"),
    ("post", "/users/register"),
    ("post", "/users/login"),
    ("get", "/products"),
    ("get", "/products/{id}"),
    ("get", "/graphql"),
    ("post", "/graphql"),
];

async fn document(stack: &Stack) -> Value {
    let response = stack.get("/openapi.json", None).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap_or_default().starts_with("application/json"));
    response.json().await.expect("a JSON document")
}

fn operations(document: &Value) -> Vec<(String, String, &Value)> {
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            operations.push((method.clone(), path.clone(), operation));
        }
    }
    operations
}

#[tokio::test]
async fn openapi_json_is_openapi_3_1_and_documents_every_route() {
    let stack = Stack::start().await;
    let document = document(&stack).await;
    assert!(document["openapi"].as_str().is_some_and(|version| version.starts_with("3.1")), "{}", document["openapi"]);

    let documented: BTreeSet<(String, String)> =
        operations(&document).into_iter().map(|(method, path, _)| (method, path)).collect();
    let routed: BTreeSet<(String, String)> =
        ROUTES.iter().map(|(method, path)| ((*method).to_owned(), (*path).to_owned())).collect();
    assert_eq!(documented, routed);

    let scheme = &document["components"]["securitySchemes"]["bearer"];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    for (method, path, operation) in operations(&document) {
        let name = format!("{} {path}", method.to_uppercase());
        assert!(operation["operationId"].is_string(), "{name} has an operationId");
        let secured =
            operation["security"].as_array().is_some_and(|schemes| schemes.iter().any(|s| s.get("bearer").is_some()));
        let public = PUBLIC.iter().any(|(m, p)| *m == method && *p == path);
        assert_eq!(secured, !public, "{name}: bearer auth is documented exactly where a token is needed");

        let responses = operation["responses"].as_object().expect("responses");
        assert!(responses.keys().any(|status| status.starts_with('2')), "{name} documents its success");
        for (status, response) in responses {
            assert!(response["description"].as_str().is_some_and(|text| !text.is_empty()), "{name} {status}");
            assert!(response["content"].is_object(), "{name} {status} documents its body");
        }
        let plain = matches!((method.as_str(), path.as_str()), ("get", "/health" | "/ready" | "/graphql"));
        if !plain {
            assert!(responses.keys().any(|status| status.starts_with('4')), "{name} documents its client errors");
        }
        if secured {
            assert!(responses.contains_key("401"), "{name} documents 401");
        }
        if path != "/health" {
            assert!(responses.contains_key("503"), "{name} documents 503 (a service behind it is down)");
        }
        if let Some(body) = operation.get("requestBody") {
            assert!(body["content"]["application/json"]["schema"].is_object(), "{name} documents its JSON body");
        }
    }
    // The error body every route shares.
    let error = &document["components"]["schemas"]["ErrorBody"]["properties"];
    assert!(error["success"].is_object() && error["message"].is_object() && error["errors"].is_object());
    stack.stop().await;
}

/// The other direction of the check above: each documented operation is served (none falls through
/// to the router's "No route" 404 or 405).
#[tokio::test]
async fn every_documented_operation_is_served() {
    let stack = Stack::start().await;
    let document = document(&stack).await;
    for (method, path, _) in operations(&document) {
        let url = stack.url(&path.replace("{id}", "1"));
        let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("a method");
        let response = stack.client.request(method.clone(), &url).send().await.expect("request sent");
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert_ne!(status, 405, "{method} {path}: {body}");
        assert!(!body.contains("No route for"), "{method} {path} is documented but not routed: {body}");
    }
    stack.stop().await;
}

/// The document is valid OpenAPI, as an independent validator (openapi-spec-validator, installed
/// in .venv by scripts/bootstrap.sh) reads it.
#[tokio::test]
async fn openapi_json_passes_an_openapi_validator() {
    let stack = Stack::start().await;
    let text = stack.get("/openapi.json", None).await.text().await.expect("a body");
    let file = std::env::temp_dir().join(format!("openapi-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&file, text).expect("write the document");
    let validator = concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/openapi-spec-validator");
    let output = std::process::Command::new(validator)
        .arg(&file)
        .output()
        .unwrap_or_else(|error| panic!("{validator}: {error} (run scripts/bootstrap.sh)"));
    let _ = std::fs::remove_file(&file);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("OK"), "{stdout}");
    stack.stop().await;
}

#[tokio::test]
async fn docs_serves_swagger_ui_and_its_assets_from_the_gateway() {
    let stack = Stack::start().await;
    let page = stack.get("/docs/", None).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("a page");
    assert!(html.contains("swagger-ui"), "{html}");
    // Offline: nothing is loaded from another host.
    assert!(!html.contains("http://") && !html.contains("https://"), "{html}");
    for asset in ["swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-initializer.js"]
    {
        let response = stack.get(&format!("/docs/{asset}"), None).await;
        assert_eq!(response.status(), 200, "{asset}");
        assert!(response.bytes().await.expect("the asset").len() > 100, "{asset}");
    }
    let initializer = stack.get("/docs/swagger-initializer.js", None).await.text().await.expect("the initializer");
    assert!(initializer.contains("\"/openapi.json\""), "{initializer}");
    // /docs without the slash leads there.
    let redirect = platform::tls::http_client(&Default::default())
        .expect("rustls with the web roots")
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client")
        .get(stack.url("/docs"))
        .send()
        .await
        .expect("request sent");
    assert!(redirect.status().is_redirection());
    assert_eq!(redirect.headers()["location"], "/docs/");
    stack.stop().await;
}

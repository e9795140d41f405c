//! `GET /docs`: the API reference as pages, from the same document as `/openapi.json`.

use reqwest::StatusCode;

use crate::helpers::{json, new_client, Backend, TestApp};
use crate::on_both_databases;

on_both_databases!(the_reference_shows_every_operation_within_the_page_budget);

/// Checks a reference page's headers and weight (with its stylesheet) as the web UI's
/// pages are checked; returns its HTML.
async fn page(client: &reqwest::Client, app: &TestApp, path: &str) -> String {
    let res = client.get(app.url(path)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{path}");
    let headers = res.headers().clone();
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert_eq!(headers["cache-control"], "public, max-age=3600", "{path}");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(csp.contains("style-src 'self'"), "{csp}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let html = res.text().await.unwrap();
    for reference in [
        "src=\"http",
        "href=\"http",
        "src=\"//",
        "href=\"//",
        "<script",
        " style=",
    ] {
        assert!(!html.contains(reference), "{reference} on {path}");
    }
    let assets: Vec<String> = html
        .split("\"/ui/static/")
        .skip(1)
        .map(|rest| format!("/ui/static/{}", rest.split('"').next().unwrap()))
        .collect();
    assert_eq!(assets.len(), 1, "the stylesheet alone, no script: {path}");
    let css = client.get(app.url(&assets[0])).send().await.unwrap();
    assert_eq!(css.status(), StatusCode::OK);
    let total = html.len() + css.bytes().await.unwrap().len();
    assert!(total < 60 * 1024, "{path} weighs {total} bytes");
    html
}

async fn the_reference_shows_every_operation_within_the_page_budget(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let client = new_client();
    let doc = json(client.get(app.url("/openapi.json")).send().await.unwrap()).await;
    assert!(doc["info"]["description"]
        .as_str()
        .unwrap()
        .contains("`GET /docs`"));

    let index = page(&client, &app, "/docs").await;
    assert!(index.contains("href=\"/openapi.json\""));
    assert!(index.contains("id=\"schema-ErrorBody\""), "the error model");
    let mut seen = 0;
    let mut pages = std::collections::HashMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap();
            let tag = op["tags"][0].as_str().unwrap_or("other");
            let statuses: Vec<&String> = op["responses"].as_object().unwrap().keys().collect();

            // The table of contents: its link, its path, its statuses.
            let row = index
                .split("<tr>")
                .find(|row| row.contains(&format!("#{id}\"")))
                .unwrap_or_else(|| panic!("{method} {path} is not on /docs"));
            // Its tag's page, or one of them when the tag has much to say.
            let href = row
                .split("href=\"")
                .nth(1)
                .unwrap()
                .split('#')
                .next()
                .unwrap();
            assert!(href == format!("/docs/{tag}") || href.starts_with(&format!("/docs/{tag}-")));
            assert!(row.contains(&format!("<code>{path}</code>")), "{row}");
            assert!(row.contains(&method.to_uppercase()), "{row}");
            for status in &statuses {
                assert!(row.contains(status.as_str()), "{status} of {method} {path}");
            }

            // Its tag's page: the operation with every status it may answer.
            if !pages.contains_key(href) {
                pages.insert(href.to_owned(), page(&client, &app, href).await);
            }
            let tag_page = &pages[href];
            let start = tag_page
                .find(&format!("<h2 id=\"{id}\">"))
                .unwrap_or_else(|| panic!("{method} {path} is not on {href}"));
            let section = &tag_page[start..start + tag_page[start..].find("</section>").unwrap()];
            assert!(section.contains(&format!("<code>{path}</code>")));
            for status in &statuses {
                assert!(
                    section.contains(&format!(">{status}</")),
                    "{status} of {method} {path} on {href}"
                );
            }
            if op.get("requestBody").is_some() {
                assert!(section.contains("Request body"), "{method} {path}");
                assert!(section.contains("Example"), "{method} {path}: example");
            }
            for param in op["parameters"].as_array().into_iter().flatten() {
                let name = param["name"].as_str().unwrap();
                assert!(section.contains(&format!("<code>{name}</code>")), "{name}");
            }
            seen += 1;
        }
    }
    assert!(seen > 50, "{seen} operations");

    let res = client
        .get(app.url("/docs/no-such-tag"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert!(res.text().await.unwrap().contains("<html"));
    // A page, in the route table as public, and so not an operation of the document.
    assert!(gatehouse::app::routes()
        .specs()
        .iter()
        .any(|s| s.path == "/docs" && s.policy == gatehouse::auth::policy::Policy::Public));
    assert!(doc["paths"].get("/docs").is_none());
}

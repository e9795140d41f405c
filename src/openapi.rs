//! `GET /openapi.json`: an OpenAPI 3.1 description generated from the route table, so
//! that it lists every route the server actually serves with the policy guarding it.
//! Request and answer bodies are described in `docs/api.md`.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::http::Method;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use crate::auth::policy::{Policy, Refusal, RouteSpec};

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
    })
}

fn operation(spec: &RouteSpec) -> Value {
    let mut responses = Map::new();
    responses.insert("200".into(), json!({ "description": "Success" }));
    responses.insert(
        "400".into(),
        error_response("Invalid input; the message names the field"),
    );
    let unsafe_method = !matches!(spec.method, Method::GET | Method::HEAD | Method::OPTIONS);
    // A session riding an unsafe method must echo its CSRF token in a header.
    let session = if unsafe_method && spec.csrf_header {
        responses.insert(
            "403".into(),
            error_response("CSRF token missing or wrong, or lacks the permission"),
        );
        json!([{ "session": [], "csrf": [] }])
    } else {
        json!([{ "session": [] }])
    };
    let (security, policy) = match spec.policy {
        Policy::Public => (json!([]), "public".to_owned()),
        Policy::LoggedIn => {
            responses.insert("401".into(), error_response("Not logged in"));
            (session, "logged in".to_owned())
        }
        Policy::Permission(p) => {
            responses.insert("401".into(), error_response("Not logged in"));
            responses
                .entry("403")
                .or_insert_with(|| error_response("Lacks the permission"));
            (session, format!("permission {}", p.name()))
        }
    };
    if spec.needs_billing {
        responses.insert(
            "503".into(),
            error_response("Billing is not configured on this server"),
        );
    }
    let parameters: Vec<Value> = spec
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
        .collect();
    let mut op = json!({
        "operationId": format!("{} {}", spec.method, spec.path),
        "summary": format!("{} {}", spec.method, spec.path),
        "description": format!("Access: {policy}. See docs/api.md for bodies."),
        "security": security,
        "responses": responses,
        "x-gatehouse-policy": policy,
    });
    if !parameters.is_empty() {
        op["parameters"] = Value::Array(parameters);
    }
    op
}

/// The document for a route table.
pub fn document(specs: &[RouteSpec]) -> Value {
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    // The web UI's pages are for browsers, not API clients.
    for spec in specs.iter().filter(|s| s.refusal == Refusal::Json) {
        paths
            .entry(spec.path.clone())
            .or_default()
            .insert(spec.method.as_str().to_ascii_lowercase(), operation(spec));
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Gatehouse",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Accounts, sessions and access control. Unsafe methods made with \
                the session cookie must carry the X-CSRFToken header."
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "session": { "type": "apiKey", "in": "cookie", "name": "session" },
                "csrf": { "type": "apiKey", "in": "header", "name": "X-CSRFToken" }
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["success", "message", "error", "code"],
                    "properties": {
                        "success": { "const": false },
                        "message": { "type": "string" },
                        "error": { "type": "string" },
                        "code": { "type": "string" },
                        "request_id": { "type": "string" }
                    }
                }
            }
        }
    })
}

/// The document is derived from code alone, so it is built once, on first request.
static DOCUMENT: OnceLock<Value> = OnceLock::new();

pub async fn serve() -> Response {
    axum::Json(DOCUMENT.get_or_init(|| document(crate::app::routes().specs()))).into_response()
}

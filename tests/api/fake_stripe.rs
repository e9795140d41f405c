//! An in-process stand-in for Stripe's API on a loopback port: it checks every
//! request the way Stripe would (Bearer key, form encoding, an `Idempotency-Key` on
//! POSTs, no unknown parameters), answers with Stripe-shaped objects and error
//! objects, replays the stored answer for a repeated idempotency key, and fails on
//! demand. What it saw is kept for the tests to inspect; anything Stripe would have
//! refused is also kept in `problems`, which a test asserts is empty.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

pub const SECRET_KEY: &str = "sk_test_gatehouse";

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub form: Vec<(String, String)>,
    pub idempotency_key: Option<String>,
}

impl Recorded {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Inner {
    requests: Vec<Recorded>,
    problems: Vec<String>,
    failures: VecDeque<(u16, &'static str, String)>,
    replies: HashMap<String, (u16, Value)>,
    objects: HashMap<String, Value>,
    counter: u64,
}

#[derive(Clone)]
pub struct FakeStripe {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

impl FakeStripe {
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, inner }
    }

    /// The next request is answered with this Stripe error.
    pub fn fail_next(&self, status: u16, kind: &'static str, message: &str) {
        self.inner
            .lock()
            .unwrap()
            .failures
            .push_back((status, kind, message.to_owned()));
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap().requests.clone()
    }

    pub fn count(&self, method: &str, path_prefix: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == method && r.path.starts_with(path_prefix))
            .count()
    }

    pub fn last(&self, method: &str, path_prefix: &str) -> Recorded {
        self.requests()
            .into_iter()
            .rev()
            .find(|r| r.method == method && r.path.starts_with(path_prefix))
            .unwrap_or_else(|| panic!("no {method} {path_prefix} seen"))
    }

    /// What Stripe would have refused; a test ends by asserting this is empty.
    pub fn problems(&self) -> Vec<String> {
        self.inner.lock().unwrap().problems.clone()
    }

    /// The buyer pays checkout session `id`: Stripe now reports it complete and paid.
    pub fn pay(&self, id: &str, amount_total: i64) {
        let mut st = self.inner.lock().unwrap();
        let session = st.objects.get_mut(id).expect("a session the fake created");
        session["payment_status"] = json!("paid");
        session["status"] = json!("complete");
        session["amount_total"] = json!(amount_total);
        session["currency"] = json!("usd");
    }

    pub fn assert_clean(&self) {
        let problems = self.problems();
        assert!(
            problems.is_empty(),
            "Stripe would have refused: {problems:?}"
        );
    }
}

fn stripe_error(status: u16, kind: &str, message: &str) -> (u16, Value) {
    (
        status,
        json!({ "error": { "type": kind, "message": message, "code": if status == 404 { "resource_missing" } else { "parameter_invalid" } } }),
    )
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (status, value) = answer(&inner, &method, &uri, &headers, &body);
    (StatusCode::from_u16(status).unwrap(), axum::Json(value)).into_response()
}

fn answer(
    inner: &Mutex<Inner>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> (u16, Value) {
    let mut st = inner.lock().unwrap();
    let path = uri.path().to_owned();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    if header("authorization").as_deref() != Some(&format!("Bearer {SECRET_KEY}")) {
        st.problems
            .push(format!("{method} {path}: bad Authorization"));
        return stripe_error(401, "invalid_request_error", "Invalid API Key provided");
    }
    let idempotency_key = header("idempotency-key");
    let form: Vec<(String, String)> = match serde_urlencoded::from_bytes(body) {
        Ok(form) => form,
        Err(_) => {
            st.problems
                .push(format!("{method} {path}: body is not a form"));
            return stripe_error(400, "invalid_request_error", "Invalid request body");
        }
    };
    st.requests.push(Recorded {
        method: method.to_string(),
        path: path.clone(),
        form: form.clone(),
        idempotency_key: idempotency_key.clone(),
    });
    if *method == Method::POST {
        let content_type = header("content-type").unwrap_or_default();
        if content_type != "application/x-www-form-urlencoded" {
            st.problems
                .push(format!("POST {path}: Content-Type {content_type:?}"));
            return stripe_error(400, "invalid_request_error", "Expected a form body");
        }
        let Some(key) = &idempotency_key else {
            st.problems.push(format!("POST {path}: no Idempotency-Key"));
            return stripe_error(400, "invalid_request_error", "No Idempotency-Key");
        };
        if let Some(reply) = st.replies.get(key) {
            return reply.clone();
        }
    } else if !body.is_empty() {
        st.problems
            .push(format!("{method} {path}: unexpected body"));
    }
    if let Some((status, kind, message)) = st.failures.pop_front() {
        return stripe_error(status, kind, &message);
    }
    let reply = route(&mut st, method, &path, &form);
    if let (Some(key), true) = (&idempotency_key, *method == Method::POST) {
        st.replies.insert(key.clone(), reply.clone());
    }
    reply
}

fn allowed(st: &mut Inner, path: &str, form: &[(String, String)], keys: &[&str]) -> bool {
    for (k, v) in form {
        let known = keys.iter().any(|allowed| {
            allowed
                .strip_suffix('*')
                .map_or(k == allowed, |prefix| k.starts_with(prefix))
        });
        if !known {
            st.problems
                .push(format!("{path}: unknown parameter {k}={v}"));
            return false;
        }
        let boolean = [
            "active",
            "cancel_at_period_end",
            "shippable",
            "transfer_lookup_key",
        ];
        if boolean.contains(&k.as_str()) && v != "true" && v != "false" {
            st.problems
                .push(format!("{path}: {k} is not a boolean: {v}"));
            return false;
        }
    }
    true
}

fn route(st: &mut Inner, method: &Method, path: &str, form: &[(String, String)]) -> (u16, Value) {
    let get = |k: &str| {
        form.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let metadata = |prefix: &str| {
        let mut m = serde_json::Map::new();
        for (k, v) in form {
            if let Some(rest) = k.strip_prefix(prefix) {
                m.insert(rest.trim_end_matches(']').to_owned(), json!(v));
            }
        }
        Value::Object(m)
    };
    st.counter += 1;
    let n = st.counter;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let segments: Vec<&str> = path.trim_start_matches("/v1/").split('/').collect();
    let unknown = |id: &str| {
        stripe_error(
            404,
            "invalid_request_error",
            &format!("No such object: '{id}'"),
        )
    };
    const PRODUCT_KEYS: [&str; 9] = [
        "name",
        "description",
        "active",
        "metadata[*",
        "images[*",
        "shippable",
        "statement_descriptor",
        "unit_label",
        "url",
    ];
    // The optional product fields both create and update set, as Stripe stores them.
    let product_fields = |product: &mut Value| {
        let images: Vec<String> = form
            .iter()
            .filter(|(k, _)| k.starts_with("images["))
            .map(|(_, v)| v.clone())
            .collect();
        if !images.is_empty() {
            product["images"] = json!(images);
        }
        for (k, v) in form.iter().filter(|(k, _)| k.starts_with("metadata[")) {
            product["metadata"][k["metadata[".len()..].trim_end_matches(']')] = json!(v);
        }
        for key in ["statement_descriptor", "unit_label", "url"] {
            if let Some((_, v)) = form.iter().find(|(k, _)| k == key) {
                product[key] = json!(v);
            }
        }
        if let Some((_, v)) = form.iter().find(|(k, _)| k == "shippable") {
            product["shippable"] = json!(v == "true");
        }
    };
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["checkout", "sessions", id]) => match st.objects.get(*id) {
            Some(session) => (200, session.clone()),
            None => unknown(id),
        },
        ("POST", ["products"]) => {
            if !allowed(st, path, form, &PRODUCT_KEYS) {
                return stripe_error(400, "invalid_request_error", "Received unknown parameter");
            }
            let Some(name) = get("name") else {
                return stripe_error(
                    400,
                    "invalid_request_error",
                    "Missing required param: name.",
                );
            };
            let mut product = json!({
                "id": format!("prod_{n:06}"), "object": "product", "name": name,
                "description": get("description"), "active": get("active").as_deref() != Some("false"),
                "created": now, "livemode": false, "metadata": {}, "images": [],
                "package_dimensions": null, "shippable": null, "statement_descriptor": null,
                "type": "service", "unit_label": null, "url": null,
            });
            product_fields(&mut product);
            st.objects
                .insert(product["id"].as_str().unwrap().to_owned(), product.clone());
            (200, product)
        }
        ("POST", ["products", id]) => {
            if !allowed(st, path, form, &PRODUCT_KEYS) {
                return stripe_error(400, "invalid_request_error", "Received unknown parameter");
            }
            let Some(product) = st.objects.get_mut(*id) else {
                return unknown(id);
            };
            if let Some(v) = get("name") {
                product["name"] = json!(v);
            }
            if let Some(v) = get("description") {
                product["description"] = if v.is_empty() { Value::Null } else { json!(v) };
            }
            if let Some(v) = get("active") {
                product["active"] = json!(v == "true");
            }
            product_fields(product);
            (200, product.clone())
        }
        ("POST", ["prices"]) => {
            if !allowed(
                st,
                path,
                form,
                &[
                    "product",
                    "unit_amount",
                    "currency",
                    "recurring[interval]",
                    "nickname",
                    "active",
                    "lookup_key",
                    "transfer_lookup_key",
                    "metadata[*",
                ],
            ) {
                return stripe_error(400, "invalid_request_error", "Received unknown parameter");
            }
            let product = get("product").unwrap_or_default();
            if !st.objects.contains_key(&product) {
                return unknown(&product);
            }
            let Some(amount) = get("unit_amount").and_then(|a| a.parse::<i64>().ok()) else {
                st.problems
                    .push(format!("{path}: unit_amount is not an integer"));
                return stripe_error(400, "invalid_request_error", "Invalid integer: unit_amount");
            };
            if let Some(key) = get("lookup_key") {
                let holder = st
                    .objects
                    .values()
                    .find(|o| o["object"] == "price" && o["lookup_key"] == json!(key))
                    .and_then(|o| o["id"].as_str())
                    .map(str::to_owned);
                if let Some(holder) = holder {
                    if get("transfer_lookup_key").as_deref() != Some("true") {
                        return stripe_error(
                            400,
                            "invalid_request_error",
                            "A price with this lookup key already exists.",
                        );
                    }
                    st.objects.get_mut(&holder).unwrap()["lookup_key"] = Value::Null;
                }
            }
            let price = json!({
                "id": format!("price_{n:06}"), "object": "price", "product": product,
                "unit_amount": amount, "currency": get("currency"),
                "recurring": get("recurring[interval]").map(|i| json!({
                    "aggregate_usage": null, "interval": i, "interval_count": 1, "meter": null,
                    "trial_period_days": null, "usage_type": "licensed",
                })),
                "type": if get("recurring[interval]").is_some() { "recurring" } else { "one_time" },
                "nickname": get("nickname"), "active": get("active").as_deref() != Some("false"),
                "created": now, "livemode": false, "billing_scheme": "per_unit",
                "lookup_key": get("lookup_key"), "metadata": metadata("metadata["),
                "tiers_mode": null, "transform_quantity": null,
            });
            st.objects
                .insert(price["id"].as_str().unwrap().to_owned(), price.clone());
            (200, price)
        }
        ("POST", ["prices", id]) => {
            if !allowed(st, path, form, &["nickname", "active"]) {
                return stripe_error(400, "invalid_request_error", "Received unknown parameter");
            }
            let Some(price) = st.objects.get_mut(*id) else {
                return unknown(id);
            };
            if let Some(v) = get("nickname") {
                price["nickname"] = json!(v);
            }
            if let Some(v) = get("active") {
                price["active"] = json!(v == "true");
            }
            (200, price.clone())
        }
        ("POST", ["customers"]) => {
            if !allowed(st, path, form, &["email", "name", "metadata[*"]) {
                return stripe_error(400, "invalid_request_error", "Received unknown parameter");
            }
            let customer = json!({
                "id": format!("cus_{n:06}"), "object": "customer", "email": get("email"),
                "name": get("name"), "metadata": metadata("metadata["),
            });
            st.objects.insert(
                customer["id"].as_str().unwrap().to_owned(),
                customer.clone(),
            );
            (200, customer)
        }
        ("POST", ["subscriptions"]) => {
            if !allowed(
                st,
                path,
                form,
                &[
                    "customer",
                    "items[0][price]",
                    "payment_behavior",
                    "metadata[*",
                    "trial_period_days",
                ],
            ) {
                return stripe_error(400, "invalid_request_error", "Received unknown parameter");
            }
            let customer = get("customer").unwrap_or_default();
            let price = get("items[0][price]").unwrap_or_default();
            if !st.objects.contains_key(&customer) {
                return unknown(&customer);
            }
            if !st.objects.contains_key(&price) {
                return unknown(&price);
            }
            let trial = get("trial_period_days").and_then(|d| d.parse::<i64>().ok());
            let subscription = json!({
                "id": format!("sub_{n:06}"), "object": "subscription", "customer": customer,
                "status": if trial.is_some() { "trialing" } else { "incomplete" },
                "trial_end": trial.map(|d| now + d * 86400),
                "cancel_at_period_end": false,
                "current_period_end": now + 30 * 86400, "canceled_at": null, "created": now,
                "items": { "object": "list", "data": [
                    { "id": format!("si_{n:06}"), "object": "subscription_item", "price": { "id": price, "object": "price" } }
                ] },
                "metadata": metadata("metadata["),
            });
            st.objects.insert(
                subscription["id"].as_str().unwrap().to_owned(),
                subscription.clone(),
            );
            (200, subscription)
        }
        ("POST", ["subscriptions", id]) => {
            if !allowed(
                st,
                path,
                form,
                &["items[0][id]", "items[0][price]", "cancel_at_period_end"],
            ) {
                return stripe_error(400, "invalid_request_error", "Received unknown parameter");
            }
            let Some(mut subscription) = st.objects.get(*id).cloned() else {
                return unknown(id);
            };
            if let Some(v) = get("cancel_at_period_end") {
                subscription["cancel_at_period_end"] = json!(v == "true");
            }
            if let Some(price) = get("items[0][price]") {
                let item = subscription["items"]["data"][0]["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                if get("items[0][id]").as_deref() != Some(item.as_str()) {
                    st.problems.push(format!(
                        "{path}: items[0][id] is not the subscription's item"
                    ));
                }
                if !st.objects.contains_key(&price) {
                    return unknown(&price);
                }
                subscription["items"]["data"][0]["price"]["id"] = json!(price);
            }
            st.objects.insert((*id).to_owned(), subscription.clone());
            (200, subscription)
        }
        ("DELETE", ["subscriptions", id]) => {
            let Some(subscription) = st.objects.get_mut(*id) else {
                return unknown(id);
            };
            subscription["status"] = json!("canceled");
            subscription["canceled_at"] = json!(now);
            (200, subscription.clone())
        }
        ("POST", ["checkout", "sessions"]) => {
            if !allowed(
                st,
                path,
                form,
                &[
                    "mode",
                    "customer",
                    "client_reference_id",
                    "line_items[0][price]",
                    "line_items[0][quantity]",
                    "success_url",
                    "cancel_url",
                    "metadata[*",
                    "subscription_data[metadata][*",
                ],
            ) {
                return stripe_error(400, "invalid_request_error", "Received unknown parameter");
            }
            for required in ["mode", "success_url", "line_items[0][price]"] {
                if get(required).is_none() {
                    st.problems.push(format!("{path}: missing {required}"));
                }
            }
            let id = format!("cs_test_{n:06}");
            let session = json!({
                "id": id, "object": "checkout.session", "mode": get("mode"),
                "url": format!("https://checkout.stripe.test/c/pay/{id}"),
                "customer": get("customer"), "client_reference_id": get("client_reference_id"),
                "payment_status": "unpaid", "status": "open", "metadata": metadata("metadata["),
                "amount_total": null, "currency": null,
            });
            st.objects.insert(id, session.clone());
            (200, session)
        }
        _ => {
            st.problems.push(format!("unexpected {method} {path}"));
            stripe_error(404, "invalid_request_error", "Unrecognized request URL")
        }
    }
}

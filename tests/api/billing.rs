//! Billing through the real server against the fake Stripe of `fake_stripe.rs`: the
//! old client's flows (products, prices, subscriptions, checkout, signed webhooks),
//! the permission rules, bad input, and Stripe failing or out of reach.

use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::fake_stripe::{FakeStripe, SECRET_KEY};
use crate::helpers::{expect_error, json, new_client, Backend, TestApp, PASSWORD};
use crate::on_both_databases;

on_both_databases!(
    billing_off_answers_503_and_nothing_else_changes,
    products_and_prices_round_trip,
    permission_rules,
    bad_input_is_refused_before_stripe_is_called,
    stripe_failures_leave_local_state_unchanged,
    stripe_unreachable_is_503_and_changes_nothing,
    a_retried_create_with_the_same_key_creates_once,
    checkout_then_webhook_creates_one_order,
    webhook_signatures_are_checked,
    subscription_events_apply_in_stripe_order,
    subscriptions_are_managed_and_owned,
);

const WEBHOOK_SECRET: &str = "whsec_test_gatehouse";

async fn spawn(backend: Backend) -> (TestApp, FakeStripe) {
    let fake = FakeStripe::start().await;
    let app = TestApp::spawn_with(
        backend,
        &[
            ("STRIPE_PRIVATE_KEY", SECRET_KEY),
            ("STRIPE_API_BASE", fake.url.as_str()),
            ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ],
    )
    .await;
    (app, fake)
}

/// Signs up and logs in `name`, who holds `manage_billing` when `manager`; the
/// client is left logged in as them. Returns the user id.
async fn user(app: &TestApp, name: &str, manager: bool) -> i64 {
    let body = app.verified_user(name).await;
    let id = body["user"]["id"].as_i64().unwrap();
    if manager {
        sqlx::query("INSERT INTO roles (name) VALUES ('Billing')")
            .execute(app.state.db.pool())
            .await
            .ok();
        sqlx::query(
            "INSERT INTO role_permissions (role_id, permission_id) \
             SELECT r.id, p.id FROM roles r, permissions p \
             WHERE r.name = 'Billing' AND p.name = 'manage_billing' ON CONFLICT DO NOTHING",
        )
        .execute(app.state.db.pool())
        .await
        .unwrap();
        gatehouse::rbac::grant_role(app.state.db.pool(), id, "Billing")
            .await
            .unwrap();
    }
    id
}

async fn as_user(app: &TestApp, name: &str) {
    app.login(name, PASSWORD).await;
}

async fn ok_json(res: reqwest::Response, status: StatusCode) -> Value {
    let got = res.status();
    let body = json(res).await;
    assert_eq!(got, status, "{body}");
    body
}

async fn create_product(app: &TestApp, name: &str) -> Value {
    let res = app
        .post(
            "/create-product",
            json!({ "name": name, "description": "A plan" }),
        )
        .await;
    ok_json(res, StatusCode::CREATED).await["product"].clone()
}

async fn create_price(
    app: &TestApp,
    product: i64,
    dollars: Value,
    interval: Option<&str>,
) -> Value {
    let res = app
        .post(
            "/create-price",
            json!({ "product_id": product, "unit_amount": dollars, "currency": "usd", "recurring_interval": interval }),
        )
        .await;
    ok_json(res, StatusCode::CREATED).await["price"].clone()
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn signature(secret: &str, t: i64, payload: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{payload}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

async fn deliver_raw(app: &TestApp, payload: &str, header: Option<String>) -> reqwest::Response {
    let mut req = new_client()
        .post(app.url("/stripe/webhook"))
        .header("content-type", "application/json")
        .body(payload.to_owned());
    if let Some(h) = header {
        req = req.header("Stripe-Signature", h);
    }
    req.send().await.unwrap()
}

/// Delivers an event signed as Stripe signs it, now.
async fn deliver(app: &TestApp, event: &Value) -> Value {
    let payload = event.to_string();
    let t = now();
    let header = format!("t={t},v1={}", signature(WEBHOOK_SECRET, t, &payload));
    ok_json(
        deliver_raw(app, &payload, Some(header)).await,
        StatusCode::OK,
    )
    .await
}

fn event(id: &str, kind: &str, created: i64, object: Value) -> Value {
    json!({
        "id": id, "object": "event", "type": kind, "created": created,
        "api_version": "2024-06-20", "livemode": false, "data": { "object": object },
    })
}

async fn mine(app: &TestApp) -> Vec<Value> {
    let body = ok_json(app.get("/user-subscriptions").await, StatusCode::OK).await;
    body["subscriptions"].as_array().unwrap().clone()
}

fn subscription_object(
    id: &str,
    customer: &str,
    price: &str,
    status: &str,
    cancel_at_end: bool,
) -> Value {
    json!({
        "id": id, "object": "subscription", "customer": customer, "status": status,
        "cancel_at_period_end": cancel_at_end, "current_period_end": 1_900_000_000,
        "items": { "object": "list", "data": [ { "id": format!("si_{id}"), "price": { "id": price } } ] },
        "metadata": {},
    })
}

async fn billing_off_answers_503_and_nothing_else_changes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    assert!(app.state.config.stripe.is_none());
    // The public billing routes answer 503; the guarded ones check the caller first.
    for (method, path) in [
        (Method::POST, "/stripe/webhook"),
        (Method::GET, "/checkout-cancel"),
    ] {
        let res = app.request(method, path, Some(json!({}))).await;
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = json(res).await;
        assert_eq!(body["code"], "billing_not_configured", "{path}");
        assert!(body["message"]
            .as_str()
            .unwrap()
            .contains("STRIPE_PRIVATE_KEY"));
    }
    for (method, path) in [
        (Method::GET, "/products"),
        (Method::POST, "/create-product"),
    ] {
        let res = app.request(method, path, Some(json!({}))).await;
        expect_error(res, StatusCode::UNAUTHORIZED).await;
    }
    user(&app, "olive", true).await;
    let res = app.post("/create-product", json!({ "name": "Gold" })).await;
    let message = expect_error(res, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(message.contains("not configured"));
    let res = app.get("/current_user_details").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM billing_products").await, 0);
}

async fn products_and_prices_round_trip(backend: Backend) {
    let (app, fake) = spawn(backend).await;
    user(&app, "manny", true).await;

    let res = app
        .post(
            "/create-product",
            json!({ "name": "Gold plan", "description": "Everything", "active": true }),
        )
        .await;
    let body = ok_json(res, StatusCode::CREATED).await;
    assert_eq!(body["success"], true);
    assert_eq!(body["message"], "Product created successfully");
    let product = body["product"].clone();
    let product_id = product["id"].as_i64().unwrap();
    let stripe_product = product["stripe_product_id"].as_str().unwrap().to_owned();
    assert!(stripe_product.starts_with("prod_"));
    assert_eq!(product["name"], "Gold plan");
    assert_eq!(product["description"], "Everything");
    assert_eq!(product["active"], true);
    let sent = fake.last("POST", "/v1/products");
    assert_eq!(sent.get("name"), Some("Gold plan"));
    assert_eq!(sent.get("active"), Some("true"));
    assert!(sent
        .idempotency_key
        .as_deref()
        .is_some_and(|k| k.len() > 10));

    // 9.99 dollars is exactly 999 cents, recurring monthly.
    let price = create_price(&app, product_id, json!(9.99), Some("month")).await;
    assert_eq!(price["unit_amount"], json!(9.99));
    assert_eq!(price["unit_amount_cents"], 999);
    assert_eq!(price["currency"], "usd");
    assert_eq!(price["recurring_interval"], "month");
    assert_eq!(price["product_id"], product_id);
    let sent = fake.last("POST", "/v1/prices");
    assert_eq!(sent.get("unit_amount"), Some("999"));
    assert_eq!(sent.get("recurring[interval]"), Some("month"));
    assert_eq!(sent.get("product"), Some(stripe_product.as_str()));
    let one_time = create_price(&app, product_id, json!("0.29"), None).await;
    assert_eq!(one_time["unit_amount_cents"], 29);
    assert_eq!(one_time["recurring_interval"], Value::Null);
    assert!(fake
        .last("POST", "/v1/prices")
        .get("recurring[interval]")
        .is_none());
    let keys: Vec<_> = fake
        .requests()
        .iter()
        .filter_map(|r| r.idempotency_key.clone())
        .collect();
    let mut unique = keys.clone();
    unique.dedup();
    assert_eq!(keys.len(), unique.len(), "a fresh key per operation");

    let body = ok_json(app.get("/products").await, StatusCode::OK).await;
    assert_eq!(body["products"].as_array().unwrap().len(), 1);
    for path in [
        format!("/product?id={product_id}"),
        format!("/product?id={stripe_product}"),
    ] {
        let body = ok_json(app.get(&path).await, StatusCode::OK).await;
        assert_eq!(body["product"]["id"], product_id);
        assert_eq!(body["product"]["prices"].as_array().unwrap().len(), 2);
    }
    let body = ok_json(
        app.post("/product", json!({ "id": product_id })).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["product"]["name"], "Gold plan");

    let body = ok_json(app.get("/prices").await, StatusCode::OK).await;
    assert_eq!(body["prices"].as_array().unwrap().len(), 2);
    let path = format!("/prices-for-product?product_id={product_id}");
    let body = ok_json(app.get(&path).await, StatusCode::OK).await;
    assert_eq!(body["prices"].as_array().unwrap().len(), 2);
    let stripe_price = price["stripe_price_id"].as_str().unwrap();
    let body = ok_json(
        app.get(&format!("/price?id={stripe_price}")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["price"]["id"], price["id"]);

    let res = app
        .post(
            "/edit-product",
            json!({ "id": product_id, "name": "Platinum", "active": false }),
        )
        .await;
    let body = ok_json(res, StatusCode::OK).await;
    assert_eq!(body["product"]["name"], "Platinum");
    assert_eq!(body["product"]["active"], false);
    assert_eq!(
        fake.last("POST", &format!("/v1/products/{stripe_product}"))
            .get("active"),
        Some("false")
    );
    let res = app.post("/edit-product", json!({ "id": product_id })).await;
    expect_error(res, StatusCode::BAD_REQUEST).await;
    let res = app
        .post("/edit-product", json!({ "id": 999_999, "name": "x" }))
        .await;
    expect_error(res, StatusCode::NOT_FOUND).await;

    let res = app
        .post(
            "/edit-price",
            json!({ "id": price["id"], "nickname": "Monthly" }),
        )
        .await;
    assert_eq!(
        ok_json(res, StatusCode::OK).await["price"]["nickname"],
        "Monthly"
    );
    // Stripe prices keep their amount for ever.
    let res = app
        .post(
            "/edit-price",
            json!({ "id": price["id"], "unit_amount": 12 }),
        )
        .await;
    expect_error(res, StatusCode::BAD_REQUEST).await;
    let res = app
        .post(
            "/edit-price",
            json!({ "id": price["id"], "unit_amount": "9.99", "active": true }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);

    let res = app
        .request(
            Method::DELETE,
            "/delete-price",
            Some(json!({ "id": price["id"] })),
        )
        .await;
    let body = ok_json(res, StatusCode::OK).await;
    assert_eq!(body["price"]["active"], false);
    assert_eq!(
        fake.last("POST", "/v1/prices/").get("active"),
        Some("false")
    );

    // A product with prices is archived, never deleted; one without is deleted.
    let res = app
        .request(
            Method::DELETE,
            "/delete-product",
            Some(json!({ "id": product_id })),
        )
        .await;
    expect_error(res, StatusCode::CONFLICT).await;
    assert_eq!(fake.count("DELETE", "/v1/products"), 0);
    let spare = create_product(&app, "Spare").await;
    let res = app
        .request(
            Method::DELETE,
            &format!("/delete-product?id={}", spare["id"]),
            None,
        )
        .await;
    assert_eq!(
        ok_json(res, StatusCode::OK).await["message"],
        "Product deleted successfully"
    );
    assert_eq!(fake.count("DELETE", "/v1/products/"), 1);
    let res = app.get(&format!("/product?id={}", spare["id"])).await;
    expect_error(res, StatusCode::NOT_FOUND).await;
    assert_eq!(app.scalar("SELECT COUNT(*) FROM billing_products").await, 1);
    fake.assert_clean();
}

async fn permission_rules(backend: Backend) {
    let (app, fake) = spawn(backend).await;
    user(&app, "boss", true).await;
    let visible = create_product(&app, "Visible").await;
    let hidden = create_product(&app, "Hidden").await;
    let visible_price = create_price(
        &app,
        visible["id"].as_i64().unwrap(),
        json!(5),
        Some("month"),
    )
    .await;
    let archived = create_price(&app, visible["id"].as_i64().unwrap(), json!(6), None).await;
    app.post("/delete-price", json!({ "id": archived["id"] }))
        .await;
    app.post(
        "/edit-product",
        json!({ "id": hidden["id"], "active": false }),
    )
    .await;
    let requests_before = fake.requests().len();

    // Nobody logged in: 401 everywhere a session is needed.
    let anon = new_client();
    for path in [
        "/products",
        "/prices",
        "/subscriptions",
        "/user-subscriptions",
        "/checkout-success?session_id=cs_x",
    ] {
        let res = anon.get(app.url(path)).send().await.unwrap();
        expect_error(res, StatusCode::UNAUTHORIZED).await;
    }
    let res = anon
        .post(app.url("/create-product"))
        .json(&json!({ "name": "x" }))
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::UNAUTHORIZED).await;

    // A plain user: 403 on management, and only active things are visible.
    user(&app, "pat", false).await;
    for (path, body) in [
        ("/create-product", json!({ "name": "x" })),
        ("/edit-product", json!({ "id": visible["id"], "name": "x" })),
        ("/delete-product", json!({ "id": visible["id"] })),
        (
            "/create-price",
            json!({ "product_id": visible["id"], "unit_amount": 1 }),
        ),
        (
            "/edit-price",
            json!({ "id": visible_price["id"], "active": false }),
        ),
        ("/delete-price", json!({ "id": visible_price["id"] })),
        (
            "/create-subscription",
            json!({ "price_id": visible_price["id"] }),
        ),
        (
            "/update-subscription",
            json!({ "subscription_id": 1, "price_id": 1 }),
        ),
        ("/reactivate-subscription", json!({ "subscription_id": 1 })),
        ("/delete-subscription", json!({ "subscription_id": 1 })),
    ] {
        let res = app.post(path, body).await;
        assert_eq!(
            expect_error(res, StatusCode::FORBIDDEN).await,
            "Unauthorized access",
            "{path}"
        );
    }
    let res = app.get("/subscriptions").await;
    expect_error(res, StatusCode::FORBIDDEN).await;
    assert_eq!(
        fake.requests().len(),
        requests_before,
        "nothing reached Stripe"
    );

    let body = ok_json(app.get("/products").await, StatusCode::OK).await;
    let names: Vec<_> = body["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("Visible")]);
    let body = ok_json(app.get("/prices").await, StatusCode::OK).await;
    let ids: Vec<_> = body["prices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].clone())
        .collect();
    assert_eq!(ids, vec![visible_price["id"].clone()]);
    expect_error(
        app.get(&format!("/product?id={}", hidden["id"])).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    expect_error(
        app.get(&format!("/price?id={}", archived["id"])).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let path = format!("/prices-for-product?product_id={}", hidden["id"]);
    expect_error(app.get(&path).await, StatusCode::NOT_FOUND).await;

    // Checkout is for oneself only, and the CSRF header is required with a session.
    let res = app
        .post(
            "/create-checkout-session",
            json!({ "price_id": visible_price["id"], "user_id": 1 }),
        )
        .await;
    expect_error(res, StatusCode::FORBIDDEN).await;
    let res = app
        .client
        .post(app.url("/create-checkout-session"))
        .json(&json!({ "price_id": visible_price["id"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_error(res, StatusCode::FORBIDDEN).await,
        "CSRF token validation failed"
    );
    assert_eq!(fake.requests().len(), requests_before);
    fake.assert_clean();
}

async fn bad_input_is_refused_before_stripe_is_called(backend: Backend) {
    let (app, fake) = spawn(backend).await;
    user(&app, "vera", true).await;
    let product = create_product(&app, "Base").await;
    let pid = product["id"].clone();
    let before = fake.requests().len();

    for bad in [
        json!(9.999),
        json!("9.999"),
        json!(-1),
        json!("-0.5"),
        json!("abc"),
        json!(1_000_000),
        json!("1e3"),
        json!(null),
        json!(true),
        json!({ "amount": 1 }),
        json!("9".repeat(5000)),
    ] {
        let res = app
            .post(
                "/create-price",
                json!({ "product_id": pid, "unit_amount": bad, "currency": "usd" }),
            )
            .await;
        let message = expect_error(res, StatusCode::BAD_REQUEST).await;
        assert!(message.contains("unit_amount"), "{bad}: {message}");
    }
    for (body, field) in [
        (json!({ "product_id": pid }), "unit_amount"),
        (json!({ "unit_amount": 1 }), "product_id"),
        (
            json!({ "product_id": pid, "unit_amount": 1, "currency": "jpy" }),
            "currency",
        ),
        (
            json!({ "product_id": pid, "unit_amount": 1, "currency": "dollars" }),
            "currency",
        ),
        (
            json!({ "product_id": pid, "unit_amount": 1, "recurring_interval": "fortnight" }),
            "recurring_interval",
        ),
        (json!({ "product_id": [1], "unit_amount": 1 }), "product_id"),
        (
            json!({ "product_id": "../../v1/x", "unit_amount": 1 }),
            "product_id",
        ),
    ] {
        let res = app.post("/create-price", body.clone()).await;
        let message = expect_error(res, StatusCode::BAD_REQUEST).await;
        assert!(message.contains(field), "{body}: {message}");
    }
    let res = app
        .post(
            "/create-price",
            json!({ "product_id": 424242, "unit_amount": 1 }),
        )
        .await;
    expect_error(res, StatusCode::NOT_FOUND).await;
    let res = app
        .post(
            "/create-price",
            json!({ "product_id": "prod_unknown", "unit_amount": 1 }),
        )
        .await;
    expect_error(res, StatusCode::NOT_FOUND).await;

    for body in [
        json!({}),
        json!({ "name": "" }),
        json!({ "name": "   " }),
        json!({ "name": 5 }),
        json!({ "name": "x".repeat(251) }),
        json!({ "name": "line\nbreak" }),
        json!({ "name": "bell\u{7}" }),
        json!({ "name": "ok", "description": "d".repeat(2001) }),
        json!({ "name": "ok", "active": "yes" }),
    ] {
        let res = app.post("/create-product", body.clone()).await;
        expect_error(res, StatusCode::BAD_REQUEST).await;
    }
    let res = app.request(Method::POST, "/create-product", None).await;
    assert!(
        res.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE
            || res.status() == StatusCode::BAD_REQUEST
    );
    for path in [
        "/product",
        "/product?id=",
        "/product?id=a%2Fb",
        "/price?id=%00",
    ] {
        let res = app.get(path).await;
        expect_error(res, StatusCode::BAD_REQUEST).await;
    }
    let res = app
        .post(
            "/create-checkout-session",
            json!({ "price_id": 1, "success_url": "javascript:alert(1)" }),
        )
        .await;
    expect_error(res, StatusCode::BAD_REQUEST).await;
    let res = app
        .post(
            "/create-checkout-session",
            json!({ "price_id": 1, "quantity": 0 }),
        )
        .await;
    expect_error(res, StatusCode::BAD_REQUEST).await;
    let res = app.get("/checkout-success").await;
    expect_error(res, StatusCode::BAD_REQUEST).await;
    let res = app.get("/checkout-success?session_id=cs_unknown").await;
    expect_error(res, StatusCode::NOT_FOUND).await;

    // A hostile but valid name is kept as given, not interpreted.
    let hostile = "<script>alert('x')</script> ' OR 1=1 --";
    let made = create_product(&app, hostile).await;
    assert_eq!(made["name"], hostile);

    assert_eq!(
        fake.requests().len(),
        before + 1,
        "only the valid product reached Stripe"
    );
    assert_eq!(app.scalar("SELECT COUNT(*) FROM billing_prices").await, 0);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM billing_products").await, 2);
    fake.assert_clean();
}

async fn stripe_failures_leave_local_state_unchanged(backend: Backend) {
    let (app, fake) = spawn(backend).await;
    user(&app, "fran", true).await;
    let product = create_product(&app, "Keep").await;

    fake.fail_next(400, "invalid_request_error", "Invalid currency: usx");
    let res = app
        .post(
            "/create-price",
            json!({ "product_id": product["id"], "unit_amount": 3 }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body = json(res).await;
    assert_eq!(body["code"], "stripe_invalid_request");
    assert_eq!(body["success"], false);
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("Invalid currency: usx"));
    assert_eq!(body["message"], body["error"]);

    fake.fail_next(500, "api_error", "Something went wrong on Stripe's end");
    let res = app.post("/create-product", json!({ "name": "Lost" })).await;
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    let body = json(res).await;
    assert_eq!(body["code"], "stripe_error");
    assert!(
        !body["message"].as_str().unwrap().contains("Stripe's end"),
        "no internals"
    );

    fake.fail_next(
        401,
        "invalid_request_error",
        "Invalid API Key provided: sk_live_****",
    );
    let res = app
        .post(
            "/edit-product",
            json!({ "id": product["id"], "name": "Changed" }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    assert!(!json(res).await.to_string().contains("sk_live"));

    fake.fail_next(404, "invalid_request_error", "No such product: 'prod_x'");
    let res = app
        .post(
            "/edit-product",
            json!({ "id": product["id"], "name": "Changed" }),
        )
        .await;
    assert_eq!(json(res).await["code"], "stripe_not_found");

    assert_eq!(app.scalar("SELECT COUNT(*) FROM billing_prices").await, 0);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM billing_products").await, 1);
    let body = ok_json(
        app.get(&format!("/product?id={}", product["id"])).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["product"]["name"], "Keep");

    // A declined card during checkout is 402, and opens no local session.
    let price = create_price(&app, product["id"].as_i64().unwrap(), json!(1), None).await;
    fake.fail_next(402, "card_error", "Your card was declined.");
    // The first Stripe call of a checkout creates the customer.
    let res = app
        .post(
            "/create-checkout-session",
            json!({ "price_id": price["id"] }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::PAYMENT_REQUIRED);
    assert_eq!(json(res).await["code"], "stripe_card_error");
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM billing_checkout_sessions")
            .await,
        0
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM billing_customers").await,
        0
    );
    fake.assert_clean();
}

async fn stripe_unreachable_is_503_and_changes_nothing(backend: Backend) {
    // A port that was just free: nothing listens there.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let app = TestApp::spawn_with(
        backend,
        &[
            ("STRIPE_SECRET_KEY", SECRET_KEY),
            ("STRIPE_API_BASE", closed.as_str()),
        ],
    )
    .await;
    user(&app, "una", true).await;
    let res = app
        .post("/create-product", json!({ "name": "Nowhere" }))
        .await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = json(res).await;
    assert_eq!(body["code"], "stripe_unavailable");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM billing_products").await, 0);
    let body = ok_json(app.get("/products").await, StatusCode::OK).await;
    assert_eq!(body["products"], json!([]));
    // No webhook secret configured: the webhook says so.
    let res = deliver_raw(&app, "{}", Some("t=1,v1=00".into())).await;
    assert_eq!(json(res).await["code"], "billing_not_configured");
}

async fn a_retried_create_with_the_same_key_creates_once(backend: Backend) {
    let (app, fake) = spawn(backend).await;
    user(&app, "ida", true).await;
    let send = |key: &'static str| {
        let token = app.csrf.lock().unwrap().clone().unwrap();
        app.client
            .post(app.url("/create-product"))
            .header("X-CSRFToken", token)
            .header("Idempotency-Key", key)
            .json(&json!({ "name": "Once" }))
            .send()
    };
    let first = ok_json(send("retry-1").await.unwrap(), StatusCode::CREATED).await;
    let second = ok_json(send("retry-1").await.unwrap(), StatusCode::CREATED).await;
    assert_eq!(first["product"]["id"], second["product"]["id"]);
    let posts: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v1/products")
        .collect();
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[0].idempotency_key, posts[1].idempotency_key);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM billing_products").await, 1);
    let third = ok_json(send("retry-2").await.unwrap(), StatusCode::CREATED).await;
    assert_ne!(first["product"]["id"], third["product"]["id"]);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM billing_products").await, 2);
    fake.assert_clean();
}

async fn checkout_then_webhook_creates_one_order(backend: Backend) {
    let (app, fake) = spawn(backend).await;
    user(&app, "mona", true).await;
    let product = create_product(&app, "Course").await;
    let one_time = create_price(&app, product["id"].as_i64().unwrap(), json!("49.50"), None).await;
    let monthly = create_price(
        &app,
        product["id"].as_i64().unwrap(),
        json!(5),
        Some("month"),
    )
    .await;

    let buyer = user(&app, "bob", false).await;
    let res = app
        .post(
            "/create-checkout-session",
            json!({ "price_id": one_time["id"] }),
        )
        .await;
    let body = ok_json(res, StatusCode::OK).await;
    assert_eq!(body["success"], true);
    let session_id = body["session_id"].as_str().unwrap().to_owned();
    assert!(session_id.starts_with("cs_test_"));
    assert!(body["url"].as_str().unwrap().starts_with("https://"));
    let sent = fake.last("POST", "/v1/checkout/sessions");
    assert_eq!(sent.get("mode"), Some("payment"));
    assert_eq!(
        sent.get("line_items[0][price]"),
        one_time["stripe_price_id"].as_str()
    );
    assert_eq!(sent.get("line_items[0][quantity]"), Some("1"));
    assert_eq!(
        sent.get("client_reference_id"),
        Some(buyer.to_string().as_str())
    );
    assert!(sent
        .get("success_url")
        .unwrap()
        .contains("{CHECKOUT_SESSION_ID}"));
    let customer = sent.get("customer").unwrap().to_owned();
    let made = fake.last("POST", "/v1/customers");
    assert_eq!(made.get("email"), Some("bob@example.com"));
    assert_eq!(
        made.get("metadata[user_id]"),
        Some(buyer.to_string().as_str())
    );

    // A second checkout reuses the customer, in subscription mode for a recurring price.
    let res = app
        .post(
            "/create-checkout-session",
            json!({ "price_id": monthly["stripe_price_id"], "success_url": "http://localhost:3000/ok", "quantity": 2 }),
        )
        .await;
    let second = ok_json(res, StatusCode::OK).await;
    let sent = fake.last("POST", "/v1/checkout/sessions");
    assert_eq!(sent.get("mode"), Some("subscription"));
    assert_eq!(sent.get("customer"), Some(customer.as_str()));
    assert_eq!(sent.get("success_url"), Some("http://localhost:3000/ok"));
    assert_eq!(
        sent.get("subscription_data[metadata][user_id]"),
        Some(buyer.to_string().as_str())
    );
    assert_eq!(fake.count("POST", "/v1/customers"), 1);

    // Before the webhook: nothing paid, however often the page is reloaded.
    let success = format!("/checkout-success?session_id={session_id}");
    for _ in 0..3 {
        let body = ok_json(app.get(&success).await, StatusCode::OK).await;
        assert_eq!(body["paid"], false);
        assert_eq!(body["order"], Value::Null);
        assert_eq!(body["status"], "open");
    }
    assert_eq!(app.scalar("SELECT COUNT(*) FROM billing_orders").await, 0);

    let completed = event(
        "evt_checkout_1",
        "checkout.session.completed",
        now(),
        json!({
            "id": session_id, "object": "checkout.session", "mode": "payment",
            "payment_status": "paid", "status": "complete", "amount_total": 4950,
            "currency": "usd", "customer": customer, "client_reference_id": buyer.to_string(),
        }),
    );
    let ack = deliver(&app, &completed).await;
    assert_eq!(ack["received"], true);
    for _ in 0..3 {
        let body = ok_json(app.get(&success).await, StatusCode::OK).await;
        assert_eq!(body["paid"], true);
        assert_eq!(body["status"], "completed");
        assert_eq!(body["order"]["amount_total"], json!(49.5));
        assert_eq!(body["order"]["amount_total_cents"], 4950);
        assert_eq!(body["order"]["user_id"], buyer);
        assert_eq!(body["order"]["price_id"], one_time["id"]);
    }
    // A replay is acknowledged and ignored; so is another event for the same session.
    let again = deliver(&app, &completed).await;
    assert_eq!(again["duplicate"], true);
    let mut other = completed.clone();
    other["id"] = json!("evt_checkout_2");
    deliver(&app, &other).await;
    // The same new event delivered twice at once is processed once.
    let mut raced = completed.clone();
    raced["id"] = json!("evt_checkout_3");
    let (a, b) = futures::join!(deliver(&app, &raced), deliver(&app, &raced));
    assert_eq!(
        [a["duplicate"].as_bool(), b["duplicate"].as_bool()]
            .iter()
            .filter(|d| **d == Some(true))
            .count(),
        1,
        "{a} {b}"
    );
    assert_eq!(app.scalar("SELECT COUNT(*) FROM billing_orders").await, 1);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM billing_events").await, 3);

    // Someone else's session is not theirs to read.
    user(&app, "eve", false).await;
    expect_error(app.get(&success).await, StatusCode::FORBIDDEN).await;
    let body = ok_json(app.get("/checkout-cancel").await, StatusCode::OK).await;
    assert_eq!(body["success"], true);
    assert!(second["session_id"].is_string());
    fake.assert_clean();
}

async fn webhook_signatures_are_checked(backend: Backend) {
    let (app, _fake) = spawn(backend).await;
    let payload = event(
        "evt_sig",
        "customer.subscription.created",
        now(),
        subscription_object("sub_sig", "cus_unknown", "price_x", "active", false),
    )
    .to_string();
    let t = now();
    let good = signature(WEBHOOK_SECRET, t, &payload);
    // Stale and future stamps stay clear of the 300 s edge, which the server's clock
    // may reach a second after ours; the unit tests check the edge itself.
    let cases = [
        None,
        Some(String::new()),
        Some("garbage".to_owned()),
        Some(format!("t={t}")),
        Some(format!(
            "t={t},v1={}",
            signature("whsec_wrong", t, &payload)
        )),
        Some(format!(
            "t={},v1={}",
            t - 310,
            signature(WEBHOOK_SECRET, t - 310, &payload)
        )),
        Some(format!(
            "t={},v1={}",
            t + 310,
            signature(WEBHOOK_SECRET, t + 310, &payload)
        )),
        Some(format!("t={},v1={good}", t + 1)),
        Some(format!("t={t},v0={good}")),
    ];
    for header in cases {
        let res = deliver_raw(&app, &payload, header.clone()).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{header:?}");
        let body = json(res).await;
        assert_eq!(body["code"], "invalid_signature", "{header:?}");
    }
    // The body signed, then changed.
    let tampered = payload.replace("active", "canceled");
    let res = deliver_raw(&app, &tampered, Some(format!("t={t},v1={good}"))).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM billing_events").await, 0);
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM billing_subscriptions")
            .await,
        0
    );

    // Several signatures (a secret being rolled): any valid one is enough. A session
    // cookie without a CSRF header does not matter here.
    user(&app, "wendy", false).await;
    let header = format!("t={t},v1={},v1={good}", "ab".repeat(32));
    let res = app
        .client
        .post(app.url("/stripe/webhook"))
        .header("Stripe-Signature", header)
        .body(payload.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM billing_events").await, 1);
    // A signed body that is not an event is refused and not recorded.
    let junk = "[1,2,3]";
    let res = deliver_raw(
        &app,
        junk,
        Some(format!("t={t},v1={}", signature(WEBHOOK_SECRET, t, junk))),
    )
    .await;
    expect_error(res, StatusCode::BAD_REQUEST).await;
    assert_eq!(app.scalar("SELECT COUNT(*) FROM billing_events").await, 1);
}

async fn subscription_events_apply_in_stripe_order(backend: Backend) {
    let (app, fake) = spawn(backend).await;
    user(&app, "mia", true).await;
    let product = create_product(&app, "Sub").await;
    let price = create_price(
        &app,
        product["id"].as_i64().unwrap(),
        json!(12),
        Some("month"),
    )
    .await;
    let stripe_price = price["stripe_price_id"].as_str().unwrap().to_owned();
    let buyer = user(&app, "sam", false).await;
    // Checking out links the buyer to a Stripe customer.
    app.post(
        "/create-checkout-session",
        json!({ "price_id": price["id"] }),
    )
    .await;
    let customer = fake
        .last("POST", "/v1/checkout/sessions")
        .get("customer")
        .unwrap()
        .to_owned();
    let t0 = now() - 1000;
    let sub = |status: &str, cancel: bool| {
        subscription_object("sub_seq", &customer, &stripe_price, status, cancel)
    };

    // updated (newer) arrives before created (older): the newer state stays.
    deliver(
        &app,
        &event(
            "evt_s2",
            "customer.subscription.updated",
            t0 + 10,
            sub("active", true),
        ),
    )
    .await;
    deliver(
        &app,
        &event(
            "evt_s1",
            "customer.subscription.created",
            t0,
            sub("incomplete", false),
        ),
    )
    .await;
    let list = mine(&app).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["status"], "active");
    assert_eq!(list[0]["cancel_at_period_end"], true);
    assert_eq!(list[0]["user_id"], buyer);
    assert_eq!(list[0]["price_id"], price["id"]);

    // Invoices: a late, older failure does not hide a newer payment.
    let invoice = |id: &str| json!({ "id": id, "object": "invoice", "customer": customer, "subscription": "sub_seq", "status": "paid" });
    deliver(
        &app,
        &event("evt_i2", "invoice.paid", t0 + 30, invoice("in_2")),
    )
    .await;
    deliver(
        &app,
        &event("evt_i1", "invoice.payment_failed", t0 + 20, invoice("in_1")),
    )
    .await;
    let list = mine(&app).await;
    assert_eq!(list[0]["latest_invoice_status"], "paid");
    assert_eq!(list[0]["latest_invoice_id"], "in_2");
    // The newer API shape (parent.subscription_details) is read too.
    let newer = json!({ "id": "in_3", "object": "invoice", "customer": customer,
        "parent": { "subscription_details": { "subscription": "sub_seq" } } });
    deliver(
        &app,
        &event("evt_i3", "invoice.payment_failed", t0 + 40, newer),
    )
    .await;
    assert_eq!(
        mine(&app).await[0]["latest_invoice_status"],
        "payment_failed"
    );

    // Deleted is final: a later "updated" replayed from before cannot revive it.
    deliver(
        &app,
        &event(
            "evt_s3",
            "customer.subscription.deleted",
            t0 + 50,
            sub("canceled", false),
        ),
    )
    .await;
    deliver(
        &app,
        &event(
            "evt_s4",
            "customer.subscription.updated",
            t0 + 60,
            sub("active", false),
        ),
    )
    .await;
    assert_eq!(mine(&app).await[0]["status"], "canceled");

    // Unknown event types and unknown customers are acknowledged and change nothing.
    deliver(
        &app,
        &event("evt_x", "charge.refunded", t0, json!({ "id": "ch_1" })),
    )
    .await;
    deliver(
        &app,
        &event(
            "evt_y",
            "customer.subscription.created",
            t0,
            subscription_object("sub_orphan", "cus_nobody", &stripe_price, "active", false),
        ),
    )
    .await;
    let body = ok_json(app.get("/user-subscriptions").await, StatusCode::OK).await;
    assert_eq!(body["subscriptions"].as_array().unwrap().len(), 1);
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM billing_subscriptions WHERE user_id IS NULL")
            .await,
        1
    );
    fake.assert_clean();
}

async fn subscriptions_are_managed_and_owned(backend: Backend) {
    let (app, fake) = spawn(backend).await;
    user(&app, "gail", true).await;
    let product = create_product(&app, "Pro").await;
    let pid = product["id"].as_i64().unwrap();
    let monthly = create_price(&app, pid, json!(10), Some("month")).await;
    let yearly = create_price(&app, pid, json!(100), Some("year")).await;
    let one_time = create_price(&app, pid, json!(1), None).await;
    let owner = user(&app, "otto", false).await;
    user(&app, "nosy", false).await;

    as_user(&app, "gail").await;
    let res = app
        .post(
            "/create-subscription",
            json!({ "price_id": one_time["id"], "user_id": owner }),
        )
        .await;
    expect_error(res, StatusCode::BAD_REQUEST).await;
    let res = app
        .post(
            "/create-subscription",
            json!({ "price_id": monthly["id"], "user_id": 987654 }),
        )
        .await;
    expect_error(res, StatusCode::NOT_FOUND).await;
    let res = app
        .post(
            "/create-subscription",
            json!({ "price_id": monthly["id"], "user_id": owner }),
        )
        .await;
    let body = ok_json(res, StatusCode::CREATED).await;
    let sub = body["subscription"].clone();
    let sub_id = sub["id"].as_i64().unwrap();
    assert_eq!(
        sub["status"], "incomplete",
        "paid only when a webhook says so"
    );
    assert_eq!(sub["user_id"], owner);
    assert_eq!(sub["price_id"], monthly["id"]);
    let sent = fake.last("POST", "/v1/subscriptions");
    assert_eq!(sent.get("payment_behavior"), Some("default_incomplete"));
    assert_eq!(
        sent.get("items[0][price]"),
        monthly["stripe_price_id"].as_str()
    );
    assert_eq!(
        sent.get("metadata[user_id]"),
        Some(owner.to_string().as_str())
    );

    let res = app
        .post(
            "/update-subscription",
            json!({ "subscription_id": sub_id, "price_id": yearly["id"] }),
        )
        .await;
    assert_eq!(
        ok_json(res, StatusCode::OK).await["subscription"]["price_id"],
        yearly["id"]
    );
    let body = ok_json(app.get("/subscriptions").await, StatusCode::OK).await;
    assert_eq!(body["total"], 1);
    let body = ok_json(
        app.get("/user-email-subscriptions?email=OTTO@example.com")
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["subscriptions"].as_array().unwrap().len(), 1);
    let res = app
        .get("/user-email-subscriptions?email=ghost@example.com")
        .await;
    expect_error(res, StatusCode::NOT_FOUND).await;

    // Another user sees none of it and can cancel none of it.
    as_user(&app, "nosy").await;
    let body = ok_json(app.get("/user-subscriptions").await, StatusCode::OK).await;
    assert_eq!(body["subscriptions"], json!([]));
    expect_error(
        app.get(&format!("/user-subscriptions?user_id={owner}"))
            .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    expect_error(
        app.get("/user-email-subscriptions?email=otto@example.com")
            .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    expect_error(
        app.get(&format!("/subscription?id={sub_id}")).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    for path in ["/cancel-subscription", "/deactivate-subscription"] {
        let res = app.post(path, json!({ "subscription_id": sub_id })).await;
        expect_error(res, StatusCode::FORBIDDEN).await;
    }
    expect_error(
        app.get("/subscription?id=999999").await,
        StatusCode::NOT_FOUND,
    )
    .await;

    // The owner sees it, schedules its end, cannot undo that alone, cancels it.
    as_user(&app, "otto").await;
    let body = ok_json(app.get("/user-subscriptions").await, StatusCode::OK).await;
    assert_eq!(body["subscriptions"][0]["id"], sub_id);
    let body = ok_json(app.get("/user-email-subscriptions").await, StatusCode::OK).await;
    assert_eq!(body["email"], "otto@example.com");
    let body = ok_json(
        app.get(&format!("/subscription?id={sub_id}")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        body["subscription"]["stripe_subscription_id"],
        sub["stripe_subscription_id"]
    );
    let res = app
        .post(
            "/deactivate-subscription",
            json!({ "subscription_id": sub_id }),
        )
        .await;
    assert_eq!(
        ok_json(res, StatusCode::OK).await["subscription"]["cancel_at_period_end"],
        true
    );
    assert_eq!(
        fake.last("POST", "/v1/subscriptions/")
            .get("cancel_at_period_end"),
        Some("true")
    );
    let res = app
        .post(
            "/reactivate-subscription",
            json!({ "subscription_id": sub_id }),
        )
        .await;
    expect_error(res, StatusCode::FORBIDDEN).await;
    as_user(&app, "gail").await;
    let res = app
        .post(
            "/reactivate-subscription",
            json!({ "subscription_id": sub_id }),
        )
        .await;
    assert_eq!(
        ok_json(res, StatusCode::OK).await["subscription"]["cancel_at_period_end"],
        false
    );
    as_user(&app, "otto").await;
    let res = app
        .post("/cancel-subscription", json!({ "subscription_id": sub_id }))
        .await;
    let body = ok_json(res, StatusCode::OK).await;
    assert_eq!(body["subscription"]["status"], "canceled");
    assert!(body["subscription"]["canceled_at"].is_string());
    let res = app
        .post("/cancel-subscription", json!({ "subscription_id": sub_id }))
        .await;
    expect_error(res, StatusCode::CONFLICT).await;
    assert_eq!(fake.count("DELETE", "/v1/subscriptions/"), 1);

    // A manager deletes it from the lists; it is already canceled at Stripe.
    as_user(&app, "gail").await;
    let res = app
        .request(
            Method::DELETE,
            &format!("/delete-subscription?id={sub_id}"),
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(fake.count("DELETE", "/v1/subscriptions/"), 1);
    let body = ok_json(app.get("/subscriptions").await, StatusCode::OK).await;
    assert_eq!(body["total"], 0);
    expect_error(
        app.get(&format!("/subscription?id={sub_id}")).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    fake.assert_clean();
}

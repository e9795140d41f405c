//! Billing through the real server against the fake Stripe of `fake_stripe.rs`: the
//! old Next.js client's exact request bodies on every route and a key-by-key check of
//! the shapes and JSON types it reads (`billing-legacy.md` §1–§2), exact money, the
//! success page recording a paid session once, signed webhooks, the permission rules,
//! hostile input, and Stripe failing or out of reach.

use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::fake_stripe::{FakeStripe, SECRET_KEY};
use crate::helpers::{
    declared_oversized, expect_error, json, new_client, Backend, TestApp, PASSWORD,
};
use crate::on_both_databases;

on_both_databases!(
    billing_off_answers_503_and_nothing_else_changes,
    the_old_clients_product_pages,
    the_old_clients_price_pages_and_exact_money,
    the_old_clients_subscription_page,
    checkout_and_a_reloaded_success_page_make_one_order,
    success_and_cancel_redirect_when_configured,
    permission_refusals,
    hostile_input_is_a_contract_error_never_500,
    stripe_failures_leave_local_state_unchanged,
    stripe_unreachable_is_503_and_changes_nothing,
    a_retried_create_with_the_same_key_creates_once,
    webhook_signatures_are_checked,
    subscription_events_apply_in_stripe_order,
    the_documented_gets_conflicts_and_statuses,
);

pub(crate) const WEBHOOK_SECRET: &str = "whsec_test_gatehouse";

/// The app with billing on, against a fake Stripe of its own.
pub(crate) async fn spawn(backend: Backend) -> (TestApp, FakeStripe) {
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
pub(crate) async fn user(app: &TestApp, name: &str, manager: bool) -> i64 {
    let body = app.verified_user(name).await;
    let id = body["user"]["id"].as_i64().unwrap();
    if manager {
        sqlx::query("INSERT INTO roles (name) VALUES ('Billing')")
            .execute(app.state.db.writer())
            .await
            .ok();
        sqlx::query(
            "INSERT INTO role_permissions (role_id, permission_id) \
             SELECT r.id, p.id FROM roles r, permissions p \
             WHERE r.name = 'Billing' AND p.name = 'manage_billing' ON CONFLICT DO NOTHING",
        )
        .execute(app.state.db.writer())
        .await
        .unwrap();
        app.grant(id, "Billing").await;
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
    ok_json(res, StatusCode::CREATED).await
}

/// A price of the product with Stripe id `product`, recurring when `interval` is set.
async fn create_price(
    app: &TestApp,
    product: &Value,
    dollars: Value,
    interval: Option<&str>,
) -> Value {
    let res = app
        .post(
            "/create-price",
            json!({ "product_id": product["product_id"], "unit_amount": dollars, "currency": "usd",
                    "recurring": interval.map(|i| json!({ "interval": i })) }),
        )
        .await;
    ok_json(res, StatusCode::CREATED).await
}

/// A POST as the old client's proxies send the list calls: `Content-Type:
/// application/json` and no body at all.
async fn empty_post(app: &TestApp, path: &str) -> reqwest::Response {
    let token = app.csrf.lock().unwrap().clone().unwrap_or_default();
    app.client
        .post(app.url(path))
        .header("content-type", "application/json")
        .header("X-CSRFToken", token)
        .send()
        .await
        .unwrap()
}

/// The JSON types of a shape, key by key.
#[derive(Clone, Copy, Debug)]
enum T {
    Int,
    Num,
    Str,
    Bool,
    Obj,
    Arr,
    StrOrNull,
    BoolOrNull,
    ObjOrNull,
    ArrOrNull,
}

fn has_type(value: &Value, t: T) -> bool {
    match t {
        T::Int => value.is_i64(),
        T::Num => value.is_number(),
        T::Str => value.is_string(),
        T::Bool => value.is_boolean(),
        T::Obj => value.is_object(),
        T::Arr => value.is_array(),
        T::StrOrNull => value.is_string() || value.is_null(),
        T::BoolOrNull => value.is_boolean() || value.is_null(),
        T::ObjOrNull => value.is_object() || value.is_null(),
        T::ArrOrNull => value.is_array() || value.is_null(),
    }
}

/// Asserts that `value` has every key of `shape` with its JSON type (extra keys are
/// allowed by the contract).
fn assert_shape(value: &Value, shape: &[(&str, T)]) {
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"));
    for (key, t) in shape {
        let field = object
            .get(*key)
            .unwrap_or_else(|| panic!("`{key}` missing from {value}"));
        assert!(has_type(field, *t), "`{key}` is not {t:?} in {value}");
    }
}

/// `billing-legacy.md` §2.1.
const PRODUCT: [(&str, T); 18] = [
    ("id", T::Int),
    ("product_id", T::Str),
    ("name", T::Str),
    ("description", T::StrOrNull),
    ("active", T::Bool),
    ("attributes", T::ArrOrNull),
    ("caption", T::StrOrNull),
    ("images", T::Arr),
    ("livemode", T::Bool),
    ("product_metadata", T::Obj),
    ("package_dimensions", T::ObjOrNull),
    ("shippable", T::BoolOrNull),
    ("statement_descriptor", T::StrOrNull),
    ("type", T::Str),
    ("unit_label", T::StrOrNull),
    ("created_at", T::Str),
    ("updated_at", T::StrOrNull),
    ("url", T::StrOrNull),
];

/// `billing-legacy.md` §2.2.
const PRICE: [(&str, T); 17] = [
    ("id", T::Int),
    ("price_id", T::Str),
    ("product_id", T::Str),
    ("unit_amount", T::Num),
    ("currency", T::Str),
    ("recurring", T::ObjOrNull),
    ("active", T::Bool),
    ("billing_scheme", T::StrOrNull),
    ("created_at", T::Str),
    ("updated_at", T::StrOrNull),
    ("tiers", T::ArrOrNull),
    ("tiers_mode", T::StrOrNull),
    ("transform_quantity", T::ObjOrNull),
    ("lookup_key", T::StrOrNull),
    ("price_metadata", T::Obj),
    ("nickname", T::StrOrNull),
    ("type", T::Str),
];

/// `billing-legacy.md` §2.3.
const SUBSCRIPTION: [(&str, T); 9] = [
    ("id", T::Int),
    ("subscription_id", T::Str),
    ("user_id", T::Int),
    ("price_id", T::Str),
    ("status", T::Str),
    ("previous_status", T::StrOrNull),
    ("current_period_end", T::StrOrNull),
    ("trial_end", T::StrOrNull),
    ("created_at", T::Str),
];

async fn list(app: &TestApp, path: &str) -> Vec<Value> {
    let body = ok_json(empty_post(app, path).await, StatusCode::OK).await;
    body.as_array()
        .unwrap_or_else(|| panic!("{path} is not a bare array: {body}"))
        .clone()
}

pub(crate) fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

pub(crate) fn signature(secret: &str, t: i64, payload: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{payload}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

pub(crate) async fn deliver_raw(
    app: &TestApp,
    payload: &str,
    header: Option<String>,
) -> reqwest::Response {
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
pub(crate) async fn deliver(app: &TestApp, event: &Value) -> Value {
    let payload = event.to_string();
    let t = now();
    let header = format!("t={t},v1={}", signature(WEBHOOK_SECRET, t, &payload));
    ok_json(
        deliver_raw(app, &payload, Some(header)).await,
        StatusCode::OK,
    )
    .await
}

pub(crate) fn event(id: &str, kind: &str, created: i64, object: Value) -> Value {
    json!({
        "id": id, "object": "event", "type": kind, "created": created,
        "api_version": "2024-06-20", "livemode": false, "data": { "object": object },
    })
}

async fn mine(app: &TestApp) -> Vec<Value> {
    list(app, "/user-subscriptions").await
}

pub(crate) fn subscription_object(
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
        (Method::POST, "/products"),
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

/// The old client's product screens: `CreateProductForm`'s body (string booleans, the
/// literal "None" defaults), the lists by empty-body POST, `EditProduct` sending back
/// the whole object it was shown, and its DELETE with a JSON body.
async fn the_old_clients_product_pages(backend: Backend) {
    let (app, fake) = spawn(backend).await;
    user(&app, "manny", true).await;
    let res = app
        .post(
            "/create-product",
            json!({
                "name": "Gold", "active": "true", "attributes": ["fast", "safe"],
                "metadata": {}, "package_dimensions": null, "shippable": "false",
                "statement_descriptor": "None", "unit_label": "None", "url": "None",
                "description": "The best plan",
            }),
        )
        .await;
    let created = ok_json(res, StatusCode::CREATED).await;
    assert_shape(&created, &PRODUCT);
    let sent = fake.last("POST", "/v1/products");
    assert_eq!(sent.get("name"), Some("Gold"));
    assert_eq!(sent.get("active"), Some("true"));
    assert_eq!(sent.get("shippable"), Some("false"));
    // "None" is the form's empty value; attributes and caption are not Stripe's any more.
    assert_eq!(sent.get("url"), None);
    assert_eq!(sent.get("statement_descriptor"), None);
    assert_eq!(sent.get("attributes[0]"), None);
    let gold = created["product_id"].as_str().unwrap().to_owned();
    assert!(gold.starts_with("prod_"));
    assert_eq!(created["shippable"], false);
    assert_eq!(created["attributes"], Value::Null);
    assert_eq!(created["images"], json!([]));
    assert_eq!(created["type"], "service");

    let products = list(&app, "/products").await;
    assert_eq!(products.len(), 1);
    assert_shape(&products[0], &PRODUCT);
    assert_eq!(products[0]["product_id"], gold.as_str());
    let one = ok_json(
        app.post("/product", json!({ "product_id": gold })).await,
        StatusCode::OK,
    )
    .await;
    assert_shape(&one, &PRODUCT);
    assert_eq!(one["name"], "Gold");

    // EditProduct echoes the whole product with its edits: string booleans, the
    // comma-split attributes, product_metadata, and keys it must ignore.
    let mut echoed = products[0].clone();
    echoed["name"] = json!("Gold Plus");
    echoed["active"] = json!("");
    echoed["shippable"] = json!("true");
    echoed["attributes"] = json!(["a", "b"]);
    echoed["product_metadata"] = json!({ "tier": "2" });
    echoed["unit_label"] = json!("seat");
    echoed["url"] = json!("https://example.com/gold");
    echoed["mystery"] = json!({ "ignored": true });
    let edited = ok_json(app.post("/edit-product", echoed).await, StatusCode::OK).await;
    assert_shape(&edited, &PRODUCT);
    assert_eq!(edited["id"], created["id"]);
    assert_eq!(edited["name"], "Gold Plus");
    assert_eq!(edited["shippable"], true);
    assert_eq!(edited["active"], true, "\"\" leaves it as it was");
    assert_eq!(edited["product_metadata"], json!({ "tier": "2" }));
    assert_eq!(edited["unit_label"], "seat");
    assert_eq!(edited["url"], "https://example.com/gold");
    let sent = fake.last("POST", &format!("/v1/products/{gold}"));
    assert_eq!(sent.get("metadata[tier]"), Some("2"));
    assert_eq!(sent.get("active"), None);

    // DELETE with a JSON body archives: Stripe keeps the product, inactive.
    let res = app
        .request(
            Method::DELETE,
            "/delete-product",
            Some(json!({ "product_id": gold })),
        )
        .await;
    let body = ok_json(res, StatusCode::OK).await;
    assert_eq!(body, json!({ "message": "Product deleted successfully" }));
    assert_eq!(fake.count("DELETE", "/v1/products"), 0);
    assert_eq!(
        fake.last("POST", &format!("/v1/products/{gold}"))
            .get("active"),
        Some("false")
    );
    let products = list(&app, "/products").await;
    assert_eq!(products[0]["active"], false, "a manager still sees it");
    user(&app, "nina", false).await;
    assert_eq!(list(&app, "/products").await, Vec::<Value>::new());
    expect_error(
        app.post("/product", json!({ "product_id": gold })).await,
        StatusCode::NOT_FOUND,
    )
    .await;

    // One billing API, and /openapi.json says so from the route table.
    let doc = ok_json(app.get("/openapi.json").await, StatusCode::OK).await;
    let paths = &doc["paths"];
    for (path, method, policy) in [
        ("/products", "post", "logged in"),
        ("/prices", "post", "logged in"),
        ("/subscriptions", "post", "logged in"),
        ("/delete-product", "delete", "permission manage_billing"),
        ("/edit-price", "post", "permission manage_billing"),
        ("/checkout-success", "get", "public"),
    ] {
        assert_eq!(
            paths[path][method]["x-gatehouse-policy"], policy,
            "{method} {path}"
        );
    }
    assert!(paths["/edit-product"].get("put").is_none());
    assert!(paths["/delete-product"].get("post").is_none());
    fake.assert_clean();
}

/// `CreatePriceForm` sends dollars as the input's text; the Checkout page needs
/// `unit_amount` as a JSON number in dollars; `EditPrice` sends the whole price back
/// with `interval` added.
async fn the_old_clients_price_pages_and_exact_money(backend: Backend) {
    let (app, fake) = spawn(backend).await;
    user(&app, "pat", true).await;
    let product = create_product(&app, "Plans").await;
    let product_id = product["product_id"].as_str().unwrap();
    for (sent, cents, shown) in [
        (json!("19.99"), "1999", json!(19.99)),
        (json!(0.29), "29", json!(0.29)),
        (json!("999999.99"), "99999999", json!(999_999.99)),
        (json!(0), "0", json!(0.0)),
        (json!(10), "1000", json!(10.0)),
    ] {
        let res = app
            .post(
                "/create-price",
                json!({ "unit_amount": sent, "currency": "usd", "product_id": product_id,
                        "active": true, "billing_scheme": "per_unit" }),
            )
            .await;
        let price = ok_json(res, StatusCode::CREATED).await;
        assert_shape(&price, &PRICE);
        assert_eq!(
            fake.last("POST", "/v1/prices").get("unit_amount"),
            Some(cents)
        );
        assert_eq!(price["unit_amount"].as_f64(), shown.as_f64(), "{sent}");
        assert_eq!(price["type"], "one_time");
        assert_eq!(price["recurring"], Value::Null);
    }
    let prices = list(&app, "/prices").await;
    assert_eq!(prices.len(), 5);
    for price in &prices {
        assert_shape(price, &PRICE);
        assert_eq!(price["product_id"], product_id);
    }
    // Exactly as written, so the client's `.toFixed(2)` shows what was typed.
    assert_eq!(prices[0]["unit_amount"].to_string(), "19.99");
    assert_eq!(prices[1]["unit_amount"].to_string(), "0.29");
    assert_eq!(prices[2]["unit_amount"].to_string(), "999999.99");

    let monthly = create_price(&app, &product, json!("12.50"), Some("month")).await;
    assert_shape(&monthly, &PRICE);
    assert_eq!(monthly["type"], "recurring");
    assert_eq!(monthly["recurring"]["interval"], "month");
    let one = ok_json(
        app.post("/price", json!({ "price_id": monthly["price_id"] }))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(one["id"], monthly["id"]);
    let for_product = ok_json(
        app.post("/prices-for-product", json!({ "product_id": product_id }))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(for_product.as_array().unwrap().len(), 6);

    // EditPrice: the whole price with edits, plus `interval`; `product_id` is ignored.
    let old_price_id = monthly["price_id"].as_str().unwrap().to_owned();
    let mut echoed = monthly.clone();
    echoed["unit_amount"] = json!("19.99");
    echoed["interval"] = json!("year");
    echoed["product_id"] = json!("prod_elsewhere");
    echoed["lookup_key"] = json!("pro");
    echoed["price_metadata"] = json!({ "plan": "pro" });
    let before = fake.requests().len();
    let edited = ok_json(app.post("/edit-price", echoed).await, StatusCode::OK).await;
    assert_shape(&edited, &PRICE);
    assert_eq!(edited["id"], monthly["id"], "the local row keeps its id");
    assert_ne!(edited["price_id"], monthly["price_id"]);
    assert_eq!(edited["unit_amount"].to_string(), "19.99");
    assert_eq!(edited["recurring"]["interval"], "year");
    assert_eq!(edited["product_id"], product_id);
    assert_eq!(edited["lookup_key"], "pro");
    assert_eq!(edited["price_metadata"], json!({ "plan": "pro" }));
    // The new price is created before the old one is deactivated.
    let calls: Vec<_> = fake.requests()[before..]
        .iter()
        .map(|r| {
            (
                r.method.clone(),
                r.path.clone(),
                r.get("active").map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(
        calls,
        vec![
            (
                "POST".to_owned(),
                "/v1/prices".to_owned(),
                Some("true".to_owned())
            ),
            (
                "POST".to_owned(),
                format!("/v1/prices/{old_price_id}"),
                Some("false".to_owned())
            ),
        ]
    );
    // Editing again moves the lookup key along instead of colliding with it.
    let mut again = edited.clone();
    again["interval"] = json!("year");
    let again = ok_json(app.post("/edit-price", again).await, StatusCode::OK).await;
    assert_eq!(again["id"], monthly["id"]);
    assert_eq!(again["lookup_key"], "pro");
    let created = fake
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.path == "/v1/prices")
        .unwrap();
    assert_eq!(created.get("transfer_lookup_key"), Some("true"));

    // Deleting archives, at Stripe and here.
    let res = app
        .post(
            "/delete-price",
            json!({ "price_id": prices[0]["price_id"] }),
        )
        .await;
    let body = ok_json(res, StatusCode::OK).await;
    assert_eq!(body, json!({ "message": "Price deleted successfully" }));
    let listed = list(&app, "/prices").await;
    assert_eq!(listed.len(), 6, "archived, not deleted");
    assert_eq!(listed[0]["active"], false);
    // A user who does not manage billing sees the active prices only.
    user(&app, "quinn", false).await;
    let listed = list(&app, "/prices").await;
    assert_eq!(listed.len(), 5);
    assert!(listed.iter().all(|p| p["active"] == true));
    fake.assert_clean();
}

/// `CreateSubscription` and `EditSubscription`: ids as strings, `""` for reset fields,
/// a cleared trial as null; update acts on the subscription it names.
async fn the_old_clients_subscription_page(backend: Backend) {
    let (app, fake) = spawn(backend).await;
    let customer = user(&app, "cory", false).await;
    user(&app, "sue", true).await;
    let product = create_product(&app, "Club").await;
    let monthly = create_price(&app, &product, json!("9.99"), Some("month")).await;
    let yearly = create_price(&app, &product, json!("99"), Some("year")).await;

    let res = app
        .post(
            "/create-subscription",
            json!({ "price_id": monthly["price_id"], "trial_period_days": null,
                    "user_id": customer.to_string() }),
        )
        .await;
    let first = ok_json(res, StatusCode::CREATED).await;
    assert_shape(&first, &SUBSCRIPTION);
    assert_eq!(first["user_id"], customer);
    assert_eq!(first["price_id"], monthly["price_id"]);
    assert_eq!(first["status"], "incomplete");
    assert_eq!(first["previous_status"], Value::Null);
    assert_eq!(
        fake.last("POST", "/v1/subscriptions")
            .get("trial_period_days"),
        None
    );
    // By email, with a trial typed in.
    let res = app
        .post(
            "/create-subscription",
            json!({ "price_id": monthly["price_id"], "trial_period_days": 14,
                    "user_id": "", "email": "cory@example.com" }),
        )
        .await;
    let second = ok_json(res, StatusCode::CREATED).await;
    assert_eq!(second["user_id"], customer);
    assert_eq!(second["status"], "trialing");
    assert!(second["trial_end"].is_string());
    assert_eq!(
        fake.last("POST", "/v1/subscriptions")
            .get("trial_period_days"),
        Some("14")
    );
    let res = app
        .post(
            "/create-subscription",
            json!({ "price_id": monthly["price_id"], "user_id": "987654" }),
        )
        .await;
    expect_error(res, StatusCode::NOT_FOUND).await;

    let all = list(&app, "/subscriptions").await;
    assert_eq!(all.len(), 2);
    for s in &all {
        assert_shape(s, &SUBSCRIPTION);
    }

    // EditSubscription: all strings; the user picked by hand is not what decides.
    let res = app
        .post(
            "/update-subscription",
            json!({ "subscription_id": first["subscription_id"], "user_id": "",
                    "new_price_id": yearly["price_id"], "email": "" }),
        )
        .await;
    let updated = ok_json(res, StatusCode::OK).await;
    assert_shape(&updated, &SUBSCRIPTION);
    assert_eq!(updated["id"], first["id"]);
    assert_eq!(updated["price_id"], yearly["price_id"]);
    let sent = fake.last("POST", "/v1/subscriptions/");
    assert_eq!(
        sent.path,
        format!(
            "/v1/subscriptions/{}",
            first["subscription_id"].as_str().unwrap()
        )
    );
    let untouched = ok_json(
        app.post(
            "/subscription",
            json!({ "subscription_id": second["subscription_id"] }),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        untouched["price_id"], monthly["price_id"],
        "the other one is unchanged"
    );

    // The owner sees and cancels their own, at period end.
    as_user(&app, "cory").await;
    assert_eq!(list(&app, "/subscriptions").await.len(), 2);
    let res = app
        .post(
            "/cancel-subscription",
            json!({ "subscription_id": second["subscription_id"] }),
        )
        .await;
    let body = ok_json(res, StatusCode::OK).await;
    assert_eq!(
        body,
        json!({ "message": "Subscription will be canceled at period end" })
    );
    assert_eq!(
        fake.last("POST", "/v1/subscriptions/")
            .get("cancel_at_period_end"),
        Some("true")
    );
    let res = app
        .post(
            "/deactivate-subscription",
            json!({ "subscription_id": second["subscription_id"] }),
        )
        .await;
    ok_json(res, StatusCode::OK).await;
    // Undoing it is the manager's.
    let res = app
        .post(
            "/reactivate-subscription",
            json!({ "subscription_id": second["subscription_id"] }),
        )
        .await;
    expect_error(res, StatusCode::FORBIDDEN).await;

    // The manager deletes one: canceled at Stripe, gone from the lists.
    as_user(&app, "sue").await;
    let res = app
        .post(
            "/reactivate-subscription",
            json!({ "subscription_id": second["subscription_id"] }),
        )
        .await;
    let body = ok_json(res, StatusCode::OK).await;
    assert_eq!(
        body,
        json!({ "message": "Subscription reactivated successfully" })
    );
    assert_eq!(
        fake.last("POST", "/v1/subscriptions/")
            .get("cancel_at_period_end"),
        Some("false")
    );
    let res = app
        .post(
            "/delete-subscription",
            json!({ "subscription_id": first["subscription_id"] }),
        )
        .await;
    let body = ok_json(res, StatusCode::OK).await;
    assert_eq!(
        body,
        json!({ "message": "Subscription deleted successfully" })
    );
    assert_eq!(fake.count("DELETE", "/v1/subscriptions/"), 1);
    let left = list(&app, "/subscriptions").await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["subscription_id"], second["subscription_id"]);
    fake.assert_clean();
}

/// `CheckOutForm` posts `{price_id, user_id, quantity, mode: "payment"}` and follows
/// `checkout_url`; Stripe sends the browser to `/checkout-success`, which records the
/// paid session once however often it is loaded, and agrees with the webhook.
async fn checkout_and_a_reloaded_success_page_make_one_order(backend: Backend) {
    let (app, fake) = spawn(backend).await;
    user(&app, "mona", true).await;
    let product = create_product(&app, "Course").await;
    let price = create_price(&app, &product, json!("49.50"), None).await;
    let buyer = user(&app, "bob", false).await;
    let res = app
        .post(
            "/create-checkout-session",
            json!({ "price_id": price["price_id"], "user_id": buyer, "quantity": 2,
                    "mode": "payment" }),
        )
        .await;
    let body = ok_json(res, StatusCode::OK).await;
    assert_shape(&body, &[("checkout_url", T::Str)]);
    assert!(body["checkout_url"]
        .as_str()
        .unwrap()
        .starts_with("https://checkout.stripe.test/"));
    let session_id = body["session_id"].as_str().unwrap().to_owned();
    let sent = fake.last("POST", "/v1/checkout/sessions");
    assert_eq!(sent.get("mode"), Some("payment"));
    assert_eq!(sent.get("line_items[0][quantity]"), Some("2"));
    assert_eq!(sent.get("line_items[0][price]"), price["price_id"].as_str());
    assert_eq!(
        sent.get("client_reference_id"),
        Some(buyer.to_string().as_str())
    );
    assert!(sent
        .get("success_url")
        .unwrap()
        .contains("{CHECKOUT_SESSION_ID}"));
    // A quantity typed as text is fine; a mode that contradicts the price is not.
    let res = app
        .post(
            "/create-checkout-session",
            json!({ "price_id": price["price_id"], "quantity": "3" }),
        )
        .await;
    ok_json(res, StatusCode::OK).await;
    let res = app
        .post(
            "/create-checkout-session",
            json!({ "price_id": price["price_id"], "mode": "subscription" }),
        )
        .await;
    expect_error(res, StatusCode::BAD_REQUEST).await;
    assert_eq!(fake.count("POST", "/v1/customers"), 1);

    // Not paid yet: the page records nothing, however often it is loaded.
    let success = format!("/checkout-success?session_id={session_id}");
    let page = new_client();
    for _ in 0..2 {
        let res = page.get(app.url(&success)).send().await.unwrap();
        let body = ok_json(res, StatusCode::OK).await;
        assert_eq!(body["paid"], false);
    }
    assert_eq!(app.scalar("SELECT COUNT(*) FROM billing_orders").await, 0);
    // Paid at Stripe: the first load records the order, reloads add nothing.
    fake.pay(&session_id, 9900);
    for _ in 0..3 {
        let res = page.get(app.url(&success)).send().await.unwrap();
        let body = ok_json(res, StatusCode::OK).await;
        assert_eq!(body["paid"], true);
        assert_eq!(body["message"], "Success! Your payment was received.");
        assert!(body.get("session").is_none(), "no Stripe session details");
    }
    assert_eq!(app.scalar("SELECT COUNT(*) FROM billing_orders").await, 1);
    assert_eq!(
        app.scalar("SELECT amount_total FROM billing_orders").await,
        9900
    );
    // The webhook for the same session agrees and adds nothing either.
    let completed = event(
        "evt_checkout_1",
        "checkout.session.completed",
        now(),
        json!({
            "id": session_id, "object": "checkout.session", "mode": "payment",
            "payment_status": "paid", "status": "complete", "amount_total": 9900,
            "currency": "usd", "client_reference_id": buyer.to_string(),
        }),
    );
    let ack = deliver(&app, &completed).await;
    assert_eq!(ack["received"], true);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM billing_orders").await, 1);
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
    // No session id, an unknown one, or junk: errors in the contract's shape.
    for bad in [
        "/checkout-success".to_owned(),
        "/checkout-success?session_id=cs_test_unknown".to_owned(),
        "/checkout-success?session_id=../../x".to_owned(),
    ] {
        let res = page.get(app.url(&bad)).send().await.unwrap();
        assert!(res.status().is_client_error(), "{bad}: {}", res.status());
        assert!(json(res).await["message"].is_string());
    }
    let res = page.get(app.url("/checkout-cancel")).send().await.unwrap();
    let body = ok_json(res, StatusCode::OK).await;
    assert_eq!(body["message"], "Payment cancelled.");
    fake.assert_clean();
}

async fn success_and_cancel_redirect_when_configured(backend: Backend) {
    let fake = FakeStripe::start().await;
    let app = TestApp::spawn_with(
        backend,
        &[
            ("STRIPE_PRIVATE_KEY", SECRET_KEY),
            ("STRIPE_API_BASE", fake.url.as_str()),
            (
                "CHECKOUT_SUCCESS_URL",
                "http://localhost:3000/paid?session={CHECKOUT_SESSION_ID}",
            ),
            ("CHECKOUT_CANCEL_URL", "http://localhost:3000/cancelled"),
        ],
    )
    .await;
    user(&app, "rita", true).await;
    let product = create_product(&app, "Book").await;
    let price = create_price(&app, &product, json!(5), None).await;
    let body = ok_json(
        app.post(
            "/create-checkout-session",
            json!({ "price_id": price["price_id"] }),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let session_id = body["session_id"].as_str().unwrap().to_owned();
    fake.pay(&session_id, 500);
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for _ in 0..2 {
        let res = browser
            .get(app.url(&format!("/checkout-success?session_id={session_id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            res.headers()["location"],
            format!("http://localhost:3000/paid?session={session_id}").as_str()
        );
    }
    assert_eq!(app.scalar("SELECT COUNT(*) FROM billing_orders").await, 1);
    let res = browser
        .get(app.url("/checkout-cancel"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "http://localhost:3000/cancelled");
    fake.assert_clean();
}

/// Without a session every route but the Stripe-facing ones is 401; without
/// `manage_billing` the managing ones are 403, and a user acts only for themself.
async fn permission_refusals(backend: Backend) {
    let (app, fake) = spawn(backend).await;
    let managed = [
        (Method::POST, "/create-product"),
        (Method::POST, "/edit-product"),
        (Method::DELETE, "/delete-product"),
        (Method::POST, "/create-price"),
        (Method::POST, "/edit-price"),
        (Method::POST, "/delete-price"),
        (Method::POST, "/create-subscription"),
        (Method::POST, "/update-subscription"),
        (Method::POST, "/reactivate-subscription"),
        (Method::POST, "/delete-subscription"),
    ];
    let logged_in = [
        (Method::POST, "/products"),
        (Method::POST, "/product"),
        (Method::POST, "/prices"),
        (Method::POST, "/price"),
        (Method::POST, "/prices-for-product"),
        (Method::POST, "/subscriptions"),
        (Method::POST, "/subscription"),
        (Method::POST, "/user-subscriptions"),
        (Method::POST, "/user-email-subscriptions"),
        (Method::POST, "/cancel-subscription"),
        (Method::POST, "/deactivate-subscription"),
        (Method::POST, "/create-checkout-session"),
    ];
    for (method, path) in managed.iter().chain(logged_in.iter()) {
        let res = app.request(method.clone(), path, Some(json!({}))).await;
        expect_error(res, StatusCode::UNAUTHORIZED).await;
    }
    let owner = user(&app, "olga", false).await;
    for (method, path) in &managed {
        let res = app.request(method.clone(), path, Some(json!({}))).await;
        let message = expect_error(res, StatusCode::FORBIDDEN).await;
        assert_eq!(message, "Unauthorized access", "{path}");
    }
    user(&app, "max", true).await;
    let product = create_product(&app, "Pro").await;
    let price = create_price(&app, &product, json!(3), Some("month")).await;
    let res = app
        .post(
            "/create-subscription",
            json!({ "price_id": price["price_id"], "user_id": owner }),
        )
        .await;
    let theirs = ok_json(res, StatusCode::CREATED).await;

    // Another user may not see, cancel or buy for the owner.
    user(&app, "mallory", false).await;
    assert_eq!(list(&app, "/subscriptions").await, Vec::<Value>::new());
    for path in [
        "/subscription",
        "/cancel-subscription",
        "/deactivate-subscription",
    ] {
        let res = app
            .post(
                path,
                json!({ "subscription_id": theirs["subscription_id"] }),
            )
            .await;
        expect_error(res, StatusCode::FORBIDDEN).await;
    }
    for body in [
        json!({ "user_id": owner }),
        json!({ "user_id": owner.to_string() }),
        json!({ "email": "olga@example.com" }),
    ] {
        let res = app.post("/user-subscriptions", body.clone()).await;
        expect_error(res, StatusCode::FORBIDDEN).await;
        let mut checkout = body.clone();
        checkout["price_id"] = price["price_id"].clone();
        let res = app.post("/create-checkout-session", checkout).await;
        expect_error(res, StatusCode::FORBIDDEN).await;
    }
    assert_eq!(fake.count("POST", "/v1/checkout/sessions"), 0);
    // The owner sees their own.
    as_user(&app, "olga").await;
    let own = list(&app, "/subscriptions").await;
    assert_eq!(own.len(), 1);
    let by_id = ok_json(
        app.post("/user-subscriptions", json!({ "user_id": owner }))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(by_id.as_array().unwrap().len(), 1);
    fake.assert_clean();
}

/// Wrong types, huge strings, negative and overflowing numbers: a 400 (or 404 for an
/// id that names nothing) in the contract's shape, never a 500, and Stripe never
/// called.
async fn hostile_input_is_a_contract_error_never_500(backend: Backend) {
    let (app, fake) = spawn(backend).await;
    user(&app, "hana", true).await;
    let product = create_product(&app, "Base").await;
    let price = create_price(&app, &product, json!(1), Some("month")).await;
    let prod = product["product_id"].clone();
    let pri = price["price_id"].clone();
    let calls = fake.requests().len();
    let huge = "x".repeat(100_000);
    let cases: Vec<(Method, &str, Value)> = vec![
        (Method::POST, "/create-product", json!({})),
        (Method::POST, "/create-product", json!({ "name": 5 })),
        (Method::POST, "/create-product", json!({ "name": huge })),
        (
            Method::POST,
            "/create-product",
            json!({ "name": "N", "active": "maybe" }),
        ),
        (
            Method::POST,
            "/create-product",
            json!({ "name": "N", "shippable": 1 }),
        ),
        (
            Method::POST,
            "/create-product",
            json!({ "name": "N", "metadata": [1] }),
        ),
        (
            Method::POST,
            "/create-product",
            json!({ "name": "N", "images": ["javascript:x"] }),
        ),
        (
            Method::POST,
            "/create-product",
            json!({ "name": "a\u{0}b" }),
        ),
        (Method::POST, "/edit-product", json!({ "name": "N" })),
        (
            Method::POST,
            "/edit-product",
            json!({ "product_id": 7, "name": "N" }),
        ),
        (
            Method::POST,
            "/edit-product",
            json!({ "product_id": "../x", "name": "N" }),
        ),
        (
            Method::DELETE,
            "/delete-product",
            json!({ "product_id": ["x"] }),
        ),
        (Method::POST, "/product", json!({ "product_id": huge })),
        (
            Method::POST,
            "/create-price",
            json!({ "product_id": prod, "currency": "usd" }),
        ),
        (
            Method::POST,
            "/create-price",
            json!({ "product_id": prod, "unit_amount": "-1", "currency": "usd" }),
        ),
        (
            Method::POST,
            "/create-price",
            json!({ "product_id": prod, "unit_amount": -5, "currency": "usd" }),
        ),
        (
            Method::POST,
            "/create-price",
            json!({ "product_id": prod, "unit_amount": "1.999", "currency": "usd" }),
        ),
        (
            Method::POST,
            "/create-price",
            json!({ "product_id": prod, "unit_amount": "1e3", "currency": "usd" }),
        ),
        (
            Method::POST,
            "/create-price",
            json!({ "product_id": prod, "unit_amount": 1e300, "currency": "usd" }),
        ),
        (
            Method::POST,
            "/create-price",
            json!({ "product_id": prod, "unit_amount": "99999999999999999999", "currency": "usd" }),
        ),
        (
            Method::POST,
            "/create-price",
            json!({ "product_id": prod, "unit_amount": true, "currency": "usd" }),
        ),
        (
            Method::POST,
            "/create-price",
            json!({ "product_id": prod, "unit_amount": 1, "currency": "dollars" }),
        ),
        (
            Method::POST,
            "/create-price",
            json!({ "product_id": prod, "unit_amount": 1, "currency": "jpy" }),
        ),
        (
            Method::POST,
            "/create-price",
            json!({ "product_id": prod, "unit_amount": 1, "currency": "usd", "recurring": { "interval": "fortnight" } }),
        ),
        (
            Method::POST,
            "/create-price",
            json!({ "product_id": prod, "unit_amount": 1, "currency": "usd", "billing_scheme": "tiered" }),
        ),
        (
            Method::POST,
            "/edit-price",
            json!({ "price_id": pri, "unit_amount": 1, "currency": "usd", "type": "recurring" }),
        ),
        (
            Method::POST,
            "/create-subscription",
            json!({ "price_id": pri, "trial_period_days": -1 }),
        ),
        (
            Method::POST,
            "/create-subscription",
            json!({ "price_id": pri, "trial_period_days": "many" }),
        ),
        (
            Method::POST,
            "/create-subscription",
            json!({ "price_id": pri, "trial_period_days": 9_223_372_036_854_775_808u64 }),
        ),
        (
            Method::POST,
            "/create-subscription",
            json!({ "price_id": pri, "user_id": "7x" }),
        ),
        (
            Method::POST,
            "/create-subscription",
            json!({ "price_id": pri, "user_id": 1.5 }),
        ),
        (
            Method::POST,
            "/update-subscription",
            json!({ "new_price_id": pri }),
        ),
        (Method::POST, "/create-checkout-session", json!({})),
        (
            Method::POST,
            "/create-checkout-session",
            json!({ "price_id": pri, "quantity": 0 }),
        ),
        (
            Method::POST,
            "/create-checkout-session",
            json!({ "price_id": pri, "quantity": "-3" }),
        ),
        (
            Method::POST,
            "/create-checkout-session",
            json!({ "price_id": pri, "quantity": 1_000_000 }),
        ),
        (
            Method::POST,
            "/create-checkout-session",
            json!({ "price_id": pri, "quantity": [] }),
        ),
        (
            Method::POST,
            "/user-email-subscriptions",
            json!({ "email": huge }),
        ),
    ];
    for (method, path, body) in cases {
        let res = app.request(method.clone(), path, Some(body.clone())).await;
        let status = res.status();
        let answer = json(res).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{method} {path} {body}: {answer}"
        );
        assert_eq!(answer["success"], false);
        assert_eq!(answer["message"], answer["error"]);
    }
    // Ids that name nothing are 404.
    for (method, path, body) in [
        (
            Method::POST,
            "/product",
            json!({ "product_id": "prod_nothing" }),
        ),
        (
            Method::POST,
            "/price",
            json!({ "price_id": "price_nothing" }),
        ),
        (
            Method::POST,
            "/subscription",
            json!({ "subscription_id": "sub_nothing" }),
        ),
        (
            Method::DELETE,
            "/delete-product",
            json!({ "product_id": "prod_nothing" }),
        ),
        (
            Method::POST,
            "/create-checkout-session",
            json!({ "price_id": "price_nothing" }),
        ),
    ] {
        let res = app.request(method.clone(), path, Some(body.clone())).await;
        expect_error(res, StatusCode::NOT_FOUND).await;
    }
    // Bodies that are not JSON objects.
    for raw in ["[1]", "\"x\"", "{\"name\": ", "null"] {
        let token = app.csrf.lock().unwrap().clone().unwrap();
        let res = app
            .client
            .post(app.url("/create-product"))
            .header("content-type", "application/json")
            .header("X-CSRFToken", token)
            .body(raw)
            .send()
            .await
            .unwrap();
        expect_error(res, StatusCode::BAD_REQUEST).await;
    }
    assert_eq!(fake.requests().len(), calls, "Stripe was never called");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM billing_products").await, 1);
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
            json!({ "product_id": product["product_id"], "unit_amount": 3, "currency": "usd" }),
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
            json!({ "product_id": product["product_id"], "name": "Changed" }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    assert!(!json(res).await.to_string().contains("sk_live"));

    fake.fail_next(404, "invalid_request_error", "No such product: 'prod_x'");
    let res = app
        .post(
            "/edit-product",
            json!({ "product_id": product["product_id"], "name": "Changed" }),
        )
        .await;
    assert_eq!(json(res).await["code"], "stripe_not_found");

    assert_eq!(app.scalar("SELECT COUNT(*) FROM billing_prices").await, 0);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM billing_products").await, 1);
    let body = ok_json(
        app.post("/product", json!({ "product_id": product["product_id"] }))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["name"], "Keep");

    // A declined card during checkout is 402, and opens no local session.
    let price = create_price(&app, &product, json!(1), None).await;
    fake.fail_next(402, "card_error", "Your card was declined.");
    // The first Stripe call of a checkout creates the customer.
    let res = app
        .post(
            "/create-checkout-session",
            json!({ "price_id": price["price_id"] }),
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
    assert_eq!(list(&app, "/products").await, Vec::<Value>::new());
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
    assert_eq!(first["id"], second["id"]);
    let posts: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v1/products")
        .collect();
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[0].idempotency_key, posts[1].idempotency_key);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM billing_products").await, 1);
    let third = ok_json(send("retry-2").await.unwrap(), StatusCode::CREATED).await;
    assert_ne!(first["id"], third["id"]);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM billing_products").await, 2);
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
    let price = create_price(&app, &product, json!(12), Some("month")).await;
    let stripe_price = price["price_id"].as_str().unwrap().to_owned();
    let buyer = user(&app, "sam", false).await;
    // Checking out links the buyer to a Stripe customer.
    app.post(
        "/create-checkout-session",
        json!({ "price_id": price["price_id"] }),
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
    assert_eq!(list[0]["price_id"], price["price_id"]);
    assert_shape(&list[0], &SUBSCRIPTION);

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
    assert_eq!(mine(&app).await.len(), 1);
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM billing_subscriptions WHERE user_id IS NULL")
            .await,
        1
    );
    fake.assert_clean();
}

/// What `/openapi.json` documents beyond the old client's calls: every list and lookup
/// answers GET (lookups named in the query string), a list's POST takes `{}` as well
/// as no body, `/user-email-subscriptions` answers as `/user-subscriptions`, and a
/// canceled subscription is 409 for what only a live one can do. Each status met here
/// is one the document lists for that operation.
async fn the_documented_gets_conflicts_and_statuses(backend: Backend) {
    let (app, fake) = spawn(backend).await;
    let doc = ok_json(app.get("/openapi.json").await, StatusCode::OK).await;
    let documented = |method: &str, path: &str, status: StatusCode| {
        let op = &doc["paths"][path][method.to_ascii_lowercase()];
        assert!(
            op["responses"][status.as_str()].is_object(),
            "{method} {path} does not document {status}"
        );
    };
    let buyer = user(&app, "gail", false).await;
    user(&app, "hank", true).await;
    let product = create_product(&app, "Docs").await;
    let monthly = create_price(&app, &product, json!("5"), Some("month")).await;
    let yearly = create_price(&app, &product, json!(50), Some("year")).await;
    let pid = product["product_id"].as_str().unwrap();
    let price = monthly["price_id"].as_str().unwrap();

    for path in ["/products", "/prices", "/subscriptions"] {
        let res = app.get(path).await;
        documented("GET", path, res.status());
        assert!(ok_json(res, StatusCode::OK).await.is_array(), "GET {path}");
        let res = app.post(path, json!({})).await;
        documented("POST", path, res.status());
        assert!(
            ok_json(res, StatusCode::OK).await.is_array(),
            "POST {path} {{}}"
        );
    }
    for (path, key) in [
        (format!("/product?product_id={pid}"), "product_id"),
        (format!("/price?price_id={price}"), "price_id"),
    ] {
        let res = app.get(&path).await;
        let body = ok_json(res, StatusCode::OK).await;
        assert!(body[key].is_string(), "{path}");
    }
    let res = app
        .get(&format!("/prices-for-product?product_id={pid}"))
        .await;
    assert_eq!(
        ok_json(res, StatusCode::OK).await.as_array().unwrap().len(),
        2
    );
    for path in ["/product", "/price", "/prices-for-product"] {
        let key = if path == "/price" {
            "price_id"
        } else {
            "product_id"
        };
        let res = app.get(&format!("{path}?{key}=x_nothing")).await;
        documented("GET", path, res.status());
        expect_error(res, StatusCode::NOT_FOUND).await;
        let res = app.get(path).await;
        documented("GET", path, res.status());
        expect_error(res, StatusCode::BAD_REQUEST).await;
    }

    // A subscription, then Stripe says it is canceled.
    let res = app
        .post(
            "/create-subscription",
            json!({ "price_id": price, "user_id": buyer }),
        )
        .await;
    let sub = ok_json(res, StatusCode::CREATED).await;
    let sub_id = sub["subscription_id"].as_str().unwrap();
    let res = app
        .post(
            "/user-email-subscriptions",
            json!({ "email": "gail@example.com" }),
        )
        .await;
    documented("POST", "/user-email-subscriptions", res.status());
    assert_eq!(
        ok_json(res, StatusCode::OK).await.as_array().unwrap().len(),
        1
    );
    let res = app
        .post(
            "/user-email-subscriptions",
            json!({ "email": "nobody@example.com" }),
        )
        .await;
    documented("POST", "/user-email-subscriptions", res.status());
    expect_error(res, StatusCode::NOT_FOUND).await;
    let res = app
        .post("/user-subscriptions", json!({ "user_id": "987654" }))
        .await;
    documented("POST", "/user-subscriptions", res.status());
    expect_error(res, StatusCode::NOT_FOUND).await;
    let customer: String =
        sqlx::query_scalar("SELECT stripe_customer_id FROM billing_subscriptions")
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
    deliver(
        &app,
        &event(
            "evt_docs_deleted",
            "customer.subscription.deleted",
            now() + 5,
            subscription_object(sub_id, &customer, price, "canceled", false),
        ),
    )
    .await;
    for (path, body) in [
        ("/cancel-subscription", json!({ "subscription_id": sub_id })),
        (
            "/deactivate-subscription",
            json!({ "subscription_id": sub_id }),
        ),
        (
            "/reactivate-subscription",
            json!({ "subscription_id": sub_id }),
        ),
        (
            "/update-subscription",
            json!({ "subscription_id": sub_id, "new_price_id": yearly["price_id"] }),
        ),
    ] {
        let res = app.post(path, body).await;
        documented("POST", path, res.status());
        expect_error(res, StatusCode::CONFLICT).await;
    }
    // Deleting a canceled one only takes it off the lists.
    let res = app
        .post("/delete-subscription", json!({ "subscription_id": sub_id }))
        .await;
    documented("POST", "/delete-subscription", res.status());
    ok_json(res, StatusCode::OK).await;
    assert_eq!(list(&app, "/subscriptions").await, Vec::<Value>::new());

    // The success page: no id is 400, an id not opened here 404.
    let page = new_client();
    for (query, status) in [
        ("", StatusCode::BAD_REQUEST),
        ("?session_id=cs_test_unknown", StatusCode::NOT_FOUND),
    ] {
        let res = page
            .get(app.url(&format!("/checkout-success{query}")))
            .send()
            .await
            .unwrap();
        documented("GET", "/checkout-success", res.status());
        expect_error(res, status).await;
    }

    // A body that is not JSON, or too large: what the route table adds for a body.
    let token = app.csrf.lock().unwrap().clone().unwrap();
    let calls = fake.requests().len();
    for (content_type, body, status) in [(
        "text/plain",
        "name=Plain".to_owned(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )] {
        let res = app
            .client
            .post(app.url("/create-product"))
            .header("content-type", content_type)
            .header("X-CSRFToken", &token)
            .body(body)
            .send()
            .await
            .unwrap();
        documented("POST", "/create-product", res.status());
        expect_error(res, status).await;
    }
    let (status, body) =
        declared_oversized(&app.url(""), &reqwest::Method::POST, "/create-product").await;
    documented(
        "POST",
        "/create-product",
        StatusCode::from_u16(status).unwrap(),
    );
    assert_eq!(status, 413, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["code"],
        "payload_too_large",
        "{body}"
    );
    assert_eq!(fake.requests().len(), calls, "Stripe was never called");
    fake.assert_clean();
}

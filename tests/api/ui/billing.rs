//! The billing pages on the real server against the fake Stripe: a buyer's walk
//! without JavaScript (plans, checkout to Stripe's page, the success page, the
//! subscription listed, cancelled at period end), a manager's (products, prices, a
//! changed amount, archiving, filtered subscriptions, webhook events), 403 pages for
//! a plain user, 4xx pages for bad input, the page billing-off shows, and Chromium
//! photographs of every screen.

use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Sha256;

use super::browser::Browser;
use super::forms::{signed_in, Walker};
use crate::billing::{spawn, user, WEBHOOK_SECRET};
use crate::fake_stripe::FakeStripe;
use crate::helpers::{new_client, Backend, TestApp, PASSWORD};
use crate::on_both_databases;

on_both_databases!(
    a_buyer_subscribes_and_cancels_without_javascript,
    a_manager_runs_billing_without_javascript,
    a_plain_user_gets_403_pages_on_the_billing_admin_pages,
    bad_input_on_the_billing_pages_answers_4xx_pages,
    billing_off_is_a_page_that_says_so,
);

/// A product and a price through the JSON routes, as the app's client (a manager).
async fn product_with_price(
    app: &TestApp,
    name: &str,
    dollars: &str,
    interval: Option<&str>,
) -> (Value, Value) {
    let res = app
        .post(
            "/create-product",
            json!({ "name": name, "description": "A plan" }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let product: Value = res.json().await.unwrap();
    let price = add_price(app, &product, dollars, interval).await;
    (product, price)
}

async fn add_price(app: &TestApp, product: &Value, dollars: &str, interval: Option<&str>) -> Value {
    let res = app
        .post(
            "/create-price",
            json!({ "product_id": product["product_id"], "unit_amount": dollars, "currency": "usd",
                    "recurring": interval.map(|i| json!({ "interval": i })) }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json().await.unwrap()
}

/// The last price Stripe was asked to create.
fn created_price(fake: &FakeStripe) -> crate::fake_stripe::Recorded {
    fake.requests()
        .into_iter()
        .rev()
        .find(|r| r.method == "POST" && r.path == "/v1/prices")
        .expect("a price was created")
}

/// Delivers an event signed with the webhook secret, now.
async fn deliver(app: &TestApp, id: &str, kind: &str, object: Value) {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let payload = json!({
        "id": id, "object": "event", "type": kind, "created": now,
        "api_version": "2024-06-20", "livemode": false, "data": { "object": object },
    })
    .to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(format!("{now}.{payload}").as_bytes());
    let signature = hex::encode(mac.finalize().into_bytes());
    let res = new_client()
        .post(app.url("/stripe/webhook"))
        .header("content-type", "application/json")
        .header("Stripe-Signature", format!("t={now},v1={signature}"))
        .body(payload)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "{}",
        res.text().await.unwrap()
    );
}

/// A subscription of `user_id` to `price` made at Stripe through the JSON route, as
/// a manager; returns its Stripe id. The app's client is left signed in as mona.
async fn stripe_subscription(app: &TestApp, user_id: i64, price: &str) -> String {
    app.login("mona", PASSWORD).await;
    let res = app
        .post(
            "/create-subscription",
            json!({ "price_id": price, "user_id": user_id }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.unwrap();
    body["subscription_id"].as_str().unwrap().to_owned()
}

fn subscription(id: &str, customer: &str, price: &str, status: &str, user_id: i64) -> Value {
    json!({
        "id": id, "object": "subscription", "customer": customer, "status": status,
        "cancel_at_period_end": false, "current_period_end": 1_900_000_000,
        "items": { "object": "list", "data": [ { "id": format!("si_{id}"), "price": { "id": price } } ] },
        "metadata": { "user_id": user_id.to_string() },
    })
}

async fn a_buyer_subscribes_and_cancels_without_javascript(backend: Backend) {
    let (app, fake) = spawn(backend).await;
    user(&app, "mona", true).await;
    let (_, monthly) = product_with_price(&app, "Pro", "9.99", Some("month")).await;
    let (course, once) = product_with_price(&app, "Course", "1234.5", None).await;
    let bob = user(&app, "bob", false).await;
    let mut w = signed_in(&app, "bob").await;

    w.follow("Billing").await;
    assert_eq!(w.path, "/ui/billing");
    w.sees("$9.99");
    w.sees("per month");
    w.sees("$1,234.50");
    w.sees("once");
    w.sees("You have no subscriptions.");
    assert!(!w.html.contains("Webhook events"), "no management tabs");
    // The page with its stylesheet and script stays under the 60 KB budget.
    let mut weight = w.html.len();
    for asset in w.html.split("\"/ui/static/").skip(1) {
        let path = format!("/ui/static/{}", asset.split('"').next().unwrap());
        let res = new_client().get(app.url(&path)).send().await.unwrap();
        weight += res.bytes().await.unwrap().len();
    }
    assert!(weight < 60 * 1024, "the plans page weighs {weight} bytes");

    // Subscribing sends the browser to Stripe's checkout page, opened for bob.
    let monthly_id = monthly["price_id"].as_str().unwrap();
    w.submit("/ui/billing/checkout", &[("price_id", monthly_id)])
        .await;
    assert_eq!(w.status, StatusCode::SEE_OTHER);
    assert!(
        w.path
            .starts_with("https://checkout.stripe.test/c/pay/cs_test_"),
        "{}",
        w.path
    );
    let session = w.path.rsplit('/').next().unwrap().to_owned();
    let sent = fake.last("POST", "/v1/checkout/sessions");
    assert_eq!(sent.get("mode"), Some("subscription"));
    assert_eq!(sent.get("line_items[0][price]"), Some(monthly_id));
    assert_eq!(
        sent.get("client_reference_id"),
        Some(bob.to_string().as_str())
    );
    let success = sent.get("success_url").unwrap().to_owned();
    assert!(sent
        .get("cancel_url")
        .unwrap()
        .ends_with("/ui/billing/cancel"));
    let logged = app
        .scalar("SELECT COUNT(*) FROM activity_logs WHERE message = 'checkout started'")
        .await;
    assert_eq!(logged, 1, "the JSON route's activity entry");

    // Stripe sends the browser back; the paid session is recorded once, however
    // often the page is loaded.
    let back = &success[success.find("/ui/billing/success").unwrap()..]
        .replace("{CHECKOUT_SESSION_ID}", &session);
    // Before Stripe says it is paid, the page says so and records nothing.
    w.open(back).await;
    assert_eq!(w.status, StatusCode::OK);
    w.sees("Your payment is not confirmed yet");
    let orders = app.scalar("SELECT COUNT(*) FROM billing_orders").await;
    assert_eq!(orders, 0);
    fake.pay(&session, 999);
    w.open(back).await;
    assert_eq!(w.status, StatusCode::OK);
    w.sees("Your payment was received");
    w.sees("the subscription appears in your list as soon as Stripe confirms it");
    w.open(back).await;
    w.sees("Your payment was received");
    let orders = app
        .scalar(&format!(
            "SELECT COUNT(*) FROM billing_orders WHERE stripe_session_id = '{session}'"
        ))
        .await;
    assert_eq!(orders, 1);
    // Nobody else's browser can land on bob's session.
    user(&app, "eve", false).await;
    let mut eve = signed_in(&app, "eve").await;
    eve.open(back).await;
    assert_eq!(eve.status, StatusCode::NOT_FOUND);

    // Stripe reports the subscription; it is listed with its status and period end.
    // (The fake's checkout makes no subscription: one is made there for bob through
    // the JSON route, then reported active.)
    let sub = stripe_subscription(&app, bob, monthly_id).await;
    let customer = fake.last("POST", "/v1/checkout/sessions");
    let customer = customer.get("customer").unwrap();
    deliver(
        &app,
        "evt_ui_1",
        "customer.subscription.updated",
        subscription(&sub, customer, monthly_id, "active", bob),
    )
    .await;
    w.open("/ui/billing").await;
    w.sees("Pro · $9.99 per month");
    w.sees(">active<");
    w.sees("2030-03-17");

    // Cancelling at period end asks first, on a page of its own.
    w.follow("Cancel<span").await;
    let local = app
        .scalar(&format!(
            "SELECT id FROM billing_subscriptions WHERE stripe_subscription_id = '{sub}'"
        ))
        .await;
    assert_eq!(w.path, format!("/ui/billing/subscriptions/{local}/cancel"));
    w.sees("Cancel this subscription?");
    w.sees("The subscription to Pro · $9.99 per month stays active until 2030-03-17");
    // Another user may not see or cancel it.
    eve.open(&w.path).await;
    assert_eq!(eve.status, StatusCode::FORBIDDEN);
    w.submit(&format!("/ui/billing/subscriptions/{local}/cancel"), &[])
        .await;
    assert_eq!(w.path, "/ui/billing");
    w.sees("The subscription will end at the close of its paid period.");
    w.sees("ends at period end");
    assert!(!w
        .html
        .contains(&format!("/ui/billing/subscriptions/{local}/cancel")));
    let sent = fake.last("POST", &format!("/v1/subscriptions/{sub}"));
    assert_eq!(sent.get("cancel_at_period_end"), Some("true"));
    let logged = app
        .scalar("SELECT COUNT(*) FROM activity_logs WHERE message = 'cancel_at_period_end'")
        .await;
    assert_eq!(logged, 1);

    // The cancel landing page changes nothing.
    w.open("/ui/billing/cancel").await;
    w.sees("Nothing was bought");

    // A one-time purchase goes the same way, in payment mode.
    w.open("/ui/billing").await;
    let once_id = once["price_id"].as_str().unwrap();
    w.submit("/ui/billing/checkout", &[("price_id", once_id)])
        .await;
    let session = w.path.rsplit('/').next().unwrap().to_owned();
    assert_eq!(
        fake.last("POST", "/v1/checkout/sessions").get("mode"),
        Some("payment")
    );
    fake.pay(&session, 123_450);
    w.open(&format!("/ui/billing/success?session_id={session}"))
        .await;
    w.sees("Your purchase is recorded.");
    assert!(!w.html.contains("subscription appears"));

    // A card Stripe declines comes back as the reason, on the plans page.
    fake.fail_next(402, "card_error", "Your card was declined");
    w.open("/ui/billing").await;
    w.submit("/ui/billing/checkout", &[("price_id", monthly_id)])
        .await;
    assert_eq!(w.path, "/ui/billing");
    w.sees("Refused: Stripe refused the request: Your card was declined");

    // A price archived meanwhile is refused with the rule's reason.
    app.login("mona", PASSWORD).await;
    let res = app
        .request(
            Method::DELETE,
            "/delete-product",
            Some(json!({ "product_id": course["product_id"] })),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    w.open("/ui/billing").await;
    w.submit(
        "/ui/billing/checkout",
        &[("price_id", once["price_id"].as_str().unwrap())],
    )
    .await;
    assert_eq!(w.path, "/ui/billing");
    w.sees("Refused: This price is no longer available");
    assert!(
        !w.html.contains("$1,234.50"),
        "archived plans are not offered"
    );
    fake.assert_clean();
}

async fn a_manager_runs_billing_without_javascript(backend: Backend) {
    let (app, fake) = spawn(backend).await;
    user(&app, "mona", true).await;
    let mut w = signed_in(&app, "mona").await;

    w.follow("Billing").await;
    w.sees("There is nothing to buy yet.");
    w.follow("Products").await;
    assert_eq!(w.path, "/ui/billing/products");
    w.sees("No products yet.");
    w.submit(
        "/ui/billing/products",
        &[("name", " "), ("description", "x")],
    )
    .await;
    assert_eq!(w.status, StatusCode::BAD_REQUEST);
    w.sees("id=\"f-name-error\">Name must not be empty");
    w.sees("value=\"x\"");
    // Stripe refusing is said above the form, the values kept, nothing stored.
    fake.fail_next(
        400,
        "invalid_request_error",
        "Products are paused on this account",
    );
    w.submit(
        "/ui/billing/products",
        &[("name", "Team"), ("description", "For teams")],
    )
    .await;
    assert_eq!(w.status, StatusCode::BAD_REQUEST);
    w.sees("role=\"alert\">Stripe refused the request: Products are paused on this account");
    w.sees("value=\"For teams\"");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM billing_products").await, 0);
    w.submit(
        "/ui/billing/products",
        &[("name", "Team"), ("description", "For teams")],
    )
    .await;
    let product = app
        .scalar("SELECT id FROM billing_products WHERE name = 'Team'")
        .await;
    assert_eq!(w.path, format!("/ui/billing/products/{product}"));
    w.sees("The product is created; now give it a price.");
    assert_eq!(fake.last("POST", "/v1/products").get("name"), Some("Team"));

    // Amounts are typed in major units and refused, next to the field, unless exact.
    let prices = format!("/ui/billing/products/{product}/prices");
    for (amount, currency, says) in [
        (
            "12.345",
            "usd",
            "Unit amount must have at most two decimals",
        ),
        ("-1", "usd", "Unit amount must not be negative"),
        ("abc", "usd", "Unit amount must be an amount such as 9.99"),
        ("1000000", "usd", "Unit amount is too large"),
        ("99999999999999999999999", "usd", "Unit amount is too large"),
        ("1500", "jpy", "Currency jpy has no cents"),
        ("12", "dollars", "Currency must be at most 3 characters"),
    ] {
        w.submit(&prices, &[("unit_amount", amount), ("currency", currency)])
            .await;
        assert_eq!(w.status, StatusCode::BAD_REQUEST, "{amount} {currency}");
        w.sees(says);
        w.sees(&format!("value=\"{amount}\""));
    }
    assert_eq!(
        fake.count("POST", "/v1/prices"),
        0,
        "nothing reached Stripe"
    );
    w.submit(
        &prices,
        &[
            ("unit_amount", "12.50"),
            ("currency", "USD"),
            ("nickname", "Monthly"),
        ],
    )
    .await;
    w.sees("The price $12.50 per month is created.");
    let sent = created_price(&fake);
    assert_eq!(sent.get("unit_amount"), Some("1250"));
    assert_eq!(sent.get("recurring[interval]"), Some("month"));
    w.submit(
        &prices,
        &[
            ("unit_amount", "0.29"),
            ("currency", "eur"),
            ("type", "one_time"),
        ],
    )
    .await;
    w.sees("The price €0.29 once is created.");
    let sent = created_price(&fake);
    assert_eq!(sent.get("unit_amount"), Some("29"));
    assert_eq!(sent.get("recurring[interval]"), None);

    // Changing the amount makes a new price and archives the old one at Stripe.
    let monthly = app
        .scalar("SELECT id FROM billing_prices WHERE unit_amount = 1250")
        .await;
    assert_eq!(fake.count("POST", "/v1/prices"), 2);
    w.open(&format!("/ui/billing/prices/{monthly}/amount"))
        .await;
    w.sees("value=\"12.50\"");
    let action = format!("/ui/billing/prices/{monthly}/amount");
    w.submit(&action, &[("unit_amount", "12.345")]).await;
    assert_eq!(w.status, StatusCode::BAD_REQUEST);
    w.sees("at most two decimals");
    w.submit(&action, &[("unit_amount", "15")]).await;
    assert_eq!(w.path, format!("/ui/billing/products/{product}"));
    w.sees("The amount is now $15.00");
    w.sees("$15.00");
    assert!(!w.html.contains("$12.50"));
    let sent = created_price(&fake);
    assert_eq!(sent.get("unit_amount"), Some("1500"));
    assert_eq!(sent.get("nickname"), Some("Monthly"));
    assert_eq!(sent.get("recurring[interval]"), Some("month"));
    let retired = fake.last("POST", "/v1/prices/price_");
    assert_eq!(retired.get("active"), Some("false"));
    let logged = app
        .scalar("SELECT COUNT(*) FROM activity_logs WHERE message = 'price replaced'")
        .await;
    assert_eq!(logged, 1);

    // Editing the product, archiving a price and the product, each confirmed.
    w.submit(
        &format!("/ui/billing/products/{product}"),
        &[("name", "Team plus"), ("description", "")],
    )
    .await;
    w.sees("The product is saved.");
    w.sees("value=\"Team plus\"");
    let euro = app
        .scalar("SELECT id FROM billing_prices WHERE unit_amount = 29")
        .await;
    w.open(&format!("/ui/billing/prices/{euro}/archive")).await;
    w.sees("Archive this price?");
    w.submit(&format!("/ui/billing/prices/{euro}/archive"), &[])
        .await;
    w.sees("The price is archived.");
    w.follow("Archive the product").await;
    w.sees("Archive this product?");
    w.submit(&format!("/ui/billing/products/{product}/archive"), &[])
        .await;
    assert_eq!(w.path, "/ui/billing/products");
    w.sees("The product is archived.");
    w.sees(">archived<");
    for message in [
        "product created",
        "price created",
        "product updated",
        "price archived",
        "product archived",
    ] {
        let logged = app
            .scalar(&format!(
                "SELECT COUNT(*) FROM activity_logs WHERE message = '{message}'"
            ))
            .await;
        assert!(logged >= 1, "{message} is in the activity log");
    }

    // Everyone's subscriptions, filtered by status and user in the address.
    let (_, plan) = product_with_price(&app, "Solo", "5", Some("month")).await;
    let plan = plan["price_id"].as_str().unwrap();
    let bob = user(&app, "bob", false).await;
    let carol = user(&app, "carol", false).await;
    deliver(
        &app,
        "evt_a",
        "customer.subscription.created",
        subscription("sub_a", "cus_a", plan, "active", bob),
    )
    .await;
    deliver(
        &app,
        "evt_b",
        "customer.subscription.created",
        subscription("sub_b", "cus_b", plan, "past_due", carol),
    )
    .await;
    deliver(
        &app,
        "evt_c",
        "customer.created",
        json!({ "id": "cus_c", "object": "customer" }),
    )
    .await;
    w.follow("Subscriptions").await;
    assert_eq!(w.path, "/ui/billing/subscriptions");
    w.sees("2 subscriptions, page 1 of 1.");
    w.sees("bob@example.com");
    w.sees("Solo · $5.00 per month");
    w.open("/ui/billing/subscriptions?status=past_due&user=")
        .await;
    assert_eq!(w.path, "/ui/billing/subscriptions?status=past_due&user=");
    w.sees("1 subscription,");
    w.sees("carol@example.com");
    assert!(!w.html.contains("bob@example.com"));
    w.sees("<option value=\"past_due\" selected>");
    w.open("/ui/billing/subscriptions?user=BOB@example.com")
        .await;
    w.sees("1 subscription,");
    w.sees("sub_a");
    w.open(&format!(
        "/ui/billing/subscriptions?user={carol}&status=active"
    ))
    .await;
    w.sees("0 subscriptions");
    w.sees("No subscriptions match.");
    w.open("/ui/billing/subscriptions?user=nobody@example.com")
        .await;
    w.sees("No user is nobody@example.com.");

    // 25 a page, the filters kept in the pages' links.
    for i in 0..25 {
        deliver(
            &app,
            &format!("evt_many_{i}"),
            "customer.subscription.created",
            subscription(&format!("sub_many_{i}"), "cus_a", plan, "active", bob),
        )
        .await;
    }
    w.open("/ui/billing/subscriptions?status=active").await;
    w.sees("26 subscriptions, page 1 of 2.");
    assert_eq!(w.html.matches("<code>sub_").count(), 25);
    w.follow("Next page").await;
    assert_eq!(
        w.path,
        "/ui/billing/subscriptions?status=active&user=&page=2"
    );
    w.sees("page 2 of 2.");
    assert_eq!(w.html.matches("<code>sub_").count(), 1);
    w.sees("sub_a");

    // The webhook events, with what was done with each.
    w.follow("Webhook events").await;
    assert_eq!(w.path, "/ui/billing/events");
    w.sees("customer.subscription.created");
    w.sees("evt_b");
    w.sees(">applied<");
    w.sees(">ignored<");
    // 50 a page, older ones by keyset; an event from before outcomes were recorded
    // says so.
    for i in 0..50 {
        sqlx::query(
            "INSERT INTO billing_events (event_id, type, stripe_created, received_at) \
             VALUES ($1, 'invoice.paid', 1700000000, 1700000000)",
        )
        .bind(format!("evt_old_{i:02}"))
        .execute(app.state.db.writer())
        .await
        .unwrap();
    }
    w.open("/ui/billing/events").await;
    assert_eq!(w.html.matches("<code>evt_").count(), 50);
    w.sees("evt_old_49");
    w.sees("evt_old_00");
    w.sees("not recorded");
    assert!(
        !w.html.contains("evt_a<"),
        "the oldest are on the next page"
    );
    w.follow("Older events").await;
    assert!(
        w.path.starts_with("/ui/billing/events?before_id="),
        "{}",
        w.path
    );
    assert_eq!(w.html.matches("<code>evt_").count(), 28);
    w.sees("evt_a<");
    w.sees(">applied<");
    assert!(!w.html.contains("evt_old_"));
    fake.assert_clean();
}

async fn a_plain_user_gets_403_pages_on_the_billing_admin_pages(backend: Backend) {
    let (app, fake) = spawn(backend).await;
    user(&app, "mona", true).await;
    let (product, price) = product_with_price(&app, "Pro", "9.99", Some("month")).await;
    let product = product["id"].as_i64().unwrap();
    let price = price["id"].as_i64().unwrap();
    user(&app, "plain", false).await;
    let mut w = signed_in(&app, "plain").await;
    w.open("/ui/billing").await;
    assert_eq!(w.status, StatusCode::OK);
    assert!(!w.html.contains("href=\"/ui/billing/products\""));
    for page in [
        "/ui/billing/products".to_owned(),
        format!("/ui/billing/products/{product}"),
        format!("/ui/billing/products/{product}/archive"),
        format!("/ui/billing/prices/{price}/amount"),
        format!("/ui/billing/prices/{price}/archive"),
        "/ui/billing/subscriptions?status=active".to_owned(),
        "/ui/billing/events".to_owned(),
    ] {
        w.open(&page).await;
        assert_eq!(w.status, StatusCode::FORBIDDEN, "{page}");
        w.sees("Not allowed");
    }
    // The app's client is the plain user now; its forms, token and all, are refused.
    let token = app.csrf.lock().unwrap().clone().unwrap();
    for action in [
        "/ui/billing/products".to_owned(),
        format!("/ui/billing/products/{product}"),
        format!("/ui/billing/products/{product}/archive"),
        format!("/ui/billing/products/{product}/prices"),
        format!("/ui/billing/prices/{price}/amount"),
        format!("/ui/billing/prices/{price}/archive"),
    ] {
        let res = app
            .client
            .post(app.url(&action))
            .form(&[
                ("csrf_token", token.as_str()),
                ("name", "Mine"),
                ("unit_amount", "1"),
                ("currency", "usd"),
                ("type", "one_time"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{action}");
        assert!(res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
    }
    assert_eq!(fake.count("POST", "/v1/products/"), 0);
    assert_eq!(fake.count("POST", "/v1/prices/"), 0);

    let mut anonymous = Walker::new(&app);
    anonymous
        .open("/ui/billing/subscriptions?status=active")
        .await;
    assert_eq!(
        anonymous.path,
        "/ui/login?next=%2Fui%2Fbilling%2Fsubscriptions%3Fstatus%3Dactive"
    );
    anonymous.open("/ui/billing").await;
    assert_eq!(anonymous.path, "/ui/login?next=%2Fui%2Fbilling");
}

async fn bad_input_on_the_billing_pages_answers_4xx_pages(backend: Backend) {
    let (app, fake) = spawn(backend).await;
    user(&app, "mona", true).await;
    let (product, price) = product_with_price(&app, "Pro", "9.99", Some("month")).await;
    let product = product["id"].as_i64().unwrap();
    let price = price["id"].as_i64().unwrap();
    let mut w = signed_in(&app, "mona").await;
    for (page, status) in [
        ("/ui/billing/products/abc".to_owned(), StatusCode::NOT_FOUND),
        ("/ui/billing/products/0".to_owned(), StatusCode::NOT_FOUND),
        ("/ui/billing/products/-3".to_owned(), StatusCode::NOT_FOUND),
        (
            "/ui/billing/products/99999999".to_owned(),
            StatusCode::NOT_FOUND,
        ),
        (
            "/ui/billing/products/99999999999999999999999".to_owned(),
            StatusCode::NOT_FOUND,
        ),
        (
            "/ui/billing/prices/1e3/amount".to_owned(),
            StatusCode::NOT_FOUND,
        ),
        (
            "/ui/billing/prices/abc/archive".to_owned(),
            StatusCode::NOT_FOUND,
        ),
        (
            "/ui/billing/subscriptions/abc/cancel".to_owned(),
            StatusCode::NOT_FOUND,
        ),
        (
            "/ui/billing/subscriptions/77/cancel".to_owned(),
            StatusCode::NOT_FOUND,
        ),
        (
            "/ui/billing/subscriptions?status=sleeping".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/ui/billing/subscriptions?page=0".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/ui/billing/subscriptions?page=x".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/ui/billing/subscriptions?user={}", "a".repeat(300)),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/ui/billing/events?before_id=-1".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        ("/ui/billing/success".to_owned(), StatusCode::BAD_REQUEST),
        (
            "/ui/billing/success?session_id=..%2Fx".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/ui/billing/success?session_id=cs_unknown".to_owned(),
            StatusCode::NOT_FOUND,
        ),
    ] {
        w.open(&page).await;
        assert_eq!(w.status, status, "{page}");
        w.sees("<!doctype html>");
    }
    w.open(&format!("/ui/billing/products/{product}")).await;
    let prices = format!("/ui/billing/products/{product}/prices");
    // A tampered choice is a 400 next to its field; an unknown price a flash.
    w.submit(&prices, &[("unit_amount", "5"), ("type", "weekly")])
        .await;
    assert_eq!(w.status, StatusCode::BAD_REQUEST);
    w.sees("Type must be one-time or recurring");
    w.submit(&prices, &[("unit_amount", "5"), ("interval", "fortnight")])
        .await;
    assert_eq!(w.status, StatusCode::BAD_REQUEST);
    w.sees("id=\"f-interval-error\">Interval must be one of day, week, month, year");
    w.sees("aria-describedby=\"f-interval-error f-interval-hint\" aria-invalid=\"true\"");
    w.submit(
        &prices,
        &[("unit_amount", "5"), ("nickname", &"n".repeat(251))],
    )
    .await;
    assert_eq!(w.status, StatusCode::BAD_REQUEST);
    w.sees("Nickname must be at most 250 characters");
    w.open("/ui/billing").await;
    w.submit("/ui/billing/checkout", &[("price_id", "price_nope")])
        .await;
    w.sees("Refused: Price not found");
    w.submit("/ui/billing/checkout", &[("price_id", "../../etc")])
        .await;
    w.sees("Refused: Invalid value for field price_id");
    // Oversized bodies and forms without their token never reach a handler. (The
    // oversized one on a connection of its own: the server closes a connection whose
    // request body it refused unread.)
    let res = crate::helpers::new_client()
        .post(app.url(&format!("/ui/billing/prices/{price}/amount")))
        .header(
            "cookie",
            format!("session={}", app.session_cookie().unwrap()),
        )
        .form(&[("unit_amount", "1".repeat(3 * 1024 * 1024))])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    for action in [
        "/ui/billing/checkout".to_owned(),
        "/ui/billing/products".to_owned(),
        format!("/ui/billing/prices/{price}/amount"),
    ] {
        let res = app
            .client
            .post(app.url(&action))
            .form(&[("unit_amount", "1"), ("name", "x"), ("price_id", "price_x")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{action}");
        assert!(res.text().await.unwrap().contains("This form has expired"));
    }
    // A form missing a field is a 400 page too.
    let token = app.csrf.lock().unwrap().clone().unwrap();
    let res = app
        .client
        .post(app.url(&format!("/ui/billing/prices/{price}/amount")))
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.text().await.unwrap().contains("<!doctype html>"));
    assert_eq!(fake.count("POST", "/v1/prices"), 1, "only the set-up price");
    fake.assert_clean();
}

async fn billing_off_is_a_page_that_says_so(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    user(&app, "mona", true).await;
    let mut w = signed_in(&app, "mona").await;
    assert!(!w.html.contains("href=\"/ui/billing\""), "no Billing entry");
    for page in [
        "/ui/billing",
        "/ui/billing/products",
        "/ui/billing/products/1",
        "/ui/billing/subscriptions",
        "/ui/billing/events",
        "/ui/billing/success?session_id=cs_1",
        "/ui/billing/cancel",
    ] {
        w.open(page).await;
        assert_eq!(w.status, StatusCode::SERVICE_UNAVAILABLE, "{page}");
        w.sees("Billing is not set up on this server");
        w.sees("class=\"sidebar\"");
    }
    // A form posted anyway (its token is right) gets the same page.
    let token = app.csrf.lock().unwrap().clone().unwrap();
    let res = app
        .client
        .post(app.url("/ui/billing/products"))
        .form(&[("csrf_token", token.as_str()), ("name", "X")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.text().await.unwrap().contains("Billing is not set up"));
}

async fn href_of(b: &Browser, css: &str) -> String {
    b.client
        .find(fantoccini::Locator::Css(css))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap()
}

/// Every billing screen in a real browser, photographed in both themes at 1440 and
/// 360 px: the buyer's plans, Stripe's round trip, the landing pages, the manager's
/// products, prices, amount change, subscriptions and events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_billing_pages_in_a_browser() {
    let (app, fake) = spawn(Backend::Sqlite).await;
    let mona = user(&app, "mona", true).await;
    let (_, monthly) = product_with_price(&app, "Pro", "9.99", Some("month")).await;
    let (product, _) = product_with_price(&app, "Team", "49", Some("year")).await;
    add_price(&app, &product, "1234.5", None).await;
    let Some(b) = Browser::start(&app.url("/")).await else {
        return;
    };
    b.open("/ui/login").await;
    b.fill("Username or email", "mona").await;
    b.fill("Password", PASSWORD).await;
    b.click("Sign in").await;
    b.at("/ui/").await;

    b.click("Billing").await;
    b.at("/ui/billing").await;
    b.sees("$1,234.50").await;
    b.screenshots("billing-plans-new").await;
    // Stripe's page is another host; the browser is sent there, and comes back.
    let session_before = fake.count("POST", "/v1/checkout/sessions");
    let rows = "SELECT COUNT(*) FROM billing_checkout_sessions";
    let rows_before = app.scalar(rows).await;
    let buttons = b
        .client
        .find_all(fantoccini::Locator::Css(
            "form[action='/ui/billing/checkout'] button",
        ))
        .await
        .unwrap();
    buttons[0].click().await.unwrap();
    // The row is written once Stripe has answered, before the browser is sent on: wait
    // for the row, not for Stripe's count, which moves first.
    for _ in 0..200 {
        if app.scalar(rows).await > rows_before {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(fake.count("POST", "/v1/checkout/sessions") > session_before);
    let session: String = sqlx::query_scalar(
        "SELECT stripe_session_id FROM billing_checkout_sessions ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(app.state.db.pool())
    .await
    .unwrap();
    let sent = fake.last("POST", "/v1/checkout/sessions");
    fake.pay(&session, 999);
    let success = sent.get("success_url").unwrap();
    let back = success[success.find("/ui/billing/success").unwrap()..]
        .replace("{CHECKOUT_SESSION_ID}", &session);
    b.open(&back).await;
    b.sees("Your payment was received").await;
    b.screenshots("billing-success").await;
    b.open("/ui/billing/cancel").await;
    b.sees("Nothing was bought").await;
    b.screenshots("billing-cancel").await;
    let customer = sent.get("customer").unwrap();
    let monthly_id = monthly["price_id"].as_str().unwrap();
    let sub = stripe_subscription(&app, mona, monthly_id).await;
    deliver(
        &app,
        "evt_b1",
        "customer.subscription.updated",
        subscription(&sub, customer, monthly_id, "active", mona),
    )
    .await;
    b.open("/ui/billing").await;
    b.sees("Pro · $9.99 per month").await;
    b.screenshots("billing-plans").await;
    // The link's text carries the plan for screen readers; it is found by address.
    b.open(&href_of(&b, "a[href$='/cancel']").await).await;
    b.sees("Cancel this subscription?").await;
    b.screenshots("billing-cancel-confirm").await;
    b.click("Cancel at period end").await;
    b.sees("ends at period end").await;

    b.click("Products").await;
    b.at("/ui/billing/products").await;
    b.fill("Name", "Enterprise").await;
    b.fill("Description", "Everything, with support").await;
    b.click("Create the product").await;
    b.sees("The product is created").await;
    b.fill("Amount", "12.345").await;
    b.click("Create the price").await;
    b.sees("at most two decimals").await;
    b.screenshots("billing-product-error").await;
    b.fill("Amount", "1999").await;
    b.click("Create the price").await;
    b.sees("The price $1,999.00 per month is created.").await;
    b.screenshots("billing-product").await;
    b.open(&href_of(&b, "a[href$='/amount']").await).await;
    b.screenshots("billing-amount").await;
    b.fill("New amount", "2499.99").await;
    b.click("Change the amount").await;
    b.sees("The amount is now $2,499.99").await;
    b.click("Products").await;
    b.screenshots("billing-products").await;
    b.click("Subscriptions").await;
    b.sees("1 subscription").await;
    b.screenshots("billing-subscriptions").await;
    b.click("Webhook events").await;
    b.sees("customer.subscription.updated").await;
    b.screenshots("billing-events").await;
    fake.assert_clean();
}

//! The billing routes of the contract, at the old service's paths.
//!
//! Who may call what is in the route table below: `manage_billing` for managing
//! products, prices and anybody's subscriptions; any logged-in user for what they may
//! do on their own behalf (list active products and prices, check out, see and cancel
//! their own subscriptions), the ownership check being the first thing such a handler
//! does. Every handler takes [`Stripe`] first, so that with billing off a caller the
//! route admits is answered 503 before anything else.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::store::{self, Price, Product, Subscription};
use super::stripe::{Form, StripeError};
use super::{amount, webhook, Billing, Ref, Stripe};
use crate::app::AppState;
use crate::auth::policy::Policy::{self, LoggedIn, Public};
use crate::auth::policy::Routes;
use crate::auth::CurrentUser;
use crate::db::{self, iso8601};
use crate::error::AppError;
use crate::http::{Json, Origin};
use crate::logs::LogEntry;
use crate::rbac::Permission;

/// Managing billing: the policy of the routes that change products, prices and
/// other people's subscriptions.
const MANAGE: Policy = Policy::Permission(Permission::ManageBilling);

pub fn routes() -> Routes {
    Routes::new()
        .post("/create-product", MANAGE, create_product)
        .post("/edit-product", MANAGE, edit_product)
        .put("/edit-product", MANAGE, edit_product)
        .delete("/delete-product", MANAGE, delete_product)
        .post("/delete-product", MANAGE, delete_product)
        .get("/products", LoggedIn, products)
        .get("/product", LoggedIn, product)
        .post("/product", LoggedIn, product)
        .post("/create-price", MANAGE, create_price)
        .post("/edit-price", MANAGE, edit_price)
        .put("/edit-price", MANAGE, edit_price)
        .delete("/delete-price", MANAGE, delete_price)
        .post("/delete-price", MANAGE, delete_price)
        .get("/prices", LoggedIn, prices)
        .get("/price", LoggedIn, price)
        .post("/price", LoggedIn, price)
        .get("/prices-for-product", LoggedIn, prices_for_product)
        .post("/prices-for-product", LoggedIn, prices_for_product)
        .post("/create-subscription", MANAGE, create_subscription)
        .post("/update-subscription", MANAGE, update_subscription)
        .put("/update-subscription", MANAGE, update_subscription)
        .post("/cancel-subscription", LoggedIn, cancel_subscription)
        .post(
            "/deactivate-subscription",
            LoggedIn,
            deactivate_subscription,
        )
        .post("/reactivate-subscription", MANAGE, reactivate_subscription)
        .delete("/delete-subscription", MANAGE, delete_subscription)
        .post("/delete-subscription", MANAGE, delete_subscription)
        .get("/subscriptions", MANAGE, subscriptions)
        .get("/subscription", LoggedIn, subscription)
        .post("/subscription", LoggedIn, subscription)
        .get("/user-subscriptions", LoggedIn, user_subscriptions)
        .get(
            "/user-email-subscriptions",
            LoggedIn,
            user_email_subscriptions,
        )
        .post(
            "/create-checkout-session",
            LoggedIn,
            create_checkout_session,
        )
        .get("/checkout-success", LoggedIn, checkout_success)
        .get("/checkout-cancel", Public, checkout_cancel)
        .post("/stripe/webhook", Public, webhook::receive)
}

// ---- shaping answers -------------------------------------------------------------

fn product_json(p: &Product) -> Value {
    json!({
        "id": p.id,
        "stripe_product_id": p.stripe_product_id,
        "name": p.name,
        "description": p.description,
        "active": p.active,
        "created_at": iso8601(p.created_at),
        "updated_at": iso8601(p.updated_at),
    })
}

fn price_json(p: &Price) -> Value {
    json!({
        "id": p.id,
        "stripe_price_id": p.stripe_price_id,
        "product_id": p.product_id,
        "stripe_product_id": p.stripe_product_id,
        "unit_amount": amount::dollars(p.unit_amount),
        "unit_amount_cents": p.unit_amount,
        "currency": p.currency,
        "recurring_interval": p.recurring_interval,
        "type": if p.recurring_interval.is_some() { "recurring" } else { "one_time" },
        "nickname": p.nickname,
        "active": p.active,
        "created_at": iso8601(p.created_at),
        "updated_at": iso8601(p.updated_at),
    })
}

fn subscription_json(s: &Subscription) -> Value {
    json!({
        "id": s.id,
        "stripe_subscription_id": s.stripe_subscription_id,
        "user_id": s.user_id,
        "stripe_customer_id": s.stripe_customer_id,
        "price_id": s.price_id,
        "stripe_price_id": s.stripe_price_id,
        "status": s.status,
        "cancel_at_period_end": s.cancel_at_period_end,
        "current_period_end": s.current_period_end.map(iso8601),
        "canceled_at": s.canceled_at.map(iso8601),
        "latest_invoice_id": s.latest_invoice_id,
        "latest_invoice_status": s.latest_invoice_status,
        "created_at": iso8601(s.created_at),
        "updated_at": iso8601(s.updated_at),
    })
}

fn order_json(o: &store::Order) -> Value {
    json!({
        "id": o.id,
        "stripe_session_id": o.stripe_session_id,
        "user_id": o.user_id,
        "price_id": o.price_id,
        "amount_total": o.amount_total.map(amount::dollars),
        "amount_total_cents": o.amount_total,
        "currency": o.currency,
        "payment_status": o.payment_status,
        "status": o.status,
        "stripe_subscription_id": o.stripe_subscription_id,
        "created_at": iso8601(o.created_at),
        "updated_at": iso8601(o.updated_at),
    })
}

fn ok(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

// ---- reading input -----------------------------------------------------------------

/// The parameters of a route that names an object: the query string's and, when a
/// body is sent, the JSON object's (which wins). The old client sent ids both ways,
/// and with DELETE.
struct Input(Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for Input {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(req.uri().query().unwrap_or(""))
                .map_err(|_| AppError::invalid("Malformed query string"))?;
        let mut map: Map<String, Value> = pairs
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        let json_body = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .is_some_and(|essence| essence == "application/json");
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                AppError::PayloadTooLarge
            } else {
                AppError::invalid("The request body could not be read")
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Input(map));
        }
        if !json_body {
            return Err(AppError::UnsupportedMediaType("application/json"));
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(body)) => map.extend(body),
            Ok(_) => return Err(AppError::invalid("The body must be a JSON object")),
            Err(_) => return Err(AppError::invalid("Malformed JSON body")),
        }
        Ok(Input(map))
    }
}

impl Input {
    fn first(&self, names: &[&'static str]) -> Option<(&'static str, &Value)> {
        names
            .iter()
            .find_map(|n| self.0.get(*n).filter(|v| !v.is_null()).map(|v| (*n, v)))
    }

    /// The object named by the first of `names` present: a local id or a Stripe id.
    fn reference(&self, names: &[&'static str]) -> Result<Ref, AppError> {
        let (name, value) = self
            .first(names)
            .ok_or_else(|| AppError::invalid(format!("Missing field `{}`", names[0])))?;
        let invalid = || {
            AppError::invalid(format!(
                "Invalid value for field `{name}`: expected an integer id or a Stripe id"
            ))
        };
        match value {
            Value::Number(n) => n.as_i64().map(Ref::Local).ok_or_else(invalid),
            Value::String(s) => Ref::parse(s).map_err(|_| invalid()),
            _ => Err(invalid()),
        }
    }

    fn integer(&self, name: &'static str) -> Result<Option<i64>, AppError> {
        let invalid = || {
            AppError::invalid(format!(
                "Invalid value for field `{name}`: expected an integer"
            ))
        };
        match self.first(&[name]) {
            None => Ok(None),
            Some((_, Value::Number(n))) => n.as_i64().map(Some).ok_or_else(invalid),
            Some((_, Value::String(s))) => s.trim().parse().map(Some).map_err(|_| invalid()),
            Some(_) => Err(invalid()),
        }
    }

    fn text(&self, name: &'static str) -> Result<Option<String>, AppError> {
        match self.first(&[name]) {
            None => Ok(None),
            Some((_, Value::String(s))) => Ok(Some(s.clone())),
            Some(_) => Err(AppError::invalid(format!(
                "Invalid value for field `{name}`: expected a string"
            ))),
        }
    }
}

/// The caller's own `Idempotency-Key`, when sane, to make a retried create safe.
fn client_key(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 255)
}

fn clean_text(field: &str, value: &str, max: usize) -> Result<String, AppError> {
    let value = value.trim();
    if value.chars().count() > max {
        return Err(AppError::invalid(format!(
            "`{field}` must be at most {max} characters"
        )));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(AppError::invalid(format!(
            "`{field}` must not contain control characters"
        )));
    }
    Ok(value.to_owned())
}

fn required_text(field: &str, value: &str, max: usize) -> Result<String, AppError> {
    let value = clean_text(field, value, max)?;
    if value.is_empty() {
        return Err(AppError::invalid(format!("`{field}` must not be empty")));
    }
    if value.contains('\n') {
        return Err(AppError::invalid(format!("`{field}` must be one line")));
    }
    Ok(value)
}

const NAME_MAX: usize = 250;
const DESCRIPTION_MAX: usize = 2000;
const NICKNAME_MAX: usize = 250;

fn interval(value: &str) -> Result<String, AppError> {
    let lower = value.trim().to_ascii_lowercase();
    match lower.as_str() {
        "day" | "week" | "month" | "year" => Ok(lower),
        _ => Err(AppError::invalid(
            "`recurring_interval` must be one of day, week, month, year",
        )),
    }
}

fn record(
    state: &AppState,
    user: &crate::accounts::User,
    origin: &Origin,
    message: &str,
    details: Value,
) {
    state
        .activity
        .record(LogEntry::change(message, details).user(user).origin(origin));
}

// ---- products ----------------------------------------------------------------------

#[derive(Deserialize)]
struct CreateProduct {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    active: Option<bool>,
}

async fn create_product(
    billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    headers: HeaderMap,
    Json(body): Json<CreateProduct>,
) -> Result<Response, AppError> {
    let name = required_text("name", &body.name, NAME_MAX)?;
    let description = body
        .description
        .as_deref()
        .map(|d| clean_text("description", d, DESCRIPTION_MAX))
        .transpose()?
        .filter(|d| !d.is_empty());
    let form = Form::new()
        .set("name", &name)
        .set_opt("description", description.as_ref())
        .set("active", body.active.unwrap_or(true));
    let key = billing.idempotency_key("product", caller.user.id, client_key(&headers));
    let created = billing.stripe.create_product(&form, &key).await?;
    let product = store::upsert_product(&state.db, &created).await?;
    record(
        &state,
        &caller.user,
        &origin,
        "product created",
        json!({
            "action": "create_product", "product_id": product.id, "stripe_product_id": product.stripe_product_id, "name": product.name,
        }),
    );
    Ok(ok(
        StatusCode::CREATED,
        json!({ "success": true, "message": "Product created successfully", "product": product_json(&product) }),
    ))
}

#[derive(Deserialize)]
struct EditProduct {
    id: Ref,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    active: Option<bool>,
}

async fn edit_product(
    billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    Json(body): Json<EditProduct>,
) -> Result<Response, AppError> {
    let before = store::find_product(&state.db, &body.id)
        .await?
        .ok_or_else(|| AppError::not_found("Product not found"))?;
    let name = body
        .name
        .as_deref()
        .map(|n| required_text("name", n, NAME_MAX))
        .transpose()?;
    let description = body
        .description
        .as_deref()
        .map(|d| clean_text("description", d, DESCRIPTION_MAX))
        .transpose()?;
    if name.is_none() && description.is_none() && body.active.is_none() {
        return Err(AppError::invalid(
            "Nothing to change: give name, description or active",
        ));
    }
    // An empty description clears it, which is how Stripe unsets a field.
    let form = Form::new()
        .set_opt("name", name.as_ref())
        .set_opt("description", description.as_ref())
        .set_opt("active", body.active);
    let key = billing.idempotency_key("product-edit", caller.user.id, None);
    let updated = billing
        .stripe
        .update_product(&before.stripe_product_id, &form, &key)
        .await?;
    let product = store::upsert_product(&state.db, &updated).await?;
    record(
        &state,
        &caller.user,
        &origin,
        "product updated",
        json!({
            "action": "edit_product", "product_id": product.id,
            "before": product_json(&before), "after": product_json(&product),
        }),
    );
    Ok(ok(
        StatusCode::OK,
        json!({ "success": true, "message": "Product updated successfully", "product": product_json(&product) }),
    ))
}

async fn delete_product(
    billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    input: Input,
) -> Result<Response, AppError> {
    let target = input.reference(&["id", "product_id"])?;
    let product = store::find_product(&state.db, &target)
        .await?
        .ok_or_else(|| AppError::not_found("Product not found"))?;
    // Stripe refuses to delete a product that has prices, and prices cannot be
    // deleted: such a product can only be archived.
    if store::count_prices(&state.db, product.id).await? > 0 {
        return Err(AppError::conflict(
            "This product has prices and cannot be deleted; deactivate it instead (edit-product with active false)",
        ));
    }
    match billing
        .stripe
        .delete_product(&product.stripe_product_id)
        .await
    {
        Ok(_) => {}
        // Already gone at Stripe: forgetting it here is all that is left to do.
        Err(StripeError::Api { status: 404, .. }) => {}
        Err(e) => return Err(e.into()),
    }
    store::delete_product(&state.db, product.id).await?;
    record(
        &state,
        &caller.user,
        &origin,
        "product deleted",
        json!({
            "action": "delete_product", "product": product_json(&product),
        }),
    );
    Ok(ok(
        StatusCode::OK,
        json!({ "success": true, "message": "Product deleted successfully" }),
    ))
}

async fn products(
    _billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
) -> Result<Response, AppError> {
    let manager = caller.access.has(Permission::ManageBilling);
    let list = store::list_products(&state.db, !manager).await?;
    Ok(ok(
        StatusCode::OK,
        json!({ "success": true, "products": list.iter().map(product_json).collect::<Vec<_>>() }),
    ))
}

async fn product(
    _billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    input: Input,
) -> Result<Response, AppError> {
    let target = input.reference(&["id", "product_id"])?;
    let manager = caller.access.has(Permission::ManageBilling);
    let product = store::find_product(&state.db, &target)
        .await?
        .filter(|p| manager || p.active)
        .ok_or_else(|| AppError::not_found("Product not found"))?;
    let prices = store::list_prices(&state.db, Some(product.id), !manager).await?;
    let mut body = product_json(&product);
    body["prices"] = prices.iter().map(price_json).collect();
    Ok(ok(
        StatusCode::OK,
        json!({ "success": true, "product": body }),
    ))
}

// ---- prices ------------------------------------------------------------------------

#[derive(Deserialize)]
struct CreatePrice {
    product_id: Ref,
    unit_amount: Value,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default, alias = "interval")]
    recurring_interval: Option<String>,
    #[serde(default)]
    nickname: Option<String>,
    #[serde(default)]
    active: Option<bool>,
}

async fn create_price(
    billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    headers: HeaderMap,
    Json(body): Json<CreatePrice>,
) -> Result<Response, AppError> {
    let cents =
        amount::parse_dollars("unit_amount", &body.unit_amount).map_err(AppError::Invalid)?;
    let currency =
        amount::currency(body.currency.as_deref().unwrap_or("usd")).map_err(AppError::Invalid)?;
    let recurring = body
        .recurring_interval
        .as_deref()
        .map(interval)
        .transpose()?;
    let nickname = body
        .nickname
        .as_deref()
        .map(|n| clean_text("nickname", n, NICKNAME_MAX))
        .transpose()?
        .filter(|n| !n.is_empty());
    let product = store::find_product(&state.db, &body.product_id)
        .await?
        .ok_or_else(|| AppError::not_found("Product not found"))?;
    let form = Form::new()
        .set("product", &product.stripe_product_id)
        .set("unit_amount", cents)
        .set("currency", &currency)
        .set_opt("recurring[interval]", recurring.as_ref())
        .set_opt("nickname", nickname.as_ref())
        .set("active", body.active.unwrap_or(true));
    let key = billing.idempotency_key("price", caller.user.id, client_key(&headers));
    let created = billing.stripe.create_price(&form, &key).await?;
    if created.product != product.stripe_product_id {
        return Err(AppError::internal(anyhow::anyhow!(
            "Stripe created price {} for another product",
            created.id
        )));
    }
    let price = store::upsert_price(&state.db, product.id, &created).await?;
    record(
        &state,
        &caller.user,
        &origin,
        "price created",
        json!({
            "action": "create_price", "price_id": price.id, "stripe_price_id": price.stripe_price_id,
            "product_id": product.id, "unit_amount_cents": price.unit_amount, "currency": price.currency,
        }),
    );
    Ok(ok(
        StatusCode::CREATED,
        json!({ "success": true, "message": "Price created successfully", "price": price_json(&price) }),
    ))
}

#[derive(Deserialize)]
struct EditPrice {
    id: Ref,
    #[serde(default)]
    active: Option<bool>,
    #[serde(default)]
    nickname: Option<String>,
    #[serde(default)]
    unit_amount: Option<Value>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default, alias = "interval")]
    recurring_interval: Option<String>,
}

async fn edit_price(
    billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    Json(body): Json<EditPrice>,
) -> Result<Response, AppError> {
    let before = store::find_price(&state.db, &body.id)
        .await?
        .ok_or_else(|| AppError::not_found("Price not found"))?;
    // Stripe fixes a price's amount, currency and interval at creation; saying the
    // same values again is harmless, asking for others is not possible.
    let same_amount = match &body.unit_amount {
        None => true,
        Some(v) => {
            amount::parse_dollars("unit_amount", v).map_err(AppError::Invalid)?
                == before.unit_amount
        }
    };
    let same_currency = match body.currency.as_deref() {
        None => true,
        Some(c) => amount::currency(c).map_err(AppError::Invalid)? == before.currency,
    };
    let same_interval = match body.recurring_interval.as_deref() {
        None => true,
        Some(i) => Some(interval(i)?) == before.recurring_interval,
    };
    if !(same_amount && same_currency && same_interval) {
        return Err(AppError::invalid(
            "Stripe prices cannot change their amount, currency or interval; create a new price and deactivate this one",
        ));
    }
    let nickname = body
        .nickname
        .as_deref()
        .map(|n| clean_text("nickname", n, NICKNAME_MAX))
        .transpose()?;
    if nickname.is_none() && body.active.is_none() {
        return Err(AppError::invalid(
            "Nothing to change: give active or nickname",
        ));
    }
    let form = Form::new()
        .set_opt("active", body.active)
        .set_opt("nickname", nickname.as_ref());
    let key = billing.idempotency_key("price-edit", caller.user.id, None);
    let updated = billing
        .stripe
        .update_price(&before.stripe_price_id, &form, &key)
        .await?;
    let price = store::upsert_price(&state.db, before.product_id, &updated).await?;
    record(
        &state,
        &caller.user,
        &origin,
        "price updated",
        json!({
            "action": "edit_price", "price_id": price.id,
            "before": price_json(&before), "after": price_json(&price),
        }),
    );
    Ok(ok(
        StatusCode::OK,
        json!({ "success": true, "message": "Price updated successfully", "price": price_json(&price) }),
    ))
}

/// Stripe never deletes a price; deleting one here archives it there and here.
async fn delete_price(
    billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    input: Input,
) -> Result<Response, AppError> {
    let target = input.reference(&["id", "price_id"])?;
    let before = store::find_price(&state.db, &target)
        .await?
        .ok_or_else(|| AppError::not_found("Price not found"))?;
    let key = billing.idempotency_key("price-delete", caller.user.id, None);
    let updated = billing
        .stripe
        .update_price(
            &before.stripe_price_id,
            &Form::new().set("active", false),
            &key,
        )
        .await?;
    let price = store::upsert_price(&state.db, before.product_id, &updated).await?;
    record(
        &state,
        &caller.user,
        &origin,
        "price archived",
        json!({
            "action": "delete_price", "price_id": price.id, "stripe_price_id": price.stripe_price_id,
        }),
    );
    Ok(ok(
        StatusCode::OK,
        json!({
            "success": true,
            "message": "Price deleted successfully (archived: Stripe keeps prices)",
            "price": price_json(&price),
        }),
    ))
}

async fn prices(
    _billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    input: Input,
) -> Result<Response, AppError> {
    let manager = caller.access.has(Permission::ManageBilling);
    let product_id = match input.first(&["product_id"]) {
        None => None,
        Some(_) => {
            let product = store::find_product(&state.db, &input.reference(&["product_id"])?)
                .await?
                .filter(|p| manager || p.active)
                .ok_or_else(|| AppError::not_found("Product not found"))?;
            Some(product.id)
        }
    };
    let list = store::list_prices(&state.db, product_id, !manager).await?;
    Ok(ok(
        StatusCode::OK,
        json!({ "success": true, "prices": list.iter().map(price_json).collect::<Vec<_>>() }),
    ))
}

async fn price(
    _billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    input: Input,
) -> Result<Response, AppError> {
    let target = input.reference(&["id", "price_id"])?;
    let manager = caller.access.has(Permission::ManageBilling);
    let price = store::find_price(&state.db, &target)
        .await?
        .filter(|p| manager || (p.active && p.product_active))
        .ok_or_else(|| AppError::not_found("Price not found"))?;
    Ok(ok(
        StatusCode::OK,
        json!({ "success": true, "price": price_json(&price) }),
    ))
}

async fn prices_for_product(
    _billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    input: Input,
) -> Result<Response, AppError> {
    let target = input.reference(&["product_id", "id"])?;
    let manager = caller.access.has(Permission::ManageBilling);
    let product = store::find_product(&state.db, &target)
        .await?
        .filter(|p| manager || p.active)
        .ok_or_else(|| AppError::not_found("Product not found"))?;
    let list = store::list_prices(&state.db, Some(product.id), !manager).await?;
    Ok(ok(
        StatusCode::OK,
        json!({
            "success": true,
            "product_id": product.id,
            "prices": list.iter().map(price_json).collect::<Vec<_>>(),
        }),
    ))
}

// ---- customers and subscriptions ---------------------------------------------------

/// The Stripe customer of a user, created at Stripe on first need.
async fn customer_for(
    billing: &Billing,
    state: &AppState,
    user: &crate::accounts::User,
) -> Result<String, AppError> {
    if let Some(customer) = store::customer_of(&state.db, user.id).await? {
        return Ok(customer);
    }
    let form = Form::new()
        .set("email", &user.email)
        .set(
            "name",
            format!("{} {}", user.first_name, user.last_name).trim(),
        )
        .set("metadata[user_id]", user.id);
    let created = billing
        .stripe
        .create_customer(&form, &billing.customer_key(user.id))
        .await?;
    store::link_customer(&state.db, user.id, &created.id).await
}

/// A price that can be subscribed to or bought now.
async fn live_price(state: &AppState, r: &Ref) -> Result<Price, AppError> {
    let price = store::find_price(&state.db, r)
        .await?
        .ok_or_else(|| AppError::not_found("Price not found"))?;
    if !(price.active && price.product_active) {
        return Err(AppError::invalid("This price is no longer available"));
    }
    Ok(price)
}

/// Writes what Stripe just answered about a subscription and reads it back.
async fn mirror_subscription(
    state: &AppState,
    s: &super::stripe::Subscription,
    user_id: Option<i64>,
) -> Result<Subscription, AppError> {
    let mut conn = state.db.pool().acquire().await?;
    store::apply_subscription(&mut conn, s, user_id, db::now()).await?;
    drop(conn);
    store::find_subscription(&state.db, &Ref::Stripe(s.id.clone()))
        .await?
        .ok_or_else(|| AppError::not_found("Subscription not found"))
}

/// The subscription named by the input, if the caller may act on it: their own, or
/// anyone's with `manage_billing`.
async fn own_subscription(
    state: &AppState,
    caller: &CurrentUser,
    input: &Input,
) -> Result<Subscription, AppError> {
    let target = input.reference(&["subscription_id", "id"])?;
    let subscription = store::find_subscription(&state.db, &target)
        .await?
        .ok_or_else(|| AppError::not_found("Subscription not found"))?;
    if subscription.user_id != Some(caller.user.id) && !caller.access.has(Permission::ManageBilling)
    {
        return Err(AppError::unauthorized_access());
    }
    Ok(subscription)
}

fn still_live(s: &Subscription) -> Result<(), AppError> {
    if s.is_live() {
        Ok(())
    } else {
        Err(AppError::conflict("This subscription is already canceled"))
    }
}

#[derive(Deserialize)]
struct CreateSubscription {
    price_id: Ref,
    #[serde(default)]
    user_id: Option<i64>,
}

async fn create_subscription(
    billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    headers: HeaderMap,
    Json(body): Json<CreateSubscription>,
) -> Result<Response, AppError> {
    let user = match body.user_id {
        None => caller.user.clone(),
        Some(id) if id == caller.user.id => caller.user.clone(),
        Some(id) => crate::accounts::store::find_by_id(state.db.pool(), id)
            .await?
            .ok_or_else(|| AppError::not_found("User not found"))?,
    };
    let price = live_price(&state, &body.price_id).await?;
    if price.recurring_interval.is_none() {
        return Err(AppError::invalid(
            "This price is not recurring; sell it with create-checkout-session",
        ));
    }
    let customer = customer_for(&billing, &state, &user).await?;
    // Incomplete until its first invoice is paid, which a webhook will report.
    let form = Form::new()
        .set("customer", &customer)
        .set("items[0][price]", &price.stripe_price_id)
        .set("payment_behavior", "default_incomplete")
        .set("metadata[user_id]", user.id);
    let key = billing.idempotency_key("subscription", caller.user.id, client_key(&headers));
    let created = billing.stripe.create_subscription(&form, &key).await?;
    let subscription = mirror_subscription(&state, &created, Some(user.id)).await?;
    record(
        &state,
        &caller.user,
        &origin,
        "subscription created",
        json!({
            "action": "create_subscription", "subscription_id": subscription.id,
            "user_id": user.id, "price_id": price.id,
        }),
    );
    Ok(ok(
        StatusCode::CREATED,
        json!({
            "success": true,
            "message": "Subscription created successfully",
            "subscription": subscription_json(&subscription),
        }),
    ))
}

async fn update_subscription(
    billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    input: Input,
) -> Result<Response, AppError> {
    let target = input.reference(&["subscription_id", "id"])?;
    let before = store::find_subscription(&state.db, &target)
        .await?
        .ok_or_else(|| AppError::not_found("Subscription not found"))?;
    still_live(&before)?;
    let price = live_price(&state, &input.reference(&["price_id"])?).await?;
    if price.recurring_interval.is_none() {
        return Err(AppError::invalid("A subscription needs a recurring price"));
    }
    let Some(item) = before.stripe_item_id.as_deref() else {
        return Err(AppError::conflict(
            "This subscription's details have not arrived from Stripe yet; try again shortly",
        ));
    };
    let form = Form::new()
        .set("items[0][id]", item)
        .set("items[0][price]", &price.stripe_price_id);
    let key = billing.idempotency_key("subscription-update", caller.user.id, None);
    let updated = billing
        .stripe
        .update_subscription(&before.stripe_subscription_id, &form, &key)
        .await?;
    let subscription = mirror_subscription(&state, &updated, before.user_id).await?;
    record(
        &state,
        &caller.user,
        &origin,
        "subscription updated",
        json!({
            "action": "update_subscription", "subscription_id": subscription.id,
            "before_price_id": before.price_id, "price_id": price.id,
        }),
    );
    Ok(ok(
        StatusCode::OK,
        json!({
            "success": true,
            "message": "Subscription updated successfully",
            "subscription": subscription_json(&subscription),
        }),
    ))
}

/// Ends a subscription at once. A user may cancel their own.
async fn cancel_subscription(
    billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    input: Input,
) -> Result<Response, AppError> {
    let before = own_subscription(&state, &caller, &input).await?;
    still_live(&before)?;
    let canceled = billing
        .stripe
        .cancel_subscription(&before.stripe_subscription_id)
        .await?;
    let subscription = mirror_subscription(&state, &canceled, before.user_id).await?;
    record(
        &state,
        &caller.user,
        &origin,
        "subscription canceled",
        json!({
            "action": "cancel_subscription", "subscription_id": subscription.id, "user_id": before.user_id,
        }),
    );
    Ok(ok(
        StatusCode::OK,
        json!({
            "success": true,
            "message": "Subscription canceled successfully",
            "subscription": subscription_json(&subscription),
        }),
    ))
}

/// Sets or clears `cancel_at_period_end`.
async fn set_period_end_cancel(
    billing: &Billing,
    state: &AppState,
    caller: &crate::accounts::User,
    origin: &Origin,
    before: Subscription,
    cancel: bool,
) -> Result<Response, AppError> {
    still_live(&before)?;
    let key = billing.idempotency_key("subscription-renewal", caller.id, None);
    let updated = billing
        .stripe
        .update_subscription(
            &before.stripe_subscription_id,
            &Form::new().set("cancel_at_period_end", cancel),
            &key,
        )
        .await?;
    let subscription = mirror_subscription(state, &updated, before.user_id).await?;
    let (action, message) = if cancel {
        (
            "deactivate_subscription",
            "Subscription will end at the close of its current period",
        )
    } else {
        (
            "reactivate_subscription",
            "Subscription reactivated successfully",
        )
    };
    record(
        state,
        caller,
        origin,
        action,
        json!({
            "action": action, "subscription_id": subscription.id, "user_id": before.user_id,
        }),
    );
    Ok(ok(
        StatusCode::OK,
        json!({ "success": true, "message": message, "subscription": subscription_json(&subscription) }),
    ))
}

/// Stops renewal at the end of the paid period: a cancellation, so a user may do it
/// to their own subscription.
async fn deactivate_subscription(
    billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    input: Input,
) -> Result<Response, AppError> {
    let before = own_subscription(&state, &caller, &input).await?;
    set_period_end_cancel(&billing, &state, &caller.user, &origin, before, true).await
}

/// Undoes a deactivation. The contract lets users only see and cancel their own
/// subscriptions; resuming one is left to `manage_billing`.
async fn reactivate_subscription(
    billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    input: Input,
) -> Result<Response, AppError> {
    let target = input.reference(&["subscription_id", "id"])?;
    let before = store::find_subscription(&state.db, &target)
        .await?
        .ok_or_else(|| AppError::not_found("Subscription not found"))?;
    set_period_end_cancel(&billing, &state, &caller.user, &origin, before, false).await
}

/// Cancels at Stripe if still live, then takes the subscription off the lists.
async fn delete_subscription(
    billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    input: Input,
) -> Result<Response, AppError> {
    let target = input.reference(&["subscription_id", "id"])?;
    let before = store::find_subscription(&state.db, &target)
        .await?
        .ok_or_else(|| AppError::not_found("Subscription not found"))?;
    if before.is_live() {
        let canceled = billing
            .stripe
            .cancel_subscription(&before.stripe_subscription_id)
            .await?;
        mirror_subscription(&state, &canceled, before.user_id).await?;
    }
    store::hide_subscription(&state.db, before.id).await?;
    record(
        &state,
        &caller.user,
        &origin,
        "subscription deleted",
        json!({
            "action": "delete_subscription", "subscription_id": before.id, "user_id": before.user_id,
        }),
    );
    Ok(ok(
        StatusCode::OK,
        json!({ "success": true, "message": "Subscription deleted successfully" }),
    ))
}

fn page(input: &Input) -> Result<(i64, i64), AppError> {
    let page = input.integer("page")?.unwrap_or(1).max(1);
    let per_page = input.integer("per_page")?.unwrap_or(50).clamp(1, 100);
    Ok((page, per_page))
}

async fn subscriptions(
    _billing: Stripe,
    State(state): State<AppState>,
    _caller: CurrentUser,
    input: Input,
) -> Result<Response, AppError> {
    let (page, per_page) = page(&input)?;
    let user_id = input.integer("user_id")?;
    let offset = (page - 1).saturating_mul(per_page);
    let (list, total) = store::list_subscriptions(&state.db, user_id, per_page, offset).await?;
    Ok(ok(
        StatusCode::OK,
        json!({
            "success": true,
            "subscriptions": list.iter().map(subscription_json).collect::<Vec<_>>(),
            "total": total,
            "page": page,
            "per_page": per_page,
        }),
    ))
}

async fn subscription(
    _billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    input: Input,
) -> Result<Response, AppError> {
    let subscription = own_subscription(&state, &caller, &input).await?;
    Ok(ok(
        StatusCode::OK,
        json!({ "success": true, "subscription": subscription_json(&subscription) }),
    ))
}

/// Every subscription of one user, newest first (at most a thousand).
async fn subscriptions_of(state: &AppState, user_id: i64) -> Result<Vec<Value>, AppError> {
    let (list, _) = store::list_subscriptions(&state.db, Some(user_id), 1000, 0).await?;
    Ok(list.iter().map(subscription_json).collect())
}

async fn user_subscriptions(
    _billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    input: Input,
) -> Result<Response, AppError> {
    let user_id = input.integer("user_id")?.unwrap_or(caller.user.id);
    if user_id != caller.user.id {
        if !caller.access.has(Permission::ManageBilling) {
            return Err(AppError::unauthorized_access());
        }
        crate::accounts::store::find_by_id(state.db.pool(), user_id)
            .await?
            .ok_or_else(|| AppError::not_found("User not found"))?;
    }
    let list = subscriptions_of(&state, user_id).await?;
    Ok(ok(
        StatusCode::OK,
        json!({ "success": true, "user_id": user_id, "subscriptions": list }),
    ))
}

async fn user_email_subscriptions(
    _billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    input: Input,
) -> Result<Response, AppError> {
    let email = input.text("email")?.map(|e| e.trim().to_owned());
    let (user_id, email) = match email {
        None => (caller.user.id, caller.user.email.clone()),
        Some(e) if e.eq_ignore_ascii_case(&caller.user.email) => {
            (caller.user.id, caller.user.email.clone())
        }
        Some(e) => {
            if !caller.access.has(Permission::ManageBilling) {
                return Err(AppError::unauthorized_access());
            }
            if e.is_empty() || e.len() > 254 {
                return Err(AppError::invalid("`email` is not a valid email address"));
            }
            store::user_by_email(&state.db, &e)
                .await?
                .ok_or_else(|| AppError::not_found("User not found"))?
        }
    };
    let list = subscriptions_of(&state, user_id).await?;
    Ok(ok(
        StatusCode::OK,
        json!({ "success": true, "email": email, "user_id": user_id, "subscriptions": list }),
    ))
}

// ---- checkout ----------------------------------------------------------------------

#[derive(Deserialize)]
struct CreateCheckout {
    price_id: Ref,
    #[serde(default)]
    success_url: Option<String>,
    #[serde(default)]
    cancel_url: Option<String>,
    #[serde(default)]
    quantity: Option<i64>,
    /// Accepted for the old client; only the caller's own id is allowed.
    #[serde(default)]
    user_id: Option<i64>,
}

fn return_url(field: &str, value: &str) -> Result<String, AppError> {
    let value = value.trim();
    let ok = (value.starts_with("https://") || value.starts_with("http://"))
        && value.len() <= 2048
        && !value.chars().any(|c| c.is_control() || c.is_whitespace());
    if ok {
        Ok(value.to_owned())
    } else {
        Err(AppError::invalid(format!(
            "`{field}` must be an http(s) URL of at most 2048 characters"
        )))
    }
}

async fn create_checkout_session(
    billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    headers: HeaderMap,
    Json(body): Json<CreateCheckout>,
) -> Result<Response, AppError> {
    if body.user_id.is_some_and(|id| id != caller.user.id) {
        return Err(AppError::unauthorized_access());
    }
    let quantity = body.quantity.unwrap_or(1);
    if !(1..=100).contains(&quantity) {
        return Err(AppError::invalid("`quantity` must be between 1 and 100"));
    }
    let public = &state.config.public_url;
    let success_url = match body.success_url.as_deref() {
        Some(url) => return_url("success_url", url)?,
        None => format!("{public}/checkout-success?session_id={{CHECKOUT_SESSION_ID}}"),
    };
    let cancel_url = match body.cancel_url.as_deref() {
        Some(url) => return_url("cancel_url", url)?,
        None => format!("{public}/checkout-cancel"),
    };
    let price = live_price(&state, &body.price_id).await?;
    let mode = if price.recurring_interval.is_some() {
        "subscription"
    } else {
        "payment"
    };
    let user = &caller.user;
    let customer = customer_for(&billing, &state, user).await?;
    let mut form = Form::new()
        .set("mode", mode)
        .set("customer", &customer)
        .set("client_reference_id", user.id)
        .set("line_items[0][price]", &price.stripe_price_id)
        .set("line_items[0][quantity]", quantity)
        .set("success_url", &success_url)
        .set("cancel_url", &cancel_url)
        .set("metadata[user_id]", user.id)
        .set("metadata[price_id]", price.id);
    if mode == "subscription" {
        form = form.set("subscription_data[metadata][user_id]", user.id);
    }
    let key = billing.idempotency_key("checkout", user.id, client_key(&headers));
    let session = billing.stripe.create_checkout_session(&form, &key).await?;
    store::insert_checkout(&state.db, &session, user.id, price.id, mode).await?;
    record(
        &state,
        user,
        &origin,
        "checkout started",
        json!({
            "action": "create_checkout_session", "session_id": session.id, "price_id": price.id, "mode": mode,
        }),
    );
    Ok(ok(
        StatusCode::OK,
        json!({
            "success": true,
            "message": "Checkout session created",
            "url": session.url,
            "session_id": session.id,
            "sessionId": session.id,
        }),
    ))
}

/// Where the browser lands after paying. It reports what the webhook has recorded
/// and changes nothing: reloading it cannot create or repeat an order.
async fn checkout_success(
    _billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    input: Input,
) -> Result<Response, AppError> {
    let session_id = input
        .text("session_id")?
        .ok_or_else(|| AppError::invalid("Missing field `session_id`"))?;
    let Ok(Ref::Stripe(session_id)) = Ref::parse(&session_id) else {
        return Err(AppError::invalid(
            "`session_id` is not a checkout session id",
        ));
    };
    let mut conn = state.db.pool().acquire().await?;
    let checkout = store::find_checkout(&mut conn, &session_id)
        .await?
        .ok_or_else(|| AppError::not_found("Checkout session not found"))?;
    drop(conn);
    if checkout.user_id != caller.user.id && !caller.access.has(Permission::ManageBilling) {
        return Err(AppError::unauthorized_access());
    }
    let order = store::find_order(&state.db, &session_id).await?;
    let (paid, message) = match &order {
        Some(o) if o.status == "paid" => (true, "Payment received; thank you"),
        Some(o) if o.status == "failed" => (false, "The payment failed"),
        Some(_) => (false, "The payment is being processed"),
        None => (
            false,
            "Waiting for Stripe to confirm the payment; this page updates when it does",
        ),
    };
    Ok(ok(
        StatusCode::OK,
        json!({
            "success": true,
            "message": message,
            "session_id": session_id,
            "status": checkout.status,
            "paid": paid,
            "order": order.as_ref().map(order_json),
        }),
    ))
}

async fn checkout_cancel(_billing: Stripe) -> Response {
    ok(
        StatusCode::OK,
        json!({ "success": true, "message": "Checkout canceled; you have not been charged" }),
    )
}

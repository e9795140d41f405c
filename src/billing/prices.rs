//! Prices: created, replaced and archived at Stripe by `manage_billing`, listed for
//! any logged-in user (active prices of active products only, unless they manage
//! billing). Amounts arrive in major units as text or numbers and are integer minor
//! units from there on.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::input::Body;
use super::service::{self, is_manager, PRICE_NOT_FOUND, PRODUCT_NOT_FOUND};
use super::stripe::Form;
use super::views::{self, Message, PriceView};
use super::{amount, client_key, store, Billing, Ref, Stripe};
use crate::app::AppState;
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::http::Origin;

const NICKNAME_MAX: usize = 250;
const LOOKUP_KEY_MAX: usize = 200;

fn interval(value: &str) -> Result<String, AppError> {
    let lower = value.trim().to_ascii_lowercase();
    match lower.as_str() {
        "day" | "week" | "month" | "year" => Ok(lower),
        _ => Err(AppError::invalid(
            "`interval` must be one of day, week, month, year",
        )),
    }
}

/// The recurring interval a body asks for: `interval`, or `recurring.interval` (the
/// shape create-price documents); `None` for a one-time price.
fn recurring_interval(body: &Body) -> Result<Option<String>, AppError> {
    if let Some(i) = body.text("interval", 10)?.filter(|i| !i.is_empty()) {
        return interval(&i).map(Some);
    }
    match body.object_text("recurring", "interval")? {
        Some(i) => interval(&i).map(Some),
        None => Ok(None),
    }
}

/// The Stripe parameters of a new price, from a create or an edit body. Only
/// `per_unit` billing is offered (tiers need a UI the old client never had).
fn price_form(body: &Body, product: &str, recurring: Option<&String>) -> Result<Form, AppError> {
    let currency = amount::currency(
        &body
            .text("currency", 3)?
            .ok_or_else(|| AppError::invalid("Missing field `currency`"))?,
    )
    .map_err(AppError::Invalid)?;
    let cents = body
        .money_in("unit_amount", &currency)?
        .ok_or_else(|| AppError::invalid("Missing field `unit_amount`"))?;
    if let Some(scheme) = body.optional_line("billing_scheme", 20)? {
        if scheme != "per_unit" {
            return Err(AppError::invalid("`billing_scheme` must be per_unit"));
        }
    }
    let mut form = Form::new()
        .set("product", product)
        .set("unit_amount", cents)
        .set("currency", currency)
        .set_opt("recurring[interval]", recurring)
        .set_opt("nickname", body.optional_line("nickname", NICKNAME_MAX)?)
        .set("active", body.flag("active")?.unwrap_or(true));
    if let Some(key) = body.optional_line("lookup_key", LOOKUP_KEY_MAX)? {
        // The key moves to the new price instead of colliding with the old one.
        form = form.set("lookup_key", key).set("transfer_lookup_key", true);
    }
    for (key, value) in body.metadata("price_metadata")? {
        form = form.set(format!("metadata[{key}]"), value);
    }
    Ok(form)
}

fn found(price: Option<store::Price>) -> Result<store::Price, AppError> {
    price.ok_or_else(|| AppError::not_found(PRICE_NOT_FOUND))
}

/// Creates a price of the product `product_id` at Stripe and mirrors it: the rules of
/// `/create-price` and of the web UI's product page.
pub async fn create(
    billing: &Billing,
    state: &AppState,
    caller: &CurrentUser,
    origin: &Origin,
    client_key: Option<&str>,
    body: &Body,
) -> Result<store::Price, AppError> {
    let product_id = body.required_stripe_id("product_id")?;
    let recurring = recurring_interval(body)?;
    let product = store::find_product(&state.db, &Ref::Stripe(product_id))
        .await?
        .ok_or_else(|| AppError::not_found(PRODUCT_NOT_FOUND))?;
    let form = price_form(body, &product.stripe_product_id, recurring.as_ref())?;
    let key = billing.idempotency_key("price", caller.user.id, client_key);
    let created = billing.stripe.create_price(&form, &key).await?;
    if created.product != product.stripe_product_id {
        return Err(AppError::internal(anyhow::anyhow!(
            "Stripe created price {} for another product",
            created.id
        )));
    }
    let price = store::upsert_price(&state.db, product.id, &created).await?;
    service::record(
        state,
        caller,
        origin,
        "price created",
        json!({
            "action": "create_price", "price_id": price.stripe_price_id,
            "product_id": product.stripe_product_id, "unit_amount_cents": price.unit_amount,
            "currency": price.currency,
        }),
    );
    Ok(price)
}

pub async fn create_price(
    billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    let price = create(
        &billing,
        &state,
        &caller,
        &origin,
        client_key(&headers),
        &body,
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(PriceView::from(&price))).into_response())
}

/// Stripe prices cannot change their amount, so an edit creates the new Stripe price
/// first and only then deactivates the old one **(fixed: the old service deactivated
/// first, losing the price when creation failed)**. The local row keeps its `id` and
/// takes the new `price_id`; the product stays the stored one, whatever the body says.
pub async fn replace(
    billing: &Billing,
    state: &AppState,
    caller: &CurrentUser,
    origin: &Origin,
    body: &Body,
) -> Result<store::Price, AppError> {
    let id = body.required_stripe_id("price_id")?;
    let before = found(store::find_price(&state.db, &Ref::Stripe(id)).await?)?;
    let recurring = match body.text("type", 20)?.as_deref() {
        Some("recurring") => Some(
            recurring_interval(body)?
                .ok_or_else(|| AppError::invalid("`interval` is required for a recurring price"))?,
        ),
        _ => None,
    };
    let form = price_form(body, &before.stripe_product_id, recurring.as_ref())?;
    let key = billing.idempotency_key("price-replace", caller.user.id, None);
    let created = billing.stripe.create_price(&form, &key).await?;
    let key = billing.idempotency_key("price-retire", caller.user.id, None);
    billing
        .stripe
        .update_price(
            &before.stripe_price_id,
            &Form::new().set("active", false),
            &key,
        )
        .await?;
    let price = store::replace_price(&state.db, before.id, &created).await?;
    service::record(
        state,
        caller,
        origin,
        "price replaced",
        json!({
            "action": "edit_price", "id": price.id,
            "before": PriceView::from(&before), "after": PriceView::from(&price),
        }),
    );
    Ok(price)
}

pub async fn edit_price(
    billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    body: Body,
) -> Result<Response, AppError> {
    let price = replace(&billing, &state, &caller, &origin, &body).await?;
    Ok(axum::Json(PriceView::from(&price)).into_response())
}

/// Stripe never deletes a price; deleting one archives it there and here.
pub async fn archive(
    billing: &Billing,
    state: &AppState,
    caller: &CurrentUser,
    origin: &Origin,
    body: &Body,
) -> Result<store::Price, AppError> {
    let id = body.required_stripe_id("price_id")?;
    let before = found(store::find_price(&state.db, &Ref::Stripe(id)).await?)?;
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
    service::record(
        state,
        caller,
        origin,
        "price archived",
        json!({ "action": "delete_price", "price_id": price.stripe_price_id }),
    );
    Ok(price)
}

pub async fn delete_price(
    billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    body: Body,
) -> Result<Response, AppError> {
    archive(&billing, &state, &caller, &origin, &body).await?;
    Ok(axum::Json(Message {
        message: "Price deleted successfully",
    })
    .into_response())
}

pub async fn prices(
    _billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    _body: Body,
) -> Result<Response, AppError> {
    let list = store::list_prices(&state.db, None, !is_manager(&caller)).await?;
    Ok(axum::Json(views::prices(&list)).into_response())
}

pub async fn price(
    _billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    body: Body,
) -> Result<Response, AppError> {
    let id = body.required_stripe_id("price_id")?;
    let price = found(
        store::find_price(&state.db, &Ref::Stripe(id))
            .await?
            .filter(|p| is_manager(&caller) || (p.active && p.product_active)),
    )?;
    Ok(axum::Json(PriceView::from(&price)).into_response())
}

pub async fn prices_for_product(
    _billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    body: Body,
) -> Result<Response, AppError> {
    let id = body.required_stripe_id("product_id")?;
    let manager = is_manager(&caller);
    let product = store::find_product(&state.db, &Ref::Stripe(id))
        .await?
        .filter(|p| manager || p.active)
        .ok_or_else(|| AppError::not_found(PRODUCT_NOT_FOUND))?;
    let list = store::list_prices(&state.db, Some(product.id), !manager).await?;
    Ok(axum::Json(views::prices(&list)).into_response())
}

//! Products: created, edited and archived at Stripe by `manage_billing`, listed for
//! any logged-in user (active ones only, unless they manage billing).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::input::Body;
use super::service::{self, is_manager, PRODUCT_NOT_FOUND};
use super::stripe::Form;
use super::views::{self, Message, ProductView};
use super::{client_key, store, Billing, Ref, Stripe};
use crate::app::AppState;
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::http::Origin;

const NAME_MAX: usize = 250;
const DESCRIPTION_MAX: usize = 2000;
const DESCRIPTOR_MAX: usize = 22;
const LABEL_MAX: usize = 12;

/// The Stripe parameters of a product that create and edit share. Create reads its
/// metadata from `metadata`, edit from `product_metadata` (the old client sends each
/// route's own key). `attributes` and `caption` are accepted and dropped: Stripe's API
/// no longer has them.
fn product_form(body: &Body, metadata_key: &str) -> Result<Form, AppError> {
    let mut form = Form::new()
        .set_opt("active", body.flag("active")?)
        .set_opt("shippable", body.flag("shippable")?)
        .set_opt(
            "statement_descriptor",
            body.optional_line("statement_descriptor", DESCRIPTOR_MAX)?,
        )
        .set_opt("unit_label", body.optional_line("unit_label", LABEL_MAX)?)
        .set_opt(
            "url",
            body.optional_line("url", 2048)?
                .map(|url| {
                    if super::input::is_url(&url) {
                        Ok(url)
                    } else {
                        Err(AppError::invalid("`url` must be an http(s) URL"))
                    }
                })
                .transpose()?,
        );
    for (key, value) in body.metadata(metadata_key)? {
        form = form.set(format!("metadata[{key}]"), value);
    }
    for (i, url) in body.urls("images")?.iter().enumerate() {
        form = form.set(format!("images[{i}]"), url);
    }
    Ok(form)
}

fn found(product: Option<store::Product>) -> Result<store::Product, AppError> {
    product.ok_or_else(|| AppError::not_found(PRODUCT_NOT_FOUND))
}

/// Creates a product at Stripe and mirrors it: the rules of `/create-product` and of
/// the web UI's products page.
pub async fn create(
    billing: &Billing,
    state: &AppState,
    caller: &CurrentUser,
    origin: &Origin,
    client_key: Option<&str>,
    body: &Body,
) -> Result<store::Product, AppError> {
    let name = body.required_line("name", NAME_MAX)?;
    let description = body
        .text("description", DESCRIPTION_MAX)?
        .filter(|d| !d.is_empty());
    let form = product_form(body, "metadata")?
        .set("name", &name)
        .set_opt("description", description);
    let key = billing.idempotency_key("product", caller.user.id, client_key);
    let created = billing.stripe.create_product(&form, &key).await?;
    let product = store::upsert_product(&state.db, &created).await?;
    service::record(
        state,
        caller,
        origin,
        "product created",
        json!({ "action": "create_product", "product_id": product.stripe_product_id, "name": product.name }),
    );
    Ok(product)
}

pub async fn create_product(
    billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    let product = create(
        &billing,
        &state,
        &caller,
        &origin,
        client_key(&headers),
        &body,
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(ProductView::from(&product))).into_response())
}

/// Changes the product `product_id` at Stripe and mirrors it. The old client sends
/// back the whole product it was shown, with its edits; the web UI sends its fields.
pub async fn edit(
    billing: &Billing,
    state: &AppState,
    caller: &CurrentUser,
    origin: &Origin,
    body: &Body,
) -> Result<store::Product, AppError> {
    let id = body.required_stripe_id("product_id")?;
    let before = found(store::find_product(&state.db, &Ref::Stripe(id)).await?)?;
    let name = body.required_line("name", NAME_MAX)?;
    // An empty description clears it, which is how Stripe unsets a field.
    let description = body.text("description", DESCRIPTION_MAX)?;
    let form = product_form(body, "product_metadata")?
        .set("name", &name)
        .set_opt("description", description);
    let key = billing.idempotency_key("product-edit", caller.user.id, None);
    let updated = billing
        .stripe
        .update_product(&before.stripe_product_id, &form, &key)
        .await?;
    let product = store::upsert_product(&state.db, &updated).await?;
    service::record(
        state,
        caller,
        origin,
        "product updated",
        json!({
            "action": "edit_product", "product_id": product.stripe_product_id,
            "before": ProductView::from(&before), "after": ProductView::from(&product),
        }),
    );
    Ok(product)
}

pub async fn edit_product(
    billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    body: Body,
) -> Result<Response, AppError> {
    let product = edit(&billing, &state, &caller, &origin, &body).await?;
    Ok(axum::Json(ProductView::from(&product)).into_response())
}

/// Archives the product `product_id` (Stripe refuses to delete one with prices, and
/// the old client's delete would have failed locally anyway): it leaves the lists of
/// non-managers and can no longer be bought.
pub async fn archive(
    billing: &Billing,
    state: &AppState,
    caller: &CurrentUser,
    origin: &Origin,
    body: &Body,
) -> Result<store::Product, AppError> {
    let id = body.required_stripe_id("product_id")?;
    let before = found(store::find_product(&state.db, &Ref::Stripe(id)).await?)?;
    let key = billing.idempotency_key("product-archive", caller.user.id, None);
    let updated = billing
        .stripe
        .update_product(
            &before.stripe_product_id,
            &Form::new().set("active", false),
            &key,
        )
        .await?;
    let product = store::upsert_product(&state.db, &updated).await?;
    service::record(
        state,
        caller,
        origin,
        "product archived",
        json!({ "action": "delete_product", "product_id": product.stripe_product_id }),
    );
    Ok(product)
}

pub async fn delete_product(
    billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    body: Body,
) -> Result<Response, AppError> {
    archive(&billing, &state, &caller, &origin, &body).await?;
    Ok(axum::Json(Message {
        message: "Product deleted successfully",
    })
    .into_response())
}

pub async fn products(
    _billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    _body: Body,
) -> Result<Response, AppError> {
    let list = store::list_products(&state.db, !is_manager(&caller)).await?;
    Ok(axum::Json(views::products(&list)).into_response())
}

pub async fn product(
    _billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    body: Body,
) -> Result<Response, AppError> {
    let id = body.required_stripe_id("product_id")?;
    let product = found(
        store::find_product(&state.db, &Ref::Stripe(id))
            .await?
            .filter(|p| p.active || is_manager(&caller)),
    )?;
    Ok(axum::Json(ProductView::from(&product)).into_response())
}

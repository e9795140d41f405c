//! Checkout: a logged-in user opens a Stripe Checkout session for themself; the pages
//! Stripe sends the browser back to record a paid session once and move on to the
//! configured front end.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::input::Body;
use super::service;
use super::stripe::Form;
use super::views::CheckoutStarted;
use super::{client_key, store, Billing, Stripe};
use crate::app::AppState;
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::http::Origin;

const QUANTITY_MAX: i64 = 100;

/// Where Stripe sends the browser back to after a checkout: the JSON routes' pages,
/// or the web UI's.
pub struct ReturnTo {
    /// With `{CHECKOUT_SESSION_ID}`, which Stripe fills in.
    pub success_url: String,
    pub cancel_url: String,
}

/// Opens a Stripe Checkout session for `{price_id, user_id?, quantity?, mode?}`. The
/// buyer is the session's user; `user_id` naming someone else is honoured only for
/// `manage_billing`. The mode follows the price (one-time: `payment`, recurring:
/// `subscription`); a `mode` that contradicts it is refused.
pub async fn start(
    billing: &Billing,
    state: &AppState,
    caller: &CurrentUser,
    origin: &Origin,
    client_key: Option<&str>,
    body: &Body,
    return_to: &ReturnTo,
) -> Result<CheckoutStarted, AppError> {
    let price_id = body.required_stripe_id("price_id")?;
    let quantity = body.int("quantity")?.unwrap_or(1);
    if !(1..=QUANTITY_MAX).contains(&quantity) {
        return Err(AppError::invalid(format!(
            "`quantity` must be between 1 and {QUANTITY_MAX}"
        )));
    }
    let asked_mode = body.optional_line("mode", 20)?;
    let user = service::acting_user(state, caller, body).await?;
    let price = service::live_price(state, &price_id).await?;
    let mode = if price.recurring_interval.is_some() {
        "subscription"
    } else {
        "payment"
    };
    if asked_mode.as_deref().is_some_and(|m| m != mode) {
        return Err(AppError::invalid(format!(
            "`mode` must be {mode} for this price"
        )));
    }
    let customer = service::customer_for(billing, state, &user).await?;
    let mut form = Form::new()
        .set("mode", mode)
        .set("customer", &customer)
        .set("client_reference_id", user.id)
        .set("line_items[0][price]", &price.stripe_price_id)
        .set("line_items[0][quantity]", quantity)
        .set("success_url", &return_to.success_url)
        .set("cancel_url", &return_to.cancel_url)
        .set("metadata[user_id]", user.id)
        .set("metadata[price_id]", &price.stripe_price_id)
        .set("metadata[quantity]", quantity);
    if mode == "subscription" {
        form = form.set("subscription_data[metadata][user_id]", user.id);
    }
    let key = billing.idempotency_key("checkout", user.id, client_key);
    let session = billing.stripe.create_checkout_session(&form, &key).await?;
    let url = session.url.clone().ok_or_else(|| {
        AppError::internal(anyhow::anyhow!(
            "Stripe gave checkout session {} no url",
            session.id
        ))
    })?;
    store::insert_checkout(&state.db, &session, user.id, price.id, mode).await?;
    service::record(
        state,
        caller,
        origin,
        "checkout started",
        json!({
            "action": "create_checkout_session", "session_id": session.id,
            "user_id": user.id, "price_id": price.stripe_price_id, "mode": mode,
        }),
    );
    Ok(CheckoutStarted {
        checkout_url: url,
        session_id: session.id,
    })
}

/// `{price_id, user_id?, quantity?, mode?}` → `{checkout_url}`; see [`start`].
pub async fn create_checkout_session(
    billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    let public = &state.config.public_url;
    let return_to = ReturnTo {
        success_url: format!("{public}/checkout-success?session_id={{CHECKOUT_SESSION_ID}}"),
        cancel_url: format!("{public}/checkout-cancel"),
    };
    let started = start(
        &billing,
        &state,
        &caller,
        &origin,
        client_key(&headers),
        &body,
        &return_to,
    )
    .await?;
    Ok(axum::Json(started).into_response())
}

fn see_other(url: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, url.to_owned())]).into_response()
}

/// A checkout session opened here, once the browser is back from Stripe: Stripe is
/// asked about it (the address is never trusted) and, when paid, it is recorded
/// exactly as the webhook records it, once per session however often the page is
/// loaded **(fixed: the old page added an order on every load)**. Returns whose
/// session it is and whether it is paid; 404 for a session not opened here.
pub async fn confirm(
    billing: &Billing,
    state: &AppState,
    session_id: &str,
) -> Result<(store::Checkout, bool), AppError> {
    let mut conn = state.db.pool().acquire().await?;
    let known = store::find_checkout(&mut conn, session_id).await?;
    drop(conn);
    let known = known.ok_or_else(|| AppError::not_found("Checkout session not found"))?;
    let paid = service::record_paid_session(billing, state, session_id).await?;
    Ok((known, paid))
}

/// Where Stripe sends the browser after paying; see [`confirm`]. Then it redirects
/// to `CHECKOUT_SUCCESS_URL`, or answers JSON without the session's details when none
/// is set.
pub async fn checkout_success(
    billing: Stripe,
    State(state): State<AppState>,
    body: Body,
) -> Result<Response, AppError> {
    let session_id = body
        .stripe_id("session_id")?
        .ok_or_else(|| AppError::invalid("No session ID found in the request"))?;
    let (_, paid) = confirm(&billing, &state, &session_id).await?;
    if let Some(url) = &state.config.checkout_success_url {
        return Ok(see_other(
            &url.replace("{CHECKOUT_SESSION_ID}", &session_id),
        ));
    }
    let message = if paid {
        "Success! Your payment was received."
    } else {
        "Your payment has not been confirmed yet."
    };
    Ok(
        axum::Json(json!({ "message": message, "session_id": session_id, "paid": paid }))
            .into_response(),
    )
}

/// Where Stripe sends the browser when the buyer gives up: nothing changes.
pub async fn checkout_cancel(_billing: Stripe, State(state): State<AppState>) -> Response {
    match &state.config.checkout_cancel_url {
        Some(url) => see_other(url),
        None => axum::Json(json!({ "message": "Payment cancelled." })).into_response(),
    }
}

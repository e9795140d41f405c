//! Checkout: a logged-in user opens a Stripe Checkout session for themself; the pages
//! Stripe sends the browser back to record a paid session once and move on to the
//! configured front end.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::bodies::{CheckoutBody, CheckoutSessionQuery};
use super::input::{self, IntOrDigits, Params, StripeId};
use super::service;
use super::stripe::Form;
use super::views::{CheckoutCancelled, CheckoutOutcome, CheckoutStarted};
use super::{client_key, store, Billing, Stripe};
use super::{STRIPE_400, STRIPE_402, STRIPE_502, STRIPE_503};
use crate::app::AppState;
use crate::auth::CurrentUser;
use crate::error::{AppError, ErrorBody};
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
    body: &CheckoutBody,
    return_to: &ReturnTo,
) -> Result<CheckoutStarted, AppError> {
    let price_id = body.price_id.clone().required("price_id")?;
    let quantity = body.quantity.and_then(IntOrDigits::get).unwrap_or(1);
    if !(1..=QUANTITY_MAX).contains(&quantity) {
        return Err(AppError::invalid(format!(
            "`quantity` must be between 1 and {QUANTITY_MAX}"
        )));
    }
    let asked_mode = input::optional_line("mode", body.mode.as_deref(), 20)?;
    let user = service::acting_user(state, caller, body.user_id, body.email.as_deref()).await?;
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

/// Open a Stripe Checkout session
///
/// For the caller (or, for `manage_billing`, the user named by `user_id` or `email`).
/// The mode follows the price: `payment` for a one-time price, `subscription` for a
/// recurring one. Send the browser to `checkout_url`; Stripe sends it back to
/// `/checkout-success` or `/checkout-cancel`. An `Idempotency-Key` header makes a
/// retry safe.
#[utoipa::path(
    post,
    path = "/create-checkout-session",
    tag = "billing",
    request_body = CheckoutBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "The caller's key for this checkout: a retry with the same key opens one session (a key over 255 characters is ignored)")),
    responses(
        (status = 200, description = "Opened", body = CheckoutStarted),
        (status = 400, description = STRIPE_400, body = ErrorBody),
        (status = 402, description = STRIPE_402, body = ErrorBody),
        (status = 403, description = "Names another user without `manage_billing` (`unauthorized_access`), or the X-CSRFToken header is missing or wrong", body = ErrorBody),
        (status = 404, description = "`User not found`, `Price not found`, or Stripe does not know an object (`stripe_not_found`)", body = ErrorBody),
        (status = 502, description = STRIPE_502, body = ErrorBody),
        (status = 503, description = STRIPE_503, body = ErrorBody),
    )
)]
pub async fn create_checkout_session(
    billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    headers: HeaderMap,
    Params(body): Params<CheckoutBody>,
) -> Result<axum::Json<CheckoutStarted>, AppError> {
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
    Ok(axum::Json(started))
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

/// Back from a Stripe Checkout
///
/// Where Stripe sends the browser after paying. Stripe is asked about the session (the
/// address is never trusted) and, when paid, the order is recorded, once however
/// often the page is loaded. Then the browser is sent on to `CHECKOUT_SUCCESS_URL`
/// when one is configured; otherwise the answer is JSON.
#[utoipa::path(
    get,
    path = "/checkout-success",
    tag = "billing",
    params(CheckoutSessionQuery),
    responses(
        (status = 200, description = "No `CHECKOUT_SUCCESS_URL` is configured: whether it is paid", body = CheckoutOutcome),
        (status = 303, description = "On to `CHECKOUT_SUCCESS_URL` (with the session id filled in)",
            headers(("Location" = String, description = "The configured front end's page"))),
        (status = 400, description = "`No session ID found in the request`, a malformed id, or Stripe refused the request (`stripe_invalid_request`)", body = ErrorBody),
        (status = 404, description = "`Checkout session not found` (not opened here), or Stripe does not know it (`stripe_not_found`)", body = ErrorBody),
        (status = 502, description = STRIPE_502, body = ErrorBody),
        (status = 503, description = STRIPE_503, body = ErrorBody),
    )
)]
pub async fn checkout_success(
    billing: Stripe,
    State(state): State<AppState>,
    Params(query): Params<CheckoutSessionQuery>,
) -> Result<Response, AppError> {
    let session_id = query
        .session_id
        .and_then(StripeId::get)
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
    Ok(axum::Json(CheckoutOutcome {
        message,
        session_id,
        paid,
    })
    .into_response())
}

/// Back from an abandoned Stripe Checkout
///
/// Where Stripe sends the browser when the buyer gives up: nothing changes. The
/// browser is sent on to `CHECKOUT_CANCEL_URL` when one is configured; otherwise the
/// answer is JSON.
#[utoipa::path(
    get,
    path = "/checkout-cancel",
    tag = "billing",
    responses(
        (status = 200, description = "No `CHECKOUT_CANCEL_URL` is configured", body = CheckoutCancelled),
        (status = 303, description = "On to `CHECKOUT_CANCEL_URL`",
            headers(("Location" = String, description = "The configured front end's page"))),
    )
)]
pub async fn checkout_cancel(_billing: Stripe, State(state): State<AppState>) -> Response {
    match &state.config.checkout_cancel_url {
        Some(url) => see_other(url),
        None => axum::Json(CheckoutCancelled {
            message: "Payment cancelled.",
        })
        .into_response(),
    }
}

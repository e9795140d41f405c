//! Subscriptions: created, moved and deleted by `manage_billing`; seen and canceled
//! by their owner too. Every route names the subscription it acts on by its Stripe
//! id **(fixed: the old update-subscription changed the user's first one)**.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::input::Body;
use super::service::{self, is_manager, SUBSCRIPTION_NOT_FOUND};
use super::store::{self, Subscription};
use super::stripe::Form;
use super::views::{self, Message, SubscriptionView};
use super::{client_key, Billing, Ref, Stripe};
use crate::app::AppState;
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::http::Origin;

/// Stripe's longest trial.
const TRIAL_DAYS_MAX: i64 = 730;
/// What one list answers at most.
const LIST_MAX: i64 = 1000;

fn still_live(s: &Subscription) -> Result<(), AppError> {
    if s.is_live() {
        Ok(())
    } else {
        Err(AppError::conflict("This subscription is already canceled"))
    }
}

/// For `manage_billing`: a subscription of the user named by `user_id` or `email`
/// (the caller when neither), to a recurring price, with an optional trial.
pub async fn create_subscription(
    billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    let price_id = body.required_stripe_id("price_id")?;
    let trial = body.int("trial_period_days")?.unwrap_or(0);
    if !(0..=TRIAL_DAYS_MAX).contains(&trial) {
        return Err(AppError::invalid(format!(
            "`trial_period_days` must be between 0 and {TRIAL_DAYS_MAX}"
        )));
    }
    let user = service::acting_user(&state, &caller, &body).await?;
    let price = service::live_price(&state, &price_id).await?;
    if price.recurring_interval.is_none() {
        return Err(AppError::invalid(
            "This price is not recurring; sell it with create-checkout-session",
        ));
    }
    let customer = service::customer_for(&billing, &state, &user).await?;
    // Incomplete until its first invoice is paid, which a webhook will report.
    let form = Form::new()
        .set("customer", &customer)
        .set("items[0][price]", &price.stripe_price_id)
        .set("payment_behavior", "default_incomplete")
        .set("metadata[user_id]", user.id)
        .set_opt("trial_period_days", (trial > 0).then_some(trial));
    let key = billing.idempotency_key("subscription", caller.user.id, client_key(&headers));
    let created = billing.stripe.create_subscription(&form, &key).await?;
    let subscription = service::mirror_subscription(&state, &created, Some(user.id)).await?;
    service::record(
        &state,
        &caller,
        &origin,
        "subscription created",
        json!({
            "action": "create_subscription", "subscription_id": subscription.stripe_subscription_id,
            "user_id": user.id, "price_id": price.stripe_price_id,
        }),
    );
    Ok((
        StatusCode::CREATED,
        axum::Json(SubscriptionView::from(&subscription)),
    )
        .into_response())
}

/// For `manage_billing`: moves the subscription `subscription_id` to `new_price_id`.
/// The old client also sends `user_id` and `email`, picked by hand; the subscription
/// already says whose it is, so they are not read.
pub async fn update_subscription(
    billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    body: Body,
) -> Result<Response, AppError> {
    let id = body.required_stripe_id("subscription_id")?;
    let new_price = match (body.stripe_id("new_price_id")?, body.stripe_id("price_id")?) {
        (Some(p), _) | (None, Some(p)) => p,
        (None, None) => return Err(AppError::invalid("Missing field `new_price_id`")),
    };
    let before = store::find_subscription(&state.db, &Ref::Stripe(id))
        .await?
        .ok_or_else(|| AppError::not_found(SUBSCRIPTION_NOT_FOUND))?;
    still_live(&before)?;
    let price = service::live_price(&state, &new_price).await?;
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
    let subscription = service::mirror_subscription(&state, &updated, before.user_id).await?;
    service::record(
        &state,
        &caller,
        &origin,
        "subscription updated",
        json!({
            "action": "update_subscription", "subscription_id": subscription.stripe_subscription_id,
            "before_price_id": before.stripe_price_id, "price_id": price.stripe_price_id,
        }),
    );
    Ok(axum::Json(SubscriptionView::from(&subscription)).into_response())
}

/// Sets or clears `cancel_at_period_end` (Stripe's own notion, where the old service
/// invented local statuses). The caller checked `before` is theirs to change
/// ([`service::own_subscription`]).
pub async fn set_period_end_cancel(
    billing: &Billing,
    state: &AppState,
    caller: &CurrentUser,
    origin: &Origin,
    before: Subscription,
    cancel: bool,
) -> Result<(), AppError> {
    still_live(&before)?;
    let key = billing.idempotency_key("subscription-renewal", caller.user.id, None);
    let updated = billing
        .stripe
        .update_subscription(
            &before.stripe_subscription_id,
            &Form::new().set("cancel_at_period_end", cancel),
            &key,
        )
        .await?;
    let subscription = service::mirror_subscription(state, &updated, before.user_id).await?;
    let action = if cancel {
        "cancel_at_period_end"
    } else {
        "reactivate_subscription"
    };
    service::record(
        state,
        caller,
        origin,
        action,
        json!({
            "action": action, "subscription_id": subscription.stripe_subscription_id,
            "user_id": before.user_id,
        }),
    );
    Ok(())
}

/// Ends the subscription at the close of its paid period; an owner may.
pub async fn cancel_subscription(
    billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    body: Body,
) -> Result<Response, AppError> {
    let before = service::own_subscription(&state, &caller, &body).await?;
    set_period_end_cancel(&billing, &state, &caller, &origin, before, true).await?;
    Ok(axum::Json(Message {
        message: "Subscription will be canceled at period end",
    })
    .into_response())
}

/// The old service "paused" collection; Gatehouse stops renewal instead, which an
/// owner may do, and which `reactivate-subscription` undoes.
pub async fn deactivate_subscription(
    billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    body: Body,
) -> Result<Response, AppError> {
    let before = service::own_subscription(&state, &caller, &body).await?;
    set_period_end_cancel(&billing, &state, &caller, &origin, before, true).await?;
    Ok(axum::Json(Message {
        message: "Subscription will not renew after the current period",
    })
    .into_response())
}

/// For `manage_billing`: undoes a cancellation at period end.
pub async fn reactivate_subscription(
    billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    body: Body,
) -> Result<Response, AppError> {
    let before = service::own_subscription(&state, &caller, &body).await?;
    set_period_end_cancel(&billing, &state, &caller, &origin, before, false).await?;
    Ok(axum::Json(Message {
        message: "Subscription reactivated successfully",
    })
    .into_response())
}

/// For `manage_billing`: cancels at Stripe at once if still live, then takes the
/// subscription off the lists (its record stays for the webhooks).
pub async fn delete_subscription(
    billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    body: Body,
) -> Result<Response, AppError> {
    let before = service::own_subscription(&state, &caller, &body).await?;
    if before.is_live() {
        let canceled = billing
            .stripe
            .cancel_subscription(&before.stripe_subscription_id)
            .await?;
        service::mirror_subscription(&state, &canceled, before.user_id).await?;
    }
    store::hide_subscription(&state.db, before.id).await?;
    service::record(
        &state,
        &caller,
        &origin,
        "subscription deleted",
        json!({
            "action": "delete_subscription", "subscription_id": before.stripe_subscription_id,
            "user_id": before.user_id,
        }),
    );
    Ok(axum::Json(Message {
        message: "Subscription deleted successfully",
    })
    .into_response())
}

async fn list_of(state: &AppState, user_id: Option<i64>) -> Result<Response, AppError> {
    let list = store::list_subscriptions(&state.db, user_id, LIST_MAX).await?;
    Ok(axum::Json(views::subscriptions(&list)).into_response())
}

/// Everyone's for `manage_billing`, else the caller's own; newest first.
pub async fn subscriptions(
    _billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    _body: Body,
) -> Result<Response, AppError> {
    let only = (!is_manager(&caller)).then_some(caller.user.id);
    list_of(&state, only).await
}

pub async fn subscription(
    _billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    body: Body,
) -> Result<Response, AppError> {
    let subscription = service::own_subscription(&state, &caller, &body).await?;
    Ok(axum::Json(SubscriptionView::from(&subscription)).into_response())
}

/// The subscriptions of the user named by `user_id` (or `email`): the caller's own,
/// or anyone's for `manage_billing`.
pub async fn user_subscriptions(
    _billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    body: Body,
) -> Result<Response, AppError> {
    let user = service::acting_user(&state, &caller, &body).await?;
    list_of(&state, Some(user.id)).await
}

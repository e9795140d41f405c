//! Subscriptions: created, moved and deleted by `manage_billing`; seen and canceled
//! by their owner too. Every route names the subscription it acts on by its Stripe
//! id **(fixed: the old update-subscription changed the user's first one)**.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::json;

use super::bodies::{
    CreateSubscriptionBody, SubscriptionRef, Unread, UpdateSubscriptionBody, UserRef,
};
use super::input::Params;
use super::input::{IntOrDigits, StripeId};
use super::service::{self, is_manager, SUBSCRIPTION_NOT_FOUND};
use super::store::{self, Subscription};
use super::stripe::Form;
use super::views::{self, Message, SubscriptionView};
use super::{client_key, Billing, Ref, Stripe};
use super::{STRIPE_400, STRIPE_402, STRIPE_502, STRIPE_503};
use crate::app::AppState;
use crate::auth::CurrentUser;
use crate::error::{AppError, ErrorBody};
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

/// Create a subscription
///
/// For `manage_billing`: a subscription of the user named by `user_id` or `email` (the
/// caller when neither) to a recurring price, with an optional trial. It is
/// `incomplete` (or `trialing`) until a webhook reports its first invoice paid. An
/// `Idempotency-Key` header makes a retry safe.
#[utoipa::path(
    post,
    path = "/create-subscription",
    tag = "billing",
    request_body = CreateSubscriptionBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "The caller's key for this create: a retry with the same key creates nothing twice (a key over 255 characters is ignored)")),
    responses(
        (status = 201, description = "Created", body = SubscriptionView),
        (status = 404, description = "`User not found`, `Price not found`, or Stripe does not know an object (`stripe_not_found`)", body = ErrorBody),
        (status = 400, description = STRIPE_400, body = ErrorBody),
        (status = 402, description = STRIPE_402, body = ErrorBody),
        (status = 502, description = STRIPE_502, body = ErrorBody),
        (status = 503, description = STRIPE_503, body = ErrorBody),
    )
)]
pub async fn create_subscription(
    billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    headers: HeaderMap,
    Params(body): Params<CreateSubscriptionBody>,
) -> Result<(StatusCode, axum::Json<SubscriptionView>), AppError> {
    let price_id = body.price_id.required("price_id")?;
    let trial = body
        .trial_period_days
        .and_then(IntOrDigits::get)
        .unwrap_or(0);
    if !(0..=TRIAL_DAYS_MAX).contains(&trial) {
        return Err(AppError::invalid(format!(
            "`trial_period_days` must be between 0 and {TRIAL_DAYS_MAX}"
        )));
    }
    let user = service::acting_user(&state, &caller, body.user_id, body.email.as_deref()).await?;
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
    ))
}

/// Move a subscription to another price
///
/// For `manage_billing`. The old client also sends `user_id` and `email`; the
/// subscription already says whose it is, so they are not read.
#[utoipa::path(
    post,
    path = "/update-subscription",
    tag = "billing",
    request_body = UpdateSubscriptionBody,
    responses(
        (status = 200, description = "The subscription as changed", body = SubscriptionView),
        (status = 404, description = "`Subscription not found`, `Price not found`, or Stripe no longer knows it (`stripe_not_found`)", body = ErrorBody),
        (status = 409, description = "The subscription is already canceled, or its details have not arrived from Stripe yet", body = ErrorBody),
        (status = 400, description = STRIPE_400, body = ErrorBody),
        (status = 402, description = STRIPE_402, body = ErrorBody),
        (status = 502, description = STRIPE_502, body = ErrorBody),
        (status = 503, description = STRIPE_503, body = ErrorBody),
    )
)]
pub async fn update_subscription(
    billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    Params(body): Params<UpdateSubscriptionBody>,
) -> Result<axum::Json<SubscriptionView>, AppError> {
    let id = body.subscription_id.required("subscription_id")?;
    let new_price = match (
        body.new_price_id.and_then(StripeId::get),
        body.price_id.and_then(StripeId::get),
    ) {
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
    Ok(axum::Json(SubscriptionView::from(&subscription)))
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

/// Cancel a subscription at period end
///
/// It ends at the close of its paid period; its owner may do this.
#[utoipa::path(
    post,
    path = "/cancel-subscription",
    tag = "billing",
    request_body = SubscriptionRef,
    responses(
        (status = 200, description = "It will not renew", body = Message,
            example = json!({ "message": "Subscription will be canceled at period end" })),
        (status = 403, description = "Not the caller's subscription and no `manage_billing` (`unauthorized_access`), or the X-CSRFToken header is missing or wrong", body = ErrorBody),
        (status = 404, description = "`Subscription not found`, or Stripe no longer knows it (`stripe_not_found`)", body = ErrorBody),
        (status = 409, description = "`This subscription is already canceled`", body = ErrorBody),
        (status = 400, description = STRIPE_400, body = ErrorBody),
        (status = 502, description = STRIPE_502, body = ErrorBody),
        (status = 503, description = STRIPE_503, body = ErrorBody),
    )
)]
pub async fn cancel_subscription(
    billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    Params(body): Params<SubscriptionRef>,
) -> Result<axum::Json<Message>, AppError> {
    let id = body.subscription_id.required("subscription_id")?;
    let before = service::own_subscription(&state, &caller, id).await?;
    set_period_end_cancel(&billing, &state, &caller, &origin, before, true).await?;
    Ok(axum::Json(Message {
        message: "Subscription will be canceled at period end",
    }))
}

/// Stop a subscription's renewal
///
/// The old service "paused" collection; Gatehouse stops renewal instead, which its
/// owner may do and `/reactivate-subscription` undoes.
#[utoipa::path(
    post,
    path = "/deactivate-subscription",
    tag = "billing",
    request_body = SubscriptionRef,
    responses(
        (status = 200, description = "It will not renew", body = Message,
            example = json!({ "message": "Subscription will not renew after the current period" })),
        (status = 403, description = "Not the caller's subscription and no `manage_billing` (`unauthorized_access`), or the X-CSRFToken header is missing or wrong", body = ErrorBody),
        (status = 404, description = "`Subscription not found`, or Stripe no longer knows it (`stripe_not_found`)", body = ErrorBody),
        (status = 409, description = "`This subscription is already canceled`", body = ErrorBody),
        (status = 400, description = STRIPE_400, body = ErrorBody),
        (status = 502, description = STRIPE_502, body = ErrorBody),
        (status = 503, description = STRIPE_503, body = ErrorBody),
    )
)]
pub async fn deactivate_subscription(
    billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    Params(body): Params<SubscriptionRef>,
) -> Result<axum::Json<Message>, AppError> {
    let id = body.subscription_id.required("subscription_id")?;
    let before = service::own_subscription(&state, &caller, id).await?;
    set_period_end_cancel(&billing, &state, &caller, &origin, before, true).await?;
    Ok(axum::Json(Message {
        message: "Subscription will not renew after the current period",
    }))
}

/// Reactivate a subscription
///
/// For `manage_billing`: undoes a cancellation at period end.
#[utoipa::path(
    post,
    path = "/reactivate-subscription",
    tag = "billing",
    request_body = SubscriptionRef,
    responses(
        (status = 200, description = "It renews again", body = Message,
            example = json!({ "message": "Subscription reactivated successfully" })),
        (status = 404, description = "`Subscription not found`, or Stripe no longer knows it (`stripe_not_found`)", body = ErrorBody),
        (status = 409, description = "`This subscription is already canceled`", body = ErrorBody),
        (status = 400, description = STRIPE_400, body = ErrorBody),
        (status = 502, description = STRIPE_502, body = ErrorBody),
        (status = 503, description = STRIPE_503, body = ErrorBody),
    )
)]
pub async fn reactivate_subscription(
    billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    Params(body): Params<SubscriptionRef>,
) -> Result<axum::Json<Message>, AppError> {
    let id = body.subscription_id.required("subscription_id")?;
    let before = service::own_subscription(&state, &caller, id).await?;
    set_period_end_cancel(&billing, &state, &caller, &origin, before, false).await?;
    Ok(axum::Json(Message {
        message: "Subscription reactivated successfully",
    }))
}

/// Delete a subscription
///
/// For `manage_billing`: canceled at Stripe at once if still live, then taken off the
/// lists (its record stays for the webhooks).
#[utoipa::path(
    post,
    path = "/delete-subscription",
    tag = "billing",
    request_body = SubscriptionRef,
    responses(
        (status = 200, description = "Deleted", body = Message,
            example = json!({ "message": "Subscription deleted successfully" })),
        (status = 404, description = "`Subscription not found`, or Stripe no longer knows it (`stripe_not_found`)", body = ErrorBody),
        (status = 400, description = STRIPE_400, body = ErrorBody),
        (status = 502, description = STRIPE_502, body = ErrorBody),
        (status = 503, description = STRIPE_503, body = ErrorBody),
    )
)]
pub async fn delete_subscription(
    billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    Params(body): Params<SubscriptionRef>,
) -> Result<axum::Json<Message>, AppError> {
    let id = body.subscription_id.required("subscription_id")?;
    let before = service::own_subscription(&state, &caller, id).await?;
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
    }))
}

async fn list_of(
    state: &AppState,
    user_id: Option<i64>,
) -> Result<axum::Json<Vec<SubscriptionView>>, AppError> {
    let list = store::list_subscriptions(&state.db, user_id, LIST_MAX).await?;
    Ok(axum::Json(views::subscriptions(&list)))
}

/// List subscriptions
///
/// Everyone's for `manage_billing`, else the caller's own; a bare array, newest first,
/// at most 1000.
#[utoipa::path(
    post,
    path = "/subscriptions",
    tag = "billing",
    request_body(content = Option<Unread>, description = "None, as the old client sends it (an empty body with a JSON content type), or any JSON object, which is ignored", example = json!({})),
    responses((status = 200, description = "The subscriptions", body = Vec<SubscriptionView>)),
)]
pub async fn subscriptions(
    _billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    _: Params<Unread>,
) -> Result<axum::Json<Vec<SubscriptionView>>, AppError> {
    let only = (!is_manager(&caller)).then_some(caller.user.id);
    list_of(&state, only).await
}

/// List subscriptions
///
/// As `POST /subscriptions`.
#[utoipa::path(
    get,
    path = "/subscriptions",
    tag = "billing",
    responses((status = 200, description = "The subscriptions", body = Vec<SubscriptionView>)),
)]
pub async fn subscriptions_by_get(
    _billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
) -> Result<axum::Json<Vec<SubscriptionView>>, AppError> {
    let only = (!is_manager(&caller)).then_some(caller.user.id);
    list_of(&state, only).await
}

/// One subscription
///
/// The caller's own, or anyone's for `manage_billing`.
#[utoipa::path(
    post,
    path = "/subscription",
    tag = "billing",
    request_body = SubscriptionRef,
    responses(
        (status = 200, description = "The subscription", body = SubscriptionView),
        (status = 403, description = "Not the caller's subscription and no `manage_billing` (`unauthorized_access`), or the X-CSRFToken header is missing or wrong", body = ErrorBody),
        (status = 404, description = "`Subscription not found`", body = ErrorBody),
    )
)]
pub async fn subscription(
    _billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    Params(body): Params<SubscriptionRef>,
) -> Result<axum::Json<SubscriptionView>, AppError> {
    let id = body.subscription_id.required("subscription_id")?;
    let subscription = service::own_subscription(&state, &caller, id).await?;
    Ok(axum::Json(SubscriptionView::from(&subscription)))
}

/// A user's subscriptions
///
/// Of the user named by `user_id` (or `email`; the caller when neither): the caller's
/// own, or anyone's for `manage_billing`. A bare array, newest first.
#[utoipa::path(
    post,
    path = "/user-subscriptions",
    tag = "billing",
    request_body = UserRef,
    responses(
        (status = 200, description = "The user's subscriptions", body = Vec<SubscriptionView>),
        (status = 403, description = "Names another user without `manage_billing` (`unauthorized_access`), or the X-CSRFToken header is missing or wrong", body = ErrorBody),
        (status = 404, description = "`User not found`", body = ErrorBody),
    )
)]
pub async fn user_subscriptions(
    _billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    Params(body): Params<UserRef>,
) -> Result<axum::Json<Vec<SubscriptionView>>, AppError> {
    of_user(&state, &caller, body).await
}

/// A user's subscriptions, named by email
///
/// The old client's name for `/user-subscriptions`, which it answers the same.
#[utoipa::path(
    post,
    path = "/user-email-subscriptions",
    tag = "billing",
    request_body = UserRef,
    responses(
        (status = 200, description = "The user's subscriptions", body = Vec<SubscriptionView>),
        (status = 403, description = "Names another user without `manage_billing` (`unauthorized_access`), or the X-CSRFToken header is missing or wrong", body = ErrorBody),
        (status = 404, description = "`User not found`", body = ErrorBody),
    )
)]
pub async fn user_email_subscriptions(
    _billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    Params(body): Params<UserRef>,
) -> Result<axum::Json<Vec<SubscriptionView>>, AppError> {
    of_user(&state, &caller, body).await
}

async fn of_user(
    state: &AppState,
    caller: &CurrentUser,
    body: UserRef,
) -> Result<axum::Json<Vec<SubscriptionView>>, AppError> {
    let user = service::acting_user(state, caller, body.user_id, body.email.as_deref()).await?;
    list_of(state, Some(user.id)).await
}

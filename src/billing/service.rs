//! What the billing handlers share beyond parsing and shaping: the acting user, the
//! Stripe customer of a user, mirroring what Stripe answered, the ownership rule for
//! subscriptions, recording a paid checkout, and the activity log.

use serde_json::Value;

use super::input::{self, IntOrDigits};
use super::store::{self, Price, Subscription};
use super::{stripe, webhook, Billing, Ref};
use crate::accounts::{self, User};
use crate::app::AppState;
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::http::Origin;
use crate::logs::{record_change, Kind};
use crate::rbac::Permission;

pub const PRODUCT_NOT_FOUND: &str = "Product not found";
pub const PRICE_NOT_FOUND: &str = "Price not found";
pub const SUBSCRIPTION_NOT_FOUND: &str = "Subscription not found";
pub const USER_NOT_FOUND: &str = "User not found";

pub fn is_manager(caller: &CurrentUser) -> bool {
    caller.access.has(Permission::ManageBilling)
}

/// The user a request acts for. It is the caller, from the session; the body's
/// `user_id` (a number or a digit string) or else `email` names someone else, and is
/// honoured only for a caller with `manage_billing` **(fixed: the old service took
/// the user from the body)**. Naming oneself is always fine.
pub async fn acting_user(
    state: &AppState,
    caller: &CurrentUser,
    user_id: Option<IntOrDigits>,
    email: Option<&str>,
) -> Result<User, AppError> {
    let by_id = user_id.and_then(IntOrDigits::get).filter(|id| *id != 0);
    let by_email = input::optional_line("email", email, 254)?.filter(|_| by_id.is_none());
    let is_caller = match (by_id, &by_email) {
        (Some(id), _) => id == caller.user.id,
        (None, Some(email)) => email.eq_ignore_ascii_case(&caller.user.email),
        (None, None) => true,
    };
    if is_caller {
        return Ok(caller.user.clone());
    }
    if !is_manager(caller) {
        return Err(AppError::unauthorized_access());
    }
    let found = match (by_id, by_email) {
        (Some(id), _) => accounts::store::find_by_id(state.db.pool(), id).await?,
        (None, Some(email)) => accounts::store::find_by_email(&state.db, &email).await?,
        (None, None) => None,
    };
    found.ok_or_else(|| AppError::not_found(USER_NOT_FOUND))
}

/// The Stripe customer of a user, created at Stripe on first need.
pub async fn customer_for(
    billing: &Billing,
    state: &AppState,
    user: &User,
) -> Result<String, AppError> {
    if let Some(customer) = store::customer_of(&state.db, user.id).await? {
        return Ok(customer);
    }
    let form = stripe::Form::new()
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
    Ok(store::link_customer(&state.db, user.id, &created.id).await?)
}

/// A price by its Stripe id that can be subscribed to or bought now.
pub async fn live_price(state: &AppState, stripe_id: &str) -> Result<Price, AppError> {
    let price = store::find_price(&state.db, &Ref::Stripe(stripe_id.to_owned()))
        .await?
        .ok_or_else(|| AppError::not_found(PRICE_NOT_FOUND))?;
    if !(price.active && price.product_active) {
        return Err(AppError::invalid("This price is no longer available"));
    }
    Ok(price)
}

/// Writes what Stripe just answered about a subscription and reads it back.
pub async fn mirror_subscription(
    state: &AppState,
    s: &stripe::Subscription,
    user_id: Option<i64>,
) -> Result<Subscription, AppError> {
    let mut conn = state.db.writer().acquire().await?;
    store::apply_subscription(&mut conn, s, user_id, crate::db::now()).await?;
    drop(conn);
    store::find_subscription(&state.db, &Ref::Stripe(s.id.clone()))
        .await?
        .ok_or_else(|| AppError::not_found(SUBSCRIPTION_NOT_FOUND))
}

/// The subscription named by the body's `subscription_id`, if the caller may act on
/// it: their own, or anyone's with `manage_billing`.
pub async fn own_subscription(
    state: &AppState,
    caller: &CurrentUser,
    id: String,
) -> Result<Subscription, AppError> {
    let subscription = store::find_subscription(&state.db, &Ref::Stripe(id))
        .await?
        .ok_or_else(|| AppError::not_found(SUBSCRIPTION_NOT_FOUND))?;
    if subscription.user_id != Some(caller.user.id) && !is_manager(caller) {
        return Err(AppError::unauthorized_access());
    }
    Ok(subscription)
}

/// Records a checkout session that Stripe, asked directly, says is paid: the same
/// recording as the webhook's, keyed by the session id, so a reload or a webhook
/// arriving as well never makes a second order. Returns whether it is paid.
pub async fn record_paid_session(
    billing: &Billing,
    state: &AppState,
    session_id: &str,
) -> Result<bool, AppError> {
    let session = billing.stripe.checkout_session(session_id).await?;
    let paid = matches!(
        session.get("payment_status").and_then(Value::as_str),
        Some("paid" | "no_payment_required")
    );
    if paid {
        let mut conn = state.db.writer().acquire().await?;
        webhook::record_checkout(&mut conn, &session).await?;
    }
    Ok(paid)
}

/// Writes a billing change to the activity log.
pub fn record(
    state: &AppState,
    caller: &CurrentUser,
    origin: &Origin,
    message: &str,
    details: Value,
) {
    record_change(
        &state.activity,
        Kind::Change,
        &caller.user,
        origin,
        message,
        details,
    );
}

/// A subscription with its owner's email, as the web UI's subscriptions page lists it.
#[derive(Debug, Clone)]
pub struct SubscriptionRow {
    pub subscription: Subscription,
    pub user_email: Option<String>,
}

/// A page of subscriptions ([`store::filter_subscriptions`]) with their owners'
/// emails, which the accounts store gives: one lookup per user on the page.
pub async fn subscriptions_page(
    state: &AppState,
    status: Option<&str>,
    user_id: Option<i64>,
    offset: i64,
    limit: i64,
) -> Result<(Vec<SubscriptionRow>, i64), AppError> {
    let (list, total) =
        store::filter_subscriptions(&state.db, status, user_id, offset, limit).await?;
    let mut emails: std::collections::HashMap<i64, Option<String>> =
        std::collections::HashMap::new();
    let mut rows = Vec::with_capacity(list.len());
    for subscription in list {
        let user_email = match subscription.user_id {
            Some(id) => match emails.get(&id) {
                Some(email) => email.clone(),
                None => {
                    let email = accounts::store::find_by_id(state.db.pool(), id)
                        .await?
                        .map(|u| u.email);
                    emails.insert(id, email.clone());
                    email
                }
            },
            None => None,
        };
        rows.push(SubscriptionRow {
            subscription,
            user_email,
        });
    }
    Ok((rows, total))
}

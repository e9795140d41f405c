//! `POST /stripe/webhook`: the only way payment state changes.
//!
//! A delivery is believed only when its `Stripe-Signature` verifies: an HMAC-SHA256,
//! keyed with the endpoint's signing secret, over `"{t}.{raw body}"`, compared in
//! constant time against each `v1` signature the header lists (Stripe lists several
//! while a secret is being rolled), with `t` no more than five minutes from now
//! (a captured delivery cannot be replayed later). Each event id is then processed
//! once, in the same transaction as its effects: a replay is acknowledged and
//! ignored, and a failure leaves the event unrecorded so Stripe's retry can succeed.
//! Events may arrive in any order; [`store::apply_subscription`] keeps the newest
//! state by Stripe's event time.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Sha256;
use sqlx::AnyConnection;
use subtle::ConstantTimeEq;

use super::views::Received;
use super::{store, stripe, Stripe};
use crate::app::AppState;
use crate::db;
use crate::error::{AppError, ErrorBody};
use crate::logs::LogEntry;

/// How far the signed timestamp may be from now, either way.
pub const TOLERANCE_SECS: i64 = 300;
/// More `v1` entries than Stripe ever sends are not worth an HMAC comparison each.
const MAX_SIGNATURES: usize = 8;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("The Stripe-Signature header is malformed")]
    Malformed,
    #[error("The Stripe-Signature timestamp is outside the 5-minute tolerance")]
    Stale,
    #[error("The Stripe-Signature does not match the payload")]
    Mismatch,
}

/// Checks a `Stripe-Signature` header against the raw payload, at time `now`.
pub fn verify(secret: &str, header: &str, payload: &[u8], now: i64) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let Some((key, value)) = part.trim().split_once('=') else {
            continue;
        };
        match key {
            "t" if timestamp.is_none() => {
                timestamp = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| SignatureError::Malformed)?,
                );
            }
            "v1" if signatures.len() < MAX_SIGNATURES => {
                // A value that is not 32 bytes of hex cannot match; skip it.
                if let Ok(bytes) = hex::decode(value) {
                    signatures.push(bytes);
                }
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now - timestamp).abs() > TOLERANCE_SECS {
        return Err(SignatureError::Stale);
    }
    let expected = sign(secret, timestamp, payload);
    // Every candidate is compared, so the time taken does not depend on which matched.
    let matched = signatures.iter().fold(subtle::Choice::from(0), |acc, sig| {
        acc | sig.as_slice().ct_eq(expected.as_slice())
    });
    if bool::from(matched) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The `v1` signature of `payload` signed at `timestamp`.
pub fn sign(secret: &str, timestamp: i64, payload: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length; this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return Vec::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    mac.finalize().into_bytes().to_vec()
}

#[derive(Debug, Deserialize)]
struct Event {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    created: i64,
    data: EventData,
}

#[derive(Debug, Deserialize)]
struct EventData {
    object: Value,
}

fn bad_signature(e: SignatureError) -> AppError {
    AppError::Other {
        status: StatusCode::BAD_REQUEST,
        code: "invalid_signature",
        message: e.to_string(),
        cause: None,
    }
}

/// Stripe's webhook
///
/// For Stripe: an event, believed only when its `Stripe-Signature` verifies over the
/// raw body (an HMAC-SHA256 with the endpoint's signing secret, timestamped within 5
/// minutes). Each event is processed once; a replay is acknowledged with `duplicate`.
/// Events billing does not act on are acknowledged and ignored.
#[utoipa::path(
    post,
    path = "/stripe/webhook",
    tag = "billing",
    params(("Stripe-Signature" = String, Header, description = "`t=<unix time>,v1=<hex HMAC-SHA256 of \"{t}.{raw body}\">` (several `v1` while a secret is rolled)")),
    request_body(
        content = Object,
        content_type = "application/json",
        description = "A Stripe event object, verified byte for byte as sent",
        example = json!({
            "id": "evt_1NqK2b", "type": "checkout.session.completed", "created": 1767607200,
            "data": { "object": { "id": "cs_test_a1B2c3", "object": "checkout.session", "payment_status": "paid" } }
        })
    ),
    responses(
        (status = 200, description = "Processed, ignored, or a replay (`duplicate`)", body = Received),
        (status = 400, description = "The signature is missing, malformed, stale or wrong (`invalid_signature`), or the body is not a Stripe event", body = ErrorBody),
        (status = 415, description = "The body is declared as something other than JSON (a body without a `Content-Type` is read as JSON)", body = ErrorBody),
        (status = 503, description = "Billing or its webhook secret is not configured (`billing_not_configured`), or the database is unreachable (with `Retry-After`)", body = ErrorBody),
    )
)]
pub async fn receive(
    billing: Stripe,
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::Json<Received>, AppError> {
    let Some(secret) = billing.webhook_secret() else {
        return Err(AppError::Other {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "billing_not_configured",
            message: "The Stripe webhook is not configured (STRIPE_WEBHOOK_SECRET is not set)"
                .to_owned(),
            cause: None,
        });
    };
    if headers
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| {
            let declared = v.to_str().unwrap_or("").to_ascii_lowercase();
            declared.split(';').next().unwrap_or("").trim() != "application/json"
        })
    {
        return Err(AppError::UnsupportedMediaType("application/json"));
    }
    let header = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| bad_signature(SignatureError::Malformed))?;
    verify(secret, header, &body, db::now()).map_err(|e| {
        tracing::warn!(reason = %e, "Stripe webhook refused");
        bad_signature(e)
    })?;
    let event: Event = serde_json::from_slice(&body)
        .map_err(|_| AppError::invalid("The event is not a Stripe event object"))?;
    if event.id.is_empty() || event.id.len() > 255 {
        return Err(AppError::invalid("The event id is not valid"));
    }

    let mut tx = state.db.begin().await?;
    if !store::claim_event(&mut tx, &event.id, &event.kind, event.created).await? {
        tx.commit().await?;
        tracing::info!(event_id = %event.id, kind = %event.kind, "Stripe event replayed; ignored");
        return Ok(axum::Json(Received {
            success: true,
            received: true,
            duplicate: Some(true),
        }));
    }
    let outcome = apply(&mut tx, &event).await?;
    store::set_event_outcome(&mut tx, &event.id, outcome.describe()).await?;
    tx.commit().await?;
    tracing::info!(event_id = %event.id, kind = %event.kind, outcome = outcome.describe(), "Stripe event processed");
    if let Outcome::OrderCreated { order_id, user_id } = outcome {
        let mut entry = LogEntry::change(
            "order created from checkout",
            json!({ "action": "order_created", "order_id": order_id, "event_id": event.id }),
        );
        entry.user_id = user_id;
        state.activity.record(entry);
    }
    Ok(axum::Json(Received {
        success: true,
        received: true,
        duplicate: None,
    }))
}

enum Outcome {
    OrderCreated {
        order_id: i64,
        user_id: Option<i64>,
    },
    Applied,
    /// Older than what is stored, or about something already recorded.
    Superseded,
    /// Not an event billing acts on, or about an object it does not know.
    Ignored,
}

impl Outcome {
    fn describe(&self) -> &'static str {
        match self {
            Self::OrderCreated { .. } => "order created",
            Self::Applied => "applied",
            Self::Superseded => "superseded",
            Self::Ignored => "ignored",
        }
    }
}

fn malformed(what: &str) -> AppError {
    AppError::invalid(format!(
        "The event's {what} object is not what Stripe sends"
    ))
}

/// An id Stripe may send as a string or, when expanded, as an object with an id.
fn id_of(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Object(o) => o.get("id")?.as_str().map(str::to_owned),
        _ => None,
    }
}

async fn apply(conn: &mut AnyConnection, event: &Event) -> Result<Outcome, AppError> {
    let object = &event.data.object;
    match event.kind.as_str() {
        "checkout.session.completed" => checkout_completed(conn, object).await,
        "checkout.session.async_payment_succeeded" | "checkout.session.async_payment_failed" => {
            let id = id_of(object.get("id")).ok_or_else(|| malformed("checkout session"))?;
            let (payment, status) = if event.kind.ends_with("succeeded") {
                ("paid", "paid")
            } else {
                ("unpaid", "failed")
            };
            Ok(if store::settle_order(conn, &id, payment, status).await? {
                Outcome::Applied
            } else {
                Outcome::Superseded
            })
        }
        "customer.subscription.created"
        | "customer.subscription.updated"
        | "customer.subscription.deleted" => {
            let subscription: stripe::Subscription =
                serde_json::from_value(object.clone()).map_err(|_| malformed("subscription"))?;
            let user_id = owner(
                conn,
                &subscription.customer,
                subscription.metadata_user_id(),
            )
            .await?;
            Ok(
                if store::apply_subscription(conn, &subscription, user_id, event.created).await? {
                    Outcome::Applied
                } else {
                    Outcome::Superseded
                },
            )
        }
        "invoice.paid" | "invoice.payment_failed" => {
            let invoice_id = id_of(object.get("id")).ok_or_else(|| malformed("invoice"))?;
            // Before API version 2025-03-31 the subscription sat on the invoice; since,
            // under parent.subscription_details.
            let subscription = id_of(object.get("subscription"))
                .or_else(|| id_of(object.pointer("/parent/subscription_details/subscription")));
            let (Some(subscription), Some(customer)) =
                (subscription, id_of(object.get("customer")))
            else {
                // A one-off invoice: no subscription of ours to update.
                return Ok(Outcome::Ignored);
            };
            let user_id = owner(conn, &customer, None).await?;
            let outcome = if event.kind == "invoice.paid" {
                "paid"
            } else {
                "payment_failed"
            };
            Ok(
                if store::apply_invoice(
                    conn,
                    &subscription,
                    &customer,
                    user_id,
                    &invoice_id,
                    outcome,
                    event.created,
                )
                .await?
                {
                    Outcome::Applied
                } else {
                    Outcome::Superseded
                },
            )
        }
        _ => Ok(Outcome::Ignored),
    }
}

async fn user_exists(conn: &mut AnyConnection, user_id: i64) -> Result<bool, AppError> {
    Ok(crate::accounts::store::find_by_id(&mut *conn, user_id)
        .await?
        .is_some())
}

/// The Gatehouse user behind a Stripe customer: the customer link made at checkout,
/// or else the user id Gatehouse put in the object's metadata, if that user exists.
async fn owner(
    conn: &mut AnyConnection,
    customer: &str,
    metadata_user: Option<i64>,
) -> Result<Option<i64>, AppError> {
    if let Some(user) = store::user_of_customer(conn, customer).await? {
        return Ok(Some(user));
    }
    match metadata_user {
        Some(user) if user_exists(conn, user).await? => Ok(Some(user)),
        _ => Ok(None),
    }
}

/// Records a completed checkout session (from its webhook, or from Stripe asked
/// directly by the success page): one order per session, however often it is told.
pub(super) async fn record_checkout(
    conn: &mut AnyConnection,
    object: &Value,
) -> Result<(), AppError> {
    checkout_completed(conn, object).await.map(drop)
}

async fn checkout_completed(conn: &mut AnyConnection, object: &Value) -> Result<Outcome, AppError> {
    let session_id = id_of(object.get("id")).ok_or_else(|| malformed("checkout session"))?;
    let local = store::find_checkout(conn, &session_id).await?;
    let user_id = match &local {
        Some(c) => Some(c.user_id),
        None => {
            let claimed = object
                .get("client_reference_id")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<i64>().ok());
            match claimed {
                Some(user) if user_exists(conn, user).await? => Some(user),
                _ => None,
            }
        }
    };
    let payment_status = object
        .get("payment_status")
        .and_then(Value::as_str)
        .unwrap_or("unpaid");
    let status = match payment_status {
        "paid" | "no_payment_required" => "paid",
        _ => "pending",
    };
    let subscription = id_of(object.get("subscription"));
    let customer = id_of(object.get("customer"));
    let created = store::insert_order(
        conn,
        &store::NewOrder {
            stripe_session_id: &session_id,
            user_id,
            price_id: local.as_ref().map(|c| c.price_id),
            amount_total: object.get("amount_total").and_then(Value::as_i64),
            currency: object.get("currency").and_then(Value::as_str),
            payment_status,
            status,
            stripe_subscription_id: subscription.as_deref(),
            stripe_customer_id: customer.as_deref(),
        },
    )
    .await?;
    store::complete_checkout(conn, &session_id).await?;
    Ok(match created {
        Some(order_id) => Outcome::OrderCreated { order_id, user_id },
        None => Outcome::Superseded,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(secret: &str, t: i64, payload: &[u8]) -> String {
        format!("t={t},v1={}", hex::encode(sign(secret, t, payload)))
    }

    #[test]
    fn a_fresh_signature_verifies() {
        let body = br#"{"id":"evt_1"}"#;
        let now = 1_700_000_000;
        assert_eq!(
            verify("whsec_x", &header("whsec_x", now, body), body, now),
            Ok(())
        );
        // Any of several v1 signatures may match (secret rolling).
        let several = format!(
            "t={now},v1={},v0=abc,v1={}",
            "00".repeat(32),
            hex::encode(sign("whsec_x", now, body))
        );
        assert_eq!(verify("whsec_x", &several, body, now), Ok(()));
    }

    #[test]
    fn wrong_secret_body_or_time_fails() {
        let body = br#"{"id":"evt_1"}"#;
        let now = 1_700_000_000;
        let h = header("whsec_x", now, body);
        assert_eq!(
            verify("whsec_y", &h, body, now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("whsec_x", &h, br#"{"id":"evt_2"}"#, now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("whsec_x", &h, body, now + 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify("whsec_x", &h, body, now - 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(verify("whsec_x", &h, body, now + 300), Ok(()));
        for bad in ["", "t=abc,v1=00", "v1=00", &format!("t={now}"), "garbage"] {
            assert_eq!(
                verify("whsec_x", bad, body, now),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
    }
}

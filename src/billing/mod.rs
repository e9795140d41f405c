//! Billing through Stripe: products, prices, customers, subscriptions, checkout and
//! the webhook that confirms payments.
//!
//! Gatehouse keeps a local mirror of what it manages at Stripe. Every change goes to
//! Stripe first and is written locally only once Stripe has accepted it, in one
//! transaction, so a refusal or an outage leaves local state as it was. Payment state
//! (orders, subscription status, invoices) changes only when a webhook whose
//! `Stripe-Signature` verifies says so ([`webhook`]); the pages a browser returns to
//! after checkout only read. Amounts travel in dollars in request and answer bodies,
//! as in the old service, and are integer cents everywhere inside ([`amount`]).

pub mod amount;
mod routes;
pub mod store;
pub mod stripe;
pub mod webhook;

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::Deserialize;

use crate::app::AppState;
use crate::config::{Config, StripeConfig};
use crate::error::AppError;

pub use stripe::StripeClient;

pub use routes::routes;

/// The billing capability built from the configuration: `None` when billing is off or
/// its client cannot be built (which is logged once, at start-up).
pub fn from_config(config: &Config) -> Option<Arc<Billing>> {
    let stripe = config.stripe.as_ref()?;
    match Billing::new(stripe, &config.secret_key) {
        Ok(billing) => Some(Arc::new(billing)),
        Err(e) => {
            tracing::error!(error = %e, "cannot build the Stripe client; billing is off");
            None
        }
    }
}

/// What the billing routes work with: the Stripe client and the webhook secret.
pub struct Billing {
    pub stripe: StripeClient,
    webhook_secret: Option<String>,
    /// Install-specific salt for idempotency keys derived from stable inputs.
    key_salt: String,
}

impl Billing {
    fn new(config: &StripeConfig, secret: &crate::config::SecretKey) -> anyhow::Result<Self> {
        use sha2::Digest as _;
        let mut salt = sha2::Sha256::new();
        salt.update(b"gatehouse-billing-idempotency:");
        salt.update(secret.as_bytes());
        Ok(Self {
            stripe: StripeClient::new(&config.api_base, &config.secret_key)?,
            webhook_secret: config.webhook_secret.clone(),
            key_salt: hex::encode(&salt.finalize()[..8]),
        })
    }

    /// An idempotency key for one logical operation. A caller that sends its own
    /// `Idempotency-Key` gets the same key for the same operation again (so a retried
    /// request creates nothing twice, at Stripe or here); otherwise every request is
    /// its own operation.
    pub fn idempotency_key(&self, op: &str, user_id: i64, client_key: Option<&str>) -> String {
        use sha2::Digest as _;
        match client_key {
            Some(key) => {
                let mut h = sha2::Sha256::new();
                h.update(self.key_salt.as_bytes());
                h.update(format!("{op}\0{user_id}\0{key}").as_bytes());
                format!("gh-{op}-{}", hex::encode(&h.finalize()[..16]))
            }
            None => format!("gh-{op}-{}", crate::auth::session::random_token()),
        }
    }

    /// The key for creating the Stripe customer of a user: stable, so two concurrent
    /// checkouts of one user make one customer, and salted per install, so two
    /// Gatehouses sharing a Stripe account do not share customers.
    pub fn customer_key(&self, user_id: i64) -> String {
        format!("gh-customer-{}-{user_id}", self.key_salt)
    }
}

pub const NOT_CONFIGURED: &str =
    "Billing is not configured on this server (STRIPE_PRIVATE_KEY is not set)";

/// Billing is off: an operator's choice, not a fault, so it is answered without
/// being logged as an error on every call.
pub fn not_configured() -> AppError {
    AppError::Other {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "billing_not_configured",
        message: NOT_CONFIGURED.to_owned(),
        cause: None,
    }
}

/// The billing capability of a request; 503 `billing_not_configured` when billing is
/// off. Handlers take it first, so that answer comes before any other.
pub struct Stripe(pub Arc<Billing>);

impl std::ops::Deref for Stripe {
    type Target = Billing;
    fn deref(&self) -> &Billing {
        &self.0
    }
}

impl FromRequestParts<AppState> for Stripe {
    type Rejection = AppError;

    async fn from_request_parts(_: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        state.billing.clone().map(Stripe).ok_or_else(not_configured)
    }
}

/// An object named either by its local integer id or by its Stripe id
/// (`prod_…`, `price_…`, `sub_…`): the old client sent either.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ref {
    Local(i64),
    Stripe(String),
}

impl<'de> Deserialize<'de> for Ref {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Through `Value`, so that a missing field is still reported as missing.
        let expected = "expected an integer id or a Stripe id";
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Number(n) => n
                .as_i64()
                .map(Ref::Local)
                .ok_or_else(|| serde::de::Error::custom(expected)),
            serde_json::Value::String(text) => Ref::parse(&text).map_err(serde::de::Error::custom),
            _ => Err(serde::de::Error::custom(expected)),
        }
    }
}

impl Ref {
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let text = text.trim();
        if let Ok(id) = text.parse::<i64>() {
            return Ok(Ref::Local(id));
        }
        let plausible = !text.is_empty()
            && text.len() <= 255
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if plausible {
            Ok(Ref::Stripe(text.to_owned()))
        } else {
            Err("expected an integer id or a Stripe id")
        }
    }
}

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
pub(crate) mod bodies;
pub(crate) mod checkout;
pub(crate) mod input;
pub(crate) mod prices;
pub(crate) mod products;
mod routes;
pub(crate) mod service;
pub mod store;
pub mod stripe;
pub(crate) mod subscriptions;
mod views;
pub mod webhook;

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use secrecy::{ExposeSecret, SecretSlice, SecretString};

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
    webhook_secret: Option<SecretString>,
    /// Install-specific salt for idempotency keys derived from stable inputs.
    key_salt: String,
}

impl Billing {
    /// The webhook endpoint's signing secret, if one is configured.
    pub fn webhook_secret(&self) -> Option<&str> {
        self.webhook_secret
            .as_ref()
            .map(ExposeSecret::expose_secret)
    }

    fn new(config: &StripeConfig, secret: &SecretSlice<u8>) -> anyhow::Result<Self> {
        use sha2::Digest as _;
        let mut salt = sha2::Sha256::new();
        salt.update(b"gatehouse-billing-idempotency:");
        salt.update(secret.expose_secret());
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

/// What the routes that call Stripe may answer 503 with (documentation).
const STRIPE_503: &str = "Billing is not configured on this server (`billing_not_configured`), \
    Stripe is unreachable or rate limiting (`stripe_unavailable`; nothing was changed), or \
    the database is unreachable (with `Retry-After`)";
/// Stripe's refusal of a request's parameters (documentation).
const STRIPE_400: &str = "Invalid input (the message names the field), or Stripe refused the \
    request's parameters (`stripe_invalid_request`)";
const STRIPE_402: &str = "Stripe refused the request as a payment failure (`stripe_card_error`)";
const STRIPE_502: &str =
    "Stripe could not complete the request (`stripe_error`); nothing was changed";

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

/// The billing capability of a request: the handlers' way to the Stripe client. Their
/// routes are declared as needing billing, so the route table has already answered 503
/// `billing_not_configured` when billing is off; this extractor answers the same.
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

/// A stored object named by its local integer id or by its Stripe id (`prod_…`,
/// `price_…`, `sub_…`). Requests name objects by Stripe id, as the old client does;
/// the local id is for re-reading a row just written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ref {
    Local(i64),
    Stripe(String),
}

/// The caller's own `Idempotency-Key`, when sane, to make a retried create safe.
fn client_key(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 255)
}

/// The store's failures in the contract's terms, in one place: a database failure is
/// the outage it is; a row gone missing mid-call is a 500 that is logged.
impl From<store::StoreError> for AppError {
    fn from(e: store::StoreError) -> Self {
        match e {
            store::StoreError::Db(e) => AppError::from(e),
            vanished @ store::StoreError::Vanished(_) => AppError::internal(vanished),
        }
    }
}

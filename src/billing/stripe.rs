//! A small Stripe client for exactly what billing needs: products, prices,
//! customers, subscriptions and checkout sessions.
//!
//! It speaks Stripe's wire protocol as documented: form-encoded bodies with bracketed
//! keys for nested parameters (`recurring[interval]=month`,
//! `line_items[0][price]=price_…`), `Authorization: Bearer <secret key>`, an
//! `Idempotency-Key` on every POST, and Stripe's error object
//! (`{"error": {"type", "code", "message"}}`) turned into the contract's error.
//!
//! Why not the async-stripe crate: it can point at another base URL
//! (`Client::from_url`), but it generates bindings for the whole Stripe API (a long
//! compile on a two-core machine for five resources), brings an HTTP stack of its own
//! and panics on a bad URL. These routes use a dozen endpoints; a hundred lines over
//! reqwest cover them and keep the requests visible.

use std::time::Duration;

use axum::http::StatusCode;
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::error::AppError;

/// The API version the answers are read in. Webhook payloads come in the account's
/// version instead, so the readers of both accept the older and newer shapes.
const STRIPE_VERSION: &str = "2024-06-20";

#[derive(Clone, Debug)]
pub struct StripeClient {
    http: reqwest::Client,
    base: String,
    secret_key: SecretString,
}

/// Why a call to Stripe failed.
#[derive(Debug, thiserror::Error)]
pub enum StripeError {
    /// No answer: connection refused, timeout, TLS.
    #[error("Stripe is unreachable: {0}")]
    Unreachable(#[source] reqwest::Error),
    /// Stripe answered with its error object.
    #[error("Stripe answered {status}: {kind}: {message}")]
    Api {
        status: u16,
        kind: String,
        code: Option<String>,
        message: String,
    },
    /// An answer that is not what Stripe documents.
    #[error("unexpected answer from Stripe ({status}): {detail}")]
    Malformed { status: u16, detail: String },
}

impl From<StripeError> for AppError {
    /// Stripe's refusals of the request itself (bad parameters, a declined card, an
    /// unknown object) are the caller's to read and carry Stripe's sentence. Anything
    /// that says our side or Stripe's is broken (our key refused, Stripe failing or
    /// unreachable) is logged with its cause and answered without it.
    fn from(e: StripeError) -> Self {
        let other = |status, code, message: String, cause: Option<anyhow::Error>| AppError::Other {
            status,
            code,
            message,
            cause,
        };
        match e {
            StripeError::Api {
                status: status @ (400 | 402 | 404),
                ref message,
                ..
            } => {
                let (status, code) = match status {
                    402 => (StatusCode::PAYMENT_REQUIRED, "stripe_card_error"),
                    404 => (StatusCode::NOT_FOUND, "stripe_not_found"),
                    _ => (StatusCode::BAD_REQUEST, "stripe_invalid_request"),
                };
                let sentence = crate::http::truncate(message, 300);
                other(
                    status,
                    code,
                    format!("Stripe refused the request: {sentence}"),
                    None,
                )
            }
            StripeError::Api { status: 429, .. } => other(
                StatusCode::SERVICE_UNAVAILABLE,
                "stripe_unavailable",
                "Stripe is rate limiting requests; nothing was changed, try again shortly"
                    .to_owned(),
                Some(e.into()),
            ),
            StripeError::Unreachable(_) => other(
                StatusCode::SERVICE_UNAVAILABLE,
                "stripe_unavailable",
                "Stripe cannot be reached; nothing was changed, try again shortly".to_owned(),
                Some(e.into()),
            ),
            StripeError::Api { .. } | StripeError::Malformed { .. } => other(
                StatusCode::BAD_GATEWAY,
                "stripe_error",
                "Stripe could not complete the request; nothing was changed".to_owned(),
                Some(e.into()),
            ),
        }
    }
}

/// Form parameters in order, keys in Stripe's bracket syntax.
#[derive(Debug, Default, Clone)]
pub struct Form(Vec<(String, String)>);

impl Form {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set(mut self, key: impl Into<String>, value: impl ToString) -> Self {
        self.0.push((key.into(), value.to_string()));
        self
    }

    pub fn set_opt(self, key: impl Into<String>, value: Option<impl ToString>) -> Self {
        match value {
            Some(v) => self.set(key, v),
            None => self,
        }
    }

    pub fn encode(&self) -> Result<String, StripeError> {
        serde_urlencoded::to_string(&self.0).map_err(|e| StripeError::Malformed {
            status: 0,
            detail: format!("cannot encode the form: {e}"),
        })
    }
}

// The objects as Stripe returns them, reduced to the fields billing reads.

#[derive(Debug, Clone, Deserialize)]
pub struct Product {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default = "yes")]
    pub active: bool,
    /// Every other field, kept as Stripe sent it: the old client's product shape
    /// shows them (`images`, `metadata`, `unit_label`, …).
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct Recurring {
    pub interval: String,
    /// The rest of Stripe's recurring object, which the old client's price shows whole.
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Price {
    pub id: String,
    pub product: String,
    pub unit_amount: Option<i64>,
    pub currency: String,
    #[serde(default)]
    pub recurring: Option<Recurring>,
    #[serde(default)]
    pub nickname: Option<String>,
    #[serde(default = "yes")]
    pub active: bool,
    /// Every other field, kept as Stripe sent it (`lookup_key`, `metadata`, …).
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Customer {
    pub id: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CheckoutSession {
    pub id: String,
    #[serde(default)]
    pub url: Option<String>,
}

/// A subscription, from an API answer or a webhook event. Since API version
/// 2025-03-31 `current_period_end` lives on the items; both places are read.
#[derive(Debug, Clone, Deserialize)]
pub struct Subscription {
    pub id: String,
    pub customer: String,
    pub status: String,
    #[serde(default)]
    pub cancel_at_period_end: bool,
    #[serde(default)]
    pub current_period_end: Option<i64>,
    #[serde(default)]
    pub canceled_at: Option<i64>,
    #[serde(default)]
    pub trial_end: Option<i64>,
    #[serde(default)]
    pub items: Option<List<SubscriptionItem>>,
    #[serde(default)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct List<T> {
    pub data: Vec<T>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SubscriptionItem {
    pub id: String,
    pub price: ItemPrice,
    #[serde(default)]
    pub current_period_end: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ItemPrice {
    pub id: String,
}

impl Subscription {
    pub fn first_item(&self) -> Option<&SubscriptionItem> {
        self.items.as_ref().and_then(|items| items.data.first())
    }

    pub fn period_end(&self) -> Option<i64> {
        self.current_period_end
            .or_else(|| self.first_item().and_then(|i| i.current_period_end))
    }

    /// The Gatehouse user this subscription was made for, when it says so.
    pub fn metadata_user_id(&self) -> Option<i64> {
        self.metadata
            .as_ref()?
            .get("user_id")?
            .as_str()?
            .parse()
            .ok()
    }
}

#[derive(Debug, Deserialize)]
struct ErrorEnvelope {
    error: ErrorObject,
}

#[derive(Debug, Deserialize)]
struct ErrorObject {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

impl StripeClient {
    pub fn new(base: &str, secret_key: &SecretString) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            // Below the request timeout, so a slow Stripe is answered as such.
            .timeout(Duration::from_secs(20))
            .user_agent(concat!("Gatehouse/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            secret_key: secret_key.clone(),
        })
    }

    /// One call. POSTs carry `idempotency_key`; a connection that could not be made
    /// is tried once more with the same key, which Stripe turns into the same result.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        form: &Form,
        idempotency_key: Option<&str>,
    ) -> Result<T, StripeError> {
        let url = format!("{}/v1/{path}", self.base);
        let body = form.encode()?;
        let mut attempt = 0;
        let response = loop {
            attempt += 1;
            let mut req = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(self.secret_key.expose_secret())
                .header("Stripe-Version", STRIPE_VERSION);
            if method == Method::GET {
                if !body.is_empty() {
                    req = req.query(&form.0);
                }
            } else {
                req = req
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(body.clone());
            }
            if let Some(key) = idempotency_key {
                req = req.header("Idempotency-Key", key);
            }
            match req.send().await {
                Ok(response) => break response,
                Err(e) if e.is_connect() && attempt < 2 && idempotency_key.is_some() => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(StripeError::Unreachable(e)),
            }
        };
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(StripeError::Unreachable)?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&bytes).map_err(|e| StripeError::Malformed {
                status,
                detail: e.to_string(),
            });
        }
        match serde_json::from_slice::<ErrorEnvelope>(&bytes) {
            Ok(ErrorEnvelope { error }) => Err(StripeError::Api {
                status,
                kind: error.kind.unwrap_or_else(|| "api_error".to_owned()),
                code: error.code,
                message: error
                    .message
                    .unwrap_or_else(|| "no message given".to_owned()),
            }),
            Err(_) => Err(StripeError::Malformed {
                status,
                detail: "an error without Stripe's error object".to_owned(),
            }),
        }
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        form: &Form,
        idempotency_key: &str,
    ) -> Result<T, StripeError> {
        self.call(Method::POST, path, form, Some(idempotency_key))
            .await
    }

    pub async fn create_product(&self, form: &Form, key: &str) -> Result<Product, StripeError> {
        self.post("products", form, key).await
    }

    pub async fn update_product(
        &self,
        id: &str,
        form: &Form,
        key: &str,
    ) -> Result<Product, StripeError> {
        self.post(&format!("products/{}", path_id(id)?), form, key)
            .await
    }

    pub async fn create_price(&self, form: &Form, key: &str) -> Result<Price, StripeError> {
        self.post("prices", form, key).await
    }

    pub async fn update_price(
        &self,
        id: &str,
        form: &Form,
        key: &str,
    ) -> Result<Price, StripeError> {
        self.post(&format!("prices/{}", path_id(id)?), form, key)
            .await
    }

    pub async fn create_customer(&self, form: &Form, key: &str) -> Result<Customer, StripeError> {
        self.post("customers", form, key).await
    }

    pub async fn create_subscription(
        &self,
        form: &Form,
        key: &str,
    ) -> Result<Subscription, StripeError> {
        self.post("subscriptions", form, key).await
    }

    pub async fn update_subscription(
        &self,
        id: &str,
        form: &Form,
        key: &str,
    ) -> Result<Subscription, StripeError> {
        self.post(&format!("subscriptions/{}", path_id(id)?), form, key)
            .await
    }

    /// Cancels at once (Stripe's `DELETE /v1/subscriptions/:id`).
    pub async fn cancel_subscription(&self, id: &str) -> Result<Subscription, StripeError> {
        self.call(
            Method::DELETE,
            &format!("subscriptions/{}", path_id(id)?),
            &Form::new(),
            None,
        )
        .await
    }

    pub async fn create_checkout_session(
        &self,
        form: &Form,
        key: &str,
    ) -> Result<CheckoutSession, StripeError> {
        self.post("checkout/sessions", form, key).await
    }

    /// A checkout session as Stripe has it now, whole: the success page records it
    /// exactly as the webhook would.
    pub async fn checkout_session(&self, id: &str) -> Result<serde_json::Value, StripeError> {
        self.call(
            Method::GET,
            &format!("checkout/sessions/{}", path_id(id)?),
            &Form::new(),
            None,
        )
        .await
    }
}

/// A Stripe id placed in a URL path: our own stored ids, but checked anyway so that
/// no value can change the path.
fn path_id(id: &str) -> Result<&str, StripeError> {
    if !id.is_empty()
        && id.len() <= 255
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        Ok(id)
    } else {
        Err(StripeError::Malformed {
            status: 0,
            detail: "an id that cannot be placed in a URL".to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_use_stripes_bracket_keys() {
        let form = Form::new()
            .set("line_items[0][price]", "price_1")
            .set("recurring[interval]", "month")
            .set("name", "A & B");
        assert_eq!(
            form.encode().unwrap(),
            "line_items%5B0%5D%5Bprice%5D=price_1&recurring%5Binterval%5D=month&name=A+%26+B"
        );
    }

    #[test]
    fn ids_in_paths_are_plain() {
        assert!(path_id("prod_ABC123").is_ok());
        assert!(path_id("../x").is_err());
        assert!(path_id("a/b").is_err());
        assert!(path_id("").is_err());
    }
}

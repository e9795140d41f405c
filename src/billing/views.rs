//! The answers of the billing routes, in the shapes the old client reads
//! (`billing-legacy.md` §2): bare objects keyed by Stripe ids plus the local `id`,
//! `unit_amount` in major units as a JSON number. Each key always has the JSON type
//! the old service gave it, whatever Stripe sent: a field of an unexpected type
//! reads as the shape's empty value.

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::amount;
use super::store::{Price, Product, Subscription};
use crate::db::iso8601;

/// A product (`billing-legacy.md` §2.1, 18 keys): the local mirror of a Stripe product.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Product, example = json!({
    "id": 1, "product_id": "prod_Q1w2e3r4", "name": "Pro plan", "description": "Everything, monthly",
    "active": true, "attributes": null, "caption": null, "images": [], "livemode": false,
    "product_metadata": {}, "package_dimensions": null, "shippable": null,
    "statement_descriptor": null, "type": "service", "unit_label": null,
    "created_at": "2026-01-05T10:00:00.000000", "updated_at": "2026-01-05T10:00:00.000000", "url": null
}))]
pub struct ProductView {
    /// The local id.
    pub id: i64,
    /// The Stripe id (`prod_…`), by which requests name the product.
    pub product_id: String,
    pub name: String,
    pub description: Option<String>,
    /// Whether it can be bought; an archived (deleted) product is inactive.
    pub active: bool,
    /// Gone from Stripe's API (2024-06-20); null, as the old service answered.
    pub attributes: Option<Vec<String>>,
    /// Always null (gone from Stripe's API).
    pub caption: Option<String>,
    pub images: Vec<String>,
    pub livemode: bool,
    /// Stripe's `metadata` (string values).
    #[schema(value_type = Object)]
    pub product_metadata: Map<String, Value>,
    /// Stripe's shape: `height`, `length`, `weight`, `width`.
    #[schema(value_type = Option<Object>)]
    pub package_dimensions: Option<Map<String, Value>>,
    pub shippable: Option<bool>,
    pub statement_descriptor: Option<String>,
    /// Stripe's product type: `service` (the default) or `good`.
    #[serde(rename = "type")]
    pub kind: String,
    pub unit_label: Option<String>,
    /// ISO 8601, UTC, without a zone suffix.
    pub created_at: String,
    pub updated_at: Option<String>,
    pub url: Option<String>,
}

/// A price (`billing-legacy.md` §2.2, 17 keys): the local mirror of a Stripe price.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Price, example = json!({
    "id": 3, "price_id": "price_1PqRsT", "product_id": "prod_Q1w2e3r4", "unit_amount": 19.99,
    "currency": "usd", "recurring": { "interval": "month", "interval_count": 1 }, "active": true,
    "billing_scheme": "per_unit", "created_at": "2026-01-05T10:01:00.000000",
    "updated_at": "2026-01-05T10:01:00.000000", "tiers": null, "tiers_mode": null,
    "transform_quantity": null, "lookup_key": null, "price_metadata": {}, "nickname": "Monthly",
    "type": "recurring"
}))]
pub struct PriceView {
    /// The local id; it stays when `/edit-price` swaps in a new Stripe price.
    pub id: i64,
    /// The Stripe id (`price_…`); it changes on every edit.
    pub price_id: String,
    /// The Stripe id of its product.
    pub product_id: String,
    /// Major units (dollars), a JSON number (the client calls `.toFixed(2)` on it).
    #[schema(value_type = f64)]
    pub unit_amount: Value,
    /// Lower-case ISO code.
    pub currency: String,
    /// Stripe's recurring object (`interval`: day, week, month or year); null for a
    /// one-time price.
    #[schema(value_type = Option<Object>)]
    pub recurring: Option<Map<String, Value>>,
    pub active: bool,
    pub billing_scheme: Option<String>,
    /// ISO 8601, UTC, without a zone suffix.
    pub created_at: String,
    pub updated_at: Option<String>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub tiers: Option<Vec<Value>>,
    pub tiers_mode: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub transform_quantity: Option<Map<String, Value>>,
    pub lookup_key: Option<String>,
    /// Stripe's `metadata` (string values).
    #[schema(value_type = Object)]
    pub price_metadata: Map<String, Value>,
    pub nickname: Option<String>,
    /// `recurring` or `one_time`.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub kind: &'static str,
}

/// A subscription (`billing-legacy.md` §2.3, 9 keys and 3 more): the local mirror of
/// a Stripe subscription.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Subscription, example = json!({
    "id": 2, "subscription_id": "sub_1AbCdE", "user_id": 7, "price_id": "price_1PqRsT",
    "status": "active", "previous_status": null, "current_period_end": "2026-02-05T10:02:00",
    "trial_end": null, "created_at": "2026-01-05T10:02:00.000000", "cancel_at_period_end": false,
    "latest_invoice_id": "in_1XyZ", "latest_invoice_status": "paid"
}))]
pub struct SubscriptionView {
    /// The local id.
    pub id: i64,
    /// The Stripe id (`sub_…`), by which requests name the subscription.
    pub subscription_id: String,
    /// The local user it belongs to.
    pub user_id: Option<i64>,
    /// The Stripe id of its price.
    pub price_id: Option<String>,
    /// Stripe's status: `incomplete`, `trialing`, `active`, `past_due`, `canceled`, …
    pub status: String,
    /// Never written by the old service either.
    pub previous_status: Option<String>,
    /// ISO 8601, UTC, without a zone suffix.
    pub current_period_end: Option<String>,
    pub trial_end: Option<String>,
    pub created_at: String,
    /// Beyond the old shape: whether it ends at the close of the period, and the
    /// outcome of its latest invoice as the webhook reported it.
    pub cancel_at_period_end: bool,
    pub latest_invoice_id: Option<String>,
    pub latest_invoice_status: Option<String>,
}

/// `{"message": …}`, the answer of deletions and cancellations.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({ "message": "Product deleted successfully" }))]
pub struct Message {
    /// What was done, in words for a person.
    #[schema(value_type = String)]
    pub message: &'static str,
}

/// `{"checkout_url": …}`, with the session's id beside it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "checkout_url": "https://checkout.stripe.com/c/pay/cs_test_a1B2c3",
    "session_id": "cs_test_a1B2c3"
}))]
pub struct CheckoutStarted {
    /// Stripe's hosted checkout page, to send the browser to.
    pub checkout_url: String,
    /// The Checkout Session's Stripe id (`cs_…`).
    pub session_id: String,
}

/// The answer of `/checkout-success` when no `CHECKOUT_SUCCESS_URL` is set.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "message": "Success! Your payment was received.",
    "session_id": "cs_test_a1B2c3",
    "paid": true
}))]
pub struct CheckoutOutcome {
    /// In words for the buyer.
    #[schema(value_type = String)]
    pub message: &'static str,
    /// The Checkout Session's Stripe id.
    pub session_id: String,
    /// Whether Stripe says it is paid.
    pub paid: bool,
}

/// The answer of `/checkout-cancel` when no `CHECKOUT_CANCEL_URL` is set.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({ "message": "Payment cancelled." }))]
pub struct CheckoutCancelled {
    /// Always `Payment cancelled.`
    #[schema(value_type = String)]
    pub message: &'static str,
}

/// The webhook's acknowledgement.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({ "success": true, "received": true }))]
pub struct Received {
    /// Always `true`.
    pub success: bool,
    /// Always `true`.
    pub received: bool,
    /// Present (and `true`) when the event was processed before and is ignored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<bool>,
}

fn text(object: &Map<String, Value>, key: &str) -> Option<String> {
    object.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn sub_object(object: &Map<String, Value>, key: &str) -> Option<Map<String, Value>> {
    object.get(key).and_then(Value::as_object).cloned()
}

fn metadata(object: &Map<String, Value>) -> Map<String, Value> {
    sub_object(object, "metadata").unwrap_or_default()
}

impl From<&Product> for ProductView {
    fn from(p: &Product) -> Self {
        let o = &p.object;
        Self {
            id: p.id,
            product_id: p.stripe_product_id.clone(),
            name: p.name.clone(),
            description: p.description.clone(),
            active: p.active,
            attributes: None,
            caption: None,
            images: o
                .get("images")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            livemode: o.get("livemode").and_then(Value::as_bool).unwrap_or(false),
            product_metadata: metadata(o),
            package_dimensions: sub_object(o, "package_dimensions"),
            shippable: o.get("shippable").and_then(Value::as_bool),
            statement_descriptor: text(o, "statement_descriptor"),
            kind: text(o, "type").unwrap_or_else(|| "service".to_owned()),
            unit_label: text(o, "unit_label"),
            created_at: iso8601(p.created_at),
            updated_at: Some(iso8601(p.updated_at)),
            url: text(o, "url"),
        }
    }
}

impl From<&Price> for PriceView {
    fn from(p: &Price) -> Self {
        let o = &p.object;
        let recurring = sub_object(o, "recurring").or_else(|| {
            p.recurring_interval.as_ref().map(|interval| {
                let mut r = Map::new();
                r.insert("interval".to_owned(), Value::String(interval.clone()));
                r
            })
        });
        Self {
            id: p.id,
            price_id: p.stripe_price_id.clone(),
            product_id: p.stripe_product_id.clone(),
            unit_amount: amount::dollars(p.unit_amount),
            currency: p.currency.clone(),
            kind: if recurring.is_some() {
                "recurring"
            } else {
                "one_time"
            },
            recurring,
            active: p.active,
            billing_scheme: text(o, "billing_scheme"),
            created_at: iso8601(p.created_at),
            updated_at: Some(iso8601(p.updated_at)),
            tiers: o.get("tiers").and_then(Value::as_array).cloned(),
            tiers_mode: text(o, "tiers_mode"),
            transform_quantity: sub_object(o, "transform_quantity"),
            lookup_key: text(o, "lookup_key"),
            price_metadata: metadata(o),
            nickname: p.nickname.clone(),
        }
    }
}

impl From<&Subscription> for SubscriptionView {
    fn from(s: &Subscription) -> Self {
        Self {
            id: s.id,
            subscription_id: s.stripe_subscription_id.clone(),
            user_id: s.user_id,
            price_id: s.stripe_price_id.clone(),
            status: s.status.clone(),
            previous_status: None,
            current_period_end: s.current_period_end.map(iso8601),
            trial_end: s.trial_end.map(iso8601),
            created_at: iso8601(s.created_at),
            cancel_at_period_end: s.cancel_at_period_end,
            latest_invoice_id: s.latest_invoice_id.clone(),
            latest_invoice_status: s.latest_invoice_status.clone(),
        }
    }
}

pub fn products(list: &[Product]) -> Vec<ProductView> {
    list.iter().map(ProductView::from).collect()
}

pub fn prices(list: &[Price]) -> Vec<PriceView> {
    list.iter().map(PriceView::from).collect()
}

pub fn subscriptions(list: &[Subscription]) -> Vec<SubscriptionView> {
    list.iter().map(SubscriptionView::from).collect()
}

//! The answers of the billing routes, in the shapes the old client reads
//! (`billing-legacy.md` §2): bare objects keyed by Stripe ids plus the local `id`,
//! `unit_amount` in major units as a JSON number. Each key always has the JSON type
//! the old service gave it, whatever Stripe sent: a field of an unexpected type
//! reads as the shape's empty value.

use serde::Serialize;
use serde_json::{Map, Value};

use super::amount;
use super::store::{Price, Product, Subscription};
use crate::db::iso8601;

/// `billing-legacy.md` §2.1, 18 keys.
#[derive(Debug, Serialize)]
pub struct ProductView {
    pub id: i64,
    pub product_id: String,
    pub name: String,
    pub description: Option<String>,
    pub active: bool,
    /// Gone from Stripe's API (2024-06-20); null, as the old service answered.
    pub attributes: Option<Vec<String>>,
    pub caption: Option<String>,
    pub images: Vec<String>,
    pub livemode: bool,
    pub product_metadata: Map<String, Value>,
    pub package_dimensions: Option<Map<String, Value>>,
    pub shippable: Option<bool>,
    pub statement_descriptor: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub unit_label: Option<String>,
    pub created_at: String,
    pub updated_at: Option<String>,
    pub url: Option<String>,
}

/// `billing-legacy.md` §2.2, 17 keys.
#[derive(Debug, Serialize)]
pub struct PriceView {
    pub id: i64,
    pub price_id: String,
    pub product_id: String,
    /// Major units, a JSON number (the client calls `.toFixed(2)` on it).
    pub unit_amount: Value,
    pub currency: String,
    pub recurring: Option<Map<String, Value>>,
    pub active: bool,
    pub billing_scheme: Option<String>,
    pub created_at: String,
    pub updated_at: Option<String>,
    pub tiers: Option<Vec<Value>>,
    pub tiers_mode: Option<String>,
    pub transform_quantity: Option<Map<String, Value>>,
    pub lookup_key: Option<String>,
    pub price_metadata: Map<String, Value>,
    pub nickname: Option<String>,
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// `billing-legacy.md` §2.3, 9 keys.
#[derive(Debug, Serialize)]
pub struct SubscriptionView {
    pub id: i64,
    pub subscription_id: String,
    pub user_id: Option<i64>,
    pub price_id: Option<String>,
    pub status: String,
    /// Never written by the old service either.
    pub previous_status: Option<String>,
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
#[derive(Debug, Serialize)]
pub struct Message {
    pub message: &'static str,
}

/// `{"checkout_url": …}`, with the session's id beside it.
#[derive(Debug, Serialize)]
pub struct CheckoutStarted {
    pub checkout_url: String,
    pub session_id: String,
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

//! The SQL behind billing: the local mirror of Stripe's products, prices, customers
//! and subscriptions, the checkout sessions opened here, orders, and processed events.

use serde_json::{Map, Value};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::stripe;
use super::Ref;
use crate::db::{self, Db};

/// What the billing store can fail with; the routes map it to the contract's answer
/// once, at the edge.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// A row written in this very call could not be read back: a bug or a concurrent
    /// delete, never the caller's fault.
    #[error("{0} vanished after it was written")]
    Vanished(&'static str),
}

/// The Stripe fields kept beside the columns, as a JSON object; anything else (an old
/// row's empty default, a damaged value) reads as no fields.
fn object_of(text: &str) -> Map<String, Value> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// Subscription states that Stripe never leaves: no later event may revive them.
const TERMINAL: &str = "('canceled', 'incomplete_expired')";

#[derive(Debug, Clone)]
pub struct Product {
    pub id: i64,
    pub stripe_product_id: String,
    pub name: String,
    pub description: Option<String>,
    pub active: bool,
    pub created_at: i64,
    pub updated_at: i64,
    /// Stripe's other fields of the product, as last seen.
    pub object: Map<String, Value>,
}

const PRODUCT_COLUMNS: &str =
    "id, stripe_product_id, name, description, active, created_at, updated_at, stripe_object";

fn product(row: &AnyRow) -> Result<Product, sqlx::Error> {
    Ok(Product {
        id: row.try_get(0)?,
        stripe_product_id: row.try_get(1)?,
        name: row.try_get(2)?,
        description: row.try_get(3)?,
        active: row.try_get::<i64, _>(4)? != 0,
        created_at: row.try_get(5)?,
        updated_at: row.try_get(6)?,
        object: object_of(&row.try_get::<String, _>(7)?),
    })
}

/// Mirrors a product Stripe has just created or changed. Keyed by its Stripe id, so
/// a create retried with the same idempotency key lands on the same row.
pub async fn upsert_product(db: &Db, p: &stripe::Product) -> Result<Product, StoreError> {
    let row = sqlx::query(&format!(
        "INSERT INTO billing_products (stripe_product_id, name, description, active, \
         created_at, updated_at, stripe_object) VALUES ($1, $2, $3, $4, $5, $5, $6) \
         ON CONFLICT (stripe_product_id) DO UPDATE SET name = excluded.name, \
         description = excluded.description, active = excluded.active, \
         updated_at = excluded.updated_at, stripe_object = excluded.stripe_object \
         RETURNING {PRODUCT_COLUMNS}"
    ))
    .bind(&p.id)
    .bind(&p.name)
    .bind(p.description.as_deref())
    .bind(i64::from(p.active))
    .bind(db::now())
    .bind(Value::Object(p.rest.clone()).to_string())
    .fetch_one(db.writer())
    .await?;
    Ok(product(&row)?)
}

pub async fn find_product(db: &Db, r: &Ref) -> Result<Option<Product>, StoreError> {
    let query = format!("SELECT {PRODUCT_COLUMNS} FROM billing_products WHERE ");
    let row = match r {
        Ref::Local(id) => {
            sqlx::query(&(query + "id = $1"))
                .bind(*id)
                .fetch_optional(db.pool())
                .await?
        }
        Ref::Stripe(id) => {
            sqlx::query(&(query + "stripe_product_id = $1"))
                .bind(id)
                .fetch_optional(db.pool())
                .await?
        }
    };
    Ok(row.as_ref().map(product).transpose()?)
}

pub async fn list_products(db: &Db, active_only: bool) -> Result<Vec<Product>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {PRODUCT_COLUMNS} FROM billing_products WHERE active = 1 OR $1 = 0 ORDER BY id"
    ))
    .bind(i64::from(active_only))
    .fetch_all(db.pool())
    .await?;
    Ok(rows.iter().map(product).collect::<Result<_, _>>()?)
}

#[derive(Debug, Clone)]
pub struct Price {
    pub id: i64,
    pub stripe_price_id: String,
    pub product_id: i64,
    pub stripe_product_id: String,
    pub product_active: bool,
    pub unit_amount: i64,
    pub currency: String,
    pub recurring_interval: Option<String>,
    pub nickname: Option<String>,
    pub active: bool,
    pub created_at: i64,
    pub updated_at: i64,
    /// Stripe's other fields of the price (`recurring` whole, `lookup_key`, …).
    pub object: Map<String, Value>,
}

const PRICE_SELECT: &str = "SELECT pr.id, pr.stripe_price_id, pr.product_id, \
     p.stripe_product_id, p.active, pr.unit_amount, pr.currency, pr.recurring_interval, \
     pr.nickname, pr.active, pr.created_at, pr.updated_at, pr.stripe_object \
     FROM billing_prices pr JOIN billing_products p ON p.id = pr.product_id";

fn price(row: &AnyRow) -> Result<Price, sqlx::Error> {
    Ok(Price {
        id: row.try_get(0)?,
        stripe_price_id: row.try_get(1)?,
        product_id: row.try_get(2)?,
        stripe_product_id: row.try_get(3)?,
        product_active: row.try_get::<i64, _>(4)? != 0,
        unit_amount: row.try_get(5)?,
        currency: row.try_get(6)?,
        recurring_interval: row.try_get(7)?,
        nickname: row.try_get(8)?,
        active: row.try_get::<i64, _>(9)? != 0,
        created_at: row.try_get(10)?,
        updated_at: row.try_get(11)?,
        object: object_of(&row.try_get::<String, _>(12)?),
    })
}

/// The fields of a Stripe price kept beside the columns.
fn price_object(p: &stripe::Price) -> String {
    let mut object = p.rest.clone();
    object.insert(
        "recurring".to_owned(),
        serde_json::to_value(&p.recurring).unwrap_or(Value::Null),
    );
    Value::Object(object).to_string()
}

/// Mirrors a price Stripe has just created or changed.
pub async fn upsert_price(
    db: &Db,
    product_id: i64,
    p: &stripe::Price,
) -> Result<Price, StoreError> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO billing_prices (stripe_price_id, product_id, unit_amount, currency, \
         recurring_interval, nickname, active, created_at, updated_at, stripe_object) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9) \
         ON CONFLICT (stripe_price_id) DO UPDATE SET nickname = excluded.nickname, \
         active = excluded.active, updated_at = excluded.updated_at, \
         stripe_object = excluded.stripe_object RETURNING id",
    )
    .bind(&p.id)
    .bind(product_id)
    .bind(p.unit_amount.unwrap_or(0))
    .bind(&p.currency)
    .bind(p.recurring.as_ref().map(|r| r.interval.as_str()))
    .bind(p.nickname.as_deref())
    .bind(i64::from(p.active))
    .bind(db::now())
    .bind(price_object(p))
    .fetch_one(db.writer())
    .await?;
    find_price(db, &Ref::Local(id))
        .await?
        .ok_or(StoreError::Vanished("price"))
}

/// Points the local price `id` at the Stripe price that replaced its old one (Stripe
/// prices cannot change their amount): the row keeps its `id`, as the old client
/// expects, and takes the new Stripe id and fields.
pub async fn replace_price(db: &Db, id: i64, p: &stripe::Price) -> Result<Price, StoreError> {
    sqlx::query(
        "UPDATE billing_prices SET stripe_price_id = $1, unit_amount = $2, currency = $3, \
         recurring_interval = $4, nickname = $5, active = $6, updated_at = $7, \
         stripe_object = $8 WHERE id = $9",
    )
    .bind(&p.id)
    .bind(p.unit_amount.unwrap_or(0))
    .bind(&p.currency)
    .bind(p.recurring.as_ref().map(|r| r.interval.as_str()))
    .bind(p.nickname.as_deref())
    .bind(i64::from(p.active))
    .bind(db::now())
    .bind(price_object(p))
    .bind(id)
    .execute(db.writer())
    .await?;
    find_price(db, &Ref::Local(id))
        .await?
        .ok_or(StoreError::Vanished("price"))
}

pub async fn find_price(db: &Db, r: &Ref) -> Result<Option<Price>, StoreError> {
    let row = match r {
        Ref::Local(id) => {
            sqlx::query(&format!("{PRICE_SELECT} WHERE pr.id = $1"))
                .bind(*id)
                .fetch_optional(db.pool())
                .await?
        }
        Ref::Stripe(id) => {
            sqlx::query(&format!("{PRICE_SELECT} WHERE pr.stripe_price_id = $1"))
                .bind(id)
                .fetch_optional(db.pool())
                .await?
        }
    };
    Ok(row.as_ref().map(price).transpose()?)
}

/// Prices, optionally of one product; `active_only` also hides the prices of
/// inactive products.
pub async fn list_prices(
    db: &Db,
    product_id: Option<i64>,
    active_only: bool,
) -> Result<Vec<Price>, StoreError> {
    let rows = sqlx::query(&format!(
        "{PRICE_SELECT} WHERE ($1 = 0 OR pr.product_id = $2) \
         AND ($3 = 0 OR (pr.active = 1 AND p.active = 1)) ORDER BY pr.id"
    ))
    .bind(i64::from(product_id.is_some()))
    .bind(product_id.unwrap_or(0))
    .bind(i64::from(active_only))
    .fetch_all(db.pool())
    .await?;
    Ok(rows.iter().map(price).collect::<Result<_, _>>()?)
}

pub async fn customer_of(db: &Db, user_id: i64) -> Result<Option<String>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT stripe_customer_id FROM billing_customers WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(db.pool())
            .await?,
    )
}

/// Links a user to their Stripe customer; the first link wins and is returned.
pub async fn link_customer(db: &Db, user_id: i64, customer: &str) -> Result<String, StoreError> {
    sqlx::query(
        "INSERT INTO billing_customers (user_id, stripe_customer_id, created_at) \
         VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(user_id)
    .bind(customer)
    .bind(db::now())
    .execute(db.writer())
    .await?;
    customer_of(db, user_id)
        .await?
        .ok_or(StoreError::Vanished("customer link"))
}

pub async fn user_of_customer(
    conn: &mut AnyConnection,
    customer: &str,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT user_id FROM billing_customers WHERE stripe_customer_id = $1")
        .bind(customer)
        .fetch_optional(conn)
        .await
}

#[derive(Debug, Clone)]
pub struct Subscription {
    pub id: i64,
    pub stripe_subscription_id: String,
    pub user_id: Option<i64>,
    pub stripe_customer_id: String,
    pub stripe_price_id: Option<String>,
    pub price_id: Option<i64>,
    pub stripe_item_id: Option<String>,
    pub status: String,
    pub cancel_at_period_end: bool,
    pub current_period_end: Option<i64>,
    pub canceled_at: Option<i64>,
    pub trial_end: Option<i64>,
    pub latest_invoice_id: Option<String>,
    pub latest_invoice_status: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Subscription {
    /// Whether Stripe can still charge or change it.
    pub fn is_live(&self) -> bool {
        !matches!(self.status.as_str(), "canceled" | "incomplete_expired")
    }
}

const SUBSCRIPTION_SELECT: &str = "SELECT s.id, s.stripe_subscription_id, s.user_id, \
     s.stripe_customer_id, s.stripe_price_id, pr.id, s.stripe_item_id, s.status, \
     s.cancel_at_period_end, s.current_period_end, s.canceled_at, s.latest_invoice_id, \
     s.latest_invoice_status, s.created_at, s.updated_at, s.trial_end \
     FROM billing_subscriptions s LEFT JOIN billing_prices pr \
     ON pr.stripe_price_id = s.stripe_price_id";

fn subscription(row: &AnyRow) -> Result<Subscription, sqlx::Error> {
    Ok(Subscription {
        id: row.try_get(0)?,
        stripe_subscription_id: row.try_get(1)?,
        user_id: row.try_get(2)?,
        stripe_customer_id: row.try_get(3)?,
        stripe_price_id: row.try_get(4)?,
        price_id: row.try_get(5)?,
        stripe_item_id: row.try_get(6)?,
        status: row.try_get(7)?,
        cancel_at_period_end: row.try_get::<i64, _>(8)? != 0,
        current_period_end: row.try_get(9)?,
        canceled_at: row.try_get(10)?,
        latest_invoice_id: row.try_get(11)?,
        latest_invoice_status: row.try_get(12)?,
        created_at: row.try_get(13)?,
        updated_at: row.try_get(14)?,
        trial_end: row.try_get(15)?,
    })
}

/// Writes a subscription as Stripe reported it at `state_at` (the event's or the
/// answer's time), unless what is stored is newer, or final: an event delivered late
/// or twice cannot undo a later one, and nothing revives a canceled subscription
/// except the cancellation itself. Returns whether the state was applied.
pub async fn apply_subscription(
    conn: &mut AnyConnection,
    s: &stripe::Subscription,
    user_id: Option<i64>,
    state_at: i64,
) -> Result<bool, sqlx::Error> {
    let item = s.first_item();
    let applied: Option<i64> = sqlx::query_scalar(&format!(
        "INSERT INTO billing_subscriptions (stripe_subscription_id, user_id, \
         stripe_customer_id, stripe_price_id, stripe_item_id, status, cancel_at_period_end, \
         current_period_end, canceled_at, state_at, created_at, updated_at, trial_end) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12) \
         ON CONFLICT (stripe_subscription_id) DO UPDATE SET \
         user_id = COALESCE(billing_subscriptions.user_id, excluded.user_id), \
         stripe_customer_id = excluded.stripe_customer_id, \
         stripe_price_id = COALESCE(excluded.stripe_price_id, billing_subscriptions.stripe_price_id), \
         stripe_item_id = COALESCE(excluded.stripe_item_id, billing_subscriptions.stripe_item_id), \
         status = excluded.status, cancel_at_period_end = excluded.cancel_at_period_end, \
         current_period_end = COALESCE(excluded.current_period_end, billing_subscriptions.current_period_end), \
         canceled_at = excluded.canceled_at, state_at = excluded.state_at, \
         trial_end = excluded.trial_end, \
         updated_at = excluded.updated_at \
         WHERE (billing_subscriptions.status NOT IN {TERMINAL} \
                AND (billing_subscriptions.state_at <= excluded.state_at \
                     OR excluded.status IN {TERMINAL})) \
            OR (billing_subscriptions.status IN {TERMINAL} AND excluded.status IN {TERMINAL} \
                AND billing_subscriptions.state_at <= excluded.state_at) \
         RETURNING id"
    ))
    .bind(&s.id)
    .bind(user_id)
    .bind(&s.customer)
    .bind(item.map(|i| i.price.id.as_str()))
    .bind(item.map(|i| i.id.as_str()))
    .bind(&s.status)
    .bind(i64::from(s.cancel_at_period_end))
    .bind(s.period_end())
    .bind(s.canceled_at)
    .bind(state_at)
    .bind(db::now())
    .bind(s.trial_end)
    .fetch_optional(conn)
    .await?;
    Ok(applied.is_some())
}

/// Records an invoice's outcome on its subscription, unless a newer invoice event
/// was recorded already. A subscription not seen yet gets a placeholder that its own
/// events (all newer than time 0) will fill in.
pub async fn apply_invoice(
    conn: &mut AnyConnection,
    subscription: &str,
    customer: &str,
    user_id: Option<i64>,
    invoice_id: &str,
    outcome: &str,
    at: i64,
) -> Result<bool, sqlx::Error> {
    let now = db::now();
    sqlx::query(
        "INSERT INTO billing_subscriptions (stripe_subscription_id, user_id, \
         stripe_customer_id, status, state_at, created_at, updated_at) \
         VALUES ($1, $2, $3, 'incomplete', 0, $4, $4) ON CONFLICT DO NOTHING",
    )
    .bind(subscription)
    .bind(user_id)
    .bind(customer)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let done = sqlx::query(
        "UPDATE billing_subscriptions SET latest_invoice_id = $1, latest_invoice_status = $2, \
         invoice_state_at = $3, updated_at = $4 WHERE stripe_subscription_id = $5 \
         AND (invoice_state_at IS NULL OR invoice_state_at <= $3)",
    )
    .bind(invoice_id)
    .bind(outcome)
    .bind(at)
    .bind(now)
    .bind(subscription)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// A subscription by id, unless it was deleted from the list.
pub async fn find_subscription(db: &Db, r: &Ref) -> Result<Option<Subscription>, StoreError> {
    let row = match r {
        Ref::Local(id) => {
            sqlx::query(&format!(
                "{SUBSCRIPTION_SELECT} WHERE s.id = $1 AND s.deleted_at IS NULL"
            ))
            .bind(*id)
            .fetch_optional(db.pool())
            .await?
        }
        Ref::Stripe(id) => {
            sqlx::query(&format!(
                "{SUBSCRIPTION_SELECT} WHERE s.stripe_subscription_id = $1 AND s.deleted_at IS NULL"
            ))
            .bind(id)
            .fetch_optional(db.pool())
            .await?
        }
    };
    Ok(row.as_ref().map(subscription).transpose()?)
}

/// Subscriptions, newest first, of one user or of everyone; at most `limit`.
pub async fn list_subscriptions(
    db: &Db,
    user_id: Option<i64>,
    limit: i64,
) -> Result<Vec<Subscription>, StoreError> {
    let rows = sqlx::query(&format!(
        "{SUBSCRIPTION_SELECT} WHERE s.deleted_at IS NULL AND ($1 = 0 OR s.user_id = $2) \
         ORDER BY s.id DESC LIMIT $3"
    ))
    .bind(i64::from(user_id.is_some()))
    .bind(user_id.unwrap_or(0))
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    Ok(rows.iter().map(subscription).collect::<Result<_, _>>()?)
}

/// Takes a subscription off every list; its webhooks still update the record.
pub async fn hide_subscription(db: &Db, id: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE billing_subscriptions SET deleted_at = $1 WHERE id = $2")
        .bind(db::now())
        .bind(id)
        .execute(db.writer())
        .await?;
    Ok(())
}

/// A checkout session opened here: whose it is and what it sells.
#[derive(Debug, Clone)]
pub struct Checkout {
    pub user_id: i64,
    pub price_id: i64,
}

const CHECKOUT_COLUMNS: &str = "user_id, price_id";

fn checkout(row: &AnyRow) -> Result<Checkout, sqlx::Error> {
    Ok(Checkout {
        user_id: row.try_get(0)?,
        price_id: row.try_get(1)?,
    })
}

pub async fn insert_checkout(
    db: &Db,
    session: &stripe::CheckoutSession,
    user_id: i64,
    price_id: i64,
    mode: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO billing_checkout_sessions (stripe_session_id, user_id, price_id, mode, \
         status, url, created_at) VALUES ($1, $2, $3, $4, 'open', $5, $6) \
         ON CONFLICT (stripe_session_id) DO NOTHING",
    )
    .bind(&session.id)
    .bind(user_id)
    .bind(price_id)
    .bind(mode)
    .bind(session.url.as_deref())
    .bind(db::now())
    .execute(db.writer())
    .await?;
    Ok(())
}

pub async fn find_checkout(
    conn: &mut AnyConnection,
    stripe_session_id: &str,
) -> Result<Option<Checkout>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {CHECKOUT_COLUMNS} FROM billing_checkout_sessions WHERE stripe_session_id = $1"
    ))
    .bind(stripe_session_id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(checkout).transpose()
}

pub async fn complete_checkout(
    conn: &mut AnyConnection,
    stripe_session_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE billing_checkout_sessions SET status = 'completed', completed_at = $1 \
         WHERE stripe_session_id = $2 AND status <> 'completed'",
    )
    .bind(db::now())
    .bind(stripe_session_id)
    .execute(conn)
    .await?;
    Ok(())
}

pub struct NewOrder<'a> {
    pub stripe_session_id: &'a str,
    pub user_id: Option<i64>,
    pub price_id: Option<i64>,
    pub amount_total: Option<i64>,
    pub currency: Option<&'a str>,
    pub payment_status: &'a str,
    pub status: &'a str,
    pub stripe_subscription_id: Option<&'a str>,
    pub stripe_customer_id: Option<&'a str>,
}

/// Creates the order of a completed checkout session, once: a second completion of
/// the same session changes nothing and returns `None`.
pub async fn insert_order(
    conn: &mut AnyConnection,
    o: &NewOrder<'_>,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO billing_orders (stripe_session_id, user_id, price_id, amount_total, \
         currency, payment_status, status, stripe_subscription_id, stripe_customer_id, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) \
         ON CONFLICT (stripe_session_id) DO NOTHING RETURNING id",
    )
    .bind(o.stripe_session_id)
    .bind(o.user_id)
    .bind(o.price_id)
    .bind(o.amount_total)
    .bind(o.currency)
    .bind(o.payment_status)
    .bind(o.status)
    .bind(o.stripe_subscription_id)
    .bind(o.stripe_customer_id)
    .bind(db::now())
    .fetch_optional(conn)
    .await
}

/// An asynchronous payment (bank debit) of a session settled or failed.
pub async fn settle_order(
    conn: &mut AnyConnection,
    stripe_session_id: &str,
    payment_status: &str,
    status: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE billing_orders SET payment_status = $1, status = $2, updated_at = $3 \
         WHERE stripe_session_id = $4 AND status = 'pending'",
    )
    .bind(payment_status)
    .bind(status)
    .bind(db::now())
    .bind(stripe_session_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Claims an event id for processing inside the caller's transaction: true the first
/// time, false for a replay. Two deliveries racing wait on the unique index, and the
/// loser sees the winner's row once it commits.
pub async fn claim_event(
    conn: &mut AnyConnection,
    event_id: &str,
    kind: &str,
    created: i64,
) -> Result<bool, sqlx::Error> {
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO billing_events (event_id, type, stripe_created, received_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (event_id) DO NOTHING RETURNING id",
    )
    .bind(event_id)
    .bind(kind)
    .bind(created)
    .bind(db::now())
    .fetch_optional(conn)
    .await?;
    Ok(id.is_some())
}

/// What the webhook did with the event, written in the transaction that claimed it.
pub async fn set_event_outcome(
    conn: &mut AnyConnection,
    event_id: &str,
    outcome: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE billing_events SET outcome = $1 WHERE event_id = $2")
        .bind(outcome)
        .bind(event_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// A processed webhook event, as the events page lists it.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub id: i64,
    pub event_id: String,
    pub kind: String,
    pub stripe_created: i64,
    pub received_at: i64,
    /// `None` for events processed before outcomes were recorded.
    pub outcome: Option<String>,
}

/// Processed events, newest first, with an id below `before_id`; at most `limit`.
pub async fn list_events(db: &Db, before_id: i64, limit: i64) -> Result<Vec<EventRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, event_id, type, stripe_created, received_at, outcome FROM billing_events \
         WHERE id < $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(before_id)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    let event = |row: &AnyRow| -> Result<EventRow, sqlx::Error> {
        Ok(EventRow {
            id: row.try_get(0)?,
            event_id: row.try_get(1)?,
            kind: row.try_get(2)?,
            stripe_created: row.try_get(3)?,
            received_at: row.try_get(4)?,
            outcome: row.try_get(5)?,
        })
    };
    Ok(rows.iter().map(event).collect::<Result<_, _>>()?)
}

/// Subscriptions, newest first, optionally of one status and of one user, one page
/// of `limit` after `offset`; and how many match in all.
pub async fn filter_subscriptions(
    db: &Db,
    status: Option<&str>,
    user_id: Option<i64>,
    offset: i64,
    limit: i64,
) -> Result<(Vec<Subscription>, i64), StoreError> {
    let filter =
        "s.deleted_at IS NULL AND ($1 = 0 OR s.status = $2) AND ($3 = 0 OR s.user_id = $4)";
    let total: i64 = sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM billing_subscriptions s WHERE {filter}"
    ))
    .bind(i64::from(status.is_some()))
    .bind(status.unwrap_or(""))
    .bind(i64::from(user_id.is_some()))
    .bind(user_id.unwrap_or(0))
    .fetch_one(db.pool())
    .await?;
    let rows = sqlx::query(&format!(
        "{SUBSCRIPTION_SELECT} WHERE {filter} ORDER BY s.id DESC LIMIT $5 OFFSET $6"
    ))
    .bind(i64::from(status.is_some()))
    .bind(status.unwrap_or(""))
    .bind(i64::from(user_id.is_some()))
    .bind(user_id.unwrap_or(0))
    .bind(limit)
    .bind(offset)
    .fetch_all(db.pool())
    .await?;
    Ok((
        rows.iter().map(subscription).collect::<Result<_, _>>()?,
        total,
    ))
}

/// Rows carried over from the old service by `gatehouse import`: written as they
/// were, inside the importer's one transaction, each skipped when its Stripe id is
/// already here so a second run inserts nothing. Each returns whether the row is new.
pub mod import {
    use sqlx::AnyConnection;

    use super::StoreError;

    /// A user's Stripe customer.
    pub async fn customer(
        conn: &mut AnyConnection,
        user_id: i64,
        customer: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO billing_customers (user_id, stripe_customer_id, created_at) \
             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(user_id)
        .bind(customer)
        .bind(now)
        .execute(conn)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A product as the old service stored it.
    pub struct OldProduct<'a> {
        pub stripe_product_id: &'a str,
        pub name: &'a str,
        pub description: Option<&'a str>,
        pub active: bool,
        pub created_at: i64,
        pub updated_at: i64,
    }

    pub async fn product(conn: &mut AnyConnection, p: &OldProduct<'_>) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO billing_products (stripe_product_id, name, description, active, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(p.stripe_product_id)
        .bind(p.name)
        .bind(p.description)
        .bind(i64::from(p.active))
        .bind(p.created_at)
        .bind(p.updated_at)
        .execute(conn)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The local id of the product with this Stripe id.
    pub async fn product_id(
        conn: &mut AnyConnection,
        stripe_product_id: &str,
    ) -> Result<Option<i64>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT id FROM billing_products WHERE stripe_product_id = $1")
                .bind(stripe_product_id)
                .fetch_optional(conn)
                .await?,
        )
    }

    /// A price as the old service stored it, its amount in minor units.
    pub struct OldPrice<'a> {
        pub stripe_price_id: &'a str,
        /// The local product's id.
        pub product_id: i64,
        pub unit_amount: i64,
        pub currency: &'a str,
        pub recurring_interval: Option<&'a str>,
        pub nickname: Option<&'a str>,
        pub active: bool,
        pub created_at: i64,
        pub updated_at: i64,
    }

    pub async fn price(conn: &mut AnyConnection, p: &OldPrice<'_>) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO billing_prices (stripe_price_id, product_id, unit_amount, currency, \
             recurring_interval, nickname, active, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
        )
        .bind(p.stripe_price_id)
        .bind(p.product_id)
        .bind(p.unit_amount)
        .bind(p.currency)
        .bind(p.recurring_interval)
        .bind(p.nickname)
        .bind(i64::from(p.active))
        .bind(p.created_at)
        .bind(p.updated_at)
        .execute(conn)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The local id of the price with this Stripe id.
    pub async fn price_id(
        conn: &mut AnyConnection,
        stripe_price_id: &str,
    ) -> Result<Option<i64>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT id FROM billing_prices WHERE stripe_price_id = $1")
                .bind(stripe_price_id)
                .fetch_optional(conn)
                .await?,
        )
    }

    /// A subscription as the old service last saw it. It is stored with `state_at` 0,
    /// so Stripe's next event about it replaces this stale state.
    pub struct OldSubscription<'a> {
        pub stripe_subscription_id: &'a str,
        pub user_id: i64,
        pub stripe_customer_id: &'a str,
        pub stripe_price_id: &'a str,
        pub status: &'a str,
        pub cancel_at_period_end: bool,
        pub current_period_end: Option<i64>,
        pub created_at: i64,
        pub updated_at: i64,
    }

    pub async fn subscription(
        conn: &mut AnyConnection,
        s: &OldSubscription<'_>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO billing_subscriptions (stripe_subscription_id, user_id, \
             stripe_customer_id, stripe_price_id, status, cancel_at_period_end, \
             current_period_end, state_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $9) ON CONFLICT DO NOTHING",
        )
        .bind(s.stripe_subscription_id)
        .bind(s.user_id)
        .bind(s.stripe_customer_id)
        .bind(s.stripe_price_id)
        .bind(s.status)
        .bind(i64::from(s.cancel_at_period_end))
        .bind(s.current_period_end)
        .bind(s.created_at)
        .bind(s.updated_at)
        .execute(conn)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// An order of the old service: paid, keyed by a made-up session id
    /// (`flask-order-<id>`), as the old orders had none.
    pub struct OldOrder<'a> {
        pub stripe_session_id: &'a str,
        pub user_id: i64,
        pub price_id: Option<i64>,
        pub amount_total: Option<i64>,
        pub currency: Option<&'a str>,
        pub stripe_customer_id: Option<&'a str>,
        pub created_at: i64,
    }

    pub async fn order(conn: &mut AnyConnection, o: &OldOrder<'_>) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO billing_orders (stripe_session_id, user_id, price_id, amount_total, \
             currency, payment_status, status, stripe_customer_id, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, 'paid', 'paid', $6, $7, $7) ON CONFLICT DO NOTHING",
        )
        .bind(o.stripe_session_id)
        .bind(o.user_id)
        .bind(o.price_id)
        .bind(o.amount_total)
        .bind(o.currency)
        .bind(o.stripe_customer_id)
        .bind(o.created_at)
        .execute(conn)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

//! Stripe customers, products, prices, subscriptions and orders. Stripe stays the
//! source of truth: subscriptions come in with `state_at` 0, so the next webhook
//! event about one replaces its stale status. Money was kept as float major units
//! (Stripe's integer ÷ 100, for every currency); ×100 rounded gives Stripe's integer
//! back exactly.
//!
//! Every row has a Stripe id (orders get `flask-order-<id>`, as they had none) under a
//! unique index, so a second run inserts nothing (`ON CONFLICT DO NOTHING`).
//!
//! The rows are written by the billing store (`crate::billing::store::import`): this
//! module reads the old tables and decides what to carry, billing owns its tables.

use std::collections::{HashMap, HashSet};

use super::accounts::Carried;
use super::old::OldDb;
use super::report::{Outcome, Report, Table};
use super::{Ctx, ImportError};
use crate::billing::store::import::{
    self as store, OldOrder, OldPrice, OldProduct, OldSubscription,
};
use crate::billing::store::StoreError;
use crate::db;
use crate::error::AppError;

/// The billing store's failures as the importer's (a database failure stays one).
fn failed(e: StoreError) -> ImportError {
    ImportError::Target(AppError::from(e))
}

/// Stripe's integer amount from the old float (19.98 → 1998, not 1997).
pub fn cents(major: f64) -> i64 {
    (major * 100.0).round() as i64
}

pub async fn import(
    ctx: &mut Ctx<'_>,
    old: &mut OldDb,
    report: &mut Report,
    carried: &Carried,
) -> Result<(), ImportError> {
    let now = db::now();
    let write = !ctx.options.dry_run;
    // Rows one by one, but all in one transaction: one commit, not one per row.
    let mut tx = ctx.db.begin().await?;

    // Customers: one Stripe customer per account and one account per customer.
    let mut table = Table::new("user.stripe_customer_id", carried.customers.len());
    let mut customer_of: HashMap<i64, String> = HashMap::new();
    let mut customers = HashSet::new();
    let mut holders = HashSet::new();
    for (old_user, customer) in &carried.customers {
        let label = format!("user {old_user} ({customer})");
        let Some(user) = ctx.id("user", *old_user) else {
            table.note(Outcome::Skipped, label, "the user was skipped");
            continue;
        };
        customer_of.insert(*old_user, customer.clone());
        if !customers.insert(customer.clone()) {
            table.note(
                Outcome::Skipped,
                label,
                "another account holds this Stripe customer already",
            );
            continue;
        }
        if !holders.insert(user) {
            table.note(
                Outcome::Skipped,
                label,
                "merged into an account that has a Stripe customer already",
            );
            continue;
        }
        if write
            && !store::customer(&mut tx, user, customer, now)
                .await
                .map_err(failed)?
        {
            table.already += 1;
        } else {
            table.imported += 1;
        }
    }
    report.tables.push(table);

    let rows = old
        .rows(
            "stripe_products",
            &[
                "product_id",
                "name",
                "description",
                "active",
                "created_at",
                "updated_at",
            ],
            "id",
        )
        .await?;
    let mut table = Table::new("stripe_products", rows.len());
    for row in &rows {
        let Some(product) = row.text(0).filter(|p| !p.is_empty()) else {
            table.note(
                Outcome::Skipped,
                "product without an id",
                "no Stripe product id",
            );
            continue;
        };
        let created = row.time(4, time::UtcOffset::UTC).unwrap_or(now);
        let updated = row.time(5, time::UtcOffset::UTC).unwrap_or(created);
        let fresh = !write
            || store::product(
                &mut tx,
                &OldProduct {
                    stripe_product_id: product,
                    name: row.text(1).unwrap_or(product),
                    description: row.text(2),
                    active: row.text(3).is_none() || row.flag(3),
                    created_at: created,
                    updated_at: updated,
                },
            )
            .await
            .map_err(failed)?;
        if fresh {
            table.imported += 1;
        } else {
            table.already += 1;
        }
    }
    report.tables.push(table);

    let rows = old
        .rows(
            "stripe_prices",
            &[
                "price_id",
                "product_id",
                "unit_amount",
                "currency",
                "recurring",
                "active",
                "nickname",
                "created_at",
                "updated_at",
            ],
            "id",
        )
        .await?;
    let mut table = Table::new("stripe_prices", rows.len());
    let mut currency_of: HashMap<String, String> = HashMap::new();
    for row in &rows {
        let (Some(price), Some(product)) = (row.text(0), row.text(1)) else {
            continue;
        };
        let label = format!("price {price}");
        let Some(amount) = row.float(2) else {
            table.note(
                Outcome::Skipped,
                label,
                "no unit amount (tiered prices were never stored whole)",
            );
            continue;
        };
        let currency = row.text(3).unwrap_or("usd").to_ascii_lowercase();
        currency_of.insert(price.to_owned(), currency.clone());
        let product_id = store::product_id(&mut tx, product).await.map_err(failed)?;
        let Some(product_id) = product_id.or((!write).then_some(0)) else {
            table.note(
                Outcome::Skipped,
                label,
                format!("its product {product} does not exist"),
            );
            continue;
        };
        let interval = row
            .text(4)
            .and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok())
            .and_then(|r| {
                r.get("interval")
                    .and_then(|i| i.as_str())
                    .map(str::to_owned)
            });
        let created = row.time(7, time::UtcOffset::UTC).unwrap_or(now);
        let updated = row.time(8, time::UtcOffset::UTC).unwrap_or(created);
        let fresh = !write
            || store::price(
                &mut tx,
                &OldPrice {
                    stripe_price_id: price,
                    product_id,
                    unit_amount: cents(amount),
                    currency: &currency,
                    recurring_interval: interval.as_deref(),
                    nickname: row.text(6),
                    active: row.text(5).is_none() || row.flag(5),
                    created_at: created,
                    updated_at: updated,
                },
            )
            .await
            .map_err(failed)?;
        if fresh {
            table.imported += 1;
        } else {
            table.already += 1;
        }
    }
    report.tables.push(table);

    let rows = old
        .rows(
            "stripe_subscriptions",
            &[
                "subscription_id",
                "user_id",
                "price_id",
                "status",
                "current_period_end",
                "created_at",
            ],
            "id",
        )
        .await?;
    let mut table = Table::new("stripe_subscriptions", rows.len());
    let prices: HashSet<String> = currency_of.keys().cloned().collect();
    for row in &rows {
        let Some(subscription) = row.text(0) else {
            continue;
        };
        let label = format!("subscription {subscription}");
        let old_user = row.int(1).unwrap_or(0);
        let Some(user) = ctx.id("user", old_user) else {
            table.note(
                Outcome::Skipped,
                label,
                format!("its user {old_user} does not exist or was skipped"),
            );
            continue;
        };
        let Some(customer) = customer_of.get(&old_user) else {
            table.note(
                Outcome::Skipped,
                label,
                "its user has no Stripe customer id",
            );
            continue;
        };
        let price = row.text(2).unwrap_or("");
        if !prices.contains(price) {
            table.note(Outcome::Changed, label.clone(), format!("its price {price} was replaced by an edit in the old service; kept until Stripe's next event"));
        }
        let (status, cancel_at_period_end) = match row.text(3).unwrap_or("") {
            "canceled_at_period_end" => ("active", true),
            other => (other, false),
        };
        let period_end = row.time(4, ctx.options.server_utc_offset);
        let created = row.time(5, time::UtcOffset::UTC).unwrap_or(now);
        let fresh = !write
            || store::subscription(
                &mut tx,
                &OldSubscription {
                    stripe_subscription_id: subscription,
                    user_id: user,
                    stripe_customer_id: customer,
                    stripe_price_id: price,
                    status,
                    cancel_at_period_end,
                    current_period_end: period_end,
                    created_at: created,
                    updated_at: now,
                },
            )
            .await
            .map_err(failed)?;
        if fresh {
            table.imported += 1;
        } else {
            table.already += 1;
        }
    }
    report.tables.push(table);

    let rows = old
        .rows(
            "order",
            &[
                "id",
                "user_id",
                "product_id",
                "quantity",
                "price",
                "timestamp",
            ],
            "id",
        )
        .await?;
    let mut table = Table::new("order", rows.len());
    let mut earlier = HashSet::new();
    let mut price_ids: HashMap<String, Option<i64>> = HashMap::new();
    for row in &rows {
        let Some(old_id) = row.int(0) else { continue };
        let label = format!("order {old_id}");
        let old_user = row.int(1).unwrap_or(0);
        let Some(user) = ctx.id("user", old_user) else {
            table.note(
                Outcome::Skipped,
                label,
                format!("its user {old_user} does not exist or was skipped"),
            );
            continue;
        };
        let price = row.text(2).unwrap_or("");
        let amount = row.float(4).map(cents);
        if !earlier.insert((old_user, price.to_owned(), row.int(3), amount)) {
            table.note(Outcome::Changed, label.clone(), "same user, price, quantity and total as an earlier order (perhaps a reload of the old success page); kept, as Stripe alone can tell");
        }
        let price_id = match price_ids.get(price) {
            Some(id) => *id,
            None => {
                let id = store::price_id(&mut tx, price).await.map_err(failed)?;
                price_ids.insert(price.to_owned(), id);
                id
            }
        };
        let created = row.time(5, time::UtcOffset::UTC).unwrap_or(now);
        let fresh = !write
            || store::order(
                &mut tx,
                &OldOrder {
                    stripe_session_id: &format!("flask-order-{old_id}"),
                    user_id: user,
                    price_id,
                    amount_total: amount,
                    currency: currency_of.get(price).map(String::as_str),
                    stripe_customer_id: customer_of.get(&old_user).map(String::as_str),
                    created_at: created,
                },
            )
            .await
            .map_err(failed)?;
        if fresh {
            table.imported += 1;
        } else {
            table.already += 1;
        }
    }
    report.tables.push(table);
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn truncated_floats_give_stripe_integers_back() {
        assert_eq!(super::cents(19.98), 1998);
        assert_eq!(super::cents(24.99), 2499);
        assert_eq!(super::cents(0.29), 29);
        assert_eq!(super::cents(1.0), 100);
    }
}

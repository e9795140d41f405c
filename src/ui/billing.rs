//! The billing pages. Everyone signed in sees the plans (active prices of active
//! products), checks out at Stripe's page, lands back on a success or cancel page, and
//! sees and cancels their own subscriptions at period end. Holders of
//! `manage_billing` also manage products and prices, list every subscription with
//! filters, and read the webhook events with what was done with each.
//!
//! Every action calls the function the JSON route calls (`billing::products::create`,
//! `billing::prices::replace`, `billing::checkout::start`, ...) with the form's fields
//! read by `billing::input::read` into the JSON routes' own body types, so the limits,
//! the Stripe calls and the activity log entries are the API's. With billing off every
//! page says so.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use serde::Deserialize;

use super::me::when;
use super::page::{FormState, Shell};
use super::users::{caller, Confirmed};
use super::{Ctx, Form, PageError, PageResult};
use crate::accounts;
use crate::auth::policy::Policy::{self, LoggedIn, Permission as Needs};
use crate::auth::policy::Routes;
use crate::auth::CurrentUser;
use crate::billing::bodies::{
    CheckoutBody, CheckoutSessionQuery, CreatePriceBody, CreateProductBody, EditPriceBody,
    EditProductBody,
};
use crate::billing::checkout::{self, ReturnTo};
use crate::billing::input::{self, fields, StripeId};
use crate::billing::service::{self as billing_service, SubscriptionRow};
use crate::billing::store::{self, EventRow, Price, Product, Subscription};
use crate::billing::{amount, prices, products, service, subscriptions, Billing, Ref};
use crate::error::AppError;
use crate::http::query::{before_id, page_param};
use crate::rbac::Permission;

const MANAGE: Policy = Needs(Permission::ManageBilling);
const HOME: &str = "/ui/billing";
const PRODUCTS: &str = "/ui/billing/products";
const SUBSCRIPTIONS_PER_PAGE: i64 = 25;
const EVENTS_PER_PAGE: i64 = 50;
/// How many of your own subscriptions the plans page lists.
const OWN_MAX: i64 = 100;
/// Stripe's subscription states, the filter's choices.
const STATUSES: [&str; 8] = [
    "active",
    "trialing",
    "past_due",
    "unpaid",
    "incomplete",
    "incomplete_expired",
    "canceled",
    "paused",
];
const INTERVALS: [&str; 4] = ["day", "week", "month", "year"];

pub fn routes() -> Routes {
    Routes::pages()
        .get(HOME, LoggedIn, plans_page)
        .post("/ui/billing/checkout", LoggedIn, start_checkout)
        .get("/ui/billing/success", LoggedIn, success_page)
        .get("/ui/billing/cancel", LoggedIn, cancel_page)
        .get(
            "/ui/billing/subscriptions/{id}/cancel",
            LoggedIn,
            confirm_cancel,
        )
        .post(
            "/ui/billing/subscriptions/{id}/cancel",
            LoggedIn,
            cancel_subscription,
        )
        .get(PRODUCTS, MANAGE, products_page)
        .post(PRODUCTS, MANAGE, create_product)
        .get("/ui/billing/products/{id}", MANAGE, product_page)
        .post("/ui/billing/products/{id}", MANAGE, edit_product)
        .get(
            "/ui/billing/products/{id}/archive",
            MANAGE,
            confirm_archive_product,
        )
        .post("/ui/billing/products/{id}/archive", MANAGE, archive_product)
        .post("/ui/billing/products/{id}/prices", MANAGE, create_price)
        .get("/ui/billing/prices/{id}/amount", MANAGE, amount_page)
        .post("/ui/billing/prices/{id}/amount", MANAGE, change_amount)
        .get(
            "/ui/billing/prices/{id}/archive",
            MANAGE,
            confirm_archive_price,
        )
        .post("/ui/billing/prices/{id}/archive", MANAGE, archive_price)
        .get("/ui/billing/subscriptions", MANAGE, subscriptions_page)
        .get("/ui/billing/events", MANAGE, events_page)
}

/// The billing store's failures, as the JSON routes map them.
impl From<store::StoreError> for PageError {
    fn from(e: store::StoreError) -> Self {
        PageError::App(e.into())
    }
}

/// The tabs of the billing area; the management ones only for `manage_billing`.
pub struct Tab {
    label: &'static str,
    href: &'static str,
    current: bool,
}

fn tabs(ctx: &Ctx) -> Vec<Tab> {
    let manager = ctx
        .auth
        .as_ref()
        .is_some_and(|a| a.access.has(Permission::ManageBilling));
    if !manager {
        return Vec::new();
    }
    let path = ctx.uri.path();
    [
        ("Plans", HOME),
        ("Products", PRODUCTS),
        ("Subscriptions", "/ui/billing/subscriptions"),
        ("Webhook events", "/ui/billing/events"),
    ]
    .into_iter()
    .map(|(label, href)| Tab {
        label,
        href,
        current: path == href || (href == PRODUCTS && path.starts_with("/ui/billing/p")),
    })
    .collect()
}

#[derive(Template)]
#[template(path = "ui/billing_off.html")]
struct OffPage {
    shell: Shell,
}

/// Billing is off: an operator's choice, said on a page of the shell.
fn off(ctx: &Ctx) -> PageResult {
    let page = OffPage {
        shell: Shell::new(ctx, "Billing"),
    };
    Ok(ctx.render(StatusCode::SERVICE_UNAVAILABLE, page.render()?))
}

/// The billing capability, `None` when it is off.
fn configured(ctx: &Ctx) -> Option<Arc<Billing>> {
    ctx.state.billing.clone()
}

/// The signed-in caller as the billing services take them.
fn current(ctx: &Ctx) -> Result<CurrentUser, AppError> {
    ctx.auth
        .clone()
        .map(CurrentUser)
        .ok_or_else(AppError::login_required)
}

fn local_id(raw: &str, what: &str) -> Result<i64, AppError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| AppError::not_found(format!("No such {what}")))
}

async fn product(ctx: &Ctx, raw: &str) -> Result<Product, AppError> {
    store::find_product(&ctx.state.db, &Ref::Local(local_id(raw, "product")?))
        .await?
        .ok_or_else(|| AppError::not_found("No such product"))
}

async fn price(ctx: &Ctx, raw: &str) -> Result<Price, AppError> {
    store::find_price(&ctx.state.db, &Ref::Local(local_id(raw, "price")?))
        .await?
        .ok_or_else(|| AppError::not_found("No such price"))
}

/// The services name fields as the JSON contract does (`` `unit_amount` ``); a page
/// shows the sentence without the code marks.
fn plain_message(error: AppError) -> AppError {
    match error {
        AppError::Invalid(message) => AppError::Invalid(message.replace('`', "")),
        other => other,
    }
}

/// Answers an action with a page and a flash: the service's reason when it refused.
/// Failures of ours stay 500 pages.
fn outcome<T>(ctx: &Ctx, to: &str, result: Result<T, AppError>, done: &str) -> PageResult {
    match result {
        Ok(_) => Ok(ctx.redirect(to, Some((true, done)))),
        Err(e) => refusal(ctx, to, e),
    }
}

fn refusal(ctx: &Ctx, to: &str, error: AppError) -> PageResult {
    match error {
        e @ (AppError::Internal(_) | AppError::Unavailable(_)) => Err(e.into()),
        e => Ok(ctx.redirect(to, Some((false, &format!("Refused: {}", plain_message(e)))))),
    }
}

/// A price as the pages show it.
pub struct PriceLine {
    id: i64,
    stripe_id: String,
    product_id: i64,
    product: String,
    amount: String,
    /// "per month", or "once".
    cadence: String,
    nickname: String,
    active: bool,
    recurring: bool,
}

fn cadence(price: &Price) -> String {
    match &price.recurring_interval {
        Some(interval) => format!("per {interval}"),
        None => "once".to_owned(),
    }
}

fn price_line(price: &Price, product: &str) -> PriceLine {
    PriceLine {
        id: price.id,
        stripe_id: price.stripe_price_id.clone(),
        product_id: price.product_id,
        product: product.to_owned(),
        amount: amount::format(price.unit_amount, &price.currency),
        cadence: cadence(price),
        nickname: price.nickname.clone().unwrap_or_default(),
        active: price.active && price.product_active,
        recurring: price.recurring_interval.is_some(),
    }
}

/// A subscription as the pages show it.
pub struct SubscriptionLine {
    id: i64,
    stripe_id: String,
    user: String,
    plan: String,
    status: String,
    period_end: String,
    ends: bool,
    live: bool,
}

/// What a subscription's price is, in words: "Pro · $9.99 per month". Each price is
/// read once per page, however many subscriptions share it.
async fn plan_names(
    ctx: &Ctx,
    rows: &[(Subscription, Option<String>)],
) -> Result<HashMap<String, String>, AppError> {
    let mut names = HashMap::new();
    for id in rows.iter().filter_map(|(s, _)| s.stripe_price_id.as_ref()) {
        if names.contains_key(id) {
            continue;
        }
        let name = match store::find_price(&ctx.state.db, &Ref::Stripe(id.clone())).await? {
            Some(p) => {
                let product = store::find_product(&ctx.state.db, &Ref::Local(p.product_id))
                    .await?
                    .map(|product| product.name)
                    .unwrap_or_default();
                format!(
                    "{product} · {} {}",
                    amount::format(p.unit_amount, &p.currency),
                    cadence(&p)
                )
            }
            None => id.clone(),
        };
        names.insert(id.clone(), name);
    }
    Ok(names)
}

async fn subscription_lines(
    ctx: &Ctx,
    rows: Vec<(Subscription, Option<String>)>,
) -> Result<Vec<SubscriptionLine>, AppError> {
    let names = plan_names(ctx, &rows).await?;
    Ok(rows
        .into_iter()
        .map(|(s, user)| SubscriptionLine {
            id: s.id,
            live: s.is_live(),
            plan: s
                .stripe_price_id
                .as_ref()
                .and_then(|id| names.get(id).cloned())
                .unwrap_or_else(|| "not known yet".to_owned()),
            stripe_id: s.stripe_subscription_id,
            user: user.unwrap_or_default(),
            status: s.status,
            period_end: s.current_period_end.map(when).unwrap_or_default(),
            ends: s.cancel_at_period_end,
        })
        .collect())
}

/// A product with its plans, for the plans page.
pub struct Plan {
    name: String,
    description: String,
    prices: Vec<PriceLine>,
}

#[derive(Template)]
#[template(path = "ui/billing.html")]
struct PlansPage {
    shell: Shell,
    tabs: Vec<Tab>,
    plans: Vec<Plan>,
    mine: Vec<SubscriptionLine>,
}

async fn plans_page(ctx: Ctx) -> PageResult {
    if configured(&ctx).is_none() {
        return off(&ctx);
    }
    let me = caller(&ctx)?.user.id;
    let products = store::list_products(&ctx.state.db, true).await?;
    let prices = store::list_prices(&ctx.state.db, None, true).await?;
    let plans = products
        .iter()
        .map(|p| Plan {
            name: p.name.clone(),
            description: p.description.clone().unwrap_or_default(),
            prices: prices
                .iter()
                .filter(|price| price.product_id == p.id)
                .map(|price| price_line(price, &p.name))
                .collect(),
        })
        .filter(|plan| !plan.prices.is_empty())
        .collect();
    let own = store::list_subscriptions(&ctx.state.db, Some(me), OWN_MAX).await?;
    let mine = subscription_lines(&ctx, own.into_iter().map(|s| (s, None)).collect()).await?;
    let page = PlansPage {
        shell: Shell::new(&ctx, "Billing"),
        tabs: tabs(&ctx),
        plans,
        mine,
    };
    Ok(ctx.render(StatusCode::OK, page.render()?))
}

#[derive(Deserialize)]
struct CheckoutForm {
    price_id: String,
}

/// Opens a Stripe Checkout session through the JSON route's own function and sends
/// the browser to Stripe's page; Stripe sends it back to the landing pages here.
async fn start_checkout(ctx: Ctx, Form(form): Form<CheckoutForm>) -> PageResult {
    let Some(billing) = configured(&ctx) else {
        return off(&ctx);
    };
    let caller = current(&ctx)?;
    let public = &ctx.state.config.public_url;
    let return_to = ReturnTo {
        success_url: format!("{public}/ui/billing/success?session_id={{CHECKOUT_SESSION_ID}}"),
        cancel_url: format!("{public}/ui/billing/cancel"),
    };
    let started = async {
        let body = input::read::<CheckoutBody>(fields([("price_id", form.price_id.as_str())]))?;
        checkout::start(
            &billing,
            &ctx.state,
            &caller,
            &ctx.origin,
            None,
            &body,
            &return_to,
        )
        .await
    }
    .await;
    match started {
        Ok(started) => Ok(ctx.redirect(&started.checkout_url, None)),
        Err(e) => refusal(&ctx, HOME, e),
    }
}

#[derive(Template)]
#[template(path = "ui/billing_landing.html")]
struct LandingPage {
    shell: Shell,
    paid: bool,
    /// A recurring price was bought: the subscription follows from Stripe.
    subscription: bool,
    cancelled: bool,
}

#[derive(Deserialize)]
struct SessionQuery {
    session_id: Option<String>,
}

/// Where Stripe sends the browser after paying: the session is confirmed with Stripe
/// and recorded as `/checkout-success` records it. Only the buyer's own session, which
/// is checked before Stripe is asked anything.
async fn success_page(ctx: Ctx, Query(query): Query<SessionQuery>) -> PageResult {
    let Some(billing) = configured(&ctx) else {
        return off(&ctx);
    };
    let me = caller(&ctx)?.user.id;
    let query = input::read::<CheckoutSessionQuery>(fields([(
        "session_id",
        query.session_id.as_deref().unwrap_or(""),
    )]))
    .map_err(plain_message)?;
    let session_id = query
        .session_id
        .and_then(StripeId::get)
        .ok_or_else(|| AppError::invalid("No checkout session is named in the address"))?;
    let mut conn = ctx
        .state
        .db
        .pool()
        .acquire()
        .await
        .map_err(AppError::from)?;
    let theirs = store::find_checkout(&mut conn, &session_id)
        .await
        .map_err(AppError::from)?
        .filter(|c| c.user_id == me)
        .ok_or_else(|| AppError::not_found("Checkout session not found"))?;
    drop(conn);
    let (_, paid) = checkout::confirm(&billing, &ctx.state, &session_id).await?;
    let subscription = store::find_price(&ctx.state.db, &Ref::Local(theirs.price_id))
        .await?
        .is_some_and(|p| p.recurring_interval.is_some());
    let page = LandingPage {
        shell: Shell::new(
            &ctx,
            if paid {
                "Thank you"
            } else {
                "Payment not confirmed yet"
            },
        ),
        paid,
        subscription,
        cancelled: false,
    };
    Ok(ctx.render(StatusCode::OK, page.render()?))
}

/// Where Stripe sends the browser when the buyer gives up: nothing changes.
async fn cancel_page(ctx: Ctx) -> PageResult {
    if configured(&ctx).is_none() {
        return off(&ctx);
    }
    let page = LandingPage {
        shell: Shell::new(&ctx, "Checkout cancelled"),
        paid: false,
        subscription: false,
        cancelled: true,
    };
    Ok(ctx.render(StatusCode::OK, page.render()?))
}

#[derive(Template)]
#[template(path = "ui/billing_confirm.html")]
struct ConfirmPage {
    shell: Shell,
    explain: String,
    action: String,
    button: &'static str,
    back: String,
}

/// The caller's own subscription (or anyone's for `manage_billing`) by local id,
/// through the JSON routes' ownership rule.
async fn own_subscription(ctx: &Ctx, raw: &str) -> Result<Subscription, AppError> {
    let caller = current(ctx)?;
    let found =
        store::find_subscription(&ctx.state.db, &Ref::Local(local_id(raw, "subscription")?))
            .await?
            .ok_or_else(|| AppError::not_found("No such subscription"))?;
    service::own_subscription(&ctx.state, &caller, found.stripe_subscription_id).await
}

async fn confirm_cancel(ctx: Ctx, Path(id): Path<String>) -> PageResult {
    if configured(&ctx).is_none() {
        return off(&ctx);
    }
    let s = own_subscription(&ctx, &id).await?;
    let end = s
        .current_period_end
        .map_or_else(|| "the end of the paid period".to_owned(), when);
    let back = back_from_subscription(&ctx, &s);
    let action = format!("/ui/billing/subscriptions/{}/cancel", s.id);
    let plan = subscription_lines(&ctx, vec![(s, None)])
        .await?
        .pop()
        .map(|line| line.plan)
        .unwrap_or_default();
    let page = ConfirmPage {
        shell: Shell::new(&ctx, "Cancel this subscription?"),
        explain: format!(
            "The subscription to {plan} stays active until {end}, then ends; nothing \
             more is charged."
        ),
        action,
        button: "Cancel at period end",
        back,
    };
    Ok(ctx.render(StatusCode::OK, page.render()?))
}

/// Managers come from the list of everyone's, others from their plans page.
fn back_from_subscription(ctx: &Ctx, s: &Subscription) -> String {
    let own = ctx.auth.as_ref().map(|a| a.user.id) == s.user_id;
    if own {
        HOME.to_owned()
    } else {
        "/ui/billing/subscriptions".to_owned()
    }
}

async fn cancel_subscription(
    ctx: Ctx,
    Path(id): Path<String>,
    Form(_): Form<Confirmed>,
) -> PageResult {
    let Some(billing) = configured(&ctx) else {
        return off(&ctx);
    };
    let caller = current(&ctx)?;
    let before = own_subscription(&ctx, &id).await?;
    let back = back_from_subscription(&ctx, &before);
    let result = subscriptions::set_period_end_cancel(
        &billing,
        &ctx.state,
        &caller,
        &ctx.origin,
        before,
        true,
    )
    .await;
    outcome(
        &ctx,
        &back,
        result,
        "The subscription will end at the close of its paid period.",
    )
}

/// A product as the products page lists it.
pub struct ProductLine {
    product: Product,
    prices: usize,
}

#[derive(Template)]
#[template(path = "ui/billing_products.html")]
struct ProductsPage {
    shell: Shell,
    tabs: Vec<Tab>,
    products: Vec<ProductLine>,
    form: FormState,
}

async fn render_products(ctx: &Ctx, status: StatusCode, form: FormState) -> PageResult {
    let list = store::list_products(&ctx.state.db, false).await?;
    let prices = store::list_prices(&ctx.state.db, None, false).await?;
    let products = list
        .into_iter()
        .map(|product| ProductLine {
            prices: prices
                .iter()
                .filter(|p| p.product_id == product.id && p.active)
                .count(),
            product,
        })
        .collect();
    let page = ProductsPage {
        shell: Shell::new(ctx, "Products"),
        tabs: tabs(ctx),
        products,
        form,
    };
    Ok(ctx.render(status, page.render()?))
}

async fn products_page(ctx: Ctx) -> PageResult {
    if configured(&ctx).is_none() {
        return off(&ctx);
    }
    render_products(&ctx, StatusCode::OK, FormState::default()).await
}

#[derive(Deserialize)]
struct ProductForm {
    name: String,
    #[serde(default)]
    description: String,
}

const PRODUCT_FIELDS: [&str; 2] = ["name", "description"];

/// A refused form comes back with its values and the reason next to its field.
fn refused(
    form: FormState,
    error: AppError,
    fields: &[&'static str],
) -> Result<(StatusCode, FormState), PageError> {
    let error = plain_message(error);
    let status = error.status();
    Ok((status, form.refused(error, fields)?))
}

async fn create_product(ctx: Ctx, Form(form): Form<ProductForm>) -> PageResult {
    let Some(billing) = configured(&ctx) else {
        return off(&ctx);
    };
    let caller = current(&ctx)?;
    let created = async {
        let body = input::read::<CreateProductBody>(fields([
            ("name", form.name.as_str()),
            ("description", form.description.as_str()),
        ]))?;
        products::create(&billing, &ctx.state, &caller, &ctx.origin, None, &body).await
    }
    .await;
    match created {
        Ok(p) => Ok(ctx.redirect(
            &format!("/ui/billing/products/{}", p.id),
            Some((true, "The product is created; now give it a price.")),
        )),
        Err(e) => {
            let state = FormState::default()
                .with("name", &form.name)
                .with("description", &form.description);
            let (status, state) = refused(state, e, &PRODUCT_FIELDS)?;
            render_products(&ctx, status, state).await
        }
    }
}

#[derive(Template)]
#[template(path = "ui/billing_product.html")]
struct ProductPage {
    shell: Shell,
    tabs: Vec<Tab>,
    product: Product,
    prices: Vec<PriceLine>,
    edit: FormState,
    new_price: FormState,
    intervals: [&'static str; 4],
}

async fn render_product(
    ctx: &Ctx,
    product: Product,
    status: StatusCode,
    edit: Option<FormState>,
    new_price: Option<FormState>,
) -> PageResult {
    let prices = store::list_prices(&ctx.state.db, Some(product.id), false)
        .await?
        .iter()
        .map(|p| price_line(p, &product.name))
        .collect();
    let edit = edit.unwrap_or_else(|| {
        FormState::default()
            .with("name", &product.name)
            .with("description", product.description.as_deref().unwrap_or(""))
    });
    let new_price = new_price.unwrap_or_else(|| {
        FormState::default()
            .with("currency", "usd")
            .with("type", "recurring")
            .with("interval", "month")
    });
    let page = ProductPage {
        shell: Shell::new(ctx, format!("Product {}", product.name)),
        tabs: tabs(ctx),
        product,
        prices,
        edit,
        new_price,
        intervals: INTERVALS,
    };
    Ok(ctx.render(status, page.render()?))
}

async fn product_page(ctx: Ctx, Path(id): Path<String>) -> PageResult {
    if configured(&ctx).is_none() {
        return off(&ctx);
    }
    let product = product(&ctx, &id).await?;
    render_product(&ctx, product, StatusCode::OK, None, None).await
}

async fn edit_product(
    ctx: Ctx,
    Path(id): Path<String>,
    Form(form): Form<ProductForm>,
) -> PageResult {
    let Some(billing) = configured(&ctx) else {
        return off(&ctx);
    };
    let caller = current(&ctx)?;
    let before = product(&ctx, &id).await?;
    let edited = async {
        let body = input::read::<EditProductBody>(fields([
            ("product_id", before.stripe_product_id.as_str()),
            ("name", form.name.as_str()),
            ("description", form.description.as_str()),
        ]))?;
        products::edit(&billing, &ctx.state, &caller, &ctx.origin, &body).await
    }
    .await;
    match edited {
        Ok(p) => Ok(ctx.redirect(
            &format!("/ui/billing/products/{}", p.id),
            Some((true, "The product is saved.")),
        )),
        Err(e) => {
            let state = FormState::default()
                .with("name", &form.name)
                .with("description", &form.description);
            let (status, state) = refused(state, e, &PRODUCT_FIELDS)?;
            render_product(&ctx, before, status, Some(state), None).await
        }
    }
}

async fn confirm_archive_product(ctx: Ctx, Path(id): Path<String>) -> PageResult {
    if configured(&ctx).is_none() {
        return off(&ctx);
    }
    let product = product(&ctx, &id).await?;
    let page = ConfirmPage {
        shell: Shell::new(&ctx, "Archive this product?"),
        explain: format!(
            "{} leaves the plans page and can no longer be bought. Its subscriptions \
             go on as they are.",
            product.name
        ),
        action: format!("/ui/billing/products/{}/archive", product.id),
        button: "Archive the product",
        back: format!("/ui/billing/products/{}", product.id),
    };
    Ok(ctx.render(StatusCode::OK, page.render()?))
}

async fn archive_product(ctx: Ctx, Path(id): Path<String>, Form(_): Form<Confirmed>) -> PageResult {
    let Some(billing) = configured(&ctx) else {
        return off(&ctx);
    };
    let caller = current(&ctx)?;
    let product = product(&ctx, &id).await?;
    let result = products::archive(
        &billing,
        &ctx.state,
        &caller,
        &ctx.origin,
        product.stripe_product_id.clone(),
    )
    .await;
    outcome(&ctx, PRODUCTS, result, "The product is archived.")
}

#[derive(Deserialize)]
struct PriceForm {
    unit_amount: String,
    currency: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    interval: String,
    #[serde(default)]
    nickname: String,
}

const PRICE_FIELDS: [&str; 5] = ["unit_amount", "currency", "interval", "nickname", "type"];

async fn create_price(ctx: Ctx, Path(id): Path<String>, Form(form): Form<PriceForm>) -> PageResult {
    let Some(billing) = configured(&ctx) else {
        return off(&ctx);
    };
    let caller = current(&ctx)?;
    let product = product(&ctx, &id).await?;
    let interval = match form.kind.as_str() {
        "recurring" => form.interval.as_str(),
        "one_time" => "",
        _ => "bad",
    };
    let form_fields = [
        ("product_id", product.stripe_product_id.as_str()),
        ("unit_amount", form.unit_amount.as_str()),
        ("currency", form.currency.as_str()),
        ("nickname", form.nickname.as_str()),
        ("interval", interval),
    ];
    // Stripe's own word for a price without an interval is one-time; anything else is
    // the form tampered with.
    let result = if interval == "bad" {
        Err(AppError::invalid("type must be one-time or recurring"))
    } else if form.kind == "recurring" && interval.is_empty() {
        Err(AppError::invalid(
            "interval is required for a recurring price",
        ))
    } else {
        async {
            let body = input::read::<CreatePriceBody>(fields(form_fields))?;
            prices::create(&billing, &ctx.state, &caller, &ctx.origin, None, &body).await
        }
        .await
    };
    match result {
        Ok(p) => Ok(ctx.redirect(
            &format!("/ui/billing/products/{}", product.id),
            Some((
                true,
                &format!(
                    "The price {} {} is created.",
                    amount::format(p.unit_amount, &p.currency),
                    cadence(&p)
                ),
            )),
        )),
        Err(e) => {
            let state = FormState::default()
                .with("unit_amount", &form.unit_amount)
                .with("currency", &form.currency)
                .with("type", &form.kind)
                .with("interval", &form.interval)
                .with("nickname", &form.nickname);
            let (status, state) = refused(state, e, &PRICE_FIELDS)?;
            render_product(&ctx, product, status, None, Some(state)).await
        }
    }
}

#[derive(Template)]
#[template(path = "ui/billing_amount.html")]
struct AmountPage {
    shell: Shell,
    tabs: Vec<Tab>,
    price: PriceLine,
    hint: String,
    form: FormState,
}

async fn render_amount(ctx: &Ctx, price: Price, status: StatusCode, form: FormState) -> PageResult {
    let product = store::find_product(&ctx.state.db, &Ref::Local(price.product_id))
        .await?
        .map(|p| p.name)
        .unwrap_or_default();
    let page = AmountPage {
        shell: Shell::new(ctx, "Change the amount"),
        tabs: tabs(ctx),
        hint: format!(
            "In {}, such as {}.",
            price.currency.to_ascii_uppercase(),
            amount::plain(
                1250 * 10_i64.pow(amount::exponent(&price.currency)) / 100,
                &price.currency
            )
        ),
        price: price_line(&price, &product),
        form,
    };
    Ok(ctx.render(status, page.render()?))
}

async fn amount_page(ctx: Ctx, Path(id): Path<String>) -> PageResult {
    if configured(&ctx).is_none() {
        return off(&ctx);
    }
    let price = price(&ctx, &id).await?;
    let form = FormState::default().with(
        "unit_amount",
        &amount::plain(price.unit_amount, &price.currency),
    );
    render_amount(&ctx, price, StatusCode::OK, form).await
}

#[derive(Deserialize)]
struct AmountForm {
    unit_amount: String,
}

/// Stripe prices cannot change their amount: `billing::prices::replace` creates a new
/// price with the new amount (and everything else of the old one) and archives the
/// old one, as `/edit-price` does.
async fn change_amount(
    ctx: Ctx,
    Path(id): Path<String>,
    Form(form): Form<AmountForm>,
) -> PageResult {
    let Some(billing) = configured(&ctx) else {
        return off(&ctx);
    };
    let caller = current(&ctx)?;
    let before = price(&ctx, &id).await?;
    let mut body = fields([
        ("price_id", before.stripe_price_id.as_str()),
        ("unit_amount", form.unit_amount.as_str()),
        ("currency", before.currency.as_str()),
        ("nickname", before.nickname.as_deref().unwrap_or("")),
        (
            "type",
            if before.recurring_interval.is_some() {
                "recurring"
            } else {
                "one_time"
            },
        ),
        (
            "interval",
            before.recurring_interval.as_deref().unwrap_or(""),
        ),
    ]);
    // What the old price carried moves to the new one, as the old client's edit
    // form sends back everything it was shown.
    if let Some(key) = before.object.get("lookup_key").filter(|k| k.is_string()) {
        body.insert("lookup_key".to_owned(), key.clone());
    }
    if let Some(metadata) = before.object.get("metadata").filter(|m| m.is_object()) {
        body.insert("price_metadata".to_owned(), metadata.clone());
    }
    let replaced = async {
        let body = input::read::<EditPriceBody>(body)?;
        prices::replace(&billing, &ctx.state, &caller, &ctx.origin, &body).await
    }
    .await;
    match replaced {
        Ok(p) => Ok(ctx.redirect(
            &format!("/ui/billing/products/{}", p.product_id),
            Some((
                true,
                &format!(
                    "The amount is now {}: a new price replaces the old one, which is archived.",
                    amount::format(p.unit_amount, &p.currency)
                ),
            )),
        )),
        Err(e) => {
            let state = FormState::default().with("unit_amount", &form.unit_amount);
            let (status, state) = refused(state, e, &["unit_amount"])?;
            render_amount(&ctx, before, status, state).await
        }
    }
}

async fn confirm_archive_price(ctx: Ctx, Path(id): Path<String>) -> PageResult {
    if configured(&ctx).is_none() {
        return off(&ctx);
    }
    let price = price(&ctx, &id).await?;
    let page = ConfirmPage {
        shell: Shell::new(&ctx, "Archive this price?"),
        explain: format!(
            "{} {} can no longer be bought. Subscriptions to it go on as they are.",
            amount::format(price.unit_amount, &price.currency),
            cadence(&price)
        ),
        action: format!("/ui/billing/prices/{}/archive", price.id),
        button: "Archive the price",
        back: format!("/ui/billing/products/{}", price.product_id),
    };
    Ok(ctx.render(StatusCode::OK, page.render()?))
}

async fn archive_price(ctx: Ctx, Path(id): Path<String>, Form(_): Form<Confirmed>) -> PageResult {
    let Some(billing) = configured(&ctx) else {
        return off(&ctx);
    };
    let caller = current(&ctx)?;
    let price = price(&ctx, &id).await?;
    let result = prices::archive(
        &billing,
        &ctx.state,
        &caller,
        &ctx.origin,
        price.stripe_price_id.clone(),
    )
    .await;
    outcome(
        &ctx,
        &format!("/ui/billing/products/{}", price.product_id),
        result,
        "The price is archived.",
    )
}

#[derive(Deserialize)]
struct SubscriptionsQuery {
    status: Option<String>,
    user: Option<String>,
    page: Option<String>,
}

#[derive(Template)]
#[template(path = "ui/billing_subscriptions.html")]
struct SubscriptionsPage {
    shell: Shell,
    tabs: Vec<Tab>,
    statuses: [&'static str; 8],
    status: String,
    user_filter: String,
    /// The user filter named nobody.
    nobody: bool,
    rows: Vec<SubscriptionLine>,
    total: i64,
    page: i64,
    pages: i64,
    prev: Option<String>,
    next: Option<String>,
}

fn subscriptions_url(status: &str, user: &str, page: i64) -> String {
    let query = serde_urlencoded::to_string([
        ("status", status),
        ("user", user),
        ("page", &page.to_string()),
    ])
    .unwrap_or_default();
    format!("/ui/billing/subscriptions?{query}")
}

/// The user a filter names: by id (digits) or email.
async fn named_user(ctx: &Ctx, text: &str) -> Result<Option<i64>, AppError> {
    let found = match text.parse::<i64>() {
        Ok(id) => {
            let mut conn = ctx.state.db.pool().acquire().await?;
            accounts::store::find_by_id(&mut *conn, id).await?
        }
        Err(_) => accounts::store::find_by_email(&ctx.state.db, text).await?,
    };
    Ok(found.map(|u| u.id))
}

async fn subscriptions_page(ctx: Ctx, Query(query): Query<SubscriptionsQuery>) -> PageResult {
    if configured(&ctx).is_none() {
        return off(&ctx);
    }
    let page = page_param("page", query.page.as_deref(), 1, 1_000_000)?;
    let status = query.status.as_deref().map(str::trim).unwrap_or_default();
    if !status.is_empty() && !STATUSES.contains(&status) {
        return Err(
            AppError::invalid(format!("status must be one of {}", STATUSES.join(", "))).into(),
        );
    }
    let user = query.user.as_deref().map(str::trim).unwrap_or_default();
    if user.chars().count() > 254 || user.chars().any(char::is_control) {
        return Err(AppError::invalid("The user must be an email address or an id").into());
    }
    let user_id = if user.is_empty() {
        None
    } else {
        named_user(&ctx, user).await?
    };
    let nobody = !user.is_empty() && user_id.is_none();
    let (rows, total) = if nobody {
        (Vec::new(), 0)
    } else {
        billing_service::subscriptions_page(
            &ctx.state,
            Some(status).filter(|s| !s.is_empty()),
            user_id,
            (page - 1) * SUBSCRIPTIONS_PER_PAGE,
            SUBSCRIPTIONS_PER_PAGE,
        )
        .await?
    };
    let rows = subscription_lines(
        &ctx,
        rows.into_iter()
            .map(
                |SubscriptionRow {
                     subscription,
                     user_email,
                 }| (subscription, user_email),
            )
            .collect(),
    )
    .await?;
    let pages = ((total + SUBSCRIPTIONS_PER_PAGE - 1) / SUBSCRIPTIONS_PER_PAGE).max(1);
    let list = SubscriptionsPage {
        shell: Shell::new(&ctx, "Subscriptions"),
        tabs: tabs(&ctx),
        statuses: STATUSES,
        status: status.to_owned(),
        user_filter: user.to_owned(),
        nobody,
        rows,
        total,
        page,
        pages,
        prev: (page > 1).then(|| subscriptions_url(status, user, page - 1)),
        next: (page < pages).then(|| subscriptions_url(status, user, page + 1)),
    };
    Ok(ctx.render(StatusCode::OK, list.render()?))
}

#[derive(Deserialize)]
struct EventsQuery {
    before_id: Option<String>,
}

pub struct EventLine {
    event: EventRow,
    created: String,
    received: String,
}

#[derive(Template)]
#[template(path = "ui/billing_events.html")]
struct EventsPage {
    shell: Shell,
    tabs: Vec<Tab>,
    rows: Vec<EventLine>,
    older: Option<String>,
    first_page: bool,
}

async fn events_page(ctx: Ctx, Query(query): Query<EventsQuery>) -> PageResult {
    if configured(&ctx).is_none() {
        return off(&ctx);
    }
    let before = before_id(query.before_id.as_deref())?;
    let events =
        store::list_events(&ctx.state.db, before.unwrap_or(i64::MAX), EVENTS_PER_PAGE).await?;
    let older = (events.len() as i64 == EVENTS_PER_PAGE)
        .then(|| {
            events
                .last()
                .map(|e| format!("/ui/billing/events?before_id={}", e.id))
        })
        .flatten();
    let rows = events
        .into_iter()
        .map(|event| EventLine {
            created: when(event.stripe_created),
            received: when(event.received_at),
            event,
        })
        .collect();
    let page = EventsPage {
        shell: Shell::new(&ctx, "Webhook events"),
        tabs: tabs(&ctx),
        rows,
        older,
        first_page: before.is_none(),
    };
    Ok(ctx.render(StatusCode::OK, page.render()?))
}

//! The billing route table, at the old service's paths: who may call what.
//!
//! `manage_billing` manages products, prices and anybody's subscriptions; any
//! logged-in user lists active products and prices, checks out for themself, and
//! sees and cancels their own subscriptions (the ownership check is the handler's
//! first step). Reads are `POST`s with an empty JSON body, as the old client sends
//! them; `GET` answers the same. Every route is declared as needing billing, so with
//! billing off a caller its policy admits is answered 503 `billing_not_configured`
//! before the handler runs.

use super::{checkout, prices, products, subscriptions, webhook};
use crate::auth::policy::Policy::{self, LoggedIn, Public};
use crate::auth::policy::{Access, Routes};
use crate::rbac::Permission;

const MANAGE: Access = Policy::Permission(Permission::ManageBilling).needs_billing();
const USER: Access = LoggedIn.needs_billing();
const ANYONE: Access = Public.needs_billing();

pub fn routes() -> Routes {
    Routes::new()
        .post("/create-product", MANAGE, products::create_product)
        .post("/edit-product", MANAGE, products::edit_product)
        .delete("/delete-product", MANAGE, products::delete_product)
        .post("/products", USER, products::products)
        .get("/products", USER, products::products)
        .post("/product", USER, products::product)
        .get("/product", USER, products::product)
        .post("/create-price", MANAGE, prices::create_price)
        .post("/edit-price", MANAGE, prices::edit_price)
        .post("/delete-price", MANAGE, prices::delete_price)
        .post("/prices", USER, prices::prices)
        .get("/prices", USER, prices::prices)
        .post("/price", USER, prices::price)
        .get("/price", USER, prices::price)
        .post("/prices-for-product", USER, prices::prices_for_product)
        .get("/prices-for-product", USER, prices::prices_for_product)
        .post(
            "/create-subscription",
            MANAGE,
            subscriptions::create_subscription,
        )
        .post(
            "/update-subscription",
            MANAGE,
            subscriptions::update_subscription,
        )
        .post(
            "/cancel-subscription",
            USER,
            subscriptions::cancel_subscription,
        )
        .post(
            "/deactivate-subscription",
            USER,
            subscriptions::deactivate_subscription,
        )
        .post(
            "/reactivate-subscription",
            MANAGE,
            subscriptions::reactivate_subscription,
        )
        .post(
            "/delete-subscription",
            MANAGE,
            subscriptions::delete_subscription,
        )
        .post("/subscriptions", USER, subscriptions::subscriptions)
        .get("/subscriptions", USER, subscriptions::subscriptions)
        .post("/subscription", USER, subscriptions::subscription)
        .post(
            "/user-subscriptions",
            USER,
            subscriptions::user_subscriptions,
        )
        .post(
            "/user-email-subscriptions",
            USER,
            subscriptions::user_subscriptions,
        )
        .post(
            "/create-checkout-session",
            USER,
            checkout::create_checkout_session,
        )
        .get("/checkout-success", ANYONE, checkout::checkout_success)
        .get("/checkout-cancel", ANYONE, checkout::checkout_cancel)
        .post(
            "/stripe/webhook",
            Public.without_csrf().needs_billing(),
            webhook::receive,
        )
}

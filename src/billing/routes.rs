//! The billing route table, at the old service's paths: who may call what.
//!
//! `manage_billing` manages products, prices and anybody's subscriptions; any
//! logged-in user lists active products and prices, checks out for themself, and
//! sees and cancels their own subscriptions (the ownership check is the handler's
//! first step). Reads are `POST`s with an empty JSON body, as the old client sends
//! them; `GET` answers the same. Every handler takes [`super::Stripe`] first, so that
//! with billing off a caller the route admits is answered 503 before anything else.

use super::{checkout, prices, products, subscriptions, webhook};
use crate::auth::policy::Policy::{self, LoggedIn, Public};
use crate::auth::policy::Routes;
use crate::rbac::Permission;

const MANAGE: Policy = Policy::Permission(Permission::ManageBilling);

pub fn routes() -> Routes {
    Routes::new()
        .post("/create-product", MANAGE, products::create_product)
        .post("/edit-product", MANAGE, products::edit_product)
        .delete("/delete-product", MANAGE, products::delete_product)
        .post("/products", LoggedIn, products::products)
        .get("/products", LoggedIn, products::products)
        .post("/product", LoggedIn, products::product)
        .get("/product", LoggedIn, products::product)
        .post("/create-price", MANAGE, prices::create_price)
        .post("/edit-price", MANAGE, prices::edit_price)
        .post("/delete-price", MANAGE, prices::delete_price)
        .post("/prices", LoggedIn, prices::prices)
        .get("/prices", LoggedIn, prices::prices)
        .post("/price", LoggedIn, prices::price)
        .get("/price", LoggedIn, prices::price)
        .post("/prices-for-product", LoggedIn, prices::prices_for_product)
        .get("/prices-for-product", LoggedIn, prices::prices_for_product)
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
            LoggedIn,
            subscriptions::cancel_subscription,
        )
        .post(
            "/deactivate-subscription",
            LoggedIn,
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
        .post("/subscriptions", LoggedIn, subscriptions::subscriptions)
        .get("/subscriptions", LoggedIn, subscriptions::subscriptions)
        .post("/subscription", LoggedIn, subscriptions::subscription)
        .post(
            "/user-subscriptions",
            LoggedIn,
            subscriptions::user_subscriptions,
        )
        .post(
            "/user-email-subscriptions",
            LoggedIn,
            subscriptions::user_subscriptions,
        )
        .post(
            "/create-checkout-session",
            LoggedIn,
            checkout::create_checkout_session,
        )
        .get("/checkout-success", Public, checkout::checkout_success)
        .get("/checkout-cancel", Public, checkout::checkout_cancel)
        .post("/stripe/webhook", Public, webhook::receive)
}

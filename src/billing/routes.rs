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
use utoipa_axum::routes;

const MANAGE: Access = Policy::Permission(Permission::ManageBilling).needs_billing();
const USER: Access = LoggedIn.needs_billing();
const ANYONE: Access = Public.needs_billing();

pub fn routes() -> Routes {
    Routes::new()
        .api(MANAGE, routes!(products::create_product))
        .api(MANAGE, routes!(products::edit_product))
        .api(MANAGE, routes!(products::delete_product))
        .api(USER, routes!(products::products))
        .api(USER, routes!(products::products_by_get))
        .api(USER, routes!(products::product))
        .api(USER, routes!(products::product_by_query))
        .api(MANAGE, routes!(prices::create_price))
        .api(MANAGE, routes!(prices::edit_price))
        .api(MANAGE, routes!(prices::delete_price))
        .api(USER, routes!(prices::prices))
        .api(USER, routes!(prices::prices_by_get))
        .api(USER, routes!(prices::price))
        .api(USER, routes!(prices::price_by_query))
        .api(USER, routes!(prices::prices_for_product))
        .api(USER, routes!(prices::prices_for_product_by_query))
        .api(MANAGE, routes!(subscriptions::create_subscription))
        .api(MANAGE, routes!(subscriptions::update_subscription))
        .api(USER, routes!(subscriptions::cancel_subscription))
        .api(USER, routes!(subscriptions::deactivate_subscription))
        .api(MANAGE, routes!(subscriptions::reactivate_subscription))
        .api(MANAGE, routes!(subscriptions::delete_subscription))
        .api(USER, routes!(subscriptions::subscriptions))
        .api(USER, routes!(subscriptions::subscriptions_by_get))
        .api(USER, routes!(subscriptions::subscription))
        .api(USER, routes!(subscriptions::user_subscriptions))
        .api(USER, routes!(subscriptions::user_email_subscriptions))
        .api(USER, routes!(checkout::create_checkout_session))
        .api(ANYONE, routes!(checkout::checkout_success))
        .api(ANYONE, routes!(checkout::checkout_cancel))
        .api(
            Public.without_csrf().needs_billing(),
            routes!(webhook::receive),
        )
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    /// The component a schema names, or the schema itself.
    fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
        match schema["$ref"].as_str() {
            Some(r) => &doc["components"]["schemas"][r.trim_start_matches("#/components/schemas/")],
            None => schema,
        }
    }

    /// A body type has an example, in the media or in its schema (or in an array's
    /// item schema).
    fn has_example(doc: &Value, media: &Value) -> bool {
        if !media["example"].is_null() {
            return true;
        }
        let schema = match media["schema"]["oneOf"][0].as_object() {
            // An optional body: the type or null.
            Some(_) => resolve(doc, &media["schema"]["oneOf"][0]),
            None => resolve(doc, &media["schema"]),
        };
        let schema = match schema["type"].as_str() {
            Some("array") => resolve(doc, &schema["items"]),
            _ => schema,
        };
        !schema["example"].is_null() || !schema["examples"].is_null()
    }

    #[test]
    fn every_billing_operation_is_described_with_examples() {
        let routes = super::routes();
        let doc = serde_json::to_value(crate::openapi::document(&routes)).unwrap();
        assert!(!routes.specs().is_empty());
        for spec in routes.specs() {
            let method = spec.method.as_str().to_ascii_lowercase();
            let op = &doc["paths"][&spec.path][&method];
            let at = format!("{method} {}", spec.path);
            assert_eq!(op["tags"][0], "billing", "{at}");
            assert!(op["summary"].is_string(), "{at} has no summary");
            if let Some(content) = op["requestBody"]["content"].as_object() {
                for media in content.values() {
                    assert!(
                        has_example(&doc, media),
                        "{at}: request body without example"
                    );
                }
            }
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|s| s.starts_with('2')),
                "{at} has no success"
            );
            for (status, response) in responses {
                for media in response["content"].as_object().into_iter().flatten() {
                    assert!(
                        has_example(&doc, media.1),
                        "{at} {status}: answer without example"
                    );
                }
            }
        }
    }
}

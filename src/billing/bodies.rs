//! The request bodies of the billing routes, as `/openapi.json` describes them.
//!
//! The handlers read their bodies as these types through
//! [`input::Params`](super::input::Params), which is as lenient as the old client
//! needs (see its documentation); the lenient field types there describe themselves
//! with the schemas built here, so a body valid by the schema is accepted or refused
//! with a 400 naming the field, and a body the server accepts is valid by the schema.
//! Every field may also be `null`, which reads as absent; unknown keys are ignored (the
//! old edit forms send back the whole object they were shown). The unit tests check
//! each example reads as its type.

use serde::Deserialize;
use utoipa::openapi::schema::{
    ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::{KnownFormat, RefOr};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use super::input::{self, Dollars, Flag, Ignored, IntOrDigits, Metadata, StripeId};

fn null() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::Null)
}

fn one_of(description: &str, items: Vec<RefOr<Schema>>) -> Schema {
    items
        .into_iter()
        .fold(OneOfBuilder::new(), OneOfBuilder::item)
        .description(Some(description))
        .build()
        .into()
}

/// A boolean, or the old forms' `"true"`, `"false"` (any case) or `""` (no value).
pub fn flag() -> Schema {
    one_of(
        "A boolean, or the old forms' text: `\"true\"` or `\"false\"` (any case), `\"\"` for no value",
        vec![
            ObjectBuilder::new().schema_type(Type::Boolean).into(),
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(r"^\s*([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])?\s*$"))
                .into(),
            null().into(),
        ],
    )
}

/// An integer as a number or a string of digits; `""` is no value.
pub fn int_or_digits() -> Schema {
    one_of(
        "An integer, as a JSON number or a string of digits (`\"7\"`); `\"\"` is no value",
        vec![
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .into(),
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(r"^\s*(-?[0-9]{1,19})?\s*$"))
                .into(),
            null().into(),
        ],
    )
}

/// Dollars (major units) as a number or a decimal string, at most two decimals.
pub fn dollars() -> Schema {
    one_of(
        "Major units (dollars), as a JSON number or a decimal string (`19.99` or `\"19.99\"`): \
         at least 0, at most 999999.99, at most two decimals",
        vec![
            ObjectBuilder::new()
                .schema_type(Type::Number)
                .minimum(Some(0))
                .maximum(Some(999_999.99))
                .into(),
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(r"^[0-9]{1,9}(\.[0-9]{1,2})?$"))
                .into(),
        ],
    )
}

/// Stripe metadata.
pub fn metadata() -> Schema {
    one_of(
        "Stripe metadata: at most 50 keys of letters, digits, `-` and `_` (at most 40 \
         characters), each a text of at most 500 characters or a number (sent as text)",
        vec![
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .max_properties(Some(50))
                .additional_properties(Some::<Schema>(
                    OneOfBuilder::new()
                        .item(
                            ObjectBuilder::new()
                                .schema_type(Type::String)
                                .max_length(Some(500)),
                        )
                        .item(ObjectBuilder::new().schema_type(Type::Number))
                        .build()
                        .into(),
                ))
                .into(),
            null().into(),
        ],
    )
}

fn stripe_id_schema(required: bool) -> Schema {
    let id = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(if required {
            r"^\s*[A-Za-z0-9_]{1,255}\s*$"
        } else {
            r"^\s*[A-Za-z0-9_]{0,255}\s*$"
        }));
    if required {
        id.description(Some(
            "A Stripe id (`prod_…`, `price_…`, `sub_…`): letters, digits and `_`",
        ))
        .into()
    } else {
        one_of(
            "A Stripe id of letters, digits and `_`; `\"\"` is no value",
            vec![id.into(), null().into()],
        )
    }
}

/// A required Stripe id (`prod_…`, `price_…`, `sub_…`).
pub fn stripe_id() -> Schema {
    stripe_id_schema(true)
}

/// An optional Stripe id.
pub fn optional_stripe_id() -> Schema {
    stripe_id_schema(false)
}

/// Accepted and ignored.
pub fn ignored() -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::AnyValue)
        .description(Some("Accepted and ignored"))
        .into()
}

/// The body of a list: the old client sends none (an empty body with a JSON content
/// type); any JSON object is accepted and ignored.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({}))]
pub struct Unread {}

/// `recurring`, of which only `interval` is read.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({ "interval": "month" }))]
pub struct Recurring {
    /// `day`, `week`, `month` or `year` (any case); at most 50 characters.
    #[schema(max_length = 50)]
    pub interval: Option<String>,
}

/// A new product (`/create-product`). `attributes` and `caption` are accepted and
/// dropped: Stripe's API no longer has them.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({
    "name": "Pro plan", "description": "Everything, monthly", "active": true,
    "metadata": {}, "shippable": "false", "statement_descriptor": "None", "unit_label": "None",
    "url": "None"
}))]
pub struct CreateProductBody {
    /// One line of 1 to 250 characters.
    #[schema(min_length = 1, max_length = 250)]
    pub name: String,
    /// At most 2000 characters.
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    /// Default true.
    #[schema(schema_with = Flag::schema)]
    pub active: Option<Flag>,
    #[schema(schema_with = Flag::schema)]
    pub shippable: Option<Flag>,
    /// One line of at most 22 characters; `""` or the old forms' `"None"` is none.
    #[schema(max_length = 22)]
    pub statement_descriptor: Option<String>,
    /// One line of at most 12 characters; `""` or `"None"` is none.
    #[schema(max_length = 12)]
    pub unit_label: Option<String>,
    /// An http(s) URL of at most 2048 characters; `""` or `"None"` is none.
    #[schema(max_length = 2048)]
    pub url: Option<String>,
    /// Stripe metadata.
    #[schema(schema_with = Metadata::schema)]
    pub metadata: Option<Metadata>,
    /// At most 8 http(s) URLs.
    #[schema(max_items = 8)]
    pub images: Option<Vec<String>>,
    #[schema(schema_with = Ignored::schema)]
    pub attributes: Option<Ignored>,
    #[schema(schema_with = Ignored::schema)]
    pub caption: Option<Ignored>,
}

/// A product's edit (`/edit-product`): the old client sends back the whole product
/// it was shown, with its edits; keys not listed here are ignored.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({
    "product_id": "prod_Q1w2e3r4", "name": "Pro plan", "description": "Everything, monthly",
    "active": "true", "product_metadata": {}, "shippable": null, "unit_label": "None"
}))]
pub struct EditProductBody {
    /// The product's Stripe id.
    #[schema(schema_with = StripeId::schema)]
    pub product_id: StripeId,
    /// One line of 1 to 250 characters.
    #[schema(min_length = 1, max_length = 250)]
    pub name: String,
    /// At most 2000 characters; `""` clears it.
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    #[schema(schema_with = Flag::schema)]
    pub active: Option<Flag>,
    #[schema(schema_with = Flag::schema)]
    pub shippable: Option<Flag>,
    /// One line of at most 22 characters; `""` or `"None"` is none.
    #[schema(max_length = 22)]
    pub statement_descriptor: Option<String>,
    /// One line of at most 12 characters; `""` or `"None"` is none.
    #[schema(max_length = 12)]
    pub unit_label: Option<String>,
    /// An http(s) URL of at most 2048 characters; `""` or `"None"` is none.
    #[schema(max_length = 2048)]
    pub url: Option<String>,
    /// Stripe metadata (this route's key; `/create-product` reads `metadata`).
    #[schema(schema_with = Metadata::schema)]
    pub product_metadata: Option<Metadata>,
    /// At most 8 http(s) URLs.
    #[schema(max_items = 8)]
    pub images: Option<Vec<String>>,
}

/// The product named by its Stripe id.
#[derive(Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
#[schema(example = json!({ "product_id": "prod_Q1w2e3r4" }))]
pub struct ProductRef {
    /// The product's Stripe id (`prod_…`).
    #[schema(schema_with = StripeId::schema)]
    #[param(value_type = String, pattern = r"^\s*[A-Za-z0-9_]{1,255}\s*$")]
    pub product_id: StripeId,
}

/// The price named by its Stripe id.
#[derive(Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
#[schema(example = json!({ "price_id": "price_1PqRsT" }))]
pub struct PriceRef {
    /// The price's Stripe id (`price_…`).
    #[schema(schema_with = StripeId::schema)]
    #[param(value_type = String, pattern = r"^\s*[A-Za-z0-9_]{1,255}\s*$")]
    pub price_id: StripeId,
}

/// The subscription named by its Stripe id.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({ "subscription_id": "sub_1AbCdE" }))]
pub struct SubscriptionRef {
    /// The subscription's Stripe id (`sub_…`).
    #[schema(schema_with = StripeId::schema)]
    pub subscription_id: StripeId,
}

/// A new price of a product (`/create-price`). It is recurring when `interval` (or
/// `recurring.interval`) is given, else one-time.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({
    "product_id": "prod_Q1w2e3r4", "unit_amount": "19.99", "currency": "usd", "active": true,
    "billing_scheme": "per_unit", "recurring": { "interval": "month" }
}))]
pub struct CreatePriceBody {
    /// The product's Stripe id.
    #[schema(schema_with = StripeId::schema)]
    pub product_id: StripeId,
    #[schema(schema_with = Dollars::schema)]
    pub unit_amount: Dollars,
    /// A three-letter ISO code with cents (`usd`, `eur`; not `jpy` or `kwd`).
    #[schema(min_length = 3, max_length = 3)]
    pub currency: String,
    /// `day`, `week`, `month` or `year` (any case), at most 10 characters; `""` is none.
    #[schema(max_length = 10)]
    pub interval: Option<String>,
    /// Read when `interval` is absent.
    pub recurring: Option<Recurring>,
    /// Only `per_unit` is offered; `""` or `"None"` is none.
    #[schema(max_length = 20)]
    pub billing_scheme: Option<String>,
    /// One line of at most 250 characters.
    #[schema(max_length = 250)]
    pub nickname: Option<String>,
    /// Default true.
    #[schema(schema_with = Flag::schema)]
    pub active: Option<Flag>,
    /// One line of at most 200 characters; moved here from any price holding it.
    #[schema(max_length = 200)]
    pub lookup_key: Option<String>,
    /// Stripe metadata.
    #[schema(schema_with = Metadata::schema)]
    pub price_metadata: Option<Metadata>,
}

/// A price's replacement (`/edit-price`): Stripe prices cannot change their amount,
/// so a new Stripe price takes the local row's place. The old client sends the whole
/// price it was shown; `product_id` and keys not listed here are ignored.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({
    "price_id": "price_1PqRsT", "unit_amount": 24.99, "currency": "usd", "type": "recurring",
    "interval": "month", "active": true
}))]
pub struct EditPriceBody {
    /// The price's Stripe id.
    #[schema(schema_with = StripeId::schema)]
    pub price_id: StripeId,
    #[schema(schema_with = Dollars::schema)]
    pub unit_amount: Dollars,
    /// A three-letter ISO code with cents.
    #[schema(min_length = 3, max_length = 3)]
    pub currency: String,
    /// `recurring` makes a recurring price (then `interval` or `recurring.interval` is
    /// required); anything else a one-time one. At most 20 characters.
    #[serde(rename = "type")]
    #[schema(max_length = 20)]
    pub kind: Option<String>,
    /// `day`, `week`, `month` or `year` (any case), at most 10 characters.
    #[schema(max_length = 10)]
    pub interval: Option<String>,
    pub recurring: Option<Recurring>,
    /// Only `per_unit`; `""` or `"None"` is none.
    #[schema(max_length = 20)]
    pub billing_scheme: Option<String>,
    #[schema(max_length = 250)]
    pub nickname: Option<String>,
    /// Default true.
    #[schema(schema_with = Flag::schema)]
    pub active: Option<Flag>,
    #[schema(max_length = 200)]
    pub lookup_key: Option<String>,
    #[schema(schema_with = Metadata::schema)]
    pub price_metadata: Option<Metadata>,
}

/// Whose subscriptions: `user_id`, or else `email`; the caller's own when neither
/// (or `0`, or `""`). Naming someone else needs `manage_billing`.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({ "user_id": "7" }))]
pub struct UserRef {
    /// A local user id.
    #[schema(schema_with = IntOrDigits::schema)]
    pub user_id: Option<IntOrDigits>,
    /// Read when `user_id` is absent; at most 254 characters.
    #[schema(max_length = 254)]
    pub email: Option<String>,
}

/// A subscription for a user to a recurring price (`/create-subscription`).
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({ "price_id": "price_1PqRsT", "user_id": "7", "trial_period_days": 14 }))]
pub struct CreateSubscriptionBody {
    /// A recurring, active price's Stripe id.
    #[schema(schema_with = StripeId::schema)]
    pub price_id: StripeId,
    /// 0 to 730 days; 0 or absent is no trial.
    #[schema(schema_with = IntOrDigits::schema)]
    pub trial_period_days: Option<IntOrDigits>,
    /// The subscriber (a local user id); the caller when absent.
    #[schema(schema_with = IntOrDigits::schema)]
    pub user_id: Option<IntOrDigits>,
    /// The subscriber by email, read when `user_id` is absent; at most 254 characters.
    #[schema(max_length = 254)]
    pub email: Option<String>,
}

/// A subscription moved to another price (`/update-subscription`). The old client's
/// `user_id` and `email` are accepted and ignored: the subscription says whose it is.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({ "subscription_id": "sub_1AbCdE", "new_price_id": "price_9ZyXw" }))]
pub struct UpdateSubscriptionBody {
    /// The subscription's Stripe id.
    #[schema(schema_with = StripeId::schema)]
    pub subscription_id: StripeId,
    /// The new recurring price's Stripe id (`price_id` is read when this is absent).
    #[schema(schema_with = input::optional_stripe_id)]
    pub new_price_id: Option<StripeId>,
    #[schema(schema_with = input::optional_stripe_id)]
    pub price_id: Option<StripeId>,
}

/// A Stripe Checkout session for a price (`/create-checkout-session`).
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({ "price_id": "price_1PqRsT", "quantity": 1, "mode": "payment" }))]
pub struct CheckoutBody {
    /// An active price's Stripe id.
    #[schema(schema_with = StripeId::schema)]
    pub price_id: StripeId,
    /// 1 to 100; default 1.
    #[schema(schema_with = IntOrDigits::schema)]
    pub quantity: Option<IntOrDigits>,
    /// `payment` (one-time price) or `subscription` (recurring price); it must match
    /// the price. At most 20 characters; `""` or `"None"` is none.
    #[schema(max_length = 20)]
    pub mode: Option<String>,
    /// The buyer (a local user id); the caller when absent. Someone else needs
    /// `manage_billing`.
    #[schema(schema_with = IntOrDigits::schema)]
    pub user_id: Option<IntOrDigits>,
    /// The buyer by email, read when `user_id` is absent.
    #[schema(max_length = 254)]
    pub email: Option<String>,
}

/// The query of `/checkout-success`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CheckoutSessionQuery {
    /// The Checkout Session's Stripe id (`cs_…`), which Stripe fills in.
    #[param(value_type = Option<String>, pattern = r"^\s*[A-Za-z0-9_]{0,255}\s*$")]
    pub session_id: Option<StripeId>,
}

#[cfg(test)]
mod tests {
    use serde::de::DeserializeOwned;
    use utoipa::ToSchema;

    use super::*;

    fn example_reads<T: ToSchema + DeserializeOwned>() {
        let schema = serde_json::to_value(T::schema()).unwrap();
        let example = schema["example"].clone();
        assert!(example.is_object(), "{} has no example", T::name());
        serde_json::from_value::<T>(example).unwrap();
    }

    #[test]
    fn every_example_is_a_body_of_its_type() {
        example_reads::<Unread>();
        example_reads::<Recurring>();
        example_reads::<CreateProductBody>();
        example_reads::<EditProductBody>();
        example_reads::<ProductRef>();
        example_reads::<PriceRef>();
        example_reads::<SubscriptionRef>();
        example_reads::<CreatePriceBody>();
        example_reads::<EditPriceBody>();
        example_reads::<UserRef>();
        example_reads::<CreateSubscriptionBody>();
        example_reads::<UpdateSubscriptionBody>();
        example_reads::<CheckoutBody>();
    }
}

//! Prices: created, replaced and archived at Stripe by `manage_billing`, listed for
//! any logged-in user (active prices of active products only, unless they manage
//! billing). Amounts arrive in major units as text or numbers and are integer minor
//! units from there on.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::json;

use super::bodies::{CreatePriceBody, EditPriceBody, PriceRef, ProductRef, Recurring, Unread};
use super::input::{self, Dollars, Flag, Metadata, Params};
use super::service::{self, is_manager, PRICE_NOT_FOUND, PRODUCT_NOT_FOUND};
use super::stripe::Form;
use super::views::{self, Message, PriceView};
use super::{amount, client_key, store, Billing, Ref, Stripe};
use super::{STRIPE_400, STRIPE_502, STRIPE_503};
use crate::app::AppState;
use crate::auth::CurrentUser;
use crate::error::{AppError, ErrorBody};
use crate::http::Origin;

const NICKNAME_MAX: usize = 250;
const LOOKUP_KEY_MAX: usize = 200;

fn interval(value: &str) -> Result<String, AppError> {
    let lower = value.trim().to_ascii_lowercase();
    match lower.as_str() {
        "day" | "week" | "month" | "year" => Ok(lower),
        _ => Err(AppError::invalid(
            "`interval` must be one of day, week, month, year",
        )),
    }
}

/// The recurring interval a body asks for: `interval`, or `recurring.interval` (the
/// shape create-price documents); `None` for a one-time price.
fn recurring_interval(
    interval_field: Option<&str>,
    recurring: Option<&Recurring>,
) -> Result<Option<String>, AppError> {
    if let Some(i) = input::text("interval", interval_field, 10)?.filter(|i| !i.is_empty()) {
        return interval(&i).map(Some);
    }
    let nested = recurring.and_then(|r| r.interval.as_deref());
    match input::text("recurring.interval", nested, 50)? {
        Some(i) => interval(&i).map(Some),
        None => Ok(None),
    }
}

/// What a new price takes from a create or an edit body.
struct PriceFields<'a> {
    unit_amount: &'a Dollars,
    currency: &'a str,
    billing_scheme: Option<&'a str>,
    nickname: Option<&'a str>,
    active: Option<Flag>,
    lookup_key: Option<&'a str>,
    metadata: Option<&'a Metadata>,
}

/// The Stripe parameters of a new price, from a create or an edit body. Only
/// `per_unit` billing is offered (tiers need a UI the old client never had).
fn price_form(
    fields: PriceFields<'_>,
    product: &str,
    recurring: Option<&String>,
) -> Result<Form, AppError> {
    let currency =
        amount::currency(&input::text("currency", Some(fields.currency), 3)?.unwrap_or_default())
            .map_err(AppError::Invalid)?;
    let cents = fields.unit_amount.minor_units("unit_amount", &currency)?;
    if let Some(scheme) = input::optional_line("billing_scheme", fields.billing_scheme, 20)? {
        if scheme != "per_unit" {
            return Err(AppError::invalid("`billing_scheme` must be per_unit"));
        }
    }
    let mut form = Form::new()
        .set("product", product)
        .set("unit_amount", cents)
        .set("currency", currency)
        .set_opt("recurring[interval]", recurring)
        .set_opt(
            "nickname",
            input::optional_line("nickname", fields.nickname, NICKNAME_MAX)?,
        )
        .set("active", fields.active.and_then(Flag::get).unwrap_or(true));
    if let Some(key) = input::optional_line("lookup_key", fields.lookup_key, LOOKUP_KEY_MAX)? {
        // The key moves to the new price instead of colliding with the old one.
        form = form.set("lookup_key", key).set("transfer_lookup_key", true);
    }
    for (key, value) in fields.metadata.map(Metadata::pairs).unwrap_or_default() {
        form = form.set(format!("metadata[{key}]"), value);
    }
    Ok(form)
}

fn found(price: Option<store::Price>) -> Result<store::Price, AppError> {
    price.ok_or_else(|| AppError::not_found(PRICE_NOT_FOUND))
}

/// Creates a price of the product `product_id` at Stripe and mirrors it: the rules of
/// `/create-price` and of the web UI's product page.
pub async fn create(
    billing: &Billing,
    state: &AppState,
    caller: &CurrentUser,
    origin: &Origin,
    client_key: Option<&str>,
    body: &CreatePriceBody,
) -> Result<store::Price, AppError> {
    let product_id = body.product_id.clone().required("product_id")?;
    let recurring = recurring_interval(body.interval.as_deref(), body.recurring.as_ref())?;
    let product = store::find_product(&state.db, &Ref::Stripe(product_id))
        .await?
        .ok_or_else(|| AppError::not_found(PRODUCT_NOT_FOUND))?;
    let fields = PriceFields {
        unit_amount: &body.unit_amount,
        currency: &body.currency,
        billing_scheme: body.billing_scheme.as_deref(),
        nickname: body.nickname.as_deref(),
        active: body.active,
        lookup_key: body.lookup_key.as_deref(),
        metadata: body.price_metadata.as_ref(),
    };
    let form = price_form(fields, &product.stripe_product_id, recurring.as_ref())?;
    let key = billing.idempotency_key("price", caller.user.id, client_key);
    let created = billing.stripe.create_price(&form, &key).await?;
    if created.product != product.stripe_product_id {
        return Err(AppError::internal(anyhow::anyhow!(
            "Stripe created price {} for another product",
            created.id
        )));
    }
    let price = store::upsert_price(&state.db, product.id, &created).await?;
    service::record(
        state,
        caller,
        origin,
        "price created",
        json!({
            "action": "create_price", "price_id": price.stripe_price_id,
            "product_id": product.stripe_product_id, "unit_amount_cents": price.unit_amount,
            "currency": price.currency,
        }),
    );
    Ok(price)
}

/// Create a price
///
/// Created at Stripe first, then mirrored. Recurring when an interval is given, else
/// one-time. An `Idempotency-Key` header makes a retry safe.
#[utoipa::path(
    post,
    path = "/create-price",
    tag = "billing",
    request_body = CreatePriceBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "The caller's key for this create: a retry with the same key creates nothing twice (a key over 255 characters is ignored)")),
    responses(
        (status = 201, description = "Created", body = PriceView),
        (status = 400, description = STRIPE_400, body = ErrorBody),
        (status = 404, description = "`Product not found`, or Stripe does not know it (`stripe_not_found`)", body = ErrorBody),
        (status = 502, description = STRIPE_502, body = ErrorBody),
        (status = 503, description = STRIPE_503, body = ErrorBody),
    )
)]
pub async fn create_price(
    billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    headers: HeaderMap,
    Params(body): Params<CreatePriceBody>,
) -> Result<(StatusCode, axum::Json<PriceView>), AppError> {
    let price = create(
        &billing,
        &state,
        &caller,
        &origin,
        client_key(&headers),
        &body,
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(PriceView::from(&price))))
}

/// Stripe prices cannot change their amount, so an edit creates the new Stripe price
/// first and only then deactivates the old one **(fixed: the old service deactivated
/// first, losing the price when creation failed)**. The local row keeps its `id` and
/// takes the new `price_id`; the product stays the stored one, whatever the body says.
pub async fn replace(
    billing: &Billing,
    state: &AppState,
    caller: &CurrentUser,
    origin: &Origin,
    body: &EditPriceBody,
) -> Result<store::Price, AppError> {
    let id = body.price_id.clone().required("price_id")?;
    let before = found(store::find_price(&state.db, &Ref::Stripe(id)).await?)?;
    let recurring = match input::text("type", body.kind.as_deref(), 20)?.as_deref() {
        Some("recurring") => Some(
            recurring_interval(body.interval.as_deref(), body.recurring.as_ref())?
                .ok_or_else(|| AppError::invalid("`interval` is required for a recurring price"))?,
        ),
        _ => None,
    };
    let fields = PriceFields {
        unit_amount: &body.unit_amount,
        currency: &body.currency,
        billing_scheme: body.billing_scheme.as_deref(),
        nickname: body.nickname.as_deref(),
        active: body.active,
        lookup_key: body.lookup_key.as_deref(),
        metadata: body.price_metadata.as_ref(),
    };
    let form = price_form(fields, &before.stripe_product_id, recurring.as_ref())?;
    let key = billing.idempotency_key("price-replace", caller.user.id, None);
    let created = billing.stripe.create_price(&form, &key).await?;
    let key = billing.idempotency_key("price-retire", caller.user.id, None);
    billing
        .stripe
        .update_price(
            &before.stripe_price_id,
            &Form::new().set("active", false),
            &key,
        )
        .await?;
    let price = store::replace_price(&state.db, before.id, &created).await?;
    service::record(
        state,
        caller,
        origin,
        "price replaced",
        json!({
            "action": "edit_price", "id": price.id,
            "before": PriceView::from(&before), "after": PriceView::from(&price),
        }),
    );
    Ok(price)
}

/// Edit a price
///
/// Stripe prices cannot change their amount: a new Stripe price is created, then the
/// old one archived. The answer is the same local row (same `id`) with the new
/// `price_id`.
#[utoipa::path(
    post,
    path = "/edit-price",
    tag = "billing",
    request_body = EditPriceBody,
    responses(
        (status = 200, description = "The price as replaced", body = PriceView),
        (status = 400, description = STRIPE_400, body = ErrorBody),
        (status = 404, description = "`Price not found`, or Stripe no longer knows it (`stripe_not_found`)", body = ErrorBody),
        (status = 502, description = STRIPE_502, body = ErrorBody),
        (status = 503, description = STRIPE_503, body = ErrorBody),
    )
)]
pub async fn edit_price(
    billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    Params(body): Params<EditPriceBody>,
) -> Result<axum::Json<PriceView>, AppError> {
    let price = replace(&billing, &state, &caller, &origin, &body).await?;
    Ok(axum::Json(PriceView::from(&price)))
}

/// Stripe never deletes a price; deleting one archives it there and here.
pub async fn archive(
    billing: &Billing,
    state: &AppState,
    caller: &CurrentUser,
    origin: &Origin,
    id: String,
) -> Result<store::Price, AppError> {
    let before = found(store::find_price(&state.db, &Ref::Stripe(id)).await?)?;
    let key = billing.idempotency_key("price-delete", caller.user.id, None);
    let updated = billing
        .stripe
        .update_price(
            &before.stripe_price_id,
            &Form::new().set("active", false),
            &key,
        )
        .await?;
    let price = store::upsert_price(&state.db, before.product_id, &updated).await?;
    service::record(
        state,
        caller,
        origin,
        "price archived",
        json!({ "action": "delete_price", "price_id": price.stripe_price_id }),
    );
    Ok(price)
}

/// Delete (archive) a price
///
/// Stripe never deletes a price; it is archived there and here.
#[utoipa::path(
    post,
    path = "/delete-price",
    tag = "billing",
    request_body = PriceRef,
    responses(
        (status = 200, description = "Archived", body = Message,
            example = json!({ "message": "Price deleted successfully" })),
        (status = 400, description = STRIPE_400, body = ErrorBody),
        (status = 404, description = "`Price not found`, or Stripe no longer knows it (`stripe_not_found`)", body = ErrorBody),
        (status = 502, description = STRIPE_502, body = ErrorBody),
        (status = 503, description = STRIPE_503, body = ErrorBody),
    )
)]
pub async fn delete_price(
    billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    Params(body): Params<PriceRef>,
) -> Result<axum::Json<Message>, AppError> {
    let id = body.price_id.required("price_id")?;
    archive(&billing, &state, &caller, &origin, id).await?;
    Ok(axum::Json(Message {
        message: "Price deleted successfully",
    }))
}

/// List prices
///
/// Active prices of active products, or all of them for `manage_billing`; a bare
/// array, oldest first.
#[utoipa::path(
    post,
    path = "/prices",
    tag = "billing",
    request_body(content = Option<Unread>, description = "None, as the old client sends it (an empty body with a JSON content type), or any JSON object, which is ignored", example = json!({})),
    responses((status = 200, description = "The prices", body = Vec<PriceView>)),
)]
pub async fn prices(
    _billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    _: Params<Unread>,
) -> Result<axum::Json<Vec<PriceView>>, AppError> {
    list(&state, &caller).await
}

/// List prices
///
/// As `POST /prices`.
#[utoipa::path(
    get,
    path = "/prices",
    tag = "billing",
    responses((status = 200, description = "The prices", body = Vec<PriceView>)),
)]
pub async fn prices_by_get(
    _billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
) -> Result<axum::Json<Vec<PriceView>>, AppError> {
    list(&state, &caller).await
}

async fn list(
    state: &AppState,
    caller: &CurrentUser,
) -> Result<axum::Json<Vec<PriceView>>, AppError> {
    let list = store::list_prices(&state.db, None, !is_manager(caller)).await?;
    Ok(axum::Json(views::prices(&list)))
}

/// One price
///
/// An archived price, or one of an archived product, is found only by
/// `manage_billing`.
#[utoipa::path(
    post,
    path = "/price",
    tag = "billing",
    request_body = PriceRef,
    responses(
        (status = 200, description = "The price", body = PriceView),
        (status = 404, description = "`Price not found`", body = ErrorBody),
    )
)]
pub async fn price(
    _billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    Params(body): Params<PriceRef>,
) -> Result<axum::Json<PriceView>, AppError> {
    find(&state, &caller, body).await
}

/// One price
///
/// As `POST /price`, named in the query string.
#[utoipa::path(
    get,
    path = "/price",
    tag = "billing",
    params(PriceRef),
    responses(
        (status = 200, description = "The price", body = PriceView),
        (status = 404, description = "`Price not found`", body = ErrorBody),
    )
)]
pub async fn price_by_query(
    _billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    Params(query): Params<PriceRef>,
) -> Result<axum::Json<PriceView>, AppError> {
    find(&state, &caller, query).await
}

async fn find(
    state: &AppState,
    caller: &CurrentUser,
    body: PriceRef,
) -> Result<axum::Json<PriceView>, AppError> {
    let id = body.price_id.required("price_id")?;
    let price = found(
        store::find_price(&state.db, &Ref::Stripe(id))
            .await?
            .filter(|p| is_manager(caller) || (p.active && p.product_active)),
    )?;
    Ok(axum::Json(PriceView::from(&price)))
}

/// The prices of a product
///
/// Its active prices, or all of them for `manage_billing`; a bare array, possibly
/// empty. An archived product is found only by `manage_billing`.
#[utoipa::path(
    post,
    path = "/prices-for-product",
    tag = "billing",
    request_body = ProductRef,
    responses(
        (status = 200, description = "The product's prices", body = Vec<PriceView>),
        (status = 404, description = "`Product not found`", body = ErrorBody),
    )
)]
pub async fn prices_for_product(
    _billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    Params(body): Params<ProductRef>,
) -> Result<axum::Json<Vec<PriceView>>, AppError> {
    prices_of(&state, &caller, body).await
}

/// The prices of a product
///
/// As `POST /prices-for-product`, named in the query string.
#[utoipa::path(
    get,
    path = "/prices-for-product",
    tag = "billing",
    params(ProductRef),
    responses(
        (status = 200, description = "The product's prices", body = Vec<PriceView>),
        (status = 404, description = "`Product not found`", body = ErrorBody),
    )
)]
pub async fn prices_for_product_by_query(
    _billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    Params(query): Params<ProductRef>,
) -> Result<axum::Json<Vec<PriceView>>, AppError> {
    prices_of(&state, &caller, query).await
}

async fn prices_of(
    state: &AppState,
    caller: &CurrentUser,
    body: ProductRef,
) -> Result<axum::Json<Vec<PriceView>>, AppError> {
    let id = body.product_id.required("product_id")?;
    let manager = is_manager(caller);
    let product = store::find_product(&state.db, &Ref::Stripe(id))
        .await?
        .filter(|p| manager || p.active)
        .ok_or_else(|| AppError::not_found(PRODUCT_NOT_FOUND))?;
    let list = store::list_prices(&state.db, Some(product.id), !manager).await?;
    Ok(axum::Json(views::prices(&list)))
}

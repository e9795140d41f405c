//! Products: created, edited and archived at Stripe by `manage_billing`, listed for
//! any logged-in user (active ones only, unless they manage billing).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::json;

use super::bodies::{CreateProductBody, EditProductBody, ProductRef, Unread};
use super::input::{self, Flag, Metadata, Params};
use super::service::{self, is_manager, PRODUCT_NOT_FOUND};
use super::stripe::Form;
use super::views::{self, Message, ProductView};
use super::{client_key, store, Billing, Ref, Stripe, STRIPE_400, STRIPE_502, STRIPE_503};
use crate::app::AppState;
use crate::auth::CurrentUser;
use crate::error::{AppError, ErrorBody};
use crate::http::Origin;

const NAME_MAX: usize = 250;
const DESCRIPTION_MAX: usize = 2000;
const DESCRIPTOR_MAX: usize = 22;
const LABEL_MAX: usize = 12;

/// The Stripe parameters of a product that create and edit share. Create reads its
/// metadata from `metadata`, edit from `product_metadata` (the old client sends each
/// route's own key).
struct ProductFields<'a> {
    active: Option<Flag>,
    shippable: Option<Flag>,
    statement_descriptor: Option<&'a str>,
    unit_label: Option<&'a str>,
    url: Option<&'a str>,
    metadata: Option<&'a Metadata>,
    images: Option<&'a [String]>,
}

fn product_form(fields: ProductFields<'_>) -> Result<Form, AppError> {
    let mut form = Form::new()
        .set_opt("active", fields.active.and_then(Flag::get))
        .set_opt("shippable", fields.shippable.and_then(Flag::get))
        .set_opt(
            "statement_descriptor",
            input::optional_line(
                "statement_descriptor",
                fields.statement_descriptor,
                DESCRIPTOR_MAX,
            )?,
        )
        .set_opt(
            "unit_label",
            input::optional_line("unit_label", fields.unit_label, LABEL_MAX)?,
        )
        .set_opt(
            "url",
            input::optional_line("url", fields.url, 2048)?
                .map(|url| {
                    if input::is_url(&url) {
                        Ok(url)
                    } else {
                        Err(AppError::invalid("`url` must be an http(s) URL"))
                    }
                })
                .transpose()?,
        );
    for (key, value) in fields.metadata.map(Metadata::pairs).unwrap_or_default() {
        form = form.set(format!("metadata[{key}]"), value);
    }
    for (i, url) in input::urls("images", fields.images)?.iter().enumerate() {
        form = form.set(format!("images[{i}]"), url);
    }
    Ok(form)
}

fn found(product: Option<store::Product>) -> Result<store::Product, AppError> {
    product.ok_or_else(|| AppError::not_found(PRODUCT_NOT_FOUND))
}

/// Creates a product at Stripe and mirrors it: the rules of `/create-product` and of
/// the web UI's products page.
pub async fn create(
    billing: &Billing,
    state: &AppState,
    caller: &CurrentUser,
    origin: &Origin,
    client_key: Option<&str>,
    body: &CreateProductBody,
) -> Result<store::Product, AppError> {
    let name = input::required_line("name", &body.name, NAME_MAX)?;
    let description = input::text("description", body.description.as_deref(), DESCRIPTION_MAX)?
        .filter(|d| !d.is_empty());
    if body.attributes.is_some() || body.caption.is_some() {
        tracing::debug!("product attributes and caption dropped: Stripe no longer has them");
    }
    let form = product_form(ProductFields {
        active: body.active,
        shippable: body.shippable,
        statement_descriptor: body.statement_descriptor.as_deref(),
        unit_label: body.unit_label.as_deref(),
        url: body.url.as_deref(),
        metadata: body.metadata.as_ref(),
        images: body.images.as_deref(),
    })?
    .set("name", &name)
    .set_opt("description", description);
    let key = billing.idempotency_key("product", caller.user.id, client_key);
    let created = billing.stripe.create_product(&form, &key).await?;
    let product = store::upsert_product(&state.db, &created).await?;
    service::record(
        state,
        caller,
        origin,
        "product created",
        json!({ "action": "create_product", "product_id": product.stripe_product_id, "name": product.name }),
    );
    Ok(product)
}

/// Create a product
///
/// Created at Stripe first, then mirrored. An `Idempotency-Key` header makes a retry
/// safe: the same key creates nothing twice.
#[utoipa::path(
    post,
    path = "/create-product",
    tag = "billing",
    request_body = CreateProductBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "The caller's key for this create: a retry with the same key creates nothing twice (a key over 255 characters is ignored)")),
    responses(
        (status = 201, description = "Created", body = ProductView),
        (status = 400, description = STRIPE_400, body = ErrorBody),
        (status = 502, description = STRIPE_502, body = ErrorBody),
        (status = 503, description = STRIPE_503, body = ErrorBody),
    )
)]
pub async fn create_product(
    billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    headers: HeaderMap,
    Params(body): Params<CreateProductBody>,
) -> Result<(StatusCode, axum::Json<ProductView>), AppError> {
    let product = create(
        &billing,
        &state,
        &caller,
        &origin,
        client_key(&headers),
        &body,
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(ProductView::from(&product))))
}

/// Changes the product `product_id` at Stripe and mirrors it. The old client sends
/// back the whole product it was shown, with its edits; the web UI sends its fields.
pub async fn edit(
    billing: &Billing,
    state: &AppState,
    caller: &CurrentUser,
    origin: &Origin,
    body: &EditProductBody,
) -> Result<store::Product, AppError> {
    let id = body.product_id.clone().required("product_id")?;
    let before = found(store::find_product(&state.db, &Ref::Stripe(id)).await?)?;
    let name = input::required_line("name", &body.name, NAME_MAX)?;
    // An empty description clears it, which is how Stripe unsets a field.
    let description = input::text("description", body.description.as_deref(), DESCRIPTION_MAX)?;
    let form = product_form(ProductFields {
        active: body.active,
        shippable: body.shippable,
        statement_descriptor: body.statement_descriptor.as_deref(),
        unit_label: body.unit_label.as_deref(),
        url: body.url.as_deref(),
        metadata: body.product_metadata.as_ref(),
        images: body.images.as_deref(),
    })?
    .set("name", &name)
    .set_opt("description", description);
    let key = billing.idempotency_key("product-edit", caller.user.id, None);
    let updated = billing
        .stripe
        .update_product(&before.stripe_product_id, &form, &key)
        .await?;
    let product = store::upsert_product(&state.db, &updated).await?;
    service::record(
        state,
        caller,
        origin,
        "product updated",
        json!({
            "action": "edit_product", "product_id": product.stripe_product_id,
            "before": ProductView::from(&before), "after": ProductView::from(&product),
        }),
    );
    Ok(product)
}

/// Edit a product
///
/// Changed at Stripe first, then mirrored.
#[utoipa::path(
    post,
    path = "/edit-product",
    tag = "billing",
    request_body = EditProductBody,
    responses(
        (status = 200, description = "The product as changed", body = ProductView),
        (status = 400, description = STRIPE_400, body = ErrorBody),
        (status = 404, description = "`Product not found`, or Stripe no longer knows it (`stripe_not_found`)", body = ErrorBody),
        (status = 502, description = STRIPE_502, body = ErrorBody),
        (status = 503, description = STRIPE_503, body = ErrorBody),
    )
)]
pub async fn edit_product(
    billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    Params(body): Params<EditProductBody>,
) -> Result<axum::Json<ProductView>, AppError> {
    let product = edit(&billing, &state, &caller, &origin, &body).await?;
    Ok(axum::Json(ProductView::from(&product)))
}

/// Archives the product `product_id` (Stripe refuses to delete one with prices, and
/// the old client's delete would have failed locally anyway): it leaves the lists of
/// non-managers and can no longer be bought.
pub async fn archive(
    billing: &Billing,
    state: &AppState,
    caller: &CurrentUser,
    origin: &Origin,
    id: String,
) -> Result<store::Product, AppError> {
    let before = found(store::find_product(&state.db, &Ref::Stripe(id)).await?)?;
    let key = billing.idempotency_key("product-archive", caller.user.id, None);
    let updated = billing
        .stripe
        .update_product(
            &before.stripe_product_id,
            &Form::new().set("active", false),
            &key,
        )
        .await?;
    let product = store::upsert_product(&state.db, &updated).await?;
    service::record(
        state,
        caller,
        origin,
        "product archived",
        json!({ "action": "delete_product", "product_id": product.stripe_product_id }),
    );
    Ok(product)
}

/// Delete (archive) a product
///
/// Stripe refuses to delete a product with prices, so it is archived there and here:
/// it leaves the lists of non-managers and can no longer be bought.
#[utoipa::path(
    delete,
    path = "/delete-product",
    tag = "billing",
    request_body = ProductRef,
    responses(
        (status = 200, description = "Archived", body = Message,
            example = json!({ "message": "Product deleted successfully" })),
        (status = 400, description = STRIPE_400, body = ErrorBody),
        (status = 404, description = "`Product not found`, or Stripe no longer knows it (`stripe_not_found`)", body = ErrorBody),
        (status = 502, description = STRIPE_502, body = ErrorBody),
        (status = 503, description = STRIPE_503, body = ErrorBody),
    )
)]
pub async fn delete_product(
    billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    Params(body): Params<ProductRef>,
) -> Result<axum::Json<Message>, AppError> {
    let id = body.product_id.required("product_id")?;
    archive(&billing, &state, &caller, &origin, id).await?;
    Ok(axum::Json(Message {
        message: "Product deleted successfully",
    }))
}

/// List products
///
/// Active ones, or all of them for `manage_billing`; a bare array, oldest first.
#[utoipa::path(
    post,
    path = "/products",
    tag = "billing",
    request_body(content = Option<Unread>, description = "None, as the old client sends it (an empty body with a JSON content type), or any JSON object, which is ignored", example = json!({})),
    responses((status = 200, description = "The products", body = Vec<ProductView>)),
)]
pub async fn products(
    _billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    _: Params<Unread>,
) -> Result<axum::Json<Vec<ProductView>>, AppError> {
    list(&state, &caller).await
}

/// List products
///
/// As `POST /products`.
#[utoipa::path(
    get,
    path = "/products",
    tag = "billing",
    responses((status = 200, description = "The products", body = Vec<ProductView>)),
)]
pub async fn products_by_get(
    _billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
) -> Result<axum::Json<Vec<ProductView>>, AppError> {
    list(&state, &caller).await
}

async fn list(
    state: &AppState,
    caller: &CurrentUser,
) -> Result<axum::Json<Vec<ProductView>>, AppError> {
    let list = store::list_products(&state.db, !is_manager(caller)).await?;
    Ok(axum::Json(views::products(&list)))
}

/// One product
///
/// An archived product is found only by `manage_billing`.
#[utoipa::path(
    post,
    path = "/product",
    tag = "billing",
    request_body = ProductRef,
    responses(
        (status = 200, description = "The product", body = ProductView),
        (status = 404, description = "`Product not found`", body = ErrorBody),
    )
)]
pub async fn product(
    _billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    Params(body): Params<ProductRef>,
) -> Result<axum::Json<ProductView>, AppError> {
    find(&state, &caller, body).await
}

/// One product
///
/// As `POST /product`, named in the query string.
#[utoipa::path(
    get,
    path = "/product",
    tag = "billing",
    params(ProductRef),
    responses(
        (status = 200, description = "The product", body = ProductView),
        (status = 404, description = "`Product not found`", body = ErrorBody),
    )
)]
pub async fn product_by_query(
    _billing: Stripe,
    State(state): State<AppState>,
    caller: CurrentUser,
    Params(query): Params<ProductRef>,
) -> Result<axum::Json<ProductView>, AppError> {
    find(&state, &caller, query).await
}

async fn find(
    state: &AppState,
    caller: &CurrentUser,
    body: ProductRef,
) -> Result<axum::Json<ProductView>, AppError> {
    let id = body.product_id.required("product_id")?;
    let product = found(
        store::find_product(&state.db, &Ref::Stripe(id))
            .await?
            .filter(|p| p.active || is_manager(caller)),
    )?;
    Ok(axum::Json(ProductView::from(&product)))
}

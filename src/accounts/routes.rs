//! The account routes of the contract.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::service::{self, Credentials, Login, NewAccount, ProfileInput};
use super::{recovery, sessions};
use crate::app::AppState;
use crate::auth::policy::Policy::{LoggedIn, Public};
use crate::auth::policy::Routes;
use crate::auth::session;
use crate::auth::{CurrentUser, MaybeUser};
use crate::error::AppError;
use crate::http::{Json, LoginBody, Origin};

pub fn routes() -> Routes {
    Routes::new()
        .post("/signup", Public.without_csrf(), signup)
        .get("/verify_email/{token}", Public, verify_email)
        .post("/login", Public.without_csrf(), login)
        .get("/check_auth_status", Public, check_auth_status)
        .get("/logout", LoggedIn, logout)
        .post("/logout", LoggedIn.without_csrf(), logout)
        .get("/current_user_details", LoggedIn, current_user_details)
        .post("/update_profile", LoggedIn, update_profile)
        .get("/csrf_token", LoggedIn, csrf_token)
        .post(
            "/forgot_password",
            Public.without_csrf(),
            recovery::forgot_password,
        )
        .post(
            "/reset_password/{token}",
            Public.without_csrf(),
            recovery::reset_password,
        )
        .get("/sessions", LoggedIn, sessions::list)
        .delete("/sessions/{id}", LoggedIn, sessions::revoke)
        .post("/sessions/revoke_others", LoggedIn, sessions::revoke_others)
}

#[derive(Deserialize)]
struct SignupBody {
    first_name: String,
    last_name: String,
    username: String,
    email: String,
    password: String,
}

async fn signup(
    State(state): State<AppState>,
    Json(body): Json<SignupBody>,
) -> Result<Response, AppError> {
    service::signup(
        &state,
        &NewAccount {
            first_name: &body.first_name,
            last_name: &body.last_name,
            username: &body.username,
            email: &body.email,
            password: &body.password,
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "success": true,
            "message": "Please check your email to verify your account",
        })),
    )
        .into_response())
}

async fn verify_email(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, AppError> {
    service::verify_email(&state, &token).await?;
    Ok(
        axum::Json(json!({ "success": true, "message": "Your account has been verified" }))
            .into_response(),
    )
}

async fn login(
    State(state): State<AppState>,
    origin: Origin,
    headers: HeaderMap,
    MaybeUser(current): MaybeUser,
    body: LoginBody,
) -> Result<Response, AppError> {
    let credentials = Credentials {
        username_or_email: &body.username_or_email,
        password: &body.password,
        token: body.token.as_deref(),
    };
    let done =
        match service::login(&state, &origin, &headers, current.as_deref(), &credentials).await? {
            Login::Done(done) => done,
            Login::SecondFactor(_) => return Err(AppError::TwofaRequired),
        };
    let mut response = axum::Json(json!({
        "success": true,
        "message": "Login successful",
        "user": done.user.to_json(&done.access),
        "csrf_token": done.session.csrf_token,
    }))
    .into_response();
    for cookie in done.cookies(&state) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

async fn logout(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
) -> Result<Response, AppError> {
    service::logout(&state, &user, &origin).await?;
    let mut response =
        axum::Json(json!({ "success": true, "message": "Logout successful" })).into_response();
    for cookie in session::clear_cookies(&state.config) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

async fn check_auth_status(MaybeUser(user): MaybeUser) -> Response {
    let body = match user {
        Some(_) => json!({ "success": true, "message": "User is currently logged in" }),
        None => json!({ "success": false, "message": "User is not logged in" }),
    };
    axum::Json(body).into_response()
}

async fn current_user_details(user: CurrentUser) -> Response {
    let details = user.user.to_json(&user.access);
    axum::Json(json!({ "success": true, "message": details, "user": details })).into_response()
}

async fn csrf_token(user: CurrentUser) -> Response {
    axum::Json(json!({ "csrf_token": user.session.csrf_token })).into_response()
}

#[derive(Deserialize)]
struct UpdateProfileBody {
    #[serde(default)]
    user_id: Option<i64>,
    first_name: String,
    last_name: String,
    email: String,
    username: String,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    current_password: Option<String>,
}

async fn update_profile(
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    Json(body): Json<UpdateProfileBody>,
) -> Result<Response, AppError> {
    service::update_profile(
        &state,
        &caller,
        &origin,
        &ProfileInput {
            user_id: body.user_id,
            first_name: &body.first_name,
            last_name: &body.last_name,
            email: &body.email,
            username: &body.username,
            password: body.password.as_deref(),
            current_password: body.current_password.as_deref(),
        },
    )
    .await?;
    Ok(
        axum::Json(json!({ "success": true, "message": "Profile updated successfully." }))
            .into_response(),
    )
}

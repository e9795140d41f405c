//! The account routes of the contract.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::service::{self, Credentials, Login, NewAccount, ProfileInput};
use super::{recovery, sessions, UserDetails};
use crate::app::AppState;
use crate::auth::policy::Policy::{LoggedIn, Public};
use crate::auth::policy::Routes;
use crate::auth::session;
use crate::auth::{CurrentUser, MaybeUser};
use crate::error::{AppError, ErrorBody};
use crate::http::{Done, Json, LoginBody, Origin};

pub fn routes() -> Routes {
    Routes::new()
        .api(Public.without_csrf(), routes!(signup))
        .api(Public, routes!(verify_email))
        .api(Public.without_csrf(), routes!(login))
        .api(Public, routes!(check_auth_status))
        .api(LoggedIn.without_csrf(), routes!(logout))
        .api(LoggedIn, routes!(current_user_details))
        .api(LoggedIn, routes!(update_profile))
        .api(LoggedIn, routes!(csrf_token))
        .api(Public.without_csrf(), routes!(recovery::forgot_password))
        .api(Public.without_csrf(), routes!(recovery::reset_password))
        .api(LoggedIn, routes!(sessions::list))
        .api(LoggedIn, routes!(sessions::revoke))
        .api(LoggedIn, routes!(sessions::revoke_others))
}

/// A new account's details.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({
    "first_name": "Ada",
    "last_name": "Lovelace",
    "username": "ada",
    "email": "ada@example.com",
    "password": "Analytical-Engine-1843"
}))]
struct SignupBody {
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    first_name: String,
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    last_name: String,
    /// 3–32 letters, digits, `.`, `_` or `-`.
    #[schema(pattern = r"^\s*[A-Za-z0-9._-]{3,32}\s*$")]
    username: String,
    #[schema(format = "email", max_length = 254)]
    email: String,
    /// The password policy's rules; the message of a 400 names those it breaks.
    password: String,
}

/// Create an account
///
/// Queues the welcome and verification emails; the account can sign in once the
/// address is verified.
#[utoipa::path(
    post,
    path = "/signup",
    tag = "accounts",
    request_body = SignupBody,
    responses(
        (status = 201, description = "Created; the verification email is queued", body = Done,
            example = json!({ "success": true, "message": "Please check your email to verify your account" })),
        (status = 409, description = "`Username already exists` or `Email already exists`", body = ErrorBody),
    )
)]
async fn signup(
    State(state): State<AppState>,
    Json(body): Json<SignupBody>,
) -> Result<(StatusCode, Done), AppError> {
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
        Done::new("Please check your email to verify your account"),
    ))
}

/// Verify an email address
///
/// The token is the one the verification email links to; valid for an hour, once.
#[utoipa::path(
    get,
    path = "/verify_email/{token}",
    tag = "accounts",
    params(("token" = String, Path, description = "The emailed verification token")),
    responses(
        (status = 200, description = "Verified", body = Done,
            example = json!({ "success": true, "message": "Your account has been verified" })),
    )
)]
async fn verify_email(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Done, AppError> {
    service::verify_email(&state, &token).await?;
    Ok(Done::new("Your account has been verified"))
}

/// A signed-in session.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "success": true,
    "message": "Login successful",
    "user": {
        "id": 7, "first_name": "Ada", "last_name": "Lovelace", "username": "ada",
        "email": "ada@example.com", "twofa_enabled": false, "roles": ["User"], "permissions": []
    },
    "csrf_token": "3q2-7wL0d8cX6sZfWQ1u9A"
}))]
struct SignedIn<'a> {
    success: bool,
    message: &'static str,
    user: UserDetails<'a>,
    /// Echo it in the `X-CSRFToken` header of every unsafe request.
    csrf_token: &'a str,
}

/// Sign in
///
/// By username or email. Sets the `session` cookie (and a readable `csrf_token`
/// cookie). With 2FA on, send `token`: a TOTP code, a recovery code or an emailed code;
/// without it the answer is 400 with `twofa_required`.
#[utoipa::path(
    post,
    path = "/login",
    tag = "accounts",
    request_body(content(
        (LoginBody = "application/json"),
        (LoginBody = "application/x-www-form-urlencoded"),
        (LoginBody = "multipart/form-data"),
    )),
    responses(
        (status = 200, description = "Signed in; the session cookie is set", body = SignedIn),
        (status = 400, description = "Invalid input, or `twofa_required` (2FA is on and no `token` was sent)", body = ErrorBody),
        (status = 401, description = "`Invalid credentials`, an unverified address (only after a correct password), or `Invalid 2FA token`", body = ErrorBody),
        (status = 403, description = "The account is disabled", body = ErrorBody),
        (status = 429, description = "Too many attempts from this address or for this account; see `Retry-After`", body = ErrorBody),
    )
)]
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
    let mut response = axum::Json(SignedIn {
        success: true,
        message: "Login successful",
        user: done.user.details(&done.access),
        csrf_token: &done.session.csrf_token,
    })
    .into_response();
    for cookie in done.cookies(&state) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// Sign out
///
/// Ends the session on the server and clears its cookies.
#[utoipa::path(
    method(get, post),
    path = "/logout",
    tag = "accounts",
    responses(
        (status = 200, description = "Signed out", body = Done,
            example = json!({ "success": true, "message": "Logout successful" })),
    )
)]
async fn logout(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
) -> Result<Response, AppError> {
    service::logout(&state, &user, &origin).await?;
    let mut response = Done::new("Logout successful").into_response();
    for cookie in session::clear_cookies(&state.config) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// Whether the caller is signed in: `success` says.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({ "success": false, "message": "User is not logged in" }))]
struct AuthStatus {
    success: bool,
    message: &'static str,
}

/// Whether the caller is signed in
#[utoipa::path(
    get,
    path = "/check_auth_status",
    tag = "accounts",
    responses((status = 200, description = "`success` is whether a live session came with the request", body = AuthStatus))
)]
async fn check_auth_status(MaybeUser(user): MaybeUser) -> axum::Json<AuthStatus> {
    axum::Json(match user {
        Some(_) => AuthStatus {
            success: true,
            message: "User is currently logged in",
        },
        None => AuthStatus {
            success: false,
            message: "User is not logged in",
        },
    })
}

/// The signed-in account, twice: old clients read `message`, newer ones `user`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "success": true,
    "message": { "id": 7, "first_name": "Ada", "last_name": "Lovelace", "username": "ada",
        "email": "ada@example.com", "twofa_enabled": false, "roles": ["User"], "permissions": [] },
    "user": { "id": 7, "first_name": "Ada", "last_name": "Lovelace", "username": "ada",
        "email": "ada@example.com", "twofa_enabled": false, "roles": ["User"], "permissions": [] }
}))]
struct CurrentUserDetails<'a> {
    success: bool,
    message: UserDetails<'a>,
    user: UserDetails<'a>,
}

/// The signed-in account
#[utoipa::path(
    get,
    path = "/current_user_details",
    tag = "accounts",
    responses((status = 200, description = "The account with its roles and permissions", body = CurrentUserDetails))
)]
async fn current_user_details(user: CurrentUser) -> Response {
    let details = user.user.details(&user.access);
    axum::Json(CurrentUserDetails {
        success: true,
        message: details,
        user: details,
    })
    .into_response()
}

/// The session's CSRF token.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({ "csrf_token": "3q2-7wL0d8cX6sZfWQ1u9A" }))]
struct CsrfToken {
    csrf_token: String,
}

/// The session's CSRF token
#[utoipa::path(
    get,
    path = "/csrf_token",
    tag = "accounts",
    responses((status = 200, description = "The token to send in `X-CSRFToken`", body = CsrfToken))
)]
async fn csrf_token(user: CurrentUser) -> axum::Json<CsrfToken> {
    axum::Json(CsrfToken {
        csrf_token: user.session.csrf_token.clone(),
    })
}

/// A profile's new details; the caller's own unless `user_id` names another account.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({
    "first_name": "Ada",
    "last_name": "King",
    "email": "ada@example.com",
    "username": "ada",
    "password": "Difference-Engine-1822",
    "current_password": "Analytical-Engine-1843"
}))]
struct UpdateProfileBody {
    /// Another account's id: needs `manage_users`.
    #[serde(default)]
    user_id: Option<i64>,
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    first_name: String,
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    last_name: String,
    #[schema(format = "email", max_length = 254)]
    email: String,
    /// 3–32 letters, digits, `.`, `_` or `-`.
    #[schema(pattern = r"^\s*[A-Za-z0-9._-]{3,32}\s*$")]
    username: String,
    /// A new password, if it changes.
    #[serde(default)]
    password: Option<String>,
    /// Needed to change one's own password or email in a session older than ten minutes.
    #[serde(default)]
    current_password: Option<String>,
}

/// Update a profile
#[utoipa::path(
    post,
    path = "/update_profile",
    tag = "accounts",
    request_body = UpdateProfileBody,
    responses(
        (status = 200, description = "Updated", body = Done,
            example = json!({ "success": true, "message": "Profile updated successfully." })),
        (status = 403, description = "Another account without `manage_users`; or the caller's own password or email without `current_password` in a session older than ten minutes; or a missing CSRF header", body = ErrorBody),
        (status = 404, description = "No account has that `user_id`", body = ErrorBody),
        (status = 409, description = "`Email already in use.` or `Username already exists.`", body = ErrorBody),
    )
)]
async fn update_profile(
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    Json(body): Json<UpdateProfileBody>,
) -> Result<Done, AppError> {
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
    Ok(Done::new("Profile updated successfully."))
}

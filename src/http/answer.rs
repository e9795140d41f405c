//! The plain answers many routes share, as types: handlers return them and
//! `/openapi.json` describes them.

use std::borrow::Cow;

use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// `{"success": true, "message": …}`: the contract's acknowledgement of a change.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({ "success": true, "message": "Logout successful" }))]
pub struct Done {
    /// Always `true`.
    pub success: bool,
    /// What was done, in words for a person.
    #[schema(value_type = String)]
    pub message: Cow<'static, str>,
}

impl Done {
    pub fn new(message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            success: true,
            message: message.into(),
        }
    }
}

impl IntoResponse for Done {
    fn into_response(self) -> Response {
        axum::Json(self).into_response()
    }
}

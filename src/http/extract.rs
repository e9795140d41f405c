//! Request bodies, with failures in the contract's words: a wrong type or a missing
//! field answers 400 naming the field, a body over the limit 413.

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::error::AppError;

/// A JSON body of type `T`.
#[derive(Debug, Clone)]
pub struct Json<T>(pub T);

fn content_type(req: &Request) -> String {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase()
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, AppError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            AppError::PayloadTooLarge
        } else {
            AppError::invalid("The request body could not be read")
        }
    })
}

/// Parses JSON, naming the offending field in the error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let what = strip_position(&inner.to_string());
        match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                AppError::invalid(format!("Malformed JSON body: {what}"))
            }
            _ if path == "." || path.is_empty() => {
                // serde says "missing field `x`" at the top level; keep its naming.
                AppError::invalid(capitalise(&what))
            }
            _ => AppError::invalid(format!("Invalid value for field `{path}`: {what}")),
        }
    })
}

/// serde_json appends " at line L column C", which means nothing to the caller.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        if !is_json(&content_type(&req)) {
            return Err(AppError::UnsupportedMediaType("application/json"));
        }
        let bytes = body_bytes(req, state).await?;
        parse_json(&bytes).map(Json)
    }
}

/// The login form, accepted as JSON, urlencoded or multipart (the Next.js client
/// sends `FormData`).
#[derive(Debug, Deserialize)]
pub struct LoginBody {
    pub username_or_email: String,
    pub password: String,
    #[serde(default)]
    pub token: Option<String>,
}

impl<S: Send + Sync> FromRequest<S> for LoginBody {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        let content_type = content_type(&req);
        if content_type.starts_with("multipart/form-data") {
            let mut multipart = Multipart::from_request(req, state)
                .await
                .map_err(|_| AppError::invalid("Malformed multipart body"))?;
            let mut fields = serde_json::Map::new();
            while let Some(field) = multipart.next_field().await.map_err(|e| {
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    AppError::PayloadTooLarge
                } else {
                    AppError::invalid("Malformed multipart body")
                }
            })? {
                let Some(name) = field.name().map(str::to_owned) else {
                    continue;
                };
                if !matches!(name.as_str(), "username_or_email" | "password" | "token") {
                    continue;
                }
                let value = field
                    .text()
                    .await
                    .map_err(|_| AppError::invalid(format!("Field `{name}` is not text")))?;
                fields.insert(name, value.into());
            }
            parse_json(&serde_json::Value::Object(fields).to_string().into_bytes())
        } else if content_type.starts_with("application/x-www-form-urlencoded") {
            let bytes = body_bytes(req, state).await?;
            serde_urlencoded::from_bytes(&bytes)
                .map_err(|e| AppError::invalid(capitalise(&e.to_string())))
        } else if is_json(&content_type) {
            let bytes = body_bytes(req, state).await?;
            parse_json(&bytes)
        } else {
            Err(AppError::UnsupportedMediaType(
                "application/json, application/x-www-form-urlencoded or multipart/form-data",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Sample {
        name: String,
        age: i64,
    }

    fn message(bytes: &[u8]) -> String {
        parse_json::<Sample>(bytes).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            message(br#"{"name": 5, "age": 1}"#),
            "Invalid value for field `name`: invalid type: integer `5`, expected a string"
        );
        assert_eq!(message(br#"{"name": "x"}"#), "Missing field `age`");
        assert!(message(b"{not json").starts_with("Malformed JSON body"));
        assert!(message(b"").starts_with("Malformed JSON body"));
    }
}

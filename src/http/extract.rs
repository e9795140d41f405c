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

/// Only `application/json` is JSON here: a `+json` type such as
/// `application/json-patch+json` means something else, which no route speaks.
fn is_json(content_type: &str) -> bool {
    content_type.split(';').next().unwrap_or("").trim() == "application/json"
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

/// Parses JSON strictly (nothing may follow the value), naming the offending field in
/// the error; see [`refuse_control_characters`] for what no text may hold.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    refuse_control_characters(bytes)?;
    parse_strict(bytes).or_else(|error| {
        // JSON Schema counts `3.0` as an integer, so a client generated from
        // `/openapi.json` may send one where serde wants an `i64`: read it as `3`.
        match integral_numbers_as_integers(bytes) {
            Some(normalised) => parse_strict(&normalised).map_err(|_| error),
            None => Err(error),
        }
    })
}

fn parse_strict<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = deserialize(&mut de)?;
    de.end().map_err(|e| {
        AppError::invalid(format!(
            "Malformed JSON body: {}",
            strip_position(&e.to_string())
        ))
    })?;
    Ok(value)
}

/// The body with every integral floating-point number (`3.0`, `-2e3`) written as an
/// integer, if it holds one.
fn integral_numbers_as_integers(bytes: &[u8]) -> Option<Vec<u8>> {
    /// Integers an `f64` holds exactly.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    fn walk(value: &mut serde_json::Value) -> bool {
        use serde_json::Value;
        match value {
            Value::Number(n) if n.is_f64() => match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() <= EXACT => {
                    *value = Value::from(f as i64);
                    true
                }
                _ => false,
            },
            Value::Array(items) => {
                let mut changed = false;
                for v in items {
                    changed |= walk(v);
                }
                changed
            }
            Value::Object(map) => {
                let mut changed = false;
                for v in map.values_mut() {
                    changed |= walk(v);
                }
                changed
            }
            _ => false,
        }
    }
    let mut value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    if !walk(&mut value) {
        return None;
    }
    serde_json::to_vec(&value).ok()
}

/// Text may hold tabs and line breaks but no other control character: PostgreSQL
/// refuses NUL in text (SQLite stores it), and none of the others belongs in any
/// field. Raw control characters are already invalid JSON, so only escaped ones
/// (`\u0000`) and DEL or C1 characters can get here; the body is walked only when it
/// holds one of those.
fn refuse_control_characters(bytes: &[u8]) -> Result<(), AppError> {
    let suspicious = bytes.windows(2).any(|w| w == b"\\u" || w[0] == 0xc2) || bytes.contains(&0x7f);
    if !suspicious {
        return Ok(());
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        // Malformed: the parse that follows names the problem.
        return Ok(());
    };
    match control_character_at(&value, String::new()) {
        Some(field) => Err(AppError::invalid(format!(
            "Field `{field}` must not contain control characters"
        ))),
        None => Ok(()),
    }
}

fn forbidden(c: char) -> bool {
    c.is_control() && !matches!(c, '\t' | '\n' | '\r')
}

/// The path of the first string (or key) holding a forbidden character.
fn control_character_at(value: &serde_json::Value, path: String) -> Option<String> {
    use serde_json::Value;
    let here = |p: &str| {
        if p.is_empty() {
            ".".to_owned()
        } else {
            p.to_owned()
        }
    };
    match value {
        Value::String(s) if s.chars().any(forbidden) => Some(here(&path)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| control_character_at(v, format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            if k.chars().any(forbidden) {
                Some(p)
            } else {
                control_character_at(v, p)
            }
        }),
        _ => None,
    }
}

/// Whether a query parameter or path holds a control character: none may.
pub fn has_control_characters(text: &str) -> bool {
    text.chars().any(char::is_control)
}

fn deserialize<'de, T: DeserializeOwned>(
    de: &mut serde_json::Deserializer<serde_json::de::SliceRead<'de>>,
) -> Result<T, AppError> {
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
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({ "username_or_email": "ada", "password": "Analytical-Engine-1843" }))]
pub struct LoginBody {
    /// The username or the email address.
    pub username_or_email: String,
    pub password: String,
    /// With 2FA on: a TOTP code, a recovery code or an emailed sign-in code.
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
            let body: LoginBody = serde_urlencoded::from_bytes(&bytes)
                .map_err(|e| AppError::invalid(capitalise(&e.to_string())))?;
            for (field, value) in [
                ("username_or_email", Some(&body.username_or_email)),
                ("password", Some(&body.password)),
                ("token", body.token.as_ref()),
            ] {
                if value.is_some_and(|v| v.chars().any(forbidden)) {
                    return Err(AppError::invalid(format!(
                        "Field `{field}` must not contain control characters"
                    )));
                }
            }
            Ok(body)
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
        assert!(message(br#"{"name": "x", "age": 1} trailing"#).starts_with("Malformed JSON body"));
        assert!(message(br#"{"name": "x", "age": 1}{}"#).starts_with("Malformed JSON body"));
    }

    #[test]
    fn integral_floats_are_integers() {
        #[derive(serde::Deserialize)]
        struct Ids {
            a: i64,
            b: Vec<i64>,
            c: f64,
        }
        let ids: Ids = parse_json(br#"{"a": -977.0, "b": [1e3, 2], "c": 1.5}"#).unwrap();
        assert_eq!((ids.a, ids.b, ids.c), (-977, vec![1000, 2], 1.5));
        let e = parse_json::<Ids>(br#"{"a": 1.5, "b": [], "c": 1}"#)
            .err()
            .unwrap();
        assert!(e.to_string().contains("`a`"), "{e}");
    }

    #[test]
    fn control_characters_are_refused_naming_the_field() {
        assert_eq!(
            message(br#"{"name": "a\u0000b", "age": 1}"#),
            "Field `name` must not contain control characters"
        );
        assert_eq!(
            parse_json::<serde_json::Value>(br#"{"a": [{"b": "\u001b"}]}"#)
                .unwrap_err()
                .to_string(),
            "Field `a[0].b` must not contain control characters"
        );
        assert!(parse_json::<serde_json::Value>(b"{\"a\": \"line\\nbreak\\ttab\"}").is_ok());
        assert!(parse_json::<serde_json::Value>("{\"a\": \"\u{85}\"}".as_bytes()).is_err());
        assert!(is_json("application/json; charset=utf-8"));
        assert!(!is_json("application/json-patch+json"));
        assert!(!is_json("application/vnd.api+json"));
    }
}

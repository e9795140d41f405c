//! Reading the old client's request bodies, leniently where it is lenient: list calls
//! arrive as POSTs with `Content-Type: application/json` and no body at all, numbers
//! typed into form fields arrive as strings (`"7"`, `"19.99"`), booleans from its
//! selects as `"true"`, `"false"` or `""`, and edit forms send back the whole object
//! they were shown, whose unknown keys are ignored. Every refusal is a 400 naming the
//! field; nothing here can fail with a 500.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use serde_json::{Map, Value};

use super::amount;
use crate::error::AppError;

/// The longest Stripe id accepted (Stripe's own are far shorter).
const ID_MAX: usize = 255;

/// The parameters of a billing request: the query string's and, when a body is sent,
/// the JSON object's (which wins).
pub struct Body(Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(req.uri().query().unwrap_or(""))
                .map_err(|_| AppError::invalid("Malformed query string"))?;
        let mut map: Map<String, Value> = pairs
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        let json_body = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"));
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                AppError::PayloadTooLarge
            } else {
                AppError::invalid("The request body could not be read")
            }
        })?;
        // The old client's list calls: a JSON content type and no body.
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Body(map));
        }
        if !json_body {
            return Err(AppError::UnsupportedMediaType("application/json"));
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(body)) => map.extend(body),
            Ok(_) => return Err(AppError::invalid("The body must be a JSON object")),
            Err(_) => return Err(AppError::invalid("Malformed JSON body")),
        }
        Ok(Body(map))
    }
}

fn wrong(field: &str, expected: &str) -> AppError {
    AppError::invalid(format!(
        "Invalid value for field `{field}`: expected {expected}"
    ))
}

impl Body {
    /// The value of `field`, `None` when absent or null.
    fn get(&self, field: &str) -> Option<&Value> {
        self.0.get(field).filter(|v| !v.is_null())
    }

    /// Text of at most `max` characters, with no control characters but line breaks
    /// and tabs; trimmed. `None` when absent or null.
    pub fn text(&self, field: &str, max: usize) -> Result<Option<String>, AppError> {
        let Some(value) = self.get(field) else {
            return Ok(None);
        };
        let Value::String(text) = value else {
            return Err(wrong(field, "a string"));
        };
        let text = text.trim();
        if text.chars().count() > max {
            return Err(AppError::invalid(format!(
                "`{field}` must be at most {max} characters"
            )));
        }
        if text
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            return Err(AppError::invalid(format!(
                "`{field}` must not contain control characters"
            )));
        }
        Ok(Some(text.to_owned()))
    }

    /// One line of 1 to `max` characters.
    pub fn required_line(&self, field: &str, max: usize) -> Result<String, AppError> {
        let text = self
            .text(field, max)?
            .ok_or_else(|| AppError::invalid(format!("Missing field `{field}`")))?;
        if text.is_empty() {
            return Err(AppError::invalid(format!("`{field}` must not be empty")));
        }
        if text.contains('\n') {
            return Err(AppError::invalid(format!("`{field}` must be one line")));
        }
        Ok(text)
    }

    /// An optional one-line text. The old client's forms fill untouched fields with the
    /// literal text `None` (Python's), which means no value, as `""` does.
    pub fn optional_line(&self, field: &str, max: usize) -> Result<Option<String>, AppError> {
        let text = self.text(field, max)?;
        if text.as_deref().is_some_and(|t| t.contains('\n')) {
            return Err(AppError::invalid(format!("`{field}` must be one line")));
        }
        Ok(text.filter(|t| !t.is_empty() && t != "None"))
    }

    /// A Stripe id (`prod_…`, `price_…`, `sub_…`, `cs_…`); `""` (a reset form field)
    /// counts as absent.
    pub fn stripe_id(&self, field: &str) -> Result<Option<String>, AppError> {
        let Some(value) = self.get(field) else {
            return Ok(None);
        };
        let Value::String(id) = value else {
            return Err(wrong(field, "a Stripe id such as prod_123"));
        };
        let id = id.trim();
        if id.is_empty() {
            return Ok(None);
        }
        if id.len() > ID_MAX || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(wrong(field, "a Stripe id such as prod_123"));
        }
        Ok(Some(id.to_owned()))
    }

    pub fn required_stripe_id(&self, field: &str) -> Result<String, AppError> {
        self.stripe_id(field)?
            .ok_or_else(|| AppError::invalid(format!("Missing field `{field}`")))
    }

    /// An integer as a JSON number or a string of digits; `""` counts as absent.
    pub fn int(&self, field: &str) -> Result<Option<i64>, AppError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| wrong(field, "an integer")),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => {
                let digits = s.trim();
                let unsigned = digits.strip_prefix('-').unwrap_or(digits);
                if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(wrong(field, "an integer"));
                }
                digits
                    .parse()
                    .map(Some)
                    .map_err(|_| wrong(field, "an integer"))
            }
            Some(_) => Err(wrong(field, "an integer")),
        }
    }

    /// A boolean, or the old edit forms' `"true"`, `"false"` and `""` (no value).
    pub fn flag(&self, field: &str) -> Result<Option<bool>, AppError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" => Ok(Some(true)),
                "false" => Ok(Some(false)),
                "" => Ok(None),
                _ => Err(wrong(field, "true or false")),
            },
            Some(_) => Err(wrong(field, "true or false")),
        }
    }

    /// An amount in the major units of `currency` (`19.99` or `"19.99"`) as integer
    /// minor units, exactly.
    pub fn money_in(&self, field: &str, currency: &str) -> Result<Option<i64>, AppError> {
        match self.get(field) {
            None => Ok(None),
            Some(value) => amount::parse_amount(field, value, currency)
                .map(Some)
                .map_err(AppError::Invalid),
        }
    }

    /// Sets one parameter, as a JSON body would carry it.
    pub fn set(&mut self, field: &str, value: Value) {
        self.0.insert(field.to_owned(), value);
    }

    /// The parameters of a web form, as text, as the JSON routes would read them.
    pub fn from_fields<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> Body {
        Body(
            fields
                .into_iter()
                .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
                .collect(),
        )
    }

    /// Stripe metadata: an object of at most 50 keys whose values are strings or
    /// numbers (sent as text); `{}` or null is none.
    pub fn metadata(&self, field: &str) -> Result<Vec<(String, String)>, AppError> {
        let Some(value) = self.get(field) else {
            return Ok(Vec::new());
        };
        let Value::Object(map) = value else {
            return Err(wrong(field, "an object"));
        };
        if map.len() > 50 {
            return Err(AppError::invalid(format!(
                "`{field}` may have at most 50 keys"
            )));
        }
        map.iter()
            .map(|(k, v)| {
                let plain_key = !k.is_empty()
                    && k.len() <= 40
                    && k.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                let text = match v {
                    Value::String(s) if s.chars().count() <= 500 => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => return Err(wrong(field, "an object of short texts")),
                };
                if !plain_key {
                    return Err(wrong(field, "keys of letters, digits, - and _"));
                }
                Ok((k.clone(), text))
            })
            .collect()
    }

    /// The text at `key` inside the object `field` (`recurring.interval`); `None` when
    /// either is absent or null.
    pub fn object_text(&self, field: &str, key: &str) -> Result<Option<String>, AppError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Object(o)) => match o.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.len() <= 50 => Ok(Some(s.clone())),
                Some(_) => Err(wrong(&format!("{field}.{key}"), "a short string")),
            },
            Some(_) => Err(wrong(field, "an object")),
        }
    }

    /// A list of at most 8 http(s) URLs (Stripe's limit for product images).
    pub fn urls(&self, field: &str) -> Result<Vec<String>, AppError> {
        let Some(value) = self.get(field) else {
            return Ok(Vec::new());
        };
        let Value::Array(items) = value else {
            return Err(wrong(field, "a list of URLs"));
        };
        if items.len() > 8 {
            return Err(AppError::invalid(format!(
                "`{field}` may hold at most 8 URLs"
            )));
        }
        items
            .iter()
            .map(|item| match item {
                Value::String(url) if is_url(url) => Ok(url.clone()),
                _ => Err(wrong(field, "a list of http(s) URLs")),
            })
            .collect()
    }
}

/// An http(s) URL of at most 2048 characters without spaces or control characters.
pub fn is_url(value: &str) -> bool {
    (value.starts_with("https://") || value.starts_with("http://"))
        && value.len() <= 2048
        && !value.chars().any(|c| c.is_control() || c.is_whitespace())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body(value: Value) -> Body {
        match value {
            Value::Object(map) => Body(map),
            _ => unreachable!("tests pass objects"),
        }
    }

    #[test]
    fn the_old_forms_booleans_and_numbers() {
        let b = body(json!({
            "t": "true", "f": "FALSE", "e": "", "b": false, "n": null, "x": "yes", "one": 1,
            "i": "7", "j": 7, "k": " 12 ", "l": "7x", "m": 1.5, "big": "99999999999999999999",
        }));
        assert_eq!(b.flag("t").unwrap(), Some(true));
        assert_eq!(b.flag("f").unwrap(), Some(false));
        assert_eq!(b.flag("e").unwrap(), None);
        assert_eq!(b.flag("b").unwrap(), Some(false));
        assert_eq!(b.flag("n").unwrap(), None);
        assert_eq!(b.flag("absent").unwrap(), None);
        assert!(b.flag("x").is_err());
        assert!(b.flag("one").is_err());
        assert_eq!(b.int("i").unwrap(), Some(7));
        assert_eq!(b.int("j").unwrap(), Some(7));
        assert_eq!(b.int("k").unwrap(), Some(12));
        assert_eq!(b.int("e").unwrap(), None);
        assert!(b.int("l").is_err());
        assert!(b.int("m").is_err());
        assert!(b.int("big").is_err());
    }

    #[test]
    fn ids_text_and_money() {
        let b = body(json!({
            "p": " prod_123 ", "e": "", "bad": "prod/../x", "num": 5, "none": "None",
            "multi": "a\nb", "ctl": "a\u{7}b", "cents": "19.99", "tiny": 0.29, "max": "999999.99",
        }));
        assert_eq!(b.stripe_id("p").unwrap().as_deref(), Some("prod_123"));
        assert_eq!(b.stripe_id("e").unwrap(), None);
        assert!(b.stripe_id("bad").is_err());
        assert!(b.stripe_id("num").is_err());
        assert!(b.required_stripe_id("absent").is_err());
        assert_eq!(b.optional_line("none", 10).unwrap(), None);
        assert!(b.optional_line("multi", 10).is_err());
        assert!(b.text("ctl", 10).is_err());
        assert!(b.text("p", 3).is_err());
        assert_eq!(b.money_in("cents", "usd").unwrap(), Some(1999));
        assert_eq!(b.money_in("tiny", "usd").unwrap(), Some(29));
        assert_eq!(b.money_in("max", "usd").unwrap(), Some(99_999_999));
    }
}

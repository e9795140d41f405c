//! Reading the old client's request bodies into the types of [`bodies`](super::bodies),
//! leniently where it is lenient: list calls arrive as POSTs with
//! `Content-Type: application/json` and no body at all, numbers typed into form fields
//! arrive as strings (`"7"`, `"19.99"`), booleans from its selects as `"true"`,
//! `"false"` or `""`, `null` means absent, and edit forms send back the whole object
//! they were shown, whose unknown keys are ignored. The lenient field types here
//! ([`Flag`], [`IntOrDigits`], [`Dollars`], [`StripeId`], [`Metadata`]) parse exactly
//! what their schemas (their [`PartialSchema`]) describe. Every refusal is a 400
//! naming the field; nothing here can fail with a 500.
//!
//! The web UI's billing forms read their fields through [`read`] into the same types,
//! so one reader and one set of rules serves both.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use serde::de::{DeserializeOwned, Error as _, IgnoredAny};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;
use utoipa::PartialSchema;

use super::{amount, bodies};
use crate::error::AppError;

/// The longest Stripe id accepted (Stripe's own are far shorter).
const ID_MAX: usize = 255;

/// In a field type's error message, where the field's name goes; a message without it
/// reads `Invalid value for field `…`: <message>`.
const FIELD: &str = "{field}";

/// The parameters of a billing request as `T`: the query string's and, when a body is
/// sent, the JSON object's (which wins).
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Params<T> {
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
        if !bytes.iter().all(u8::is_ascii_whitespace) {
            if !json_body {
                return Err(AppError::UnsupportedMediaType("application/json"));
            }
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(body)) => map.extend(body),
                Ok(_) => return Err(AppError::invalid("The body must be a JSON object")),
                Err(_) => return Err(AppError::invalid("Malformed JSON body")),
            }
        }
        read(map).map(Params)
    }
}

/// Reads parameters (a JSON body's object, or a web form's fields) as `T`; a refusal
/// is a 400 naming the field.
pub fn read<T: DeserializeOwned>(map: Map<String, Value>) -> Result<T, AppError> {
    serde_path_to_error::deserialize(Value::Object(map)).map_err(|e| {
        let path = e.path().to_string();
        let what = e.into_inner().to_string();
        AppError::invalid(if what.contains(FIELD) {
            what.replace(FIELD, &path)
        } else if path == "." || path.is_empty() {
            // serde says "missing field `x`" at the top level.
            capitalise(&what)
        } else {
            format!("Invalid value for field `{path}`: {what}")
        })
    })
}

/// The fields of a web form, as text, as the JSON routes would read them.
pub fn fields<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> Map<String, Value> {
    fields
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
        .collect()
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn missing(field: &str) -> AppError {
    AppError::invalid(format!("Missing field `{field}`"))
}

/// A boolean, or the old edit forms' `"true"`, `"false"` (any case) and `""` (no
/// value, as `null` is).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Flag(Option<bool>);

impl Flag {
    pub fn get(self) -> Option<bool> {
        self.0
    }
}

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let wrong = || D::Error::custom("expected true or false");
        match Option::<Value>::deserialize(d)? {
            None => Ok(Flag(None)),
            Some(Value::Bool(b)) => Ok(Flag(Some(b))),
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" => Ok(Flag(Some(true))),
                "false" => Ok(Flag(Some(false))),
                "" => Ok(Flag(None)),
                _ => Err(wrong()),
            },
            Some(_) => Err(wrong()),
        }
    }
}

impl PartialSchema for Flag {
    fn schema() -> RefOr<Schema> {
        bodies::flag().into()
    }
}

/// An integer as a JSON number or a string of digits; `""` is no value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IntOrDigits(Option<i64>);

impl IntOrDigits {
    pub fn get(self) -> Option<i64> {
        self.0
    }
}

impl<'de> Deserialize<'de> for IntOrDigits {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let wrong = || D::Error::custom("expected an integer");
        match Option::<Value>::deserialize(d)? {
            None => Ok(IntOrDigits(None)),
            Some(Value::Number(n)) => n.as_i64().map(|i| IntOrDigits(Some(i))).ok_or_else(wrong),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(IntOrDigits(None)),
            Some(Value::String(s)) => {
                let digits = s.trim();
                let unsigned = digits.strip_prefix('-').unwrap_or(digits);
                if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(wrong());
                }
                digits
                    .parse()
                    .map(|i| IntOrDigits(Some(i)))
                    .map_err(|_| wrong())
            }
            Some(_) => Err(wrong()),
        }
    }
}

impl PartialSchema for IntOrDigits {
    fn schema() -> RefOr<Schema> {
        bodies::int_or_digits().into()
    }
}

/// An amount in major units (`19.99` or `"19.99"`), kept as sent until the currency,
/// which says how many decimals it may have, is known ([`Dollars::minor_units`]).
/// Absent or `null` reads as missing.
#[derive(Clone, Debug, PartialEq)]
pub struct Dollars(Option<Value>);

impl Dollars {
    /// The amount in the minor units of `currency`, exactly.
    pub fn minor_units(&self, field: &str, currency: &str) -> Result<i64, AppError> {
        let value = self.0.as_ref().ok_or_else(|| missing(field))?;
        amount::parse_amount(field, value, currency).map_err(AppError::Invalid)
    }
}

impl<'de> Deserialize<'de> for Dollars {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Option::<Value>::deserialize(d)? {
            value @ (None | Some(Value::Number(_) | Value::String(_))) => Ok(Dollars(value)),
            Some(_) => Err(D::Error::custom(
                "`{field}` must be an amount in dollars, such as 9.99",
            )),
        }
    }
}

impl PartialSchema for Dollars {
    fn schema() -> RefOr<Schema> {
        bodies::dollars().into()
    }
}

/// A Stripe id (`prod_…`, `price_…`, `sub_…`, `cs_…`), trimmed; `""` (a reset form
/// field), `null` or absent is none, which [`StripeId::required`] refuses.
#[derive(Clone, Debug, PartialEq)]
pub struct StripeId(Option<String>);

impl StripeId {
    pub fn get(self) -> Option<String> {
        self.0
    }

    pub fn required(self, field: &str) -> Result<String, AppError> {
        self.0.ok_or_else(|| missing(field))
    }
}

impl<'de> Deserialize<'de> for StripeId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let wrong = || D::Error::custom("expected a Stripe id such as prod_123");
        match Option::<Value>::deserialize(d)? {
            None => Ok(StripeId(None)),
            Some(Value::String(id)) => {
                let id = id.trim();
                if id.is_empty() {
                    Ok(StripeId(None))
                } else if id.len() > ID_MAX
                    || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    Err(wrong())
                } else {
                    Ok(StripeId(Some(id.to_owned())))
                }
            }
            Some(_) => Err(wrong()),
        }
    }
}

impl PartialSchema for StripeId {
    fn schema() -> RefOr<Schema> {
        bodies::stripe_id().into()
    }
}

/// An optional Stripe id's schema, which says `""` is no value.
pub fn optional_stripe_id() -> RefOr<Schema> {
    bodies::optional_stripe_id().into()
}

/// Stripe metadata: an object of at most 50 keys of letters, digits, `-` and `_`,
/// whose values are strings or numbers (sent as text); `{}` or `null` is none.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metadata(Vec<(String, String)>);

impl Metadata {
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Some(value) = Option::<Value>::deserialize(d)? else {
            return Ok(Metadata::default());
        };
        let Value::Object(map) = value else {
            return Err(D::Error::custom("expected an object"));
        };
        if map.len() > 50 {
            return Err(D::Error::custom("`{field}` may have at most 50 keys"));
        }
        map.into_iter()
            .map(|(k, v)| {
                let plain_key = !k.is_empty()
                    && k.len() <= 40
                    && k.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                let text = match v {
                    Value::String(s) if s.chars().count() <= 500 => s,
                    Value::Number(n) => n.to_string(),
                    _ => return Err(D::Error::custom("expected an object of short texts")),
                };
                if !plain_key {
                    return Err(D::Error::custom(
                        "expected keys of letters, digits, - and _",
                    ));
                }
                Ok((k, text))
            })
            .collect::<Result<_, _>>()
            .map(Metadata)
    }
}

impl PartialSchema for Metadata {
    fn schema() -> RefOr<Schema> {
        bodies::metadata().into()
    }
}

/// Any value, accepted and dropped (fields Stripe's API no longer has).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ignored;

impl<'de> Deserialize<'de> for Ignored {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(d).map(|_| Ignored)
    }
}

impl PartialSchema for Ignored {
    fn schema() -> RefOr<Schema> {
        bodies::ignored().into()
    }
}

/// Text of at most `max` characters, with no control characters but line breaks and
/// tabs; trimmed. `None` when absent.
pub fn text(field: &str, value: Option<&str>, max: usize) -> Result<Option<String>, AppError> {
    let Some(text) = value else {
        return Ok(None);
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
pub fn required_line(field: &str, value: &str, max: usize) -> Result<String, AppError> {
    let text = text(field, Some(value), max)?.unwrap_or_default();
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
pub fn optional_line(
    field: &str,
    value: Option<&str>,
    max: usize,
) -> Result<Option<String>, AppError> {
    let text = text(field, value, max)?;
    if text.as_deref().is_some_and(|t| t.contains('\n')) {
        return Err(AppError::invalid(format!("`{field}` must be one line")));
    }
    Ok(text.filter(|t| !t.is_empty() && t != "None"))
}

/// A list of at most 8 http(s) URLs (Stripe's limit for product images).
pub fn urls(field: &str, items: Option<&[String]>) -> Result<Vec<String>, AppError> {
    let items = items.unwrap_or_default();
    if items.len() > 8 {
        return Err(AppError::invalid(format!(
            "`{field}` may hold at most 8 URLs"
        )));
    }
    items
        .iter()
        .map(|url| {
            if is_url(url) {
                Ok(url.clone())
            } else {
                Err(AppError::invalid(format!(
                    "Invalid value for field `{field}`: expected a list of http(s) URLs"
                )))
            }
        })
        .collect()
}

/// An http(s) URL of at most 2048 characters without spaces or control characters.
pub fn is_url(value: &str) -> bool {
    (value.starts_with("https://") || value.starts_with("http://"))
        && value.len() <= 2048
        && !value.chars().any(|c| c.is_control() || c.is_whitespace())
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Deserialize)]
    struct Sample {
        flag: Option<Flag>,
        int: Option<IntOrDigits>,
        id: StripeId,
        money: Dollars,
        metadata: Option<Metadata>,
    }

    fn sample(value: Value) -> Result<Sample, String> {
        match value {
            Value::Object(map) => read::<Sample>(map).map_err(|e| e.to_string()),
            _ => unreachable!("tests pass objects"),
        }
    }

    fn flag(v: Value) -> Result<Option<bool>, String> {
        sample(json!({ "flag": v })).map(|s| s.flag.and_then(Flag::get))
    }

    fn int(v: Value) -> Result<Option<i64>, String> {
        sample(json!({ "int": v })).map(|s| s.int.and_then(IntOrDigits::get))
    }

    #[test]
    fn the_old_forms_booleans_and_numbers() {
        assert_eq!(flag(json!("true")), Ok(Some(true)));
        assert_eq!(flag(json!("FALSE")), Ok(Some(false)));
        assert_eq!(flag(json!("")), Ok(None));
        assert_eq!(flag(json!(false)), Ok(Some(false)));
        assert_eq!(flag(json!(null)), Ok(None));
        assert_eq!(sample(json!({})).unwrap().flag, None);
        assert_eq!(
            flag(json!("yes")),
            Err("Invalid value for field `flag`: expected true or false".to_owned())
        );
        assert!(flag(json!(1)).is_err());
        assert_eq!(int(json!("7")), Ok(Some(7)));
        assert_eq!(int(json!(7)), Ok(Some(7)));
        assert_eq!(int(json!(" 12 ")), Ok(Some(12)));
        assert_eq!(int(json!("")), Ok(None));
        assert!(int(json!("7x")).is_err());
        assert!(int(json!(1.5)).is_err());
        assert!(int(json!("99999999999999999999")).is_err());
    }

    #[test]
    fn ids_text_and_money() {
        let id = |v: Value| sample(json!({ "id": v })).map(|s| s.id.get());
        assert_eq!(id(json!(" prod_123 ")), Ok(Some("prod_123".to_owned())));
        assert_eq!(id(json!("")), Ok(None));
        assert!(id(json!("prod/../x")).is_err());
        assert!(id(json!(5)).is_err());
        assert_eq!(
            sample(json!({}))
                .unwrap()
                .id
                .required("id")
                .unwrap_err()
                .to_string(),
            "Missing field `id`"
        );
        assert_eq!(optional_line("f", Some("None"), 10).unwrap(), None);
        assert!(optional_line("f", Some("a\nb"), 10).is_err());
        assert!(text("f", Some("a\u{7}b"), 10).is_err());
        assert!(text("f", Some("prod_123"), 3).is_err());
        let money = |v: Value| sample(json!({ "money": v })).unwrap().money;
        assert_eq!(money(json!("19.99")).minor_units("m", "usd").unwrap(), 1999);
        assert_eq!(money(json!(0.29)).minor_units("m", "usd").unwrap(), 29);
        assert_eq!(
            money(json!("999999.99")).minor_units("m", "usd").unwrap(),
            99_999_999
        );
        assert!(money(json!(null)).minor_units("m", "usd").is_err());
        assert_eq!(
            sample(json!({ "money": true })).err().unwrap(),
            "`money` must be an amount in dollars, such as 9.99"
        );
    }

    #[test]
    fn metadata_names_its_field() {
        let many: Map<String, Value> = (0..51).map(|i| (format!("k{i}"), json!("v"))).collect();
        assert_eq!(
            sample(json!({ "metadata": many })).err().unwrap(),
            "`metadata` may have at most 50 keys"
        );
        assert!(sample(json!({ "metadata": [1] })).is_err());
        let read = sample(json!({ "metadata": { "a": "x", "b": 2 } })).unwrap();
        assert_eq!(
            read.metadata.unwrap().pairs(),
            [
                ("a".to_owned(), "x".to_owned()),
                ("b".to_owned(), "2".to_owned())
            ]
        );
    }
}

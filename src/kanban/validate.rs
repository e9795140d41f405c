//! The rules for board, column and ticket fields; each failure names the field.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

use crate::error::AppError;

pub const NAME_MAX: usize = 100;
pub const TITLE_MAX: usize = 200;
pub const DESCRIPTION_MAX: usize = 10_000;

/// A ticket description: up to 10 000 characters; line breaks and tabs are kept, other
/// control characters refused.
pub fn description(value: &str) -> Result<String, AppError> {
    if value.chars().count() > DESCRIPTION_MAX {
        return Err(AppError::invalid(format!(
            "description must be at most {DESCRIPTION_MAX} characters"
        )));
    }
    if value
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(AppError::invalid(
            "description must not contain control characters other than line breaks and tabs",
        ));
    }
    Ok(value.to_owned())
}

/// An integer as the old client sends it: a JSON number, or a string of digits typed
/// into a form field (`"position": "2"`). Anything else (fractions, booleans, text,
/// numbers beyond 64 bits) is refused, naming the field. A number written with a zero
/// fraction or an exponent (`2.0`, `1e3`) is the integer it equals, as JSON Schema's
/// `integer` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Int(pub i64);

/// The largest value an [`Int`] can hold, as text.
const INT_MAX: &str = "9223372036854775807";

/// A regular expression (ECMA-262 and Python alike) matching exactly the digit strings
/// whose value is at most `max` (a string of digits with no leading zero), leading
/// zeros allowed: up to `max.len() - 1` significant digits, or as many as `max` and,
/// digit by digit, no greater.
fn digits_up_to(max: &str) -> String {
    let mut alternatives = vec![format!("[0-9]{{1,{}}}", max.len() - 1)];
    for (i, d) in max.bytes().enumerate() {
        if d > b'0' {
            let below = if d == b'1' {
                "0".to_owned()
            } else {
                format!("[0-{}]", char::from(d - 1))
            };
            let rest = max.len() - i - 1;
            alternatives.push(format!("{}{below}[0-9]{{{rest}}}", &max[..i]));
        }
    }
    alternatives.push(max.to_owned());
    format!("0*(?:{})", alternatives.join("|"))
}

/// The pattern of an [`Int`] sent as a string: what [`Int`]'s deserializer accepts, for
/// the values at least 0 (spaces around the digits are ignored).
pub fn int_pattern() -> String {
    format!("^[ \\t\\r\\n]*{}[ \\t\\r\\n]*$", digits_up_to(INT_MAX))
}

/// In the API description an [`Int`] is a whole number from 0 up, as a JSON integer or
/// a string of digits: every field that takes one refuses negative values (a negative
/// id names nothing, a negative place is refused).
impl PartialSchema for Int {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                    .minimum(Some(0))
                    .maximum(Some(i64::MAX)),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(int_pattern()))
                    .description(Some("The same number as a string of digits")),
            )
            .description(Some(
                "A whole number from 0 to 2^63 − 1: a JSON integer, or the same as a \
                 string of digits, as a form field sends it (`2` or `\"2\"`).",
            ))
            .examples([serde_json::json!(2), serde_json::json!("2")])
            .into()
    }
}

impl ToSchema for Int {
    fn name() -> std::borrow::Cow<'static, str> {
        "WholeNumber".into()
    }
}

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(IntVisitor)
    }
}

struct IntVisitor;

impl Visitor<'_> for IntVisitor {
    type Value = Int;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an integer, as a number or a string of digits")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Int, E> {
        Ok(Int(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Int, E> {
        // 2^63 is exactly representable; every whole f64 below it and from -2^63 up
        // converts without loss.
        const LIMIT: f64 = 9_223_372_036_854_775_808.0;
        if v.fract() == 0.0 && (-LIMIT..LIMIT).contains(&v) {
            return Ok(Int(v as i64));
        }
        Err(E::invalid_value(de::Unexpected::Float(v), &self))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Int, E> {
        i64::try_from(v)
            .map(Int)
            .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Int, E> {
        let digits = v.trim();
        let unsigned = digits.strip_prefix('-').unwrap_or(digits);
        if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
            return Err(E::invalid_value(de::Unexpected::Str(v), &self));
        }
        digits
            .parse()
            .map(Int)
            .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
    }
}

/// A requested place among siblings (a column's `position`, a ticket's `order`): a
/// whole number of at least 0 (out-of-range values are clamped by the store, which
/// knows how many siblings there are).
pub fn rank(field: &str, value: Option<Int>) -> Result<Option<i64>, AppError> {
    match value {
        Some(Int(p)) if p < 0 => Err(AppError::invalid(format!(
            "{field} must be a whole number of at least 0"
        ))),
        other => Ok(other.map(|Int(p)| p)),
    }
}

/// A column named in a body (a ticket's `position` or `column_id`): an id, so never
/// negative. One that names no column is the store's 404.
pub fn column(field: &str, value: Option<Int>) -> Result<Option<i64>, AppError> {
    match value {
        Some(Int(id)) if id < 0 => Err(AppError::invalid(format!("{field} must be a column id"))),
        other => Ok(other.map(|Int(id)| id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_keep_line_breaks() {
        assert!(description("").is_ok());
        assert!(description("one\ntwo\tthree\r\n").is_ok());
        assert!(description("bell\u{7}").is_err());
        assert!(description(&"x".repeat(DESCRIPTION_MAX + 1)).is_err());
    }

    #[test]
    fn ranks_are_never_negative() {
        assert_eq!(rank("order", None).unwrap(), None);
        assert_eq!(rank("order", Some(Int(0))).unwrap(), Some(0));
        assert!(rank("order", Some(Int(-1))).is_err());
    }

    #[test]
    fn integers_arrive_as_numbers_or_digit_strings() {
        let int = |text: &str| serde_json::from_str::<Int>(text).map(|Int(i)| i);
        assert_eq!(int("2").unwrap(), 2);
        assert_eq!(int("\"2\"").unwrap(), 2);
        assert_eq!(int("\" 17 \"").unwrap(), 17);
        assert_eq!(int("\"-3\"").unwrap(), -3);
        assert_eq!(int("2.0").unwrap(), 2);
        assert_eq!(int("1e3").unwrap(), 1000);
        for bad in [
            "1.5",
            "1e19",
            "-1e300",
            "true",
            "\"\"",
            "\"two\"",
            "\"1e3\"",
            "18446744073709551615",
            "\"99999999999999999999\"",
            "[]",
            "{}",
            "\"+1\"",
            "\"-\"",
        ] {
            assert!(int(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_digit_pattern_stops_at_the_largest_int() {
        let pattern = digits_up_to(INT_MAX);
        assert!(
            pattern.contains("922337203685477580[0-6][0-9]{0}"),
            "{pattern}"
        );
        assert!(pattern.starts_with("0*(?:[0-9]{1,18}|[0-8][0-9]{18}|9[0-1][0-9]{17}|"));
        assert!(pattern.ends_with("|9223372036854775807)"));
        assert_eq!(digits_up_to("10"), "0*(?:[0-9]{1,1}|0[0-9]{1}|10)");
    }
}

//! The rules for board, column and ticket fields; each failure names the field.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

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
/// numbers beyond 64 bits) is refused, naming the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Int(pub i64);

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
        for bad in [
            "1.5",
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
}

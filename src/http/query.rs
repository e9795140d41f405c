//! The one rule for paging query parameters, on every route that pages: `page` and
//! `per_page` are positive integers (a missing or empty one takes its default,
//! `per_page` is capped), `before_id` is a positive integer; anything else is a 400
//! naming the parameter, never a silent clamp.

use crate::error::AppError;

/// A positive integer query parameter, with its default and ceiling.
pub fn page_param(
    name: &str,
    value: Option<&str>,
    default: i64,
    max: i64,
) -> Result<i64, AppError> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 1 => Ok(n.min(max)),
            _ => Err(AppError::invalid(format!(
                "{name} must be a positive integer"
            ))),
        },
    }
}

/// The `before_id` of keyset paging, when given.
pub fn before_id(value: Option<&str>) -> Result<Option<i64>, AppError> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 1 => Ok(Some(n)),
            _ => Err(AppError::invalid("before_id must be a positive integer")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_parameters_follow_one_rule() {
        assert_eq!(page_param("page", None, 1, 10).unwrap(), 1);
        assert_eq!(page_param("page", Some(" "), 1, 10).unwrap(), 1);
        assert_eq!(page_param("per_page", Some("500"), 20, 100).unwrap(), 100);
        for bad in ["-1", "0", "AAA", "1.5"] {
            assert!(page_param("page", Some(bad), 1, 10).is_err(), "{bad}");
            assert!(before_id(Some(bad)).is_err(), "{bad}");
        }
        assert_eq!(before_id(Some("42")).unwrap(), Some(42));
        assert_eq!(before_id(None).unwrap(), None);
    }
}

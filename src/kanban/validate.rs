//! The rules for board, column and ticket fields; each failure names the field.

use crate::error::AppError;

pub const NAME_MAX: usize = 100;
pub const TITLE_MAX: usize = 200;
pub const DESCRIPTION_MAX: usize = 10_000;

/// A board or column name, or a ticket title: 1 to `max` characters after trimming,
/// no control characters (PostgreSQL refuses NUL in text, and none belongs in a label).
pub fn label(field: &str, value: &str, max: usize) -> Result<String, AppError> {
    let value = value.trim();
    let length = value.chars().count();
    if length == 0 || length > max {
        return Err(AppError::invalid(format!(
            "{field} must be 1 to {max} characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(AppError::invalid(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(value.to_owned())
}

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

/// A requested position: a whole number of at least 0 (out-of-range values are clamped
/// by the store, which knows how many siblings there are).
pub fn position(value: Option<i64>) -> Result<Option<i64>, AppError> {
    match value {
        Some(p) if p < 0 => Err(AppError::invalid(
            "position must be a whole number of at least 0",
        )),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_count_characters_not_bytes() {
        assert_eq!(label("title", "  To do ", 200).unwrap(), "To do");
        assert!(label("title", &"é".repeat(200), 200).is_ok());
        assert!(label("title", &"é".repeat(201), 200).is_err());
        assert!(label("name", "   ", 100).is_err());
        assert!(label("name", "a\0b", 100).is_err());
    }

    #[test]
    fn descriptions_keep_line_breaks() {
        assert!(description("").is_ok());
        assert!(description("one\ntwo\tthree\r\n").is_ok());
        assert!(description("bell\u{7}").is_err());
        assert!(description(&"x".repeat(DESCRIPTION_MAX + 1)).is_err());
    }

    #[test]
    fn positions_are_never_negative() {
        assert_eq!(position(None).unwrap(), None);
        assert_eq!(position(Some(0)).unwrap(), Some(0));
        assert!(position(Some(-1)).is_err());
    }
}

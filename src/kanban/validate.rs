//! The rules for board, column and ticket fields; each failure names the field.

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

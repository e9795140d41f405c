//! The rule for one-line text fields that every capability shares.

use crate::error::AppError;

/// A one-line label (a person's name, a role, a board, a ticket title): 1 to `max`
/// characters after trimming, no control characters (PostgreSQL refuses NUL in text,
/// and none belongs in a label). Returns the trimmed text.
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
}

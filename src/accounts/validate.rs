//! The rules for account fields and passwords; each failure says which rule failed.

use std::collections::HashSet;
use std::sync::LazyLock;

use crate::config::PasswordPolicy;
use crate::error::AppError;

/// The bundled list of common passwords; see the header of the file for its source.
static COMMON_PASSWORDS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("common-passwords.txt")
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
});

/// Whether the password is a listed common password or a thin disguise of one:
/// other capitals, symbols around it, digits after it, `@`/`$` and digits for letters
/// (`P@ssw0rd1!` is `password`).
pub fn is_common_password(password: &str) -> bool {
    let list = &*COMMON_PASSWORDS;
    let lower = password.to_lowercase();
    if list.contains(lower.as_str()) {
        return true;
    }
    let swapped: String = lower
        .chars()
        .map(|c| match c {
            '@' => 'a',
            '$' => 's',
            c => c,
        })
        .collect();
    // `$` may stand for an `s` or merely be the symbol the policy asks for: both readings.
    [lower, swapped].iter().any(|base| {
        let alnum: String = base.chars().filter(|c| c.is_alphanumeric()).collect();
        let core = alnum.trim_end_matches(|c: char| c.is_ascii_digit());
        let unleet = |one: char| -> String {
            core.chars()
                .map(|c| match c {
                    '0' => 'o',
                    '1' => one,
                    '3' => 'e',
                    '4' => 'a',
                    '5' => 's',
                    '7' => 't',
                    c => c,
                })
                .collect()
        };
        [alnum.clone(), core.to_owned(), unleet('i'), unleet('l')]
            .iter()
            .any(|form| form.chars().count() >= 4 && list.contains(form.as_str()))
    })
}

/// The longest first or last name.
pub const NAME_MAX: usize = 100;
const EMAIL_MAX: usize = 254;

/// 3 to 32 of ASCII letters, digits, `.`, `_` and `-`.
pub fn username(value: &str) -> Result<String, AppError> {
    let value = value.trim();
    let ok = (3..=32).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !ok {
        return Err(AppError::invalid(
            "username must be 3 to 32 characters of letters, digits, '.', '_' and '-'",
        ));
    }
    Ok(value.to_owned())
}

pub fn email(value: &str) -> Result<String, AppError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(AppError::invalid("email is required"));
    }
    if value.len() > EMAIL_MAX || value.parse::<lettre::Address>().is_err() {
        return Err(AppError::invalid("email is not a valid email address"));
    }
    Ok(value.to_owned())
}

/// Checks a new password against the policy. The strength estimate is CPU work that
/// grows with length, so it runs after the cheap checks and off the async threads.
pub async fn password(
    policy: &PasswordPolicy,
    password: &str,
    username: &str,
    email: &str,
) -> Result<(), AppError> {
    let mut failed = Vec::new();
    let length = password.chars().count();
    if length < policy.min_length || length > policy.max_length {
        failed.push(format!(
            "be {} to {} characters long",
            policy.min_length, policy.max_length
        ));
    }
    if !password.chars().any(char::is_lowercase) {
        failed.push("contain a lower-case letter".to_owned());
    }
    if !password.chars().any(char::is_uppercase) {
        failed.push("contain an upper-case letter".to_owned());
    }
    if !password.chars().any(|c| c.is_ascii_digit()) {
        failed.push("contain a digit".to_owned());
    }
    if !password.chars().any(|c| !c.is_alphanumeric()) {
        failed.push("contain a character that is not a letter or digit".to_owned());
    }
    let lowered = password.to_lowercase();
    let local_part = email.split('@').next().unwrap_or(email).to_lowercase();
    if lowered == username.to_lowercase()
        || lowered == email.to_lowercase()
        || (local_part.len() >= 3 && lowered.contains(&local_part))
        || (username.len() >= 3 && lowered.contains(&username.to_lowercase()))
    {
        failed.push("not contain your username or email".to_owned());
    }
    if !failed.is_empty() {
        return Err(AppError::invalid(format!(
            "Password must {}",
            failed.join(", ")
        )));
    }
    if is_common_password(password) {
        return Err(AppError::invalid(
            "Password is too easy to guess: it is one of the most common passwords, or a variation of one",
        ));
    }
    let inputs = [username.to_owned(), email.to_owned()];
    let password = password.to_owned();
    let weak = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let estimate = zxcvbn::zxcvbn(&password, &refs);
        (estimate.score() < zxcvbn::Score::Three).then(|| {
            estimate
                .feedback()
                .and_then(|f| f.warning())
                .map(|w| w.to_string())
                .unwrap_or_default()
        })
    })
    .await
    .map_err(AppError::internal)?;
    match weak {
        None => Ok(()),
        Some(warning) if warning.is_empty() => Err(AppError::invalid(
            "Password is too easy to guess; use a longer mix of unrelated words",
        )),
        Some(warning) => Err(AppError::invalid(format!(
            "Password is too easy to guess: {}",
            warning.trim_end_matches('.')
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> PasswordPolicy {
        PasswordPolicy {
            min_length: 8,
            max_length: 128,
        }
    }

    #[tokio::test]
    async fn the_policy_names_every_failed_rule() {
        let e = password(&policy(), "abc", "alice", "alice@example.com")
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("8 to 128"), "{e}");
        assert!(e.contains("upper-case"), "{e}");
        assert!(e.contains("digit"), "{e}");
        assert!(e.contains("not a letter or digit"), "{e}");
    }

    #[tokio::test]
    async fn unicode_symbols_count_and_common_passwords_do_not_pass() {
        password(
            &policy(),
            "Blue§Kettle-Orbit7",
            "alice",
            "alice@example.com",
        )
        .await
        .unwrap();
        let e = password(&policy(), "Password1!", "alice", "alice@example.com")
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("too easy to guess"), "{e}");
        let e = password(&policy(), "Alice-Rocks-99!x", "alice", "alice@example.com")
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("username or email"), "{e}");
    }

    #[test]
    fn common_passwords_and_their_disguises_are_recognised() {
        for weak in [
            "password",
            "Password1!",
            "P@ssw0rd1!",
            "Qwerty123!",
            "Dragon2024#",
            "Iloveyou!1",
            "Monkey-99",
            "Sunshine$77",
        ] {
            assert!(is_common_password(weak), "{weak}");
        }
        for strong in [STRONG, "Blue§Kettle-Orbit7"] {
            assert!(!is_common_password(strong), "{strong}");
        }
    }

    const STRONG: &str = "Granite-Violin-42-Lantern";

    #[tokio::test]
    async fn a_disguised_common_password_is_refused_with_a_reason() {
        let e = password(&policy(), "Sunshine$77", "alice", "alice@example.com")
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("most common passwords"), "{e}");
    }

    #[test]
    fn usernames_and_emails() {
        assert!(username("al").is_err());
        assert!(username("alice smith").is_err());
        assert_eq!(username(" Alice.S-1 ").unwrap(), "Alice.S-1");
        assert!(email("not-an-email").is_err());
        assert!(email("a@b.example").is_ok());
        assert!(email(&format!("{}@x.io", "a".repeat(260))).is_err());
        assert!(crate::text::label("first_name", "  ", NAME_MAX).is_err());
        assert!(crate::text::label("first_name", &"x".repeat(101), NAME_MAX).is_err());
    }
}

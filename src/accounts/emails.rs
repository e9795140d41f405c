//! The emails of account recovery: the reset link, and the notice that a password
//! was changed.

use askama::Template;

use crate::error::AppError;
use crate::mail::Email;

#[derive(Template)]
#[template(path = "email/reset_password.txt")]
struct ResetText<'a> {
    first_name: &'a str,
    link: &'a str,
}

#[derive(Template)]
#[template(path = "email/reset_password.html")]
struct ResetHtml<'a> {
    first_name: &'a str,
    link: &'a str,
}

#[derive(Template)]
#[template(path = "email/password_changed.txt")]
struct ChangedText<'a> {
    first_name: &'a str,
    when: &'a str,
    ip: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "email/password_changed.html")]
struct ChangedHtml<'a> {
    first_name: &'a str,
    when: &'a str,
    ip: Option<&'a str>,
}

pub fn reset_password(to: &str, first_name: &str, link: &str) -> Result<Email, AppError> {
    Ok(Email {
        to: to.to_owned(),
        subject: "Reset your password".to_owned(),
        text: ResetText { first_name, link }
            .render()
            .map_err(AppError::internal)?,
        html: ResetHtml { first_name, link }
            .render()
            .map_err(AppError::internal)?,
        link: Some(link.to_owned()),
    })
}

/// `when` is the ISO 8601 time of the change; `ip` where it came from, if known.
pub fn password_changed(
    to: &str,
    first_name: &str,
    when: &str,
    ip: Option<&str>,
) -> Result<Email, AppError> {
    Ok(Email {
        to: to.to_owned(),
        subject: "Your password was changed".to_owned(),
        text: ChangedText {
            first_name,
            when,
            ip,
        }
        .render()
        .map_err(AppError::internal)?,
        html: ChangedHtml {
            first_name,
            when,
            ip,
        }
        .render()
        .map_err(AppError::internal)?,
        link: None,
    })
}

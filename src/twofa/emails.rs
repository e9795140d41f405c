//! The email that carries a login code.

use askama::Template;

use crate::error::AppError;
use crate::mail::Email;

#[derive(Template)]
#[template(path = "email/login_code.txt")]
struct LoginCodeText<'a> {
    first_name: &'a str,
    code: &'a str,
}

#[derive(Template)]
#[template(path = "email/login_code.html")]
struct LoginCodeHtml<'a> {
    first_name: &'a str,
    code: &'a str,
}

pub fn login_code(to: &str, first_name: &str, code: &str) -> Result<Email, AppError> {
    Ok(Email {
        to: to.to_owned(),
        subject: "Your sign-in code".to_owned(),
        text: LoginCodeText { first_name, code }
            .render()
            .map_err(AppError::internal)?,
        html: LoginCodeHtml { first_name, code }
            .render()
            .map_err(AppError::internal)?,
        // No link, and the code is not one: the development backends log links.
        link: None,
    })
}

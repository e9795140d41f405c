//! A person in a real browser: signs up, verifies, signs in, turns on 2FA, signs out,
//! signs in with a code and with a recovery code, and resets a forgotten password.
//! Every screen on the way is photographed in both themes at two widths.

use fantoccini::Locator;

use super::browser::Browser;
use super::{ui_app, NEW_PASSWORD};
use crate::helpers::{Backend, PASSWORD};
use crate::twofa::{step_now, totp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_up_turns_on_2fa_and_recovers_their_password() {
    let app = ui_app(Backend::Sqlite).await;
    let Some(b) = Browser::start(&app.url("/")).await else {
        return;
    };

    // A browser opening the root lands on sign-in.
    b.open("/").await;
    b.at("/ui/login?next=%2Fui%2F").await;
    b.screenshots("login").await;

    b.click("Create an account").await;
    b.at("/ui/signup").await;
    b.screenshots("signup").await;
    b.fill("First name", "Nora").await;
    b.fill("Last name", "Quist").await;
    b.fill("Username", "nora").await;
    b.fill("Email", "nora@example.com").await;
    b.fill("Password", "short").await;
    // The rules tick off as she types: none of length, upper, digit, symbol is met.
    let met = b
        .client
        .find_all(Locator::Css(".rules li.met"))
        .await
        .unwrap();
    assert_eq!(met.len(), 1, "only the lower-case rule is met");
    b.click("Create account").await;
    // The server's verdict is next to the field; what she typed is kept but the password.
    b.sees("Password must").await;
    let kept = b.client.find(Locator::Id("f-email")).await.unwrap();
    assert_eq!(
        kept.prop("value").await.unwrap().unwrap(),
        "nora@example.com"
    );
    let pw = b.client.find(Locator::Id("f-password")).await.unwrap();
    assert_eq!(pw.prop("value").await.unwrap().unwrap(), "");
    b.screenshots("signup-errors").await;
    b.fill("Password", PASSWORD).await;
    b.click("Create account").await;
    b.at("/ui/login").await;
    b.sees("We have emailed you a link").await;
    b.screenshots("login-flash").await;

    // Not verified yet: sign-in says so.
    b.fill("Username or email", "nora").await;
    b.fill("Password", PASSWORD).await;
    b.click("Sign in").await;
    b.sees("Please verify your email address").await;

    let link = app.email_link("nora@example.com", "Verify").await;
    assert!(link.starts_with(&app.url("/ui/verify/")), "{link}");
    b.open(&link).await;
    b.screenshots("verify").await;
    b.click("Verify my email address").await;
    b.sees("Your email address is verified").await;
    // The link is used up: opening it again offers a new one.
    b.open(&link).await;
    b.click("Verify my email address").await;
    b.sees("invalid, has expired or has already been used")
        .await;
    b.screenshots("verify-failed").await;

    b.open("/ui/login").await;
    b.fill("Username or email", "nora@example.com").await;
    b.fill("Password", PASSWORD).await;
    b.click("Sign in").await;
    b.at("/ui/").await;
    b.sees("Welcome, Nora.").await;
    b.screenshots("dashboard").await;

    b.click("Profile").await;
    b.sees("Your details").await;
    b.screenshots("profile").await;

    b.open("/ui/security").await;
    b.sees("Where you are signed in").await;
    b.sees("this device").await;
    b.screenshots("security").await;

    // Two-factor: scan (read the key shown as text), confirm with a code.
    b.click("Turn on two-factor").await;
    b.at("/ui/security/2fa").await;
    let qr = b.client.find(Locator::Css(".qr svg")).await.unwrap();
    assert!(qr.is_displayed().await.unwrap());
    let secret = b.text_of("#totp-secret").await;
    b.screenshots("twofa-setup").await;
    b.fill("Code from the app", "000000").await;
    b.click("Turn on two-factor").await;
    b.sees("That code is not right").await;
    // The same secret is shown again: the app she scanned still works.
    assert_eq!(b.text_of("#totp-secret").await, secret);
    let step = step_now();
    b.fill("Code from the app", &totp(&secret, step)).await;
    b.click("Turn on two-factor").await;
    b.sees("They are shown only now.").await;
    let codes: Vec<String> = {
        let mut codes = Vec::new();
        for el in b
            .client
            .find_all(Locator::Css("#recovery-codes code"))
            .await
            .unwrap()
        {
            codes.push(el.text().await.unwrap());
        }
        codes
    };
    assert_eq!(codes.len(), 10);
    let download = b
        .client
        .find(Locator::Css("a[download]"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    assert!(download.starts_with("data:text/plain"));
    assert!(download.contains(&codes[0]));
    b.screenshots("recovery-codes").await;

    // Sign out, then in again with a code from the app.
    b.open("/ui/").await;
    b.client
        .find(Locator::Css(".user-menu summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.screenshots("user-menu").await;
    b.click("Sign out").await;
    b.sees("You are signed out.").await;
    b.fill("Username or email", "nora").await;
    b.fill("Password", PASSWORD).await;
    b.click("Sign in").await;
    b.at("/ui/login/code").await;
    b.screenshots("login-code").await;
    b.fill("Code", "123").await;
    b.click("Verify and sign in").await;
    b.sees("That code is not right").await;
    // The step after the one that turned 2FA on: a used step is never accepted again.
    b.fill("Code", &totp(&secret, step + 1)).await;
    b.click("Verify and sign in").await;
    b.at("/ui/").await;
    b.sees("You are signed in.").await;

    // And with a recovery code.
    b.open("/ui/").await;
    b.client
        .find(Locator::Css(".user-menu summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.click("Sign out").await;
    b.fill("Username or email", "nora").await;
    b.fill("Password", PASSWORD).await;
    b.click("Sign in").await;
    b.fill("Code", &codes[0]).await;
    b.click("Verify and sign in").await;
    b.at("/ui/").await;

    // Forgotten password: the emailed link opens the reset page.
    b.open("/ui/").await;
    b.client
        .find(Locator::Css(".user-menu summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.click("Sign out").await;
    b.click("Forgot your password?").await;
    b.screenshots("forgot").await;
    b.fill("Email", "nora@example.com").await;
    b.click("Send the link").await;
    b.sees("If an account exists for that email").await;
    let link = app
        .email_link("nora@example.com", "Reset your password")
        .await;
    assert!(link.starts_with(&app.url("/ui/reset/")), "{link}");
    b.open(&link).await;
    b.screenshots("reset").await;
    b.fill("New password", NEW_PASSWORD).await;
    b.fill("New password again", "something else").await;
    b.click("Set the new password").await;
    b.sees("The two passwords differ.").await;
    b.fill("New password", NEW_PASSWORD).await;
    b.fill("New password again", NEW_PASSWORD).await;
    b.click("Set the new password").await;
    b.sees("Your password has been changed").await;

    b.fill("Username or email", "nora").await;
    b.fill("Password", PASSWORD).await;
    b.click("Sign in").await;
    b.sees("Invalid credentials").await;
    b.fill("Password", NEW_PASSWORD).await;
    b.click("Sign in").await;
    b.fill("Code", &codes[1]).await;
    b.click("Verify and sign in").await;
    b.at("/ui/").await;

    // The theme switch works without script and is remembered.
    b.open("/ui/security").await;
    b.click("Theme: auto").await;
    b.at("/ui/security").await;
    let theme = b
        .client
        .find(Locator::Css("html"))
        .await
        .unwrap()
        .attr("data-theme")
        .await
        .unwrap();
    assert_eq!(theme.as_deref(), Some("dark"));

    // Error pages.
    b.open("/ui/no-such-page").await;
    b.sees("Page not found").await;
    b.screenshots("not-found").await;
}

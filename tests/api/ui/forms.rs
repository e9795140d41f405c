//! The pages as a browser without JavaScript uses them: plain HTTP, following links
//! and submitting the forms found in the HTML, redirects followed by hand.

use reqwest::StatusCode;
use serde_json::json;

use super::{ui_app, NEW_PASSWORD};
use crate::helpers::{new_client, wait_for_file_email, Backend, TestApp, PASSWORD};
use crate::on_both_databases;
use crate::twofa::{step_now, totp};

on_both_databases!(
    every_form_works_without_javascript,
    two_factor_and_sessions_without_javascript,
    forms_without_their_token_are_refused,
    pages_carry_their_headers_and_errors_are_pages,
);

/// One `<form>` of a page: where it posts and its fields with their values.
struct HtmlForm {
    action: String,
    fields: Vec<(String, String)>,
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let needle = format!(" {name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let end = tag[start..].find('"')? + start;
    Some(
        tag[start..end]
            .replace("&amp;", "&")
            .replace("&#38;", "&")
            .replace("&#x2f;", "/"),
    )
}

fn forms(html: &str) -> Vec<HtmlForm> {
    html.split("<form")
        .skip(1)
        .map(|chunk| {
            let body = chunk.split("</form>").next().unwrap();
            let open = &body[..body.find('>').unwrap()];
            // Radio buttons and checkboxes are sent only when checked.
            let mut fields: Vec<(String, String)> = body
                .split("<input")
                .skip(1)
                .filter_map(|input| {
                    let tag = &input[..input.find('>').unwrap()];
                    let kind = attr(tag, "type").unwrap_or_default();
                    if (kind == "radio" || kind == "checkbox") && !tag.contains(" checked") {
                        return None;
                    }
                    Some((attr(tag, "name")?, attr(tag, "value").unwrap_or_default()))
                })
                .collect();
            // A select sends its selected option (or its first); a textarea its text.
            for select in body.split("<select").skip(1) {
                let tag = &select[..select.find('>').unwrap()];
                let options = &select[..select.find("</select>").unwrap()];
                let chosen = options
                    .split("<option")
                    .skip(1)
                    .find(|o| o[..o.find('>').unwrap()].contains(" selected"))
                    .or_else(|| options.split("<option").nth(1));
                if let (Some(name), Some(option)) = (attr(tag, "name"), chosen) {
                    let value = attr(&option[..option.find('>').unwrap()], "value");
                    fields.push((name, value.unwrap_or_default()));
                }
            }
            for area in body.split("<textarea").skip(1) {
                let open = area.find('>').unwrap();
                let text = &area[open + 1..area.find("</textarea>").unwrap()];
                if let Some(name) = attr(&area[..open], "name") {
                    fields.push((name, text.replace("&amp;", "&").replace("&#38;", "&")));
                }
            }
            HtmlForm {
                action: attr(open, "action").unwrap(),
                fields,
            }
        })
        .collect()
}

/// The `href` of the link whose text contains `text`.
fn link(html: &str, text: &str) -> String {
    html.split("<a ")
        .skip(1)
        .find(|a| {
            let inner = &a[a.find('>').unwrap() + 1..a.find("</a>").unwrap()];
            inner.contains(text)
        })
        .and_then(|a| attr(&format!(" {}", &a[..a.find('>').unwrap()]), "href"))
        .unwrap_or_else(|| panic!("no link {text:?} in {html}"))
}

/// A browser without JavaScript: a cookie jar, links and forms.
pub(super) struct Walker {
    client: reqwest::Client,
    base: String,
    pub(super) status: StatusCode,
    pub(super) path: String,
    pub(super) html: String,
}

impl Walker {
    pub(super) fn new(app: &TestApp) -> Self {
        Walker {
            client: new_client(),
            base: app.url(""),
            status: StatusCode::OK,
            path: String::new(),
            html: String::new(),
        }
    }

    async fn land(&mut self, mut res: reqwest::Response) {
        while res.status() == StatusCode::SEE_OTHER {
            let to = res.headers()["location"].to_str().unwrap().to_owned();
            // A redirect to another host (Stripe's checkout page) is where a browser
            // would leave this site: the walker stops there, the address in `path`.
            if to.starts_with("https://") || to.starts_with("http://") {
                self.status = res.status();
                self.path = to;
                self.html = String::new();
                return;
            }
            res = self
                .client
                .get(format!("{}{to}", self.base))
                .header("accept", "text/html")
                .send()
                .await
                .unwrap();
        }
        self.status = res.status();
        self.path = res.url().path().to_owned();
        if let Some(q) = res.url().query() {
            self.path = format!("{}?{q}", self.path);
        }
        self.html = res.text().await.unwrap();
    }

    pub(super) async fn open(&mut self, url: &str) {
        let url = if url.starts_with("http") {
            url.to_owned()
        } else {
            format!("{}{url}", self.base)
        };
        let res = self
            .client
            .get(url)
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        self.land(res).await;
    }

    pub(super) async fn follow(&mut self, text: &str) {
        let href = link(&self.html, text);
        self.open(&href).await;
    }

    /// Submits the form posting to `action` with its own values, `values` typed in.
    pub(super) async fn submit(&mut self, action: &str, values: &[(&str, &str)]) {
        let form = forms(&self.html)
            .into_iter()
            .find(|f| f.action == action)
            .unwrap_or_else(|| panic!("no form to {action} on {}:\n{}", self.path, self.html));
        let mut fields = form.fields;
        for (name, value) in values {
            let slot = fields
                .iter_mut()
                .find(|(n, _)| n == name)
                .unwrap_or_else(|| panic!("no field {name} in the form to {action}"));
            slot.1 = (*value).to_owned();
        }
        let res = self
            .client
            .post(format!("{}{action}", self.base))
            .form(&fields)
            .send()
            .await
            .unwrap();
        self.land(res).await;
    }

    /// Submits the form posting to `action` by pressing its button `name`=`value`,
    /// which a browser adds to the form's own fields.
    pub(super) async fn press(&mut self, action: &str, name: &str, value: &str) {
        let form = forms(&self.html)
            .into_iter()
            .find(|f| f.action == action)
            .unwrap_or_else(|| panic!("no form to {action} on {}:\n{}", self.path, self.html));
        assert!(
            self.html
                .contains(&format!("name=\"{name}\" value=\"{value}\"")),
            "no button {name}={value} on {}",
            self.path
        );
        let mut fields = form.fields;
        fields.push((name.to_owned(), value.to_owned()));
        let res = self
            .client
            .post(format!("{}{action}", self.base))
            .form(&fields)
            .send()
            .await
            .unwrap();
        self.land(res).await;
    }

    /// Posts `fields` to `action` with the page's form token, as a hand-made or
    /// tampered form would: for actions the page does not offer.
    pub(super) async fn post(&mut self, action: &str, fields: &[(&str, &str)]) {
        self.post_accepting(action, fields, "text/html").await;
    }

    /// Posts `fields` to `action` with the CSRF token of the page it is on, as a
    /// script of the page would, asking for `accept`; lands where the answer leads.
    pub(super) async fn post_accepting(
        &mut self,
        action: &str,
        fields: &[(&str, &str)],
        accept: &str,
    ) {
        let marker = "name=\"csrf_token\" value=\"";
        let start = self.html.find(marker).expect("a page with a form") + marker.len();
        let token = self.html[start..start + self.html[start..].find('"').unwrap()].to_owned();
        let mut body = vec![("csrf_token", token.as_str())];
        body.extend_from_slice(fields);
        let res = self
            .client
            .post(format!("{}{action}", self.base))
            .header("accept", accept)
            .form(&body)
            .send()
            .await
            .unwrap();
        self.land(res).await;
    }

    pub(super) fn sees(&self, text: &str) {
        assert!(
            self.html.contains(text),
            "{text:?} not on {} ({}):\n{}",
            self.path,
            self.status,
            self.html
        );
    }
}

async fn every_form_works_without_javascript(backend: Backend) {
    let app = ui_app(backend).await;
    let mut w = Walker::new(&app);
    w.open("/").await;
    assert_eq!(w.path, "/ui/login?next=%2Fui%2F");

    w.follow("Create an account").await;
    assert_eq!(w.path, "/ui/signup");
    let typed = "Sup3r-Secret-Distinct-9";
    let signup = [
        ("first_name", "Olga"),
        ("last_name", "Berg"),
        ("username", "olga"),
        ("email", "olga-at-example"),
        ("password", typed),
    ];
    w.submit("/ui/signup", &signup).await;
    assert_eq!(w.status, StatusCode::BAD_REQUEST);
    w.sees("Email is not a valid email address");
    w.sees("value=\"olga-at-example\"");
    assert!(!w.html.contains(typed), "a password is never sent back");
    let mut signup = signup;
    signup[3].1 = "olga@example.com";
    signup[4].1 = PASSWORD;
    w.submit("/ui/signup", &signup).await;
    assert_eq!(w.path, "/ui/login");
    w.sees("We have emailed you a link");

    let verify = app.email_link("olga@example.com", "Verify").await;
    w.open(&verify).await;
    let action = verify.trim_start_matches(&app.url(""));
    w.submit(action, &[]).await;
    w.sees("Your email address is verified");
    // Used up: the page says so and offers a new link.
    w.open(&verify).await;
    w.submit(action, &[]).await;
    assert_eq!(w.status, StatusCode::BAD_REQUEST);
    w.submit("/ui/verify-again", &[("email", "olga@example.com")])
        .await;
    w.sees("If an unverified account uses that email address");
    // A hostile place to come back to is never followed: a header injection is
    // refused with a page, another host is replaced by the dashboard.
    w.open("/ui/login?next=%2Fui%2F%0d%0aSet-Cookie:%20x=1")
        .await;
    assert_eq!(w.status, StatusCode::BAD_REQUEST);
    w.sees("must not contain control characters");
    w.open("/ui/login?next=%2F%2Fevil.example%2Fui%2F").await;
    w.sees("name=\"next\" value=\"/ui/\"");

    w.submit(
        "/ui/login",
        &[("username_or_email", "olga"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(w.path, "/ui/");
    w.sees("Welcome, Olga.");

    w.follow("Profile").await;
    w.submit(
        "/ui/profile",
        &[("first_name", "Olga Marie!"), ("username", "")],
    )
    .await;
    assert_eq!(w.status, StatusCode::BAD_REQUEST);
    w.sees("aria-invalid=\"true\"");
    w.sees("Username");
    w.sees("value=\"Olga Marie!\"");
    w.submit(
        "/ui/profile",
        &[("first_name", "Olga-Marie"), ("username", "olga")],
    )
    .await;
    w.sees("Your profile is saved.");
    w.sees("value=\"Olga-Marie\"");

    w.follow("Security").await;
    w.sees("this device");
    w.submit("/ui/security/sessions/end-others", &[]).await;
    w.sees("There were no other sessions.");

    w.follow("Theme: auto").await;
    assert_eq!(w.path, "/ui/security");
    w.sees("data-theme=\"dark\"");

    w.submit("/ui/logout", &[]).await;
    w.sees("You are signed out.");
    w.open("/ui/profile").await;
    assert_eq!(w.path, "/ui/login?next=%2Fui%2Fprofile");

    w.follow("Forgot your password?").await;
    w.submit("/ui/forgot", &[("email", "olga@example.com")])
        .await;
    w.sees("If an account exists for that email");
    let reset = app
        .email_link("olga@example.com", "Reset your password")
        .await;
    w.open(&reset).await;
    let action = reset.trim_start_matches(&app.url(""));
    w.submit(action, &[("password", "weak"), ("confirm", "weak")])
        .await;
    assert_eq!(w.status, StatusCode::BAD_REQUEST);
    w.sees("Password must");
    w.submit(
        action,
        &[("password", NEW_PASSWORD), ("confirm", NEW_PASSWORD)],
    )
    .await;
    w.sees("Your password has been changed");
    w.submit(
        "/ui/login",
        &[
            ("username_or_email", "olga@example.com"),
            ("password", NEW_PASSWORD),
        ],
    )
    .await;
    assert_eq!(w.path, "/ui/");
}

async fn forms_without_their_token_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let anonymous = new_client();
    // The sign-in form, posted from elsewhere: no token, or one not bound to the cookie.
    for body in [
        vec![("username_or_email", "x"), ("password", "y")],
        vec![
            ("username_or_email", "x"),
            ("password", "y"),
            ("csrf_token", "forged"),
        ],
    ] {
        let res = anonymous
            .post(app.url("/ui/login"))
            .form(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        assert!(res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        assert!(res.text().await.unwrap().contains("security token"));
    }

    app.verified_user("pia").await;
    // With a session: the session's token is the one that counts.
    for body in [
        vec![("first_name", "P")],
        vec![("first_name", "P"), ("csrf_token", "nope")],
    ] {
        let res = app
            .client
            .post(app.url("/ui/profile"))
            .form(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        assert!(res.text().await.unwrap().contains("This form has expired"));
    }
    // Every form of every page refuses to work without its token.
    for path in [
        "/ui/logout",
        "/ui/security/2fa/enable",
        "/ui/security/2fa/disable",
        "/ui/security/sessions/end-others",
        "/ui/security/sessions/1/end",
    ] {
        let res = app
            .client
            .post(app.url(path))
            .form(&[("code", "1")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{path}");
    }
    // The API's rule is unchanged: a JSON call on the session needs the header.
    let res = app
        .client
        .post(app.url("/update_profile"))
        .json(&json!({"first_name": "P", "last_name": "Q", "email": "pia@example.com", "username": "pia"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        crate::helpers::json(res).await["message"],
        "CSRF token validation failed"
    );
    // Hostile and malformed bodies get a page, never a 500.
    let res = anonymous
        .post(app.url("/ui/signup"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("%%%=&&csrf_token=%zz")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error(), "{}", res.status());
    let res = anonymous
        .post(app.url("/ui/forgot"))
        .form(&[("email", "x".repeat(2 * 1024 * 1024))])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

async fn pages_carry_their_headers_and_errors_are_pages(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let client = new_client();
    let res = client.get(app.url("/ui/login")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(csp.contains("script-src 'self'") && csp.contains("style-src 'self'"));
    assert_eq!(res.headers()["cache-control"], "no-store");
    let html = res.text().await.unwrap();
    for reference in ["src=\"http", "href=\"http", "src=\"//", "href=\"//"] {
        assert!(!html.contains(reference), "no files from other hosts");
    }

    // Our own files, under content-hashed names, cached for a year.
    let mut total = html.len();
    let assets: Vec<String> = html
        .split("\"/ui/static/")
        .skip(1)
        .map(|rest| format!("/ui/static/{}", rest.split('"').next().unwrap()))
        .collect();
    assert_eq!(assets.len(), 2, "one stylesheet, one script");
    for (path, kind) in assets.iter().zip(["text/css", "text/javascript"]) {
        let res = client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with(kind));
        assert_eq!(
            res.headers()["cache-control"],
            "public, max-age=31536000, immutable"
        );
        total += res.bytes().await.unwrap().len();
    }
    assert!(total < 60 * 1024, "the first page weighs {total} bytes");

    for path in ["/ui/no-such-page", "/ui/static/ui.0000.css"] {
        let res = client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        assert!(res.text().await.unwrap().contains("<html"), "{path}");
    }
    // JSON routes keep their answers and headers.
    let res = client.get(app.url("/")).send().await.unwrap();
    assert_eq!(
        res.headers()["content-security-policy"],
        "default-src 'none'; frame-ancestors 'none'"
    );
    assert_eq!(
        crate::helpers::json(res).await,
        json!({"message": "Hello Friend!"})
    );
    let res = client.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(
        crate::helpers::expect_error(res, StatusCode::NOT_FOUND).await,
        "The requested URL was not found on the server."
    );
    let doc =
        crate::helpers::json(client.get(app.url("/openapi.json")).send().await.unwrap()).await;
    assert!(doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .all(|p| !p.starts_with("/ui")));

    // A server error is a page that names the request.
    app.verified_user("quin").await;
    sqlx::query("DROP TABLE twofa")
        .execute(app.state.db.writer())
        .await
        .unwrap();
    let res = app
        .client
        .get(app.url("/ui/security/2fa"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    let page = res.text().await.unwrap();
    assert!(
        page.contains("Something went wrong") && page.contains(&id),
        "{page}"
    );
}

/// The text between `before` and the next `<` of the page.
fn text_after(html: &str, before: &str) -> String {
    let start = html
        .find(before)
        .unwrap_or_else(|| panic!("no {before:?} in {html}"))
        + before.len();
    html[start..].split('<').next().unwrap().trim().to_owned()
}

async fn two_factor_and_sessions_without_javascript(backend: Backend) {
    let app = ui_app(backend).await;
    assert_eq!(app.signup("rita").await.status(), StatusCode::CREATED);
    let mut laptop = Walker::new(&app);
    let verify = app.email_link("rita@example.com", "Verify").await;
    laptop.open(&verify).await;
    laptop
        .submit(verify.trim_start_matches(&app.url("")), &[])
        .await;
    let sign_in = [("username_or_email", "rita"), ("password", PASSWORD)];
    laptop.submit("/ui/login", &sign_in).await;
    assert_eq!(laptop.path, "/ui/");

    // A wrong current password is named next to its field.
    laptop.open("/ui/profile").await;
    laptop
        .submit(
            "/ui/profile",
            &[("password", NEW_PASSWORD), ("current_password", "wrong")],
        )
        .await;
    assert_eq!(laptop.status, StatusCode::FORBIDDEN);
    laptop.sees("id=\"f-current_password-error\">Current password is incorrect");

    laptop.open("/ui/security").await;
    laptop.follow("Turn on two-factor").await;
    let secret = text_after(&laptop.html, "id=\"totp-secret\">");
    laptop.sees("<svg");
    let step = step_now();
    laptop
        .submit("/ui/security/2fa/enable", &[("code", &totp(&secret, step))])
        .await;
    laptop.sees("They are shown only now.");
    let codes: Vec<String> = laptop
        .html
        .split("<li><code>")
        .skip(1)
        .map(|c| c.split('<').next().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 10);

    // A second device signs in with an emailed code.
    let mut phone = Walker::new(&app);
    phone.open("/ui/login").await;
    phone.submit("/ui/login", &sign_in).await;
    assert!(phone.path.starts_with("/ui/login/code"), "{}", phone.path);
    phone.submit("/ui/login/email-code", &[]).await;
    phone.sees("A code was sent less than a minute ago");
    let mail = wait_for_file_email(&app.outbox_dir(), "rita@example.com", "sign-in code").await;
    let code = mail
        .text
        .split_whitespace()
        .find(|w| w.len() == 6 && w.bytes().all(|b| b.is_ascii_digit()))
        .unwrap()
        .to_owned();
    let action = "/ui/login/code";
    phone.submit(action, &[("code", "999999x")]).await;
    assert_eq!(phone.status, StatusCode::UNAUTHORIZED);
    phone.sees("That code is not right");
    phone.submit(action, &[("code", &code)]).await;
    assert_eq!(phone.path, "/ui/");

    // The laptop sees both sessions and signs the phone out.
    laptop.open("/ui/security").await;
    assert_eq!(
        laptop.html.matches("/end\"").count(),
        2,
        "two sessions listed"
    );
    laptop.submit("/ui/security/sessions/end-others", &[]).await;
    laptop.sees("1 other session is signed out.");
    phone.open("/ui/profile").await;
    assert!(phone.path.starts_with("/ui/login"), "{}", phone.path);

    // Turning 2FA off takes a real code.
    laptop
        .submit("/ui/security/2fa/disable", &[("code", "000000")])
        .await;
    assert_eq!(laptop.status, StatusCode::BAD_REQUEST);
    laptop.sees("That code is not right");
    laptop
        .submit("/ui/security/2fa/disable", &[("code", &codes[3])])
        .await;
    laptop.sees("Two-factor authentication is off.");
    // The current session can end itself: that is signing out.
    let own = laptop
        .html
        .split("action=\"/ui/security/sessions/")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    laptop
        .submit(&format!("/ui/security/sessions/{own}"), &[])
        .await;
    laptop.sees("You are signed out.");
}

/// A walker signed in as `username` (whose password is the helpers' `PASSWORD`).
pub(super) async fn signed_in(app: &TestApp, username: &str) -> Walker {
    let mut w = Walker::new(app);
    w.open("/ui/login").await;
    w.submit(
        "/ui/login",
        &[("username_or_email", username), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(w.path, "/ui/", "{username} is signed in");
    w
}

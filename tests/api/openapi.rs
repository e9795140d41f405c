//! `/openapi.json` held to the server that serves it: every status the document lists
//! for an operation is one a request gets, and every status a request here gets is
//! listed.
//!
//! The statuses every operation of a kind can answer are provoked the same way for
//! each: 400 (a control character in the query string), 401 (no session), 403 (a user
//! without the permission, or a session without its CSRF header), 413 (a body over the
//! limit), 415 (a body of another media type), 503 (billing off; the database gone).
//! The rest come from [`recipes`], requests written for one operation each.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

use crate::billing::spawn as spawn_with_billing;
use crate::fake_stripe::{FakeStripe, SECRET_KEY};
use crate::helpers::{
    declared_oversized, json as body_json, new_client, postgres_available, TestApp, PASSWORD,
};
use crate::reliability::OutageDb;

/// (method, path template, status)
type Key = (String, String, u16);

/// A client of its own, with its session's CSRF token once logged in.
struct Actor {
    client: Client,
    base: String,
    csrf: Option<String>,
}

enum Body {
    None,
    Json(Value),
    Raw(&'static str, Vec<u8>),
}

impl Actor {
    fn anonymous(app: &TestApp) -> Self {
        Self {
            client: new_client(),
            base: app.url(""),
            csrf: None,
        }
    }

    async fn logged_in(app: &TestApp, name: &str) -> Self {
        Self::logged_in_with(app, name, PASSWORD).await
    }

    async fn logged_in_with(app: &TestApp, name: &str, password: &str) -> Self {
        let mut actor = Self::anonymous(app);
        let res = actor
            .send(
                Method::POST,
                "/login",
                Body::Json(json!({ "username_or_email": name, "password": password })),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK, "login of {name}");
        let body = body_json(res).await;
        actor.csrf = body["csrf_token"].as_str().map(str::to_owned);
        actor
    }

    /// The same session without its CSRF token.
    fn without_csrf(&self) -> Self {
        Self {
            client: self.client.clone(),
            base: self.base.clone(),
            csrf: None,
        }
    }

    async fn send(&self, method: Method, path: &str, body: Body) -> reqwest::Response {
        let mut req = self
            .client
            .request(method.clone(), format!("{}{path}", self.base));
        if method != Method::GET {
            if let Some(token) = &self.csrf {
                req = req.header("X-CSRFToken", token);
            }
        }
        req = match body {
            Body::None => req,
            Body::Json(value) => req.json(&value),
            Body::Raw(content_type, bytes) => req.header("content-type", content_type).body(bytes),
        };
        req.send().await.unwrap()
    }
}

/// One operation of the document.
struct Operation {
    method: Method,
    path: String,
    statuses: BTreeSet<u16>,
    policy: String,
    csrf: bool,
    has_body: bool,
    needs_billing: bool,
}

fn operations(doc: &Value) -> Vec<Operation> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let statuses = op["responses"]
                .as_object()
                .unwrap()
                .keys()
                .map(|s| s.parse().unwrap())
                .collect();
            let csrf = op["security"]
                .as_array()
                .is_some_and(|reqs| reqs.iter().any(|r| r.get("csrf").is_some()));
            ops.push(Operation {
                method: method.to_uppercase().parse().unwrap(),
                path: path.clone(),
                statuses,
                policy: op["x-gatehouse-policy"].as_str().unwrap().to_owned(),
                csrf,
                has_body: op.get("requestBody").is_some(),
                needs_billing: op["x-gatehouse-needs-billing"] == true,
            });
        }
    }
    ops
}

/// The path with every `{parameter}` filled: a number for ids, text otherwise. Enough
/// for the checks that come before the handler, and for a body to be read.
fn filled(template: &str) -> String {
    template
        .split('/')
        .map(|seg| match seg.strip_prefix('{') {
            Some(name) if name.contains("id") => "1".to_owned(),
            Some(_) => "probe".to_owned(),
            None => seg.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The document's template a concrete path belongs to.
fn template_of(doc: &Value, method: &Method, path: &str) -> String {
    let path = path.split('?').next().unwrap();
    let method = method.as_str().to_ascii_lowercase();
    let segments: Vec<&str> = path.split('/').collect();
    doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, item)| item.get(&method).is_some())
        .map(|(template, _)| template)
        .filter(|template| {
            let parts: Vec<&str> = template.split('/').collect();
            parts.len() == segments.len()
                && parts
                    .iter()
                    .zip(&segments)
                    .all(|(t, s)| t.starts_with('{') || t == s)
        })
        // A literal segment beats a parameter: /sessions/revoke_others, not /sessions/{id}.
        .max_by_key(|template| template.matches('{').count() == 0)
        .unwrap_or_else(|| panic!("{method} {path} is not in the document"))
        .clone()
}

/// What was reached, for the comparison at the end.
#[derive(Default)]
struct Reached(BTreeMap<Key, String>);

impl Reached {
    fn note(&mut self, method: &Method, template: &str, status: StatusCode, how: &str) {
        self.0
            .entry((method.to_string(), template.to_owned(), status.as_u16()))
            .or_insert_with(|| how.to_owned());
    }
}

/// The statuses every operation of a kind answers, provoked the same way for each.
async fn generic(
    ops: &[Operation],
    admin: &Actor,
    nobody: &Actor,
    anonymous: &Actor,
    reached: &mut Reached,
) {
    for op in ops {
        let path = filled(&op.path);
        let mut hit = |res: &reqwest::Response, how: &str| {
            reached.note(&op.method, &op.path, res.status(), how);
        };
        let res = anonymous
            .send(op.method.clone(), &format!("{path}?probe=%01"), Body::None)
            .await;
        assert_eq!(
            res.status(),
            StatusCode::BAD_REQUEST,
            "{} {path}",
            op.method
        );
        hit(&res, "a control character in the query");
        if op.policy != "public" {
            let res = anonymous.send(op.method.clone(), &path, Body::None).await;
            assert_eq!(
                res.status(),
                StatusCode::UNAUTHORIZED,
                "{} {path}",
                op.method
            );
            hit(&res, "no session");
        }
        if op.policy.starts_with("permission") {
            let res = nobody.send(op.method.clone(), &path, Body::None).await;
            assert_eq!(res.status(), StatusCode::FORBIDDEN, "{} {path}", op.method);
            hit(&res, "a user without the permission");
        }
        if op.csrf {
            let res = admin
                .without_csrf()
                .send(op.method.clone(), &path, Body::Json(json!({})))
                .await;
            assert_eq!(res.status(), StatusCode::FORBIDDEN, "{} {path}", op.method);
            hit(&res, "no CSRF header");
        }
        if op.has_body {
            let text = Body::Raw("text/plain", b"hello".to_vec());
            let res = admin.send(op.method.clone(), &path, text).await;
            assert_eq!(
                res.status(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{} {path}",
                op.method
            );
            hit(&res, "a text/plain body");
            // The limit is checked before the session is: anyone gets it.
            let (status, body) = declared_oversized(&admin.base, &op.method, &path).await;
            assert_eq!(status, 413, "{} {path}: {body}", op.method);
            reached.note(
                &op.method,
                &op.path,
                StatusCode::PAYLOAD_TOO_LARGE,
                "a body over 1 MiB",
            );
        }
    }
}

async fn check(doc: &Value, reached: &Reached) {
    let mut documented = BTreeSet::new();
    for op in operations(doc) {
        for status in &op.statuses {
            documented.insert((op.method.to_string(), op.path.clone(), *status));
        }
    }
    let unreached: Vec<_> = documented
        .iter()
        .filter(|k| !reached.0.contains_key(*k))
        .collect();
    let undocumented: Vec<_> = reached
        .0
        .iter()
        .filter(|(k, _)| !documented.contains(*k))
        .collect();
    assert!(
        unreached.is_empty() && undocumented.is_empty(),
        "documented but never reached: {unreached:#?}\nreached but not documented: {undocumented:#?}"
    );
}

/// The schema a `$ref` names, or the schema itself.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => &doc["components"]["schemas"][r.trim_start_matches("#/components/schemas/")],
        None => schema,
    }
}

/// Whether a schema carries an example: itself, the schema it names, the items of an
/// array, or one of the choices of a `oneOf`.
fn has_example(doc: &Value, schema: &Value) -> bool {
    let schema = resolve(doc, schema);
    !schema["example"].is_null()
        || schema["examples"].is_array()
        || schema["items"].is_object() && has_example(doc, &schema["items"])
        || schema["oneOf"]
            .as_array()
            .is_some_and(|choices| choices.iter().any(|c| has_example(doc, c)))
}

/// Built from the route table alone: what a client generator needs is there.
#[test]
fn the_document_describes_every_route_fully() {
    let routes = gatehouse::app::routes();
    let doc: Value = serde_json::from_str(gatehouse::openapi::json()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut ids = BTreeSet::new();
    let mut missing = Vec::new();
    for spec in routes.specs() {
        let op = &doc["paths"][&spec.path][spec.method.as_str().to_ascii_lowercase()];
        if spec.refusal == gatehouse::auth::policy::Refusal::Page {
            assert!(op.is_null(), "{} {} is a page", spec.method, spec.path);
            continue;
        }
        let name = format!("{} {}", spec.method, spec.path);
        assert!(op.is_object(), "{name} is not in the document");
        assert!(spec.operation.is_some(), "{name} has no #[utoipa::path]");
        assert!(
            ids.insert(op["operationId"].to_string()),
            "{name}: operationId taken"
        );
        assert!(op["summary"].is_string(), "{name} has no summary");
        let responses = op["responses"].as_object().unwrap();
        assert!(
            responses
                .keys()
                .any(|s| s.starts_with('2') || s.starts_with('3')),
            "{name} has no success answer"
        );
        let mut bodies: Vec<(String, &Value)> = responses
            .iter()
            .flat_map(|(status, r)| {
                r["content"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(move |(media, c)| (format!("{status} {media}"), c))
            })
            .collect();
        if let Some(content) = op["requestBody"]["content"].as_object() {
            bodies.extend(
                content
                    .iter()
                    .map(|(media, c)| (format!("request {media}"), c)),
            );
        }
        for (what, content) in bodies {
            let example = !content["example"].is_null()
                || content["examples"].is_object()
                || has_example(&doc, &content["schema"]);
            if !example {
                missing.push(format!("{name}: {what} has no example"));
            }
        }
        let declared: BTreeSet<String> = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "path")
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect();
        let in_path: BTreeSet<String> = spec
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(str::to_owned)
            .collect();
        assert_eq!(declared, in_path, "{name}: path parameters");
    }
    assert!(missing.is_empty(), "{missing:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_status_is_reachable() {
    if !postgres_available().await {
        return;
    }
    let mut reached = Reached::default();
    let (app, stripe) = spawn_with_billing(crate::helpers::Backend::Sqlite).await;
    let doc = body_json(app.get("/openapi.json").await).await;
    let ops = operations(&doc);
    let fixture = recipes::Fixture::new(&app).await;
    generic(
        &ops,
        &fixture.admin,
        &fixture.nobody,
        &fixture.anonymous,
        &mut reached,
    )
    .await;
    recipes::run(&app, &stripe, &fixture, &doc, &mut reached).await;

    // Billing off, then the database gone: a server of its own on a database of its own.
    // Its session cache is off, so that every request needs the database: with the
    // cache, a route that reads its body before the database answers for the body.
    let mut outage = OutageDb::create().await;
    let off = TestApp::spawn_with(
        crate::helpers::Backend::Postgres,
        &[
            ("DATABASE_URL", outage.url.as_str()),
            ("SESSION_CACHE", "off"),
        ],
    )
    .await;
    off.verified_user("root").await;
    let id = off
        .scalar("SELECT id FROM users WHERE username = 'root'")
        .await;
    off.grant(id, "Super Admin").await;
    let admin = Actor::logged_in(&off, "root").await;
    for op in ops.iter().filter(|op| op.needs_billing) {
        let body = if op.has_body {
            Body::Json(json!({}))
        } else {
            Body::None
        };
        let res = admin.send(op.method.clone(), &filled(&op.path), body).await;
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE, "{}", op.path);
        let body = body_json(res).await;
        assert_eq!(body["code"], "billing_not_configured", "{}", op.path);
        reached.note(
            &op.method,
            &op.path,
            StatusCode::SERVICE_UNAVAILABLE,
            "billing off",
        );
    }
    outage.go_down().await;
    for op in &ops {
        let res = admin
            .send(op.method.clone(), &filled(&op.path), Body::None)
            .await;
        if res.status() == StatusCode::SERVICE_UNAVAILABLE {
            assert!(res.headers().contains_key("retry-after"), "{}", op.path);
            reached.note(&op.method, &op.path, res.status(), "the database gone");
        } else {
            assert!(
                gatehouse::http::PROBES.contains(&op.path.as_str()) || op.path == "/",
                "{} {} answered {} with the database gone",
                op.method,
                op.path,
                res.status()
            );
        }
    }
    outage.come_back().await;
    drop(off);
    outage.drop_it().await;
    check(&doc, &reached).await;
}

/// The requests for the statuses only some operations answer.
mod recipes {
    use super::*;

    /// The accounts the recipes act as.
    pub(super) struct Fixture {
        pub admin: Actor,
        pub user: Actor,
        /// A user holding no role, so no permission.
        pub nobody: Actor,
        pub anonymous: Actor,
    }

    impl Fixture {
        pub async fn new(app: &TestApp) -> Self {
            app.verified_user("root").await;
            let id = app
                .scalar("SELECT id FROM users WHERE username = 'root'")
                .await;
            app.grant(id, "Super Admin").await;
            app.verified_user("plain").await;
            app.verified_user("nobody").await;
            sqlx::query(
                "DELETE FROM user_roles WHERE user_id = \
                 (SELECT id FROM users WHERE username = 'nobody')",
            )
            .execute(app.state.db.writer())
            .await
            .unwrap();
            app.state.sessions.caught_up().await;
            Self {
                admin: Actor::logged_in(app, "root").await,
                user: Actor::logged_in(app, "plain").await,
                nobody: Actor::logged_in(app, "nobody").await,
                anonymous: Actor::anonymous(app),
            }
        }
    }

    /// Requests made for one status each, noted as reached once they get it.
    struct Steps<'a> {
        doc: &'a Value,
        reached: &'a mut Reached,
    }

    impl Steps<'_> {
        async fn expect(
            &mut self,
            who: &Actor,
            method: Method,
            path: &str,
            body: Body,
            status: u16,
        ) -> Value {
            let res = who.send(method.clone(), path, body).await;
            let got = res.status();
            let answer = res.text().await.unwrap();
            assert_eq!(got.as_u16(), status, "{method} {path}: {answer}");
            let template = template_of(self.doc, &method, path);
            self.reached.note(&method, &template, got, "a recipe");
            serde_json::from_str(&answer).unwrap_or(Value::Null)
        }

        /// Repeats the request until it gets `status`, as a throttle needs.
        async fn until(
            &mut self,
            who: &Actor,
            method: Method,
            path: &str,
            body: Value,
            status: u16,
        ) {
            for _ in 0..30 {
                let res = who
                    .send(method.clone(), path, Body::Json(body.clone()))
                    .await;
                if res.status().as_u16() == status {
                    let template = template_of(self.doc, &method, path);
                    self.reached
                        .note(&method, &template, res.status(), "a recipe, repeated");
                    return;
                }
            }
            panic!("{method} {path} never answered {status}");
        }
    }

    fn link_path(app: &TestApp, link: &str) -> String {
        link.strip_prefix(&app.url("")).unwrap().to_owned()
    }

    pub(super) async fn run(
        app: &TestApp,
        stripe: &FakeStripe,
        f: &Fixture,
        doc: &Value,
        reached: &mut Reached,
    ) {
        let mut s = Steps { doc, reached };
        service(app, f, &mut s).await;
        accounts(app, f, &mut s).await;
        twofa_and_logs(app, f, &mut s).await;
        for prefix in ["/admin", ""] {
            rbac(app, f, &mut s, prefix).await;
        }
        kanban(f, &mut s).await;
        billing(app, stripe, f, &mut s).await;
        checkout_redirects(f, &mut s).await;
    }

    async fn service(app: &TestApp, f: &Fixture, s: &mut Steps<'_>) {
        for path in ["/", "/healthz", "/readyz", "/metrics", "/openapi.json"] {
            s.expect(&f.anonymous, Method::GET, path, Body::None, 200)
                .await;
        }
        let res = new_client()
            .get(app.url("/"))
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        s.reached.note(&Method::GET, "/", res.status(), "a browser");
    }

    async fn accounts(app: &TestApp, f: &Fixture, s: &mut Steps<'_>) {
        let (get, post, delete) = (Method::GET, Method::POST, Method::DELETE);
        let a = &f.anonymous;
        let newcomer = json!({
            "first_name": "New", "last_name": "Comer", "username": "newcomer",
            "email": "newcomer@example.com", "password": PASSWORD
        });
        s.expect(
            a,
            post.clone(),
            "/signup",
            Body::Json(newcomer.clone()),
            201,
        )
        .await;
        s.expect(a, post.clone(), "/signup", Body::Json(newcomer), 409)
            .await;
        let link = app.email_link("newcomer@example.com", "Verify").await;
        s.expect(a, get.clone(), &link_path(app, &link), Body::None, 200)
            .await;

        let wrong = json!({ "username_or_email": "newcomer", "password": "Wrong-password-1" });
        s.expect(a, post.clone(), "/login", Body::Json(wrong.clone()), 401)
            .await;
        s.until(a, post.clone(), "/login", wrong, 429).await;
        let throwaway = Actor::logged_in(app, "plain").await;
        sqlx::query("UPDATE users SET disabled = TRUE WHERE username = 'newcomer'")
            .execute(app.state.db.writer())
            .await
            .unwrap();
        app.state.sessions.caught_up().await;
        let right = json!({ "username_or_email": "newcomer@example.com", "password": PASSWORD });
        s.expect(a, post.clone(), "/login", Body::Json(right), 403)
            .await;
        let plain = json!({ "username_or_email": "plain", "password": PASSWORD });
        s.expect(
            &Actor::anonymous(app),
            post.clone(),
            "/login",
            Body::Json(plain),
            200,
        )
        .await;
        s.expect(a, get.clone(), "/check_auth_status", Body::None, 200)
            .await;

        s.expect(
            &f.user,
            get.clone(),
            "/current_user_details",
            Body::None,
            200,
        )
        .await;
        s.expect(&f.user, get.clone(), "/csrf_token", Body::None, 200)
            .await;
        let root_id = app
            .scalar("SELECT id FROM users WHERE username = 'root'")
            .await;
        let profile = |user_id: Option<i64>, username: &str| {
            json!({
                "user_id": user_id, "first_name": "Root", "last_name": "User",
                "email": "root@example.com", "username": username
            })
        };
        let (admin, user) = (&f.admin, &f.user);
        s.expect(
            admin,
            post.clone(),
            "/update_profile",
            Body::Json(profile(None, "root")),
            200,
        )
        .await;
        s.expect(
            user,
            post.clone(),
            "/update_profile",
            Body::Json(profile(Some(root_id), "root")),
            403,
        )
        .await;
        s.expect(
            admin,
            post.clone(),
            "/update_profile",
            Body::Json(profile(Some(999_999_999), "root")),
            404,
        )
        .await;
        s.expect(
            admin,
            post.clone(),
            "/update_profile",
            Body::Json(profile(None, "plain")),
            409,
        )
        .await;

        let forgot = json!({ "email": "plain@example.com" });
        s.expect(
            a,
            post.clone(),
            "/forgot_password",
            Body::Json(forgot.clone()),
            200,
        )
        .await;
        let link = app.email_link("plain@example.com", "Reset").await;
        let reset = json!({ "password": "Another-Granite-Violin-43" });
        s.expect(
            a,
            post.clone(),
            &link_path(app, &link),
            Body::Json(reset),
            200,
        )
        .await;
        s.until(a, post.clone(), "/forgot_password", forgot, 429)
            .await;
        let guess = json!({ "password": "Another-Granite-Violin-44" });
        s.until(a, post.clone(), "/reset_password/not-a-token", guess, 429)
            .await;

        // The reset ended plain's sessions: sign in again, twice.
        let plain = |app| Actor::logged_in_with(app, "plain", "Another-Granite-Violin-43");
        let (first, second) = (plain(app).await, plain(app).await);
        let sessions = s
            .expect(&first, get.clone(), "/sessions", Body::None, 200)
            .await;
        let other = sessions["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["current"] == false)
            .unwrap()["id"]
            .as_i64()
            .unwrap();
        s.expect(
            &first,
            delete.clone(),
            &format!("/sessions/{other}"),
            Body::None,
            200,
        )
        .await;
        s.expect(
            &first,
            delete.clone(),
            "/sessions/999999999",
            Body::None,
            404,
        )
        .await;
        s.expect(
            &first,
            post.clone(),
            "/sessions/revoke_others",
            Body::None,
            200,
        )
        .await;
        s.expect(&first, get.clone(), "/logout", Body::None, 200)
            .await;
        let _ = (second, throwaway);
        let third = plain(app).await;
        s.expect(&third, post.clone(), "/logout", Body::None, 200)
            .await;
    }

    async fn twofa_and_logs(app: &TestApp, f: &Fixture, s: &mut Steps<'_>) {
        use crate::twofa::{secret_in, step_now, totp};
        app.verified_user("second").await;
        let second = Actor::logged_in(app, "second").await;
        let body = s
            .expect(&second, Method::GET, "/twofa_uri", Body::None, 200)
            .await;
        let secret = secret_in(body["uri"].as_str().unwrap());
        let on = json!({ "enabled": true, "token": totp(&secret, step_now()) });
        s.expect(&second, Method::POST, "/update_twofa", Body::Json(on), 200)
            .await;
        let wrong = json!({ "enabled": false, "token": "000000" });
        s.until(&second, Method::POST, "/update_twofa", wrong, 429)
            .await;
        s.expect(&second, Method::GET, "/logs", Body::None, 200)
            .await;
        s.expect(&f.admin, Method::GET, "/logs/export.csv", Body::None, 200)
            .await;
    }

    async fn rbac(app: &TestApp, f: &Fixture, s: &mut Steps<'_>, p: &str) {
        let (get, post, delete) = (Method::GET, Method::POST, Method::DELETE);
        let admin = &f.admin;
        let at = |path: &str| format!("{p}{path}");
        let id_of = |table: &str, name: &str| {
            let sql = format!("SELECT id FROM {table} WHERE name = '{name}'");
            async move { app.scalar(&sql).await }
        };
        s.expect(admin, get.clone(), &at("/roles"), Body::None, 200)
            .await;
        s.expect(admin, get.clone(), &at("/permissions"), Body::None, 200)
            .await;
        s.expect(admin, get.clone(), &at("/users/details"), Body::None, 200)
            .await;
        s.expect(
            admin,
            get.clone(),
            &at("/all_user_profiles"),
            Body::None,
            200,
        )
        .await;

        let role = format!("Ops{}", p.len());
        let permission = format!("deploy{}", p.len());
        let named = |name: &str| Body::Json(json!({ "name": name }));
        s.expect(admin, post.clone(), &at("/create_role"), named(&role), 201)
            .await;
        s.expect(admin, post.clone(), &at("/create_role"), named(&role), 409)
            .await;
        s.expect(
            admin,
            post.clone(),
            &at("/create_permission"),
            named(&permission),
            201,
        )
        .await;
        s.expect(
            admin,
            post.clone(),
            &at("/create_permission"),
            named(&permission),
            409,
        )
        .await;

        let pair = |permission: &str, role: &str| {
            Body::Json(json!({ "permission_name": permission, "role_name": role }))
        };
        for route in ["/assign_permission_to_role", "/revoke_permission_from_role"] {
            s.expect(
                admin,
                post.clone(),
                &at(route),
                pair(&permission, &role),
                200,
            )
            .await;
            s.expect(admin, post.clone(), &at(route), pair("no_such", &role), 404)
                .await;
            s.expect(
                admin,
                post.clone(),
                &at(route),
                pair(&permission, "Super Admin"),
                409,
            )
            .await;
        }

        let name = format!("target{}", p.len());
        app.verified_user(&name).await;
        let target = app
            .scalar(&format!("SELECT id FROM users WHERE username = '{name}'"))
            .await;
        let root = app
            .scalar("SELECT id FROM users WHERE username = 'root'")
            .await;
        let role_id = id_of("roles", &role).await;
        let super_admin = id_of("roles", "Super Admin").await;
        let holder = |user_id: i64, role_id: i64| {
            Body::Json(json!({ "user_id": user_id, "role_id": role_id }))
        };
        for route in ["/assign_role_to_user", "/remove_role_from_user"] {
            s.expect(
                admin,
                post.clone(),
                &at(route),
                holder(target, role_id),
                200,
            )
            .await;
            s.expect(
                admin,
                post.clone(),
                &at(route),
                holder(999_999_999, role_id),
                404,
            )
            .await;
        }
        s.expect(
            admin,
            post.clone(),
            &at("/remove_role_from_user"),
            holder(root, super_admin),
            409,
        )
        .await;
        for action in ["disable", "enable"] {
            let path = at(&format!("/users/{target}/{action}"));
            s.expect(admin, post.clone(), &path, Body::None, 200).await;
            let path = at(&format!("/users/999999999/{action}"));
            s.expect(admin, post.clone(), &path, Body::None, 404).await;
            let path = at(&format!("/users/{root}/{action}"));
            s.expect(admin, post.clone(), &path, Body::None, 409).await;
        }

        let by_id = |key: &str, id: i64| Body::Json(json!({ key: id }));
        let permission_id = id_of("permissions", &permission).await;
        let route = at("/delete_permission");
        s.expect(
            admin,
            delete.clone(),
            &route,
            by_id("permission_id", permission_id),
            200,
        )
        .await;
        s.expect(
            admin,
            delete.clone(),
            &route,
            by_id("permission_id", permission_id),
            404,
        )
        .await;
        let built_in = id_of("permissions", "edit").await;
        s.expect(
            admin,
            delete.clone(),
            &route,
            by_id("permission_id", built_in),
            409,
        )
        .await;
        let route = at("/delete_role");
        s.expect(
            admin,
            delete.clone(),
            &route,
            by_id("role_id", role_id),
            200,
        )
        .await;
        s.expect(
            admin,
            delete.clone(),
            &route,
            by_id("role_id", role_id),
            404,
        )
        .await;
        let built_in = id_of("roles", "User").await;
        s.expect(
            admin,
            delete.clone(),
            &route,
            by_id("role_id", built_in),
            409,
        )
        .await;
    }

    async fn kanban(f: &Fixture, s: &mut Steps<'_>) {
        let (get, post, put, delete) = (Method::GET, Method::POST, Method::PUT, Method::DELETE);
        let admin = &f.admin;
        let j = Body::Json;
        let gone = 999_999_999;
        let board = s
            .expect(
                admin,
                post.clone(),
                "/boards",
                j(json!({ "name": "Plan" })),
                201,
            )
            .await["id"]
            .as_i64()
            .unwrap();
        s.expect(admin, get.clone(), "/boards", Body::None, 200)
            .await;
        s.expect(
            admin,
            put.clone(),
            "/boards",
            j(json!({ "id": board, "name": "Plans" })),
            200,
        )
        .await;
        s.expect(
            admin,
            put.clone(),
            "/boards",
            j(json!({ "id": gone, "name": "x" })),
            404,
        )
        .await;
        s.expect(
            admin,
            get.clone(),
            &format!("/boards/{board}"),
            Body::None,
            200,
        )
        .await;
        s.expect(
            admin,
            get.clone(),
            &format!("/boards/{gone}"),
            Body::None,
            404,
        )
        .await;

        let columns = format!("/boards/{board}/columns");
        let missing = format!("/boards/{gone}/columns");
        let column = json!({ "name": "To do", "position": 0 });
        let todo = s
            .expect(admin, post.clone(), &columns, j(column.clone()), 201)
            .await["id"]
            .as_i64()
            .unwrap();
        let done = s
            .expect(admin, post.clone(), &columns, j(column.clone()), 201)
            .await["id"]
            .as_i64()
            .unwrap();
        s.expect(admin, post.clone(), &missing, j(column), 404)
            .await;
        s.expect(admin, get.clone(), &columns, Body::None, 200)
            .await;
        s.expect(admin, get.clone(), &missing, Body::None, 404)
            .await;
        s.expect(
            admin,
            put.clone(),
            &columns,
            j(json!({ "id": done, "name": "Done" })),
            200,
        )
        .await;
        s.expect(
            admin,
            put.clone(),
            &columns,
            j(json!({ "id": gone, "name": "Done" })),
            404,
        )
        .await;

        let other = s
            .expect(
                admin,
                post.clone(),
                "/boards",
                j(json!({ "name": "Other" })),
                201,
            )
            .await["id"]
            .as_i64()
            .unwrap();
        let elsewhere = s
            .expect(
                admin,
                post.clone(),
                &format!("/boards/{other}/columns"),
                j(json!({ "name": "Far", "position": 0 })),
                201,
            )
            .await["id"]
            .as_i64()
            .unwrap();

        let tickets = format!("/columns/{todo}/tickets");
        let nowhere = format!("/columns/{gone}/tickets");
        let ticket = s
            .expect(
                admin,
                post.clone(),
                &tickets,
                j(json!({ "title": "Write" })),
                201,
            )
            .await["id"]
            .as_i64()
            .unwrap();
        s.expect(
            admin,
            post.clone(),
            &nowhere,
            j(json!({ "title": "Lost" })),
            404,
        )
        .await;
        s.expect(
            admin,
            post.clone(),
            &tickets,
            j(json!({ "title": "Far", "position": elsewhere })),
            400,
        )
        .await;
        s.expect(admin, get.clone(), &tickets, Body::None, 200)
            .await;
        s.expect(admin, get.clone(), &nowhere, Body::None, 404)
            .await;
        s.expect(
            admin,
            put.clone(),
            &tickets,
            j(json!({ "id": ticket, "position": done })),
            200,
        )
        .await;
        let moved = format!("/columns/{done}/tickets");
        s.expect(
            admin,
            put.clone(),
            &moved,
            j(json!({ "id": ticket, "column_id": elsewhere })),
            400,
        )
        .await;
        s.expect(
            admin,
            put.clone(),
            &moved,
            j(json!({ "id": gone, "title": "x" })),
            404,
        )
        .await;
        s.expect(admin, delete.clone(), &moved, j(json!({ "id": gone })), 404)
            .await;
        s.expect(
            admin,
            delete.clone(),
            &moved,
            j(json!({ "id": ticket })),
            204,
        )
        .await;
        s.expect(
            admin,
            delete.clone(),
            &columns,
            j(json!({ "id": gone })),
            404,
        )
        .await;
        s.expect(
            admin,
            delete.clone(),
            &columns,
            j(json!({ "id": todo })),
            204,
        )
        .await;
        s.expect(
            admin,
            delete.clone(),
            "/boards",
            j(json!({ "id": gone })),
            404,
        )
        .await;
        s.expect(
            admin,
            delete.clone(),
            "/boards",
            j(json!({ "id": board })),
            204,
        )
        .await;
    }

    /// Stripe's refusals: a 500 of theirs is our 502, a declined card 402, an id they
    /// do not know 404.
    fn stripe_down(stripe: &FakeStripe) {
        stripe.fail_next(500, "api_error", "Something went wrong on Stripe's end");
    }

    async fn billing(app: &TestApp, stripe: &FakeStripe, f: &Fixture, s: &mut Steps<'_>) {
        use crate::billing::{deliver, event, now, subscription_object};
        let (get, post, delete) = (Method::GET, Method::POST, Method::DELETE);
        let admin = &f.admin;
        let j = Body::Json;
        let product_body = json!({ "name": "Pro", "description": "Everything" });
        stripe_down(stripe);
        s.expect(
            admin,
            post.clone(),
            "/create-product",
            j(product_body.clone()),
            502,
        )
        .await;
        let product = s
            .expect(admin, post.clone(), "/create-product", j(product_body), 201)
            .await;
        let pid = product["product_id"].as_str().unwrap().to_owned();
        let edit = json!({ "product_id": pid, "name": "Pro plan" });
        s.expect(admin, post.clone(), "/edit-product", j(edit.clone()), 200)
            .await;
        stripe_down(stripe);
        s.expect(admin, post.clone(), "/edit-product", j(edit), 502)
            .await;
        let nothing = json!({ "product_id": "prod_nothing", "name": "x" });
        s.expect(admin, post.clone(), "/edit-product", j(nothing), 404)
            .await;
        for method in [get.clone(), post.clone()] {
            for path in ["/products", "/prices", "/subscriptions"] {
                let body = if method == Method::GET {
                    Body::None
                } else {
                    j(json!({}))
                };
                s.expect(admin, method.clone(), path, body, 200).await;
            }
        }

        let price_body = |product: &str| {
            json!({ "product_id": product, "unit_amount": "5", "currency": "usd",
                    "recurring": { "interval": "month" } })
        };
        let price = s
            .expect(
                admin,
                post.clone(),
                "/create-price",
                j(price_body(&pid)),
                201,
            )
            .await;
        let yearly = s
            .expect(
                admin,
                post.clone(),
                "/create-price",
                j(price_body(&pid)),
                201,
            )
            .await;
        s.expect(
            admin,
            post.clone(),
            "/create-price",
            j(price_body("prod_nothing")),
            404,
        )
        .await;
        stripe_down(stripe);
        s.expect(
            admin,
            post.clone(),
            "/create-price",
            j(price_body(&pid)),
            502,
        )
        .await;
        let price_id = price["price_id"].as_str().unwrap().to_owned();
        let yearly_id = yearly["price_id"].as_str().unwrap().to_owned();
        // Each lookup, by query string and by body: found, and not.
        for (path, key, id) in [
            ("/product", "product_id", pid.as_str()),
            ("/price", "price_id", price_id.as_str()),
            ("/prices-for-product", "product_id", pid.as_str()),
        ] {
            for (id, status) in [(id, 200), ("x_nothing", 404)] {
                let query = format!("{path}?{key}={id}");
                s.expect(admin, get.clone(), &query, Body::None, status)
                    .await;
                s.expect(admin, post.clone(), path, j(json!({ key: id })), status)
                    .await;
            }
        }

        // Subscriptions: the buyer is the plain user.
        let buyer = app
            .scalar("SELECT id FROM users WHERE username = 'nobody'")
            .await;
        let create = |price: &str| json!({ "price_id": price, "user_id": buyer });
        stripe.fail_next(402, "card_error", "Your card was declined.");
        s.expect(
            admin,
            post.clone(),
            "/create-subscription",
            j(create(&price_id)),
            402,
        )
        .await;
        stripe_down(stripe);
        s.expect(
            admin,
            post.clone(),
            "/create-subscription",
            j(create(&price_id)),
            502,
        )
        .await;
        s.expect(
            admin,
            post.clone(),
            "/create-subscription",
            j(create("price_nothing")),
            404,
        )
        .await;
        let sub = s
            .expect(
                admin,
                post.clone(),
                "/create-subscription",
                j(create(&price_id)),
                201,
            )
            .await;
        let sub_id = sub["subscription_id"].as_str().unwrap().to_owned();
        let on = |id: &str| j(json!({ "subscription_id": id }));
        let change = |id: &str| j(json!({ "subscription_id": id, "new_price_id": yearly_id }));
        s.expect(admin, post.clone(), "/subscription", on(&sub_id), 200)
            .await;
        s.expect(admin, post.clone(), "/subscription", on("sub_nothing"), 404)
            .await;
        let of_buyer = j(json!({ "user_id": buyer }));
        s.expect(admin, post.clone(), "/user-subscriptions", of_buyer, 200)
            .await;
        s.expect(
            admin,
            post.clone(),
            "/user-subscriptions",
            j(json!({ "user_id": 987_654 })),
            404,
        )
        .await;
        let email = |e: &str| j(json!({ "email": e }));
        s.expect(
            admin,
            post.clone(),
            "/user-email-subscriptions",
            email("nobody@example.com"),
            200,
        )
        .await;
        s.expect(
            admin,
            post.clone(),
            "/user-email-subscriptions",
            email("none@example.com"),
            404,
        )
        .await;
        for path in [
            "/update-subscription",
            "/cancel-subscription",
            "/deactivate-subscription",
            "/reactivate-subscription",
            "/delete-subscription",
        ] {
            let body = |id: &str| {
                if path == "/update-subscription" {
                    change(id)
                } else {
                    on(id)
                }
            };
            stripe_down(stripe);
            s.expect(admin, post.clone(), path, body(&sub_id), 502)
                .await;
            s.expect(admin, post.clone(), path, body("sub_nothing"), 404)
                .await;
        }
        stripe.fail_next(402, "card_error", "Your card was declined.");
        s.expect(
            admin,
            post.clone(),
            "/update-subscription",
            change(&sub_id),
            402,
        )
        .await;
        s.expect(
            admin,
            post.clone(),
            "/update-subscription",
            change(&sub_id),
            200,
        )
        .await;
        s.expect(
            admin,
            post.clone(),
            "/deactivate-subscription",
            on(&sub_id),
            200,
        )
        .await;
        s.expect(
            admin,
            post.clone(),
            "/reactivate-subscription",
            on(&sub_id),
            200,
        )
        .await;
        s.expect(
            admin,
            post.clone(),
            "/cancel-subscription",
            on(&sub_id),
            200,
        )
        .await;
        // Stripe says it has ended: changing it is a conflict, deleting takes it off.
        let customer: String =
            sqlx::query_scalar("SELECT stripe_customer_id FROM billing_subscriptions")
                .fetch_one(app.state.db.pool())
                .await
                .unwrap();
        let ended = subscription_object(&sub_id, &customer, &yearly_id, "canceled", false);
        let ended = event(
            "evt_ended",
            "customer.subscription.deleted",
            now() + 5,
            ended,
        );
        deliver(app, &ended).await;
        s.reached
            .note(&post, "/stripe/webhook", StatusCode::OK, "a signed event");
        for path in [
            "/update-subscription",
            "/cancel-subscription",
            "/deactivate-subscription",
            "/reactivate-subscription",
        ] {
            let body = if path == "/update-subscription" {
                change(&sub_id)
            } else {
                on(&sub_id)
            };
            s.expect(admin, post.clone(), path, body, 409).await;
        }
        s.expect(
            admin,
            post.clone(),
            "/delete-subscription",
            on(&sub_id),
            200,
        )
        .await;

        // Checkout, and the page Stripe sends the browser back to.
        let checkout = |price: &str| j(json!({ "price_id": price, "mode": "subscription" }));
        stripe.fail_next(402, "card_error", "Your card was declined.");
        s.expect(
            &f.nobody,
            post.clone(),
            "/create-checkout-session",
            checkout(&price_id),
            402,
        )
        .await;
        stripe_down(stripe);
        s.expect(
            &f.nobody,
            post.clone(),
            "/create-checkout-session",
            checkout(&price_id),
            502,
        )
        .await;
        s.expect(
            &f.nobody,
            post.clone(),
            "/create-checkout-session",
            checkout("price_nothing"),
            404,
        )
        .await;
        let opened = s
            .expect(
                &f.nobody,
                post.clone(),
                "/create-checkout-session",
                checkout(&price_id),
                200,
            )
            .await;
        let session = opened["session_id"].as_str().unwrap();
        let success = format!("/checkout-success?session_id={session}");
        let a = &f.anonymous;
        s.expect(a, get.clone(), &success, Body::None, 200).await;
        stripe_down(stripe);
        s.expect(a, get.clone(), &success, Body::None, 502).await;
        s.expect(
            a,
            get.clone(),
            "/checkout-success?session_id=cs_test_unknown",
            Body::None,
            404,
        )
        .await;
        s.expect(a, get.clone(), "/checkout-cancel", Body::None, 200)
            .await;

        // Archiving: Stripe failing, an unknown product, then for real.
        let archive = |id: &str| j(json!({ "price_id": id }));
        stripe_down(stripe);
        s.expect(
            admin,
            post.clone(),
            "/delete-price",
            archive(&yearly_id),
            502,
        )
        .await;
        s.expect(
            admin,
            post.clone(),
            "/delete-price",
            archive("price_nothing"),
            404,
        )
        .await;
        s.expect(
            admin,
            post.clone(),
            "/delete-price",
            archive(&yearly_id),
            200,
        )
        .await;
        let edit_price =
            |id: &str| j(json!({ "price_id": id, "unit_amount": 7, "currency": "usd" }));
        stripe_down(stripe);
        s.expect(
            admin,
            post.clone(),
            "/edit-price",
            edit_price(&price_id),
            502,
        )
        .await;
        s.expect(
            admin,
            post.clone(),
            "/edit-price",
            edit_price("price_nothing"),
            404,
        )
        .await;
        s.expect(
            admin,
            post.clone(),
            "/edit-price",
            edit_price(&price_id),
            200,
        )
        .await;
        let product = |id: &str| j(json!({ "product_id": id }));
        stripe_down(stripe);
        s.expect(admin, delete.clone(), "/delete-product", product(&pid), 502)
            .await;
        s.expect(
            admin,
            delete.clone(),
            "/delete-product",
            product("prod_nothing"),
            404,
        )
        .await;
        s.expect(admin, delete.clone(), "/delete-product", product(&pid), 200)
            .await;
        stripe.assert_clean();
    }

    /// With the front end's pages configured, the pages Stripe returns to redirect.
    async fn checkout_redirects(f: &Fixture, s: &mut Steps<'_>) {
        let stripe = FakeStripe::start().await;
        let app = TestApp::spawn_with(
            crate::helpers::Backend::Sqlite,
            &[
                ("STRIPE_PRIVATE_KEY", SECRET_KEY),
                ("STRIPE_API_BASE", stripe.url.as_str()),
                ("CHECKOUT_SUCCESS_URL", "http://localhost:3000/paid"),
                ("CHECKOUT_CANCEL_URL", "http://localhost:3000/cancelled"),
            ],
        )
        .await;
        let _ = f;
        app.verified_user("buyer").await;
        let buyer = Actor::logged_in(&app, "buyer").await;
        let root = app
            .scalar("SELECT id FROM users WHERE username = 'buyer'")
            .await;
        app.grant(root, "Super Admin").await;
        let product = json!({ "name": "Book" });
        let product = s
            .expect(
                &buyer,
                Method::POST,
                "/create-product",
                Body::Json(product),
                201,
            )
            .await;
        let price =
            json!({ "product_id": product["product_id"], "unit_amount": 5, "currency": "usd" });
        let price = s
            .expect(
                &buyer,
                Method::POST,
                "/create-price",
                Body::Json(price),
                201,
            )
            .await;
        let checkout = json!({ "price_id": price["price_id"] });
        let opened = s
            .expect(
                &buyer,
                Method::POST,
                "/create-checkout-session",
                Body::Json(checkout),
                200,
            )
            .await;
        let success = format!(
            "/checkout-success?session_id={}",
            opened["session_id"].as_str().unwrap()
        );
        let a = Actor::anonymous(&app);
        s.expect(&a, Method::GET, &success, Body::None, 303).await;
        s.expect(&a, Method::GET, "/checkout-cancel", Body::None, 303)
            .await;
        stripe.assert_clean();
    }
}

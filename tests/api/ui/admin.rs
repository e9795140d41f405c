//! The administration pages without JavaScript: an administrator managing users
//! through links and forms, and a plain user refused with 403 pages.

use reqwest::{Method, StatusCode};

use super::browser::Browser;
use super::forms::{signed_in, Walker};
use crate::helpers::{Backend, TestApp, PASSWORD};
use crate::on_both_databases;

on_both_databases!(
    an_administrator_manages_users_without_javascript,
    a_plain_user_gets_403_pages,
    bad_addresses_on_the_user_pages_are_pages_not_failures,
    a_super_admin_manages_roles_and_permissions_without_javascript,
    the_activity_log_page_filters_and_pages_without_javascript,
    roles_and_permissions_are_renamed_created_and_deleted_without_javascript,
    an_administrator_ends_one_session_of_a_user,
    the_user_list_pages_by_key_in_every_order,
);

pub(super) async fn id_of(app: &TestApp, username: &str) -> i64 {
    app.scalar(&format!(
        "SELECT id FROM users WHERE username = '{username}'"
    ))
    .await
}

async fn role_id(app: &TestApp, name: &str) -> i64 {
    app.scalar(&format!("SELECT id FROM roles WHERE name = '{name}'"))
        .await
}

async fn permission_id(app: &TestApp, name: &str) -> i64 {
    app.scalar(&format!("SELECT id FROM permissions WHERE name = '{name}'"))
        .await
}

async fn linked(app: &TestApp, role: i64, permission: i64) -> bool {
    app.scalar(&format!(
        "SELECT COUNT(*) FROM role_permissions WHERE role_id = {role} AND permission_id = {permission}"
    ))
    .await
        == 1
}

pub(super) async fn grant(app: &TestApp, username: &str, role: &str) {
    let id = id_of(app, username).await;
    app.grant(id, role).await;
}

async fn an_administrator_manages_users_without_javascript(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for name in ["alice", "bob"] {
        app.verified_user(name).await;
    }
    app.verified_user("boss").await;
    grant(&app, "boss", "Admin").await;
    let alice = id_of(&app, "alice").await;
    let bob = id_of(&app, "bob").await;
    // Alice is signed in in a browser of her own.
    let mut hers = signed_in(&app, "alice").await;
    let mut w = signed_in(&app, "boss").await;

    w.follow("Users").await;
    assert_eq!(w.path, "/ui/users");
    w.sees("3 users");
    w.sees("Sort by");
    w.sees("alice@example.com");
    w.sees("bob@example.com");

    // The search is a GET form: its query stays in the address.
    w.open("/ui/users?q=ALI").await;
    w.sees("1 user matching");
    w.sees("alice@example.com");
    assert!(!w.html.contains("bob@example.com"));
    w.sees("value=\"ALI\"");

    // Sorting is a link that keeps the search; the default is the order of joining.
    app.signup("aaron").await;
    let at = |html: &str, name: &str| html.find(&format!(">{name}</a>")).unwrap();
    w.open("/ui/users?q=A").await;
    assert!(at(&w.html, "alice") < at(&w.html, "aaron"));
    w.follow("Username").await;
    assert_eq!(w.path, "/ui/users?q=A&sort=username");
    assert!(at(&w.html, "aaron") < at(&w.html, "alice"));
    w.sees("name=\"sort\" value=\"username\"");
    w.open("/ui/users?sort=password").await;
    assert_eq!(w.status, StatusCode::BAD_REQUEST);
    w.open("/ui/users?q=ALI").await;

    w.follow("alice").await;
    assert_eq!(w.path, format!("/ui/users/{alice}"));
    w.sees("alice@example.com");

    // An Admin lacks manage_admin: handing out Super Admin is refused, with why.
    let super_admin = role_id(&app, "Super Admin").await;
    w.submit(&format!("/ui/users/{alice}/roles/{super_admin}/add"), &[])
        .await;
    assert_eq!(w.path, format!("/ui/users/{alice}"));
    w.sees("Refused: you can only change users and roles whose permissions you hold");
    let held = app
        .scalar(&format!(
            "SELECT COUNT(*) FROM user_roles WHERE user_id = {alice} AND role_id = {super_admin}"
        ))
        .await;
    assert_eq!(held, 0);

    let admin = role_id(&app, "Admin").await;
    w.submit(&format!("/ui/users/{alice}/roles/{admin}/add"), &[])
        .await;
    w.sees("The role is given.");
    w.sees(&format!("/ui/users/{alice}/roles/{admin}/remove"));
    w.submit(&format!("/ui/users/{alice}/roles/{admin}/remove"), &[])
        .await;
    w.sees("The role is taken away.");
    assert!(!w
        .html
        .contains(&format!("/ui/users/{alice}/roles/{admin}/remove")));
    let logged = app
        .scalar("SELECT COUNT(*) FROM activity_logs WHERE message LIKE 'role \"Admin\" %'")
        .await;
    assert_eq!(logged, 2, "each change is in the activity log");

    // Signing someone out everywhere asks first, on a page of its own.
    w.follow("Sign out everywhere").await;
    assert_eq!(w.path, format!("/ui/users/{alice}/confirm/sign-out"));
    w.sees("Sign this user out everywhere?");
    w.submit(&format!("/ui/users/{alice}/sign-out"), &[]).await;
    w.sees("They are signed out everywhere.");
    w.sees("Not signed in anywhere.");
    hers.open("/ui/profile").await;
    assert!(hers.path.starts_with("/ui/login"), "her session is over");

    // Disabling asks first; Cancel goes back without doing anything.
    w.open(&format!("/ui/users/{bob}")).await;
    w.follow("Disable the account").await;
    w.sees("Disable this account?");
    w.follow("Cancel").await;
    assert_eq!(w.path, format!("/ui/users/{bob}"));
    w.follow("Disable the account").await;
    w.submit(&format!("/ui/users/{bob}/disable"), &[]).await;
    w.sees("The account is disabled.");
    let res = app
        .post(
            "/login",
            serde_json::json!({ "username_or_email": "bob", "password": PASSWORD }),
        )
        .await;
    assert_eq!(
        res.status(),
        StatusCode::FORBIDDEN,
        "a disabled user cannot sign in"
    );
    w.submit(&format!("/ui/users/{bob}/enable"), &[]).await;
    w.sees("The account is enabled.");
    app.login("bob", PASSWORD).await;

    w.submit(&format!("/ui/users/{bob}/password-reset"), &[])
        .await;
    w.sees("A password reset link is on its way to them.");
    let link = app
        .email_link("bob@example.com", "Reset your password")
        .await;
    assert!(link.contains("/reset_password/"), "{link}");

    // Their own page offers nothing that would lock them out.
    let me = id_of(&app, "boss").await;
    w.open(&format!("/ui/users/{me}")).await;
    w.sees("This is you");
    assert!(!w.html.contains("Disable the account"));
}

async fn a_plain_user_gets_403_pages(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("victim").await;
    let victim = id_of(&app, "victim").await;
    // The app's own client is now signed in as the plain user.
    app.verified_user("plain").await;
    let mut w = signed_in(&app, "plain").await;
    assert!(
        !w.html.contains("href=\"/ui/users\""),
        "no link to what they may not see"
    );

    for page in [
        "/ui/users".to_owned(),
        "/ui/users?q=v".to_owned(),
        format!("/ui/users/{victim}"),
        format!("/ui/users/{victim}/confirm/disable"),
    ] {
        w.open(&page).await;
        assert_eq!(w.status, StatusCode::FORBIDDEN, "{page}");
        w.sees("Not allowed");
    }
    let admin = role_id(&app, "Admin").await;
    for action in [
        format!("/ui/users/{victim}/disable"),
        format!("/ui/users/{victim}/enable"),
        format!("/ui/users/{victim}/sign-out"),
        format!("/ui/users/{victim}/password-reset"),
        format!("/ui/users/{victim}/roles/{admin}/add"),
        format!("/ui/users/{victim}/roles/{admin}/remove"),
    ] {
        let res = app.request(Method::POST, &action, None).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{action}");
        assert!(res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
    }
    let roles = app
        .scalar(&format!(
            "SELECT COUNT(*) FROM user_roles WHERE user_id = {victim} AND role_id = {admin}"
        ))
        .await;
    assert_eq!(roles, 0);

    // Signed out, the pages ask to sign in and come back.
    let mut anonymous = Walker::new(&app);
    anonymous.open("/ui/users?q=x").await;
    assert_eq!(anonymous.path, "/ui/login?next=%2Fui%2Fusers%3Fq%3Dx");
}

async fn bad_addresses_on_the_user_pages_are_pages_not_failures(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("boss").await;
    grant(&app, "boss", "Admin").await;
    let me = id_of(&app, "boss").await;
    let mut w = signed_in(&app, "boss").await;
    let long = "a".repeat(101);
    for (page, status) in [
        ("/ui/users/abc".to_owned(), StatusCode::NOT_FOUND),
        ("/ui/users/99999999".to_owned(), StatusCode::NOT_FOUND),
        ("/ui/users/1e3".to_owned(), StatusCode::NOT_FOUND),
        (
            format!("/ui/users/{me}/confirm/explode"),
            StatusCode::NOT_FOUND,
        ),
        ("/ui/users?after=x".to_owned(), StatusCode::BAD_REQUEST),
        (
            "/ui/users?after=1&before=9".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/ui/users?sort=email&after={}", "a".repeat(255)),
            StatusCode::BAD_REQUEST,
        ),
        (format!("/ui/users?q={long}"), StatusCode::BAD_REQUEST),
    ] {
        w.open(&page).await;
        assert_eq!(w.status, status, "{page}");
        w.sees("<!doctype html>");
    }
    // Past the last page is an empty page, not an error.
    w.open("/ui/users?after=99999999").await;
    assert_eq!(w.status, StatusCode::OK);
    w.sees("Nobody matches.");
    // Forms posted without their token are refused before anything changes.
    let res = app
        .request(Method::POST, &format!("/ui/users/{me}/sign-out"), None)
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    w.open(&format!("/ui/users/{me}")).await;
    w.sees("This is you");
}

async fn a_super_admin_manages_roles_and_permissions_without_javascript(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("root").await;
    grant(&app, "root", "Super Admin").await;
    app.verified_user("keeper").await;
    app.verified_user("boss").await;
    grant(&app, "boss", "Admin").await;
    let mut w = signed_in(&app, "root").await;

    w.follow("Roles").await;
    assert_eq!(w.path, "/ui/roles");
    w.sees("built-in");
    w.submit("/ui/roles", &[("name", "Editors")]).await;
    w.sees("The role is created.");
    w.submit("/ui/roles", &[("name", "   ")]).await;
    assert_eq!(w.status, StatusCode::BAD_REQUEST);
    w.sees("Refused: ");
    let editors = role_id(&app, "Editors").await;
    let manage_users = permission_id(&app, "manage_users").await;
    let grant_path = format!("/ui/roles/{editors}/permissions/{manage_users}/grant");
    w.submit(&grant_path, &[]).await;
    w.sees("Editors now has manage_users.");
    assert!(linked(&app, editors, manage_users).await);
    w.submit(
        &format!("/ui/roles/{editors}/permissions/{manage_users}/withdraw"),
        &[],
    )
    .await;
    w.sees("Editors no longer has manage_users.");
    assert!(!linked(&app, editors, manage_users).await);
    // Super Admin has every permission: its row has nothing to change.
    let super_admin = role_id(&app, "Super Admin").await;
    assert!(!w
        .html
        .contains(&format!("/ui/roles/{super_admin}/permissions/")));

    // Built-in roles and roles in use stay, with the reason.
    let admin = role_id(&app, "Admin").await;
    w.open(&format!("/ui/roles/{admin}/delete")).await;
    w.sees("Delete the role Admin?");
    w.submit(&format!("/ui/roles/{admin}/delete"), &[]).await;
    w.sees("Refused: Built-in roles cannot be deleted");

    // A keeper holds manage_admin but not access_logs: granting it is refused.
    w.submit("/ui/roles", &[("name", "Keepers")]).await;
    let keepers = role_id(&app, "Keepers").await;
    let manage_admin = permission_id(&app, "manage_admin").await;
    w.submit(
        &format!("/ui/roles/{keepers}/permissions/{manage_admin}/grant"),
        &[],
    )
    .await;
    grant(&app, "keeper", "Keepers").await;
    w.open(&format!("/ui/roles/{keepers}/delete")).await;
    w.submit(&format!("/ui/roles/{keepers}/delete"), &[]).await;
    w.sees("Refused: The role is held by 1 user(s)");

    let mut k = signed_in(&app, "keeper").await;
    k.follow("Roles").await;
    let access_logs = permission_id(&app, "access_logs").await;
    k.submit(
        &format!("/ui/roles/{editors}/permissions/{access_logs}/grant"),
        &[],
    )
    .await;
    k.sees("Refused: you can only change users and roles whose permissions you hold");
    assert!(!linked(&app, editors, access_logs).await);

    w.open(&format!("/ui/roles/{editors}/delete")).await;
    w.follow("Cancel").await;
    assert_eq!(w.path, "/ui/roles");
    w.open(&format!("/ui/roles/{editors}/delete")).await;
    w.submit(&format!("/ui/roles/{editors}/delete"), &[]).await;
    w.sees("The role is deleted.");
    assert!(!w.html.contains(">Editors<"));

    // An Admin manages users, not roles.
    let mut b = signed_in(&app, "boss").await;
    assert!(!b.html.contains("href=\"/ui/roles\""));
    for page in [
        "/ui/roles".to_owned(),
        format!("/ui/roles/{keepers}/delete"),
    ] {
        b.open(&page).await;
        assert_eq!(b.status, StatusCode::FORBIDDEN, "{page}");
        b.sees("Not allowed");
    }
    let res = app
        .request(Method::POST, &format!("/ui/roles/{keepers}/delete"), None)
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    for page in [
        "/ui/roles/x/delete".to_owned(),
        "/ui/roles/999999/delete".to_owned(),
    ] {
        w.open(&page).await;
        assert_eq!(w.status, StatusCode::NOT_FOUND, "{page}");
    }
}

async fn the_activity_log_page_filters_and_pages_without_javascript(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("olga").await;
    app.verified_user("boss").await;
    grant(&app, "boss", "Admin").await;
    let olga = id_of(&app, "olga").await;
    // Sixty entries of Olga's, enough for a second page, and one with a marker.
    for i in 0..60 {
        sqlx::query(
            "INSERT INTO activity_logs (created_at, level, kind, message, user_id, user_email) \
             VALUES ($1, $2, 'auth', $3, $4, 'olga@example.com')",
        )
        .bind(1_790_000_000_i64 + i)
        .bind(if i == 7 { "WARNING" } else { "INFO" })
        .bind(format!("entry number {i}"))
        .bind(olga)
        .execute(app.state.db.writer())
        .await
        .unwrap();
    }

    // Olga sees only her own, with no export and no user filter.
    let mut o = signed_in(&app, "olga").await;
    o.follow("Activity log").await;
    assert_eq!(o.path, "/ui/logs");
    o.sees("of your own");
    o.sees("entry number 59");
    assert!(!o.html.contains("boss@example.com"));
    assert!(!o.html.contains("Download as CSV"));
    assert!(
        !o.html.contains("entry number 9<"),
        "the first page holds the newest 50"
    );
    o.follow("Older entries").await;
    assert!(o.path.contains("before_id="), "{}", o.path);
    o.sees("entry number 9<");
    o.sees("showing older ones");
    o.follow("Newest").await;
    o.sees("entry number 59");

    // An Admin (access_logs) filters everybody's; the filters stay in the address.
    let mut w = signed_in(&app, "boss").await;
    w.follow("Activity log").await;
    w.sees("Download as CSV");
    w.open(
        "/ui/logs?user=olga%40example.com&level=warning&q=NUMBER&since=2026-01-01T00:00:00Z&until=",
    )
    .await;
    assert_eq!(w.status, StatusCode::OK);
    w.sees("1 entry");
    w.sees("entry number 7");
    w.sees("value=\"olga@example.com\"");
    // Times show in the form's datetime-local fields, in UTC.
    w.sees("name=\"since\" type=\"datetime-local\" step=\"1\" value=\"2026-01-01T00:00:00\"");
    // What those fields send, with the kind filter: Olga's entries are `auth`.
    // Her entries are a second apart from 2026-09-21T14:13:20Z.
    w.open("/ui/logs?user=olga%40example.com&kind=auth&since=2026-09-21T14:13&until=2026-09-21T14:13:30")
        .await;
    assert_eq!(w.status, StatusCode::OK);
    w.sees("11 entries");
    w.sees("<option value=\"auth\" selected>");
    w.open("/ui/logs?user=olga%40example.com&kind=admin").await;
    w.sees("0 entries");
    w.open(
        "/ui/logs?user=olga%40example.com&level=warning&q=NUMBER&since=2026-01-01T00:00:00Z&until=",
    )
    .await;
    w.sees("/logs/export.csv?user=olga%40example.com&#38;level=warning&#38;q=NUMBER");

    // The link downloads exactly that view (the app's client is the Admin's).
    let csv = app
        .get("/logs/export.csv?user=olga%40example.com&level=warning&q=NUMBER&since=2026-01-01T00:00:00Z&until=")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(csv.contains("entry number 7"), "{csv}");

    for bad in [
        "/ui/logs?level=LOUD",
        "/ui/logs?since=yesterday",
        "/ui/logs?before_id=abc",
    ] {
        w.open(bad).await;
        assert_eq!(w.status, StatusCode::BAD_REQUEST, "{bad}");
        w.sees("<!doctype html>");
    }
    let long = "x".repeat(201);
    w.open(&format!("/ui/logs?q={long}")).await;
    assert_eq!(w.status, StatusCode::BAD_REQUEST);

    let mut anonymous = Walker::new(&app);
    anonymous.open("/ui/logs?level=INFO").await;
    assert_eq!(anonymous.path, "/ui/login?next=%2Fui%2Flogs%3Flevel%3DINFO");
}

async fn roles_and_permissions_are_renamed_created_and_deleted_without_javascript(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("root").await;
    grant(&app, "root", "Super Admin").await;
    app.verified_user("keeper").await;
    app.verified_user("boss").await;
    grant(&app, "boss", "Admin").await;
    let mut w = signed_in(&app, "root").await;
    w.open("/ui/roles").await;
    // Members are counted (in one grouped query): boss holds Admin, root Super Admin,
    // and every signup holds User.
    let admin = role_id(&app, "Admin").await;
    w.sees(&format!("action=\"/ui/roles/{admin}/permissions/"));
    assert!(w.html.contains("Admin <span class=\"badge\">built-in</span></td>\n        <td data-label=\"Members\" class=\"num num-cell\">1</td>"), "{}", w.html);
    assert!(w.html.contains("User <span class=\"badge\">built-in</span></td>\n        <td data-label=\"Members\" class=\"num num-cell\">3</td>"));
    // Built-in roles and permissions offer no rename and no delete.
    assert!(!w.html.contains(&format!("/ui/roles/{admin}/rename")));
    let manage_users = permission_id(&app, "manage_users").await;
    assert!(!w
        .html
        .contains(&format!("/ui/permissions/{manage_users}/rename")));

    // Rename a role of our own.
    w.submit("/ui/roles", &[("name", "Editors")]).await;
    let editors = role_id(&app, "Editors").await;
    w.submit(
        &format!("/ui/roles/{editors}/rename"),
        &[("name", "  Writers ")],
    )
    .await;
    assert_eq!(w.path, "/ui/roles");
    w.sees("The role is now Writers.");
    assert_eq!(role_id(&app, "Writers").await, editors);
    w.submit(&format!("/ui/roles/{editors}/rename"), &[("name", "user")])
        .await;
    w.sees("Refused: Role already exists");
    let long = "n".repeat(65);
    w.submit(&format!("/ui/roles/{editors}/rename"), &[("name", &long)])
        .await;
    assert_eq!(
        w.status,
        StatusCode::BAD_REQUEST,
        "a bad name is a 400 page"
    );
    w.sees("<p class=\"form-error\" role=\"alert\">Refused: name must be 1 to 64 characters");
    assert_eq!(role_id(&app, "Writers").await, editors);
    // Built-in: refused by the rule, with its reason, even when posted by hand.
    w.post(&format!("/ui/roles/{admin}/rename"), &[("name", "Boss")])
        .await;
    w.sees("Refused: Built-in roles cannot be renamed");
    assert_eq!(role_id(&app, "Admin").await, admin);

    // Permissions: create, rename, grant, delete.
    w.submit("/ui/permissions", &[("name", "export_reports")])
        .await;
    w.sees("The permission is created.");
    let export = permission_id(&app, "export_reports").await;
    w.submit(
        &format!("/ui/permissions/{export}/rename"),
        &[("name", "export.reports")],
    )
    .await;
    w.sees("The permission is now export.reports.");
    w.submit(
        &format!("/ui/permissions/{export}/rename"),
        &[("name", "bad name!")],
    )
    .await;
    assert_eq!(w.status, StatusCode::BAD_REQUEST);
    w.sees("Refused: name must be 1 to 64 of letters");
    w.submit("/ui/permissions", &[("name", "manage_USERS")])
        .await;
    w.sees("Refused: Permission already exists");
    w.post(
        &format!("/ui/permissions/{manage_users}/rename"),
        &[("name", "manage_people")],
    )
    .await;
    w.sees("Refused: Built-in permissions cannot be renamed");
    w.open(&format!("/ui/permissions/{manage_users}/delete"))
        .await;
    w.submit(&format!("/ui/permissions/{manage_users}/delete"), &[])
        .await;
    w.sees("Refused: Built-in permissions cannot be deleted");
    assert_eq!(permission_id(&app, "manage_users").await, manage_users);
    w.submit(
        &format!("/ui/roles/{editors}/permissions/{export}/grant"),
        &[],
    )
    .await;
    assert!(linked(&app, editors, export).await);

    // A holder of manage_admin alone cannot rename or delete what they do not hold.
    w.submit("/ui/roles", &[("name", "Keepers")]).await;
    let keepers = role_id(&app, "Keepers").await;
    let manage_admin = permission_id(&app, "manage_admin").await;
    w.submit(
        &format!("/ui/roles/{keepers}/permissions/{manage_admin}/grant"),
        &[],
    )
    .await;
    grant(&app, "keeper", "Keepers").await;
    let mut k = signed_in(&app, "keeper").await;
    k.open("/ui/roles").await;
    k.submit(
        &format!("/ui/permissions/{export}/rename"),
        &[("name", "mine_now")],
    )
    .await;
    k.sees("Refused: you can only change users and roles whose permissions you hold");
    k.submit(&format!("/ui/roles/{editors}/rename"), &[("name", "Mine")])
        .await;
    k.sees("Refused: you can only change");
    assert_eq!(permission_id(&app, "export.reports").await, export);

    // Deleting asks first (the page without JavaScript), then the role loses it.
    w.open("/ui/roles").await;
    w.sees(&format!(
        "href=\"/ui/permissions/{export}/delete\" data-confirm-link"
    ));
    w.open(&format!("/ui/permissions/{export}/delete")).await;
    w.sees("Delete the permission export.reports?");
    w.follow("Cancel").await;
    assert_eq!(w.path, "/ui/roles");
    w.open(&format!("/ui/permissions/{export}/delete")).await;
    w.submit(&format!("/ui/permissions/{export}/delete"), &[])
        .await;
    w.sees("The permission is deleted.");
    assert!(!linked(&app, editors, export).await);
    assert!(!w.html.contains("export.reports"));

    // Each change is in the log with its before and after.
    w.open("/ui/logs?kind=admin&q=renamed").await;
    w.sees("2 entries");
    w.sees("role &#34;Editors&#34; renamed to &#34;Writers&#34;");
    w.sees("<del>Editors</del>");
    w.sees("<ins>Writers</ins>");

    // Bad addresses and bodies are 4xx pages.
    for (page, status) in [
        ("/ui/permissions/x/delete".to_owned(), StatusCode::NOT_FOUND),
        (
            "/ui/permissions/99999999/delete".to_owned(),
            StatusCode::NOT_FOUND,
        ),
        (
            "/ui/permissions/1e3/delete".to_owned(),
            StatusCode::NOT_FOUND,
        ),
    ] {
        w.open(&page).await;
        assert_eq!(w.status, status, "{page}");
        w.sees("<!doctype html>");
    }
    w.open("/ui/roles").await;
    for (action, values, status) in [
        (
            "/ui/roles/abc/rename",
            vec![("name", "X")],
            StatusCode::NOT_FOUND,
        ),
        (
            "/ui/permissions/abc/rename",
            vec![("name", "x")],
            StatusCode::NOT_FOUND,
        ),
        (
            "/ui/permissions/99999999/rename",
            vec![("name", "x")],
            StatusCode::SEE_OTHER,
        ),
        ("/ui/permissions", vec![], StatusCode::BAD_REQUEST),
    ] {
        w.open("/ui/roles").await;
        w.post(action, &values).await;
        if status == StatusCode::SEE_OTHER {
            w.sees("Refused: Permission not found");
        } else {
            assert_eq!(w.status, status, "{action}");
            w.sees("<!doctype html>");
        }
    }
    w.open("/ui/roles").await;
    let huge = "x".repeat(2 * 1024 * 1024);
    w.post("/ui/permissions", &[("name", &huge)]).await;
    assert_eq!(w.status, StatusCode::PAYLOAD_TOO_LARGE);
    w.sees("<!doctype html>");

    // An Admin lacks manage_admin: 403 pages.
    let mut b = signed_in(&app, "boss").await;
    b.open(&format!("/ui/permissions/{manage_users}/delete"))
        .await;
    assert_eq!(b.status, StatusCode::FORBIDDEN);
    b.sees("Not allowed");
    for action in [
        "/ui/permissions".to_owned(),
        format!("/ui/permissions/{manage_users}/rename"),
        format!("/ui/permissions/{manage_users}/delete"),
        format!("/ui/roles/{keepers}/rename"),
    ] {
        b.open("/ui/").await;
        b.post(&action, &[("name", "x")]).await;
        assert_eq!(b.status, StatusCode::FORBIDDEN, "{action}");
        b.sees("Not allowed");
    }
}

async fn an_administrator_ends_one_session_of_a_user(backend: Backend) {
    // With the session cache on: the revoke must empty it, or the session would live.
    let app = TestApp::spawn_with(backend, &[("SESSION_CACHE", "on")]).await;
    app.verified_user("alice").await;
    app.verified_user("boss").await;
    app.verified_user("plain").await;
    grant(&app, "boss", "Admin").await;
    let alice = id_of(&app, "alice").await;
    let mut laptop = signed_in(&app, "alice").await;
    let laptop_session = app
        .scalar(&format!(
            "SELECT MAX(id) FROM sessions WHERE user_id = {alice} AND revoked_at IS NULL"
        ))
        .await;
    let mut phone = signed_in(&app, "alice").await;
    laptop.open("/ui/profile").await;
    assert_eq!(laptop.path, "/ui/profile", "cached and live");

    let mut w = signed_in(&app, "boss").await;
    w.open(&format!("/ui/users/{alice}")).await;
    let end = format!("/ui/users/{alice}/sessions/{laptop_session}/end");
    w.sees(&end);
    assert_eq!(
        w.html.matches("/sessions/").count(),
        2,
        "one button a session"
    );
    w.submit(&end, &[]).await;
    assert_eq!(w.path, format!("/ui/users/{alice}"));
    w.sees("That session is signed out.");
    assert!(!w.html.contains(&end));
    laptop.open("/ui/profile").await;
    assert!(laptop.path.starts_with("/ui/login"), "{}", laptop.path);
    phone.open("/ui/profile").await;
    assert_eq!(phone.path, "/ui/profile", "the other session lives on");

    // Twice, or someone else's session: not found, with the reason.
    w.post(&end, &[]).await;
    w.sees("Refused: Session not found");
    let boss_session = app
        .scalar("SELECT MAX(s.id) FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.username = 'boss'")
        .await;
    w.post(
        &format!("/ui/users/{alice}/sessions/{boss_session}/end"),
        &[],
    )
    .await;
    w.sees("Refused: Session not found");
    w.open("/ui/").await;
    assert_eq!(
        w.path, "/ui/",
        "the administrator's own session was not touched"
    );
    for bad in ["abc", "1e3", "-"] {
        w.open(&format!("/ui/users/{alice}")).await;
        w.post(&format!("/ui/users/{alice}/sessions/{bad}/end"), &[])
            .await;
        assert_eq!(w.status, StatusCode::NOT_FOUND, "{bad}");
        w.sees("<!doctype html>");
    }

    // The log says who ended which session of whom.
    app.state.activity.drain().await;
    w.open("/ui/logs?kind=admin").await;
    w.sees(&format!("session {laptop_session} of user {alice} ended"));
    w.sees("boss@example.com</strong>: end session");
    w.sees("<del>true</del>");
    w.sees("<ins>false</ins>");
    w.open("/ui/logs?kind=loud").await;
    assert_eq!(w.status, StatusCode::BAD_REQUEST);
    w.sees("kind must be access, auth, admin or change");

    // A plain user may not.
    let mut p = signed_in(&app, "plain").await;
    p.post(
        &format!("/ui/users/{alice}/sessions/{laptop_session}/end"),
        &[],
    )
    .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    phone.open("/ui/profile").await;
    assert_eq!(phone.path, "/ui/profile");
}

/// The user pages in a real browser, photographed in both themes at both widths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_pages_in_a_browser() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for name in ["alice", "bob", "carol"] {
        app.verified_user(name).await;
    }
    app.verified_user("boss").await;
    grant(&app, "boss", "Admin").await;
    let bob = id_of(&app, "bob").await;
    let Some(b) = Browser::start(&app.url("/")).await else {
        return;
    };
    b.open("/ui/login").await;
    b.fill("Username or email", "boss").await;
    b.fill("Password", PASSWORD).await;
    b.click("Sign in").await;
    b.at("/ui/").await;

    b.click("Users").await;
    b.at("/ui/users").await;
    b.sees("4 users").await;
    b.screenshots("admin-users").await;
    b.fill("Search by username, email or name", "b").await;
    b.click("Search").await;
    b.at("/ui/users?q=b").await;
    b.sees("2 users matching").await;
    b.screenshots("admin-users-search").await;

    // Bob is signed in elsewhere: his page lists that session with its own button.
    let _bobs = signed_in(&app, "bob").await;
    b.click("bob").await;
    b.at(&format!("/ui/users/{bob}")).await;
    assert!(b.shows("form[action$=\"/end\"] button").await);
    b.screenshots("admin-user").await;
    // With the script, the confirmation is a dialog on the page itself.
    assert!(!b.shows("dialog[open]").await);
    b.press("Disable the account").await;
    assert!(b.shows("dialog[open]").await, "the dialog asks first");
    b.sees("Disable the account of bob?").await;
    b.screenshots("admin-user-dialog").await;
    b.press("Cancel").await;
    assert!(!b.shows("dialog[open]").await);
    b.at(&format!("/ui/users/{bob}")).await;
    b.press("Disable the account").await;
    b.click("Yes, disable the account").await;
    b.at(&format!("/ui/users/{bob}")).await;
    b.sees("The account is disabled.").await;
    b.click("Enable the account").await;
    b.sees("The account is enabled.").await;
    // The confirmation page, as a browser without the script reaches it.
    b.open(&format!("/ui/users/{bob}/confirm/disable")).await;
    b.screenshots("admin-user-confirm").await;
    b.click("Disable the account").await;
    b.at(&format!("/ui/users/{bob}")).await;
    b.sees("The account is disabled.").await;
    b.screenshots("admin-user-disabled").await;
    b.click("Enable the account").await;
    b.sees("The account is enabled.").await;

    // Roles read fresh on every request: as a Super Admin, the roles page.
    grant(&app, "boss", "Super Admin").await;
    // Enough permissions for a wide matrix: it scrolls inside its card, never the page.
    for name in [
        "export_reports",
        "import_accounts",
        "audit.read",
        "billing:refunds",
    ] {
        b.open("/ui/roles").await;
        b.fill("New permission", name).await;
        b.click("Create the permission").await;
        b.sees("The permission is created.").await;
    }
    b.fill("New role", "Support Desk").await;
    b.click("Create the role").await;
    b.click("Roles").await;
    b.at("/ui/roles").await;
    assert!(
        !b.overflows_at(1440).await,
        "the roles page fits at 1440 px"
    );
    assert!(!b.overflows_at(360).await, "and at 360 px");
    b.screenshots("admin-roles").await;
    b.screenshots_at("admin-roles-matrix", Some(".matrix-wrap"))
        .await;
    // Deleting a permission asks in a dialog.
    let refunds = permission_id(&app, "billing:refunds").await;
    b.press_at(&format!(
        "form[action=\"/ui/permissions/{refunds}/delete\"] button"
    ))
    .await;
    assert!(b.shows("dialog[open]").await);
    b.click("Delete the permission").await;
    b.sees("The permission is deleted.").await;
    b.click("Activity log").await;
    b.at("/ui/logs").await;
    b.screenshots("admin-logs").await;
    // The administrative changes alone, each with its before and after.
    b.open("/ui/logs?kind=admin").await;
    b.sees("delete permission").await;
    assert!(b.shows("table.diff del").await);
    b.screenshots_at("admin-logs-changes", Some("table.stack tbody"))
        .await;
}

/// Pages of the user list follow their sort key in the address, forwards and back,
/// in each order, with and without a search.
async fn the_user_list_pages_by_key_in_every_order(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("boss").await;
    grant(&app, "boss", "Admin").await;
    // 60 more, straight into the table; their emails sort in the reverse order of
    // their usernames.
    sqlx::query(
        "INSERT INTO users (username, email, first_name, last_name, password_hash, \
         created_at, updated_at, password_changed_at) \
         WITH RECURSIVE seq(n) AS (SELECT 10 UNION ALL SELECT n + 1 FROM seq WHERE n < 69) \
         SELECT 'Pager' || n, 'm' || (99 - n) || '@corp.example', 'P', 'N', 'x', 0, 0, 0 \
         FROM seq",
    )
    .execute(app.state.db.writer())
    .await
    .unwrap();
    app.state.sessions.caught_up().await;
    let mut w = signed_in(&app, "boss").await;
    let names = |html: &str| -> Vec<String> {
        html.split("\">Pager")
            .skip(1)
            .map(|rest| format!("Pager{}", &rest[..2]))
            .collect()
    };

    for (sort, expected) in [
        ("username", (10..70).collect::<Vec<i32>>()),
        ("email", (10..70).rev().collect()),
    ] {
        w.open(&format!("/ui/users?q=pag&sort={sort}")).await;
        w.sees("60 users matching");
        let mut seen = names(&w.html);
        assert!(!w.html.contains("rel=\"prev\""), "{sort}");
        while w.html.contains("rel=\"next\"") {
            w.follow("Next page").await;
            assert!(w.path.contains("after="), "{}", w.path);
            assert!(w.path.contains(&format!("sort={sort}")), "{}", w.path);
            seen.extend(names(&w.html));
        }
        let expected: Vec<String> = expected.iter().map(|n| format!("Pager{n}")).collect();
        assert_eq!(seen, expected, "{sort}");
        // The last page is the third; back from it is the second, 25 names on.
        w.follow("Previous page").await;
        assert!(w.path.contains("before="), "{}", w.path);
        assert_eq!(names(&w.html), expected[25..50].to_vec(), "{sort}");
        w.follow("Previous page").await;
        assert_eq!(names(&w.html), expected[..25].to_vec(), "{sort}");
        assert!(!w.html.contains("rel=\"prev\""), "{sort}");
    }

    // The joined order pages by id; everyone is listed once.
    w.open("/ui/users").await;
    w.sees("61 users");
    let mut pages = 1;
    while w.html.contains("rel=\"next\"") {
        w.follow("Next page").await;
        pages += 1;
    }
    assert_eq!(pages, 3);
    w.sees("Pager69");
}

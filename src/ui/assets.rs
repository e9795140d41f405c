//! Our stylesheet and script, embedded in the binary and served under names that
//! carry a hash of their content, so browsers may keep them for a year. The sources
//! keep their comments and indentation; what is served leaves them out (computed once
//! per process), which keeps a page's first load within its budget.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderValue};
use axum::response::IntoResponse;
use sha2::Digest as _;

use super::{PageError, PageResult};
use crate::error::AppError;

const CSS: &str = include_str!("../../static/ui.css");
const JS: &str = include_str!("../../static/ui.js");

pub struct Assets {
    css: String,
    js: String,
    css_name: String,
    js_name: String,
    pub css_url: String,
    pub js_url: String,
}

fn hashed(stem: &str, ext: &str, content: &str) -> String {
    let digest = hex::encode(sha2::Sha256::digest(content.as_bytes()));
    format!("{stem}.{}.{ext}", &digest[..12])
}

/// The names, hashed once per process.
pub fn get() -> &'static Assets {
    static ASSETS: OnceLock<Assets> = OnceLock::new();
    ASSETS.get_or_init(|| {
        let css = compact_css(CSS);
        let js = compact_js(JS);
        let css_name = hashed("ui", "css", &css);
        let js_name = hashed("ui", "js", &js);
        Assets {
            css_url: format!("/ui/static/{css_name}"),
            js_url: format!("/ui/static/{js_name}"),
            css,
            js,
            css_name,
            js_name,
        }
    })
}

/// The stylesheet without its comments and without the spaces that mean nothing:
/// runs of white space become one space, and none is kept next to `{ } ; ,` or `>`,
/// nor after `:`.
/// Our stylesheet has no strings holding those characters, which this would change.
fn compact_css(source: &str) -> String {
    let mut without_comments = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("/*") {
        without_comments.push_str(&rest[..start]);
        rest = rest[start..]
            .find("*/")
            .map_or("", |end| &rest[start + end + 2..]);
    }
    without_comments.push_str(rest);
    let mut out = String::with_capacity(without_comments.len());
    let mut pending_space = false;
    for c in without_comments.chars() {
        if c.is_whitespace() {
            pending_space = true;
            continue;
        }
        // A space before `:` can matter (`.a :hover` is not `.a:hover`); after it, not.
        let before = matches!(c, '{' | '}' | ';' | ',' | '>');
        let after = out.ends_with(['{', '}', ';', ':', ',', '>']);
        if pending_space && !before && !after && !out.is_empty() {
            out.push(' ');
        }
        pending_space = false;
        out.push(c);
    }
    out
}

/// The script without indentation, blank lines and whole-line `//` comments. Line
/// breaks stay, so automatic semicolon insertion reads it as before.
fn compact_js(source: &str) -> String {
    source
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

pub(super) async fn serve(Path(file): Path<String>) -> PageResult {
    let assets = get();
    let (body, kind) = if file == assets.css_name {
        (assets.css.as_str(), "text/css; charset=utf-8")
    } else if file == assets.js_name {
        (assets.js.as_str(), "text/javascript; charset=utf-8")
    } else {
        return Err(PageError::App(AppError::not_found(
            "There is no such file here.",
        )));
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stylesheet_loses_only_comments_and_meaningless_space() {
        let css = "/* a note */\n.a > .b,\n.c :hover {\n  margin: 0 auto;\n  width: calc(100% - 2rem);\n}\n@media (max-width: 600px) { .d { content: \"✓\"; } }\n";
        assert_eq!(
            compact_css(css),
            ".a>.b,.c :hover{margin:0 auto;width:calc(100% - 2rem);}@media (max-width:600px){.d{content:\"✓\";}}"
        );
    }

    #[test]
    fn the_script_keeps_its_lines() {
        let js = "// what it does\nfunction f() {\n    const a = 1\n\n    return a // one\n}\n";
        assert_eq!(
            compact_js(js),
            "function f() {\nconst a = 1\nreturn a // one\n}"
        );
    }

    #[test]
    fn what_is_served_is_smaller_than_the_sources() {
        let assets = get();
        assert!(assets.css.len() < CSS.len() && assets.js.len() < JS.len());
        assert!(assets.css.contains(".matrix"));
    }
}

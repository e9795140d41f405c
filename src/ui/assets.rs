//! Our stylesheet and script, embedded in the binary and served under names that
//! carry a hash of their content, so browsers may keep them for a year.

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
        let css_name = hashed("ui", "css", CSS);
        let js_name = hashed("ui", "js", JS);
        Assets {
            css_url: format!("/ui/static/{css_name}"),
            js_url: format!("/ui/static/{js_name}"),
            css_name,
            js_name,
        }
    })
}

pub(super) async fn serve(Path(file): Path<String>) -> PageResult {
    let assets = get();
    let (body, kind) = if file == assets.css_name {
        (CSS, "text/css; charset=utf-8")
    } else if file == assets.js_name {
        (JS, "text/javascript; charset=utf-8")
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

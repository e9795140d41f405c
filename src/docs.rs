//! `GET /docs`: the API reference for people, rendered on the server from the same
//! OpenAPI document `/openapi.json` serves ([`openapi::json`]), with the web UI's
//! stylesheet and no script.
//!
//! `/docs` is the table of contents: per tag a section listing each operation with its
//! method, path, summary and the statuses it answers, then the error model and the
//! security schemes. `/docs/{tag}` is that tag's reference: per operation its access,
//! parameters, request body (media types, the schema's properties with `$ref`s
//! followed, the example) and every response with its description, schema and example;
//! the schemas its properties refer to close the page. One page per tag keeps each
//! page within the web UI's first-load budget. The document is derived from code, so
//! every page is rendered once, on first request, and may be cached by clients.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use askama::Template;
use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use crate::auth::policy::Policy::Public;
use crate::auth::policy::Routes;
use crate::{openapi, ui};

/// Where the reference lives.
pub const PATH: &str = "/docs";
/// Clients may keep a page for an hour: it changes only with the binary, and its
/// stylesheet is under a content-hashed name.
const CACHE_CONTROL: &str = "public, max-age=3600";
/// The tag of operations whose handler names none.
const UNTAGGED: &str = "other";
/// The error model, described once on the table of contents.
const ERROR_MODEL: &str = "ErrorBody";

pub fn routes() -> Routes {
    Routes::pages()
        .get(PATH, Public, index)
        .get("/docs/{tag}", Public, tag_page)
}

/// Whether a path is one of the reference's pages.
pub fn is_page(path: &str) -> bool {
    path == PATH || path.starts_with("/docs/")
}

/// A run of text, `code` when it was between backticks.
pub struct Span {
    pub text: String,
    pub code: bool,
}

/// Text in the document's own markup: paragraphs separated by a blank line, code
/// between backticks.
fn spans(text: &str) -> Vec<Span> {
    text.split('`')
        .enumerate()
        .filter(|(_, t)| !t.is_empty())
        .map(|(i, t)| Span {
            text: t.to_owned(),
            code: i % 2 == 1,
        })
        .collect()
}

fn paragraphs(text: &str) -> Vec<Vec<Span>> {
    text.split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(spans)
        .collect()
}

/// Part of a type's name; a link when it names a schema.
pub struct TypePart {
    pub text: String,
    pub href: Option<String>,
}

pub struct Field {
    pub name: String,
    pub ty: Vec<TypePart>,
    pub required: bool,
    pub description: Vec<Span>,
}

/// A schema as a reader wants it: its name, what it is, and its properties.
pub struct SchemaView {
    pub name: Option<String>,
    pub anchor: String,
    pub ty: Vec<TypePart>,
    pub description: Vec<Vec<Span>>,
    pub fields: Vec<Field>,
    pub example: Option<String>,
}

pub struct Param {
    pub name: String,
    pub location: String,
    pub ty: Vec<TypePart>,
    pub required: bool,
    pub description: Vec<Span>,
}

pub struct Body {
    pub media: Vec<String>,
    pub required: bool,
    pub schema: Option<SchemaView>,
    pub example: Option<String>,
}

pub struct Answer {
    pub status: String,
    pub description: Vec<Span>,
    /// Answered with the error model: a link to it, not its properties again.
    pub error: bool,
    pub media: Vec<String>,
    pub schema: Option<SchemaView>,
    pub example: Option<String>,
}

pub struct Operation {
    pub id: String,
    /// The page it is described on.
    pub page: String,
    pub method: String,
    pub path: String,
    pub summary: String,
    pub description: Vec<Vec<Span>>,
    pub access: Vec<Span>,
    pub params: Vec<Param>,
    pub body: Option<Body>,
    pub answers: Vec<Answer>,
}

impl Operation {
    /// The statuses, as the table of contents lists them.
    pub fn statuses(&self) -> String {
        self.answers
            .iter()
            .map(|a| a.status.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

pub struct Section {
    pub tag: String,
    pub operations: Vec<Operation>,
}

pub struct Scheme {
    pub name: String,
    pub kind: String,
    pub description: Vec<Span>,
}

/// Reads one OpenAPI document into what the pages show.
struct Reader<'a> {
    schemas: &'a Map<String, Value>,
    /// The schemas named in properties, to describe at the end of the page.
    referred: BTreeSet<String>,
    /// Where a schema's description is: this page, or the table of contents.
    page: String,
}

fn ref_name(schema: &Value) -> Option<&str> {
    schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.rsplit('/').next())
}

/// An example, indented, escaped for HTML here (the template marks it safe): quotes
/// stay as they are, which keeps the page small.
fn pretty(value: &Value) -> Option<String> {
    let json = serde_json::to_string_pretty(value).ok()?;
    Some(
        json.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;"),
    )
}

fn word(text: impl Into<String>) -> TypePart {
    TypePart {
        text: text.into(),
        href: None,
    }
}

impl Reader<'_> {
    fn resolve<'v>(&'v self, schema: &'v Value) -> (Option<&'v str>, &'v Value) {
        match ref_name(schema) {
            Some(name) => (Some(name), self.schemas.get(name).unwrap_or(&Value::Null)),
            None => (None, schema),
        }
    }

    fn link(&mut self, name: &str) -> TypePart {
        let href = if name == ERROR_MODEL {
            format!("{PATH}#schema-{name}")
        } else {
            self.referred.insert(name.to_owned());
            format!("{}#schema-{name}", self.page)
        };
        TypePart {
            text: name.to_owned(),
            href: Some(href),
        }
    }

    /// A schema's type in a few words, with links to the schemas it names.
    fn type_of(&mut self, schema: &Value) -> Vec<TypePart> {
        if let Some(name) = ref_name(schema) {
            return vec![self.link(name)];
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(variants) = schema.get(key).and_then(Value::as_array) {
                let mut parts = Vec::new();
                for (i, variant) in variants.iter().enumerate() {
                    if i > 0 {
                        parts.push(word(" or "));
                    }
                    parts.extend(self.type_of(variant));
                }
                return parts;
            }
        }
        if let Some([only]) = schema
            .get("allOf")
            .filter(|_| schema.get("type").is_none())
            .and_then(Value::as_array)
            .map(Vec::as_slice)
        {
            return self.type_of(only);
        }
        if let Some(values) = schema.get("enum").and_then(Value::as_array) {
            let listed: Vec<String> = values.iter().map(Value::to_string).collect();
            return vec![word(format!("one of {}", listed.join(", ")))];
        }
        if let Some(value) = schema.get("const") {
            return vec![word(format!("always {value}"))];
        }
        let types: Vec<&str> = match schema.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if types.is_empty() {
            return vec![word("any")];
        }
        let mut parts = Vec::new();
        for (i, ty) in types.iter().enumerate() {
            if i > 0 {
                parts.push(word(" or "));
            }
            match *ty {
                "array" => {
                    parts.push(word("array of "));
                    let items = schema.get("items").cloned().unwrap_or(Value::Null);
                    parts.extend(self.type_of(&items));
                }
                ty => {
                    let mut text = ty.to_owned();
                    if let Some(format) = schema.get("format").and_then(Value::as_str) {
                        text.push_str(&format!(" ({format})"));
                    }
                    parts.push(word(text));
                }
            }
        }
        let limits = limits(schema);
        if !limits.is_empty() {
            parts.push(word(format!("; {limits}")));
        }
        parts
    }

    /// The properties of an object schema, `allOf` parts merged.
    fn fields(&mut self, schema: &Value) -> Vec<Field> {
        let (_, schema) = self.resolve(schema);
        let schema = schema.clone();
        let mut fields = Vec::new();
        if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
            for part in parts {
                fields.extend(self.fields(part));
            }
        }
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            for (name, property) in properties {
                fields.push(Field {
                    name: name.clone(),
                    ty: self.type_of(property),
                    required: required.contains(&name.as_str()),
                    description: spans(
                        property
                            .get("description")
                            .and_then(Value::as_str)
                            .unwrap_or_default(),
                    ),
                });
            }
        }
        fields
    }

    /// The schema's example; for one of several schemas, the first variant's.
    fn example_of(&self, schema: &Value) -> Option<String> {
        let (_, schema) = self.resolve(schema);
        schema
            .get("example")
            .or_else(|| schema.get("examples").and_then(|e| e.get(0)))
            .and_then(pretty)
            .or_else(|| {
                ["oneOf", "anyOf"]
                    .iter()
                    .filter_map(|k| schema.get(*k).and_then(Value::as_array))
                    .flatten()
                    .find_map(|variant| self.example_of(variant))
            })
    }

    fn schema_view(&mut self, schema: &Value) -> SchemaView {
        let (name, resolved) = self.resolve(schema);
        let name = name.map(str::to_owned);
        let resolved = resolved.clone();
        let ty = match &name {
            // A named schema is an object, or what its own definition says.
            Some(_) => self.type_of(&resolved),
            None => self.type_of(schema),
        };
        SchemaView {
            anchor: format!("schema-{}", name.as_deref().unwrap_or_default()),
            description: paragraphs(
                resolved
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
            ),
            fields: self.fields(&resolved),
            example: self.example_of(&resolved),
            name,
            ty,
        }
    }

    /// A request body's or an answer's content: its media types, schema and example.
    fn content(
        &mut self,
        content: Option<&Value>,
    ) -> (Vec<String>, Option<SchemaView>, Option<String>) {
        let Some(content) = content.and_then(Value::as_object) else {
            return (Vec::new(), None, None);
        };
        let media: Vec<String> = content.keys().cloned().collect();
        let Some(first) = content.values().next() else {
            return (media, None, None);
        };
        let schema = first.get("schema").map(|s| self.schema_view(s));
        let example = first
            .get("example")
            .and_then(pretty)
            .or_else(|| schema.as_ref().and_then(|s| s.example.clone()));
        (media, schema, example)
    }

    fn operation(&mut self, method: &str, path: &str, op: &Value) -> Operation {
        let text = |key: &str| op.get(key).and_then(Value::as_str).unwrap_or_default();
        let mut description = Vec::new();
        let mut access = Vec::new();
        for paragraph in text("description").split("\n\n") {
            match paragraph.trim().strip_prefix("Access: ") {
                Some(rest) => access = spans(rest),
                None => description.extend(paragraphs(paragraph)),
            }
        }
        let params = op
            .get("parameters")
            .and_then(Value::as_array)
            .map(|ps| {
                ps.iter()
                    .map(|p| Param {
                        name: p["name"].as_str().unwrap_or_default().to_owned(),
                        location: p["in"].as_str().unwrap_or_default().to_owned(),
                        ty: self.type_of(&p["schema"]),
                        required: p["required"].as_bool().unwrap_or(false),
                        description: spans(p["description"].as_str().unwrap_or_default()),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let body = op.get("requestBody").map(|b| {
            let (media, schema, example) = self.content(b.get("content"));
            Body {
                media,
                required: b["required"].as_bool().unwrap_or(false),
                schema,
                example,
            }
        });
        let mut answers = Vec::new();
        if let Some(responses) = op.get("responses").and_then(Value::as_object) {
            for (status, answer) in responses {
                let content = answer.get("content");
                let error = content
                    .and_then(Value::as_object)
                    .and_then(|c| c.values().next())
                    .and_then(|m| m.get("schema"))
                    .and_then(ref_name)
                    == Some(ERROR_MODEL);
                let (media, schema, example) = if error {
                    let media = content
                        .and_then(Value::as_object)
                        .map(|c| c.keys().cloned().collect())
                        .unwrap_or_default();
                    (media, None, None)
                } else {
                    self.content(content)
                };
                answers.push(Answer {
                    status: status.clone(),
                    description: spans(answer["description"].as_str().unwrap_or_default()),
                    error,
                    media,
                    schema,
                    example,
                });
            }
        }
        answers.sort_by(|a, b| a.status.cmp(&b.status));
        Operation {
            id: text("operationId").to_owned(),
            page: self.page.clone(),
            method: method.to_ascii_uppercase(),
            path: path.to_owned(),
            summary: text("summary").to_owned(),
            description,
            access,
            params,
            body,
            answers,
        }
    }
}

/// A schema's limits in words: lengths, ranges, pattern.
fn limits(schema: &Value) -> String {
    let n = |key: &str| schema.get(key).map(Value::to_string);
    let mut out = Vec::new();
    match (n("minLength"), n("maxLength")) {
        (Some(a), Some(b)) => out.push(format!("{a} to {b} characters")),
        (Some(a), None) => out.push(format!("at least {a} characters")),
        (None, Some(b)) => out.push(format!("at most {b} characters")),
        (None, None) => {}
    }
    match (n("minimum"), n("maximum")) {
        (Some(a), Some(b)) => out.push(format!("{a} to {b}")),
        (Some(a), None) => out.push(format!("at least {a}")),
        (None, Some(b)) => out.push(format!("at most {b}")),
        (None, None) => {}
    }
    match (n("minItems"), n("maxItems")) {
        (Some(a), Some(b)) => out.push(format!("{a} to {b} items")),
        (Some(a), None) => out.push(format!("at least {a} items")),
        (None, Some(b)) => out.push(format!("at most {b} items")),
        (None, None) => {}
    }
    // The rule on control characters holds for all text; the contents page says it once.
    if let Some(pattern) = schema
        .get("pattern")
        .and_then(Value::as_str)
        .filter(|p| ![openapi::PARAMETER_TEXT, openapi::BODY_TEXT].contains(p))
    {
        out.push(format!("matching {pattern}"));
    }
    out.join(", ")
}

fn tag_of(op: &Value) -> String {
    op.get("tags")
        .and_then(|t| t.get(0))
        .and_then(Value::as_str)
        .unwrap_or(UNTAGGED)
        .to_owned()
}

fn tag_href(tag: &str) -> String {
    format!("{PATH}/{tag}")
}

#[derive(Template)]
#[template(path = "docs/index.html")]
struct IndexPage<'a> {
    css: &'a str,
    title: &'a str,
    version: &'a str,
    intro: Vec<Vec<Span>>,
    sections: &'a [Section],
    error: SchemaView,
    schemes: Vec<Scheme>,
}

/// One page of a tag's reference, with links to its other pages.
#[derive(Template)]
#[template(path = "docs/tag.html")]
struct TagPage<'a> {
    css: &'a str,
    title: &'a str,
    tag: &'a str,
    operations: &'a [Operation],
    /// Every page of the tag, this one marked.
    parts: Vec<(String, bool)>,
    schemas: Vec<SchemaView>,
}

/// Every page of the reference, by path.
pub struct Pages {
    pages: BTreeMap<String, String>,
}

impl Pages {
    pub fn get(&self, path: &str) -> Option<&str> {
        self.pages.get(path).map(String::as_str)
    }

    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.pages.keys().map(String::as_str)
    }
}

/// A tag page's HTML stays under this, so that with the stylesheet (under 20 KB) it
/// keeps within the web UI's 60 KB first-load budget; a tag with more to say gets
/// more pages.
pub const PAGE_LIMIT: usize = 40 * 1024;

/// An operation as the document has it.
struct RawOperation<'a> {
    method: &'a str,
    path: &'a str,
    op: &'a Value,
}

struct Renderer<'a> {
    schemas: &'a Map<String, Value>,
    css: &'a str,
    title: &'a str,
}

impl Renderer<'_> {
    /// The operations read for the page `page`, and the schemas they name (with those
    /// these name in turn).
    fn read(&self, raw: &[RawOperation], page: &str) -> (Vec<Operation>, Vec<SchemaView>) {
        let mut reader = Reader {
            schemas: self.schemas,
            referred: BTreeSet::new(),
            page: page.to_owned(),
        };
        let operations: Vec<Operation> = raw
            .iter()
            .map(|r| {
                let mut operation = reader.operation(r.method, r.path, r.op);
                operation.page = page.to_owned();
                operation
            })
            .collect();
        let mut done = BTreeSet::new();
        let mut views = Vec::new();
        while let Some(name) = reader.referred.iter().find(|n| !done.contains(*n)).cloned() {
            done.insert(name.clone());
            views.push(reader.schema_view(&serde_json::json!({
                "$ref": format!("#/components/schemas/{name}")
            })));
        }
        views.sort_by(|a, b| a.name.cmp(&b.name));
        (operations, views)
    }

    /// Page `index` of `count` of a tag, holding `raw`.
    fn page(
        &self,
        tag: &str,
        raw: &[RawOperation],
        index: usize,
        count: usize,
    ) -> Result<(String, String, Vec<Operation>), askama::Error> {
        let name = |i: usize| match i {
            0 => tag_href(tag),
            i => format!("{}-{}", tag_href(tag), i + 1),
        };
        let (operations, schemas) = self.read(raw, &name(index));
        let html = TagPage {
            css: self.css,
            title: self.title,
            tag,
            operations: &operations,
            parts: (0..count).map(|j| (name(j), j == index)).collect(),
            schemas,
        }
        .render()?;
        Ok((name(index), html, operations))
    }

    /// A tag's pages: each takes the next operations, in order, while it stays under
    /// [`PAGE_LIMIT`] (with room for the links to the tag's other pages).
    fn tag(
        &self,
        tag: &str,
        raw: &[RawOperation],
        pages: &mut BTreeMap<String, String>,
    ) -> Result<Vec<Operation>, askama::Error> {
        const LINKS_ROOM: usize = 1024;
        let (name, html, operations) = self.page(tag, raw, 0, 1)?;
        if html.len() <= PAGE_LIMIT {
            pages.insert(name, html);
            return Ok(operations);
        }
        let mut bounds: Vec<(usize, usize)> = Vec::new();
        let mut start = 0;
        while start < raw.len() {
            let mut end = start + 1;
            while end < raw.len() {
                let index = bounds.len();
                let (_, html, _) = self.page(tag, &raw[start..=end], index, index + 2)?;
                if html.len() > PAGE_LIMIT - LINKS_ROOM {
                    break;
                }
                end += 1;
            }
            bounds.push((start, end));
            start = end;
        }
        let mut all = Vec::new();
        for (index, (start, end)) in bounds.iter().enumerate() {
            let (name, html, operations) =
                self.page(tag, &raw[*start..*end], index, bounds.len())?;
            pages.insert(name, html);
            all.extend(operations);
        }
        Ok(all)
    }
}

/// Renders the reference of a document (`/openapi.json`'s text).
pub fn render(document: &str) -> Result<Pages, askama::Error> {
    let doc: Value = serde_json::from_str(document).unwrap_or(Value::Null);
    let empty = Map::new();
    let css = ui::stylesheet_url().to_owned();
    let renderer = Renderer {
        schemas: doc["components"]["schemas"].as_object().unwrap_or(&empty),
        css: &css,
        title: doc["info"]["title"].as_str().unwrap_or("API"),
    };
    let mut by_tag: Vec<(String, Vec<RawOperation>)> = Vec::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            let Some(item) = item.as_object() else {
                continue;
            };
            for (method, op) in item {
                let tag = tag_of(op);
                let raw = RawOperation { method, path, op };
                match by_tag.iter_mut().find(|(t, _)| *t == tag) {
                    Some((_, ops)) => ops.push(raw),
                    None => by_tag.push((tag, vec![raw])),
                }
            }
        }
    }
    let mut pages = BTreeMap::new();
    let mut sections = Vec::new();
    for (tag, raw) in &by_tag {
        let operations = renderer.tag(tag, raw, &mut pages)?;
        sections.push(Section {
            tag: tag.clone(),
            operations,
        });
    }
    let mut reader = Reader {
        schemas: renderer.schemas,
        referred: BTreeSet::new(),
        page: PATH.to_owned(),
    };
    let error = reader.schema_view(&serde_json::json!({
        "$ref": format!("#/components/schemas/{ERROR_MODEL}")
    }));
    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .map(|s| {
            s.iter()
                .map(|(name, scheme)| Scheme {
                    name: name.clone(),
                    kind: format!(
                        "{} `{}` in the {}",
                        scheme["type"].as_str().unwrap_or_default(),
                        scheme["name"].as_str().unwrap_or_default(),
                        scheme["in"].as_str().unwrap_or_default()
                    ),
                    description: spans(scheme["description"].as_str().unwrap_or_default()),
                })
                .collect()
        })
        .unwrap_or_default();
    let index = IndexPage {
        css: &css,
        title: renderer.title,
        version: doc["info"]["version"].as_str().unwrap_or_default(),
        intro: paragraphs(doc["info"]["description"].as_str().unwrap_or_default()),
        sections: &sections,
        error,
        schemes,
    }
    .render()?;
    pages.insert(PATH.to_owned(), index);
    Ok(Pages { pages })
}

/// The pages of this binary's document, rendered once.
fn pages() -> Option<&'static Pages> {
    static PAGES: OnceLock<Option<Pages>> = OnceLock::new();
    PAGES
        .get_or_init(|| match render(openapi::json()) {
            Ok(pages) => Some(pages),
            Err(e) => {
                tracing::error!(error = %e, "the API reference could not be rendered");
                None
            }
        })
        .as_ref()
}

fn serve(path: &str) -> Response {
    let Some(pages) = pages() else {
        return ui::error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The reference could not be drawn",
            "The error has been logged; /openapi.json has the same content.",
        );
    };
    match pages.get(path) {
        Some(html) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                ),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static(CACHE_CONTROL),
                ),
            ],
            html,
        )
            .into_response(),
        None => ui::error_page(
            StatusCode::NOT_FOUND,
            "Page not found",
            "There is no such part of the API reference; its table of contents is at /docs.",
        ),
    }
}

async fn index() -> Response {
    serve(PATH)
}

async fn tag_page(Path(tag): Path<String>) -> Response {
    serve(&tag_href(&tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_is_on_its_tags_page_and_every_page_fits_the_budget() {
        let doc: Value = serde_json::from_str(openapi::json()).unwrap();
        let pages = render(openapi::json()).unwrap();
        let index = pages.get(PATH).unwrap();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let id = op["operationId"].as_str().unwrap();
                let page = index
                    .split(&format!("#{id}\""))
                    .next()
                    .unwrap()
                    .rsplit_once("href=\"")
                    .unwrap()
                    .1;
                assert!(page.starts_with(&tag_href(&tag_of(op))), "{method} {path}");
                let page = pages.get(page).unwrap();
                assert!(page.contains(&format!("id=\"{id}\"")), "{method} {path}");
            }
        }
        let css = crate::ui::stylesheet_url();
        for path in pages.paths() {
            let size = pages.get(path).unwrap().len();
            println!("{path}: {size} bytes (+ {css})");
            assert!(path == PATH || size <= PAGE_LIMIT, "{path}: {size} bytes");
        }
    }

    #[test]
    fn backticks_are_code() {
        let s = spans("a `b` c");
        assert_eq!(s.len(), 3);
        assert!(!s[0].code && s[1].code && !s[2].code);
        assert_eq!(s[1].text, "b");
    }
}

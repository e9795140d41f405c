//! Logging: pretty lines for people in development, JSON lines for machines in
//! production, filtered by `RUST_LOG` (default `info`).
//!
//! The JSON lines have the shape of `tracing-subscriber`'s own JSON format with the
//! event's fields flattened: `timestamp`, `level`, the event's fields (`message`
//! first), `target`, `span` (the innermost span's fields and `name`) and `spans` (every
//! span, outermost first). They are written by [`JsonLines`] instead: that format
//! stores each span's fields as a JSON object, parses it back for every line and
//! writes through an adapter that checks every few bytes for UTF-8, which made the one
//! line a request writes at `info` cost about a quarter of an authenticated request
//! (66,000 of 252,000 instructions, by callgrind). Here a span's fields are kept as
//! ready JSON text (`"key":value,…`) and copied, and everything is written straight
//! into the line.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::{LookupSpan, Scope, SpanRef};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second initialisation (tests start many servers in one process) is harmless.
    let _ = match format {
        LogFormat::Pretty => builder.compact().try_init(),
        LogFormat::Json => builder
            .fmt_fields(JsonFields)
            .event_format(JsonLines)
            .try_init(),
    };
}

/// A span's fields as the members of a JSON object without its braces:
/// `"id":"…","method":"GET"`.
struct JsonFields;

impl<'writer> FormatFields<'writer> for JsonFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut members = Members::new(writer, true);
        fields.record(&mut members);
        members.result
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let first = current.fields.is_empty();
        let mut members = Members::new(current.as_writer(), first);
        fields.record(&mut members);
        members.result
    }
}

/// One JSON object per event, on one line.
struct JsonLines;

impl<S> FormatEvent<S, JsonFields> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        writer.write_str("{\"timestamp\":\"")?;
        SystemTime.format_time(&mut writer)?;
        write!(writer, "\",\"level\":\"{}\"", meta.level())?;
        let mut members = Members::new(writer.by_ref(), false);
        event.record(&mut members);
        members.result?;
        writer.write_str(",\"target\":")?;
        string(&mut writer, meta.target())?;
        // The scope is walked twice, innermost span first and then from the root,
        // rather than gathered into a buffer.
        if let Some(innermost) = ctx.event_scope().and_then(|mut scope| scope.next()) {
            writer.write_str(",\"span\":")?;
            span_object(&mut writer, &innermost)?;
            writer.write_str(",\"spans\":[")?;
            for (i, span) in ctx
                .event_scope()
                .into_iter()
                .flat_map(Scope::from_root)
                .enumerate()
            {
                if i > 0 {
                    writer.write_char(',')?;
                }
                span_object(&mut writer, &span)?;
            }
            writer.write_char(']')?;
        }
        writer.write_str("}\n")
    }
}

/// A span's fields and its name, as one JSON object.
fn span_object<S>(writer: &mut Writer<'_>, span: &SpanRef<'_, S>) -> fmt::Result
where
    S: for<'a> LookupSpan<'a>,
{
    writer.write_char('{')?;
    if let Some(fields) = span.extensions().get::<FormattedFields<JsonFields>>() {
        if !fields.fields.is_empty() {
            writer.write_str(&fields.fields)?;
            writer.write_char(',')?;
        }
    }
    writer.write_str("\"name\":")?;
    string(writer, span.name())?;
    writer.write_char('}')
}

/// Writes the fields it visits as JSON members, each preceded by a comma but the
/// first when `first` is set.
struct Members<'a> {
    writer: Writer<'a>,
    first: bool,
    result: fmt::Result,
}

impl<'a> Members<'a> {
    fn new(writer: Writer<'a>, first: bool) -> Self {
        Self {
            writer,
            first,
            result: Ok(()),
        }
    }

    fn member(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'a>) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        self.result = (|| {
            if !std::mem::take(&mut self.first) {
                self.writer.write_char(',')?;
            }
            string(&mut self.writer, field.name())?;
            self.writer.write_char(':')?;
            value(&mut self.writer)
        })();
    }
}

impl Visit for Members<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field, |w| string(w, value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, |w| write!(w, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, |w| write!(w, "{value}"));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.member(field, |w| write!(w, "{value}"));
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.member(field, |w| write!(w, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity.
        self.member(field, |w| {
            if value.is_finite() {
                write!(w, "{value}")
            } else {
                w.write_str("null")
            }
        });
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, |w| write!(w, "{value}"));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.member(field, |w| string(w, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.member(field, |w| string(w, format_args!("{value:?}")));
    }
}

/// What `value` displays as, as a JSON string, escaped as it is written rather than
/// formatted apart first.
fn string(w: &mut impl fmt::Write, value: impl fmt::Display) -> fmt::Result {
    w.write_char('"')?;
    write!(Escaped(&mut *w), "{value}")?;
    w.write_char('"')
}

/// Writes what it is given escaped for the inside of a JSON string.
struct Escaped<W>(W);

impl<W: fmt::Write> fmt::Write for Escaped<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut plain = 0;
        for (i, b) in s.bytes().enumerate() {
            let short = match b {
                b'"' => Some("\\\""),
                b'\\' => Some("\\\\"),
                b'\n' => Some("\\n"),
                b'\r' => Some("\\r"),
                b'\t' => Some("\\t"),
                0..=0x1f => None,
                _ => continue,
            };
            self.0.write_str(&s[plain..i])?;
            match short {
                Some(escape) => self.0.write_str(escape)?,
                None => write!(self.0, "\\u{b:04x}")?,
            }
            plain = i + 1;
        }
        self.0.write_str(&s[plain..])
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use serde_json::{json, Value};

    use super::*;

    /// Every line written, for the test to read.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn logged(body: impl FnOnce()) -> Vec<Value> {
        let lines = Lines::default();
        let out = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || out.clone())
            .fmt_fields(JsonFields)
            .event_format(JsonLines)
            .finish();
        tracing::subscriber::with_default(subscriber, body);
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        assert!(text.ends_with('\n'), "{text}");
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }

    #[test]
    fn lines_are_json_with_the_fields_of_the_event_and_of_its_spans() {
        let hostile = "quote \" backslash \\ newline \n tab \t bell \u{7} nul \0 é 🦀";
        let lines = logged(|| {
            let outer =
                tracing::info_span!("request", id = "abc", client_ip = tracing::field::Empty);
            outer.record("client_ip", "127.0.0.1");
            let _outer = outer.enter();
            let inner = tracing::info_span!("step", n = 2_u64);
            let _inner = inner.enter();
            tracing::info!(
                status = 200_u16,
                latency_ms = 1.5,
                ok = true,
                text = hostile,
                debug = ?vec!["a", "b"],
                neg = -3_i64,
                nan = f64::NAN,
                "served {}",
                "now"
            );
        });
        let [line] = &lines[..] else {
            panic!("{lines:?}")
        };
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["message"], "served now");
        assert_eq!(line["status"], 200);
        assert_eq!(line["latency_ms"], 1.5);
        assert_eq!(line["ok"], true);
        assert_eq!(line["text"], hostile);
        assert_eq!(line["debug"], r#"["a", "b"]"#);
        assert_eq!(line["neg"], -3);
        assert_eq!(line["nan"], Value::Null);
        assert_eq!(line["target"], module_path!());
        assert_eq!(line["span"], json!({"n": 2, "name": "step"}));
        assert_eq!(
            line["spans"],
            json!([
                {"id": "abc", "client_ip": "127.0.0.1", "name": "request"},
                {"n": 2, "name": "step"}
            ])
        );
        let timestamp = line["timestamp"].as_str().unwrap();
        assert!(
            timestamp.len() == 27 && timestamp.ends_with('Z'),
            "{timestamp}"
        );
    }

    #[test]
    fn a_line_outside_any_span_has_no_span_and_a_span_may_start_empty() {
        let lines = logged(|| {
            tracing::warn!("alone");
            let span = tracing::info_span!("later", value = tracing::field::Empty);
            let _span = span.enter();
            tracing::error!(code = 7_i64, "inside, before the record");
            span.record("value", "set");
            tracing::error!("inside, after it");
        });
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["message"], "alone");
        assert_eq!(lines[0]["level"], "WARN");
        assert!(lines[0].get("span").is_none() && lines[0].get("spans").is_none());
        assert_eq!(lines[1]["span"], json!({"name": "later"}));
        assert_eq!(lines[1]["code"], 7);
        assert_eq!(lines[2]["span"], json!({"value": "set", "name": "later"}));
    }
}

//! Money: dollars in bodies, integer cents inside.
//!
//! A body may say `9.99` or `"9.99"`. Going through `f64` arithmetic would turn 9.99
//! into 998 cents now and then (`9.99 * 100.0 == 998.999…`), so the decimal text is
//! parsed digit by digit instead. A JSON number arrives as an `f64`; its `Display` is
//! the shortest text that reads back as the same number, which for any amount with at
//! most two decimals is exactly the text the caller wrote.

use serde_json::Value;

/// Stripe's ceiling for `unit_amount` in most currencies: 99,999,999 cents.
pub const MAX_CENTS: i64 = 99_999_999;

/// Currencies without a minor unit, whose amounts Stripe takes as whole units: an
/// amount "in dollars" with cents means nothing there, so they are refused.
const ZERO_DECIMAL: [&str; 16] = [
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
    "xaf", "xof", "xpf",
];

/// Parses an amount in dollars (a JSON number or a string) into cents; `field` names
/// it in the error.
pub fn parse_dollars(field: &str, value: &Value) -> Result<i64, String> {
    let text = match value {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.to_string()
            } else if let Some(u) = n.as_u64() {
                u.to_string()
            } else {
                n.as_f64().map(|f| f.to_string()).unwrap_or_default()
            }
        }
        Value::String(s) => s.clone(),
        _ => {
            return Err(format!(
                "`{field}` must be an amount in dollars, such as 9.99"
            ))
        }
    };
    parse_text(&text).map_err(|why| format!("`{field}` {why}"))
}

fn parse_text(text: &str) -> Result<i64, &'static str> {
    if text.starts_with('-') {
        return Err("must not be negative");
    }
    let (whole, fraction) = match text.split_once('.') {
        Some((w, f)) => (w, f),
        None => (text, ""),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || (text.contains('.') && !digits(fraction)) {
        return Err("must be an amount in dollars, such as 9.99");
    }
    if fraction.len() > 2 {
        return Err("must have at most two decimals");
    }
    let whole = whole.trim_start_matches('0');
    if whole.len() > 9 {
        return Err("is too large");
    }
    let dollars: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| "is too large")?
    };
    let cents: i64 = match fraction.len() {
        0 => 0,
        1 => i64::from(fraction.as_bytes()[0] - b'0') * 10,
        _ => fraction.parse().map_err(|_| "is not a valid amount")?,
    };
    let total = dollars * 100 + cents;
    if total > MAX_CENTS {
        return Err("is too large (at most 999999.99)");
    }
    Ok(total)
}

/// Cents as the dollars a body shows: a JSON number with at most two decimals.
pub fn dollars(cents: i64) -> Value {
    // Every amount here is below 2^53, and cents / 100 printed shortest is exact.
    serde_json::Number::from_f64(cents as f64 / 100.0)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// A three-letter ISO currency code, lower-cased as Stripe writes it.
pub fn currency(value: &str) -> Result<String, String> {
    let lower = value.trim().to_ascii_lowercase();
    if lower.len() != 3 || !lower.bytes().all(|b| b.is_ascii_lowercase()) {
        return Err("`currency` must be a three-letter ISO code such as usd".to_owned());
    }
    if ZERO_DECIMAL.contains(&lower.as_str()) {
        return Err(format!(
            "`currency` {lower} has no cents; amounts here are given with two decimals"
        ));
    }
    Ok(lower)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cents(v: Value) -> Result<i64, String> {
        parse_dollars("unit_amount", &v)
    }

    #[test]
    fn dollars_become_exact_cents() {
        assert_eq!(cents(json!(9.99)), Ok(999));
        assert_eq!(cents(json!("9.99")), Ok(999));
        assert_eq!(cents(json!(0.29)), Ok(29));
        assert_eq!(cents(json!(1.1)), Ok(110));
        assert_eq!(cents(json!("1.1")), Ok(110));
        assert_eq!(cents(json!(10)), Ok(1000));
        assert_eq!(cents(json!(10.0)), Ok(1000));
        assert_eq!(cents(json!("0")), Ok(0));
        assert_eq!(cents(json!("007.05")), Ok(705));
        assert_eq!(cents(json!(999999.99)), Ok(99_999_999));
        // Every two-decimal amount survives the f64 round trip.
        for c in (0..100_000).step_by(7) {
            let f = c as f64 / 100.0;
            assert_eq!(cents(json!(f)), Ok(c), "{f}");
        }
    }

    #[test]
    fn bad_amounts_are_refused() {
        for bad in [
            json!(-1),
            json!(-0.01),
            json!("-5"),
            json!(9.999),
            json!("9.999"),
            json!(1e-7),
            json!(1_000_000),
            json!("1e3"),
            json!("9."),
            json!(".5"),
            json!(" 9"),
            json!("nine"),
            json!(""),
            json!(null),
            json!(true),
            json!([1]),
            json!(1e300),
            json!("99999999999999999999999999"),
        ] {
            assert!(cents(bad.clone()).is_err(), "{bad}");
        }
        assert!(cents(json!("9.999")).unwrap_err().contains("unit_amount"));
    }

    #[test]
    fn cents_show_as_dollars() {
        assert_eq!(dollars(999).to_string(), "9.99");
        assert_eq!(dollars(1000).to_string(), "10.0");
        assert_eq!(dollars(5).to_string(), "0.05");
    }

    #[test]
    fn currencies() {
        assert_eq!(currency("USD"), Ok("usd".to_owned()));
        assert!(currency("jpy").is_err());
        assert!(currency("us").is_err());
        assert!(currency("u$d").is_err());
    }
}

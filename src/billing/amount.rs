//! Money: major units (dollars) in bodies and forms, integer minor units (cents)
//! inside, and exact text for people ([`format`]).
//!
//! A body may say `9.99` or `"9.99"`. Going through `f64` arithmetic would turn 9.99
//! into 998 cents now and then (`9.99 * 100.0 == 998.999…`), so the decimal text is
//! parsed digit by digit instead. A JSON number arrives as an `f64`; its `Display` is
//! the shortest text that reads back as the same number, which for any amount with at
//! most two decimals is exactly the text the caller wrote.

use serde_json::Value;

/// Stripe's ceiling for `unit_amount` in most currencies: 99,999,999 minor units.
pub const MAX_CENTS: i64 = 99_999_999;

/// Currencies without a minor unit, whose amounts Stripe takes as whole units.
const ZERO_DECIMAL: [&str; 16] = [
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
    "xaf", "xof", "xpf",
];

/// Currencies whose minor unit is a thousandth, as Stripe counts them.
const THREE_DECIMAL: [&str; 5] = ["bhd", "jod", "kwd", "omr", "tnd"];

/// How many decimals an amount in `currency` has: the power of ten between its major
/// and minor units (0 for JPY, 3 for KWD, 2 for the rest).
pub fn exponent(currency: &str) -> u32 {
    let lower = currency.to_ascii_lowercase();
    if ZERO_DECIMAL.contains(&lower.as_str()) {
        0
    } else if THREE_DECIMAL.contains(&lower.as_str()) {
        3
    } else {
        2
    }
}

/// Parses an amount in the major units of `currency` (a JSON number or a string) into
/// its minor units; `field` names it in the error.
pub fn parse_amount(field: &str, value: &Value, currency: &str) -> Result<i64, String> {
    parse_value(field, value, exponent(currency))
}

fn parse_value(field: &str, value: &Value, exponent: u32) -> Result<i64, String> {
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
    parse_major(&text, exponent).map_err(|why| format!("`{field}` {why}"))
}

/// Parses major-unit text (`"12.50"`, `"1500"`) with at most `exponent` decimals into
/// minor units, digit by digit: no floating point anywhere.
pub fn parse_major(text: &str, exponent: u32) -> Result<i64, &'static str> {
    if text.starts_with('-') {
        return Err("must not be negative");
    }
    let (whole, fraction) = match text.split_once('.') {
        Some((w, f)) => (w, f),
        None => (text, ""),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || (text.contains('.') && !digits(fraction)) {
        return Err("must be an amount such as 9.99");
    }
    if fraction.len() > exponent as usize {
        return Err(match exponent {
            0 => "must be a whole number in this currency",
            1 => "must have at most one decimal",
            2 => "must have at most two decimals",
            _ => "must have at most three decimals",
        });
    }
    let whole = whole.trim_start_matches('0');
    if whole.len() > 9 {
        return Err("is too large");
    }
    let scale = 10_i64.pow(exponent);
    let major: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| "is too large")?
    };
    // "5" with two decimals is 50 hundredths: pad the fraction to the exponent.
    let mut minor: i64 = 0;
    for i in 0..exponent as usize {
        let digit = fraction
            .as_bytes()
            .get(i)
            .map_or(0, |b| i64::from(b - b'0'));
        minor = minor * 10 + digit;
    }
    let total = major
        .checked_mul(scale)
        .and_then(|m| m.checked_add(minor))
        .ok_or("is too large")?;
    if total > MAX_CENTS {
        return Err(match exponent {
            0 => "is too large (at most 99999999)",
            3 => "is too large (at most 99999.999)",
            _ => "is too large (at most 999999.99)",
        });
    }
    Ok(total)
}

/// Minor units as exact major-unit text with the currency's decimals and thousands
/// separators, and its symbol where one is unambiguous: `$1,234.50`, `¥1,500`,
/// `12.500 KWD`.
pub fn format(minor: i64, currency: &str) -> String {
    let exponent = exponent(currency);
    let scale = 10_i64.pow(exponent);
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    let scale = scale.unsigned_abs();
    let whole = (abs / scale).to_string();
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let number = if exponent == 0 {
        grouped
    } else {
        format!(
            "{grouped}.{:0width$}",
            abs % scale,
            width = exponent as usize
        )
    };
    match currency.to_ascii_lowercase().as_str() {
        "usd" => format!("{sign}${number}"),
        "eur" => format!("{sign}€{number}"),
        "gbp" => format!("{sign}£{number}"),
        "jpy" => format!("{sign}¥{number}"),
        other => format!("{sign}{number} {}", other.to_ascii_uppercase()),
    }
}

/// Minor units as the plain major-unit text a form field shows (`12.50`, `1500`),
/// which [`parse_major`] reads back to the same amount.
pub fn plain(minor: i64, currency: &str) -> String {
    let exponent = exponent(currency);
    if exponent == 0 {
        return minor.to_string();
    }
    let scale = 10_i64.pow(exponent);
    format!(
        "{}.{:0width$}",
        minor / scale,
        (minor % scale).abs(),
        width = exponent as usize
    )
}

/// Cents as the dollars a body shows: a JSON number with at most two decimals.
pub fn dollars(cents: i64) -> Value {
    // Every amount here is below 2^53, and cents / 100 printed shortest is exact.
    serde_json::Number::from_f64(cents as f64 / 100.0)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// A three-letter ISO currency code, lower-cased as Stripe writes it. Bodies carry
/// amounts as dollars with cents, so currencies with another number of decimals
/// (JPY's none, KWD's three) are refused.
pub fn currency(value: &str) -> Result<String, String> {
    let lower = value.trim().to_ascii_lowercase();
    if lower.len() != 3 || !lower.bytes().all(|b| b.is_ascii_lowercase()) {
        return Err("`currency` must be a three-letter ISO code such as usd".to_owned());
    }
    match exponent(&lower) {
        2 => Ok(lower),
        0 => Err(format!(
            "`currency` {lower} has no cents; amounts here are given with two decimals"
        )),
        _ => Err(format!(
            "`currency` {lower} has three decimals; amounts here are given with two"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cents(v: Value) -> Result<i64, String> {
        parse_amount("unit_amount", &v, "usd")
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
    fn major_units_follow_the_currency() {
        assert_eq!(parse_major("12.50", 2), Ok(1250));
        assert_eq!(parse_major("12.5", 2), Ok(1250));
        assert_eq!(parse_major("12", 2), Ok(1200));
        assert_eq!(parse_major("0.01", 2), Ok(1));
        assert_eq!(parse_major("1500", 0), Ok(1500));
        assert_eq!(parse_major("12.345", 3), Ok(12345));
        assert_eq!(parse_major("12.3", 3), Ok(12300));
        assert_eq!(parse_major("99999999", 0), Ok(99_999_999));
        assert_eq!(parse_major("0000000000012.50", 2), Ok(1250));
        for (bad, e) in [
            ("12.345", 2),
            ("1500.5", 0),
            ("1500.", 0),
            ("-1", 2),
            ("abc", 2),
            ("1,000", 2),
            ("1e3", 2),
            ("", 2),
            ("1000000", 2),
            ("100000000", 0),
            ("100000", 3),
            ("99999999999999999999", 2),
            ("١٢", 2),
        ] {
            assert!(parse_major(bad, e).is_err(), "{bad} with {e} decimals");
        }
        assert_eq!(parse_amount("unit_amount", &json!("1500"), "JPY"), Ok(1500));
        assert!(parse_amount("unit_amount", &json!("15.5"), "jpy").is_err());
        assert_eq!(parse_amount("unit_amount", &json!(9.99), "usd"), Ok(999));
    }

    #[test]
    fn minor_units_show_exactly() {
        assert_eq!(format(1250, "usd"), "$12.50");
        assert_eq!(format(5, "usd"), "$0.05");
        assert_eq!(format(99_999_999, "usd"), "$999,999.99");
        assert_eq!(format(123_456, "eur"), "€1,234.56");
        assert_eq!(format(1500, "jpy"), "¥1,500");
        assert_eq!(format(12_500, "kwd"), "12.500 KWD");
        assert_eq!(format(100, "chf"), "1.00 CHF");
        assert_eq!(format(0, "gbp"), "£0.00");
        assert_eq!(format(-250, "usd"), "-$2.50");
        assert_eq!(plain(1250, "usd"), "12.50");
        assert_eq!(plain(1500, "jpy"), "1500");
        assert_eq!(plain(7, "kwd"), "0.007");
        // What a form shows reads back as the same amount.
        for minor in [0, 1, 10, 99, 100, 1234, 99_999_999] {
            for currency in ["usd", "jpy", "kwd"] {
                let e = exponent(currency);
                assert_eq!(parse_major(&plain(minor, currency), e), Ok(minor));
            }
        }
    }

    #[test]
    fn currencies() {
        assert_eq!(currency("USD"), Ok("usd".to_owned()));
        assert!(currency("jpy").is_err());
        assert!(currency("kwd").is_err());
        assert!(currency("us").is_err());
        assert!(currency("u$d").is_err());
    }
}

//! Every setting Gatehouse reads, parsed and validated once at start-up.
//!
//! Values come from the process environment and a `.env` file (the environment wins).
//! A bad value stops start-up with one line naming the variable: [`ConfigError`].
//! The parsed [`Config`] travels in the application state; nothing reads the
//! environment after this module has run.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use rand::RngCore;
use secrecy::{SecretSlice, SecretString};

/// Where Gatehouse runs; decides the defaults of several settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Testing,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailBackend {
    Smtp,
    File,
    Log,
}

/// The outgoing mail settings.
#[derive(Debug, Clone)]
pub struct MailConfig {
    pub backend: MailBackend,
    pub server: Option<String>,
    pub port: Option<u16>,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    pub use_tls: bool,
    pub use_ssl: bool,
    pub sender: String,
    /// Where the `file` backend writes `.eml` files.
    pub outbox_dir: PathBuf,
    /// First retry delay after a failed delivery; doubles on each failure.
    pub retry_base: Duration,
    /// Longest wait between two delivery attempts of one message.
    pub retry_max: Duration,
}

/// The Stripe settings; present only when a secret key is configured, and billing is
/// off (its routes answer 503) without them.
#[derive(Debug, Clone)]
pub struct StripeConfig {
    /// `STRIPE_PRIVATE_KEY` (alias `STRIPE_SECRET_KEY`).
    pub secret_key: SecretString,
    pub public_key: Option<String>,
    /// Verifies `Stripe-Signature`; without it the webhook answers 503.
    pub webhook_secret: Option<SecretString>,
    /// Where the Stripe API is, without a trailing slash.
    pub api_base: String,
}

/// The password rules applied at signup, reset and change.
#[derive(Debug, Clone)]
pub struct PasswordPolicy {
    pub min_length: usize,
    pub max_length: usize,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub environment: Environment,
    pub bind_addr: SocketAddr,
    pub public_url: String,
    /// Where `/checkout-success` sends the browser once the paid session is recorded
    /// (`{CHECKOUT_SESSION_ID}` is replaced by the session id); `None` answers JSON.
    pub checkout_success_url: Option<String>,
    /// Where `/checkout-cancel` sends the browser; `None` answers JSON.
    pub checkout_cancel_url: Option<String>,
    pub verify_url_template: String,
    pub reset_url_template: String,
    /// May carry the database's password.
    pub database_url: SecretString,
    pub data_dir: PathBuf,
    pub secret_key: SecretSlice<u8>,
    pub session_lifetime: Duration,
    pub session_idle_timeout: Duration,
    pub session_cookie_secure: bool,
    pub cors_allowed_origins: Vec<String>,
    pub trusted_proxies: Vec<IpNet>,
    pub mail: MailConfig,
    pub require_email_verification: bool,
    /// Answer authenticated requests from memory (see docs/performance.md); on by
    /// default, `SESSION_CACHE=off` reads the database on every request.
    pub session_cache: bool,
    pub totp_issuer: String,
    pub log_format: LogFormat,
    pub password_policy: PasswordPolicy,
    /// Longest time one request may take before it is answered 408.
    pub request_timeout: Duration,
    /// Upper bound on Argon2 computations running at once.
    pub max_concurrent_hashes: usize,
    /// A client that has not sent a whole request header within this is disconnected.
    pub header_read_timeout: Duration,
    /// Open client connections, at most; further clients wait to be accepted.
    pub max_connections: usize,
    /// How long a shutdown lets in-flight requests finish before closing every
    /// connection anyway.
    pub shutdown_grace: Duration,
    /// Activity older than this many days is deleted; `None` keeps everything.
    pub log_retention_days: Option<u32>,
    /// Where the brute-force throttle keeps its counts; the database when unset.
    pub redis_url: Option<SecretString>,
    /// Prefix of every Redis key Gatehouse writes.
    pub redis_key_prefix: String,
    /// Billing; `None` when no Stripe secret key is set.
    pub stripe: Option<StripeConfig>,
}

/// A setting that could not be accepted; its `Display` is the one line start-up prints.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

fn bad(var: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        message: message.into(),
    }
}

/// The variables a configuration is read from: the environment layered over `.env`.
pub struct Vars(HashMap<String, String>);

impl Vars {
    /// The process environment over the `.env` file of the working directory, if any.
    pub fn from_process() -> Result<Self, ConfigError> {
        let mut map = HashMap::new();
        match dotenvy::from_path_iter(".env") {
            Ok(iter) => {
                for item in iter {
                    let (k, v) = item.map_err(|e| bad("ENV_FILE", format!(".env: {e}")))?;
                    map.insert(k, v);
                }
            }
            Err(e) if e.not_found() => {}
            Err(e) => return Err(bad("ENV_FILE", format!(".env: {e}"))),
        }
        map.extend(std::env::vars());
        Ok(Self(map))
    }

    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    fn first(&self, names: &[&'static str]) -> Option<(&'static str, &str)> {
        names
            .iter()
            .find_map(|name| self.get(name).map(|v| (*name, v)))
    }
}

fn parse_bool(var: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(bad(var, format!("expected true or false, got {value:?}"))),
    }
}

fn parse_duration(var: &'static str, value: &str) -> Result<Duration, ConfigError> {
    let parsed = match value.parse::<u64>() {
        // A bare number is seconds, as in the old service's configuration.
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(value)
            .map_err(|e| bad(var, format!("expected a duration such as 2h or 30m: {e}")))?,
    };
    if parsed.is_zero() {
        return Err(bad(var, "must be longer than zero"));
    }
    Ok(parsed)
}

fn parse_number<T: std::str::FromStr>(var: &'static str, value: &str) -> Result<T, ConfigError> {
    value
        .parse()
        .map_err(|_| bad(var, format!("expected a number, got {value:?}")))
}

impl Config {
    /// Reads the configuration of the running process (environment and `.env`).
    pub fn from_process() -> Result<Self, ConfigError> {
        Self::from_vars(&Vars::from_process()?)
    }

    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let environment = match vars.first(&["APP_ENV", "FLASK_ENV"]) {
            None => Environment::Development,
            Some((var, v)) => match v.to_ascii_lowercase().as_str() {
                "development" | "dev" => Environment::Development,
                "testing" | "test" => Environment::Testing,
                "production" | "prod" => Environment::Production,
                _ => {
                    return Err(bad(
                        var,
                        format!("expected development, testing or production, got {v:?}"),
                    ))
                }
            },
        };
        let production = environment == Environment::Production;

        let bind_addr: SocketAddr = vars
            .get("BIND_ADDR")
            .unwrap_or("127.0.0.1:5000")
            .parse()
            .map_err(|_| bad("BIND_ADDR", "expected host:port such as 127.0.0.1:5000"))?;

        let public_url = match vars.get("PUBLIC_URL") {
            Some(url) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(bad("PUBLIC_URL", "must start with http:// or https://"));
                }
                url.trim_end_matches('/').to_owned()
            }
            None => format!("http://{bind_addr}"),
        };
        let url_template = |var: &'static str, path: &str| -> Result<String, ConfigError> {
            let template = vars
                .get(var)
                .map(str::to_owned)
                .unwrap_or_else(|| format!("{{PUBLIC_URL}}/{path}/{{token}}"));
            if !template.contains("{token}") {
                return Err(bad(var, "must contain {token}"));
            }
            Ok(template.replace("{PUBLIC_URL}", &public_url))
        };
        let verify_url_template = url_template("VERIFY_URL_TEMPLATE", "ui/verify")?;
        let reset_url_template = url_template("RESET_URL_TEMPLATE", "ui/reset")?;

        let data_dir = PathBuf::from(vars.get("DATA_DIR").unwrap_or("data"));
        let database_url = match vars.get("DATABASE_URL") {
            Some(url) => {
                if !(url.starts_with("sqlite:")
                    || url.starts_with("postgres://")
                    || url.starts_with("postgresql://"))
                {
                    return Err(bad(
                        "DATABASE_URL",
                        "expected a sqlite://… or postgres://… URL",
                    ));
                }
                SecretString::from(url)
            }
            None => format!("sqlite://{}", data_dir.join("gatehouse.db").display()).into(),
        };

        let secret_key = match vars.get("SECRET_KEY") {
            Some(key) if key.len() >= 32 => SecretSlice::from(key.as_bytes().to_vec()),
            Some(_) => return Err(bad("SECRET_KEY", "must be at least 32 bytes long")),
            None if production => {
                return Err(bad(
                    "SECRET_KEY",
                    "is required in production (at least 32 random bytes)",
                ))
            }
            None if environment == Environment::Testing => SecretSlice::from(random_bytes(32)),
            None => SecretSlice::from(
                development_secret(&data_dir.join("secret.key"))
                    .map_err(|e| bad("SECRET_KEY", format!("cannot keep data/secret.key: {e}")))?,
            ),
        };

        let session_lifetime = vars
            .get("SESSION_LIFETIME")
            .map(|v| parse_duration("SESSION_LIFETIME", v))
            .transpose()?
            .unwrap_or(Duration::from_secs(24 * 3600));
        let session_idle_timeout = vars
            .get("SESSION_IDLE_TIMEOUT")
            .map(|v| parse_duration("SESSION_IDLE_TIMEOUT", v))
            .transpose()?
            .unwrap_or(Duration::from_secs(2 * 3600));
        let session_cookie_secure = vars
            .get("SESSION_COOKIE_SECURE")
            .map(|v| parse_bool("SESSION_COOKIE_SECURE", v))
            .transpose()?
            .unwrap_or(production);

        let cors_allowed_origins = match vars.get("CORS_ALLOWED_ORIGINS") {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .map(|o| {
                    if o == "*" {
                        Err(bad(
                            "CORS_ALLOWED_ORIGINS",
                            "\"*\" cannot be combined with credentials; list the origins",
                        ))
                    } else if !(o.starts_with("http://") || o.starts_with("https://")) {
                        Err(bad(
                            "CORS_ALLOWED_ORIGINS",
                            format!("{o:?} is not an http(s) origin"),
                        ))
                    } else {
                        Ok(o.trim_end_matches('/').to_owned())
                    }
                })
                .collect::<Result<Vec<_>, _>>()?,
            None if production => Vec::new(),
            None => vec!["http://localhost:3000".to_owned()],
        };

        let trusted_proxies = match vars.get("TRUSTED_PROXIES") {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| {
                    p.parse::<IpNet>()
                        .or_else(|_| p.parse::<std::net::IpAddr>().map(IpNet::from))
                        .map_err(|_| bad("TRUSTED_PROXIES", format!("{p:?} is not an IP or CIDR")))
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };

        let mail = Self::mail(vars, environment, &data_dir)?;

        let require_email_verification = vars
            .get("REQUIRE_EMAIL_VERIFICATION")
            .map(|v| parse_bool("REQUIRE_EMAIL_VERIFICATION", v))
            .transpose()?
            .unwrap_or(true);
        let session_cache = vars
            .get("SESSION_CACHE")
            .map(|v| parse_bool("SESSION_CACHE", v))
            .transpose()?
            .unwrap_or(true);
        let totp_issuer = vars.get("TOTP_ISSUER").unwrap_or("Gatehouse").to_owned();

        let log_format = match vars.get("LOG_FORMAT") {
            Some("pretty") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(bad(
                    "LOG_FORMAT",
                    format!("expected pretty or json, got {other:?}"),
                ))
            }
            None if production => LogFormat::Json,
            None => LogFormat::Pretty,
        };

        let min_length = vars
            .get("PASSWORD_MIN_LENGTH")
            .map(|v| parse_number::<usize>("PASSWORD_MIN_LENGTH", v))
            .transpose()?
            .unwrap_or(8);
        let max_length = vars
            .get("PASSWORD_MAX_LENGTH")
            .map(|v| parse_number::<usize>("PASSWORD_MAX_LENGTH", v))
            .transpose()?
            .unwrap_or(128);
        if min_length < 8 {
            return Err(bad("PASSWORD_MIN_LENGTH", "must be at least 8"));
        }
        if max_length < min_length || max_length > 1024 {
            return Err(bad(
                "PASSWORD_MAX_LENGTH",
                "must lie between PASSWORD_MIN_LENGTH and 1024",
            ));
        }

        let request_timeout = vars
            .get("REQUEST_TIMEOUT")
            .map(|v| parse_duration("REQUEST_TIMEOUT", v))
            .transpose()?
            .unwrap_or(Duration::from_secs(30));
        let max_concurrent_hashes = match vars.get("MAX_CONCURRENT_HASHES") {
            Some(v) => match parse_number::<usize>("MAX_CONCURRENT_HASHES", v)? {
                0 => return Err(bad("MAX_CONCURRENT_HASHES", "must be at least 1")),
                n => n,
            },
            None => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
        };

        let header_read_timeout = vars
            .get("HEADER_READ_TIMEOUT")
            .map(|v| parse_duration("HEADER_READ_TIMEOUT", v))
            .transpose()?
            .unwrap_or(Duration::from_secs(10));
        let max_connections = match vars.get("MAX_CONNECTIONS") {
            Some(v) => match parse_number::<usize>("MAX_CONNECTIONS", v)? {
                0 => return Err(bad("MAX_CONNECTIONS", "must be at least 1")),
                n => n,
            },
            None => 1024,
        };
        let shutdown_grace = vars
            .get("SHUTDOWN_GRACE")
            .map(|v| parse_duration("SHUTDOWN_GRACE", v))
            .transpose()?
            .unwrap_or(Duration::from_secs(30));

        let log_retention_days = match vars.get("LOG_RETENTION_DAYS") {
            None => Some(90),
            Some(v) => match parse_number::<u32>("LOG_RETENTION_DAYS", v)? {
                0 => None,
                days => Some(days),
            },
        };
        let redis_url = match vars.get("REDIS_URL") {
            Some(url) if url.starts_with("redis://") || url.starts_with("unix://") => {
                Some(SecretString::from(url))
            }
            Some(_) => return Err(bad("REDIS_URL", "expected a redis://… URL")),
            None => None,
        };
        let redis_key_prefix = vars
            .get("REDIS_KEY_PREFIX")
            .unwrap_or("gatehouse:")
            .to_owned();
        let stripe = Self::stripe(vars)?;
        let redirect = |var: &'static str| -> Result<Option<String>, ConfigError> {
            match vars.get(var) {
                Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                    let sample = url.replace("{CHECKOUT_SESSION_ID}", "cs_sample");
                    if sample.parse::<axum::http::Uri>().is_err() {
                        return Err(bad(var, "expected an http(s) URL"));
                    }
                    Ok(Some(url.to_owned()))
                }
                Some(_) => Err(bad(var, "must start with http:// or https://")),
                None => Ok(None),
            }
        };
        let checkout_success_url = redirect("CHECKOUT_SUCCESS_URL")?;
        let checkout_cancel_url = redirect("CHECKOUT_CANCEL_URL")?;

        Ok(Self {
            environment,
            bind_addr,
            public_url,
            checkout_success_url,
            checkout_cancel_url,
            verify_url_template,
            reset_url_template,
            database_url,
            data_dir,
            secret_key,
            session_lifetime,
            session_idle_timeout,
            session_cookie_secure,
            cors_allowed_origins,
            trusted_proxies,
            mail,
            require_email_verification,
            session_cache,
            totp_issuer,
            log_format,
            password_policy: PasswordPolicy {
                min_length,
                max_length,
            },
            request_timeout,
            max_concurrent_hashes,
            header_read_timeout,
            max_connections,
            shutdown_grace,
            log_retention_days,
            redis_url,
            redis_key_prefix,
            stripe,
        })
    }

    fn stripe(vars: &Vars) -> Result<Option<StripeConfig>, ConfigError> {
        // Checked even when billing is off, so a typo shows before the key is added.
        let api_base = match vars.get("STRIPE_API_BASE") {
            Some(url) => {
                let rest = url
                    .strip_prefix("https://")
                    .or_else(|| url.strip_prefix("http://"));
                let host = rest.map(|r| r.split('/').next().unwrap_or(""));
                if host.is_none_or(|h| h.is_empty())
                    || url.contains(['?', '#', ' '])
                    || url.parse::<axum::http::Uri>().is_err()
                {
                    return Err(bad(
                        "STRIPE_API_BASE",
                        "expected an http(s) URL such as https://api.stripe.com",
                    ));
                }
                url.trim_end_matches('/').to_owned()
            }
            None => "https://api.stripe.com".to_owned(),
        };
        let Some((_, secret_key)) = vars.first(&["STRIPE_PRIVATE_KEY", "STRIPE_SECRET_KEY"]) else {
            return Ok(None);
        };
        Ok(Some(StripeConfig {
            secret_key: SecretString::from(secret_key),
            public_key: vars.get("STRIPE_PUBLIC_KEY").map(str::to_owned),
            webhook_secret: vars.get("STRIPE_WEBHOOK_SECRET").map(SecretString::from),
            api_base,
        }))
    }

    fn mail(
        vars: &Vars,
        environment: Environment,
        data_dir: &Path,
    ) -> Result<MailConfig, ConfigError> {
        let backend = match vars.get("MAIL_BACKEND") {
            Some("smtp") => MailBackend::Smtp,
            Some("file") => MailBackend::File,
            Some("log") => MailBackend::Log,
            Some(other) => {
                return Err(bad(
                    "MAIL_BACKEND",
                    format!("expected smtp, file or log, got {other:?}"),
                ))
            }
            None if environment == Environment::Production => MailBackend::Smtp,
            None => MailBackend::File,
        };
        let server = vars.get("MAIL_SERVER").map(str::to_owned);
        if backend == MailBackend::Smtp && server.is_none() {
            return Err(bad("MAIL_SERVER", "is required when MAIL_BACKEND is smtp"));
        }
        let port = vars
            .get("MAIL_PORT")
            .map(|v| parse_number::<u16>("MAIL_PORT", v))
            .transpose()?;
        let use_tls = vars
            .get("MAIL_USE_TLS")
            .map(|v| parse_bool("MAIL_USE_TLS", v))
            .transpose()?
            .unwrap_or(false);
        let use_ssl = vars
            .get("MAIL_USE_SSL")
            .map(|v| parse_bool("MAIL_USE_SSL", v))
            .transpose()?
            .unwrap_or(false);
        if use_tls && use_ssl {
            return Err(bad(
                "MAIL_USE_SSL",
                "choose one of MAIL_USE_TLS (STARTTLS) and MAIL_USE_SSL (TLS)",
            ));
        }
        let sender = vars
            .get("EMAIL_SENDER")
            .unwrap_or("Gatehouse <no-reply@localhost>")
            .to_owned();
        if sender.parse::<lettre::message::Mailbox>().is_err() {
            return Err(bad(
                "EMAIL_SENDER",
                format!("{sender:?} is not an email address"),
            ));
        }
        let retry_base = vars
            .get("MAIL_RETRY_BASE")
            .map(|v| parse_duration("MAIL_RETRY_BASE", v))
            .transpose()?
            .unwrap_or(Duration::from_secs(5));
        Ok(MailConfig {
            backend,
            server,
            port,
            username: vars.get("MAIL_USERNAME").map(str::to_owned),
            password: vars.get("MAIL_PASSWORD").map(SecretString::from),
            use_tls,
            use_ssl,
            sender,
            outbox_dir: data_dir.join("outbox"),
            retry_base,
            retry_max: Duration::from_secs(3600),
        })
    }

    pub fn is_production(&self) -> bool {
        self.environment == Environment::Production
    }
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
}

/// Development keeps one generated key so sessions survive a restart.
fn development_secret(path: &Path) -> std::io::Result<Vec<u8>> {
    match std::fs::read_to_string(path) {
        Ok(existing) if existing.trim().len() >= 32 => Ok(existing.trim().as_bytes().to_vec()),
        Ok(_) | Err(_) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let key = hex::encode(random_bytes(32));
            std::fs::write(path, &key)?;
            Ok(key.into_bytes())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut all = vec![("APP_ENV", "testing")];
        all.extend_from_slice(pairs);
        Config::from_vars(&Vars::from_pairs(all.iter().copied()))
    }

    #[test]
    fn defaults_are_the_contracts() {
        let c = config(&[]).unwrap();
        assert_eq!(c.bind_addr.to_string(), "127.0.0.1:5000");
        assert_eq!(c.public_url, "http://127.0.0.1:5000");
        assert_eq!(
            c.verify_url_template,
            "http://127.0.0.1:5000/ui/verify/{token}"
        );
        assert_eq!(
            c.reset_url_template,
            "http://127.0.0.1:5000/ui/reset/{token}"
        );
        assert_eq!(c.session_lifetime, Duration::from_secs(86400));
        assert_eq!(c.session_idle_timeout, Duration::from_secs(7200));
        assert!(!c.session_cookie_secure);
        assert_eq!(c.cors_allowed_origins, vec!["http://localhost:3000"]);
        assert_eq!(c.mail.backend, MailBackend::File);
        assert!(c.require_email_verification);
        assert_eq!(c.database_url.expose_secret(), "sqlite://data/gatehouse.db");
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let e = config(&[("SESSION_LIFETIME", "forever")]).unwrap_err();
        assert_eq!(e.var, "SESSION_LIFETIME");
        let e = config(&[("MAIL_USE_TLS", "maybe")]).unwrap_err();
        assert!(e.to_string().starts_with("MAIL_USE_TLS: "));
        let e = config(&[("CORS_ALLOWED_ORIGINS", "*")]).unwrap_err();
        assert_eq!(e.var, "CORS_ALLOWED_ORIGINS");
        let e = config(&[("TRUSTED_PROXIES", "10.0.0.0/99")]).unwrap_err();
        assert_eq!(e.var, "TRUSTED_PROXIES");
    }

    #[test]
    fn production_wants_a_long_secret_and_secure_cookies() {
        let e = Config::from_vars(&Vars::from_pairs([
            ("APP_ENV", "production"),
            ("MAIL_SERVER", "smtp.example.com"),
        ]))
        .unwrap_err();
        assert_eq!(e.var, "SECRET_KEY");
        let e = Config::from_vars(&Vars::from_pairs([
            ("FLASK_ENV", "production"),
            ("SECRET_KEY", "short"),
        ]))
        .unwrap_err();
        assert_eq!(e.var, "SECRET_KEY");
        let c = Config::from_vars(&Vars::from_pairs([
            ("APP_ENV", "production"),
            ("SECRET_KEY", "0123456789abcdef0123456789abcdef"),
            ("MAIL_SERVER", "smtp.example.com"),
        ]))
        .unwrap();
        assert!(c.session_cookie_secure);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.mail.backend, MailBackend::Smtp);
        assert!(c.cors_allowed_origins.is_empty());
    }

    #[test]
    fn checkout_return_pages_redirect_only_to_http_urls() {
        let c = config(&[]).unwrap();
        assert_eq!(
            (c.checkout_success_url, c.checkout_cancel_url),
            (None, None)
        );
        let c = config(&[
            (
                "CHECKOUT_SUCCESS_URL",
                "https://shop.example.com/paid?id={CHECKOUT_SESSION_ID}",
            ),
            ("CHECKOUT_CANCEL_URL", "http://localhost:3000/cancelled"),
        ])
        .unwrap();
        assert_eq!(
            c.checkout_success_url.as_deref(),
            Some("https://shop.example.com/paid?id={CHECKOUT_SESSION_ID}")
        );
        assert_eq!(
            c.checkout_cancel_url.as_deref(),
            Some("http://localhost:3000/cancelled")
        );
        for (var, bad) in [
            ("CHECKOUT_SUCCESS_URL", "/ui/billing/paid"),
            ("CHECKOUT_SUCCESS_URL", "javascript:alert(1)"),
            ("CHECKOUT_CANCEL_URL", "https://exa mple.com/"),
        ] {
            assert_eq!(config(&[(var, bad)]).unwrap_err().var, var, "{bad}");
        }
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let c = config(&[
            ("SECRET_KEY", "k3y-material-that-is-long-enough-to-use"),
            ("DATABASE_URL", "postgres://app:pg-pass@db/gatehouse"),
            ("REDIS_URL", "redis://:redis-pass@cache:6379"),
            ("MAIL_PASSWORD", "mail-pass"),
        ])
        .unwrap();
        let debug = format!("{c:?}");
        for secret in ["k3y-material", "pg-pass", "redis-pass", "mail-pass"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
    }

    #[test]
    fn stripe_is_off_without_a_key_and_keeps_its_secrets_out_of_debug() {
        assert!(config(&[]).unwrap().stripe.is_none());
        let c = config(&[
            ("STRIPE_SECRET_KEY", "sk_test_secret"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_hidden"),
            ("STRIPE_API_BASE", "http://127.0.0.1:9999/"),
        ])
        .unwrap();
        let stripe = c.stripe.as_ref().unwrap();
        assert_eq!(stripe.secret_key.expose_secret(), "sk_test_secret");
        assert_eq!(stripe.api_base, "http://127.0.0.1:9999");
        let debug = format!("{c:?}");
        assert!(!debug.contains("sk_test_secret") && !debug.contains("whsec_hidden"));
        let c = config(&[
            ("STRIPE_PRIVATE_KEY", "sk_a"),
            ("STRIPE_SECRET_KEY", "sk_b"),
        ])
        .unwrap();
        assert_eq!(c.stripe.unwrap().secret_key.expose_secret(), "sk_a");
        assert_eq!(
            config(&[("STRIPE_PRIVATE_KEY", "sk_a")])
                .unwrap()
                .stripe
                .unwrap()
                .api_base,
            "https://api.stripe.com"
        );
        for bad_base in ["api.stripe.com", "ftp://x", "https://", "https://x/?a=b"] {
            let e = config(&[("STRIPE_API_BASE", bad_base)]).unwrap_err();
            assert_eq!(e.var, "STRIPE_API_BASE", "{bad_base}");
        }
    }

    #[test]
    fn durations_take_units_or_seconds() {
        let c = config(&[
            ("SESSION_LIFETIME", "3600"),
            ("SESSION_IDLE_TIMEOUT", "15m"),
        ])
        .unwrap();
        assert_eq!(c.session_lifetime, Duration::from_secs(3600));
        assert_eq!(c.session_idle_timeout, Duration::from_secs(900));
    }
}

//! The throttle state in Redis, for deployments that set `REDIS_URL`: the same rules
//! as the database store, each update one Lua script so that it is atomic.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use super::{Recorded, Reserved, Rule};

/// Counts a failure, extends the block past the free allowance (the delay doubles
/// per failure up to the cap), and lets the key expire when the window has passed
/// without failures and no block remains.
const RECORD: &str = r"
local now = tonumber(ARGV[1])
local free = tonumber(ARGV[2])
local base = tonumber(ARGV[3])
local cap = tonumber(ARGV[4])
local window = tonumber(ARGV[5])
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
local delay = 0
if failures >= free then
  delay = base * 2 ^ math.min(failures - free, 30)
  if delay > cap then delay = cap end
  local current = tonumber(redis.call('HGET', KEYS[1], 'blocked_until') or '0')
  if now + delay > current then
    redis.call('HSET', KEYS[1], 'blocked_until', string.format('%.0f', now + delay))
  end
end
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', window + delay))
return {failures, string.format('%.0f', delay)}
";

/// The reservation of [`RECORD`]: refused (-1 and the end of the block) while the
/// subject is blocked, else counted like a failure; returns the block before it too.
const RESERVE: &str = r"
local now = tonumber(ARGV[1])
local free = tonumber(ARGV[2])
local base = tonumber(ARGV[3])
local cap = tonumber(ARGV[4])
local window = tonumber(ARGV[5])
local previous = tonumber(redis.call('HGET', KEYS[1], 'blocked_until') or '0')
if previous > now then
  return {-1, string.format('%.0f', previous), string.format('%.0f', previous)}
end
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
local delay = 0
local until_ms = previous
if failures >= free then
  delay = base * 2 ^ math.min(failures - free, 30)
  if delay > cap then delay = cap end
  until_ms = now + delay
  redis.call('HSET', KEYS[1], 'blocked_until', string.format('%.0f', until_ms))
end
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', window + delay))
return {failures, string.format('%.0f', delay), string.format('%.0f', until_ms), string.format('%.0f', previous)}
";

/// Gives a reserved failure back, undoing the block it started unless moved since.
const RELEASE: &str = r"
local failures = tonumber(redis.call('HGET', KEYS[1], 'failures') or '0')
if failures > 0 then redis.call('HINCRBY', KEYS[1], 'failures', -1) end
local current = redis.call('HGET', KEYS[1], 'blocked_until')
if current == ARGV[1] then redis.call('HSET', KEYS[1], 'blocked_until', ARGV[2]) end
return 0
";

pub struct RedisStore {
    client: redis::Client,
    prefix: String,
    conn: OnceCell<ConnectionManager>,
    script: redis::Script,
    reserve: redis::Script,
    release: redis::Script,
}

impl RedisStore {
    pub fn new(url: &str, prefix: &str) -> Result<Self, redis::RedisError> {
        Ok(Self {
            client: redis::Client::open(url)?,
            prefix: prefix.to_owned(),
            conn: OnceCell::new(),
            script: redis::Script::new(RECORD),
            reserve: redis::Script::new(RESERVE),
            release: redis::Script::new(RELEASE),
        })
    }

    /// The shared connection, opened on first use; it reconnects by itself. The
    /// short limits make an outage a quick 503 rather than logins hanging on retries.
    async fn conn(&self) -> Result<ConnectionManager, redis::RedisError> {
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200))
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)));
        self.conn
            .get_or_try_init(|| ConnectionManager::new_with_config(self.client.clone(), config))
            .await
            .cloned()
    }

    fn key(&self, rule: &Rule, subject: &str) -> String {
        format!("{}throttle:{}:{}", self.prefix, rule.scope, subject)
    }

    pub async fn record(
        &self,
        rule: &Rule,
        subject: &str,
        now_ms: i64,
    ) -> Result<Recorded, redis::RedisError> {
        let mut conn = self.conn().await?;
        let (failures, delay): (i64, i64) = self
            .script
            .key(self.key(rule, subject))
            .arg(now_ms)
            .arg(rule.free)
            .arg(rule.base_ms)
            .arg(rule.cap_ms)
            .arg(rule.window_ms)
            .invoke_async(&mut conn)
            .await?;
        Ok(Recorded {
            failures,
            blocked_ms: delay,
        })
    }

    pub async fn reserve(
        &self,
        rule: &Rule,
        subject: &str,
        now_ms: i64,
    ) -> Result<Reserved, redis::RedisError> {
        let mut conn = self.conn().await?;
        let answer: Vec<i64> = self
            .reserve
            .key(self.key(rule, subject))
            .arg(now_ms)
            .arg(rule.free)
            .arg(rule.base_ms)
            .arg(rule.cap_ms)
            .arg(rule.window_ms)
            .invoke_async(&mut conn)
            .await?;
        Ok(match answer.as_slice() {
            [failures, delay, until, previous] if *failures >= 0 => Reserved::Counted {
                recorded: Recorded {
                    failures: *failures,
                    blocked_ms: *delay,
                },
                set_until_ms: *until,
                previous_until_ms: *previous,
            },
            [_, until, ..] => Reserved::Blocked { until_ms: *until },
            _ => {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::UnexpectedReturnType,
                    "unexpected answer from the reserve script",
                )))
            }
        })
    }

    pub async fn release(
        &self,
        rule: &Rule,
        subject: &str,
        set_until_ms: i64,
        previous_until_ms: i64,
    ) -> Result<(), redis::RedisError> {
        let mut conn = self.conn().await?;
        let _: i64 = self
            .release
            .key(self.key(rule, subject))
            .arg(set_until_ms)
            .arg(previous_until_ms)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    pub async fn blocked_until(
        &self,
        rule: &Rule,
        subject: &str,
    ) -> Result<i64, redis::RedisError> {
        let mut conn = self.conn().await?;
        let value: Option<i64> = redis::cmd("HGET")
            .arg(self.key(rule, subject))
            .arg("blocked_until")
            .query_async(&mut conn)
            .await?;
        Ok(value.unwrap_or(0))
    }

    pub async fn clear(&self, rule: &Rule, subject: &str) -> Result<(), redis::RedisError> {
        let mut conn = self.conn().await?;
        let _: i64 = redis::cmd("DEL")
            .arg(self.key(rule, subject))
            .query_async(&mut conn)
            .await?;
        Ok(())
    }
}

//! The Redis mirror of live HTTP-01 responses, for web applications that read Redis and for
//! certfleet responders on other nodes (`certfleet responder --redis URL`).
//!
//! Only the control plane writes ([`RedisMirror`]); readers ([`RedisReader`]) only read keys
//! under the prefix. Layout, with the default prefix `certfleet:acme-challenge:`:
//!
//! | what | Redis | content |
//! |---|---|---|
//! | a response | hash `{prefix}{token}`, expiring after the TTL | `host`, `key_authorization`, `expires_at` (Unix seconds) |
//! | a change | message on channel `{prefix}changes` | `set <token>` or `del <token>` |
//!
//! A reader loads every key under the prefix at start (`SCAN MATCH {prefix}*`), follows the
//! change channel, and reloads everything every `resync` interval, so keys that vanish without
//! a message (a `FLUSHALL`, an expiry) stop being served. Requests never reach Redis: the
//! responder answers from its [`LiveTokens`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use certfleet_core::challenge::Http01Challenge;
use certfleet_core::validate_token;
use futures_util::StreamExt;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use tokio::sync::watch;

use crate::error::Error;
use crate::live::LiveTokens;

/// Default key prefix.
pub const DEFAULT_PREFIX: &str = "certfleet:acme-challenge:";
/// Default time between full reloads on a reader.
pub const DEFAULT_RESYNC: Duration = Duration::from_secs(5);
/// Keys fetched per `SCAN` step.
const SCAN_COUNT: usize = 200;
/// Wait before reconnecting a reader after an error.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);
/// Bound on connecting and on each command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how the mirror lives (`Debug` hides a password in the URL).
#[derive(Clone)]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port[/db]`.
    pub url: String,
    /// Key prefix; keys outside it are never read or written.
    pub prefix: String,
    /// Lifetime of a key if cleanup never runs.
    pub ttl: Duration,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &redact(&self.url))
            .field("prefix", &self.prefix)
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl RedisSettings {
    /// The change channel.
    pub fn channel(&self) -> String {
        format!("{}changes", self.prefix)
    }
}

/// Check a prefix from the config or a flag: printable ASCII without spaces or glob
/// characters (it is used in `SCAN MATCH`).
pub fn check_prefix(field: &str, prefix: &str) -> Result<(), Error> {
    let ok = !prefix.is_empty()
        && prefix
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"*?[]\\".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::config(
            field,
            format!("{prefix:?} must be printable ASCII without spaces or * ? [ ] \\"),
        ))
    }
}

fn redis_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Redis(format!("{what}: {e}"))
}

async fn bounded<T>(
    what: &str,
    f: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, Error> {
    tokio::time::timeout(COMMAND_TIMEOUT, f)
        .await
        .map_err(|_| {
            Error::Redis(format!(
                "{what}: no answer within {} s",
                COMMAND_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| redis_err(what, e))
}

fn client(url: &str) -> Result<redis::Client, Error> {
    redis::Client::open(url)
        .map_err(|e| Error::config("redis.url", format!("{}: {e}", redact(url))))
}

/// `url` with any password replaced, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

/// The writing side, used by the control plane's HTTP-01 solver.
#[derive(Clone)]
pub struct RedisMirror {
    conn: ConnectionManager,
    settings: RedisSettings,
}

impl std::fmt::Debug for RedisMirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisMirror")
            .field("url", &redact(&self.settings.url))
            .field("prefix", &self.settings.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisMirror {
    /// Connect (the connection is re-established by itself after failures).
    pub async fn connect(settings: RedisSettings) -> Result<Self, Error> {
        let client = client(&settings.url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_number_of_retries(2);
        let conn = bounded(
            &format!("connecting to {}", redact(&settings.url)),
            client.get_connection_manager_with_config(config),
        )
        .await?;
        Ok(Self { conn, settings })
    }

    /// Publish `c` (and tell readers).
    pub async fn publish(&self, c: &Http01Challenge) -> Result<(), Error> {
        let key = format!("{}{}", self.settings.prefix, c.token);
        let mut conn = self.conn.clone();
        let ttl = self.settings.ttl.as_secs().max(1);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset_multiple(
                &key,
                &[
                    ("host", c.host.to_ascii_lowercase()),
                    ("key_authorization", c.key_authorization.clone()),
                    ("expires_at", c.expires_at.to_string()),
                ],
            )
            .ignore()
            .expire(&key, ttl as i64)
            .ignore()
            .publish(self.settings.channel(), format!("set {}", c.token))
            .ignore();
        bounded("publishing a response", pipe.query_async::<()>(&mut conn)).await
    }

    /// Withdraw `tokens` (and tell readers).
    pub async fn withdraw(&self, tokens: &[String]) -> Result<(), Error> {
        if tokens.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        for t in tokens {
            pipe.del(format!("{}{t}", self.settings.prefix)).ignore();
            pipe.publish(self.settings.channel(), format!("del {t}"))
                .ignore();
        }
        bounded("withdrawing responses", pipe.query_async::<()>(&mut conn)).await
    }
}

/// The reading side: keeps a [`LiveTokens`] equal to what Redis holds under the prefix.
#[derive(Debug, Clone)]
pub struct RedisReader {
    settings: RedisSettings,
    resync: Duration,
}

impl RedisReader {
    /// A reader; `resync` is the time between full reloads.
    pub fn new(settings: RedisSettings, resync: Duration) -> Self {
        Self { settings, resync }
    }

    /// Load everything under the prefix once (also checks that Redis answers).
    pub async fn load(&self, live: &LiveTokens) -> Result<usize, Error> {
        let client = client(&self.settings.url)?;
        let mut conn = bounded("connecting", client.get_multiplexed_async_connection()).await?;
        let taken = Instant::now();
        let list = self.scan(&mut conn).await?;
        let n = list.len();
        live.replace_all(list, taken);
        Ok(n)
    }

    async fn scan(
        &self,
        conn: &mut redis::aio::MultiplexedConnection,
    ) -> Result<Vec<Http01Challenge>, Error> {
        let pattern = format!("{}*", self.settings.prefix);
        let mut cursor: u64 = 0;
        let mut keys: Vec<String> = Vec::new();
        loop {
            let (next, batch): (u64, Vec<String>) = bounded(
                "SCAN",
                redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(SCAN_COUNT)
                    .query_async(conn),
            )
            .await?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let mut out = Vec::new();
        for key in keys {
            if let Some(c) = self.fetch(conn, &key).await? {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// The response under `key` if the key is `{prefix}{valid token}` and well-formed.
    async fn fetch(
        &self,
        conn: &mut redis::aio::MultiplexedConnection,
        key: &str,
    ) -> Result<Option<Http01Challenge>, Error> {
        let Some(token) = key.strip_prefix(&self.settings.prefix) else {
            return Ok(None);
        };
        if validate_token(token).is_err() {
            return Ok(None);
        }
        let fields: std::collections::HashMap<String, String> =
            bounded("HGETALL", conn.hgetall(key)).await?;
        let (Some(host), Some(ka), Some(exp)) = (
            fields.get("host"),
            fields.get("key_authorization"),
            fields.get("expires_at"),
        ) else {
            return Ok(None);
        };
        let Ok(expires_at) = exp.parse() else {
            return Ok(None);
        };
        Ok(Some(Http01Challenge {
            token: token.to_string(),
            host: host.clone(),
            key_authorization: ka.clone(),
            certificate: String::new(),
            expires_at,
        }))
    }

    /// Follow Redis until `stopped` turns true, reconnecting after errors.
    pub async fn run(self, live: Arc<LiveTokens>, mut stopped: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = stopped.wait_for(|s| *s) => return,
                result = self.follow(&live) => {
                    if let Err(e) = result {
                        tracing::warn!(error = %e, url = %redact(&self.settings.url), "Redis mirror reader failed; reconnecting");
                    }
                }
            }
            tokio::select! {
                _ = stopped.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(RECONNECT_DELAY) => {}
            }
        }
    }

    async fn follow(&self, live: &LiveTokens) -> Result<(), Error> {
        let client = client(&self.settings.url)?;
        let mut pubsub = bounded("subscribing", client.get_async_pubsub()).await?;
        bounded("SUBSCRIBE", pubsub.subscribe(self.settings.channel())).await?;
        let mut conn = bounded("connecting", client.get_multiplexed_async_connection()).await?;
        let taken = Instant::now();
        live.replace_all(self.scan(&mut conn).await?, taken);
        let mut messages = pubsub.into_on_message();
        let mut tick = tokio::time::interval(self.resync);
        tick.tick().await;
        loop {
            tokio::select! {
                msg = messages.next() => {
                    let Some(msg) = msg else {
                        return Err(Error::Redis("the change channel closed".into()));
                    };
                    let payload: String = msg.get_payload().unwrap_or_default();
                    self.apply(&mut conn, live, &payload).await?;
                }
                _ = tick.tick() => {
                    let taken = Instant::now();
                    live.replace_all(self.scan(&mut conn).await?, taken);
                }
            }
        }
    }

    async fn apply(
        &self,
        conn: &mut redis::aio::MultiplexedConnection,
        live: &LiveTokens,
        payload: &str,
    ) -> Result<(), Error> {
        let Some((op, token)) = payload.split_once(' ') else {
            return Ok(());
        };
        if validate_token(token).is_err() {
            return Ok(());
        }
        match op {
            "set" => {
                let key = format!("{}{token}", self.settings.prefix);
                match self.fetch(conn, &key).await? {
                    Some(c) => live.insert(&c),
                    None => live.remove(&[token.to_string()]),
                }
            }
            "del" => live.remove(&[token.to_string()]),
            _ => {}
        }
        Ok(())
    }
}

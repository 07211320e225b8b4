//! The Redis mirror against a real Redis: what the control plane writes, what a reader on
//! another node serves, flushes, and keys outside the prefix.

use std::sync::Arc;
use std::time::{Duration, Instant};

use certfleet_core::Http01Challenge;
use certfleet_solvers::LiveTokens;
use certfleet_solvers::mirror::{RedisMirror, RedisReader, RedisSettings};
use certfleet_testkit::Redis;

const PREFIX: &str = "certfleet:acme-challenge:";

fn challenge(token: &str) -> Http01Challenge {
    Http01Challenge {
        token: token.into(),
        host: "WWW.example.test".into(),
        key_authorization: format!("{token}.thumb"),
        certificate: "www".into(),
        expires_at: certfleet_core::time::now() + 600,
    }
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let started = Instant::now();
    while !f() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_reader_serves_what_the_control_plane_mirrors_and_nothing_else() {
    let redis = Redis::start().await;
    let settings = RedisSettings {
        url: redis.url(),
        prefix: PREFIX.into(),
        ttl: Duration::from_secs(600),
    };
    let mirror = RedisMirror::connect(settings.clone()).await.unwrap();
    let live = LiveTokens::new();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let reader = RedisReader::new(settings, Duration::from_millis(200));
    let task = tokio::spawn(reader.run(live.clone(), stopped));

    let a = challenge("Mirror_Token_A_0123456789");
    mirror.publish(&a).await.unwrap();
    let now = certfleet_core::time::now();
    until("the reader serves the token", || {
        live.lookup(&a.token, "www.example.test", now).is_some()
    })
    .await;
    assert_eq!(
        live.lookup(&a.token, "www.example.test", now).unwrap(),
        a.key_authorization.as_bytes()
    );
    assert!(
        live.lookup(&a.token, "other.example.test", now).is_none(),
        "host is checked"
    );
    // The layout applications read.
    let key = format!("{PREFIX}{}", a.token);
    assert_eq!(
        redis.cli(&["HGET", &key, "key_authorization"]).await.trim(),
        a.key_authorization
    );
    assert_eq!(
        redis.cli(&["HGET", &key, "host"]).await.trim(),
        "www.example.test"
    );
    let ttl: i64 = redis.cli(&["TTL", &key]).await.trim().parse().unwrap();
    assert!(
        (590..=600).contains(&ttl),
        "expires with the configured TTL: {ttl}"
    );

    // A key outside the prefix, or with a malformed token, is never served.
    let evil = "Outside_Prefix_0123456789";
    redis
        .cli(&[
            "HSET",
            &format!("other:{evil}"),
            "host",
            "www.example.test",
            "key_authorization",
            "x",
            "expires_at",
            "9999999999",
        ])
        .await;
    redis
        .cli(&[
            "HSET",
            &format!("{PREFIX}bad token!"),
            "host",
            "www.example.test",
            "key_authorization",
            "x",
            "expires_at",
            "9999999999",
        ])
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(live.lookup(evil, "www.example.test", now).is_none());
    assert_eq!(live.len(), 1, "only the mirrored token");

    mirror
        .withdraw(std::slice::from_ref(&a.token))
        .await
        .unwrap();
    until("the withdrawn token is gone", || {
        live.lookup(&a.token, "www.example.test", now).is_none()
    })
    .await;
    assert_eq!(redis.cli(&["EXISTS", &key]).await.trim(), "0");

    // A flush sends no message: the periodic reload drops what vanished.
    let b = challenge("Mirror_Token_B_0123456789");
    mirror.publish(&b).await.unwrap();
    until("the reader serves B", || {
        live.lookup(&b.token, "www.example.test", now).is_some()
    })
    .await;
    redis.cli(&["FLUSHALL"]).await;
    until("B is dropped after the flush", || {
        live.lookup(&b.token, "www.example.test", now).is_none()
    })
    .await;

    let _ = stop.send(true);
    task.await.unwrap();
}

#[tokio::test]
async fn an_unreachable_redis_is_a_clear_error() {
    let port = certfleet_testkit::free_port();
    let settings = RedisSettings {
        url: format!("redis://:s3cret@127.0.0.1:{port}"),
        prefix: PREFIX.into(),
        ttl: Duration::from_secs(60),
    };
    let err = RedisMirror::connect(settings.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Redis mirror") && err.contains(&port.to_string()),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "the password is not shown: {err}");
    let err = RedisReader::new(settings, Duration::from_secs(1))
        .load(&Arc::new(LiveTokens::default()))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("Redis mirror"), "{err}");
}

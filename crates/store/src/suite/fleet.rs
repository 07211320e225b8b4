//! Checks of the fleet: labels, tokens, deployment reports, HTTP-01 confirmations and the
//! revision that agents watch.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use certfleet_core::time::UnixTime;
use certfleet_core::{
    AgentSeen, DeploymentReport, Http01Challenge, Labels, NewToken, Role, Selector, Store,
    StoreError,
};

use super::{assert_recent, expect_not_found, new_certificate, new_version};

/// A moment far in the future, so that the challenge below stays live.
const LATER: UnixTime = 4_000_000_000;

/// Labels start empty, are replaced as a whole, survive a read and refuse unknown certificates.
pub async fn labels(store: &dyn Store) {
    let name = "suite-labels";
    let created = store
        .create_certificate(&new_certificate(name, &["labels.example.com"]))
        .await
        .unwrap();
    assert!(created.labels.is_empty(), "a new certificate has no labels");
    let labels = Labels::parse_pairs(["app=www", "tier=edge"]).unwrap();
    store.set_labels(name, &labels).await.unwrap();
    let read = store.certificate(name).await.unwrap().unwrap();
    assert_eq!(read.labels, labels);
    let listed = store.certificates().await.unwrap();
    let listed = listed.iter().find(|c| c.name.as_str() == name).unwrap();
    assert_eq!(listed.labels, labels, "list carries labels too");
    let fewer = Labels::parse_pairs(["app=api"]).unwrap();
    store.set_labels(name, &fewer).await.unwrap();
    assert_eq!(
        store.certificate(name).await.unwrap().unwrap().labels,
        fewer
    );
    expect_not_found(
        store.set_labels("suite-labels-missing", &labels).await,
        "labels of a missing certificate",
    );
}

fn token(name: &str, role: Role, selector: Option<&str>, hash: &str) -> NewToken {
    NewToken {
        name: name.to_string(),
        role,
        selector: selector.map(|s| Selector::parse(s).unwrap()),
        token_hash: hash.to_string(),
    }
}

/// Tokens are found by hash until revoked, names are unique, and sightings are recorded.
pub async fn tokens(store: &dyn Store) {
    let agent = token("suite-agent", Role::Agent, Some("app=www"), &"a".repeat(64));
    let created = store.create_token(&agent).await.unwrap();
    assert_eq!((created.role, created.revoked_at), (Role::Agent, None));
    assert_recent(created.created_at, "token created_at");
    let viewer = token("suite-viewer", Role::Viewer, None, &"b".repeat(64));
    store.create_token(&viewer).await.unwrap();

    let found = store.token_by_hash(&"a".repeat(64)).await.unwrap().unwrap();
    assert_eq!(found.name, "suite-agent");
    assert_eq!(found.selector, agent.selector, "selector round-trips");
    assert!(
        store
            .token_by_hash(&"c".repeat(64))
            .await
            .unwrap()
            .is_none()
    );

    match store
        .create_token(&token("suite-agent", Role::Viewer, None, &"d".repeat(64)))
        .await
    {
        Err(StoreError::AlreadyExists(n)) => assert_eq!(n, "suite-agent"),
        other => panic!("duplicate token name: expected AlreadyExists, got {other:?}"),
    }
    match store
        .create_token(&token("suite-other", Role::Viewer, None, &"a".repeat(64)))
        .await
    {
        Err(StoreError::AlreadyExists(_)) => {}
        other => panic!("duplicate token hash: expected AlreadyExists, got {other:?}"),
    }

    let seen = AgentSeen {
        at: 1_700_000_000,
        clock_offset_ms: Some(-1500),
        serves_http01: Some(true),
    };
    store.touch_token("suite-agent", seen).await.unwrap();
    let later = AgentSeen {
        at: 1_700_000_060,
        clock_offset_ms: None,
        serves_http01: None,
    };
    store.touch_token("suite-agent", later).await.unwrap();
    let read = store.token_by_hash(&"a".repeat(64)).await.unwrap().unwrap();
    assert_eq!(read.last_seen, Some(1_700_000_060));
    assert_eq!(
        (read.clock_offset_ms, read.serves_http01),
        (Some(-1500), true),
        "a sighting without a report keeps the reported offset and HTTP-01 flag"
    );

    assert!(store.revoke_token("suite-agent").await.unwrap());
    assert!(
        !store.revoke_token("suite-agent").await.unwrap(),
        "already revoked"
    );
    assert!(!store.revoke_token("suite-missing").await.unwrap());
    assert!(
        store
            .token_by_hash(&"a".repeat(64))
            .await
            .unwrap()
            .is_none(),
        "a revoked token is refused"
    );
    let all = store.tokens().await.unwrap();
    let names: Vec<&str> = all.iter().map(|t| t.name.as_str()).collect();
    assert!(names.windows(2).all(|w| w[0] <= w[1]), "by name: {names:?}");
    let revoked = all.iter().find(|t| t.name == "suite-agent").unwrap();
    assert!(revoked.revoked_at.is_some(), "revoked tokens stay listed");
}

fn report(certificate: &str, serial: &str, verified: bool) -> DeploymentReport {
    DeploymentReport {
        certificate: certificate.to_string(),
        version: 1,
        serial: serial.to_string(),
        verified,
        served_serial: Some(serial.to_string()),
        hook_status: Some(0),
        hook_output: Some("reloaded".to_string()),
        error: None,
        rolled_back: false,
    }
}

/// The latest report per agent and certificate is kept; the previous one comes back.
pub async fn deployments(store: &dyn Store) {
    let name = "suite-deploy";
    store
        .create_certificate(&new_certificate(name, &["deploy.example.com"]))
        .await
        .unwrap();
    for agent in ["suite-web-1", "suite-web-2"] {
        let hash = format!("{agent:0>64}");
        store
            .create_token(&token(agent, Role::Agent, Some("app=www"), &hash))
            .await
            .unwrap();
    }
    let first = report(name, "0a", false);
    assert_eq!(
        store
            .record_deployment("suite-web-1", &first)
            .await
            .unwrap(),
        None
    );
    let second = DeploymentReport {
        error: Some("reload failed".into()),
        rolled_back: true,
        ..report(name, "0b", false)
    };
    let previous = store
        .record_deployment("suite-web-1", &second)
        .await
        .unwrap()
        .expect("the first report comes back");
    assert_eq!(previous.report, first);
    store
        .record_deployment("suite-web-2", &report(name, "0b", true))
        .await
        .unwrap();
    let all = store.deployments(Some(name)).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(
        (all[0].agent.as_str(), &all[0].report),
        ("suite-web-1", &second)
    );
    assert!(all[1].report.verified);
    assert_recent(all[0].reported_at, "reported_at");
    assert!(store.deployments(None).await.unwrap().len() >= 2);
    expect_not_found(
        store
            .record_deployment("suite-web-1", &report("suite-deploy-missing", "01", true))
            .await,
        "report on a missing certificate",
    );
    store.delete_certificate(name).await.unwrap();
    assert!(
        store.deployments(Some(name)).await.unwrap().is_empty(),
        "reports go with their certificate"
    );
}

/// Live responses are listed with their certificate; confirmations go with the response.
pub async fn confirmations(store: &dyn Store) {
    let name = "suite-confirm";
    store
        .create_certificate(&new_certificate(name, &["confirm.example.com"]))
        .await
        .unwrap();
    let token = "suite-confirm-token-0123456789";
    store
        .put_challenge(&Http01Challenge {
            token: token.to_string(),
            host: "confirm.example.com".to_string(),
            key_authorization: format!("{token}.thumbprint"),
            certificate: name.to_string(),
            expires_at: LATER,
        })
        .await
        .unwrap();
    let live = store.live_challenges(LATER - 1).await.unwrap();
    let ours = live.iter().find(|c| c.token == token).expect("listed");
    assert_eq!(ours.certificate, name);
    assert!(
        !store
            .live_challenges(LATER)
            .await
            .unwrap()
            .iter()
            .any(|c| c.token == token),
        "not live at expires_at"
    );
    assert!(store.confirm_challenge(token, "web-b").await.unwrap());
    assert!(store.confirm_challenge(token, "web-a").await.unwrap());
    assert!(
        store.confirm_challenge(token, "web-a").await.unwrap(),
        "again is fine"
    );
    assert_eq!(
        store.challenge_confirmations(token).await.unwrap(),
        ["web-a", "web-b"]
    );
    assert!(
        !store
            .confirm_challenge("suite-unknown-token-0123456", "web-a")
            .await
            .unwrap()
    );
    store.remove_challenges(&[token.to_string()]).await.unwrap();
    assert!(
        store
            .challenge_confirmations(token)
            .await
            .unwrap()
            .is_empty()
    );
    store.delete_certificate(name).await.unwrap();
}

/// The revision moves on every change agents care about, and `on_change` reports it.
pub async fn revision(store: &dyn Store) {
    let seen = Arc::new(AtomicU64::new(0));
    let sink = Arc::clone(&seen);
    store.on_change(Box::new(move |r| sink.store(r, Ordering::SeqCst)));
    let name = "suite-revision";
    store
        .create_certificate(&new_certificate(name, &["revision.example.com"]))
        .await
        .unwrap();
    let mut last = store.revision().await.unwrap();
    let mut moved = |what: &str, now: u64| {
        assert!(
            now > last,
            "{what}: revision {now} did not move past {last}"
        );
        last = now;
    };
    store
        .add_version(name, new_version("0r", 1_700_000_000))
        .await
        .unwrap();
    moved("a new version", store.revision().await.unwrap());
    store
        .set_labels(name, &Labels::parse_pairs(["app=rev"]).unwrap())
        .await
        .unwrap();
    moved("labels", store.revision().await.unwrap());
    store
        .create_token(&token(
            "suite-rev-agent",
            Role::Agent,
            Some("app=rev"),
            &"e".repeat(64),
        ))
        .await
        .unwrap();
    moved("a token", store.revision().await.unwrap());
    store.revoke_token("suite-rev-agent").await.unwrap();
    moved("a revocation", store.revision().await.unwrap());
    store.delete_certificate(name).await.unwrap();
    let now = store.revision().await.unwrap();
    moved("a removal", now);
    let told = seen.load(Ordering::SeqCst);
    assert!(
        told == 0 || told == now,
        "on_change, when supported, reports the latest revision ({told} vs {now})"
    );
}

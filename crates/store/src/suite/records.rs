//! Checks of accounts, HTTP-01 responses and the event log.

use certfleet_core::time::UnixTime;
use certfleet_core::{AccountRecord, ContactsOverride, EventKind, Http01Challenge, Secret, Store};

use super::{assert_recent, expect_not_found, new_certificate};

/// A moment far in the future, so that no other check's challenge expires after it.
const LATER: UnixTime = 4_000_000_000;

/// Accounts are saved per (issuer, directory) with credentials intact, and replaced on save.
pub async fn accounts(store: &dyn Store) {
    let dir = "https://ca.test/directory";
    assert!(store.account("suite", dir).await.unwrap().is_none());
    let account = AccountRecord {
        issuer: "suite".to_string(),
        directory_url: dir.to_string(),
        account_url: "https://ca.test/acct/1".to_string(),
        credentials: Secret::new(r#"{"id":"https://ca.test/acct/1","key_pkcs8":"c2VjcmV0"}"#),
        created_at: 1_700_000_000,
        contacts: vec!["mailto:ops@example.test".to_string()],
    };
    store.save_account(&account).await.unwrap();
    let read = store
        .account("suite", dir)
        .await
        .unwrap()
        .expect("saved account");
    assert_eq!(read.account_url, account.account_url);
    assert_eq!(read.credentials, account.credentials);
    assert_eq!(read.created_at, account.created_at);
    assert_eq!(read.contacts, account.contacts, "contacts round-trip");
    assert_eq!(
        (read.issuer.as_str(), read.directory_url.as_str()),
        ("suite", dir)
    );

    assert!(
        store
            .account("suite", "https://other.test/dir")
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.account("suite-other", dir).await.unwrap().is_none());

    let staging = AccountRecord {
        directory_url: "https://ca.test/staging".to_string(),
        account_url: "https://ca.test/acct/9".to_string(),
        ..account.clone()
    };
    store.save_account(&staging).await.unwrap();

    let replacement = AccountRecord {
        account_url: "https://ca.test/acct/2".to_string(),
        credentials: Secret::new("new credentials"),
        created_at: 1_700_000_100,
        contacts: vec![
            "mailto:a@example.test".to_string(),
            "mailto:b@example.test".to_string(),
        ],
        ..account.clone()
    };
    store.save_account(&replacement).await.unwrap();
    let read = store.account("suite", dir).await.unwrap().unwrap();
    assert_eq!(read.account_url, "https://ca.test/acct/2", "save replaces");
    assert_eq!(read.credentials.expose(), "new credentials");
    assert_eq!(read.created_at, 1_700_000_100);
    assert_eq!(
        read.contacts, replacement.contacts,
        "contacts are replaced too"
    );
    let read = store
        .account("suite", &staging.directory_url)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        read.account_url, staging.account_url,
        "other directory untouched"
    );
}

fn challenge(token: &str, host: &str, certificate: &str, expires_at: UnixTime) -> Http01Challenge {
    Http01Challenge {
        token: token.to_string(),
        host: host.to_string(),
        key_authorization: format!("{token}.thumbprint"),
        certificate: certificate.to_string(),
        expires_at,
    }
}

/// Responses are served for their host until they expire, withdrawn and purged on request.
pub async fn challenges(store: &dyn Store) {
    let name = "suite-challenges";
    store
        .create_certificate(&new_certificate(name, &["ch.example.com"]))
        .await
        .unwrap();
    let host = "ch.example.com";
    let t1 = "suite-token-one-0123456789";
    store
        .put_challenge(&challenge(t1, "CH.Example.com", name, LATER))
        .await
        .unwrap();
    let served = |token: &'static str, host: &'static str, now: UnixTime| async move {
        store.challenge_response(token, host, now).await.unwrap()
    };
    let ka1 = Some(format!("{t1}.thumbprint"));
    assert_eq!(served(t1, host, LATER - 1).await, ka1, "live for its host");
    assert_eq!(
        served(t1, "CH.EXAMPLE.COM", LATER - 1).await,
        ka1,
        "host is case-blind"
    );
    assert_eq!(
        served(t1, "other.example.com", LATER - 1).await,
        None,
        "other host"
    );
    assert_eq!(
        served("suite-token-unknown-0123", host, LATER - 1).await,
        None
    );
    assert_eq!(
        served(t1, host, LATER).await,
        None,
        "not served at expires_at"
    );
    assert_eq!(
        served(t1, host, LATER + 1).await,
        None,
        "not served after expiry"
    );

    let mut replaced = challenge(t1, host, name, LATER + 10);
    replaced.key_authorization = format!("{t1}.newthumb");
    store.put_challenge(&replaced).await.unwrap();
    assert_eq!(
        served(t1, host, LATER + 5).await,
        Some(format!("{t1}.newthumb")),
        "putting a token again replaces it"
    );

    expect_not_found(
        store
            .put_challenge(&challenge(
                "suite-token-orphan-0123",
                host,
                "suite-ch-missing",
                LATER,
            ))
            .await,
        "put_challenge for an unknown certificate",
    );

    let t2 = "suite-token-two-0123456789";
    store
        .put_challenge(&challenge(t2, host, name, LATER))
        .await
        .unwrap();
    store
        .remove_challenges(&[t1.to_string(), "suite-token-never-put-0".to_string()])
        .await
        .unwrap();
    assert_eq!(served(t1, host, LATER - 1).await, None, "removed");
    assert!(served(t2, host, LATER - 1).await.is_some(), "others stay");
    store.remove_challenges(&[]).await.unwrap();

    // Purge: clear anything older first, then expect exactly the expired ones to go.
    store.purge_challenges(LATER - 1).await.unwrap();
    let t3 = "suite-token-three-0123456789";
    store
        .put_challenge(&challenge(t3, host, name, LATER + 100))
        .await
        .unwrap();
    assert_eq!(
        store.purge_challenges(LATER - 1).await.unwrap(),
        0,
        "nothing expired yet"
    );
    assert_eq!(
        store.purge_challenges(LATER + 50).await.unwrap(),
        1,
        "t2 expired"
    );
    assert_eq!(served(t2, host, LATER - 1).await, None, "purged");
    assert!(
        served(t3, host, LATER + 50).await.is_some(),
        "t3 still live"
    );
    store.remove_challenges(&[t3.to_string()]).await.unwrap();
    let t4 = "suite-token-four-0123456789";
    store
        .put_challenge(&challenge(t4, host, name, LATER + 200))
        .await
        .unwrap();
    assert_eq!(
        store.purge_challenges(LATER + 200).await.unwrap(),
        1,
        "purged once no longer served (expires_at <= now)"
    );
    assert_eq!(
        store.purge_challenges(LATER + 1000).await.unwrap(),
        0,
        "all gone"
    );
}

/// Events come back newest first, limited, optionally for one certificate.
pub async fn events(store: &dyn Store) {
    let (a, b) = ("suite-events-a", "suite-events-b");
    store
        .append_event(Some(a), EventKind::Created, "m1")
        .await
        .unwrap();
    store
        .append_event(None, EventKind::AccountCreated, "m2")
        .await
        .unwrap();
    store
        .append_event(Some(b), EventKind::Issued, "m3")
        .await
        .unwrap();
    store
        .append_event(Some(a), EventKind::Failed, "m4")
        .await
        .unwrap();

    let newest = store.events(None, 3).await.unwrap();
    let summary: Vec<_> = newest
        .iter()
        .map(|e| (e.certificate.as_deref(), e.kind, e.message.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            (Some(a), EventKind::Failed, "m4"),
            (Some(b), EventKind::Issued, "m3"),
            (None, EventKind::AccountCreated, "m2"),
        ],
        "newest first, limited"
    );
    assert!(
        newest.windows(2).all(|w| w[0].id > w[1].id),
        "ids increase with time"
    );
    newest
        .iter()
        .for_each(|e| assert_recent(e.at, "event time"));

    let for_a: Vec<_> = store
        .events(Some(a), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.message)
        .collect();
    assert_eq!(for_a, ["m4", "m1"], "only that certificate's events");
    assert_eq!(store.events(Some(a), 1).await.unwrap().len(), 1);
    assert!(store.events(None, 0).await.unwrap().is_empty(), "limit 0");
    assert!(
        store
            .events(Some("suite-events-none"), 5)
            .await
            .unwrap()
            .is_empty()
    );

    let all_kinds = [
        EventKind::Created,
        EventKind::IssuanceStarted,
        EventKind::Issued,
        EventKind::Failed,
        EventKind::Deleted,
        EventKind::AccountCreated,
    ];
    let c = "suite-events-kinds";
    for kind in all_kinds {
        store
            .append_event(Some(c), kind, kind.as_str())
            .await
            .unwrap();
    }
    let kinds: Vec<_> = store
        .events(Some(c), 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind)
        .collect();
    let mut expected = all_kinds.to_vec();
    expected.reverse();
    assert_eq!(kinds, expected, "every kind round-trips");
}

/// A contacts override belongs to one stored account, survives saving the account again
/// (a re-registration or a key rollover), and can be cleared.
pub async fn contacts_overrides(store: &dyn Store) {
    let dir = "https://ca.test/override";
    expect_not_found(
        store
            .set_contacts_override("suite-override", dir, None)
            .await,
        "an override without a stored account",
    );
    let account = AccountRecord {
        issuer: "suite-override".to_string(),
        directory_url: dir.to_string(),
        account_url: "https://ca.test/acct/7".to_string(),
        credentials: Secret::new("credentials"),
        created_at: 1_700_000_000,
        contacts: vec!["mailto:config@example.test".to_string()],
    };
    store.save_account(&account).await.unwrap();
    assert_eq!(
        store
            .contacts_override("suite-override", dir)
            .await
            .unwrap(),
        None
    );
    let set = ContactsOverride {
        contacts: vec![
            "mailto:oncall@example.test".to_string(),
            "mailto:team@example.test".to_string(),
        ],
        configured: vec!["mailto:config@example.test".to_string()],
        set_at: 1_700_000_050,
    };
    store
        .set_contacts_override("suite-override", dir, Some(&set))
        .await
        .unwrap();
    assert_eq!(
        store
            .contacts_override("suite-override", dir)
            .await
            .unwrap(),
        Some(set.clone())
    );
    let rolled = AccountRecord {
        credentials: Secret::new("rolled-over credentials"),
        ..account.clone()
    };
    store.save_account(&rolled).await.unwrap();
    assert_eq!(
        store
            .contacts_override("suite-override", dir)
            .await
            .unwrap(),
        Some(set.clone()),
        "saving the account again keeps the override"
    );
    let empty = ContactsOverride {
        contacts: Vec::new(),
        ..set.clone()
    };
    store
        .set_contacts_override("suite-override", dir, Some(&empty))
        .await
        .unwrap();
    assert_eq!(
        store
            .contacts_override("suite-override", dir)
            .await
            .unwrap(),
        Some(empty),
        "an empty list of contacts is an override too"
    );
    assert_eq!(
        store
            .contacts_override("suite-override", "https://other.test/dir")
            .await
            .unwrap(),
        None
    );
    store
        .set_contacts_override("suite-override", dir, None)
        .await
        .unwrap();
    assert_eq!(
        store
            .contacts_override("suite-override", dir)
            .await
            .unwrap(),
        None,
        "cleared"
    );
}

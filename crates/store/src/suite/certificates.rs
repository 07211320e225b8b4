//! Checks of certificate rows: create, read, list, status, order URL, delete.

use certfleet_core::time;
use certfleet_core::{
    CertificateStatus, ChallengeKind, Http01Challenge, KeyKind, Source, Store, StoreError,
};

use super::{assert_recent, expect_not_found, new_certificate, new_version};

/// Create, read back, list in name order, refuse duplicates, keep every enum value.
pub async fn certificate_lifecycle(store: &dyn Store) {
    let mut new = new_certificate("suite-life-b", &["b.example.com", "*.b.example.com"]);
    new.key_kind = KeyKind::Rsa3072;
    new.challenge = ChallengeKind::Dns01;
    new.source = Source::Manual;
    new.issuer = "staging".to_string();
    new.solvers.default = Some("knot".to_string());
    new.solvers
        .rules
        .insert("b.example.com".to_string(), "http".to_string());
    new.solvers
        .rules
        .insert(".example.org".to_string(), "cloudflare".to_string());
    let created = store.create_certificate(&new).await.unwrap();
    assert_eq!(created.solvers, new.solvers, "solver rules are kept");
    assert_eq!(created.name, new.name);
    assert_eq!(created.domains, new.domains, "domains keep their order");
    assert_eq!(
        (created.key_kind, created.challenge, created.source),
        (KeyKind::Rsa3072, ChallengeKind::Dns01, Source::Manual)
    );
    assert_eq!(created.issuer, "staging");
    assert_eq!(created.status, CertificateStatus::Pending);
    assert_eq!((created.current_version, created.not_after), (None, None));
    assert_eq!(
        (created.failure_streak, created.last_error.as_deref()),
        (0, None)
    );
    assert_eq!(
        (created.next_due, created.order_url.as_deref()),
        (None, None)
    );
    assert!(!created.id.is_empty(), "a certificate gets an id");
    assert_recent(created.created_at, "created_at");
    assert_eq!(created.updated_at, created.created_at);

    let read = store.certificate("suite-life-b").await.unwrap();
    assert_eq!(
        read.as_ref(),
        Some(&created),
        "read back equals what create returned"
    );
    assert_eq!(store.certificate("suite-life-missing").await.unwrap(), None);

    match store.create_certificate(&new).await {
        Err(StoreError::AlreadyExists(name)) => assert_eq!(name, "suite-life-b"),
        other => panic!("duplicate name: expected AlreadyExists, got {other:?}"),
    }

    let a = store
        .create_certificate(&new_certificate("suite-life-a", &["a.example.com"]))
        .await
        .unwrap();
    assert_ne!(a.id, created.id, "ids are unique");
    for kind in KeyKind::ALL {
        let name = format!("suite-life-k-{kind}");
        let mut new = new_certificate(&name, &["k.example.com"]);
        new.key_kind = kind;
        store.create_certificate(&new).await.unwrap();
        let read = store.certificate(&name).await.unwrap().unwrap();
        assert_eq!(read.key_kind, kind);
    }

    let listed: Vec<String> = store
        .certificates()
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.name.as_str().starts_with("suite-life-"))
        .map(|c| c.name.to_string())
        .collect();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(listed, sorted, "certificates() lists by name");
    assert_eq!(&listed[..2], ["suite-life-a", "suite-life-b"]);
    assert_eq!(listed.len(), 2 + KeyKind::ALL.len());
}

/// `Failed` counts and keeps the error, `Issuing`/`Pending` keep both, `Valid` resets.
pub async fn status_transitions(store: &dyn Store) {
    let name = "suite-status";
    store
        .create_certificate(&new_certificate(name, &["status.example.com"]))
        .await
        .unwrap();
    let check = |streak: u32, error: Option<&'static str>, status: CertificateStatus| async move {
        let c = store.certificate(name).await.unwrap().unwrap();
        assert_eq!(
            (c.status, c.failure_streak, c.last_error.as_deref()),
            (status, streak, error)
        );
        assert!(c.updated_at >= c.created_at);
    };
    use CertificateStatus::*;
    store.set_status(name, Issuing, None).await.unwrap();
    check(0, None, Issuing).await;
    store.set_status(name, Failed, Some("boom")).await.unwrap();
    check(1, Some("boom"), Failed).await;
    store
        .set_status(name, Failed, Some("boom again"))
        .await
        .unwrap();
    check(2, Some("boom again"), Failed).await;
    store.set_status(name, Issuing, None).await.unwrap();
    check(2, Some("boom again"), Issuing).await;
    store.set_status(name, Pending, None).await.unwrap();
    check(2, Some("boom again"), Pending).await;
    store.set_status(name, Valid, None).await.unwrap();
    check(0, None, Valid).await;
    store.set_status(name, Failed, Some("third")).await.unwrap();
    check(1, Some("third"), Failed).await;

    expect_not_found(
        store.set_status("suite-status-missing", Valid, None).await,
        "set_status on an unknown certificate",
    );
}

/// The order URL is remembered and forgotten.
pub async fn order_url_round_trip(store: &dyn Store) {
    let name = "suite-order";
    store
        .create_certificate(&new_certificate(name, &["order.example.com"]))
        .await
        .unwrap();
    let url = "https://ca.test/order/1";
    store.set_order_url(name, Some(url)).await.unwrap();
    let c = store.certificate(name).await.unwrap().unwrap();
    assert_eq!(c.order_url.as_deref(), Some(url));
    store.set_order_url(name, None).await.unwrap();
    let c = store.certificate(name).await.unwrap().unwrap();
    assert_eq!(c.order_url, None);
    expect_not_found(
        store.set_order_url("suite-order-missing", Some(url)).await,
        "set_order_url on an unknown certificate",
    );
}

/// Deleting a certificate removes its versions and live challenges; the name is free again.
pub async fn delete_cascades(store: &dyn Store) {
    let name = "suite-delete";
    let first = store
        .create_certificate(&new_certificate(name, &["delete.example.com"]))
        .await
        .unwrap();
    store
        .add_version(name, new_version("de1e7e", time::now()))
        .await
        .unwrap();
    let token = "suite-delete-token-0123456789";
    let challenge = Http01Challenge {
        token: token.to_string(),
        host: "delete.example.com".to_string(),
        key_authorization: format!("{token}.thumb"),
        certificate: name.to_string(),
        expires_at: time::now() + 3600,
    };
    store.put_challenge(&challenge).await.unwrap();

    assert!(store.delete_certificate(name).await.unwrap());
    assert_eq!(store.certificate(name).await.unwrap(), None);
    expect_not_found(store.versions(name).await, "versions after delete");
    expect_not_found(store.version_key(name, 1).await, "version_key after delete");
    let served = store
        .challenge_response(token, "delete.example.com", time::now())
        .await
        .unwrap();
    assert_eq!(
        served, None,
        "a deleted certificate's challenges are withdrawn"
    );
    assert!(
        !store.delete_certificate(name).await.unwrap(),
        "second delete"
    );

    let again = store
        .create_certificate(&new_certificate(name, &["delete.example.com"]))
        .await
        .unwrap();
    assert_ne!(again.id, first.id, "a re-created certificate gets a new id");
    assert!(
        store.versions(name).await.unwrap().is_empty(),
        "old versions are gone"
    );
    let v = store
        .add_version(name, new_version("de1e7e02", time::now()))
        .await
        .unwrap();
    assert_eq!((v.seq, v.replaces), (1, None), "numbering restarts");
    assert!(store.delete_certificate(name).await.unwrap());
}

/// A changed declaration replaces names, issuer, key kind and challenge, keeps the versions
/// and the current one, and `current` keeps saying what that version was issued for.
pub async fn declaration_updates(store: &dyn Store) {
    let name = "suite-decl";
    store
        .create_certificate(&new_certificate(name, &["www.example.test"]))
        .await
        .unwrap();
    assert_eq!(
        store.certificate(name).await.unwrap().unwrap().current,
        None
    );
    let v1 = store
        .add_version(name, new_version("d1", time::now()))
        .await
        .unwrap();
    let before = store.certificate(name).await.unwrap().unwrap();
    let issued_for = before.current.clone().expect("a current version");
    assert_eq!(issued_for.domains, before.domains);
    assert_eq!(issued_for.issuer, "default");
    assert_eq!(issued_for.key_kind, KeyKind::EcdsaP256);
    assert_eq!(before.declaration_mismatch(), None);

    // A change of profile or renew_before only: an order in flight is kept.
    store
        .set_order_url(name, Some("https://ca.test/order/in-flight"))
        .await
        .unwrap();
    let mut settings_only = new_certificate(name, &["www.example.test"]);
    settings_only.profile = Some("shortlived".into());
    let kept = store
        .update_declaration(name, &settings_only)
        .await
        .unwrap();
    assert_eq!(kept.profile.as_deref(), Some("shortlived"));
    assert_eq!(
        kept.order_url.as_deref(),
        Some("https://ca.test/order/in-flight"),
        "same names, key, issuer: the order is kept"
    );
    assert!(
        kept.next_due.is_some_and(|t| t <= time::now()),
        "due now, to plan again"
    );

    let mut changed = new_certificate(name, &["www.example.test", "api.example.test"]);
    changed.key_kind = KeyKind::EcdsaP384;
    changed.issuer = "staging".into();
    changed.challenge = ChallengeKind::Dns01;
    let after = store.update_declaration(name, &changed).await.unwrap();
    assert_eq!(after.domains, changed.domains);
    assert_eq!(
        (after.key_kind, after.challenge, after.issuer.as_str()),
        (KeyKind::EcdsaP384, ChallengeKind::Dns01, "staging")
    );
    assert_eq!(
        after.current_version,
        Some(v1.seq),
        "the current version stays"
    );
    assert_eq!(
        after.order_url, None,
        "an order for the old declaration is forgotten"
    );
    assert_eq!(after.profile, None);
    assert_eq!(
        after.current,
        Some(issued_for),
        "what it was issued for stays"
    );
    let mismatch = after.declaration_mismatch().expect("a mismatch");
    assert!(
        mismatch.contains("names added: api.example.test"),
        "{mismatch}"
    );
    assert_eq!(store.certificate(name).await.unwrap().unwrap(), after);
    assert_eq!(store.versions(name).await.unwrap().len(), 1);
    expect_not_found(
        store
            .update_declaration("suite-decl-missing", &changed)
            .await,
        "update_declaration of a missing certificate",
    );
}

//! Checks of versions and their sealed keys.

use certfleet_core::{CertificateStatus, KeyKind, RevocationReason, Secret, Store};

use super::{assert_recent, expect_not_found, new_certificate, new_version};

/// `add_version` numbers from 1, links `replaces`, makes the version current, marks the
/// certificate valid with a clean slate; keys come back exactly as stored.
pub async fn versions_and_keys(store: &dyn Store) {
    let name = "suite-versions";
    store
        .create_certificate(&new_certificate(name, &["versions.example.com"]))
        .await
        .unwrap();
    assert!(store.versions(name).await.unwrap().is_empty());
    store
        .set_status(name, CertificateStatus::Failed, Some("rate limited"))
        .await
        .unwrap();
    store
        .set_order_url(name, Some("https://ca.test/order/pending"))
        .await
        .unwrap();

    let first_new = new_version("0a01", 1_700_000_000);
    let first = store.add_version(name, first_new.clone()).await.unwrap();
    assert_eq!(
        (first.seq, first.replaces, first.revoked_at),
        (1, None, None)
    );
    assert_eq!(first.serial, "0a01");
    assert_eq!(
        (first.not_before, first.not_after),
        (first_new.not_before, first_new.not_after)
    );
    assert_eq!(first.leaf_pem, first_new.leaf_pem);
    assert_eq!(first.chain_pem, first_new.chain_pem);
    assert_eq!(first.order_url, first_new.order_url);
    assert_recent(first.issued_at, "issued_at");

    let c = store.certificate(name).await.unwrap().unwrap();
    assert_eq!(c.current_version, Some(1));
    assert_eq!(
        c.not_after,
        Some(first_new.not_after),
        "not_after of the current version"
    );
    assert_eq!(c.status, CertificateStatus::Valid);
    assert_eq!((c.failure_streak, c.last_error.as_deref()), (0, None));
    assert_eq!(c.order_url, None, "add_version clears the order in flight");

    let mut second_new = new_version("0b02", 1_705_000_000);
    second_new.key_kind = KeyKind::EcdsaP384;
    second_new.chain_pem = String::new();
    second_new.order_url = None;
    // A key with multi-byte text and a few kilobytes, as an RSA 4096 PEM would be.
    let long_key = format!("-----BEGIN PRIVATE KEY-----\n{}é\n", "A".repeat(3000));
    second_new.key_pem = Secret::new(long_key.clone());
    let second = store.add_version(name, second_new.clone()).await.unwrap();
    assert_eq!((second.seq, second.replaces), (2, Some(1)));
    assert_eq!(second.key_kind, KeyKind::EcdsaP384);

    let c = store.certificate(name).await.unwrap().unwrap();
    assert_eq!(c.current_version, Some(2));
    assert_eq!(c.not_after, Some(second_new.not_after));
    let listed = store.certificates().await.unwrap();
    let listed = listed.iter().find(|c| c.name.as_str() == name).unwrap();
    assert_eq!(
        listed.not_after,
        Some(second_new.not_after),
        "certificates() fills not_after"
    );

    let all = store.versions(name).await.unwrap();
    assert_eq!(
        all,
        vec![first.clone(), second.clone()],
        "oldest first, as returned"
    );

    let key1 = store.version_key(name, 1).await.unwrap();
    assert_eq!(key1.expose(), first_new.key_pem.expose());
    let key2 = store.version_key(name, 2).await.unwrap();
    assert_eq!(key2.expose(), long_key);

    expect_not_found(
        store.version_key(name, 3).await,
        "version_key of a missing seq",
    );
    expect_not_found(store.version_key(name, 0).await, "version_key of seq 0");
    let missing = "suite-versions-missing";
    expect_not_found(
        store.versions(missing).await,
        "versions of an unknown certificate",
    );
    expect_not_found(
        store.version_key(missing, 1).await,
        "version_key of an unknown cert",
    );
    expect_not_found(
        store
            .add_version(missing, new_version("0c03", 1_700_000_000))
            .await,
        "add_version to an unknown certificate",
    );

    // Versions are per certificate: another certificate starts at 1.
    let other = "suite-versions-other";
    store
        .create_certificate(&new_certificate(other, &["other.example.com"]))
        .await
        .unwrap();
    let v = store
        .add_version(other, new_version("0d04", 1_700_000_000))
        .await
        .unwrap();
    assert_eq!((v.seq, v.replaces), (1, None));
    assert_eq!(store.versions(name).await.unwrap().len(), 2);
}

/// `mark_revoked` marks one version once (the first time and reason are kept), leaves the
/// others and the current version alone, and names a missing version.
pub async fn revocations(store: &dyn Store) {
    let name = "suite-revoked";
    store
        .create_certificate(&new_certificate(name, &["revoked.example.com"]))
        .await
        .unwrap();
    store
        .add_version(name, new_version("0e01", 1_700_000_000))
        .await
        .unwrap();
    store
        .add_version(name, new_version("0e02", 1_700_000_100))
        .await
        .unwrap();
    let at = 1_700_000_500;
    assert!(
        store
            .mark_revoked(name, 1, at, RevocationReason::KeyCompromise)
            .await
            .unwrap()
    );
    assert!(
        !store
            .mark_revoked(name, 1, at + 10, RevocationReason::Superseded)
            .await
            .unwrap(),
        "already revoked"
    );
    let v1 = store.version(name, 1).await.unwrap().unwrap();
    assert_eq!(
        (v1.revoked_at, v1.revocation_reason),
        (Some(at), Some(RevocationReason::KeyCompromise)),
        "the first revocation is kept"
    );
    let v2 = store.version(name, 2).await.unwrap().unwrap();
    assert_eq!((v2.revoked_at, v2.revocation_reason), (None, None));
    let listed = store.versions(name).await.unwrap();
    assert_eq!(listed[0], v1, "versions() shows the revocation too");
    let c = store.certificate(name).await.unwrap().unwrap();
    assert_eq!(c.current_version, Some(2), "the current version stays");
    assert_eq!(
        c.current_revoked_at, None,
        "the current version is not revoked"
    );
    assert!(
        store
            .mark_revoked(name, 2, at + 20, RevocationReason::Superseded)
            .await
            .unwrap()
    );
    let c = store.certificate(name).await.unwrap().unwrap();
    assert_eq!(
        c.current_revoked_at,
        Some(at + 20),
        "certificate() shows it"
    );
    let listed = store.certificates().await.unwrap();
    let listed = listed.iter().find(|c| c.name.as_str() == name).unwrap();
    assert_eq!(
        listed.current_revoked_at,
        Some(at + 20),
        "certificates() too"
    );
    store
        .add_version(name, new_version("0e03", 1_700_000_200))
        .await
        .unwrap();
    let c = store.certificate(name).await.unwrap().unwrap();
    assert_eq!(
        c.current_revoked_at, None,
        "a new current version is not revoked"
    );
    expect_not_found(
        store
            .mark_revoked(name, 9, at, RevocationReason::Unspecified)
            .await,
        "mark_revoked of a missing version",
    );
    expect_not_found(
        store
            .mark_revoked(
                "suite-revoked-missing",
                1,
                at,
                RevocationReason::Unspecified,
            )
            .await,
        "mark_revoked of an unknown certificate",
    );
}

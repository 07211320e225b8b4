//! Checks of what the renewal engine needs: settings, claims with an owner and an expiry,
//! the schedule (`next_due`), the CA's Retry-After, pending order keys and ARI windows.
//!
//! Claims are checked with times far in the past, so that the certificates other checks
//! create (due "now") never take part.

use certfleet_core::policy::{AriWindow, RenewBefore};
use certfleet_core::time::{self, DAY};
use certfleet_core::{Secret, Source, Store};

use super::{expect_not_found, new_certificate, new_version};

/// Profile and `renew_before` round-trip; a new certificate certfleet renews is due at once,
/// an imported one never.
pub async fn renewal_settings(store: &dyn Store) {
    let mut new = new_certificate("suite-settings", &["settings.example.com"]);
    new.profile = Some("shortlived".into());
    new.renew_before = Some(RenewBefore::Percent(40));
    let created = store.create_certificate(&new).await.unwrap();
    let read = store.certificate("suite-settings").await.unwrap().unwrap();
    assert_eq!(read, created);
    assert_eq!(read.profile.as_deref(), Some("shortlived"));
    assert_eq!(read.renew_before, Some(RenewBefore::Percent(40)));
    let due = read
        .next_due
        .expect("an ACME certificate is due at creation");
    assert!((time::now() - due).abs() <= 5, "due now: {due}");
    assert_eq!((read.claim_owner, read.claim_until), (None, None));

    let mut manual = new_certificate("suite-settings-manual", &["manual.example.com"]);
    manual.source = Source::Manual;
    manual.renew_before = Some(RenewBefore::Duration(7 * DAY));
    store.create_certificate(&manual).await.unwrap();
    let read = store
        .certificate("suite-settings-manual")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.next_due, None, "an imported certificate is never due");
    assert_eq!(read.renew_before, Some(RenewBefore::Duration(7 * DAY)));
    for name in ["suite-settings", "suite-settings-manual"] {
        assert!(store.delete_certificate(name).await.unwrap());
    }
}

/// `claim_due` takes due certificates earliest first up to the limit, moves their
/// `next_due` to the claim's end, skips live claims, takes over expired ones; only the
/// owner releases; `next_due` is the earliest of all.
pub async fn claims(store: &dyn Store) {
    let names = ["suite-claim-a", "suite-claim-b", "suite-claim-c"];
    for (i, name) in names.iter().enumerate() {
        store
            .create_certificate(&new_certificate(name, &["claim.example.com"]))
            .await
            .unwrap();
        // Place each at a known moment long ago: claim it, release it with that time.
        assert!(store.claim(name, "setup", 0, 1).await.unwrap().is_some());
        let at = 1_000 * (i as i64 + 1);
        assert!(store.release_claim(name, "setup", Some(at)).await.unwrap());
    }
    assert_eq!(store.next_due().await.unwrap(), Some(1_000), "the earliest");

    let got = store.claim_due("one", 2_500, 9_000, 10).await.unwrap();
    let got: Vec<_> = got
        .iter()
        .map(|c| (c.name.to_string(), c.claim_owner.clone(), c.next_due))
        .collect();
    assert_eq!(
        got,
        [
            ("suite-claim-a".into(), Some("one".into()), Some(9_000)),
            ("suite-claim-b".into(), Some("one".into()), Some(9_000)),
        ],
        "due at or before now, earliest first, claimed until 9000"
    );
    assert_eq!(
        store.next_due().await.unwrap(),
        Some(3_000),
        "claimed ones count with their end"
    );
    let more = store.claim_due("two", 3_000, 9_500, 1).await.unwrap();
    assert_eq!(more.len(), 1);
    assert_eq!(more[0].name.as_str(), "suite-claim-c");
    assert!(
        store
            .claim_due("two", 8_999, 9_500, 10)
            .await
            .unwrap()
            .is_empty(),
        "live claims are skipped"
    );

    assert!(
        !store
            .release_claim("suite-claim-a", "two", Some(5))
            .await
            .unwrap(),
        "not the owner"
    );
    assert!(
        store
            .extend_claim("suite-claim-a", "one", 9_800)
            .await
            .unwrap()
    );
    assert!(
        !store
            .extend_claim("suite-claim-a", "two", 9_900)
            .await
            .unwrap()
    );
    let a = store.certificate("suite-claim-a").await.unwrap().unwrap();
    assert_eq!((a.claim_until, a.next_due), (Some(9_800), Some(9_800)));

    // "one" died: after its claim ran out, "two" takes the certificates over.
    let taken = store.claim_due("two", 9_000, 20_000, 10).await.unwrap();
    let taken: Vec<_> = taken.iter().map(|c| c.name.to_string()).collect();
    assert_eq!(taken, ["suite-claim-b"], "expired at 9000; a was extended");
    assert!(
        store
            .release_claim("suite-claim-b", "two", Some(50_000))
            .await
            .unwrap()
    );
    let b = store.certificate("suite-claim-b").await.unwrap().unwrap();
    assert_eq!(
        (b.claim_owner, b.claim_until, b.next_due),
        (None, None, Some(50_000))
    );

    assert!(
        store
            .release_claim("suite-claim-c", "two", None)
            .await
            .unwrap()
    );
    let c = store.certificate("suite-claim-c").await.unwrap().unwrap();
    assert_eq!(c.next_due, None, "released without a schedule");

    // At start-up a single-process store drops every claim, making them due.
    assert!(store.release_all_claims(7_000).await.unwrap() >= 1);
    let a = store.certificate("suite-claim-a").await.unwrap().unwrap();
    assert_eq!((a.claim_owner, a.next_due), (None, Some(7_000)));
    for name in names {
        assert!(store.delete_certificate(name).await.unwrap());
    }
}

/// A person's renewal claims one certificate whatever its schedule, unless someone else
/// holds it.
pub async fn claims_by_name(store: &dyn Store) {
    let name = "suite-claim-name";
    store
        .create_certificate(&new_certificate(name, &["byname.example.com"]))
        .await
        .unwrap();
    let now = time::now();
    let c = store
        .claim(name, "api", now, now + 60)
        .await
        .unwrap()
        .expect("free");
    assert_eq!(
        (c.claim_owner.as_deref(), c.claim_until),
        (Some("api"), Some(now + 60))
    );
    assert!(
        store
            .claim(name, "scheduler", now, now + 60)
            .await
            .unwrap()
            .is_none(),
        "held"
    );
    assert!(
        store
            .claim(name, "api", now, now + 90)
            .await
            .unwrap()
            .is_some(),
        "the owner again"
    );
    assert!(
        store
            .claim(name, "scheduler", now + 91, now + 200)
            .await
            .unwrap()
            .is_some(),
        "expired claims are taken over"
    );
    expect_not_found(
        store.claim("suite-claim-nobody", "api", now, now + 1).await,
        "claim of an unknown certificate",
    );
    assert!(store.delete_certificate(name).await.unwrap());
}

/// Retry-After and the pending key round-trip; storing a version forgets both and the order.
pub async fn pending_keys_and_retry_after(store: &dyn Store) {
    let name = "suite-pending";
    store
        .create_certificate(&new_certificate(name, &["pending.example.com"]))
        .await
        .unwrap();
    assert_eq!(store.pending_key(name).await.unwrap(), None);
    let key = Secret::new("-----BEGIN PRIVATE KEY-----\npending\n-----END PRIVATE KEY-----\n");
    store.set_pending_key(name, Some(&key)).await.unwrap();
    store
        .set_order_url(name, Some("https://ca.test/order/p"))
        .await
        .unwrap();
    store
        .set_retry_after(name, Some(1_900_000_000))
        .await
        .unwrap();
    assert_eq!(store.pending_key(name).await.unwrap().as_ref(), Some(&key));
    let c = store.certificate(name).await.unwrap().unwrap();
    assert_eq!(c.retry_after, Some(1_900_000_000));
    store.set_pending_key(name, None).await.unwrap();
    assert_eq!(store.pending_key(name).await.unwrap(), None);
    store.set_pending_key(name, Some(&key)).await.unwrap();

    store
        .add_version(name, new_version("9e4d", time::now()))
        .await
        .unwrap();
    assert_eq!(
        store.pending_key(name).await.unwrap(),
        None,
        "forgotten with the new version"
    );
    let c = store.certificate(name).await.unwrap().unwrap();
    assert_eq!((c.order_url, c.retry_after), (None, None));
    expect_not_found(
        store.pending_key("suite-pending-missing").await,
        "pending_key of an unknown certificate",
    );
    expect_not_found(
        store.set_retry_after("suite-pending-missing", None).await,
        "set_retry_after on an unknown certificate",
    );
    assert!(store.delete_certificate(name).await.unwrap());
}

/// One version reads back alone; its ARI window shows on the certificate while current.
pub async fn ari_windows(store: &dyn Store) {
    let name = "suite-ari";
    store
        .create_certificate(&new_certificate(name, &["ari.example.com"]))
        .await
        .unwrap();
    let t = 1_800_000_000;
    store.add_version(name, new_version("a1", t)).await.unwrap();
    let v = store.version(name, 1).await.unwrap().expect("version 1");
    assert_eq!((v.seq, v.serial.as_str(), v.not_before), (1, "a1", t));
    assert_eq!(store.version(name, 2).await.unwrap(), None);
    let c = store.certificate(name).await.unwrap().unwrap();
    assert_eq!((c.not_before, c.not_after), (Some(t), Some(t + 90 * DAY)));
    assert_eq!(c.ari_window, None);

    let window = AriWindow {
        start: t + 59 * DAY,
        end: t + 61 * DAY,
    };
    store
        .set_ari(name, 1, Some(window), Some(t + 3600))
        .await
        .unwrap();
    let c = store.certificate(name).await.unwrap().unwrap();
    assert_eq!(
        (c.ari_window, c.ari_fetch_at),
        (Some(window), Some(t + 3600))
    );
    store.set_ari(name, 1, None, Some(t + 7200)).await.unwrap();
    let c = store.certificate(name).await.unwrap().unwrap();
    assert_eq!((c.ari_window, c.ari_fetch_at), (None, Some(t + 7200)));
    store
        .set_ari(name, 1, Some(window), Some(t + 3600))
        .await
        .unwrap();

    store
        .add_version(name, new_version("a2", t + 60 * DAY))
        .await
        .unwrap();
    let c = store.certificate(name).await.unwrap().unwrap();
    assert_eq!(
        (c.ari_window, c.ari_fetch_at),
        (None, None),
        "a new version starts without"
    );
    expect_not_found(
        store.set_ari(name, 9, None, None).await,
        "set_ari on a missing version",
    );
    assert!(store.delete_certificate(name).await.unwrap());
}

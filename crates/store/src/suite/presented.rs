//! Checks of recorded presentations (cleanup after a restart) and of the live HTTP-01
//! responses a responder loads into memory.

use certfleet_core::time::UnixTime;
use certfleet_core::{
    ChallengeKind, Http01Challenge, PendingChallenge, PresentedChallenge, Secret, Store,
};

use super::new_certificate;

const LATER: UnixTime = 4_100_000_000;

fn presented(solver: &str, token: &str, kind: ChallengeKind, at: UnixTime) -> PresentedChallenge {
    PresentedChallenge {
        solver: solver.to_string(),
        challenge: PendingChallenge {
            kind,
            identifier: "pr.example.com".to_string(),
            token: token.to_string(),
            key_authorization: Secret::new(format!("{token}.thumb")),
            certificate: "suite-presented".to_string(),
            wildcard: kind == ChallengeKind::Dns01,
        },
        presented_at: at,
    }
}

fn summary(list: &[PresentedChallenge]) -> Vec<(String, String, ChallengeKind, bool, String)> {
    list.iter()
        .map(|p| {
            let c = &p.challenge;
            (
                p.solver.clone(),
                c.token.clone(),
                c.kind,
                c.wildcard,
                c.key_authorization.expose().to_string(),
            )
        })
        .collect()
}

/// Recorded presentations come back whole, oldest first, until forgotten per solver; they
/// outlive the certificate they were for.
pub async fn presented_challenges(store: &dyn Store) {
    assert!(store.presented_challenges().await.unwrap().is_empty());
    let a = presented("knot", "suite-pres-token-a-0123", ChallengeKind::Dns01, 20);
    let b = presented(
        "http-01",
        "suite-pres-token-b-0123",
        ChallengeKind::Http01,
        10,
    );
    let c = presented("knot", "suite-pres-token-c-0123", ChallengeKind::Dns01, 30);
    store
        .record_presented(&[a.clone(), b.clone()])
        .await
        .unwrap();
    store
        .record_presented(std::slice::from_ref(&c))
        .await
        .unwrap();
    let list = store.presented_challenges().await.unwrap();
    assert_eq!(
        summary(&list),
        summary(&[b.clone(), a.clone(), c.clone()]),
        "oldest first"
    );
    assert_eq!(list[1].challenge.identifier, "pr.example.com");
    assert_eq!(list[1].challenge.certificate, "suite-presented");
    assert_eq!(list[1].presented_at, 20);

    let mut again = a.clone();
    again.presented_at = 40;
    store.record_presented(&[again]).await.unwrap();
    assert_eq!(
        store.presented_challenges().await.unwrap().len(),
        3,
        "recording again replaces"
    );

    store
        .forget_presented("http-01", std::slice::from_ref(&a.challenge.token))
        .await
        .unwrap();
    assert_eq!(
        store.presented_challenges().await.unwrap().len(),
        3,
        "another solver's token is not forgotten"
    );
    store
        .forget_presented(
            "knot",
            &[a.challenge.token.clone(), c.challenge.token.clone()],
        )
        .await
        .unwrap();
    assert_eq!(
        summary(&store.presented_challenges().await.unwrap()),
        summary(std::slice::from_ref(&b))
    );
    store
        .forget_presented("http-01", std::slice::from_ref(&b.challenge.token))
        .await
        .unwrap();
    assert!(store.presented_challenges().await.unwrap().is_empty());
}

/// `live_challenges` lists exactly the responses live at `now`, with their certificate.
pub async fn live_challenges(store: &dyn Store) {
    let name = "suite-live";
    store
        .create_certificate(&new_certificate(name, &["live.example.com"]))
        .await
        .unwrap();
    let put = |token: &'static str, expires_at: UnixTime| async move {
        store
            .put_challenge(&Http01Challenge {
                token: token.to_string(),
                host: "Live.Example.com".to_string(),
                key_authorization: format!("{token}.thumb"),
                certificate: name.to_string(),
                expires_at,
            })
            .await
            .unwrap();
    };
    put("suite-live-token-a-0123", LATER).await;
    put("suite-live-token-b-0123", LATER + 10).await;
    let live = store.live_challenges(LATER - 1).await.unwrap();
    let tokens: Vec<_> = live.iter().map(|c| c.token.as_str()).collect();
    assert_eq!(
        tokens,
        ["suite-live-token-a-0123", "suite-live-token-b-0123"]
    );
    assert_eq!(live[0].host, "live.example.com", "host is lowercase");
    assert_eq!(live[0].certificate, name);
    assert_eq!(live[0].key_authorization, "suite-live-token-a-0123.thumb");
    assert_eq!(live[0].expires_at, LATER);
    let later: Vec<_> = store
        .live_challenges(LATER)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.token)
        .collect();
    assert_eq!(later, ["suite-live-token-b-0123"], "not live at expires_at");
    store
        .remove_challenges(&[
            "suite-live-token-a-0123".to_string(),
            "suite-live-token-b-0123".to_string(),
        ])
        .await
        .unwrap();
    assert!(store.live_challenges(LATER - 1).await.unwrap().is_empty());
}

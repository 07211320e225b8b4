//! The responder under `wrk` with random well-formed tokens: requests never reach the store
//! (every store call is counted), and only the live (host, token) pair ever gets 200.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use certfleet_core::policy::AriWindow;
use certfleet_core::time::UnixTime;
use certfleet_core::{
    AccountRecord, AgentSeen, Certificate, CertificateStatus, DeploymentRecord, DeploymentReport,
    Event, EventKind, EventListener, EventQuery, ExpiryWatch, Http01Challenge, Labels,
    NewCertificate, NewEvent, NewToken, NewVersion, PresentedChallenge, Secret, Source, Store,
    StoreError, TokenRecord, Version,
};
use certfleet_solvers::live::sync_from_store;
use certfleet_solvers::{LiveTokens, responder};
use certfleet_store::{Sealer, SqliteStore, suite};
use certfleet_testkit::require_program;

/// A real SQLite store that counts every call made to it.
struct Counting {
    inner: SqliteStore,
    calls: AtomicU64,
}

impl Counting {
    fn tick(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl Store for Counting {
    async fn create_certificate(&self, n: &NewCertificate) -> Result<Certificate, StoreError> {
        self.tick();
        self.inner.create_certificate(n).await
    }
    async fn certificate(&self, n: &str) -> Result<Option<Certificate>, StoreError> {
        self.tick();
        self.inner.certificate(n).await
    }
    async fn certificates(&self) -> Result<Vec<Certificate>, StoreError> {
        self.tick();
        self.inner.certificates().await
    }
    async fn delete_certificate(&self, n: &str) -> Result<bool, StoreError> {
        self.tick();
        self.inner.delete_certificate(n).await
    }
    async fn set_status(
        &self,
        n: &str,
        s: CertificateStatus,
        e: Option<&str>,
    ) -> Result<(), StoreError> {
        self.tick();
        self.inner.set_status(n, s, e).await
    }
    async fn set_order_url(&self, n: &str, u: Option<&str>) -> Result<(), StoreError> {
        self.tick();
        self.inner.set_order_url(n, u).await
    }
    async fn add_version(&self, n: &str, v: NewVersion) -> Result<Version, StoreError> {
        self.tick();
        self.inner.add_version(n, v).await
    }
    async fn versions(&self, n: &str) -> Result<Vec<Version>, StoreError> {
        self.tick();
        self.inner.versions(n).await
    }
    async fn version_key(&self, n: &str, s: u32) -> Result<Secret, StoreError> {
        self.tick();
        self.inner.version_key(n, s).await
    }
    async fn account(&self, i: &str, d: &str) -> Result<Option<AccountRecord>, StoreError> {
        self.tick();
        self.inner.account(i, d).await
    }
    async fn save_account(&self, a: &AccountRecord) -> Result<(), StoreError> {
        self.tick();
        self.inner.save_account(a).await
    }
    async fn put_challenge(&self, c: &Http01Challenge) -> Result<(), StoreError> {
        self.tick();
        self.inner.put_challenge(c).await
    }
    async fn challenge_response(
        &self,
        t: &str,
        h: &str,
        now: UnixTime,
    ) -> Result<Option<String>, StoreError> {
        self.tick();
        self.inner.challenge_response(t, h, now).await
    }
    async fn remove_challenges(&self, t: &[String]) -> Result<(), StoreError> {
        self.tick();
        self.inner.remove_challenges(t).await
    }
    async fn purge_challenges(&self, now: UnixTime) -> Result<u64, StoreError> {
        self.tick();
        self.inner.purge_challenges(now).await
    }
    async fn append_event(&self, c: Option<&str>, k: EventKind, m: &str) -> Result<(), StoreError> {
        self.tick();
        self.inner.append_event(c, k, m).await
    }
    async fn events(&self, c: Option<&str>, l: u32) -> Result<Vec<Event>, StoreError> {
        self.tick();
        self.inner.events(c, l).await
    }
    async fn live_challenges(&self, now: UnixTime) -> Result<Vec<Http01Challenge>, StoreError> {
        self.tick();
        self.inner.live_challenges(now).await
    }
    async fn record_presented(&self, p: &[PresentedChallenge]) -> Result<(), StoreError> {
        self.tick();
        self.inner.record_presented(p).await
    }
    async fn presented_challenges(&self) -> Result<Vec<PresentedChallenge>, StoreError> {
        self.tick();
        self.inner.presented_challenges().await
    }
    async fn forget_presented(&self, s: &str, t: &[String]) -> Result<(), StoreError> {
        self.tick();
        self.inner.forget_presented(s, t).await
    }
    async fn update_declaration(
        &self,
        n: &str,
        d: &NewCertificate,
    ) -> Result<Certificate, StoreError> {
        self.tick();
        self.inner.update_declaration(n, d).await
    }
    async fn record_event(&self, e: &NewEvent) -> Result<Event, StoreError> {
        self.tick();
        self.inner.record_event(e).await
    }
    async fn query_events(&self, q: &EventQuery) -> Result<Vec<Event>, StoreError> {
        self.tick();
        self.inner.query_events(q).await
    }
    fn set_event_listener(&self, l: Arc<dyn EventListener>) {
        self.inner.set_event_listener(l)
    }
    async fn expiry_watch(&self) -> Result<Vec<ExpiryWatch>, StoreError> {
        self.tick();
        self.inner.expiry_watch().await
    }
    async fn record_expiry_threshold(&self, n: &str, s: u32, t: &str) -> Result<bool, StoreError> {
        self.tick();
        self.inner.record_expiry_threshold(n, s, t).await
    }
    async fn set_source(&self, n: &str, s: Source, i: &str) -> Result<(), StoreError> {
        self.tick();
        self.inner.set_source(n, s, i).await
    }
    async fn set_labels(&self, n: &str, l: &Labels) -> Result<(), StoreError> {
        self.tick();
        self.inner.set_labels(n, l).await
    }
    async fn create_token(&self, t: &NewToken) -> Result<TokenRecord, StoreError> {
        self.tick();
        self.inner.create_token(t).await
    }
    async fn token_by_hash(&self, h: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.tick();
        self.inner.token_by_hash(h).await
    }
    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.tick();
        self.inner.tokens().await
    }
    async fn revoke_token(&self, n: &str) -> Result<bool, StoreError> {
        self.tick();
        self.inner.revoke_token(n).await
    }
    async fn touch_token(&self, n: &str, s: AgentSeen) -> Result<(), StoreError> {
        self.tick();
        self.inner.touch_token(n, s).await
    }
    async fn record_deployment(
        &self,
        a: &str,
        r: &DeploymentReport,
    ) -> Result<Option<DeploymentRecord>, StoreError> {
        self.tick();
        self.inner.record_deployment(a, r).await
    }
    async fn deployments(&self, c: Option<&str>) -> Result<Vec<DeploymentRecord>, StoreError> {
        self.tick();
        self.inner.deployments(c).await
    }
    async fn confirm_challenge(&self, t: &str, a: &str) -> Result<bool, StoreError> {
        self.tick();
        self.inner.confirm_challenge(t, a).await
    }
    async fn challenge_confirmations(&self, t: &str) -> Result<Vec<String>, StoreError> {
        self.tick();
        self.inner.challenge_confirmations(t).await
    }
    async fn revision(&self) -> Result<u64, StoreError> {
        self.tick();
        self.inner.revision().await
    }
    async fn claim_due(
        &self,
        o: &str,
        now: UnixTime,
        until: UnixTime,
        limit: u32,
    ) -> Result<Vec<Certificate>, StoreError> {
        self.tick();
        self.inner.claim_due(o, now, until, limit).await
    }
    async fn claim(
        &self,
        n: &str,
        o: &str,
        now: UnixTime,
        until: UnixTime,
    ) -> Result<Option<Certificate>, StoreError> {
        self.tick();
        self.inner.claim(n, o, now, until).await
    }
    async fn extend_claim(&self, n: &str, o: &str, until: UnixTime) -> Result<bool, StoreError> {
        self.tick();
        self.inner.extend_claim(n, o, until).await
    }
    async fn release_claim(
        &self,
        n: &str,
        o: &str,
        next: Option<UnixTime>,
    ) -> Result<bool, StoreError> {
        self.tick();
        self.inner.release_claim(n, o, next).await
    }
    async fn release_all_claims(&self, now: UnixTime) -> Result<u64, StoreError> {
        self.tick();
        self.inner.release_all_claims(now).await
    }
    async fn next_due(&self) -> Result<Option<UnixTime>, StoreError> {
        self.tick();
        self.inner.next_due().await
    }
    async fn set_retry_after(&self, n: &str, at: Option<UnixTime>) -> Result<(), StoreError> {
        self.tick();
        self.inner.set_retry_after(n, at).await
    }
    async fn set_pending_key(&self, n: &str, k: Option<&Secret>) -> Result<(), StoreError> {
        self.tick();
        self.inner.set_pending_key(n, k).await
    }
    async fn pending_key(&self, n: &str) -> Result<Option<Secret>, StoreError> {
        self.tick();
        self.inner.pending_key(n).await
    }
    async fn version(&self, n: &str, s: u32) -> Result<Option<Version>, StoreError> {
        self.tick();
        self.inner.version(n, s).await
    }
    async fn set_ari(
        &self,
        n: &str,
        s: u32,
        w: Option<AriWindow>,
        at: Option<UnixTime>,
    ) -> Result<(), StoreError> {
        self.tick();
        self.inner.set_ari(n, s, w, at).await
    }
    async fn mark_revoked(
        &self,
        n: &str,
        s: u32,
        at: UnixTime,
        r: certfleet_core::RevocationReason,
    ) -> Result<bool, StoreError> {
        self.tick();
        self.inner.mark_revoked(n, s, at, r).await
    }
    async fn contacts_override(
        &self,
        i: &str,
        d: &str,
    ) -> Result<Option<certfleet_core::ContactsOverride>, StoreError> {
        self.tick();
        self.inner.contacts_override(i, d).await
    }
    async fn set_contacts_override(
        &self,
        i: &str,
        d: &str,
        c: Option<&certfleet_core::ContactsOverride>,
    ) -> Result<(), StoreError> {
        self.tick();
        self.inner.set_contacts_override(i, d, c).await
    }
}

const LIVE: &str = "Live_Token_For_Wrk_0123456789abcdef";
const HOST: &str = "www.example.test";
const RUN_SECS: u64 = 2;
const CONNECTIONS: u64 = 8;
/// The responder reloads from the store this often.
const SYNC: Duration = Duration::from_millis(250);

fn script(live_ka: &str) -> String {
    format!(
        r#"local charset = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
local threads = {{}}
counter, ok, bad, live_sent = 0, 0, 0, 0
function setup(thread) table.insert(threads, thread) end
function init(args) math.randomseed(os.time() + math.random(1, 100000)) end
local function token()
  local t = {{}}
  for i = 1, 43 do local r = math.random(1, #charset); t[i] = charset:sub(r, r) end
  return table.concat(t)
end
request = function()
  counter = counter + 1
  if counter % 100 == 0 then
    live_sent = live_sent + 1
    return wrk.format("GET", "/.well-known/acme-challenge/{LIVE}", {{Host = "{HOST}"}})
  elseif counter % 100 == 50 then
    return wrk.format("GET", "/.well-known/acme-challenge/{LIVE}", {{Host = "other.example.test"}})
  end
  return wrk.format("GET", "/.well-known/acme-challenge/" .. token(), {{Host = "{HOST}"}})
end
response = function(status, headers, body)
  if status == 200 then
    if body == "{live_ka}" then ok = ok + 1 else bad = bad + 1 end
  elseif status ~= 404 then bad = bad + 1 end
end
done = function(summary, latency, requests)
  local o, b, l = 0, 0, 0
  for _, t in ipairs(threads) do o = o + t:get("ok"); b = b + t:get("bad"); l = l + t:get("live_sent") end
  io.write(string.format("RESULT ok=%d bad=%d live_sent=%d requests=%d\n", o, b, l, summary.requests))
end
"#
    )
}

fn field(line: &str, name: &str) -> u64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing in {line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_tokens_under_wrk_never_reach_the_store() {
    let wrk = require_program("wrk", "apt-get install -y wrk (or run scripts/testbed)");
    let store = Arc::new(Counting {
        inner: SqliteStore::open_in_memory(Sealer::from_key_bytes([3; 32])).unwrap(),
        calls: AtomicU64::new(0),
    });
    store
        .create_certificate(&suite::new_certificate("www", &[HOST]))
        .await
        .unwrap();
    let live_ka = format!("{LIVE}.thumbprint");
    store
        .put_challenge(&Http01Challenge {
            token: LIVE.into(),
            host: HOST.into(),
            key_authorization: live_ka.clone(),
            certificate: "www".into(),
            expires_at: certfleet_core::time::now() + 600,
        })
        .await
        .unwrap();
    let live = LiveTokens::new();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let dyn_store: Arc<dyn Store> = store.clone();
    let sync = tokio::spawn(sync_from_store(live.clone(), dyn_store, SYNC, stopped));
    while live.is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, responder::router(live))
            .await
            .unwrap()
    });

    let dir = tempfile::tempdir().unwrap();
    let lua = dir.path().join("random.lua");
    std::fs::write(&lua, script(&live_ka)).unwrap();
    let before = store.calls.load(Ordering::SeqCst);
    let out = tokio::process::Command::new(wrk)
        .args([
            "-t1",
            &format!("-c{CONNECTIONS}"),
            &format!("-d{RUN_SECS}s"),
            "--timeout",
            "5s",
            "-s",
        ])
        .arg(&lua)
        .arg(format!("http://{addr}/"))
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    let calls = store.calls.load(Ordering::SeqCst) - before;
    let _ = stop.send(true);
    sync.await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .find(|l| l.starts_with("RESULT"))
        .unwrap_or_else(|| panic!("{text}"));
    let (ok, bad, live_sent, requests) = (
        field(line, "ok"),
        field(line, "bad"),
        field(line, "live_sent"),
        field(line, "requests"),
    );
    assert!(
        requests > 2_000,
        "wrk made too few requests to mean anything: {text}"
    );
    assert_eq!(
        bad, 0,
        "a 200 with another body, or a status other than 200/404: {text}"
    );
    assert!(
        ok > 0 && ok <= live_sent && ok + CONNECTIONS >= live_sent,
        "only the live pair gets 200: {line}"
    );
    // The only store calls are the periodic reloads: a handful, not one per request.
    let reloads = (RUN_SECS * 1000) / SYNC.as_millis() as u64 + 2;
    assert!(
        calls <= reloads,
        "{calls} store calls for {requests} requests (at most {reloads} reloads expected)"
    );
}

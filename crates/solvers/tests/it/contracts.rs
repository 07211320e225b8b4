//! acme-dns, Cloudflare and Route 53 cannot be reached from the test machines. These tests
//! run each provider against a local HTTP server that checks every request exactly as the
//! provider documents it (method, path, query, auth headers or SigV4 signature, body) and
//! answers as documented. They prove the contract only, not the live services.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use certfleet_core::Secret;
use certfleet_solvers::api_client::ApiClient;
use certfleet_solvers::dns::acme_dns::{self, AcmeDns, AcmeDnsSettings};
use certfleet_solvers::dns::cloudflare::{Cloudflare, CloudflareSettings};
use certfleet_solvers::dns::route53::{Route53, Route53Settings};
use certfleet_solvers::dns::sigv4::{self, Credentials, SignInput};
use certfleet_solvers::dns::{DnsProvider, TxtRecord, txt_value};
use serde_json::{Value, json};

type Shared<T> = Arc<Mutex<T>>;

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

fn reply(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r
}

fn header(req: &Request, name: &str) -> String {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

fn client() -> ApiClient {
    ApiClient::new(Duration::from_secs(5)).unwrap()
}

fn record(domain: &str, value: &str) -> TxtRecord {
    TxtRecord {
        domain: domain.into(),
        name: format!("_acme-challenge.{domain}"),
        value: value.into(),
    }
}

// ---------------------------------------------------------------- acme-dns

#[derive(Default)]
struct AcmeDnsState {
    updates: Vec<(String, String)>,
    problems: Vec<String>,
}

const ACME_DNS_USER: &str = "c36f50e8-4632-44f0-83fe-e070fef28a10";
const ACME_DNS_KEY: &str = "htB9mR9DYgcu9bX_afHF62erXaH2TS7bg9KW3F7Z";
const ACME_DNS_SUB: &str = "8e5700ea-a4bf-41c7-8a77-e990661dcc6a";

async fn acme_dns_api(State(state): State<Shared<AcmeDnsState>>, req: Request) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let (ctype, user, key) = (
        header(&req, "content-type"),
        header(&req, "x-api-user"),
        header(&req, "x-api-key"),
    );
    let body: Value = serde_json::from_slice(&to_bytes(req.into_body(), 1 << 16).await.unwrap())
        .unwrap_or(Value::Null);
    let mut s = state.lock().unwrap();
    match (method.as_str(), path.as_str()) {
        ("POST", "/register") => {
            if !body.is_object() || body.as_object().unwrap().keys().any(|k| k != "allowfrom") {
                s.problems.push(format!("register body {body}"));
            }
            reply(
                StatusCode::CREATED,
                json!({"username": ACME_DNS_USER, "password": ACME_DNS_KEY,
                       "fulldomain": format!("{ACME_DNS_SUB}.auth.acme-dns.test"),
                       "subdomain": ACME_DNS_SUB, "allowfrom": body["allowfrom"].clone()})
                .to_string(),
            )
        }
        ("POST", "/update") => {
            if user != ACME_DNS_USER || key != ACME_DNS_KEY {
                return reply(StatusCode::UNAUTHORIZED, r#"{"error": "forbidden"}"#);
            }
            if ctype != "application/json" {
                s.problems.push(format!("content-type {ctype}"));
            }
            let keys: Vec<&String> = body
                .as_object()
                .map(|o| o.keys().collect())
                .unwrap_or_default();
            let txt = body["txt"].as_str().unwrap_or_default().to_string();
            if keys != ["subdomain", "txt"] || body["subdomain"] != ACME_DNS_SUB || txt.len() != 43
            {
                s.problems.push(format!("update body {body}"));
                return reply(StatusCode::BAD_REQUEST, r#"{"error": "bad_txt"}"#);
            }
            s.updates
                .push((body["subdomain"].as_str().unwrap().to_string(), txt.clone()));
            reply(StatusCode::OK, json!({ "txt": txt }).to_string())
        }
        _ => {
            s.problems.push(format!("unexpected {method} {path}"));
            reply(StatusCode::NOT_FOUND, "")
        }
    }
}

#[tokio::test]
async fn acme_dns_register_and_update_follow_the_documented_api() {
    let state: Shared<AcmeDnsState> = Default::default();
    let addr = serve(
        Router::new()
            .fallback(acme_dns_api)
            .with_state(state.clone()),
    )
    .await;
    let api = format!("http://{addr}");
    let account = acme_dns::register(&client(), &api, &[]).await.unwrap();
    assert_eq!(
        account.fulldomain,
        format!("{ACME_DNS_SUB}.auth.acme-dns.test")
    );
    assert_eq!(account.server_url.as_deref(), Some(api.as_str()));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acme-dns.json");
    let accounts: BTreeMap<_, _> = [("example.test".to_string(), account.clone())]
        .into_iter()
        .collect();
    std::fs::write(&file, serde_json::to_string(&accounts).unwrap()).unwrap();
    let settings = AcmeDnsSettings {
        api_url: api.clone(),
        credentials_file: file.clone(),
    };
    let provider = AcmeDns::new("solvers[0].", &settings, client()).unwrap();
    assert!(
        !provider.follows_cname(),
        "acme-dns writes its own subdomain"
    );
    let (apex, wildcard) = (txt_value("apex.thumb"), txt_value("wildcard.thumb"));
    provider
        .present(&record("example.test", &apex))
        .await
        .unwrap();
    provider
        .present(&record("example.test", &wildcard))
        .await
        .unwrap();
    provider
        .cleanup(&record("example.test", &apex))
        .await
        .unwrap();
    {
        let s = state.lock().unwrap();
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        assert_eq!(
            s.updates,
            [
                (ACME_DNS_SUB.to_string(), apex),
                (ACME_DNS_SUB.to_string(), wildcard)
            ]
        );
    }
    let err = provider
        .present(&record("other.test", "x"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no account for other.test"), "{err}");

    // A refused key: the status and what it usually means.
    let mut bad = accounts.clone();
    bad.get_mut("example.test").unwrap().password = "wrong".into();
    std::fs::write(&file, serde_json::to_string(&bad).unwrap()).unwrap();
    let provider = AcmeDns::new("", &settings, client()).unwrap();
    let err = provider
        .present(&record("example.test", &txt_value("t")))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("HTTP 401") && err.contains("allowfrom"),
        "{err}"
    );

    // Plain http to anything but loopback is refused: the key would cross the network in clear.
    let err = AcmeDns::new(
        "solvers[3].",
        &AcmeDnsSettings {
            api_url: "http://auth.example.org".into(),
            credentials_file: file,
        },
        client(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.starts_with("solvers[3].api_url"), "{err}");
}

// ---------------------------------------------------------------- Cloudflare

#[derive(Default)]
struct CloudflareState {
    records: BTreeMap<String, (String, String)>,
    next: u32,
    problems: Vec<String>,
    calls: Vec<String>,
}

const CF_TOKEN: &str = "cf-token-0123456789";
const CF_ZONE: &str = "023e105f4ecef8ad9ca31a8372d0c353";

fn cf_ok(result: Value) -> Response {
    reply(
        StatusCode::OK,
        json!({"success": true, "errors": [], "messages": [], "result": result}).to_string(),
    )
}

async fn cloudflare_api(State(state): State<Shared<CloudflareState>>, req: Request) -> Response {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query: BTreeMap<String, String> = req
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let (auth, ctype) = (header(&req, "authorization"), header(&req, "content-type"));
    let bytes = to_bytes(req.into_body(), 1 << 16).await.unwrap();
    let mut s = state.lock().unwrap();
    s.calls.push(format!("{method} {path}"));
    if auth != format!("Bearer {CF_TOKEN}") {
        return reply(
            StatusCode::FORBIDDEN,
            json!({"success": false, "errors": [{"code": 10000, "message": "Authentication error"}], "messages": [], "result": null}).to_string(),
        );
    }
    let records_path = format!("/client/v4/zones/{CF_ZONE}/dns_records");
    match (method.as_str(), path.as_str()) {
        ("GET", "/client/v4/zones") => {
            let found = query.get("name").map(String::as_str) == Some("example.test");
            cf_ok(if found {
                json!([{"id": CF_ZONE, "name": "example.test"}])
            } else {
                json!([])
            })
        }
        ("POST", p) if p == records_path => {
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let keys: Vec<&String> = body
                .as_object()
                .map(|o| o.keys().collect())
                .unwrap_or_default();
            let content = body["content"].as_str().unwrap_or_default().to_string();
            let quoted = content.len() == 45 && content.starts_with('"') && content.ends_with('"');
            if ctype != "application/json"
                || keys != ["content", "name", "ttl", "type"]
                || body["type"] != "TXT"
                || !quoted
                || body["ttl"].as_u64().unwrap_or(0) < 120
            {
                s.problems.push(format!("create body {body} ({ctype})"));
                return reply(StatusCode::BAD_REQUEST, "");
            }
            s.next += 1;
            let id = format!("rec{}", s.next);
            s.records.insert(
                id.clone(),
                (body["name"].as_str().unwrap().to_string(), content.clone()),
            );
            cf_ok(json!({"id": id, "type": "TXT", "name": body["name"], "content": content}))
        }
        ("GET", p) if p == records_path => {
            if query.get("type").map(String::as_str) != Some("TXT") {
                s.problems.push(format!("list query {query:?}"));
            }
            let name = query.get("name").cloned().unwrap_or_default();
            let list: Vec<Value> = s
                .records
                .iter()
                .filter(|(_, (n, _))| *n == name)
                .map(|(id, (n, c))| json!({"id": id, "type": "TXT", "name": n, "content": c}))
                .collect();
            cf_ok(json!(list))
        }
        ("DELETE", p) if p.starts_with(&format!("{records_path}/")) => {
            let id = p.rsplit('/').next().unwrap().to_string();
            match s.records.remove(&id) {
                Some(_) => cf_ok(json!({"id": id})),
                None => reply(StatusCode::NOT_FOUND, json!({"success": false, "errors": [{"code": 81044, "message": "Record does not exist."}]}).to_string()),
            }
        }
        _ => {
            s.problems.push(format!("unexpected {method} {path}"));
            reply(StatusCode::NOT_FOUND, "")
        }
    }
}

#[tokio::test]
async fn cloudflare_follows_the_documented_api() {
    let state: Shared<CloudflareState> = Default::default();
    let addr = serve(
        Router::new()
            .fallback(cloudflare_api)
            .with_state(state.clone()),
    )
    .await;
    let settings = |token: &str, zone: Option<&str>| CloudflareSettings {
        api_url: format!("http://{addr}/client/v4"),
        api_token: Secret::new(token),
        zone_id: zone.map(str::to_string),
    };
    // Zone looked up by name: www.example.test is tried first, then example.test.
    let provider = Cloudflare::new("", settings(CF_TOKEN, None), client()).unwrap();
    let (apex, wildcard) = (txt_value("a.thumb"), txt_value("w.thumb"));
    provider
        .present(&record("www.example.test", &apex))
        .await
        .unwrap();
    provider
        .present(&record("www.example.test", &wildcard))
        .await
        .unwrap();
    provider
        .cleanup(&record("www.example.test", &apex))
        .await
        .unwrap();
    {
        let s = state.lock().unwrap();
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        let left: Vec<_> = s.records.values().cloned().collect();
        assert_eq!(
            left,
            [(
                "_acme-challenge.www.example.test".to_string(),
                format!("\"{wildcard}\"")
            )]
        );
    }
    // With zone_id: no zone lookup at all.
    let scoped = Cloudflare::new("", settings(CF_TOKEN, Some(CF_ZONE)), client()).unwrap();
    state.lock().unwrap().calls.clear();
    scoped
        .cleanup(&record("www.example.test", &wildcard))
        .await
        .unwrap();
    {
        let s = state.lock().unwrap();
        assert!(s.records.is_empty());
        assert!(
            s.calls.iter().all(|c| !c.ends_with("/zones")),
            "{:?}",
            s.calls
        );
    }
    let refused = Cloudflare::new("", settings("wrong-token", Some(CF_ZONE)), client()).unwrap();
    let err = refused
        .present(&record("www.example.test", &apex))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("HTTP 403") && err.contains("Authentication error (code 10000)"),
        "{err}"
    );
    let err = Cloudflare::new("solvers[4].", settings("", None), client())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.starts_with("solvers[4].api_token") && err.contains("CLOUDFLARE_API_TOKEN"),
        "{err}"
    );
}

// ---------------------------------------------------------------- Route 53

const AWS_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const ZONE_ID: &str = "Z1D633PJN98FT9";

#[derive(Default)]
struct Route53State {
    /// name → (ttl, values)
    sets: BTreeMap<String, (u32, Vec<String>)>,
    polls: u32,
    problems: Vec<String>,
    actions: Vec<String>,
}

fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(&open)
        .skip(1)
        .filter_map(|p| p.split(&close).next())
        .map(|v| v.replace("&quot;", "\""))
        .collect()
}

/// Check the SigV4 signature of a received request by signing what actually arrived.
fn signature_problem(req: &Request, body: &[u8]) -> Option<String> {
    let auth = header(req, "authorization");
    let date = header(req, "x-amz-date");
    let signed = auth
        .split("SignedHeaders=")
        .nth(1)?
        .split(',')
        .next()?
        .to_string();
    let scope_ok = auth.starts_with(&format!(
        "AWS4-HMAC-SHA256 Credential={AWS_KEY_ID}/{}/us-east-1/route53/aws4_request, ",
        date.get(..8)?
    ));
    if !scope_ok
        || !signed.split(';').any(|h| h == "host")
        || !signed.split(';').any(|h| h == "x-amz-date")
    {
        return Some(format!("bad Authorization {auth}"));
    }
    let headers: Vec<(String, String)> = signed
        .split(';')
        .map(|h| (h.to_string(), header(req, h)))
        .collect();
    let creds = Credentials {
        access_key_id: AWS_KEY_ID.into(),
        secret_access_key: Secret::new(AWS_SECRET),
        session_token: None,
    };
    let expected = sigv4::authorization(
        &creds,
        &SignInput {
            method: req.method().as_str(),
            path: req.uri().path(),
            query: req.uri().query().unwrap_or_default(),
            headers: &headers,
            body,
            amz_date: &date,
            region: "us-east-1",
            service: "route53",
        },
    );
    (expected != auth).then(|| "SignatureDoesNotMatch".to_string())
}

async fn route53_api(State(state): State<Shared<Route53State>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, 1 << 16).await.unwrap();
    let req = Request::from_parts(parts, Body::empty());
    let mut s = state.lock().unwrap();
    if let Some(problem) = signature_problem(&req, &bytes) {
        return reply(
            StatusCode::FORBIDDEN,
            format!(
                "<ErrorResponse><Error><Type>Sender</Type><Code>SignatureDoesNotMatch</Code><Message>{problem}</Message></Error></ErrorResponse>"
            ),
        );
    }
    let path = req.uri().path().to_string();
    let rrset = format!("/2013-04-01/hostedzone/{ZONE_ID}/rrset");
    match (req.method().as_str(), path.as_str()) {
        ("GET", p) if p == rrset => {
            let q: BTreeMap<String, String> = req
                .uri()
                .query()
                .unwrap_or_default()
                .split('&')
                .filter_map(|p| p.split_once('='))
                .map(|(a, b)| (a.into(), b.into()))
                .collect();
            if q.get("type").map(String::as_str) != Some("TXT")
                || q.get("maxitems").map(String::as_str) != Some("1")
            {
                s.problems.push(format!("list query {q:?}"));
            }
            let name = q.get("name").cloned().unwrap_or_default();
            // Like Route 53: the first set at or after `name`, which may be another name.
            let found = s
                .sets
                .range(name.clone()..)
                .next()
                .map(|(n, v)| (n.clone(), v.clone()));
            let found = found.unwrap_or_else(|| {
                (
                    "zzz.example.test.".into(),
                    (300, vec!["\"unrelated\"".into()]),
                )
            });
            let records: String = found
                .1
                .1
                .iter()
                .map(|v| {
                    format!(
                        "<ResourceRecord><Value>{}</Value></ResourceRecord>",
                        v.replace('"', "&quot;")
                    )
                })
                .collect();
            reply(
                StatusCode::OK,
                format!(
                    "<?xml version=\"1.0\"?><ListResourceRecordSetsResponse><ResourceRecordSets><ResourceRecordSet><Name>{}</Name><Type>TXT</Type><TTL>{}</TTL><ResourceRecords>{records}</ResourceRecords></ResourceRecordSet></ResourceRecordSets><IsTruncated>false</IsTruncated><MaxItems>1</MaxItems></ListResourceRecordSetsResponse>",
                    found.0, found.1.0
                ),
            )
        }
        ("POST", p) if p == rrset => {
            let xml = String::from_utf8_lossy(&bytes).to_string();
            if header(&req, "content-type") != "text/xml" || !xml.contains("<ChangeResourceRecordSetsRequest xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\">") {
                s.problems.push(format!("change body {xml}"));
            }
            let (action, name) = (
                xml_values(&xml, "Action").remove(0),
                xml_values(&xml, "Name").remove(0),
            );
            let ttl: u32 = xml_values(&xml, "TTL")[0].parse().unwrap();
            let values = xml_values(&xml, "Value");
            s.actions.push(format!("{action} {name} {}", values.len()));
            match action.as_str() {
                "UPSERT" => {
                    s.sets.insert(name, (ttl, values));
                }
                "DELETE" => {
                    if s.sets.get(&name) != Some(&(ttl, values.clone())) {
                        return reply(
                            StatusCode::BAD_REQUEST,
                            "<ErrorResponse><Error><Code>InvalidChangeBatch</Code><Message>values do not match</Message></Error></ErrorResponse>",
                        );
                    }
                    s.sets.remove(&name);
                }
                other => s.problems.push(format!("action {other}")),
            }
            reply(
                StatusCode::OK,
                "<?xml version=\"1.0\"?><ChangeResourceRecordSetsResponse><ChangeInfo><Id>/change/C2682N5HXP0BZ4</Id><Status>PENDING</Status><SubmittedAt>2026-01-01T00:00:00Z</SubmittedAt></ChangeInfo></ChangeResourceRecordSetsResponse>",
            )
        }
        ("GET", "/2013-04-01/change/C2682N5HXP0BZ4") => {
            s.polls += 1;
            let status = if s.polls % 2 == 1 {
                "PENDING"
            } else {
                "INSYNC"
            };
            reply(
                StatusCode::OK,
                format!(
                    "<GetChangeResponse><ChangeInfo><Id>/change/C2682N5HXP0BZ4</Id><Status>{status}</Status></ChangeInfo></GetChangeResponse>"
                ),
            )
        }
        (m, p) => {
            s.problems.push(format!("unexpected {m} {p}"));
            reply(StatusCode::NOT_FOUND, "")
        }
    }
}

#[tokio::test]
async fn route53_signs_every_request_and_edits_the_record_set() {
    let state: Shared<Route53State> = Default::default();
    let addr = serve(
        Router::new()
            .fallback(route53_api)
            .with_state(state.clone()),
    )
    .await;
    let provider = |secret: &str| {
        Route53::new(
            "solvers[5].",
            Route53Settings {
                api_url: format!("http://{addr}"),
                hosted_zone_id: format!("/hostedzone/{ZONE_ID}"),
                credentials: Credentials {
                    access_key_id: AWS_KEY_ID.into(),
                    secret_access_key: Secret::new(secret),
                    session_token: None,
                },
                ttl: 60,
                change_poll: Duration::from_millis(10),
            },
            client(),
        )
        .unwrap()
    };
    let r53 = provider(AWS_SECRET);
    let (apex, wildcard) = (txt_value("a.thumb"), txt_value("w.thumb"));
    r53.present(&record("example.test", &apex)).await.unwrap();
    r53.present(&record("example.test", &wildcard))
        .await
        .unwrap();
    let name = "_acme-challenge.example.test.".to_string();
    assert_eq!(
        state.lock().unwrap().sets.get(&name),
        Some(&(60, vec![format!("\"{apex}\""), format!("\"{wildcard}\"")])),
        "both values in one set"
    );
    r53.cleanup(&record("example.test", &apex)).await.unwrap();
    r53.cleanup(&record("example.test", &wildcard))
        .await
        .unwrap();
    r53.cleanup(&record("example.test", &wildcard))
        .await
        .unwrap(); // already gone: nothing sent
    {
        let s = state.lock().unwrap();
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        assert!(s.sets.is_empty());
        assert_eq!(
            s.actions,
            [
                format!("UPSERT {name} 1"),
                format!("UPSERT {name} 2"),
                format!("UPSERT {name} 1"),
                format!("DELETE {name} 1")
            ]
        );
        assert!(
            s.polls >= 8,
            "every change waited for INSYNC ({} polls)",
            s.polls
        );
    }
    let err = provider("not-the-secret")
        .present(&record("example.test", &apex))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("HTTP 403 SignatureDoesNotMatch"), "{err}");
}

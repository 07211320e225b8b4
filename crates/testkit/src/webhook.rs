//! [`WebhookReceiver`]: a local HTTP receiver for webhook notifications, on 127.0.0.1 and a
//! port the kernel picks, that records every request and answers as told — 204, any failure
//! status, or never ([`Answer::Hang`]), to show that a bad receiver delays nothing else.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// With this status and an empty body.
    Status(u16),
    /// Never: the request is read and recorded, the connection held open.
    Hang,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Path and query.
    pub path: String,
    /// Headers, names lowercase.
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub body: String,
}

impl Received {
    /// The body parsed as JSON (panics if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    answered: AtomicUsize,
}

/// A running receiver; stops when dropped.
pub struct WebhookReceiver {
    port: u16,
    shared: Arc<Shared>,
    tasks: Mutex<JoinSet<()>>,
}

impl std::fmt::Debug for WebhookReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookReceiver")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl WebhookReceiver {
    /// Listen on 127.0.0.1 and answer every request with `answer`.
    pub async fn start(answer: Answer) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind the webhook receiver");
        let port = listener.local_addr().expect("local address").port();
        let shared = Arc::new(Shared::default());
        let mut tasks = JoinSet::new();
        let accept_shared = shared.clone();
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let shared = accept_shared.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req| handle(req, shared.clone(), answer));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            port,
            shared,
            tasks: Mutex::new(tasks),
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().expect("receiver lock").clone()
    }

    /// How many requests were answered (always 0 with [`Answer::Hang`]).
    pub fn answered(&self) -> usize {
        self.shared.answered.load(Ordering::SeqCst)
    }

    /// Wait (bounded: 30 s in 50 ms steps) until `pred` holds for the requests so far; panics
    /// with what arrived otherwise.
    pub async fn wait_until(
        &self,
        what: &str,
        pred: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        for _ in 0..600 {
            let got = self.received();
            if pred(&got) {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let bodies: Vec<String> = self.received().into_iter().map(|r| r.body).collect();
        panic!("webhook receiver: {what} never happened; received {bodies:#?}");
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.abort_all();
        }
    }
}

async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    answer: Answer,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().to_string();
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    shared
        .received
        .lock()
        .expect("receiver lock")
        .push(Received {
            path,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    match answer {
        Answer::Hang => std::future::pending().await,
        Answer::Status(code) => {
            shared.answered.fetch_add(1, Ordering::SeqCst);
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = status;
            Ok(response)
        }
    }
}

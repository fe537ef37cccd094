//! A proxy in front of a real service that forwards every request and, when told, loses the
//! answer to a request (the service still carries it out; the client never hears), the
//! failure every retry path of the wallet is written for. It keeps the bodies of the requests
//! it forwarded, so a test can check that a retry re-sent the same thing.

use anyhow::Result;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::sync::{Arc, Mutex};

use crate::net::{serve_router, Server};

/// One forwarded request.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
}

#[derive(Default)]
struct Rules {
    /// (method, path, how many answers more to lose; `None`: all)
    lose: Vec<(String, String, Option<u32>)>,
    seen: Vec<Seen>,
}

struct Shared {
    target: String,
    http: reqwest::Client,
    rules: Mutex<Rules>,
}

/// A running proxy; [`Proxy::url`] is where clients go instead of the service.
pub struct Proxy {
    shared: Arc<Shared>,
    server: Server,
}

impl Proxy {
    /// A proxy in front of the service at `target` (`http://host:port`).
    pub async fn start(target: &str) -> Result<Proxy> {
        let shared = Arc::new(Shared {
            target: target.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            rules: Mutex::new(Rules::default()),
        });
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(shared.clone());
        let server = serve_router(app).await?;
        Ok(Proxy { shared, server })
    }

    pub fn url(&self) -> &str {
        &self.server.url
    }

    fn rules(&self) -> std::sync::MutexGuard<'_, Rules> {
        self.shared
            .rules
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Loses the answer to the next `method path` request.
    pub fn lose_next(&self, method: &str, path: &str) {
        self.rules()
            .lose
            .push((method.to_owned(), path.to_owned(), Some(1)));
    }

    /// Loses the answer to every `method path` request.
    pub fn lose_all(&self, method: &str, path: &str) {
        self.rules()
            .lose
            .push((method.to_owned(), path.to_owned(), None));
    }

    /// The bodies of the `method path` requests forwarded so far, in order.
    pub fn bodies(&self, method: &str, path: &str) -> Vec<Vec<u8>> {
        self.rules()
            .seen
            .iter()
            .filter(|s| s.method == method && s.path == path)
            .map(|s| s.body.clone())
            .collect()
    }

    /// Every request forwarded so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.rules().seen.clone()
    }
}

/// Takes one "lose" for this request, if a rule says so.
fn lose(rules: &mut Rules, method: &str, path: &str) -> bool {
    let Some(i) = rules
        .lose
        .iter()
        .position(|(m, p, _)| m == method && p == path)
    else {
        return false;
    };
    match &mut rules.lose[i].2 {
        None => {}
        Some(n) => {
            *n -= 1;
            if *n == 0 {
                rules.lose.remove(i);
            }
        }
    }
    true
}

async fn forward(State(s): State<Arc<Shared>>, method: Method, uri: Uri, body: Bytes) -> Response {
    let path = uri.path().to_owned();
    let url = format!(
        "{}{}",
        s.target,
        uri.path_and_query().map_or("/", |p| p.as_str())
    );
    {
        let mut rules = s
            .rules
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        rules.seen.push(Seen {
            method: method.to_string(),
            path: path.clone(),
            body: body.to_vec(),
        });
    }
    let Ok(m) = reqwest::Method::from_bytes(method.as_str().as_bytes()) else {
        return (StatusCode::METHOD_NOT_ALLOWED, "method").into_response();
    };
    let sent = s
        .http
        .request(m, &url)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await;
    let resp = match sent {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_owned();
    let bytes = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let lost = {
        let mut rules = s
            .rules
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        lose(&mut rules, method.as_str(), &path)
    };
    if lost {
        return (StatusCode::BAD_GATEWAY, "connection lost").into_response();
    }
    (status, [("content-type", content_type)], bytes.to_vec()).into_response()
}

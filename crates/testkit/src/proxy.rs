//! A proxy in front of a real service: it forwards every request and, when told, loses the
//! answer (the service still carries the request out; the client never hears), refuses a
//! request without forwarding it (a service that is down or says no), or replaces the answer
//! (a service that lies: a test signs the lie with the service's own key, see
//! [`crate::net::Network::receipt_key`]). It keeps every exchange, so a test can check what a
//! client sent (a retry re-sent the same thing) and what it was told (how many leaves it
//! downloaded).

use anyhow::Result;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use smpx_core::api::{ErrorBody, ErrorDetail};
use smpx_core::ErrorCode;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::net::{serve_router, Server};

/// One exchange: the request forwarded and the answer the client was given.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// The query string, without `?` (empty if none).
    pub query: String,
    pub body: Vec<u8>,
    /// The status and body the client got (after any rule; a lost answer is a 502).
    pub status: u16,
    pub answer: Vec<u8>,
}

impl Seen {
    /// The value of query parameter `name`, if given.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }
}

/// A new answer: status and body.
pub type Answer = (u16, Vec<u8>);

/// Computes the answer the client gets from the exchange as the service answered it.
pub type Rewrite = Box<dyn FnMut(&Seen) -> Answer + Send>;

enum Action {
    /// Forward, then answer 502 as if the connection broke.
    Lose,
    /// Answer this without forwarding.
    Refuse(Answer),
    /// Forward, then answer what the function makes of the real answer.
    Rewrite(Rewrite),
}

impl Action {
    fn refusal(&self) -> Option<Answer> {
        match self {
            Action::Refuse(a) => Some(a.clone()),
            _ => None,
        }
    }
}

struct Rule {
    method: String,
    path: String,
    /// How many more requests it applies to; `None`: all.
    remaining: Option<u32>,
    /// Shared with the requests using it, so a rule can be dropped while one is away.
    action: Arc<Mutex<Action>>,
}

#[derive(Default)]
struct Rules {
    rules: Vec<Rule>,
    seen: Vec<Seen>,
}

impl Rules {
    /// The action of the first rule for this request, counted as used (and dropped when
    /// used up).
    fn take(&mut self, method: &str, path: &str) -> Option<Arc<Mutex<Action>>> {
        let i = self
            .rules
            .iter()
            .position(|r| r.method == method && r.path == path)?;
        let action = self.rules[i].action.clone();
        if let Some(n) = &mut self.rules[i].remaining {
            *n -= 1;
            if *n == 0 {
                self.rules.remove(i);
            }
        }
        Some(action)
    }
}

struct Shared {
    target: String,
    http: reqwest::Client,
    rules: Mutex<Rules>,
}

impl Shared {
    fn rules(&self) -> MutexGuard<'_, Rules> {
        self.rules.lock().unwrap_or_else(PoisonError::into_inner)
    }
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

    fn add(&self, method: &str, path: &str, remaining: Option<u32>, action: Action) {
        self.shared.rules().rules.push(Rule {
            method: method.to_owned(),
            path: path.to_owned(),
            remaining,
            action: Arc::new(Mutex::new(action)),
        });
    }

    /// Loses the answer to the next `method path` request.
    pub fn lose_next(&self, method: &str, path: &str) {
        self.add(method, path, Some(1), Action::Lose);
    }

    /// Loses the answer to every `method path` request.
    pub fn lose_all(&self, method: &str, path: &str) {
        self.add(method, path, None, Action::Lose);
    }

    /// Answers the next `method path` request with the error `code` (at its HTTP status)
    /// without forwarding it: the service never sees it.
    pub fn refuse_next(&self, method: &str, path: &str, code: ErrorCode) {
        self.add(method, path, Some(1), Action::Refuse(error(code)));
    }

    /// Answers every `method path` request with the error `code`, until [`Proxy::clear`].
    pub fn refuse_all(&self, method: &str, path: &str, code: ErrorCode) {
        self.add(method, path, None, Action::Refuse(error(code)));
    }

    /// Replaces the answer to the next `method path` request by `f(exchange)`.
    pub fn rewrite_next(
        &self,
        method: &str,
        path: &str,
        f: impl FnMut(&Seen) -> Answer + Send + 'static,
    ) {
        self.add(method, path, Some(1), Action::Rewrite(Box::new(f)));
    }

    /// Replaces the answer to every `method path` request, until [`Proxy::clear`].
    pub fn rewrite_all(
        &self,
        method: &str,
        path: &str,
        f: impl FnMut(&Seen) -> Answer + Send + 'static,
    ) {
        self.add(method, path, None, Action::Rewrite(Box::new(f)));
    }

    /// Drops every rule: from now on the proxy forwards faithfully.
    pub fn clear(&self) {
        self.shared.rules().rules.clear();
    }

    /// The bodies of the `method path` requests forwarded so far, in order.
    pub fn bodies(&self, method: &str, path: &str) -> Vec<Vec<u8>> {
        self.exchanges(method, path)
            .into_iter()
            .map(|s| s.body)
            .collect()
    }

    /// The `method path` exchanges so far, in order.
    pub fn exchanges(&self, method: &str, path: &str) -> Vec<Seen> {
        self.shared
            .rules()
            .seen
            .iter()
            .filter(|s| s.method == method && s.path == path)
            .cloned()
            .collect()
    }

    /// Every exchange so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.rules().seen.clone()
    }
}

/// The body a service sends with the error `code`.
fn error(code: ErrorCode) -> Answer {
    let body = ErrorBody {
        error: ErrorDetail {
            code,
            message: format!("{} (said by the test proxy)", code.as_str()),
        },
    };
    (
        code.http_status(),
        serde_json::to_vec(&body).unwrap_or_default(),
    )
}

async fn forward(State(s): State<Arc<Shared>>, method: Method, uri: Uri, body: Bytes) -> Response {
    let mut seen = Seen {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        body: body.to_vec(),
        status: 0,
        answer: Vec::new(),
    };
    let action = s.rules().take(&seen.method, &seen.path);
    // A rewrite that panicked (a failed assertion) leaves the rule usable.
    let lock = |a: &Arc<Mutex<Action>>| a.lock().unwrap_or_else(PoisonError::into_inner).refusal();
    let (content_type, real) = match action.as_ref().and_then(lock) {
        Some(refusal) => ("application/json".to_owned(), refusal),
        None => match send(&s, &method, &uri, &body).await {
            Ok(r) => r,
            Err(e) => ("text/plain".to_owned(), (502, e.into_bytes())),
        },
    };
    (seen.status, seen.answer) = real;
    let rewritten =
        action.and_then(
            |a| match &mut *a.lock().unwrap_or_else(PoisonError::into_inner) {
                Action::Lose => Some((502, b"connection lost".to_vec())),
                Action::Rewrite(f) => Some(f(&seen)),
                Action::Refuse(_) => None,
            },
        );
    if let Some((status, answer)) = rewritten {
        (seen.status, seen.answer) = (status, answer);
    }
    let answer = (seen.status, seen.answer.clone());
    s.rules().seen.push(seen);
    let status = StatusCode::from_u16(answer.0).unwrap_or(StatusCode::BAD_GATEWAY);
    (status, [("content-type", content_type)], answer.1).into_response()
}

/// Forwards the request; the answer's content type, status and body.
async fn send(
    s: &Shared,
    method: &Method,
    uri: &Uri,
    body: &Bytes,
) -> Result<(String, Answer), String> {
    let url = format!(
        "{}{}",
        s.target,
        uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let m = reqwest::Method::from_bytes(method.as_str().as_bytes()).map_err(|e| e.to_string())?;
    let resp = s
        .http
        .request(m, &url)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_owned();
    let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
    Ok((content_type, (status, bytes.to_vec())))
}

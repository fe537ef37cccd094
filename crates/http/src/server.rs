//! The server half: errors as responses, strict JSON, the common router finish.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Serialize;
use smpx_core::api::{ErrorBody, ErrorDetail};
use smpx_core::{ErrorCode, ProtocolError};
use std::future::Future;
use std::time::Duration;

/// Largest request body any smpx endpoint accepts. Every legitimate request is far smaller
/// (a publish is under 1 KiB), so anything bigger is refused before it is buffered further.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A failed request, answered as `{"error": {"code", "message"}}` with the code's status.
#[derive(Debug)]
pub struct ApiError(pub ProtocolError);

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError(ProtocolError::new(code, message))
    }

    /// An internal failure: the detail goes to the log, the client gets a generic message.
    /// Callers must not pass secrets in `detail`.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "internal error");
        ApiError::new(
            ErrorCode::Internal,
            "internal error; nothing was recorded, retrying is safe",
        )
    }

    pub fn code(&self) -> ErrorCode {
        self.0.code
    }
}

impl From<ProtocolError> for ApiError {
    fn from(e: ProtocolError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.0.code,
                message: self.0.message,
            },
        };
        let mut resp = (status, axum::Json(body)).into_response();
        // For the metrics layer (`smpx_errors_total{code}`), which cannot read the body.
        resp.extensions_mut().insert(self.0.code);
        resp
    }
}

/// JSON in and out. As an extractor, every failure is a typed [`ApiError`].
///
/// A whole number written as a float (`10.0`, `1e3`) is read as the integer it is, as the
/// OpenAPI documents' `"type": "integer"` allows; a fractional one in an integer field is
/// refused. Otherwise this is `axum::Json`: its content-type check, body limit and messages
/// (which name the field that did not parse).
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        // `serve` buffered the body already (at most MAX_BODY_BYTES), so this does not wait.
        let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
            Ok(bytes) => bytes,
            Err(e) if is_length_limit(&e) => return Err(body_too_large()),
            Err(_) => return Err(unreadable_body()),
        };
        let bytes = match crate::numbers::whole_numbers_as_integers(&bytes) {
            // Longer only by exponents written out; past the limit it stays as written.
            Some(rewritten) if rewritten.len() <= MAX_BODY_BYTES => rewritten.into(),
            _ => bytes,
        };
        let req = Request::from_parts(parts, axum::body::Body::from(bytes));
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn body_too_large() -> ApiError {
    ApiError::new(
        ErrorCode::BodyTooLarge,
        format!("request body is larger than {MAX_BODY_BYTES} bytes"),
    )
}

fn unreadable_body() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidRequest,
        "the request body could not be read",
    )
}

fn json_rejection(r: JsonRejection) -> ApiError {
    match r.status() {
        StatusCode::PAYLOAD_TOO_LARGE => body_too_large(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "expected Content-Type: application/json",
        ),
        _ => ApiError::new(ErrorCode::InvalidRequest, r.body_text()),
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Query string extractor with typed errors.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|r: QueryRejection| ApiError::new(ErrorCode::InvalidRequest, r.body_text()))
    }
}

/// Path parameters with typed errors: a segment that does not parse (`/v1/mmrs/x`) or is
/// not UTF-8 after percent-decoding (`%FF`) is `400 invalid_request`, as JSON.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|r: PathRejection| ApiError::new(ErrorCode::InvalidRequest, r.body_text()))
    }
}

/// Applies what every service needs: the body limit, JSON answers for unknown paths and
/// methods, and a log line per request (method, path, status, time; never bodies).
pub fn finish_router(router: Router) -> Router {
    router
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ErrorCode::MethodNotAllowed,
                "method not allowed on this endpoint",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(log_request))
}

async fn log_request(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    tracing::debug!(
        %method,
        %path,
        status = resp.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    resp
}

/// How long a connection may take to deliver a whole request head: the first one after it
/// is opened, and each next one on a kept-alive connection. An idle or stalled connection is
/// closed after this (the HTTP client's pool drops idle connections sooner, see
/// `smpx_http_client::POOL_IDLE`).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a request's body may take to arrive once its head has: a stalled body is
/// answered `408 request_timeout`.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest URI (path and query) a service reads; longer ones are answered `414 uri_too_long`.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Most header bytes (names and values) and header lines a service reads; beyond either,
/// `431 headers_too_large`. (Heads beyond hyper's read buffer, about 400 KiB, are refused by
/// hyper itself with a bare 431 and the connection closed.)
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
pub const MAX_HEADERS: usize = 64;

/// Serves `router` on `listener` until `shutdown` completes, then finishes in-flight requests.
///
/// Every connection is HTTP/1.1 with [`HEAD_TIMEOUT`]; every request passes [`guard`] (URI,
/// header and body limits, [`BODY_TIMEOUT`]) before any handler or extractor sees it.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_router(
        listener,
        router.layer(axum::middleware::from_fn(guard)),
        shutdown,
    )
    .await
}

/// [`serve`], with every request counted in `metrics` (see [`crate::metrics`]) — outside the
/// limits, so a request refused by them is counted under its route and error code too.
pub async fn serve_metered(
    listener: tokio::net::TcpListener,
    router: Router,
    metrics: &crate::Metrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = metrics.layer(router.layer(axum::middleware::from_fn(guard)));
    serve_router(listener, router, shutdown).await
}

async fn serve_router(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) if accept_error_is_transient(&e) => {
                    // Out of file descriptors or a connection reset before accept: the
                    // listener is fine; give the process a moment to close some.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(e) => return Err(e),
            },
            () = &mut shutdown => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(HEAD_TIMEOUT)
            // Above MAX_HEADERS, so that `guard` answers with the documented JSON error.
            .max_headers(4 * MAX_HEADERS);
        let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

fn accept_error_is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock
    ) || matches!(e.raw_os_error(), Some(23 | 24 | 12 | 105)) // ENFILE, EMFILE, ENOMEM, ENOBUFS
}

/// The limits every request meets before a handler: URI length, header size and count,
/// body size (refused from `Content-Length` before reading a byte) and [`BODY_TIMEOUT`].
/// Each refusal is the documented JSON error. The body is buffered here (it is at most
/// [`MAX_BODY_BYTES`]), so handlers never wait on a slow client.
async fn guard(req: Request, next: Next) -> Response {
    match admit(req).await {
        Ok(req) => next.run(req).await,
        Err(refusal) => refusal.into_response(),
    }
}

async fn admit(req: Request) -> Result<Request, ApiError> {
    let uri_len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if uri_len > MAX_URI_BYTES {
        return Err(ApiError::new(
            ErrorCode::UriTooLong,
            format!("the URI is longer than {MAX_URI_BYTES} bytes"),
        ));
    }
    let headers = req.headers();
    let header_bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers.len() > MAX_HEADERS || header_bytes > MAX_HEADER_BYTES {
        return Err(ApiError::new(
            ErrorCode::HeadersTooLarge,
            format!("at most {MAX_HEADERS} headers of {MAX_HEADER_BYTES} bytes in all"),
        ));
    }
    let announced = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(body_too_large());
    }
    let (parts, body) = req.into_parts();
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY_BYTES)).await {
        Err(_) => Err(ApiError::new(
            ErrorCode::RequestTimeout,
            format!(
                "the request body did not arrive within {} s",
                BODY_TIMEOUT.as_secs()
            ),
        )),
        Ok(Err(e)) if is_length_limit(&e) => Err(body_too_large()),
        Ok(Err(_)) => Err(unreadable_body()),
        Ok(Ok(bytes)) => Ok(Request::from_parts(parts, axum::body::Body::from(bytes))),
    }
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

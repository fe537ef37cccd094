//! What every service's HTTP server does with hostile or broken clients, over a real socket:
//! stalled and idle connections are closed, oversized or slow requests get the documented
//! JSON error, and unparsable path segments too. Timeouts run under tokio's paused clock, so
//! the 30 s limits take no real time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::routing::{get, post};
use axum::Router;
use smpx_http::{
    finish_router, serve, Json, Path, BODY_TIMEOUT, HEAD_TIMEOUT, MAX_HEADERS, MAX_HEADER_BYTES,
    MAX_URI_BYTES,
};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A service with one route of each kind, served by `smpx_http::serve`.
async fn start() -> SocketAddr {
    let router = finish_router(
        Router::new()
            .route("/v1/health", get(smpx_http::common::health))
            .route(
                "/n/{id}",
                get(|Path(id): Path<u64>| async move { Json(id) }),
            )
            .route(
                "/s/{name}",
                get(|Path(name): Path<String>| async move { Json(name) }),
            )
            .route(
                "/echo",
                post(|Json(v): Json<serde_json::Value>| async move { Json(v) }),
            )
            .route(
                "/typed",
                post(|Json(v): Json<Typed>| async move { Json(v) }),
            ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, router, std::future::pending()));
    addr
}

/// A strict body with integer fields, as every request type is.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Typed {
    count: u32,
    limit: u64,
    offset: i64,
    name: String,
}

/// Everything the server sends until it closes the connection (failing, not hanging, if
/// it never does: under the paused clock the 10 minutes pass at once).
async fn read_all(conn: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(600), conn.read_to_end(&mut out))
        .await
        .expect("the server closed the connection")
        .unwrap();
    out
}

/// The status and the JSON body of a raw HTTP/1.1 response.
fn parse(raw: &[u8]) -> (u16, serde_json::Value) {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("a whole response head");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "a JSON answer: {head}"
    );
    (status, serde_json::from_str(body).expect("a JSON body"))
}

/// Sends `request` on a new connection and returns the answer (the request says
/// `Connection: close`, so the server closes after it).
async fn exchange(addr: SocketAddr, request: &[u8]) -> (u16, serde_json::Value) {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(request).await.unwrap();
    parse(&read_all(&mut conn).await)
}

fn code(body: &serde_json::Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn a_connection_stuck_in_its_headers_is_closed_after_the_head_timeout() {
    let addr = start().await;
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    conn.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    read_all(&mut conn).await;
    let waited = started.elapsed();
    assert!(
        waited >= HEAD_TIMEOUT && waited < HEAD_TIMEOUT * 2,
        "closed after {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_closed_after_the_head_timeout() {
    let addr = start().await;
    let mut conn = TcpStream::connect(addr).await.unwrap();
    // One whole request, answered; then nothing more from the client.
    conn.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answered = Instant::now();
    let raw = read_all(&mut conn).await;
    let waited = answered.elapsed();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains(r#"{"status":"ok"}"#), "{text}");
    assert!(
        waited >= HEAD_TIMEOUT && waited < HEAD_TIMEOUT * 2,
        "the idle connection closed after {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_body_that_stalls_is_answered_408() {
    let addr = start().await;
    let started = Instant::now();
    let (status, body) = exchange(
        addr,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{\"a\":1",
    )
    .await;
    assert_eq!((status, code(&body)), (408, "request_timeout"), "{body}");
    assert!(started.elapsed() >= BODY_TIMEOUT);
}

#[tokio::test(start_paused = true)]
async fn a_body_announced_too_large_is_refused_before_it_is_read() {
    let addr = start().await;
    let started = Instant::now();
    let (status, body) = exchange(
        addr,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\nConnection: close\r\n\r\n{\"a\":1",
    )
    .await;
    assert_eq!((status, code(&body)), (413, "body_too_large"), "{body}");
    assert!(
        started.elapsed() < BODY_TIMEOUT,
        "answered without waiting for the body"
    );
}

#[tokio::test]
async fn a_whole_body_is_still_served() {
    let addr = start().await;
    let (status, body) = exchange(
        addr,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 7\r\nConnection: close\r\n\r\n{\"a\":1}",
    )
    .await;
    assert_eq!((status, body), (200, serde_json::json!({"a": 1})));
}

#[tokio::test]
async fn a_long_uri_is_answered_414_as_json() {
    let addr = start().await;
    let path = format!("/s/{}", "a".repeat(MAX_URI_BYTES));
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let (status, body) = exchange(addr, request.as_bytes()).await;
    assert_eq!((status, code(&body)), (414, "uri_too_long"), "{body}");
    // At the limit it is served.
    let path = format!("/s/{}", "a".repeat(MAX_URI_BYTES - 3));
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(exchange(addr, request.as_bytes()).await.0, 200);
}

#[tokio::test]
async fn too_many_or_too_large_headers_are_answered_431_as_json() {
    let addr = start().await;
    let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
    let request = format!("GET /v1/health HTTP/1.1\r\nHost: x\r\n{many}Connection: close\r\n\r\n");
    let (status, body) = exchange(addr, request.as_bytes()).await;
    assert_eq!((status, code(&body)), (431, "headers_too_large"), "{body}");

    let large = "v".repeat(MAX_HEADER_BYTES);
    let request = format!(
        "GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Large: {large}\r\nConnection: close\r\n\r\n"
    );
    let (status, body) = exchange(addr, request.as_bytes()).await;
    assert_eq!((status, code(&body)), (431, "headers_too_large"), "{body}");
}

#[tokio::test]
async fn unparsable_path_segments_are_answered_400_as_json() {
    let addr = start().await;
    for path in ["/n/x", "/n/18446744073709551616", "/s/%FF"] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let (status, body) = exchange(addr, request.as_bytes()).await;
        assert_eq!(
            (status, code(&body)),
            (400, "invalid_request"),
            "{path}: {body}"
        );
    }
    let request = "GET /n/7 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert_eq!(
        exchange(addr, request.as_bytes()).await,
        (200, serde_json::json!(7))
    );
}

/// POSTs `body` as JSON to `path`.
async fn post_json(addr: SocketAddr, path: &str, body: &str) -> (u16, serde_json::Value) {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    exchange(addr, request.as_bytes()).await
}

#[tokio::test]
async fn whole_numbers_written_as_floats_are_integers_as_the_schemas_say() {
    let addr = start().await;
    // JSON Schema's `integer` accepts 10.0 and 1e3, so the server does too, exactly.
    let (status, body) = post_json(
        addr,
        "/typed",
        r#"{"count": 10.0, "limit": 18446744073709551615.0, "offset": -2e3, "name": "1.0"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        serde_json::json!({"count": 10, "limit": u64::MAX, "offset": -2000, "name": "1.0"})
    );
    // A fraction is not an integer: refused, naming the field, as before.
    for (bad, field) in [
        (
            r#"{"count": 10.5, "limit": 1, "offset": 0, "name": ""}"#,
            "count",
        ),
        (
            r#"{"count": 1, "limit": 1e-1, "offset": 0, "name": ""}"#,
            "limit",
        ),
        (
            r#"{"count": 1e10, "limit": 1, "offset": 0, "name": ""}"#,
            "count",
        ),
        (
            r#"{"count": 1, "limit": -1.0, "offset": 0, "name": ""}"#,
            "limit",
        ),
        (
            r#"{"count": 1, "limit": 1, "offset": 0, "name": 1.0}"#,
            "name",
        ),
    ] {
        let (status, body) = post_json(addr, "/typed", bad).await;
        assert_eq!(
            (status, code(&body)),
            (400, "invalid_request"),
            "{bad}: {body}"
        );
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{bad}: {message}");
    }
    // Content type and unknown fields are checked as before.
    let request = "POST /typed HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
    let (status, body) = exchange(addr, request.as_bytes()).await;
    assert_eq!(
        (status, code(&body)),
        (415, "unsupported_media_type"),
        "{body}"
    );
    let (status, body) = post_json(
        addr,
        "/typed",
        r#"{"count": 1, "limit": 1, "offset": 0, "name": "", "extra": 1.0}"#,
    )
    .await;
    assert_eq!((status, code(&body)), (400, "invalid_request"), "{body}");
}

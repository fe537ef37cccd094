//! The client half: one small wrapper over reqwest used by the wallet, the issuer and the
//! operator to call other smpx services. Error bodies come back as typed [`ClientError::Api`].

use serde::de::DeserializeOwned;
use serde::Serialize;
use smpx_core::api::ErrorBody;
use smpx_core::ErrorCode;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The service answered with a typed error.
    #[error("{url}: {code} ({status}): {message}")]
    Api {
        url: String,
        status: u16,
        code: ErrorCode,
        message: String,
    },
    /// The service could not be reached, or the connection failed.
    #[error("{url}: {message}")]
    Transport { url: String, message: String },
    /// The service answered something that is not the expected JSON.
    #[error("{url}: unexpected answer (HTTP {status}): {message}")]
    Decode {
        url: String,
        status: u16,
        message: String,
    },
}

impl ClientError {
    /// The protocol error code, if the service sent one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// How long a pooled connection may sit idle before the client drops it: shorter than the
/// services' head timeout (`smpx_http::HEAD_TIMEOUT`, 30 s), so the client never sends a
/// request on a connection the server is closing.
pub const POOL_IDLE: Duration = Duration::from_secs(20);

/// A base URL plus optional bearer token.
#[derive(Clone, Debug)]
pub struct ApiClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl ApiClient {
    pub fn new(base: impl Into<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(POOL_IDLE)
            .build()
            .unwrap_or_default();
        ApiClient {
            base: base.into().trim_end_matches('/').to_owned(),
            token: None,
            http,
        }
    }

    /// Sends `Authorization: Bearer <token>` on every call.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(self.http.get(self.url(path)), path).await
    }

    pub async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.send(self.http.post(self.url(path)).json(body), path)
            .await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn send<T: DeserializeOwned>(
        &self,
        mut req: reqwest::RequestBuilder,
        path: &str,
    ) -> Result<T, ClientError> {
        let url = self.url(path);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| ClientError::Transport {
            url: url.clone(),
            message: describe(&e),
        })?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| ClientError::Transport {
            url: url.clone(),
            message: describe(&e),
        })?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
                url,
                status,
                message: e.to_string(),
            });
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(b) => Err(ClientError::Api {
                url,
                status,
                code: b.error.code,
                message: b.error.message,
            }),
            Err(_) => Err(ClientError::Decode {
                url,
                status,
                message: String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
            }),
        }
    }
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_connect() {
        "cannot connect (is the service running?)".to_owned()
    } else if e.is_timeout() {
        "timed out".to_owned()
    } else {
        e.to_string()
    }
}

//! A service's requests judged by its own OpenAPI document, with an independent JSON Schema
//! validator (boon, draft 2020-12), and then sent to the real service: the document must be
//! exactly as strict as the server.
//!
//! [`Document::fetch`] reads `/openapi.json`; [`Document::body`] and [`Document::query`] send a
//! request and assert, from the validator's verdict, that
//!
//! * what the document refuses the server refuses: `400`/`422`, as the JSON error body;
//! * what the document allows the server does not refuse for its shape: it may fail for
//!   what it means (`401`, `404`, `409`, a business code), never with `400 invalid_request`
//!   or another shape code ([`SHAPE_CODES`]), `413`, `415` or `422`.
//!
//! Each call also states the verdict the test expects, so a document that grows looser or
//! stricter than the table fails too.

use anyhow::{anyhow, Context, Result};
use serde_json::{json, Value};

/// Error codes that mean "the request does not have the documented shape".
pub const SHAPE_CODES: &[&str] = &["invalid_request", "unsupported_version", "malformed_proof"];

/// A service's OpenAPI document and a client for the service.
pub struct Document {
    doc: Value,
    url: String,
    http: reqwest::Client,
}

/// A GET to check with [`Document::get`]: the path template, the path, the parameters
/// (name, text) and whether the document allows them.
pub type GetCase<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, bool);

/// What the server answered.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// The error code, when the body is the JSON error shape.
    pub code: Option<String>,
    pub body: String,
}

impl Document {
    /// Reads `{url}/openapi.json`.
    pub async fn fetch(url: &str) -> Result<Document> {
        let http = reqwest::Client::new();
        let doc: Value = http
            .get(format!("{url}/openapi.json"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(Document {
            doc,
            url: url.to_owned(),
            http,
        })
    }

    /// The document itself.
    pub fn json(&self) -> &Value {
        &self.doc
    }

    /// The validator's verdict on `value` against the schema at `pointer` (a JSON pointer into
    /// the document), with `$ref`s resolved into `components/schemas`.
    pub fn allows(&self, pointer: &str, value: &Value) -> Result<bool> {
        let schema = self
            .doc
            .pointer(pointer)
            .with_context(|| format!("no schema at {pointer}"))?
            .clone();
        // The schema and the components it refers to, as one resource: `#/components/...`
        // resolves within it, and nothing else of the document is read as a schema.
        let resource = json!({
            "components": {"schemas": self.doc["components"]["schemas"].clone()},
            "target": schema,
        });
        let mut compiler = boon::Compiler::new();
        compiler.set_default_draft(boon::Draft::V2020_12);
        compiler
            .add_resource("urn:smpx:openapi", resource)
            .map_err(|e| anyhow!("{e}"))?;
        let mut schemas = boon::Schemas::new();
        let index = compiler
            .compile("urn:smpx:openapi#/target", &mut schemas)
            .map_err(|e| anyhow!("compiling {pointer}: {e:#}"))?;
        Ok(schemas.validate(value, index).is_ok())
    }

    /// POSTs `body` to `path` (an instance of the document's `template`), with `token` as
    /// the bearer credential, and asserts the document's verdict is `allowed` and the server
    /// agrees. Returns the answer.
    pub async fn body(
        &self,
        template: &str,
        path: &str,
        token: Option<&str>,
        body: Value,
        allowed: bool,
    ) -> Result<Answer> {
        let pointer = format!(
            "/paths/{}/post/requestBody/content/application~1json/schema",
            escape(template)
        );
        let verdict = self.allows(&pointer, &body)?;
        if verdict != allowed {
            return Err(anyhow!(
                "the document {} POST {template} {body}",
                if verdict { "allows" } else { "refuses" }
            ));
        }
        let mut req = self.http.post(format!("{}{path}", self.url)).json(&body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let answer = send(req).await?;
        agree(&answer, allowed).with_context(|| format!("POST {path} {body}"))?;
        Ok(answer)
    }

    /// GETs `path` (an instance of `template`) with the query `params`, after checking each
    /// path and query parameter named in `params` against its schema: asserts the document
    /// allows all of them exactly when `allowed`, and the server agrees.
    pub async fn get(
        &self,
        template: &str,
        path: &str,
        params: &[(&str, &str)],
        allowed: bool,
    ) -> Result<Answer> {
        let op = format!("/paths/{}/get", escape(template));
        let list = self
            .doc
            .pointer(&format!("{op}/parameters"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut verdict = true;
        let mut query = Vec::new();
        for (name, text) in params {
            let index = list
                .iter()
                .position(|p| p["name"] == *name)
                .with_context(|| format!("GET {template} has no parameter {name}"))?;
            // A parameter's text as the JSON value a client serialised: a number if it reads
            // as one, a string otherwise.
            let value = serde_json::from_str::<Value>(text)
                .ok()
                .filter(Value::is_number)
                .unwrap_or_else(|| Value::String((*text).to_owned()));
            verdict &= self.allows(&format!("{op}/parameters/{index}/schema"), &value)?;
            if list[index]["in"] == "query" {
                query.push((*name, *text));
            }
        }
        if verdict != allowed {
            return Err(anyhow!(
                "the document {} GET {template} {params:?}",
                if verdict { "allows" } else { "refuses" }
            ));
        }
        let req = self.http.get(format!("{}{path}", self.url)).query(&query);
        let answer = send(req).await?;
        agree(&answer, allowed).with_context(|| format!("GET {path} {query:?}"))?;
        Ok(answer)
    }
}

/// `body` with `field` (a JSON pointer) set to `value`, or removed when `value` is `None`.
pub fn with(body: &Value, field: &str, value: Option<Value>) -> Value {
    let mut body = body.clone();
    let (parent, key) = field.rsplit_once('/').unwrap_or(("", field));
    if let Some(parent) = body.pointer_mut(parent).and_then(Value::as_object_mut) {
        match value {
            Some(v) => parent.insert(key.to_owned(), v),
            None => parent.remove(key),
        };
    }
    body
}

/// A well-formed v0.1 envelope and v0.2 redemption for `denomination` (that redeem nothing):
/// the payloads of `POST /v1/redemptions` and `POST /v1/redeem`.
pub fn redemption_payloads(denomination: u64) -> (Value, Value) {
    use smpx_core::crypto::b64;
    let envelope = json!({"enc": b64::encode(&[1; 32]), "ciphertext": b64::encode(&[2; 80])});
    let zk = json!({
        "mmr_id": 1,
        "root": "02".repeat(32),
        "nullifier": "03".repeat(32),
        "denomination": denomination,
        "fee": 0,
        "proof": b64::encode(&[0; 128]),
    });
    (envelope, zk)
}

/// `template` as one JSON pointer token.
fn escape(template: &str) -> String {
    template.replace('~', "~0").replace('/', "~1")
}

async fn send(req: reqwest::RequestBuilder) -> Result<Answer> {
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let json = resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let body = resp.text().await?;
    let code = if json {
        serde_json::from_str::<smpx_core::api::ErrorBody>(&body)
            .ok()
            .map(|e| e.error.code.as_str().to_owned())
    } else {
        None
    };
    Ok(Answer { status, code, body })
}

/// Does the server's answer agree with the document's verdict?
fn agree(answer: &Answer, allowed: bool) -> Result<()> {
    let shape = matches!(answer.status, 413 | 415 | 422)
        || (answer.status == 400
            && answer
                .code
                .as_deref()
                .is_none_or(|c| SHAPE_CODES.contains(&c)));
    if allowed && shape {
        return Err(anyhow!(
            "the document allows it, the server refused its shape: {} {}",
            answer.status,
            answer.body
        ));
    }
    let refused = matches!(answer.status, 400 | 422) && answer.code.is_some();
    if !allowed && !refused {
        return Err(anyhow!(
            "the document refuses it, the server answered {} {}",
            answer.status,
            answer.body
        ));
    }
    Ok(())
}

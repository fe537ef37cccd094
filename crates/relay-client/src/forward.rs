//! Private routing from the client: send to a queue on another relay through this
//! connection's relay as proxy ([`smpx_relay_protocol::forward`] has the format and what each
//! relay learns).
//!
//! [`Client::proxy`] sends PRXY with the destination's address and **verifies the key
//! material itself** against the fingerprint of that address ([`ForwardKey::verify`]): the
//! proxy is not trusted with it. [`ProxiedRelay::send`] then builds an ordinary SEND
//! transmission signed for the proxy↔destination session, seals it for the destination,
//! sends it as PFWD and opens the sealed answer. When the proxy says the session is gone
//! (`ERR PROXY NO_SESSION`: its connection to the destination was replaced, or the
//! destination rotated its key — nothing was run), the session is set up again, verified
//! again, and the command sent once more.

use super::{expect_ok, send_command, Client, ClientError};
use ed25519_dalek::SigningKey;
use smpx_relay_protocol::command::{Command, Response};
use smpx_relay_protocol::crypto;
use smpx_relay_protocol::forward::{self, ForwardKey};
use smpx_relay_protocol::transmission::{encode_transmission, parse_transmission, signed_part};
use smpx_relay_protocol::{CorrId, EntityId, ErrorCode, ProxyError};
use smpx_relay_transport::RelayAddress;
use std::sync::{Arc, Mutex, MutexGuard};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A verified proxy session.
#[derive(Clone)]
struct Session {
    id: EntityId,
    key: Arc<ForwardKey>,
}

/// A destination relay reached through this client's relay as proxy. Cheap to clone; clones
/// share the session.
#[derive(Clone)]
pub struct ProxiedRelay {
    client: Client,
    destination: RelayAddress,
    session: Arc<Mutex<Session>>,
}

impl std::fmt::Debug for ProxiedRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxiedRelay")
            .field("destination", &self.destination.to_string())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// PRXY: use this connection's relay as proxy towards `destination`. Fails with
    /// [`ClientError::Forward`] when the key material the proxy returns does not verify
    /// against `destination`'s fingerprint, and with `ERR PROXY …`
    /// ([`ClientError::Relay`]) when the proxy cannot reach it.
    pub async fn proxy(&self, destination: &RelayAddress) -> Result<ProxiedRelay, ClientError> {
        let session = open_session(self, destination).await?;
        Ok(ProxiedRelay {
            client: self.clone(),
            destination: destination.clone(),
            session: Arc::new(Mutex::new(session)),
        })
    }
}

async fn open_session(client: &Client, destination: &RelayAddress) -> Result<Session, ClientError> {
    let cmd = Command::Proxy {
        destination: destination.to_string().into_bytes(),
    };
    match client.request(None, None, &cmd).await? {
        Response::ProxyKey { session, key } => {
            key.verify(
                &smpx_relay_transport::PinnedChain,
                &destination.fingerprint,
                client.inner.config.clock.now(),
                &mut client.entropy().rng(),
            )
            .map_err(ClientError::Forward)?;
            Ok(Session {
                id: session,
                key: Arc::new(key),
            })
        }
        r => Err(ClientError::Unexpected(Box::new(r))),
    }
}

impl ProxiedRelay {
    /// The destination relay.
    pub fn destination(&self) -> &RelayAddress {
        &self.destination
    }

    /// The proxy↔destination session id inner commands are signed for.
    pub fn destination_session_id(&self) -> smpx_relay_protocol::SessionId {
        lock(&self.session).key.session_id
    }

    /// SEND through the proxy, signed with the sender key once the queue is secured
    /// (unsigned before): the same answers as [`Client::send`].
    pub async fn send(
        &self,
        sender_id: &EntityId,
        sender_key: Option<&SigningKey>,
        body: &[u8],
    ) -> Result<(), ClientError> {
        let cmd = send_command(body)?;
        expect_ok(self.request(Some(sender_id), sender_key, &cmd).await?)
    }

    /// PING the destination through the proxy.
    pub async fn ping(&self) -> Result<(), ClientError> {
        match self.request(None, None, &Command::Ping).await? {
            Response::Pong => Ok(()),
            r => Err(ClientError::Unexpected(Box::new(r))),
        }
    }

    /// Forwards one command (the destination runs only SEND and PING; others are answered
    /// `ERR PROXY NOT_ALLOWED`). ERR from the proxy or the destination becomes
    /// [`ClientError::Relay`].
    pub async fn request(
        &self,
        entity: Option<&EntityId>,
        key: Option<&SigningKey>,
        command: &Command,
    ) -> Result<Response, ClientError> {
        let session = lock(&self.session).clone();
        match self.request_on(&session, entity, key, command).await {
            Err(ClientError::Relay(ErrorCode::Proxy(ProxyError::NoSession))) => {
                let fresh = open_session(&self.client, &self.destination).await?;
                *lock(&self.session) = fresh.clone();
                self.request_on(&fresh, entity, key, command).await
            }
            r => r,
        }
    }

    async fn request_on(
        &self,
        session: &Session,
        entity: Option<&EntityId>,
        key: Option<&SigningKey>,
        command: &Command,
    ) -> Result<Response, ClientError> {
        let corr = CorrId(self.client.entropy().bytes());
        let signed = signed_part(&corr, entity, &command.encode());
        let auth = key.map(|k| crypto::sign(k, &session.key.session_id, &signed));
        let inner = encode_transmission(auth.as_ref(), &signed);
        let (payload, response_key) =
            forward::seal_request(&session.key, &inner, &mut self.client.entropy().rng())
                .map_err(ClientError::Forward)?;
        let sealed = match self
            .client
            .request(Some(&session.id), None, &Command::ProxyForward(payload))
            .await?
        {
            Response::Forwarded { sealed } => sealed,
            r => return Err(ClientError::Unexpected(Box::new(r))),
        };
        let plain = forward::open_response(&response_key, &session.key.session_id, &sealed)
            .map_err(ClientError::Forward)?;
        let t = parse_transmission(&plain)
            .map_err(|_| ClientError::Forward(forward::ForwardError::Malformed))?;
        forward::matches(&corr, entity, &t).map_err(ClientError::Forward)?;
        match Response::decode(t.command)
            .map_err(|_| ClientError::Forward(forward::ForwardError::Malformed))?
        {
            Response::Err(code) => Err(ClientError::Relay(code)),
            r => Ok(r),
        }
    }
}

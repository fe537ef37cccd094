//! One client connection: handshake, the reader/writer/deliverer tasks, and every command.

use super::{stats::inc, ConnectionError, Shared};
use crate::limits::{self, AddressKey, Bucket};
use crate::store::{
    AckOutcome, Message, MessageKind, NewQueue, PushOutcome, QueueStatus, SecureOutcome, StoreError,
};
use smpx_relay_protocol::command::{Command, Response};
use smpx_relay_protocol::crypto::{self, Content, DeliveryKey};
use smpx_relay_protocol::handshake::{ClientHello, ServerHello};
use smpx_relay_protocol::transmission::{encode_transmission, parse_transmission, signed_part};
use smpx_relay_protocol::{
    decode_block, CmdError, CorrId, EntityId, ErrorCode, MsgId, SessionId, Transmission,
};
use smpx_relay_transport::framing::{self, FrameError};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch, Notify};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The maps stay consistent under a panic elsewhere (single inserts/removes).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(super) fn internal(_: StoreError) -> ErrorCode {
    ErrorCode::Internal
}

/// A subscription held by this connection.
struct Sub {
    key: DeliveryKey,
    /// The message delivered and not yet acknowledged: nothing more is pushed until ACK.
    in_flight: Option<MsgId>,
}

/// What other connections see of this one: where to push, and how to wake its deliverer.
pub(crate) struct ConnHandle {
    pub(crate) id: u64,
    out: mpsc::Sender<Vec<u8>>,
    kicks: Mutex<HashSet<EntityId>>,
    wake: Notify,
    /// Serialises every delivery decision of this connection (SUB, ACK, pushes).
    subs: tokio::sync::Mutex<HashMap<EntityId, Sub>>,
}

impl ConnHandle {
    /// A message arrived for `rid`: deliver it if nothing is in flight.
    pub(super) fn kick(&self, rid: EntityId) {
        lock(&self.kicks).insert(rid);
        self.wake.notify_one();
    }

    /// The subscription moved to another connection.
    async fn end(&self, rid: EntityId) {
        self.subs.lock().await.remove(&rid);
        // If this connection's queue is full it is stuck on a slow client: it loses the END
        // and is dropped by its write deadline anyway.
        let _ = self.out.try_send(push_transmission(&rid, &Response::End));
    }
}

fn push_transmission(rid: &EntityId, r: &Response) -> Vec<u8> {
    response_transmission(&CorrId::PUSH, Some(rid), r)
}

fn response_transmission(corr: &CorrId, entity: Option<&EntityId>, r: &Response) -> Vec<u8> {
    encode_transmission(None, &signed_part(corr, entity, &r.encode()))
}

fn content(kind: MessageKind) -> Content {
    match kind {
        MessageKind::Body(b) => Content::Body(b),
        MessageKind::QuotaExceeded => Content::QuotaExceeded,
    }
}

fn seal_msg(key: &DeliveryKey, m: Message) -> Result<Response, ErrorCode> {
    let sealed =
        crypto::seal(key, &m.id, m.at, &content(m.kind)).map_err(|_| ErrorCode::Internal)?;
    Ok(Response::Msg {
        msg_id: m.id,
        sealed,
    })
}

pub(crate) async fn run<S>(
    shared: Arc<Shared>,
    id: u64,
    stream: S,
    session_id: SessionId,
    peer: Option<IpAddr>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), ConnectionError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let cfg = shared.config.clone();
    let (mut rd, mut wr) = tokio::io::split(stream);

    let hello = async {
        framing::write_block(
            &mut wr,
            &ServerHello::new(session_id).encode(),
            cfg.write_deadline,
        )
        .await?;
        let block = framing::read_block(&mut rd, cfg.handshake_timeout, cfg.block_deadline).await?;
        let hello =
            ClientHello::decode(&block).map_err(|e| ConnectionError::Handshake(e.to_string()))?;
        if !hello.acceptable() {
            return Err(ConnectionError::Handshake(format!(
                "unsupported version {}",
                hello.version
            )));
        }
        Ok::<_, ConnectionError>(())
    };
    if let Err(e) = hello.await {
        if matches!(
            e,
            ConnectionError::Frame(FrameError::Idle | FrameError::Deadline)
        ) {
            inc(&shared.stats.connections_timed_out);
        }
        return Err(e);
    }

    let (out, out_rx) = mpsc::channel(cfg.outbound_queue.max(1));
    let (dead_tx, mut dead) = watch::channel(false);
    let conn = Arc::new(ConnHandle {
        id,
        out,
        kicks: Mutex::new(HashSet::new()),
        wake: Notify::new(),
        subs: tokio::sync::Mutex::new(HashMap::new()),
    });
    let writer = tokio::spawn(framing::write_loop(wr, out_rx, cfg.write_deadline, dead_tx));
    let deliverer = tokio::spawn(deliver_loop(shared.clone(), conn.clone()));
    let ctx = Ctx {
        shared,
        conn,
        session_id,
        forwarding: Default::default(),
        peer: peer.map(AddressKey::of),
        queues_created: AtomicU32::new(0),
        proxy_bucket: Mutex::new(None),
    };

    let result = loop {
        let block = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break Ok(()),
            _ = dead.wait_for(|d| *d) => break Ok(()),
            b = framing::read_block(&mut rd, cfg.idle_timeout, cfg.block_deadline) => b,
        };
        match block {
            Ok(b) => {
                if !ctx.handle_block(&b).await {
                    break Ok(());
                }
            }
            Err(FrameError::Closed) => break Ok(()),
            Err(e @ (FrameError::Idle | FrameError::Deadline)) => {
                inc(&ctx.shared.stats.connections_timed_out);
                break Err(e.into());
            }
            Err(e) => break Err(e.into()),
        }
    };

    deliverer.abort();
    let _ = deliverer.await;
    lock(&ctx.shared.subscriptions).retain(|_, c| c.id != ctx.conn.id);
    drop(ctx);
    // The writer flushes what is queued once the last sender is gone.
    let _ = tokio::time::timeout(cfg.write_deadline, writer).await;
    result
}

async fn deliver_loop(shared: Arc<Shared>, conn: Arc<ConnHandle>) {
    loop {
        conn.wake.notified().await;
        let rids: Vec<EntityId> = lock(&conn.kicks).drain().collect();
        for rid in rids {
            let mut subs = conn.subs.lock().await;
            let Some(sub) = subs.get_mut(&rid) else {
                continue;
            };
            if sub.in_flight.is_some() {
                continue;
            }
            let Ok(Some(m)) = shared.store.peek(&rid).await else {
                continue;
            };
            let id = m.id;
            let Ok(msg) = seal_msg(&sub.key, m) else {
                continue;
            };
            sub.in_flight = Some(id);
            inc(&shared.stats.messages_out);
            if conn.out.send(push_transmission(&rid, &msg)).await.is_err() {
                return;
            }
        }
    }
}

pub(super) struct Ctx {
    pub(super) shared: Arc<Shared>,
    pub(super) conn: Arc<ConnHandle>,
    pub(super) session_id: SessionId,
    /// Private routing state of this connection ([`super::forward`]).
    pub(super) forwarding: super::forward::ConnForwarding,
    /// Where the connection comes from, as the limits count it (memory only).
    peer: Option<AddressKey>,
    /// Queues and channels this connection created.
    queues_created: AtomicU32,
    /// PRXY tokens ([`limits::take_proxy`]).
    proxy_bucket: Mutex<Option<Bucket>>,
}

impl Ctx {
    fn limited(&self) -> ErrorCode {
        inc(&self.shared.stats.limited);
        ErrorCode::Limit
    }

    /// Before creating a queue or channel: within this connection's and its address's
    /// limits ([`limits`])? Takes the address's token.
    pub(super) fn admit_creation(&self) -> Result<(), ErrorCode> {
        let l = &self.shared.config.limits;
        if self.queues_created.load(Ordering::Relaxed) >= l.queues_per_connection {
            return Err(self.limited());
        }
        if let Some(peer) = self.peer {
            if !self.shared.ledger.take_creation(peer, l, self.shared.now()) {
                return Err(self.limited());
            }
        }
        Ok(())
    }

    /// A queue or channel was created; `Some(rid)`: a queue whose bodies count against the
    /// connection's address.
    pub(super) fn created(&self, queue: Option<EntityId>) {
        self.queues_created.fetch_add(1, Ordering::Relaxed);
        if let (Some(rid), Some(peer)) = (queue, self.peer) {
            self.shared.ledger.queue_created(rid, peer);
        }
    }

    /// Before a PRXY: within the connection's rate ([`limits::take_proxy`])?
    pub(super) fn admit_proxy(&self) -> Result<(), ErrorCode> {
        let now = self.shared.now();
        match limits::take_proxy(
            &mut lock(&self.proxy_bucket),
            &self.shared.config.limits,
            now,
        ) {
            true => Ok(()),
            false => Err(self.limited()),
        }
    }

    /// Runs every transmission of a block; `false` when the connection is going away.
    async fn handle_block(&self, block: &[u8]) -> bool {
        let ts = match decode_block(block) {
            Ok(ts) => ts,
            Err(e) => {
                inc(&self.shared.stats.malformed);
                return self
                    .respond(&CorrId::PUSH, None, &Response::Err(e.wire_code()))
                    .await;
            }
        };
        for raw in ts {
            let ok = match parse_transmission(raw) {
                Err(e) => {
                    inc(&self.shared.stats.malformed);
                    self.respond(&CorrId::PUSH, None, &Response::Err(e.wire_code()))
                        .await
                }
                Ok(t) => {
                    let r = match self.handle(&t).await {
                        Ok(r) => r,
                        Err(code) => {
                            if code == ErrorCode::Auth {
                                inc(&self.shared.stats.auth_failures);
                            }
                            Response::Err(code)
                        }
                    };
                    self.respond(&t.corr_id, t.entity.as_ref(), &r).await
                }
            };
            if !ok {
                return false;
            }
        }
        true
    }

    async fn respond(&self, corr: &CorrId, entity: Option<&EntityId>, r: &Response) -> bool {
        self.conn
            .out
            .send(response_transmission(corr, entity, r))
            .await
            .is_ok()
    }

    /// Verifies the transmission's signature against `key`, or against the dummy key when
    /// there is none, so that "no such queue" costs what "wrong signature" costs.
    pub(super) fn authorised(&self, key: Option<[u8; 32]>, t: &Transmission<'_>) -> bool {
        let sig = t.auth.unwrap_or([0; 64]);
        inc(&self.shared.stats.signatures_verified);
        let verified = crypto::verify(
            &key.unwrap_or(self.shared.dummy_key),
            &self.session_id,
            t.signed,
            &sig,
        );
        verified & key.is_some() & t.auth.is_some()
    }

    async fn handle(&self, t: &Transmission<'_>) -> Result<Response, ErrorCode> {
        let cmd = Command::decode(t.command).map_err(|e| {
            inc(&self.shared.stats.malformed);
            e.wire_code()
        })?;
        cmd.check_shape(t.auth.is_some(), t.entity.is_some())?;
        let store = &self.shared.store;
        let entity = t.entity.unwrap_or(EntityId([0; 24]));
        match cmd {
            Command::Ping => Ok(Response::Pong),
            Command::New {
                recipient_key,
                recipient_dh,
            } => self.new_queue(t, recipient_key, recipient_dh).await,
            Command::Send { body } => self.send(t, entity, body).await,
            Command::Info => self.info(),
            Command::Pay { request } => self.pay(t, entity, request).await,
            Command::NewChannel { owner_key } => self.new_channel(t, owner_key).await,
            Command::Join {
                recipient_key,
                recipient_dh,
            } => self.join(t, entity, recipient_key, recipient_dh).await,
            Command::Post { body } => self.post(t, entity, body).await,
            Command::Usage => self.usage(t, entity).await,
            Command::Proxy { destination } => self.proxy_open(&destination).await,
            Command::ProxyForward(payload) => self.proxy_forward(entity, payload).await,
            Command::RelayKey => self.relay_key(),
            Command::RelayForward(payload) => self.relay_forward(payload).await,
            cmd => {
                let q = store.by_recipient(&entity).await.map_err(internal)?;
                if !self.authorised(q.as_ref().map(|q| q.recipient_key), t) {
                    return Err(ErrorCode::Auth);
                }
                let Some(q) = q else {
                    return Err(ErrorCode::Auth);
                };
                let rid = q.recipient_id;
                if q.member_of.is_some()
                    && matches!(cmd, Command::Sub | Command::Get | Command::Ack { .. })
                {
                    // Billing counts members active in the last 14 days.
                    store
                        .touch(&rid, self.shared.now())
                        .await
                        .map_err(internal)?;
                }
                // Two X25519 operations: only the commands that deliver pay for them.
                let key = || {
                    DeliveryKey::for_relay(&q.server_dh.0, &q.recipient_dh)
                        .ok_or(ErrorCode::Internal)
                };
                match cmd {
                    Command::Key { sender_key } => {
                        if ed25519_dalek::VerifyingKey::from_bytes(&sender_key).is_err() {
                            return Err(ErrorCode::Cmd(CmdError::Syntax));
                        }
                        match store.secure(&rid, sender_key).await.map_err(internal)? {
                            SecureOutcome::Secured | SecureOutcome::AlreadySecuredSame => {
                                Ok(Response::Ok)
                            }
                            SecureOutcome::AlreadySecuredOther | SecureOutcome::NoQueue => {
                                Err(ErrorCode::Auth)
                            }
                        }
                    }
                    Command::Sub => self.subscribe(rid, key()?).await,
                    Command::Get => {
                        if self.conn.subs.lock().await.contains_key(&rid) {
                            return Err(ErrorCode::Cmd(CmdError::Prohibited));
                        }
                        match store.peek(&rid).await.map_err(internal)? {
                            Some(m) => {
                                inc(&self.shared.stats.messages_out);
                                seal_msg(&key()?, m)
                            }
                            None => Ok(Response::Ok),
                        }
                    }
                    Command::Ack { msg_id } => self.ack(rid, msg_id).await,
                    Command::Off => match store.suspend(&rid).await.map_err(internal)? {
                        true => Ok(Response::Ok),
                        false => Err(ErrorCode::Auth),
                    },
                    Command::Del => {
                        if !store.delete(&rid).await.map_err(internal)? {
                            return Err(ErrorCode::Auth);
                        }
                        inc(&self.shared.stats.queues_deleted);
                        self.shared.ledger.queue_deleted(rid);
                        let owner = lock(&self.shared.subscriptions).remove(&rid);
                        if let Some(owner) = owner {
                            owner.subs.lock().await.remove(&rid);
                        }
                        Ok(Response::Ok)
                    }
                    // Handled above.
                    Command::Ping
                    | Command::New { .. }
                    | Command::Send { .. }
                    | Command::Info
                    | Command::Pay { .. }
                    | Command::NewChannel { .. }
                    | Command::Join { .. }
                    | Command::Post { .. }
                    | Command::Usage
                    | Command::Proxy { .. }
                    | Command::ProxyForward(_)
                    | Command::RelayKey
                    | Command::RelayForward(_) => Err(ErrorCode::Internal),
                }
            }
        }
    }

    /// For a command that creates a queue (NEW, JOIN): checks the recipient's keys and that
    /// the command is signed with the recipient key (proof of possession), and makes the
    /// relay's X25519 key pair for the queue: `(secret, public)`.
    pub(super) fn recipient_keys(
        &self,
        t: &Transmission<'_>,
        recipient_key: [u8; 32],
        recipient_dh: [u8; 32],
    ) -> Result<([u8; 32], [u8; 32]), ErrorCode> {
        if ed25519_dalek::VerifyingKey::from_bytes(&recipient_key).is_err() {
            return Err(ErrorCode::Cmd(CmdError::Syntax));
        }
        if !self.authorised(Some(recipient_key), t) {
            return Err(ErrorCode::Auth);
        }
        let server_secret = crypto::x25519_secret(&mut self.shared.entropy().rng());
        if DeliveryKey::for_relay(&server_secret, &recipient_dh).is_none() {
            return Err(ErrorCode::Cmd(CmdError::Syntax));
        }
        Ok((server_secret, crypto::x25519_public(&server_secret)))
    }

    async fn new_queue(
        &self,
        t: &Transmission<'_>,
        recipient_key: [u8; 32],
        recipient_dh: [u8; 32],
    ) -> Result<Response, ErrorCode> {
        let (server_secret, server_dh) = self.recipient_keys(t, recipient_key, recipient_dh)?;
        self.admit_creation()?;
        for _ in 0..3 {
            let recipient_id = EntityId(self.shared.entropy().bytes());
            let sender_id = EntityId(self.shared.entropy().bytes());
            let q = NewQueue {
                recipient_id,
                sender_id,
                recipient_key,
                recipient_dh,
                server_dh: crate::store::ServerDhSecret(server_secret),
                quota: self.shared.config.quota,
                created_at: self.shared.now(),
            };
            match self.shared.store.create(q).await {
                Ok(()) => {
                    inc(&self.shared.stats.queues_created);
                    self.created(Some(recipient_id));
                    return Ok(Response::Ids {
                        recipient_id,
                        sender_id,
                        server_dh,
                    });
                }
                Err(StoreError::DuplicateId) => continue,
                Err(_) => return Err(ErrorCode::Internal),
            }
        }
        Err(ErrorCode::Internal)
    }

    pub(super) async fn send(
        &self,
        t: &Transmission<'_>,
        sid: EntityId,
        body: Vec<u8>,
    ) -> Result<Response, ErrorCode> {
        let q = self.shared.store.by_sender(&sid).await.map_err(internal)?;
        let sender_key = q.as_ref().and_then(|q| q.sender_key);
        // Always one verification, whatever the queue's state.
        let verified = self.authorised(sender_key, t);
        let allowed = match (&q, t.auth.is_some()) {
            (Some(_), true) => verified,
            // Unsigned SEND: only to a queue the recipient has not secured yet.
            (Some(_), false) => sender_key.is_none(),
            (None, _) => false,
        };
        let Some(q) = q.filter(|q| allowed && q.status == QueueStatus::Active) else {
            return Err(ErrorCode::Auth);
        };
        let msg_id = MsgId(self.shared.entropy().bytes());
        let now = self.shared.now();
        let rid = q.recipient_id;
        // Free-tier queues: the bodies held count against the address that created the
        // queue ([`limits`]); paid capacity is what it was paid for.
        let counted = q.quota <= self.shared.config.quota;
        let limit = self.shared.config.limits.stored_bytes_per_address;
        let len = u64::try_from(body.len()).unwrap_or(u64::MAX);
        if counted && !self.shared.ledger.charge(rid, msg_id, now, len, limit) {
            return Err(self.limited());
        }
        let pushed = self.shared.store.push(&sid, msg_id, now, body).await;
        if !matches!(pushed, Ok(PushOutcome::Accepted)) {
            self.shared.ledger.release(rid, msg_id);
        }
        match pushed.map_err(internal)? {
            PushOutcome::Accepted => {
                inc(&self.shared.stats.messages_in);
                self.kick(q.recipient_id);
                Ok(Response::Ok)
            }
            PushOutcome::QuotaExceeded => {
                inc(&self.shared.stats.messages_over_quota);
                self.kick(q.recipient_id);
                Err(ErrorCode::Quota)
            }
            PushOutcome::Suspended | PushOutcome::NoQueue => Err(ErrorCode::Auth),
        }
    }

    pub(super) fn kick(&self, rid: EntityId) {
        let owner = lock(&self.shared.subscriptions).get(&rid).cloned();
        if let Some(c) = owner {
            c.kick(rid);
        }
    }

    async fn subscribe(&self, rid: EntityId, key: DeliveryKey) -> Result<Response, ErrorCode> {
        let previous = lock(&self.shared.subscriptions).insert(rid, self.conn.clone());
        if let Some(old) = previous.filter(|old| old.id != self.conn.id) {
            inc(&self.shared.stats.subscriptions_ended);
            old.end(rid).await;
        }
        let mut subs = self.conn.subs.lock().await;
        // A repeated SUB re-delivers the message in flight, as in SMP.
        let head = self.shared.store.peek(&rid).await.map_err(internal)?;
        let in_flight = head.as_ref().map(|m| m.id);
        let resp = match head {
            Some(m) => {
                inc(&self.shared.stats.messages_out);
                seal_msg(&key, m)?
            }
            None => Response::Ok,
        };
        subs.insert(rid, Sub { key, in_flight });
        Ok(resp)
    }

    async fn ack(&self, rid: EntityId, msg_id: MsgId) -> Result<Response, ErrorCode> {
        let mut subs = self.conn.subs.lock().await;
        match self
            .shared
            .store
            .ack(&rid, &msg_id)
            .await
            .map_err(internal)?
        {
            AckOutcome::Acked => self.shared.ledger.release(rid, msg_id),
            AckOutcome::NoMessage => {
                // The message in flight may have expired: if the head is another one, let
                // the deliverer push it, or the subscription would wait for ever.
                if let Some(sub) = subs.get_mut(&rid) {
                    let head = self.shared.store.peek(&rid).await.map_err(internal)?;
                    if head.map(|m| m.id) != sub.in_flight {
                        sub.in_flight = None;
                        self.conn.kick(rid);
                    }
                }
                return Err(ErrorCode::NoMsg);
            }
            AckOutcome::NoQueue => return Err(ErrorCode::Auth),
        }
        let Some(sub) = subs.get_mut(&rid) else {
            return Ok(Response::Ok);
        };
        match self.shared.store.peek(&rid).await.map_err(internal)? {
            Some(m) => {
                sub.in_flight = Some(m.id);
                inc(&self.shared.stats.messages_out);
                seal_msg(&sub.key, m)
            }
            None => {
                sub.in_flight = None;
                Ok(Response::Ok)
            }
        }
    }
}

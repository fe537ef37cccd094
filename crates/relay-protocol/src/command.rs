//! Commands (client → relay) and responses (relay → client): tags, fields, and which
//! authorization and entity each command requires.

use super::{
    crypto::SEALED_LEN,
    forward::{ForwardKey, Sealed, RESPONSE_SEALED_LEN},
    CmdError, DecodeError, EntityId, ErrorCode, MsgId, Reader, ID_LEN, KEY_LEN, MAX_BODY,
};

/// A client's command. Tags and fields are in the [module docs](super).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Command {
    /// Create a queue: the recipient's Ed25519 key (authorises recipient commands) and X25519
    /// key (for re-encrypting deliveries). Signed with that Ed25519 key.
    New {
        recipient_key: [u8; KEY_LEN],
        recipient_dh: [u8; KEY_LEN],
    },
    /// Secure the queue: only SENDs signed with this key are accepted from now on.
    Key {
        sender_key: [u8; KEY_LEN],
    },
    Send {
        body: Vec<u8>,
    },
    Sub,
    Get,
    Ack {
        msg_id: MsgId,
    },
    /// Suspend: refuse senders, let the recipient drain the queue.
    Off,
    Del,
    Ping,
    /// What the relay sells and to whom it is paid: answered with [`Response::Info`].
    Info,
    /// Pay for capacity of the named queue (recipient id) or channel (owner id) with operator
    /// credits: `request` is a JSON `POST /v1/swap` request (NUT-03: inputs and blinded
    /// change) whose inputs minus outputs is the payment. Answered with [`Response::Paid`].
    Pay {
        request: Vec<u8>,
    },
    /// Create a channel: its owner's Ed25519 key (authorises POST, USAGE and PAY on it).
    /// Signed with that key. Answered with [`Response::Channel`].
    NewChannel {
        owner_key: [u8; KEY_LEN],
    },
    /// Join a channel (entity: its join id) with a member queue: the member's Ed25519 key
    /// (authorises SUB/GET/ACK/DEL on the member queue) and X25519 key (deliveries).
    /// Signed with the new member key. Answered with [`Response::Member`].
    Join {
        recipient_key: [u8; KEY_LEN],
        recipient_dh: [u8; KEY_LEN],
    },
    /// The owner posts to a channel (entity: owner id): delivered to every member queue.
    Post {
        body: Vec<u8>,
    },
    /// The owner asks for a channel's usage and balance (entity: owner id).
    Usage,
    /// PRXY (private routing, [`super::forward`]): ask this relay to act as proxy towards the
    /// destination relay at this `smpx://` address (UTF-8 text). Answered with
    /// [`Response::ProxyKey`].
    Proxy {
        destination: Vec<u8>,
    },
    /// PFWD: forward a sealed inner transmission through the proxy session named by the
    /// entity. Answered with [`Response::Forwarded`].
    ProxyForward(Sealed),
    /// RKEY (proxy → destination): the destination's forwarding key for this connection.
    /// Answered with [`Response::RelayKey`].
    RelayKey,
    /// RFWD (proxy → destination): run a sealed inner transmission. Answered with
    /// [`Response::Forwarded`].
    RelayForward(Sealed),
}

/// How a command must be authorised.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Auth {
    /// Must carry a signature.
    Required,
    /// Signed when the queue is secured, unsigned before (SEND).
    Optional,
    /// Must not carry one (PING).
    None,
}

impl Command {
    fn tag(&self) -> u8 {
        match self {
            Command::New { .. } => b'N',
            Command::Key { .. } => b'K',
            Command::Send { .. } => b'S',
            Command::Sub => b'B',
            Command::Get => b'G',
            Command::Ack { .. } => b'A',
            Command::Off => b'O',
            Command::Del => b'D',
            Command::Ping => b'P',
            Command::Info => b'I',
            Command::Pay { .. } => b'$',
            Command::NewChannel { .. } => b'C',
            Command::Join { .. } => b'J',
            Command::Post { .. } => b'T',
            Command::Usage => b'U',
            Command::Proxy { .. } => b'X',
            Command::ProxyForward(_) => b'F',
            Command::RelayKey => b'R',
            Command::RelayForward(_) => b'W',
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.tag()];
        match self {
            Command::New {
                recipient_key,
                recipient_dh,
            } => {
                out.extend_from_slice(recipient_key);
                out.extend_from_slice(recipient_dh);
            }
            Command::Key { sender_key } => out.extend_from_slice(sender_key),
            Command::Send { body } | Command::Post { body } => out.extend_from_slice(body),
            Command::Ack { msg_id } => out.extend_from_slice(&msg_id.0),
            Command::Pay { request } => out.extend_from_slice(request),
            Command::Proxy { destination } => out.extend_from_slice(destination),
            Command::ProxyForward(s) | Command::RelayForward(s) => s.encode(&mut out),
            Command::NewChannel { owner_key } => out.extend_from_slice(owner_key),
            Command::Join {
                recipient_key,
                recipient_dh,
            } => {
                out.extend_from_slice(recipient_key);
                out.extend_from_slice(recipient_dh);
            }
            Command::Sub
            | Command::Get
            | Command::Off
            | Command::Del
            | Command::Ping
            | Command::Info
            | Command::Usage
            | Command::RelayKey => {}
        }
        out
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        let cmd = match r.u8()? {
            b'N' => Command::New {
                recipient_key: r.array()?,
                recipient_dh: r.array()?,
            },
            b'K' => Command::Key {
                sender_key: r.array()?,
            },
            b'S' => Command::Send {
                body: body(&mut r)?,
            },
            b'T' => Command::Post {
                body: body(&mut r)?,
            },
            b'$' => Command::Pay {
                request: r.rest().to_vec(),
            },
            b'C' => Command::NewChannel {
                owner_key: r.array()?,
            },
            b'J' => Command::Join {
                recipient_key: r.array()?,
                recipient_dh: r.array()?,
            },
            b'I' => Command::Info,
            b'X' => {
                let destination = r.rest();
                if destination.len() > crate::address::MAX_ADDRESS_LEN {
                    return Err(DecodeError::FieldLength);
                }
                Command::Proxy {
                    destination: destination.to_vec(),
                }
            }
            b'F' => Command::ProxyForward(Sealed::decode(&mut r)?),
            b'R' => Command::RelayKey,
            b'W' => Command::RelayForward(Sealed::decode(&mut r)?),
            b'U' => Command::Usage,
            b'B' => Command::Sub,
            b'G' => Command::Get,
            b'A' => Command::Ack {
                msg_id: MsgId(r.array::<ID_LEN>()?),
            },
            b'O' => Command::Off,
            b'D' => Command::Del,
            b'P' => Command::Ping,
            t => return Err(DecodeError::UnknownTag(t)),
        };
        if !r.is_empty() {
            return Err(DecodeError::FieldLength);
        }
        Ok(cmd)
    }

    pub fn auth(&self) -> Auth {
        match self {
            Command::Ping
            | Command::Info
            | Command::Proxy { .. }
            | Command::ProxyForward(_)
            | Command::RelayKey
            | Command::RelayForward(_) => Auth::None,
            Command::Send { .. } => Auth::Optional,
            _ => Auth::Required,
        }
    }

    /// Whether the command names a queue or channel (all but NEW, PING, INFO and NEWC).
    pub fn needs_entity(&self) -> bool {
        !matches!(
            self,
            Command::New { .. }
                | Command::Ping
                | Command::Info
                | Command::NewChannel { .. }
                | Command::Proxy { .. }
                | Command::RelayKey
                | Command::RelayForward(_)
        )
    }

    /// Checks the transmission's shape (signature and entity present or absent) before any
    /// lookup, so these errors say nothing about which queues exist.
    pub fn check_shape(&self, has_auth: bool, has_entity: bool) -> Result<(), ErrorCode> {
        let cmd = |e| Err(ErrorCode::Cmd(e));
        match (self.needs_entity(), has_entity) {
            (true, false) => return cmd(CmdError::NoEntity),
            (false, true) => return cmd(CmdError::HasEntity),
            _ => {}
        }
        match (self.auth(), has_auth) {
            (Auth::Required, false) => cmd(CmdError::NoAuth),
            (Auth::None, true) => cmd(CmdError::HasAuth),
            _ => Ok(()),
        }
    }
}

/// A SEND or POST body: the rest of the command, at most [`MAX_BODY`] bytes.
fn body(r: &mut Reader<'_>) -> Result<Vec<u8>, DecodeError> {
    let body = r.rest();
    if body.len() > MAX_BODY {
        return Err(DecodeError::BodyTooLarge(body.len()));
    }
    Ok(body.to_vec())
}

/// A relay's response or pushed message. Tags and fields are in the [module docs](super).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Response {
    Ids {
        recipient_id: EntityId,
        sender_id: EntityId,
        /// The relay's X25519 public key for this queue.
        server_dh: [u8; KEY_LEN],
    },
    /// A message, sealed for the recipient ([`super::crypto::open`]); always
    /// [`SEALED_LEN`] bytes.
    Msg {
        msg_id: MsgId,
        sealed: Vec<u8>,
    },
    Ok,
    /// The subscription to the transmission's queue moved to another connection.
    End,
    Pong,
    Err(ErrorCode),
    /// INFO: JSON, see [`crate::capacity::RelayInfo`].
    Info {
        json: Vec<u8>,
    },
    /// PAY: JSON, see [`crate::capacity::PayAnswer`].
    Paid {
        json: Vec<u8>,
    },
    /// NEWC: the owner's id (entity of POST/USAGE/PAY) and the join id to give members.
    Channel {
        owner_id: EntityId,
        join_id: EntityId,
    },
    /// JOIN: the member queue's recipient id and the relay's X25519 key for it.
    Member {
        recipient_id: EntityId,
        server_dh: [u8; KEY_LEN],
    },
    /// USAGE: JSON, see [`crate::capacity::ChannelUsageReport`].
    Usage {
        json: Vec<u8>,
    },
    /// PKEY, the proxy's answer to PRXY: the proxy session id (the entity of PFWD) and the
    /// destination's key material, which the client verifies itself.
    ProxyKey {
        session: EntityId,
        key: ForwardKey,
    },
    /// The destination's answer to RKEY: its forwarding key for this connection.
    RelayKey {
        key: ForwardKey,
    },
    /// PRES: the sealed inner response (to RFWD, and relayed unchanged to PFWD); always
    /// [`RESPONSE_SEALED_LEN`] bytes.
    Forwarded {
        sealed: Vec<u8>,
    },
}

impl Response {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Response::Ids {
                recipient_id,
                sender_id,
                server_dh,
            } => {
                let mut out = vec![b'i'];
                out.extend_from_slice(&recipient_id.0);
                out.extend_from_slice(&sender_id.0);
                out.extend_from_slice(server_dh);
                out
            }
            Response::Msg { msg_id, sealed } => {
                let mut out = Vec::with_capacity(1 + ID_LEN + sealed.len());
                out.push(b'm');
                out.extend_from_slice(&msg_id.0);
                out.extend_from_slice(sealed);
                out
            }
            Response::Ok => vec![b'k'],
            Response::End => vec![b'e'],
            Response::Pong => vec![b'p'],
            Response::Err(code) => {
                let mut out = vec![b'x'];
                code.encode(&mut out);
                out
            }
            Response::Info { json } => tagged(b'n', json),
            Response::Paid { json } => tagged(b'c', json),
            Response::Usage { json } => tagged(b'u', json),
            Response::Channel { owner_id, join_id } => {
                let mut out = vec![b'h'];
                out.extend_from_slice(&owner_id.0);
                out.extend_from_slice(&join_id.0);
                out
            }
            Response::Member {
                recipient_id,
                server_dh,
            } => {
                let mut out = vec![b'j'];
                out.extend_from_slice(&recipient_id.0);
                out.extend_from_slice(server_dh);
                out
            }
            Response::ProxyKey { session, key } => {
                let mut out = vec![b'y'];
                out.extend_from_slice(&session.0);
                key.encode(&mut out);
                out
            }
            Response::RelayKey { key } => {
                let mut out = vec![b'r'];
                key.encode(&mut out);
                out
            }
            Response::Forwarded { sealed } => tagged(b'f', sealed),
        }
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        let resp = match r.u8()? {
            b'i' => Response::Ids {
                recipient_id: EntityId(r.array()?),
                sender_id: EntityId(r.array()?),
                server_dh: r.array()?,
            },
            b'm' => {
                let msg_id = MsgId(r.array()?);
                let sealed = r.take(SEALED_LEN)?.to_vec();
                Response::Msg { msg_id, sealed }
            }
            b'k' => Response::Ok,
            b'e' => Response::End,
            b'p' => Response::Pong,
            b'x' => Response::Err(ErrorCode::decode(r.rest())?),
            b'n' => Response::Info {
                json: r.rest().to_vec(),
            },
            b'c' => Response::Paid {
                json: r.rest().to_vec(),
            },
            b'u' => Response::Usage {
                json: r.rest().to_vec(),
            },
            b'y' => Response::ProxyKey {
                session: EntityId(r.array()?),
                key: ForwardKey::decode(&mut r)?,
            },
            b'r' => Response::RelayKey {
                key: ForwardKey::decode(&mut r)?,
            },
            b'f' => Response::Forwarded {
                sealed: r.take(RESPONSE_SEALED_LEN)?.to_vec(),
            },
            b'h' => Response::Channel {
                owner_id: EntityId(r.array()?),
                join_id: EntityId(r.array()?),
            },
            b'j' => Response::Member {
                recipient_id: EntityId(r.array()?),
                server_dh: r.array()?,
            },
            t => return Err(DecodeError::UnknownTag(t)),
        };
        if !r.is_empty() {
            return Err(DecodeError::FieldLength);
        }
        Ok(resp)
    }
}

fn tagged(tag: u8, rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + rest.len());
    out.push(tag);
    out.extend_from_slice(rest);
    out
}

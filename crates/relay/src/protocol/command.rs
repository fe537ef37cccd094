//! Commands (client → relay) and responses (relay → client): tags, fields, and which
//! authorization and entity each command requires.

use super::{
    crypto::SEALED_LEN, CmdError, DecodeError, EntityId, ErrorCode, MsgId, Reader, ID_LEN, KEY_LEN,
    MAX_BODY,
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
            Command::Send { body } => out.extend_from_slice(body),
            Command::Ack { msg_id } => out.extend_from_slice(&msg_id.0),
            Command::Sub | Command::Get | Command::Off | Command::Del | Command::Ping => {}
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
            b'S' => {
                let body = r.rest();
                if body.len() > MAX_BODY {
                    return Err(DecodeError::BodyTooLarge(body.len()));
                }
                Command::Send {
                    body: body.to_vec(),
                }
            }
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
            Command::Ping => Auth::None,
            Command::Send { .. } => Auth::Optional,
            _ => Auth::Required,
        }
    }

    /// Whether the command names a queue (all but NEW and PING).
    pub fn needs_entity(&self) -> bool {
        !matches!(self, Command::New { .. } | Command::Ping)
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
            t => return Err(DecodeError::UnknownTag(t)),
        };
        if !r.is_empty() {
            return Err(DecodeError::FieldLength);
        }
        Ok(resp)
    }
}

//! The version handshake: one block each way before any transmission.
//!
//! ```text
//! ServerHello = "SMPX" ‖ u16 min_version ‖ u16 max_version ‖ session_id[32]
//! ClientHello = "SMPX" ‖ u16 version
//! ```

use super::{
    block::{block_content, pad_block},
    DecodeError, Reader, SessionId, VERSION_MAX, VERSION_MIN,
};

const MAGIC: &[u8; 4] = b"SMPX";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ServerHello {
    pub min_version: u16,
    pub max_version: u16,
    /// The session id as the relay's transport sees it.
    pub session_id: SessionId,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ClientHello {
    pub version: u16,
}

impl ServerHello {
    pub fn new(session_id: SessionId) -> Self {
        Self {
            min_version: VERSION_MIN,
            max_version: VERSION_MAX,
            session_id,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut c = MAGIC.to_vec();
        c.extend_from_slice(&self.min_version.to_be_bytes());
        c.extend_from_slice(&self.max_version.to_be_bytes());
        c.extend_from_slice(&self.session_id);
        pad_block(&c)
    }

    pub fn decode(block: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(block_content(block)?);
        if r.take(4).map_err(|_| DecodeError::BadHello)? != MAGIC {
            return Err(DecodeError::BadHello);
        }
        let hello = Self {
            min_version: r.u16()?,
            max_version: r.u16()?,
            session_id: r.array()?,
        };
        if !r.is_empty() {
            return Err(DecodeError::FieldLength);
        }
        if hello.min_version > hello.max_version {
            return Err(DecodeError::BadVersionRange);
        }
        Ok(hello)
    }

    /// The version a client speaking `VERSION_MIN..=VERSION_MAX` picks, if any.
    pub fn pick_version(&self) -> Option<u16> {
        let v = self.max_version.min(VERSION_MAX);
        (v >= self.min_version.max(VERSION_MIN)).then_some(v)
    }
}

impl ClientHello {
    pub fn encode(&self) -> Vec<u8> {
        let mut c = MAGIC.to_vec();
        c.extend_from_slice(&self.version.to_be_bytes());
        pad_block(&c)
    }

    pub fn decode(block: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(block_content(block)?);
        if r.take(4).map_err(|_| DecodeError::BadHello)? != MAGIC {
            return Err(DecodeError::BadHello);
        }
        let hello = Self { version: r.u16()? };
        if !r.is_empty() {
            return Err(DecodeError::FieldLength);
        }
        Ok(hello)
    }

    /// Whether a relay speaking our range accepts this version.
    pub fn acceptable(&self) -> bool {
        (VERSION_MIN..=VERSION_MAX).contains(&self.version)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn hellos_round_trip_and_pick() {
        let s = ServerHello::new([3; 32]);
        let d = ServerHello::decode(&s.encode()).unwrap();
        assert_eq!(d, s);
        assert_eq!(d.pick_version(), Some(VERSION_MAX));
        let c = ClientHello { version: 1 };
        assert_eq!(ClientHello::decode(&c.encode()).unwrap(), c);
        let future = ServerHello {
            min_version: 7,
            max_version: 9,
            session_id: [0; 32],
        };
        assert_eq!(future.pick_version(), None);
        assert!(!ClientHello { version: 0 }.acceptable());
    }
}

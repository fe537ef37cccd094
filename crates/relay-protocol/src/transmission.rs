//! One transmission: authorization, correlation id, entity id, command.
//!
//! ```text
//! u8 auth_length (0 | 64) ‖ auth ‖ corr_id[24] ‖ u8 entity_length (0 | 24) ‖ entity ‖ command
//! ```
//!
//! The signed part is everything after the auth field; [`crate::crypto`] prefixes
//! it with a context string and the session id before signing.

use super::{CorrId, DecodeError, EntityId, Reader, CORR_ID_LEN, ID_LEN, SIGNATURE_LEN};

/// A transmission split into its fields; the command is still bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmission<'a> {
    pub auth: Option<[u8; SIGNATURE_LEN]>,
    pub corr_id: CorrId,
    pub entity: Option<EntityId>,
    /// The command or response (tag and fields).
    pub command: &'a [u8],
    /// The bytes the signature covers (corr id to the end).
    pub signed: &'a [u8],
}

/// Splits a transmission into its fields.
pub fn parse_transmission(t: &[u8]) -> Result<Transmission<'_>, DecodeError> {
    let mut r = Reader::new(t);
    let auth = match r.u8()? {
        0 => None,
        64 => Some(r.array::<SIGNATURE_LEN>()?),
        n => return Err(DecodeError::AuthLength(n)),
    };
    let signed = r.rest();
    let mut r = Reader::new(signed);
    let corr_id = CorrId(r.array::<CORR_ID_LEN>()?);
    let entity = match r.u8()? {
        0 => None,
        24 => Some(EntityId(r.array::<ID_LEN>()?)),
        n => return Err(DecodeError::EntityLength(n)),
    };
    let command = r.rest();
    Ok(Transmission {
        auth,
        corr_id,
        entity,
        command,
        signed,
    })
}

/// The signed part of a transmission: `corr_id ‖ entity ‖ command`.
pub fn signed_part(corr_id: &CorrId, entity: Option<&EntityId>, command: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(CORR_ID_LEN + 1 + ID_LEN + command.len());
    out.extend_from_slice(&corr_id.0);
    match entity {
        Some(e) => {
            out.push(ID_LEN as u8);
            out.extend_from_slice(&e.0);
        }
        None => out.push(0),
    }
    out.extend_from_slice(command);
    out
}

/// A whole transmission from its signature (if any) and signed part.
pub fn encode_transmission(auth: Option<&[u8; SIGNATURE_LEN]>, signed: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + SIGNATURE_LEN + signed.len());
    match auth {
        Some(a) => {
            out.push(SIGNATURE_LEN as u8);
            out.extend_from_slice(a);
        }
        None => out.push(0),
    }
    out.extend_from_slice(signed);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let e = EntityId([5; 24]);
        let c = CorrId([9; 24]);
        let signed = signed_part(&c, Some(&e), b"Bxyz");
        let t = encode_transmission(Some(&[1; 64]), &signed);
        let p = parse_transmission(&t).unwrap();
        assert_eq!(p.auth, Some([1; 64]));
        assert_eq!(p.corr_id, c);
        assert_eq!(p.entity, Some(e));
        assert_eq!(p.command, b"Bxyz");
        assert_eq!(p.signed, &signed[..]);
    }

    #[test]
    fn bad_lengths() {
        assert_eq!(parse_transmission(&[]), Err(DecodeError::Truncated));
        assert_eq!(parse_transmission(&[3]), Err(DecodeError::AuthLength(3)));
        assert_eq!(parse_transmission(&[64, 1]), Err(DecodeError::Truncated));
        let mut t = vec![0; 25];
        t.push(7);
        assert_eq!(parse_transmission(&t), Err(DecodeError::EntityLength(7)));
    }
}

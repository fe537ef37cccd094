//! Fixed-size blocks: a content length, one or more length-prefixed transmissions, padding.
//!
//! ```text
//! u16 content_length ‖ u8 count ‖ count × (u16 length ‖ transmission) ‖ '#' padding
//! ```
//!
//! Every block is [`BLOCK_SIZE`] bytes whatever it carries, so an observer of the TLS stream
//! learns how many blocks flow, never how big the commands in them are.

use super::{DecodeError, Reader, BLOCK_SIZE};

/// The most content a block carries (after its 2-byte content length).
pub const MAX_CONTENT: usize = BLOCK_SIZE - 2;
/// The longest single transmission a block can carry.
pub const MAX_TRANSMISSION: usize = MAX_CONTENT - 1 - 2;
const PAD: u8 = b'#';

/// Packs transmissions into one block.
#[derive(Debug)]
pub struct BlockBuilder {
    /// `count ‖ (len ‖ transmission)*`, without the content length.
    content: Vec<u8>,
}

impl Default for BlockBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl BlockBuilder {
    pub fn new() -> Self {
        let mut content = Vec::with_capacity(MAX_CONTENT);
        content.push(0);
        Self { content }
    }

    pub fn count(&self) -> usize {
        usize::from(self.content[0])
    }

    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }

    /// Whether `len` more bytes of transmission would fit.
    pub fn fits(&self, len: usize) -> bool {
        self.count() < 255 && self.content.len() + 2 + len <= MAX_CONTENT
    }

    /// Adds a transmission; `false` (and nothing added) when it does not fit.
    pub fn push(&mut self, transmission: &[u8]) -> bool {
        if !self.fits(transmission.len()) {
            return false;
        }
        // Fits means len ≤ MAX_TRANSMISSION < u16::MAX.
        let len = transmission.len() as u16;
        self.content.extend_from_slice(&len.to_be_bytes());
        self.content.extend_from_slice(transmission);
        self.content[0] += 1;
        true
    }

    /// The padded block.
    pub fn finish(self) -> Vec<u8> {
        pad_block(&self.content)
    }
}

/// A block carrying `content` (at most [`MAX_CONTENT`] bytes; longer content is cut, which
/// callers never do: the builder and the hellos stay far below).
pub(crate) fn pad_block(content: &[u8]) -> Vec<u8> {
    let content = &content[..content.len().min(MAX_CONTENT)];
    let mut block = Vec::with_capacity(BLOCK_SIZE);
    block.extend_from_slice(&(content.len() as u16).to_be_bytes());
    block.extend_from_slice(content);
    block.resize(BLOCK_SIZE, PAD);
    block
}

/// The content of a block (after its length, before the padding).
pub(crate) fn block_content(block: &[u8]) -> Result<&[u8], DecodeError> {
    if block.len() != BLOCK_SIZE {
        return Err(DecodeError::BlockSize(block.len()));
    }
    let mut r = Reader::new(block);
    let len = usize::from(r.u16()?);
    if len == 0 || len > MAX_CONTENT {
        return Err(DecodeError::ContentLength(len));
    }
    r.take(len)
}

/// Splits a block into its transmissions (still undecoded).
pub fn decode_block(block: &[u8]) -> Result<Vec<&[u8]>, DecodeError> {
    let mut r = Reader::new(block_content(block)?);
    let count = r.u8()?;
    if count == 0 {
        return Err(DecodeError::NoTransmissions);
    }
    let mut out = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let len = usize::from(r.u16().map_err(|_| DecodeError::TransmissionLength)?);
        out.push(r.take(len).map_err(|_| DecodeError::TransmissionLength)?);
    }
    if !r.is_empty() {
        return Err(DecodeError::TrailingContent);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn several_transmissions_round_trip() {
        let mut b = BlockBuilder::new();
        assert!(b.push(b"one"));
        assert!(b.push(b""));
        assert!(b.push(&[7u8; 1000]));
        let block = b.finish();
        assert_eq!(block.len(), BLOCK_SIZE);
        let ts = decode_block(&block).unwrap();
        assert_eq!(ts, vec![&b"one"[..], &b""[..], &[7u8; 1000][..]]);
    }

    #[test]
    fn builder_refuses_what_does_not_fit() {
        let mut b = BlockBuilder::new();
        assert!(!b.push(&vec![0; MAX_TRANSMISSION + 1]));
        assert!(b.push(&vec![0; MAX_TRANSMISSION]));
        assert!(!b.push(b""));
        assert_eq!(
            decode_block(&b.finish()).unwrap()[0].len(),
            MAX_TRANSMISSION
        );
    }

    #[test]
    fn malformed_blocks_are_typed_errors() {
        assert_eq!(decode_block(&[0; 10]), Err(DecodeError::BlockSize(10)));
        assert_eq!(
            decode_block(&vec![0; BLOCK_SIZE]),
            Err(DecodeError::ContentLength(0))
        );
        let mut block = vec![0xff; BLOCK_SIZE];
        assert_eq!(
            decode_block(&block),
            Err(DecodeError::ContentLength(0xffff))
        );
        block[0] = 0;
        block[1] = 1;
        block[2] = 0;
        assert_eq!(decode_block(&block), Err(DecodeError::NoTransmissions));
        block[1] = 3;
        block[2] = 1;
        block[3] = 0;
        block[4] = 9;
        assert_eq!(decode_block(&block), Err(DecodeError::TransmissionLength));
    }
}

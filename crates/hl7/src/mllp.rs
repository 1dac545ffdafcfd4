//! MLLP framing (`0x0B` payload `0x1C 0x0D`) as a tokio-util codec.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

const SB: u8 = 0x0b;
const EB: u8 = 0x1c;
const CR: u8 = 0x0d;

/// Framing errors.
#[derive(Debug, thiserror::Error)]
pub enum MllpError {
    /// A frame grew past the configured limit.
    #[error("MLLP frame larger than {0} bytes")]
    FrameTooLarge(usize),
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The MLLP codec. Bytes before a start block are skipped (junk between frames).
#[derive(Clone, Debug)]
pub struct MllpCodec {
    max_frame: usize,
    /// Where to resume searching for the end block within the current frame.
    scanned: usize,
}

impl MllpCodec {
    /// A codec accepting frames up to `max_frame` payload bytes.
    pub fn new(max_frame: usize) -> Self {
        MllpCodec {
            max_frame,
            scanned: 0,
        }
    }
}

impl Default for MllpCodec {
    fn default() -> Self {
        MllpCodec::new(16 * 1024 * 1024)
    }
}

impl Decoder for MllpCodec {
    type Item = Bytes;
    type Error = MllpError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, MllpError> {
        // Skip junk up to the start block.
        match src.iter().position(|b| *b == SB) {
            Some(0) => {}
            Some(p) => {
                src.advance(p);
                self.scanned = 0;
            }
            None => {
                src.clear();
                self.scanned = 0;
                return Ok(None);
            }
        }
        let from = self.scanned.max(1);
        if let Some(rel) = src[from..].windows(2).position(|w| w == [EB, CR]) {
            let end = from + rel;
            if end - 1 > self.max_frame {
                return Err(MllpError::FrameTooLarge(self.max_frame));
            }
            let frame = src.split_to(end + 2);
            self.scanned = 0;
            let payload = frame.freeze().slice(1..end);
            return Ok(Some(payload));
        }
        if src.len() > self.max_frame + 2 {
            return Err(MllpError::FrameTooLarge(self.max_frame));
        }
        // The last byte may be the EB of a split EB CR.
        self.scanned = src.len().saturating_sub(1).max(1);
        Ok(None)
    }
}

impl Encoder<Bytes> for MllpCodec {
    type Error = MllpError;
    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), MllpError> {
        self.encode(item.as_ref(), dst)
    }
}

impl Encoder<&[u8]> for MllpCodec {
    type Error = MllpError;
    fn encode(&mut self, item: &[u8], dst: &mut BytesMut) -> Result<(), MllpError> {
        dst.reserve(item.len() + 3);
        dst.put_u8(SB);
        dst.put_slice(item);
        dst.put_u8(EB);
        dst.put_u8(CR);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(c: &mut MllpCodec, buf: &mut BytesMut) -> Vec<Bytes> {
        let mut out = Vec::new();
        while let Some(f) = c.decode(buf).unwrap() {
            out.push(f);
        }
        out
    }

    #[test]
    fn junk_split_reads_and_several_frames() {
        let mut c = MllpCodec::new(1024);
        let mut buf = BytesMut::from(&b"garbage\r\n\x0bMSH|1\x1c"[..]);
        assert!(frames(&mut c, &mut buf).is_empty());
        buf.extend_from_slice(b"\r\x0bMSH|2\x1c\r\x0bMSH");
        let f = frames(&mut c, &mut buf);
        assert_eq!(
            f,
            vec![Bytes::from_static(b"MSH|1"), Bytes::from_static(b"MSH|2")]
        );
        buf.extend_from_slice(b"|3\x1c\r");
        assert_eq!(frames(&mut c, &mut buf), vec![Bytes::from_static(b"MSH|3")]);
        // A 0x1C inside a payload without CR is data.
        buf.extend_from_slice(b"\x0ba\x1cb\x1c\r");
        assert_eq!(
            frames(&mut c, &mut buf),
            vec![Bytes::from_static(b"a\x1cb")]
        );
    }

    #[test]
    fn max_frame_enforced() {
        let mut c = MllpCodec::new(8);
        let mut buf = BytesMut::from(&b"\x0b0123456789abc"[..]);
        assert!(matches!(
            c.decode(&mut buf),
            Err(MllpError::FrameTooLarge(8))
        ));
        // Also when the whole oversized frame arrives in one read.
        let mut c = MllpCodec::new(8);
        let mut buf = BytesMut::from(&b"\x0b0123456789\x1c\r"[..]);
        assert!(matches!(
            c.decode(&mut buf),
            Err(MllpError::FrameTooLarge(8))
        ));
        // Exactly max_frame is fine.
        let mut buf = BytesMut::from(&b"\x0b01234567\x1c\r"[..]);
        assert_eq!(c.decode(&mut buf).unwrap().unwrap().len(), 8);
    }

    #[test]
    fn encodes() {
        let mut c = MllpCodec::default();
        let mut dst = BytesMut::new();
        c.encode(&b"ACK"[..], &mut dst).unwrap();
        assert_eq!(&dst[..], b"\x0bACK\x1c\r");
    }
}

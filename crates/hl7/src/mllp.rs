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

/// The MLLP codec. Bytes before a start block are skipped (junk between frames). A start
/// block inside a frame (before its `0x1C 0x0D`) means the frame lost its end block: the
/// partial frame is discarded and decoding resynchronises at the new start block (MLLP
/// payloads never hold `0x0B`); [`MllpCodec::take_discarded`] says how much was dropped.
#[derive(Clone, Debug)]
pub struct MllpCodec {
    max_frame: usize,
    /// Where to resume searching for the end block within the current frame.
    scanned: usize,
    /// Partial frames dropped since the last [`MllpCodec::take_discarded`].
    discarded: Discarded,
}

/// Partial frames the decoder dropped on resynchronising (counts only: never their bytes,
/// which may hold patient data).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Discarded {
    /// Frames that lost their end block.
    pub frames: u64,
    /// Their payload bytes (without the start blocks).
    pub bytes: u64,
}

impl MllpCodec {
    /// A codec accepting frames up to `max_frame` payload bytes.
    pub fn new(max_frame: usize) -> Self {
        MllpCodec {
            max_frame,
            scanned: 0,
            discarded: Discarded::default(),
        }
    }

    /// The partial frames dropped since the last call, if any (for a warning by the caller).
    pub fn take_discarded(&mut self) -> Option<Discarded> {
        let d = std::mem::take(&mut self.discarded);
        (d.frames > 0).then_some(d)
    }
}

impl Default for MllpCodec {
    fn default() -> Self {
        MllpCodec::new(16 * 1024 * 1024)
    }
}

/// What the scan of a frame found after its start block.
enum Found {
    /// `0x1C 0x0D` at this index.
    End(usize),
    /// Another start block at this index.
    Start(usize),
}

impl Decoder for MllpCodec {
    type Item = Bytes;
    type Error = MllpError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, MllpError> {
        loop {
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
            let mut at = self.scanned.max(1);
            let found = loop {
                let Some(rel) = src
                    .get(at..)
                    .and_then(|rest| rest.iter().position(|&b| b == SB || b == EB))
                else {
                    break None;
                };
                let i = at + rel;
                if src[i] == SB {
                    break Some(Found::Start(i));
                }
                match src.get(i + 1) {
                    Some(&CR) => break Some(Found::End(i)),
                    // A 0x1C without CR is data.
                    Some(_) => at = i + 1,
                    // The EB of a split EB CR: wait for the next read.
                    None => break None,
                }
            };
            match found {
                Some(Found::End(end)) => {
                    if end - 1 > self.max_frame {
                        return Err(MllpError::FrameTooLarge(self.max_frame));
                    }
                    let frame = src.split_to(end + 2);
                    self.scanned = 0;
                    let payload = frame.freeze().slice(1..end);
                    return Ok(Some(payload));
                }
                Some(Found::Start(next)) => {
                    // The frame lost its end block: drop it, resynchronise at `next`.
                    self.discarded.frames += 1;
                    self.discarded.bytes += (next - 1) as u64;
                    src.advance(next);
                    self.scanned = 0;
                }
                None => {
                    if src.len() > self.max_frame + 2 {
                        return Err(MllpError::FrameTooLarge(self.max_frame));
                    }
                    // The last byte may be the EB of a split EB CR.
                    self.scanned = src.len().saturating_sub(1).max(1);
                    return Ok(None);
                }
            }
        }
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

    /// Issue 16, finding 14: a frame that lost its end block (`0x0B partial 0x0B valid
    /// 0x1C 0x0D`) used to come out as one payload `partial 0x0B valid`, which the parser
    /// rejected (AR) — and a sender honouring AR dropped the valid message. The decoder now
    /// resynchronises at the new start block and reports what it discarded.
    #[test]
    fn resynchronises_at_a_new_start_block() {
        let mut c = MllpCodec::new(1024);
        let mut buf = BytesMut::from(&b"\x0bMSH|partial\rPID|1\x0bMSH|valid\x1c\r"[..]);
        assert_eq!(
            frames(&mut c, &mut buf),
            vec![Bytes::from_static(b"MSH|valid")]
        );
        assert_eq!(
            c.take_discarded(),
            Some(Discarded {
                frames: 1,
                bytes: 17
            })
        );
        assert_eq!(c.take_discarded(), None);
        // Split across reads, the new start block arriving after the scan resumed, and two
        // broken frames in a row; a lone EB inside the partial frame does not confuse it.
        buf.extend_from_slice(b"\x0bMSH|a\x1c");
        assert!(frames(&mut c, &mut buf).is_empty());
        buf.extend_from_slice(b"x\x0bMSH|b");
        assert!(frames(&mut c, &mut buf).is_empty());
        buf.extend_from_slice(b"\x0bMSH|c\x1c");
        assert!(frames(&mut c, &mut buf).is_empty());
        buf.extend_from_slice(b"\r\x0bMSH|d\x1c\r");
        assert_eq!(
            frames(&mut c, &mut buf),
            vec![Bytes::from_static(b"MSH|c"), Bytes::from_static(b"MSH|d")]
        );
        assert_eq!(
            c.take_discarded(),
            Some(Discarded {
                frames: 2,
                bytes: 12
            })
        );
        // The frame limit still holds for the frame after a discarded one.
        let mut c = MllpCodec::new(8);
        let mut buf = BytesMut::from(&b"\x0bab\x0b0123456789"[..]);
        assert!(matches!(
            c.decode(&mut buf),
            Err(MllpError::FrameTooLarge(8))
        ));
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

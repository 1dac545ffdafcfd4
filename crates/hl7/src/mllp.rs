//! MLLP framing (`0x0B` payload `0x1C 0x0D`) as a tokio-util codec.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

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
    /// The frames being received on every connection of the listener hold the whole shared
    /// budget: this connection's frame may grow no further.
    #[error("MLLP frames in progress hold the listener's whole memory budget ({0} bytes)")]
    BudgetExhausted(usize),
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Memory shared by every connection of a listener for frames being received: each
/// connection's first `own` buffered bytes are its own; beyond that it draws on the shared
/// `limit`. So `connections × own + limit` bounds what frames in progress can hold, however
/// many peers send unterminated frames, and a small message always gets through.
#[derive(Debug)]
pub struct FrameBudget {
    limit: usize,
    own: usize,
    used: AtomicUsize,
}

impl FrameBudget {
    /// A budget of `limit` shared bytes above `own` bytes per connection.
    pub fn new(limit: usize, own: usize) -> Arc<FrameBudget> {
        Arc::new(FrameBudget {
            limit,
            own,
            used: AtomicUsize::new(0),
        })
    }

    /// Shared bytes held now.
    pub fn in_use(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// The MLLP codec. Bytes before a start block are skipped (junk between frames). A start
/// block inside a frame (before its `0x1C 0x0D`) means the frame lost its end block: the
/// partial frame is discarded and decoding resynchronises at the new start block (MLLP
/// payloads never hold `0x0B`); [`MllpCodec::take_discarded`] says how much was dropped.
#[derive(Debug)]
pub struct MllpCodec {
    max_frame: usize,
    /// The listener's shared budget and what this connection holds of it.
    budget: Option<Arc<FrameBudget>>,
    held: usize,
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
            budget: None,
            held: 0,
            scanned: 0,
            discarded: Discarded::default(),
        }
    }

    /// The same, drawing on a listener's shared [`FrameBudget`] for what it buffers.
    pub fn with_budget(max_frame: usize, budget: Arc<FrameBudget>) -> Self {
        MllpCodec {
            budget: Some(budget),
            ..MllpCodec::new(max_frame)
        }
    }

    /// Holds as much of the shared budget as `buffered` bytes need; refuses to grow past it.
    fn account(&mut self, buffered: usize) -> Result<(), MllpError> {
        let Some(b) = &self.budget else {
            return Ok(());
        };
        let want = buffered.saturating_sub(b.own);
        if want > self.held {
            let more = want - self.held;
            let before = b.used.fetch_add(more, Ordering::AcqRel);
            if before + more > b.limit {
                b.used.fetch_sub(more, Ordering::AcqRel);
                return Err(MllpError::BudgetExhausted(b.limit));
            }
        } else if want < self.held {
            b.used.fetch_sub(self.held - want, Ordering::AcqRel);
        }
        self.held = want;
        Ok(())
    }

    /// The partial frames dropped since the last call, if any (for a warning by the caller).
    pub fn take_discarded(&mut self) -> Option<Discarded> {
        let d = std::mem::take(&mut self.discarded);
        (d.frames > 0).then_some(d)
    }
}

impl Drop for MllpCodec {
    fn drop(&mut self) {
        if let Some(b) = &self.budget {
            b.used.fetch_sub(self.held, Ordering::AcqRel);
        }
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
                    self.account(0)?;
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
                    self.account(src.len())?;
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
                    self.account(src.len())?;
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
    fn frames_in_progress_share_the_listeners_budget_and_release_it() {
        let budget = FrameBudget::new(100, 10);
        let (mut a, mut b) = (
            MllpCodec::with_budget(1 << 20, budget.clone()),
            MllpCodec::with_budget(1 << 20, budget.clone()),
        );
        let mut sa = BytesMut::from(&[SB; 1][..]);
        sa.extend_from_slice(&[b'A'; 79]);
        assert!(a.decode(&mut sa).unwrap().is_none());
        assert_eq!(budget.in_use(), 70, "80 buffered, 10 its own");
        let mut sb = BytesMut::from(&[SB; 1][..]);
        sb.extend_from_slice(&[b'B'; 49]);
        // 40 more would pass the 100 shared bytes: this connection's frame is refused.
        assert!(matches!(
            b.decode(&mut sb),
            Err(MllpError::BudgetExhausted(100))
        ));
        assert_eq!(budget.in_use(), 70);
        // A small message still gets through on its own bytes.
        let mut c = MllpCodec::with_budget(1 << 20, budget.clone());
        let mut s2 = BytesMut::new();
        s2.put_u8(SB);
        s2.extend_from_slice(b"MSH|x");
        s2.put_u8(EB);
        s2.put_u8(CR);
        assert_eq!(c.decode(&mut s2).unwrap().as_deref(), Some(&b"MSH|x"[..]));
        // The frame completes: its bytes go back; a closed connection gives back what it held.
        sa.extend_from_slice(&[EB, CR]);
        assert!(a.decode(&mut sa).unwrap().is_some());
        assert_eq!(budget.in_use(), 0);
        let mut sa = BytesMut::from(&[SB; 1][..]);
        sa.extend_from_slice(&[b'A'; 60]);
        assert!(a.decode(&mut sa).unwrap().is_none());
        assert_eq!(budget.in_use(), 51);
        drop(a);
        assert_eq!(budget.in_use(), 0);
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

//! Philips XLI waveform compression: decoder, and an encoder used to make test fixtures.
//!
//! The decoded `parsedwaveforms` bytes are a sequence of chunks, one per stored lead:
//!
//! ```text
//! i32 LE  size of the compressed payload
//! i16 LE  (unused code)
//! i16 LE  first delta ("start")
//! size bytes: LZW, 10-bit codes packed MSB first, codes 0–255 literal bytes, 256–1022 the
//!             dictionary (no clear code, the dictionary stops growing when full), 1023 ends
//! ```
//!
//! The LZW output is split in two halves: the high bytes of every 16-bit value, then the low
//! bytes. The values are second-order deltas: `out[0]`, `out[1]` are kept, and each later
//! sample is `2·out[i−1] − out[i−2] − last`, where `last` starts as the chunk's first delta
//! and then is the previous stored value minus 64. The stored III, aVR, aVL and aVF are
//! residuals; [`reconstruct_limb_leads`] restores them.

/// Why XLI data could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum XliError {
    /// A chunk header is cut short.
    #[error("chunk {chunk} header truncated at byte {offset}")]
    Header {
        /// 0-based chunk.
        chunk: usize,
        /// Byte offset.
        offset: usize,
    },
    /// The declared payload size is negative or runs past the end.
    #[error("chunk {chunk} declares {size} bytes but {available} remain")]
    Size {
        /// 0-based chunk.
        chunk: usize,
        /// Declared size.
        size: i64,
        /// Bytes left.
        available: usize,
    },
    /// An LZW code refers to a dictionary entry that cannot exist yet.
    #[error("chunk {chunk}: invalid LZW code {code}")]
    Code {
        /// 0-based chunk.
        chunk: usize,
        /// The code.
        code: u16,
    },
    /// A chunk decodes to more than the per-lead limit.
    #[error("chunk {chunk} decodes to more than {limit} bytes")]
    TooLong {
        /// 0-based chunk.
        chunk: usize,
        /// Limit.
        limit: usize,
    },
    /// More chunks than any ECG has leads.
    #[error("more than {0} chunks")]
    TooManyChunks(usize),
}

const BITS: u32 = 10;
const MAX_CODE: u16 = (1 << BITS) - 2;
/// Per-lead decoded size limit (1 MiB = 524,288 samples: 17 min at 500 Hz).
pub const MAX_CHUNK_BYTES: usize = 1 << 20;
/// At most this many chunks (leads).
pub const MAX_CHUNKS: usize = 64;

struct Dict {
    prefix: Vec<u16>,
    last: Vec<u8>,
    first: Vec<u8>,
    len: Vec<u32>,
}

impl Dict {
    fn new() -> Self {
        let mut d = Dict {
            prefix: Vec::with_capacity(1024),
            last: Vec::with_capacity(1024),
            first: Vec::with_capacity(1024),
            len: Vec::with_capacity(1024),
        };
        for b in 0..=255u8 {
            d.prefix.push(u16::MAX);
            d.last.push(b);
            d.first.push(b);
            d.len.push(1);
        }
        d
    }
    fn next(&self) -> u16 {
        self.prefix.len() as u16
    }
    /// Appends the string of `code` to `out`.
    fn emit(&self, code: u16, out: &mut Vec<u8>) {
        let n = self.len[code as usize] as usize;
        let start = out.len();
        out.resize(start + n, 0);
        let mut c = code;
        for i in (0..n).rev() {
            out[start + i] = self.last[c as usize];
            c = self.prefix[c as usize];
        }
    }
    fn add(&mut self, prefix: u16, byte: u8) {
        self.first.push(self.first[prefix as usize]);
        self.len.push(self.len[prefix as usize] + 1);
        self.prefix.push(prefix);
        self.last.push(byte);
    }
}

fn lzw_decode(chunk: usize, data: &[u8]) -> Result<Vec<u8>, XliError> {
    let mut out = Vec::with_capacity(data.len() * 2);
    let mut dict = Dict::new();
    let mut prev: Option<u16> = None;
    let (mut offset, mut bit_count, mut bit_buf) = (0usize, 0u32, 0u32);
    loop {
        // Refill, MSB first.
        while bit_count <= 24 && offset < data.len() {
            bit_buf |= u32::from(data[offset]) << (24 - bit_count);
            offset += 1;
            bit_count += 8;
        }
        if bit_count < BITS {
            break;
        }
        let code = (bit_buf >> (32 - BITS)) as u16;
        bit_buf <<= BITS;
        bit_count -= BITS;
        if code > MAX_CODE {
            break;
        }
        let first_byte;
        if code < dict.next() {
            first_byte = dict.first[code as usize];
            dict.emit(code, &mut out);
        } else if code == dict.next() {
            // The KwKwK case: previous string plus its own first byte.
            let p = prev.ok_or(XliError::Code { chunk, code })?;
            first_byte = dict.first[p as usize];
            dict.emit(p, &mut out);
            out.push(first_byte);
        } else {
            return Err(XliError::Code { chunk, code });
        }
        if let Some(p) = prev {
            if dict.next() <= MAX_CODE {
                dict.add(p, first_byte);
            }
        }
        prev = Some(code);
        if out.len() > MAX_CHUNK_BYTES {
            return Err(XliError::TooLong {
                chunk,
                limit: MAX_CHUNK_BYTES,
            });
        }
    }
    Ok(out)
}

/// Decodes XLI data into one sample vector per stored chunk (lead), before limb-lead
/// reconstruction.
pub fn decode(data: &[u8]) -> Result<Vec<Vec<i32>>, XliError> {
    let mut leads = Vec::new();
    let mut offset = 0usize;
    while offset < data.len() {
        let chunk = leads.len();
        if chunk >= MAX_CHUNKS {
            return Err(XliError::TooManyChunks(MAX_CHUNKS));
        }
        let h = data
            .get(offset..offset + 8)
            .ok_or(XliError::Header { chunk, offset })?;
        let size = i32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let start = i32::from(i16::from_le_bytes([h[6], h[7]]));
        offset += 8;
        let available = data.len() - offset;
        if size < 0 || size as usize > available {
            return Err(XliError::Size {
                chunk,
                size: i64::from(size),
                available,
            });
        }
        let payload = &data[offset..offset + size as usize];
        offset += size as usize;
        let mut bytes = lzw_decode(chunk, payload)?;
        if bytes.len() % 2 == 1 {
            bytes.push(0);
        }
        let n = bytes.len() / 2;
        let mut v: Vec<i32> = (0..n)
            .map(|i| i32::from(i16::from_be_bytes([bytes[i], bytes[n + i]])))
            .collect();
        undelta(&mut v, start);
        leads.push(v);
    }
    Ok(leads)
}

fn undelta(v: &mut [i32], start: i32) {
    if v.len() < 2 {
        return;
    }
    let (mut x, mut y) = (v[0], v[1]);
    let mut last = start;
    for s in v.iter_mut().skip(2) {
        let z = y.wrapping_mul(2).wrapping_sub(x).wrapping_sub(last);
        last = s.wrapping_sub(64);
        *s = i32::from(z as i16);
        x = y;
        y = z;
    }
}

/// Restores Philips' stored residuals in place, for leads in the order
/// I, II, III, aVR, aVL, aVF: III = II − I − III′, aVR = −aVR′ − ⌊(I + II)/2⌋,
/// aVL = ⌊(I − III)/2⌋ − aVL′, aVF = ⌊(II + III)/2⌋ − aVF′ (with the restored III).
#[allow(clippy::needless_range_loop)] // six leads indexed in step
pub fn reconstruct_limb_leads(leads: &mut [Vec<i32>]) {
    if leads.len() < 6 {
        return;
    }
    let n = leads[..6].iter().map(Vec::len).min().unwrap_or(0);
    for k in 0..n {
        let (i, ii) = (leads[0][k], leads[1][k]);
        let iii = ii.wrapping_sub(i).wrapping_sub(leads[2][k]);
        leads[2][k] = iii;
        leads[3][k] = leads[3][k]
            .wrapping_neg()
            .wrapping_sub(i.wrapping_add(ii).div_euclid(2));
        leads[4][k] = i.wrapping_sub(iii).div_euclid(2).wrapping_sub(leads[4][k]);
        leads[5][k] = ii.wrapping_add(iii).div_euclid(2).wrapping_sub(leads[5][k]);
    }
}

/// The inverse of [`reconstruct_limb_leads`]: turns true I, II, III, aVR, aVL, aVF into
/// the residuals a Philips cart stores. For making fixtures.
#[allow(clippy::needless_range_loop)] // six leads indexed in step
pub fn residual_limb_leads(leads: &mut [Vec<i32>]) {
    if leads.len() < 6 {
        return;
    }
    let n = leads[..6].iter().map(Vec::len).min().unwrap_or(0);
    for k in 0..n {
        let (i, ii, iii) = (leads[0][k], leads[1][k], leads[2][k]);
        leads[3][k] = (-leads[3][k]) - (i + ii).div_euclid(2);
        leads[4][k] = (i - iii).div_euclid(2) - leads[4][k];
        leads[5][k] = (ii + iii).div_euclid(2) - leads[5][k];
        leads[2][k] = ii - i - iii;
    }
}

fn lzw_encode(input: &[u8]) -> Vec<u8> {
    use std::collections::HashMap;
    let mut dict: HashMap<(u16, u8), u16> = HashMap::new();
    let mut next: u16 = 256;
    let mut codes: Vec<u16> = Vec::new();
    let mut w: Option<u16> = None;
    for &c in input {
        w = Some(match w {
            None => u16::from(c),
            Some(p) => match dict.get(&(p, c)) {
                Some(&code) => code,
                None => {
                    codes.push(p);
                    if next <= MAX_CODE {
                        dict.insert((p, c), next);
                        next += 1;
                    }
                    u16::from(c)
                }
            },
        });
    }
    if let Some(p) = w {
        codes.push(p);
    }
    let mut out = Vec::with_capacity(codes.len() * 10 / 8 + 2);
    let (mut acc, mut nbits) = (0u32, 0u32);
    for c in codes {
        acc = (acc << BITS) | u32::from(c);
        nbits += BITS;
        while nbits >= 8 {
            out.push((acc >> (nbits - 8)) as u8);
            nbits -= 8;
        }
    }
    if nbits > 0 {
        out.push((acc << (8 - nbits)) as u8);
    }
    out
}

/// Encodes stored leads (each sample within i16) as XLI: the exact inverse of [`decode`]
/// for leads of at least three samples. Used by tests and fixture generators.
pub fn encode(leads: &[Vec<i32>]) -> Vec<u8> {
    let mut out = Vec::new();
    for lead in leads {
        let v: Vec<i32> = lead.iter().map(|&s| i32::from(s as i16)).collect();
        let n = v.len();
        let mut raw = vec![0i32; n];
        let mut start = 0i32;
        if n >= 1 {
            raw[0] = v[0];
        }
        if n >= 2 {
            raw[1] = v[1];
        }
        if n >= 3 {
            start = 2 * v[1] - v[0] - v[2];
            for i in 2..n - 1 {
                raw[i] = 2 * v[i] - v[i - 1] - v[i + 1] + 64;
            }
            raw[n - 1] = 64;
        }
        let mut bytes = vec![0u8; 2 * n];
        for (i, r) in raw.iter().enumerate() {
            let b = (*r as i16).to_be_bytes();
            bytes[i] = b[0];
            bytes[n + i] = b[1];
        }
        let payload = lzw_encode(&bytes);
        out.extend_from_slice(&(payload.len() as i32).to_le_bytes());
        out.extend_from_slice(&0i16.to_le_bytes());
        out.extend_from_slice(&(start as i16).to_le_bytes());
        out.extend_from_slice(&payload);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(n: usize, amp: f64, k: f64) -> Vec<i32> {
        (0..n)
            .map(|i| (amp * (i as f64 * k).sin()).round() as i32)
            .collect()
    }

    #[test]
    fn encode_decode_round_trip() {
        let leads = vec![
            sine(5500, 300.0, 0.02),
            sine(5500, 80.0, 0.3),
            vec![5, -3, 7],
        ];
        let enc = encode(&leads);
        assert_eq!(decode(&enc).unwrap(), leads);
    }

    #[test]
    fn residuals_round_trip() {
        let i = sine(100, 200.0, 0.1);
        let ii = sine(100, 300.0, 0.07);
        let iii: Vec<i32> = ii.iter().zip(&i).map(|(b, a)| b - a).collect();
        let avr: Vec<i32> = i
            .iter()
            .zip(&ii)
            .map(|(a, b)| -(a + b).div_euclid(2))
            .collect();
        let avl: Vec<i32> = i
            .iter()
            .zip(&iii)
            .map(|(a, c)| (a - c).div_euclid(2))
            .collect();
        let avf: Vec<i32> = ii
            .iter()
            .zip(&iii)
            .map(|(b, c)| (b + c).div_euclid(2))
            .collect();
        let truth = vec![i, ii, iii, avr, avl, avf];
        let mut stored = truth.clone();
        residual_limb_leads(&mut stored);
        assert!(stored[2].iter().all(|&x| x == 0), "III residual is zero");
        reconstruct_limb_leads(&mut stored);
        assert_eq!(stored, truth);
    }

    #[test]
    fn rejects_bad_chunks() {
        assert_eq!(
            decode(&[1, 2, 3]),
            Err(XliError::Header {
                chunk: 0,
                offset: 0
            })
        );
        let mut e = encode(&[vec![1, 2, 3, 4]]);
        e[0] = 0xFF;
        assert!(matches!(decode(&e), Err(XliError::Size { .. })));
        // Code 300 before the dictionary has it.
        let bad = [
            2u8,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            (300u16 >> 2) as u8,
            ((300u16 & 3) << 6) as u8,
        ];
        assert_eq!(
            decode(&bad),
            Err(XliError::Code {
                chunk: 0,
                code: 300
            })
        );
        assert_eq!(decode(&[]), Ok(vec![]));
    }
}

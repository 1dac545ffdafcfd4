//! Arbitrary bytes, fed to the MLLP decoder in chunks whose sizes come from the input.
#![no_main]

use bytes::BytesMut;
use huren_hl7::mllp::MllpCodec;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let mut codec = MllpCodec::new(4096);
    let mut buf = BytesMut::new();
    for piece in rest.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => assert!(frame.len() <= 4096),
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});

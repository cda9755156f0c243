//! The DATA decoder never panics, and what it decodes re-encodes to a stream that
//! decodes to the same content (the relay's dot-stuffing is lossless).
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_gateway::smtp::data::{DataDecoder, DataEncoder, Progress};

fuzz_target!(|data: &[u8]| {
    let mut d = DataDecoder::new(1 << 20);
    let mut content = Vec::new();
    if let Progress::End { .. } = d.feed(data, &mut content) {
        let mut wire = Vec::new();
        let mut e = DataEncoder::default();
        e.encode(&content, &mut wire);
        e.finish(&mut wire);
        let mut again = Vec::new();
        let mut d2 = DataDecoder::new(1 << 20);
        assert_eq!(d2.feed(&wire, &mut again), Progress::End { consumed: wire.len() });
        assert_eq!(again, content);
    }
});

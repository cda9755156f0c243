//! The PROXY protocol header (`proxy_header`): any bytes parse into a header, "need more"
//! or an error, never a panic; a header never takes more bytes than it was given nor more
//! than the size limit; what it took is a header on its own, with the same result, and
//! every prefix of it is "need more" (so a reader that peeks never consumes a byte past
//! the header, and never gives up on a header that is still arriving).
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_gateway::proxy_header::{MAX_HEADER, MAX_V1, Version, parse};

fuzz_target!(|data: &[u8]| {
    let Ok(Some((header, used))) = parse(data) else {
        return;
    };
    assert!(used > 0 && used <= data.len() && used <= MAX_HEADER);
    if header.version == Version::V1 {
        assert!(used <= MAX_V1);
        assert!(data[..used].ends_with(b"\r\n"));
    }
    assert_eq!(parse(&data[..used]), Ok(Some((header, used))));
    for end in 0..used {
        assert_eq!(parse(&data[..end]), Ok(None), "prefix of {end} bytes");
    }
});

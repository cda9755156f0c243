//! The next hop's replies (`relay::reply`): any bytes parse into one reply or are
//! refused, never a panic; a parsed reply took only whole lines that all carry its code,
//! a code RFC 5321 defines; the line-by-line parser the connection uses agrees with the
//! whole-buffer one; and no relay step takes a reply other than its positive one for
//! success, nor gives the client a positive reply for it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_gateway::relay::Step;
use postern_gateway::relay::reply::{
    MAX_REPLY_LINE, MAX_REPLY_LINES, ReplyError, ReplyParser, parse, valid_code,
};

fuzz_target!(|data: &[u8]| {
    let whole = parse(data);

    // The connection's way: one line at a time, as its line reader splits them.
    let mut parser = ReplyParser::default();
    let mut taken = 0;
    let mut by_line = Ok(None);
    for piece in data.split_inclusive(|&b| b == b'\n') {
        let Some(line) = piece.strip_suffix(b"\n") else {
            if piece.len() > MAX_REPLY_LINE {
                by_line = Err(ReplyError::LineTooLong);
            }
            break;
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        taken += piece.len();
        match parser.line(line) {
            Ok(None) => {}
            Ok(Some(reply)) => {
                by_line = Ok(Some((reply, taken)));
                break;
            }
            Err(e) => {
                by_line = Err(e);
                break;
            }
        }
    }
    assert_eq!(whole, by_line);

    let Ok(Some((reply, used))) = whole else {
        return;
    };
    assert!(used > 0 && used <= data.len());
    assert!(valid_code(reply.code));
    assert!(!reply.lines.is_empty() && reply.lines.len() <= MAX_REPLY_LINES);
    let code = format!("{:03}", reply.code);
    for line in data[..used].split_inclusive(|&b| b == b'\n') {
        assert!(
            line.starts_with(code.as_bytes()),
            "{line:?} in a {code} reply"
        );
        assert!(line.len() <= MAX_REPLY_LINE + 2);
    }
    if let Some(e) = &reply.enhanced {
        assert_eq!(e.as_bytes()[0], code.as_bytes()[0], "enhanced code class");
    }
    // What was taken is a reply on its own.
    assert_eq!(parse(&data[..used]), Ok(Some((reply.clone(), used))));

    for step in Step::ALL {
        match step.judge(reply.clone()) {
            Ok(r) => assert!(step.positive().contains(&r.code)),
            Err(f) => {
                assert!(!step.positive().contains(&reply.code));
                let client = f.client_reply();
                assert!(
                    client.code == 451 || (client.code == reply.code && client.code >= 500),
                    "{step}: {} became {}",
                    reply.code,
                    client.code
                );
                // One line, whatever the next hop's text contained.
                let mut wire = Vec::new();
                client.write_to(&mut wire);
                assert_eq!(wire.iter().filter(|&&b| b == b'\n').count(), 1);
                assert!(wire.ends_with(b"\r\n"));
            }
        }
    }
});

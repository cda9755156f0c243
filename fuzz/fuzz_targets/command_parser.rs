//! Any byte string given to the SMTP command parser yields a command or an error with a
//! well-formed reply; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_gateway::smtp::command;

fuzz_target!(|data: &[u8]| {
    match command::parse(data) {
        Ok(cmd) => {
            let _ = cmd.verb();
        }
        Err(e) => {
            let reply = e.reply();
            assert!((500..600).contains(&reply.code));
            let mut out = Vec::new();
            reply.write_to(&mut out);
            assert!(out.ends_with(b"\r\n"));
            assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        }
    }
});

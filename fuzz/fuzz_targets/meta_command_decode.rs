//! Metadata command and snapshot decoding must never panic on any bytes; a command it accepts
//! re-encodes to exactly its input (the encoding is canonical), and a state it accepts survives
//! an encode/decode round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire_control::raft::{MetaCommand, MetaState};

fuzz_target!(|data: &[u8]| {
    if let Ok(cmd) = MetaCommand::decode(data) {
        assert_eq!(cmd.encode(), data, "re-encoding differs");
        // Applying it to an empty state never panics either.
        let _ = MetaState::default().apply(1, &cmd);
    }
    if let Ok(state) = MetaState::decode(data) {
        assert_eq!(MetaState::decode(&state.encode()).ok(), Some(state));
    }
});

//! Metadata command and snapshot decoding must never panic on any bytes; a command it accepts
//! at the current version re-encodes to exactly its input (the encoding is canonical), one of
//! an older version re-encodes at the current version to the same command, and a state it
//! accepts survives an encode/decode round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire_control::raft::{MetaCommand, MetaState};

fuzz_target!(|data: &[u8]| {
    if let Ok(cmd) = MetaCommand::decode(data) {
        let encoded = cmd.encode();
        if encoded.first() == data.first() {
            assert_eq!(encoded, data, "re-encoding differs");
        } else {
            assert_eq!(MetaCommand::decode(&encoded).ok(), Some(cmd.clone()));
        }
        // Applying it to an empty state never panics either.
        let _ = MetaState::default().apply(1, &cmd);
    }
    if let Ok(state) = MetaState::decode(data) {
        assert_eq!(MetaState::decode(&state.encode()).ok(), Some(state));
    }
});

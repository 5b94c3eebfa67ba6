//! Raft messages arrive from the network as rust-protobuf 2 bytes (the RaftService): decoding
//! must never panic on any bytes, and a message it accepts must survive a round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protobuf::Message as _;
use raft::eraftpb::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = Message::parse_from_bytes(data) {
        let bytes = message.write_to_bytes().expect("a decoded message encodes");
        assert_eq!(Message::parse_from_bytes(&bytes).ok(), Some(message));
    }
});

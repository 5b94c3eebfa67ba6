//! Raft messages arrive from the network as rust-protobuf 2 bytes (the RaftService): decoding
//! must never panic on any bytes, and a message it accepts must re-encode to bytes that decode
//! to the same raft fields. (Whole-struct equality is too strict: rust-protobuf keeps unknown
//! fields and empty sub-messages in forms that do not round-trip exactly.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use protobuf::Message as _;
use raft::eraftpb::Message;

fn fields(m: &Message) -> (i32, u64, u64, u64, u64, u64, u64, bool, usize, u64) {
    (
        m.get_msg_type() as i32,
        m.to,
        m.from,
        m.term,
        m.log_term,
        m.index,
        m.commit,
        m.reject,
        m.get_entries().len(),
        m.get_snapshot().get_metadata().index,
    )
}

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = Message::parse_from_bytes(data) {
        let bytes = message.write_to_bytes().expect("a decoded message encodes");
        let again = Message::parse_from_bytes(&bytes).expect("a re-encoded message decodes");
        assert_eq!(fields(&again), fields(&message));
        assert_eq!(again.get_entries(), message.get_entries());
    }
});

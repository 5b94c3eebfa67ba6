use super::*;

fn producers(dir: &Path) -> Producers {
    Producers::new(dir.to_path_buf(), 4, 1, 0)
}

fn appended(sequence: u32, base_offset: u64) -> Appended {
    Appended {
        sequence,
        partition: 0,
        base_offset,
        rows: 10,
    }
}

/// Appends batch `sequence` of `id` on connection `conn`, as a connection does.
fn append(p: &Producers, id: u64, sequence: u32, conn: u64) {
    assert_eq!(p.begin(id, sequence, conn), Ok(Admit::Append));
    p.complete(id, appended(sequence, u64::from(sequence) * 10));
}

#[test]
fn a_re_sent_batch_is_a_duplicate_with_its_original_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let p = producers(dir.path());
    let (id, epoch, conn) = p.hello(0, 0).unwrap();
    assert_eq!(epoch, 0);
    append(&p, id, 1, conn);
    append(&p, id, 2, conn);
    // The connection is lost; the producer reconnects and re-sends batch 2, then goes on.
    let (_, _, conn2) = p.hello(id, 0).unwrap();
    assert_eq!(p.begin(id, 2, conn2), Ok(Admit::Duplicate(appended(2, 20))));
    append(&p, id, 3, conn2);
    // The old connection may not append any more.
    let (code, _) = p.begin(id, 4, conn).unwrap_err();
    assert_eq!(code, ErrorCode::ProducerFenced);
}

#[test]
fn gaps_old_epochs_and_forgotten_producers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = producers(dir.path());
    let (id, _, conn) = p.hello(0, 0).unwrap();
    append(&p, id, 1, conn);
    let (code, message) = p.begin(id, 3, conn).unwrap_err();
    assert_eq!(code, ErrorCode::OutOfOrderSequence, "{message}");
    assert!(
        message.contains("expected batch sequence 2, found 3"),
        "{message}"
    );
    // A new epoch fences the old one and starts the sequence again.
    let (_, epoch, conn2) = p.hello(id, 1).unwrap();
    assert_eq!(epoch, 1);
    assert_eq!(p.hello(id, 0).unwrap_err().0, ErrorCode::ProducerFenced);
    append(&p, id, 1, conn2);
    // An id this node has no state for may only start at sequence 1.
    let (_, _, conn3) = p.hello(12345, 0).unwrap();
    assert_eq!(
        p.begin(12345, 5, conn3).unwrap_err().0,
        ErrorCode::UnknownProducer
    );
    // Beyond the window of kept acks a duplicate cannot be acked again.
    for sequence in 2..=7 {
        append(&p, id, sequence, conn2);
    }
    assert_eq!(
        p.begin(id, 2, conn2).unwrap_err().0,
        ErrorCode::OutOfOrderSequence
    );
    assert_eq!(p.begin(id, 4, conn2), Ok(Admit::Duplicate(appended(4, 40))));
}

#[test]
fn a_batch_being_appended_makes_its_re_send_wait() {
    let dir = tempfile::tempdir().unwrap();
    let p = producers(dir.path());
    let (id, _, conn) = p.hello(0, 0).unwrap();
    assert_eq!(p.begin(id, 1, conn), Ok(Admit::Append));
    let (_, _, conn2) = p.hello(id, 0).unwrap();
    assert_eq!(p.begin(id, 1, conn2), Ok(Admit::Wait));
    p.complete(id, appended(1, 0));
    assert_eq!(p.begin(id, 1, conn2), Ok(Admit::Duplicate(appended(1, 0))));
}

#[test]
fn producer_ids_are_never_issued_twice_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let first: Vec<u64> = {
        let p = producers(dir.path());
        (0..3).map(|_| p.hello(0, 0).unwrap().0).collect()
    };
    let p = producers(dir.path());
    let second = p.hello(0, 0).unwrap().0;
    assert!(
        first.iter().all(|&id| id != 0 && id < second),
        "{first:?} then {second}"
    );
    assert_eq!(second, first[0] + ID_BLOCK);
}

#[test]
fn at_most_producers_max_are_kept_the_least_recently_used_go() {
    let dir = tempfile::tempdir().unwrap();
    let p = producers(dir.path());
    let (first, _, conn) = p.hello(0, 0).unwrap();
    append(&p, first, 1, conn);
    append(&p, first, 2, conn);
    for _ in 0..PRODUCERS_MAX {
        p.hello(0, 0).unwrap();
    }
    // Its re-sent batch 2 cannot be told from a new one any more.
    let (_, _, conn) = p.hello(first, 0).unwrap();
    assert_eq!(
        p.begin(first, 2, conn).unwrap_err().0,
        ErrorCode::UnknownProducer
    );
}

#[test]
fn producer_ids_carry_the_issuing_node_in_their_high_bits() {
    let dir = tempfile::tempdir().unwrap();
    // Two nodes with the same counter file contents (each has its own) never issue one id.
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let node = |dir: &Path, id: u64| Producers::new(dir.to_path_buf(), 4, 1, id);
    let (one, two) = (node(&a, 1), node(&b, 2));
    let from_one: Vec<u64> = (0..3).map(|_| one.hello(0, 0).unwrap().0).collect();
    let from_two: Vec<u64> = (0..3).map(|_| two.hello(0, 0).unwrap().0).collect();
    assert_eq!(from_one[0], (1 << ID_COUNTER_BITS) | 1);
    assert_eq!(from_two[0], (2 << ID_COUNTER_BITS) | 1);
    assert!(from_one
        .iter()
        .all(|id| id >> ID_COUNTER_BITS == 1 && !from_two.contains(id)));
    // The largest node's ids still fit in 48 bits.
    let last = node(&dir.path().join("c"), NODE_ID_MAX)
        .hello(0, 0)
        .unwrap()
        .0;
    assert!(last <= PRODUCER_ID_MAX && last >> ID_COUNTER_BITS == NODE_ID_MAX);
    // An id of another node found in the WAL leaves this node's counter alone; one of its
    // own is never issued again, even from the next block.
    let mut header = BatchHeader {
        crc: 0,
        base_offset: 0,
        version: 1,
        flags: 0,
        stream: wire_core::record::batch::StreamId(0),
        partition: wire_core::record::batch::PartitionId(0),
        row_count: 1,
        payload_len: 0,
        min_event_time: 0,
        max_event_time: 0,
        producer: (2 << ID_COUNTER_BITS) | 99_999,
        sequence: 1,
    };
    let restarted = node(&a, 1);
    restarted.recover(&header, 0);
    let after_other = restarted.hello(0, 0).unwrap().0;
    assert_eq!(after_other, from_one[0] + ID_BLOCK);
    header.producer = (1 << ID_COUNTER_BITS) | (from_one[0] + 2 * ID_BLOCK);
    let restarted = node(&a, 1);
    restarted.recover(&header, 0);
    assert_eq!(restarted.hello(0, 0).unwrap().0, header.producer + 1);
}

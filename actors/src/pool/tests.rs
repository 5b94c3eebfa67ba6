//! Several pipelines on one pool: outputs, cancel, failure isolation, pause and resume.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wire_core::frontend::plan::Plan;
use wire_core::frontend::spec::PipelineSpec;

use super::*;

/// Every bounded wait of these tests ends within this.
const DEADLINE: Duration = Duration::from_secs(60);

/// Held by each test while its pools run: the idle test counts the CPU time of every
/// `wire-core-*` thread of the process, so no other test's cores may run meanwhile.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

fn pool(cores: usize) -> CorePool {
    CorePool::start(PoolOptions {
        cores,
        pin: false,
        io_memory: wire_storage::io::IO_MEMORY_BYTES_MIN,
    })
    .expect("pool starts")
}

/// A pipeline `name` of Nexmark bids (`source` keys: events, rate, seed...) written as jsonl
/// to `<dir>/<name>/out`.
fn plan(dir: &Path, name: &str, source: &str) -> Plan {
    let out = dir.join(name).join("out");
    let text = format!(
        "name: {name}\nsources:\n  bids: {{type: nexmark, stream: bid, {source}}}\nsinks:\n  out: {{type: file, format: jsonl, path: {}, from: bids}}\n",
        out.display()
    );
    let spec = PipelineSpec::parse(&format!("{name}.yaml"), &text).expect("spec");
    Plan::from_spec(&spec).expect("plan")
}

fn deploy(pool: &CorePool, dir: &Path, plan: Plan, cores: usize) -> Deployment {
    let data_dir = dir.join(&plan.name).join("data");
    let deploy = Deploy {
        cores,
        data_dir,
        checkpoints: None,
        placement: None,
        ingest_auth: None,
        ingest_tls: None,
        node_id: 0,
    };
    pool.handle().deploy(plan, deploy).expect("deploys")
}

/// The published output lines of pipeline `name`, sorted.
fn output(dir: &Path, name: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut dirs: Vec<PathBuf> = vec![dir.join(name).join("out")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("output dir") {
            let path = entry.expect("entry").path();
            let file = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_dir() {
                dirs.push(path);
            } else if !file.starts_with('.') && !file.ends_with(".inprogress") {
                let text = std::fs::read_to_string(&path).expect("part file");
                lines.extend(text.lines().map(str::to_string));
            }
        }
    }
    lines.sort();
    lines
}

/// Waits (bounded) until `done` holds.
fn until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < DEADLINE,
            "timed out waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Waits (bounded) for `kind` from each of the pipeline's cores.
fn events_from_every_core(deployment: &Deployment, kind: EventKind) {
    let mut cores = std::collections::BTreeSet::new();
    let started = Instant::now();
    while cores.len() < deployment.cores() {
        let left = DEADLINE.saturating_sub(started.elapsed());
        let event = deployment
            .events()
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("timed out waiting for {kind:?}"));
        assert_eq!(event.pipeline, deployment.id());
        if event.kind == kind {
            cores.insert(event.core);
        }
    }
}

/// Runs `source` alone on a fresh pool: the output the other tests compare with.
fn reference(dir: &Path, source: &str) -> Vec<String> {
    let pool = pool(2);
    let report = deploy(&pool, dir, plan(dir, "reference", source), 2).wait();
    assert!(report.error.is_none(), "{:?}", report.error);
    output(dir, "reference")
}

#[test]
fn two_pipelines_run_at_once_on_one_pool_with_correct_outputs() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = pool(2);
    let a = deploy(
        &pool,
        dir.path(),
        plan(dir.path(), "a", "events: 5000, seed: 1"),
        2,
    );
    let b = deploy(
        &pool,
        dir.path(),
        plan(dir.path(), "b", "events: 5000, seed: 2"),
        1,
    );
    assert_ne!(a.id(), b.id());
    let (a, b) = (a.wait(), b.wait());
    assert!(
        a.error.is_none() && b.error.is_none(),
        "{:?} {:?}",
        a.error,
        b.error
    );
    // 46 of every 50 Nexmark events are bids.
    assert_eq!(output(dir.path(), "a").len(), 4600);
    assert_eq!(output(dir.path(), "b").len(), 4600);
    assert_ne!(
        output(dir.path(), "a"),
        output(dir.path(), "b"),
        "seeds differ"
    );
    assert_eq!(
        output(dir.path(), "a"),
        reference(dir.path(), "events: 5000, seed: 1")
    );
    // The pool goes on after its pipelines ended.
    let c = deploy(&pool, dir.path(), plan(dir.path(), "c", "events: 500"), 2).wait();
    assert!(c.error.is_none());
    assert_eq!(output(dir.path(), "c").len(), 460);
}

#[test]
fn cancelling_one_pipeline_leaves_the_other_running_to_its_end() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = pool(2);
    let endless = deploy(
        &pool,
        dir.path(),
        plan(dir.path(), "endless", "rate: 20000"),
        2,
    );
    let bounded = deploy(
        &pool,
        dir.path(),
        plan(dir.path(), "bounded", "events: 40000, rate: 20000, seed: 3"),
        2,
    );
    until("the endless pipeline writes", || {
        endless.probe().sink_rows() > 0
    });
    endless.cancel();
    let cancelled = endless.wait();
    assert!(cancelled.error.is_none(), "{:?}", cancelled.error);
    assert!(
        !bounded.is_finished(),
        "the bounded pipeline runs about 2 s"
    );
    // Drained and flushed: every row that reached the sink was published.
    assert_eq!(
        output(dir.path(), "endless").len() as u64,
        cancelled.probe.sink_rows()
    );
    let report = bounded.wait();
    assert!(report.error.is_none(), "{:?}", report.error);
    assert_eq!(
        output(dir.path(), "bounded"),
        reference(dir.path(), "events: 40000, seed: 3")
    );
}

#[test]
fn a_failing_pipeline_does_not_stop_the_other() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = pool(2);
    let good = deploy(
        &pool,
        dir.path(),
        plan(dir.path(), "good", "events: 40000, rate: 20000, seed: 4"),
        2,
    );
    let missing = dir.path().join("no-such-input.jsonl");
    let text = format!(
        "name: bad\nsources:\n  s: {{type: file, path: {}, schema: {{k: i64}}}}\nsinks:\n  out: {{type: blackhole, from: s}}\n",
        missing.display()
    );
    let spec = PipelineSpec::parse("bad.yaml", &text).expect("spec");
    let bad = deploy(&pool, dir.path(), Plan::from_spec(&spec).expect("plan"), 2);
    // Every core tells why before it tells it finished.
    let mut told = Vec::new();
    while told
        .iter()
        .filter(|e: &&Event| e.kind == EventKind::Finished)
        .count()
        < 2
    {
        told.push(bad.events().recv_timeout(DEADLINE).expect("an event"));
    }
    let failed_events = told.iter().filter(
        |e| matches!(&e.kind, EventKind::Failed(why) if why.contains("no-such-input.jsonl")),
    );
    assert_eq!(failed_events.count(), 2, "{told:?}");
    let failed = bad.wait();
    let error = failed.error.expect("the bad pipeline fails").to_string();
    assert!(error.contains("no-such-input.jsonl"), "{error}");
    assert!(!good.is_finished(), "the good pipeline runs about 2 s");
    let report = good.wait();
    assert!(report.error.is_none(), "{:?}", report.error);
    assert_eq!(
        output(dir.path(), "good"),
        reference(dir.path(), "events: 40000, seed: 4")
    );
}

#[test]
fn a_paused_pipeline_emits_nothing_and_resumes_without_loss_or_duplicates() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = pool(2);
    let source = "events: 20000, rate: 20000, seed: 5";
    let running = deploy(&pool, dir.path(), plan(dir.path(), "paused", source), 2);
    events_from_every_core(&running, EventKind::Started);
    until("the pipeline writes", || running.probe().sink_rows() > 0);
    running.pause();
    events_from_every_core(&running, EventKind::Paused);
    // In-flight rows drain; then nothing moves.
    let mut last = (u64::MAX, u64::MAX);
    until("the paused pipeline drains", || {
        let now = (running.probe().source_events(), running.probe().sink_rows());
        std::thread::sleep(Duration::from_millis(20));
        std::mem::replace(&mut last, now) == now
    });
    let paused_at = last;
    assert!(paused_at.0 < 20000, "paused before the end: {paused_at:?}");
    std::thread::sleep(Duration::from_millis(300));
    let probe = running.probe();
    assert_eq!((probe.source_events(), probe.sink_rows()), paused_at);
    assert!(!running.is_finished());
    running.resume();
    events_from_every_core(&running, EventKind::Resumed);
    let report = running.wait();
    assert!(report.error.is_none(), "{:?}", report.error);
    assert_eq!(output(dir.path(), "paused"), reference(dir.path(), source));
}

/// CPU time (clock ticks) the threads named `wire-core-*` of this process have used.
fn core_ticks() -> u64 {
    let mut ticks = 0;
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let stat = task.expect("task").path().join("stat");
        let Ok(stat) = std::fs::read_to_string(stat) else {
            continue;
        };
        // `pid (comm) state ...`: utime and stime are fields 14 and 15.
        let Some((comm, rest)) = stat.split_once(") ") else {
            continue;
        };
        if !comm.contains("(wire-core-") {
            continue;
        }
        let fields: Vec<&str> = rest.split_whitespace().collect();
        ticks +=
            fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    }
    ticks
}

#[test]
fn an_idle_pool_parks_its_cores() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = pool(2);
    // A pipeline came and went: its heartbeat and tasks must be gone with it.
    let ran = deploy(&pool, dir.path(), plan(dir.path(), "once", "events: 50"), 2).wait();
    assert!(ran.error.is_none());
    std::thread::sleep(Duration::from_millis(100));
    let before = core_ticks();
    std::thread::sleep(Duration::from_secs(1));
    let used = core_ticks() - before;
    // Clock ticks are 10 ms: a polling loop, or a heartbeat with its spin, would show.
    assert!(used <= 1, "two idle cores used {used} ticks in a second");
    drop(pool);
}

#[test]
fn an_idle_pool_takes_a_command_at_once_and_shuts_down() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = pool(2);
    // Long enough for the cores to park.
    std::thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    let running = deploy(&pool, dir.path(), plan(dir.path(), "wake", "events: 50"), 2);
    events_from_every_core(&running, EventKind::Started);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "a parked core took {:?} to start a pipeline",
        started.elapsed()
    );
    assert!(running.wait().error.is_none());
    let too_many = pool.handle().deploy(
        plan(dir.path(), "big", "events: 50"),
        Deploy {
            cores: 3,
            data_dir: dir.path().join("big"),
            checkpoints: None,
            placement: None,
            ingest_auth: None,
            ingest_tls: None,
            node_id: 0,
        },
    );
    assert!(matches!(too_many, Err(Error::Pool(_))));
    pool.shutdown();
}

#[test]
fn a_checkpoint_requested_before_the_sources_start_is_taken() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = pool(2);
    let (acks_tx, acks) = crossbeam_channel::unbounded();
    let checkpoints = Arc::new(crate::Checkpointing::new(acks_tx, None, 0));
    // The coordinator may trigger its first checkpoint before a loaded core starts the
    // sources: they must still send its barrier.
    checkpoints.request(1, None);
    let deploy = Deploy {
        cores: 2,
        data_dir: dir.path().join("data"),
        checkpoints: Some(checkpoints),
        placement: None,
        ingest_auth: None,
        ingest_tls: None,
        node_id: 0,
    };
    let source = "events: 20000, rate: 20000";
    let running = pool
        .handle()
        .deploy(plan(dir.path(), "early", source), deploy)
        .expect("deploys");
    let participants = running.checkpoint_participants();
    let mut acked = 0;
    let started = Instant::now();
    while acked < participants {
        let left = DEADLINE.saturating_sub(started.elapsed());
        let ack = acks.recv_timeout(left).expect("an ack");
        assert_ne!(
            ack.checkpoint, None,
            "an instance ended without acking checkpoint 1"
        );
        assert_eq!(ack.checkpoint, Some(1));
        acked += 1;
    }
    running.cancel();
    assert!(running.wait().error.is_none());
}

#[test]
fn a_paused_ingest_source_stops_granting_credits_and_resumes_exactly() {
    use std::sync::atomic::AtomicU64;
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = pool(1);
    let out = dir.path().join("ingested").join("out");
    let text = format!(
        "name: ingested\nsources:\n  rows: {{type: ingest, listen: 127.0.0.1:0, credits: 4, schema: {{id: i64}}}}\nsinks:\n  out: {{type: file, format: jsonl, path: {}, from: rows}}\n",
        out.display()
    );
    let spec = PipelineSpec::parse("ingested.yaml", &text).expect("spec");
    let running = deploy(&pool, dir.path(), Plan::from_spec(&spec).expect("plan"), 1);
    let Notice::Listening { addr, .. } = running
        .notices()
        .recv_timeout(DEADLINE)
        .expect("the source listens");
    const BATCHES: i64 = 300;
    const ROWS: i64 = 100;
    let sent = Arc::new(AtomicU64::new(0));
    let producer = {
        let sent = sent.clone();
        std::thread::spawn(move || {
            let schema =
                wire_core::Schema::new(vec![wire_core::Field::new("id", wire_core::DataType::I64)]);
            let mut client = wire_net::ingest::IngestClient::connect(addr, "t", "rows", &schema)
                .expect("connects");
            for batch in 0..BATCHES {
                let mut builder =
                    wire_core::BatchBuilder::new(wire_core::StreamId(0), wire_core::PartitionId(0));
                for row in 0..ROWS {
                    let id = wire_core::ValueRef::I64(batch * ROWS + row);
                    builder.push(&[id]).expect("row");
                }
                client.send(&builder.finish()).expect("sends");
                sent.fetch_add(1, Ordering::Relaxed);
            }
            client.close().expect("every batch acked");
        })
    };
    until("rows reach the sink", || running.probe().sink_rows() > 0);
    running.pause();
    events_from_every_core(&running, EventKind::Paused);
    // The producer runs out of credits; in-flight rows drain; then nothing moves.
    let mut last = (u64::MAX, u64::MAX);
    until("the paused pipeline and its producer stop", || {
        let now = (sent.load(Ordering::Relaxed), running.probe().sink_rows());
        std::thread::sleep(Duration::from_millis(30));
        std::mem::replace(&mut last, now) == now
    });
    assert!(
        last.0 < BATCHES as u64,
        "paused before the producer's end: {last:?}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let now = (sent.load(Ordering::Relaxed), running.probe().sink_rows());
    assert_eq!(now, last, "(batches sent, rows written) moved while paused");
    running.resume();
    producer.join().expect("the producer ends");
    running.cancel();
    let report = running.wait();
    assert!(report.error.is_none(), "{:?}", report.error);
    let mut ids: Vec<i64> = output(dir.path(), "ingested")
        .iter()
        .map(|line| {
            let id = line
                .strip_prefix("{\"id\":")
                .and_then(|l| l.strip_suffix('}'));
            id.and_then(|id| id.parse().ok())
                .unwrap_or_else(|| panic!("not an id row: {line}"))
        })
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..BATCHES * ROWS).collect::<Vec<_>>());
}

#[test]
fn the_handles_move_to_a_control_plane_actor() {
    fn shared<T: Send + Sync + Clone + 'static>() {}
    fn owned<T: Send + 'static>() {}
    shared::<PoolHandle>();
    owned::<Deployment>();
    owned::<Event>();
    owned::<RunReport>();
}

//! `SET` statements, per-table idle timeouts and the window's named arguments.

use crate::frontend::plan::Plan;
use crate::frontend::spec::{OperatorKind, PipelineSpec};
use crate::frontend::sql::tests::{error_text as error, lower_text as lower};

const TABLES: &str = "CREATE TABLE bid (auction BIGINT, price BIGINT, date_time TIMESTAMP(3), \
    WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND) \
    WITH ('connector' = 'nexmark', 'events' = '1000');\n\
    CREATE TABLE out WITH ('connector' = 'blackhole');\n";

const WINDOWED: &str = "INSERT INTO out SELECT auction, window_start, window_end, count(*) AS n \
    FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) \
    GROUP BY auction, window_start, window_end;\n";

fn lateness(spec: &PipelineSpec) -> i64 {
    spec.operators
        .iter()
        .find_map(|o| match &o.kind {
            OperatorKind::Aggregate(a) => a.window.as_ref().map(|w| w.allowed_lateness_ms),
            _ => None,
        })
        .expect("a windowed aggregate")
}

#[test]
fn flink_and_wire_names_set_the_pipeline_settings() {
    let spec = lower(&format!(
        "SET 'pipeline.max-parallelism' = '64';\n\
         SET 'batch_rows' = '256';\n\
         SET 'execution.checkpointing.interval' = '2 s';\n\
         SET 'parallelism.default' = '2';\n\
         SET 'execution.runtime-mode' = 'streaming';\n\
         SET 'sql-client.execution.result-mode' = 'tableau';\n{TABLES}{WINDOWED}"
    ));
    assert_eq!(spec.settings.max_parallelism, 64);
    assert_eq!(spec.settings.batch_rows, 256);
    assert_eq!(spec.settings.checkpoint_interval_ms, Some(2000));
    assert_eq!(spec.settings.cores, Some(2));
    let spec = lower(&format!(
        "SET 'max-parallelism' = '32';\nSET 'checkpoint_interval' = '500ms';\n\
         SET 'cores' = '1';\n{TABLES}{WINDOWED}"
    ));
    assert_eq!(spec.settings.max_parallelism, 32);
    assert_eq!(spec.settings.checkpoint_interval_ms, Some(500));
    assert_eq!(spec.settings.cores, Some(1));
}

#[test]
fn without_set_the_settings_are_the_yaml_defaults() {
    let spec = lower(&format!("{TABLES}{WINDOWED}"));
    assert_eq!(spec.settings, crate::frontend::spec::Settings::default());
    assert_eq!(spec.sources[0].watermark.idle_timeout_ms, None);
    assert_eq!(lateness(&spec), 0);
}

#[test]
fn idle_timeout_from_set_and_from_the_table() {
    let spec = lower(&format!(
        "SET 'table.exec.source.idle-timeout' = '30 s';\n{TABLES}{WINDOWED}"
    ));
    assert_eq!(spec.sources[0].watermark.idle_timeout_ms, Some(30_000));
    assert_eq!(spec.sources[0].watermark.max_out_of_orderness_ms, 1000);
    let own = TABLES.replace(
        "'events' = '1000'",
        "'events' = '1000', 'scan.watermark.idle-timeout' = '1 min'",
    );
    let spec = lower(&format!(
        "SET 'table.exec.source.idle-timeout' = '30 s';\n{own}{WINDOWED}"
    ));
    assert_eq!(spec.sources[0].watermark.idle_timeout_ms, Some(60_000));
    assert_eq!(spec.sources[0].watermark.max_out_of_orderness_ms, 1000);
}

#[test]
fn allow_lateness_sets_every_event_time_window_that_has_none() {
    let spec = lower(&format!(
        "{TABLES}{WINDOWED}SET 'table.exec.emit.allow-lateness' = '5 s';\n"
    ));
    assert_eq!(lateness(&spec), 5000);
    let own = WINDOWED.replace(
        "INTERVAL '10' SECOND)",
        "INTERVAL '10' SECOND, ALLOWED_LATENESS => INTERVAL '2' SECOND)",
    );
    let spec = lower(&format!(
        "SET 'table.exec.emit.allow-lateness' = '5 s';\n{TABLES}{own}"
    ));
    assert_eq!(lateness(&spec), 2000);
}

#[test]
fn late_output_is_a_stream_queries_read() {
    let late = WINDOWED.replace(
        "INTERVAL '10' SECOND)",
        "INTERVAL '10' SECOND, LATE_OUTPUT => 'late_bids')",
    );
    let spec = lower(&format!(
        "{TABLES}CREATE TABLE late_out WITH ('connector' = 'blackhole');\n{late}\
         INSERT INTO late_out SELECT auction, price FROM late_bids WHERE price > 10;\n"
    ));
    let window = spec
        .operators
        .iter()
        .find_map(|o| match &o.kind {
            OperatorKind::Aggregate(a) => a.window.clone(),
            _ => None,
        })
        .expect("window");
    assert_eq!(
        window.late_output.map(|n| n.name).as_deref(),
        Some("late_bids")
    );
    let plan = Plan::from_spec(&spec).expect("plans");
    let late_sink = plan
        .sinks
        .iter()
        .find(|s| s.name == "late_out")
        .expect("sink");
    let names: Vec<&str> = late_sink
        .schema
        .fields()
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(names, ["auction", "price"]);
}

#[test]
fn bad_settings_are_errors_at_their_place() {
    let e = error(&format!(
        "{TABLES}SET 'execution.checkpointing.intervall' = '1 s';\n{WINDOWED}"
    ));
    assert!(e.starts_with("t.sql:3:5: unknown setting `execution.checkpointing.intervall`; did you mean `execution.checkpointing.interval`?"), "{e}");
    let e = error(&format!(
        "SET 'parallelism.default' = 'two';\n{TABLES}{WINDOWED}"
    ));
    assert!(
        e.starts_with("t.sql:1:29: SET 'parallelism.default': expected a whole number"),
        "{e}"
    );
    let e = error(&format!(
        "SET 'cores' = '1';\nSET 'parallelism.default' = '2';\n{TABLES}{WINDOWED}"
    ));
    assert!(
        e.starts_with("t.sql:2:5: `parallelism.default` is already set at line 1, column 5"),
        "{e}"
    );
    let e = error(&format!(
        "SET 'table.exec.emit.allow-lateness' = 'soon';\n{TABLES}{WINDOWED}"
    ));
    assert!(
        e.contains("t.sql:1:40: SET 'table.exec.emit.allow-lateness': expected a duration"),
        "{e}"
    );
    let e = error(&format!(
        "SET 'execution.runtime-mode' = 'batch';\n{TABLES}{WINDOWED}"
    ));
    assert!(e.contains("streaming mode only"), "{e}");
    let e = error(&format!("SET 'cores';\n{TABLES}{WINDOWED}"));
    assert!(
        e.starts_with("t.sql:1:1: expected `SET 'key' = 'value'`"),
        "{e}"
    );
    let e = error(&format!(
        "{TABLES}{}",
        WINDOWED.replace("SECOND)", "SECOND, LATE => 'x')")
    ));
    assert!(e.contains("TUMBLE has no argument `LATE`"), "{e}");
    let e = error(&format!(
        "{TABLES}{}",
        WINDOWED.replace("SECOND)", "SECOND, LATE_OUTPUT => 'bid')")
    ));
    assert!(e.contains("`bid` is already defined"), "{e}");
    let bad = TABLES.replace(
        "'events' = '1000'",
        "'events' = '1000', 'scan.watermark.idle-timeout' = 'never'",
    );
    let e = error(&format!("{bad}{WINDOWED}"));
    assert!(
        e.contains("'scan.watermark.idle-timeout' takes a duration"),
        "{e}"
    );
}

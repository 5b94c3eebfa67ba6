//! Process table functions and `DISTRIBUTE BY`.

use crate::frontend::plan::Plan;
use crate::frontend::spec::{OperatorKind, PipelineSpec};
use crate::frontend::sql::tests::{error_text, lower_text};

const TABLES: &str = "CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, \
    date_time TIMESTAMP(3)) WITH ('connector' = 'nexmark', 'events' = '1000');\n\
    CREATE TABLE out WITH ('connector' = 'blackhole');\n";

fn lower(sql: &str) -> PipelineSpec {
    lower_text(&format!("{TABLES}{sql}"))
}

fn error(sql: &str) -> String {
    error_text(&format!("{TABLES}{sql}"))
}

#[test]
fn a_table_function_call_is_a_process_keyed_by_its_partition() {
    let spec = lower(
        "INSERT INTO out SELECT * FROM TABLE(LAST_N_AVERAGE(TABLE bid PARTITION BY \
         (auction, bidder), value => price, n => 3, ttl => INTERVAL '1' MINUTE)) AS seller_avg;",
    );
    let [operator] = spec.operators.as_slice() else {
        panic!("{:?}", spec.operators)
    };
    let OperatorKind::Process(process) = &operator.kind else {
        panic!("not a process")
    };
    assert_eq!(process.function.name, "last_n_average");
    let keys: Vec<&str> = process
        .group_by
        .iter()
        .map(|k| k.expr.text.as_str())
        .collect();
    assert_eq!(keys, ["auction", "bidder"]);
    let config: Vec<(&str, &str)> = process
        .config
        .iter()
        .map(|(k, v)| (k.name.as_str(), v.as_str()))
        .collect();
    assert_eq!(config, [("value", "price"), ("n", "3"), ("ttl", "60000ms")]);
    let plan = Plan::from_spec(&spec).expect("plans");
    let fields: Vec<&str> = plan.sinks[0]
        .schema
        .fields()
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(fields, ["auction", "bidder", "avg", "count"]);
}

#[test]
fn the_q6_example_is_its_yaml_twin_operator_for_operator() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let read = |p: &str| std::fs::read_to_string(root.join(p)).expect("example");
    let sql = PipelineSpec::parse(
        "q6_process.sql",
        &read("examples/nexmark/sql/q6_process.sql"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let yaml = PipelineSpec::parse("q6.yaml", &read("examples/nexmark/q6.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let sql = Plan::from_spec(&sql).expect("plans");
    let yaml = Plan::from_spec(&yaml).expect("plans");
    let shape = |plan: &Plan| -> Vec<String> {
        plan.operators
            .iter()
            .map(|o| format!("{:?}", o.schema))
            .collect()
    };
    assert_eq!(shape(&sql), shape(&yaml));
    assert_eq!(
        format!("{:?}", sql.sinks[0].schema),
        format!("{:?}", yaml.sinks[0].schema)
    );
}

#[test]
fn distribute_by_is_a_key_by_of_the_output() {
    let spec =
        lower("INSERT INTO out SELECT auction, price * 2 AS p FROM bid DISTRIBUTE BY auction;");
    let last = spec.operators.last().expect("operators");
    let OperatorKind::KeyBy(keys) = &last.kind else {
        panic!("not a key_by: {:?}", last.kind)
    };
    assert_eq!(keys[0].text, "auction");
}

#[test]
fn bad_table_function_calls_are_errors_at_their_place() {
    let e = error("INSERT INTO out SELECT * FROM TABLE(LAST_N_AVREAGE(TABLE bid PARTITION BY auction, value => price));");
    assert!(
        e.contains("last_n_avreage") && e.contains("did you mean `last_n_average`"),
        "{e}"
    );
    let e = error("INSERT INTO out SELECT * FROM TABLE(LAST_N_AVERAGE(TABLE bid PARTITION BY auction, price));");
    assert!(
        e.starts_with("t.sql:3:37:") && e.contains("the arguments after the table are named"),
        "{e}"
    );
    let e = error("INSERT INTO out SELECT * FROM TABLE(LAST_N_AVERAGE(TABLE bid PARTITION BY auction, value => prise));");
    assert!(e.contains("prise"), "{e}");
    let e = error("INSERT INTO out SELECT * FROM TABLE(LAST_N_AVERAGE(TABLE bid PARTITION BY (auction, value => price));");
    assert!(
        e.starts_with("t.sql:3:62: expected `PARTITION BY column`"),
        "{e}"
    );
    let e = error("INSERT INTO out SELECT auction, window_start, window_end, count(*) AS n FROM TABLE(TUMBLE(TABLE bid PARTITION BY auction, DESCRIPTOR(date_time), INTERVAL '1' SECOND)) GROUP BY auction, window_start, window_end;");
    assert!(e.contains("TUMBLE takes no PARTITION BY"), "{e}");
    let e = error("INSERT INTO out SELECT auction FROM bid CLUSTER BY auction;");
    assert!(
        e.contains("`CLUSTER BY` and `SORT BY` are not supported"),
        "{e}"
    );
}

//! Lowering of each construct, and the errors for rejected ones.

use crate::frontend::plan::Plan;
use crate::frontend::spec::{OperatorKind, PipelineSpec, SinkKind, SourceKind};
use crate::time::window::{TimeDomain, WindowKind};

const BID: &str =
    "CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, \
    url VARCHAR, date_time TIMESTAMP(3), extra VARCHAR, \
    WATERMARK FOR date_time AS date_time - INTERVAL '3' SECOND) \
    WITH ('connector' = 'nexmark', 'stream' = 'bid', 'events' = '1000');\n\
    CREATE TABLE out WITH ('connector' = 'blackhole');\n";

/// A second table of bids, for joins (an input cannot be joined with itself).
const BID2: &str = "CREATE TABLE bid2 (auction BIGINT, price BIGINT, date_time TIMESTAMP(3)) \
    WITH ('connector' = 'nexmark', 'stream' = 'bid', 'events' = '1000');\n";

fn lower(sql: &str) -> PipelineSpec {
    lower_text(&format!("{BID}{sql}"))
}

fn error(sql: &str) -> String {
    error_text(&format!("{BID}{sql}"))
}

/// The spec of SQL file `t.sql` holding `text`, which must lower and plan.
pub(super) fn lower_text(text: &str) -> PipelineSpec {
    let spec = PipelineSpec::parse("t.sql", text).unwrap_or_else(|e| panic!("{e}"));
    Plan::from_spec(&spec).unwrap_or_else(|e| panic!("{e}"));
    spec
}

/// The error of SQL file `t.sql` holding `text`, which must not lower or plan.
pub(super) fn error_text(text: &str) -> String {
    match PipelineSpec::parse("t.sql", text).and_then(|spec| Plan::from_spec(&spec).map(|_| ())) {
        Ok(()) => panic!("accepted: {text}"),
        Err(e) => e.to_string(),
    }
}

fn kinds(spec: &PipelineSpec) -> Vec<&'static str> {
    spec.operators
        .iter()
        .map(|o| match &o.kind {
            OperatorKind::Filter(_) => "filter",
            OperatorKind::Map(_) => "map",
            OperatorKind::Project(_) => "project",
            OperatorKind::Union => "union",
            OperatorKind::Aggregate(_) => "aggregate",
            OperatorKind::Top(_) => "top",
            OperatorKind::Join(_) => "join",
            _ => "other",
        })
        .collect()
}

#[test]
fn create_table_lowers_to_a_source_with_its_watermark() {
    let spec = lower("INSERT INTO out SELECT * FROM bid;");
    assert_eq!(spec.sources.len(), 1);
    let SourceKind::Nexmark(n) = &spec.sources[0].kind else {
        panic!("not nexmark")
    };
    assert_eq!(n.events, Some(1000));
    assert_eq!(spec.sources[0].watermark.max_out_of_orderness_ms, 3000);
    assert!(spec.operators.is_empty(), "SELECT * adds no operator");
    assert!(matches!(spec.sinks[0].kind, SinkKind::Blackhole));
    assert_eq!(spec.sinks[0].input.name, "bid");
}

#[test]
fn projection_filter_and_functions() {
    let spec = lower(
        "INSERT INTO out SELECT auction, price * 0.908 AS euros, \
         CASE WHEN EXTRACT(HOUR FROM date_time) >= 8 THEN 'day' ELSE 'night' END AS part, \
         CHAR_LENGTH(extra) AS n, SPLIT_INDEX(url, '/', 3) AS dir, CAST(bidder AS DOUBLE) AS b, \
         REGEXP_EXTRACT(url, '(&|^)channel_id=([^&]*)', 2) AS ch, DATE_FORMAT(date_time, 'yyyy-MM-dd') AS d \
         FROM bid WHERE MOD(auction, 123) = 0 AND channel IN ('a', 'b') AND url LIKE 'http%';",
    );
    assert_eq!(kinds(&spec), ["filter", "project"]);
    let OperatorKind::Project(list) = &spec.operators[1].kind else {
        panic!()
    };
    let text: Vec<&str> = list.iter().map(|(_, e)| e.text.as_str()).collect();
    assert_eq!(text[1], "(price * 0.908)");
    assert!(text[2].contains("hour(date_time)"), "{}", text[2]);
    assert_eq!(text[3], "char_length(extra)");
    assert_eq!(text[5], "CAST(bidder AS f64)");
}

#[test]
fn select_star_with_extra_columns_is_a_map() {
    let spec = lower("INSERT INTO out SELECT *, price * 2 AS double_price FROM bid;");
    assert_eq!(kinds(&spec), ["map"]);
}

#[test]
fn windowed_group_by_with_distinct_and_filter() {
    let spec = lower(
        "INSERT INTO out SELECT auction, window_start, window_end, count(*) AS num, \
         count(DISTINCT bidder) FILTER (WHERE price < 10) AS cheap \
         FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND)) \
         GROUP BY auction, window_start, window_end;",
    );
    assert_eq!(
        kinds(&spec),
        ["aggregate"],
        "the select list matches the aggregate output"
    );
    let OperatorKind::Aggregate(a) = &spec.operators[0].kind else {
        panic!()
    };
    let w = a.window.as_ref().expect("window");
    assert_eq!(
        w.kind,
        WindowKind::Hop {
            size_ms: 10_000,
            slide_ms: 2_000
        }
    );
    assert_eq!(
        a.aggregates[1].1.text,
        "count(distinct bidder) filter (where (price < 10))"
    );
}

#[test]
fn tumble_and_session_windows() {
    for (call, kind) in [
        (
            "TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '1' DAY)",
            WindowKind::Tumbling {
                size_ms: 86_400_000,
            },
        ),
        (
            "SESSION(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND)",
            WindowKind::Session { gap_ms: 10_000 },
        ),
    ] {
        let spec = lower(&format!(
            "INSERT INTO out SELECT bidder, count(*) AS c, window_start FROM TABLE({call}) \
             GROUP BY bidder, window_start, window_end;"
        ));
        assert_eq!(kinds(&spec), ["aggregate", "project"]);
        let OperatorKind::Aggregate(a) = &spec.operators[0].kind else {
            panic!()
        };
        assert_eq!(a.window.as_ref().map(|w| w.kind), Some(kind));
    }
}

#[test]
fn unbounded_group_by_and_having() {
    let spec = lower(
        "INSERT INTO out SELECT auction, max(price) AS highest FROM bid GROUP BY auction HAVING count(*) > 2;",
    );
    assert_eq!(kinds(&spec), ["aggregate", "filter", "project"]);
    let OperatorKind::Aggregate(a) = &spec.operators[0].kind else {
        panic!()
    };
    assert!(a.window.is_none());
    assert_eq!(a.aggregates.len(), 2);
}

#[test]
fn row_number_is_a_top() {
    let spec = lower(
        "INSERT INTO out SELECT auction, price FROM (SELECT *, ROW_NUMBER() OVER \
         (PARTITION BY auction ORDER BY price DESC) AS rn FROM bid) WHERE rn <= 3;",
    );
    assert_eq!(kinds(&spec), ["top", "project"]);
    let OperatorKind::Top(t) = &spec.operators[0].kind else {
        panic!()
    };
    assert_eq!((t.n, t.with_ties, t.order_by[0].1), (3, false, true));
}

#[test]
fn views_union_and_joins() {
    let spec = lower(
        "CREATE TEMPORARY VIEW cheap AS SELECT * FROM bid WHERE price < 100;\n\
         CREATE VIEW dear AS SELECT * FROM bid WHERE price > 1000;\n\
         CREATE TEMPORARY VIEW both_ends AS SELECT * FROM cheap UNION ALL SELECT * FROM dear;\n\
         INSERT INTO out SELECT a.auction, b.price FROM both_ends AS a JOIN bid AS b ON a.auction = b.auction;",
    );
    assert_eq!(
        kinds(&spec),
        ["filter", "filter", "union", "join", "project"]
    );
    assert_eq!(spec.operators[0].name.name, "cheap");
    let OperatorKind::Project(list) = &spec.operators[4].kind else {
        panic!()
    };
    assert_eq!(
        list[1].1.text, "b_price",
        "the right side's clashing field is prefixed"
    );
}

#[test]
fn several_inserts() {
    let spec = lower(
        "CREATE TABLE out2 WITH ('connector' = 'print', 'format' = 'csv');\n\
         INSERT INTO out SELECT * FROM bid;\nINSERT INTO out2 SELECT auction FROM bid;",
    );
    assert_eq!(spec.sinks.len(), 2);
    assert!(matches!(spec.sinks[1].kind, SinkKind::Stdout { .. }));
}

#[test]
fn errors_name_line_column_and_what_is_unsupported() {
    let interval = |sql: &str| format!("{BID2}{sql}");
    let cases = [
        ("INSERT INTO out SELECT DISTINCT auction FROM bid;", "t.sql:3:17: `SELECT DISTINCT` is not supported"),
        ("INSERT INTO out SELECT * FROM bidz;", "t.sql:3:31: unknown table or view `bidz`; did you mean `bid`?"),
        ("INSERT INTO out SELECT * FROM bid ORDER BY price;", "`ORDER BY` and `LIMIT` on a streaming query are not supported"),
        ("INSERT INTO out SELECT prise FROM bid;", "t.sql:3:24: "),
        ("INSERT INTO out SELECT * FROM bid UNION SELECT * FROM bid;", "only `UNION ALL` is supported"),
        ("INSERT INTO out SELECT * FROM bid LEFT JOIN bid AS b ON bid.auction = b.auction;", "only inner joins"),
        ("INSERT INTO out SELECT count(*) AS n FROM TABLE(CUMULATE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '3' SECOND)) GROUP BY window_start, window_end;", "t.sql:3:49: expected CUMULATE(TABLE t, DESCRIPTOR(time_column), INTERVAL step, INTERVAL size), the size a whole number of steps"),
        ("INSERT INTO out SELECT * FROM bid WHERE;", "t.sql:3:40: invalid SQL"),
        ("DELETE FROM bid;", "`DELETE FROM` is not supported"),
        ("INSERT INTO out SELECT auction FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price) AS rn FROM bid);", "needs `WHERE rn <= N`"),
        ("INSERT INTO nowhere SELECT * FROM bid;", "unknown table `nowhere`"),
        ("CREATE TABLE t2 (a BIGINT) WITH ('connector' = 'file', 'path' = 'x', 'fromat' = 'csv');\nINSERT INTO out SELECT * FROM t2;", "table `t2`: unknown key `fromat`; did you mean `format`?"),
        ("INSERT INTO out SELECT auction FROM bid AS b JOIN bid AS c FOR SYSTEM_TIME AS OF b.date_time ON b.auction = c.auction;", "t.sql:3:51: a temporal join looks up a `filesystem` table (read from its file when the pipeline starts); `bid` is not one"),
        ("INSERT INTO out SELECT * FROM bid AS b JOIN bid FOR SYSTEM_TIME AS OF ON b.auction = bid.auction;", "expected a time column after `FOR SYSTEM_TIME AS OF`"),
        (&interval("INSERT INTO out SELECT * FROM bid AS a JOIN bid2 AS b ON a.auction = b.auction AND b.price BETWEEN a.date_time AND a.date_time + 1000;") as &str, "an interval join bounds the right side's event time `date_time`, not `price`"),
        (&interval("INSERT INTO out SELECT * FROM bid AS a JOIN bid2 AS b ON a.auction = b.auction AND b.date_time BETWEEN b.date_time AND a.date_time;") as &str, "the bounds of an interval join are expressions over the left side's columns"),
        (&interval("INSERT INTO out SELECT * FROM bid AS a JOIN bid2 AS b ON a.auction = b.auction AND b.date_time NOT BETWEEN a.date_time AND a.date_time;") as &str, "`NOT BETWEEN` cannot bound an interval join"),
        (&interval("INSERT INTO out SELECT * FROM bid AS a JOIN bid2 AS b ON a.auction = b.auction AND date_time BETWEEN a.date_time AND a.date_time;") as &str, "an interval join tests the right side's event time"),
        ("INSERT INTO out SELECT ILIKE_X FROM bid WHERE url ILIKE 'a';", "is not supported in expressions"),
        ("INSERT INTO out SELECT auction, avg(price) OVER (PARTITION BY auction ORDER BY date_time) AS a FROM bid;", "t.sql:3:33: only `ROWS BETWEEN n PRECEDING AND CURRENT ROW`"),
        ("INSERT INTO out SELECT avg(price) OVER (ORDER BY date_time ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS a FROM bid;", "RANGE frames, UNBOUNDED and FOLLOWING are not"),
        ("INSERT INTO out SELECT avg(price) OVER (ORDER BY date_time DESC ROWS 2 PRECEDING) AS a FROM bid;", "`DESC` is not supported"),
        ("INSERT INTO out SELECT avg(price) OVER (ROWS 2 PRECEDING) AS a FROM bid;", "needs `ORDER BY` one time column"),
        ("INSERT INTO out SELECT avg(price + 1) OVER (ORDER BY date_time ROWS 2 PRECEDING) AS a FROM bid;", "t.sql:3:28: the argument of an OVER aggregate must be a column"),
        ("INSERT INTO out SELECT avg(price) OVER (ORDER BY date_time ROWS 2 PRECEDING) AS price FROM bid;", "`price` is a column of the input"),
        ("INSERT INTO out SELECT avg(price) OVER (ORDER BY date_time ROWS 2 PRECEDING) AS a, max(price) OVER (ORDER BY date_time ROWS 3 PRECEDING) AS b FROM bid;", "different windows in one SELECT"),
        ("INSERT INTO out SELECT auction, avg(price) OVER (ORDER BY date_time ROWS 2 PRECEDING) AS a FROM bid GROUP BY auction;", "OVER aggregates and GROUP BY in one SELECT"),
        ("INSERT INTO out SELECT avg(price) OVER (ORDER BY channel ROWS 2 PRECEDING) AS a FROM bid;", "config `order` must name a timestamp or i64 field"),
        ("INSERT INTO out SELECT 1 + avg(price) OVER (ORDER BY date_time ROWS 2 PRECEDING) AS a FROM bid;", "supported only as a select item `AVG/SUM/COUNT/MIN/MAX(col) OVER"),
    ];
    for (sql, expected) in cases {
        let message = error(sql);
        assert!(
            message.contains(expected),
            "{sql}\n  got: {message}\n  want: {expected}"
        );
    }
}

#[test]
fn type_errors_point_into_the_sql() {
    let message = error("INSERT INTO out SELECT auction,\n  price + 'x' AS p FROM bid;");
    assert!(message.starts_with("t.sql:4:"), "{message}");
}

#[test]
fn every_prefix_of_the_examples_is_an_error_or_a_spec_never_a_panic() {
    for name in ["q4", "q5", "q8", "q13", "q15"] {
        let path = format!(
            "{}/../examples/nexmark/sql/{name}.sql",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(path).expect("example");
        let cuts = text.char_indices().map(|(i, _)| i).step_by(3);
        for cut in cuts {
            if let Ok(spec) = PipelineSpec::parse("p.sql", &text[..cut]) {
                let _ = Plan::from_spec(&spec);
            }
        }
    }
}

#[test]
fn between_in_a_join_condition_is_an_interval_join() {
    let spec = lower(&format!(
        "{BID2}INSERT INTO out SELECT a.auction, b.price FROM bid AS a JOIN bid2 AS b\n\
         ON a.auction = b.auction AND b.date_time BETWEEN a.date_time AND a.date_time + INTERVAL '2' SECOND;"
    ));
    let OperatorKind::Join(join) = &spec.operators[0].kind else {
        panic!("not a join: {:?}", kinds(&spec));
    };
    let (lower, upper) = join.between.as_ref().expect("an interval join");
    assert_eq!(lower.text, "date_time");
    assert_eq!(upper.text, "(date_time + 2000)");
    assert_eq!(join.left_key.len(), 1);
}

#[test]
fn for_system_time_as_of_is_a_lookup() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let spec = lower(&format!(
        "CREATE TABLE side (`key` BIGINT NOT NULL, `value` VARCHAR NOT NULL) WITH (\n\
         'connector' = 'filesystem', 'path' = '{dir}/../examples/data/side_input.csv', 'format' = 'csv');\n\
         INSERT INTO out SELECT B.auction, S.`value` FROM bid AS B\n\
         JOIN side FOR SYSTEM_TIME AS OF B.date_time AS S ON MOD(B.auction, 10000) = S.`key`;"
    ));
    assert_eq!(spec.sources.len(), 1, "the looked-up table is not a source");
    let OperatorKind::Lookup(lookup) = &spec.operators[0].kind else {
        panic!("not a lookup: {:?}", kinds(&spec));
    };
    assert_eq!(lookup.key[0].text, "(auction % 10000)");
    assert_eq!(lookup.table_key[0].name, "key");
    assert!(lookup.path.ends_with("side_input.csv"));
    let message = error(
        "CREATE TABLE side (k BIGINT) WITH ('connector' = 'filesystem', 'path' = 'x.csv', 'format' = 'csv');\n\
         INSERT INTO out SELECT * FROM bid JOIN side FOR SYSTEM_TIME AS OF bid.date_time ON bid.auction < side.k;",
    );
    assert!(message.contains("t.sql:4:"), "{message}");
    assert!(
        message.contains("a temporal join's conditions must be equalities"),
        "{message}"
    );
}

/// The field names of the first sink's rows.
fn sink_fields(spec: &PipelineSpec) -> Vec<String> {
    let plan = Plan::from_spec(spec).unwrap_or_else(|e| panic!("{e}"));
    let fields = plan.sinks[0].schema.fields().iter();
    fields.map(|f| f.name.clone()).collect()
}

#[test]
fn over_aggregates_with_a_rows_frame_lower_to_over_rows() {
    let spec = lower(
        "INSERT INTO out SELECT auction, date_time, \
         avg(price) OVER w AS a, count(*) OVER w AS n FROM bid;"
            .replace(
                "OVER w",
                "OVER (PARTITION BY auction ORDER BY date_time ROWS BETWEEN 4 PRECEDING AND CURRENT ROW)",
            )
            .as_str(),
    );
    assert_eq!(kinds(&spec), ["other", "project"]);
    let OperatorKind::Process(process) = &spec.operators[0].kind else {
        panic!("not a process");
    };
    assert_eq!(process.function.name, "over_rows");
    assert_eq!(process.group_by.len(), 1);
    assert_eq!(process.group_by[0].expr.text, "auction");
    let config: Vec<(&str, &str)> = process
        .config
        .iter()
        .map(|(k, v)| (k.name.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        config,
        [
            ("order", "date_time"),
            ("preceding", "4"),
            ("aggregates", "a = avg(price), n = count(*)")
        ]
    );
    assert_eq!(sink_fields(&spec), ["auction", "date_time", "a", "n"]);
    // `ROWS n PRECEDING`, an unnamed item (`EXPR$1`), and an update stream as input.
    let spec = lower(
        "CREATE VIEW top AS SELECT auction, max(date_time) AS t, max(price) AS p FROM bid GROUP BY auction;\n\
         INSERT INTO out SELECT auction, sum(p) OVER (ORDER BY t ROWS 2 PRECEDING) FROM top;",
    );
    assert_eq!(sink_fields(&spec), ["auction", "EXPR$1"]);
}

#[test]
fn a_proctime_column_makes_processing_time_windows() {
    let table = "CREATE TABLE b2 (auction BIGINT, bidder BIGINT, p AS PROCTIME(), \
        date_time TIMESTAMP(3)) WITH ('connector' = 'nexmark', 'stream' = 'bid', 'events' = '10');\n";
    let query = |descriptor: &str| {
        format!(
            "{table}INSERT INTO out SELECT bidder, count(*) AS n, window_start FROM \
             TABLE(TUMBLE(TABLE b2, DESCRIPTOR({descriptor}), INTERVAL '10' SECOND)) \
             GROUP BY bidder, window_start, window_end;"
        )
    };
    let time_of = |spec: &PipelineSpec| match &spec.operators[0].kind {
        OperatorKind::Aggregate(a) => a.window.as_ref().map(|w| w.time),
        _ => None,
    };
    let spec = lower(&query("p"));
    assert_eq!(time_of(&spec), Some(TimeDomain::Processing));
    let spec = lower(&query("date_time"));
    assert_eq!(time_of(&spec), Some(TimeDomain::Event));
    // The computed column is not a column of the rows.
    let message = error(&format!("{table}INSERT INTO out SELECT p FROM b2;"));
    assert!(message.contains("t.sql:4:"), "{message}");
}

#[test]
fn cumulate_is_a_cumulate_window() {
    let spec = lower(
        "INSERT INTO out SELECT auction, window_start, window_end, count(*) AS n FROM \
         TABLE(CUMULATE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND)) \
         GROUP BY auction, window_start, window_end;",
    );
    let OperatorKind::Aggregate(a) = &spec.operators[0].kind else {
        panic!("not an aggregate");
    };
    let window = a.window.as_ref().expect("a window");
    assert_eq!(
        window.kind,
        WindowKind::Cumulate {
            step_ms: 2000,
            size_ms: 10_000
        }
    );
    assert_eq!(window.time, TimeDomain::Event);
}

/// The input names of operator `index`.
fn inputs(spec: &PipelineSpec, index: usize) -> Vec<&str> {
    spec.operators[index]
        .inputs
        .iter()
        .map(|i| i.name.as_str())
        .collect()
}

fn where_text(spec: &PipelineSpec, index: usize) -> &str {
    match &spec.operators[index].kind {
        OperatorKind::Filter(e) => &e.text,
        _ => panic!("operator {index} is not a filter: {:?}", kinds(spec)),
    }
}

#[test]
fn where_conditions_of_one_join_input_filter_it_below_the_join() {
    let spec = lower(&format!(
        "{BID2}INSERT INTO out SELECT a.auction, b.price FROM bid AS a JOIN bid2 AS b \
         ON a.auction = b.auction \
         WHERE a.channel IN ('x', 'y') AND (b.price < 5 OR b.price > 50) AND bidder > 3 \
         AND a.bidder + b.price > 10;"
    ));
    assert_eq!(
        kinds(&spec),
        ["filter", "filter", "join", "filter", "project"]
    );
    assert_eq!(inputs(&spec, 0), ["bid"]);
    assert_eq!(
        where_text(&spec, 0),
        "((channel IN ('x', 'y')) AND (bidder > 3))",
        "a bare column only the left has reads the left"
    );
    assert_eq!(inputs(&spec, 1), ["bid2"]);
    assert_eq!(where_text(&spec, 1), "((price < 5) OR (price > 50))");
    let join = spec.operators[2].name.name.as_str();
    assert_eq!(
        inputs(&spec, 2),
        [
            spec.operators[0].name.name.as_str(),
            spec.operators[1].name.name.as_str()
        ]
    );
    assert_eq!(inputs(&spec, 3), [join]);
    assert_eq!(
        where_text(&spec, 3),
        "((bidder + b_price) > 10)",
        "a condition over both sides stays after the join"
    );
}

#[test]
fn a_bare_column_both_inputs_have_is_the_left_one() {
    // After the join, `price` is the left's field (the right's is `b_price`).
    let spec = lower(&format!(
        "{BID2}INSERT INTO out SELECT * FROM bid AS a JOIN bid2 AS b \
         ON a.auction = b.auction WHERE price > 7;"
    ));
    assert_eq!(kinds(&spec), ["filter", "join"]);
    assert_eq!(inputs(&spec, 0), ["bid"]);
    assert_eq!(where_text(&spec, 0), "(price > 7)");
}

#[test]
fn on_conditions_of_one_input_filter_it_below_the_join() {
    let spec = lower(&format!(
        "{BID2}INSERT INTO out SELECT * FROM bid AS a JOIN bid2 AS b \
         ON a.auction = b.auction AND b.price > 100 AND a.channel = 'x';"
    ));
    assert_eq!(kinds(&spec), ["filter", "filter", "join"]);
    assert_eq!(where_text(&spec, 0), "(channel = 'x')");
    assert_eq!(where_text(&spec, 1), "(price > 100)");
    let OperatorKind::Join(join) = &spec.operators[2].kind else {
        panic!()
    };
    assert_eq!(
        join.left_key.len(),
        1,
        "only the equality of the two sides is a key"
    );
    // A bare column in ON may mean either side, so it stays a join condition (and a
    // condition that is not an equality of the two sides is an error).
    let message = error(&format!(
        "{BID2}INSERT INTO out SELECT * FROM bid AS a JOIN bid2 AS b \
         ON a.auction = b.auction AND price > 100;"
    ));
    assert!(
        message.contains("join conditions must be equalities"),
        "{message}"
    );
}

#[test]
fn conditions_of_three_joined_tables_go_as_low_as_they_can() {
    let spec = lower(&format!(
        "{BID2}CREATE TABLE bid3 (auction BIGINT, price BIGINT, date_time TIMESTAMP(3)) \
         WITH ('connector' = 'nexmark', 'stream' = 'bid', 'events' = '1000');\n\
         INSERT INTO out SELECT a.auction, c.price FROM bid AS a \
         JOIN bid2 AS b ON a.auction = b.auction JOIN bid3 AS c ON a.auction = c.auction \
         WHERE a.price > 1 AND a.price + b.price > 2 AND c.price < 3 AND a.price + c.price > 4;"
    ));
    assert_eq!(
        kinds(&spec),
        ["filter", "join", "filter", "filter", "join", "filter", "project"]
    );
    assert_eq!(inputs(&spec, 0), ["bid"]);
    assert_eq!(where_text(&spec, 0), "(price > 1)");
    assert_eq!(inputs(&spec, 2), [spec.operators[1].name.name.as_str()]);
    assert_eq!(where_text(&spec, 2), "((price + b_price) > 2)");
    assert_eq!(inputs(&spec, 3), ["bid3"]);
    assert_eq!(where_text(&spec, 3), "(price < 3)");
    assert_eq!(where_text(&spec, 5), "((price + c_price) > 4)");
}

#[test]
fn a_where_without_a_join_or_one_that_reads_both_sides_stays_whole() {
    let spec = lower("INSERT INTO out SELECT * FROM bid WHERE price > 1 AND (bidder < 2);");
    assert_eq!(
        where_text(&spec, 0),
        "((price > 1) AND ((bidder < 2)))",
        "the WHERE as written"
    );
    // `bid` qualifies both sides (a table's name stays a qualifier beside its alias): not sure
    // which side it means, the condition stays after the join.
    let spec = lower(&format!(
        "{BID2}INSERT INTO out SELECT * FROM bid JOIN bid2 AS bid ON bid.auction = bid2.auction \
         WHERE bid.price > 3;"
    ));
    assert_eq!(kinds(&spec), ["join", "filter"]);
}

/// The operators of a plan in the order they run, each with its kind and the kinds of its
/// inputs (sources as `source`), so two plans of the same shape compare equal.
fn shape(spec: &PipelineSpec) -> Vec<String> {
    let kinds = kinds(spec);
    spec.operators
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let from: Vec<&str> = o
                .inputs
                .iter()
                .map(|input| {
                    spec.operators
                        .iter()
                        .position(|p| p.name.name == input.name)
                        .map_or("source", |at| kinds[at])
                })
                .collect();
            format!("{} of {}", kinds[i], from.join(", "))
        })
        .collect()
}

/// The checked spec of `examples/nexmark/{path}`.
fn example(path: &str) -> PipelineSpec {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/nexmark");
    let text = std::fs::read_to_string(format!("{examples}/{path}"))
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let spec = PipelineSpec::parse(path, &text).unwrap_or_else(|e| panic!("{e}"));
    Plan::from_spec(&spec).unwrap_or_else(|e| panic!("{e}"));
    spec
}

#[test]
fn nexmark_q3_in_sql_has_the_plan_of_its_yaml_twin() {
    let (sql, yaml) = (example("sql/q3.sql"), example("q3.yaml"));
    assert_eq!(shape(&sql), shape(&yaml));
    assert_eq!(
        shape(&sql),
        [
            "filter of source",
            "filter of source",
            "join of filter, filter",
            "project of join"
        ]
    );
    let filters: Vec<&str> = (0..2).map(|i| where_text(&sql, i)).collect();
    assert_eq!(
        filters,
        [
            "(category = 10)",
            "(((state = 'OR') OR (state = 'ID')) OR (state = 'CA'))"
        ]
    );
}

#[test]
fn a_window_join_on_start_and_end_of_the_same_windows_keys_on_the_end() {
    let join = |size_a: u32, size_b: u32| {
        let spec = lower(&format!(
            "{BID2}INSERT INTO out SELECT A.auction, A.n, B.m FROM (\n\
             SELECT auction, window_start, window_end, count(*) AS n\n\
             FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '{size_a}' SECOND))\n\
             GROUP BY auction, window_start, window_end) A JOIN (\n\
             SELECT auction, window_start, window_end, count(*) AS m\n\
             FROM TABLE(TUMBLE(TABLE bid2, DESCRIPTOR(date_time), INTERVAL '{size_b}' SECOND))\n\
             GROUP BY auction, window_start, window_end) B\n\
             ON A.auction = B.auction AND A.window_start = B.window_start \
             AND A.window_end = B.window_end;"
        ));
        let join = spec.operators.iter().find_map(|o| match &o.kind {
            OperatorKind::Join(j) => Some(j.clone()),
            _ => None,
        });
        let join = join.expect("a join");
        let keys: Vec<String> = join.left_key.iter().map(|k| k.text.clone()).collect();
        keys
    };
    assert_eq!(
        join(10, 10),
        ["auction", "window_end"],
        "the same windows: the end implies the start, as in nexmark q8's YAML"
    );
    assert_eq!(
        join(10, 20),
        ["auction", "window_start", "window_end"],
        "windows of different sizes that end together may start apart"
    );
}

#[test]
fn nexmark_q8_in_sql_has_the_plan_of_its_yaml_twin() {
    let (sql, yaml) = (example("sql/q8.sql"), example("q8.yaml"));
    assert_eq!(shape(&sql), shape(&yaml));
    let keys = |spec: &PipelineSpec| {
        spec.operators
            .iter()
            .find_map(|o| match &o.kind {
                OperatorKind::Join(j) => Some(
                    j.left_key
                        .iter()
                        .chain(&j.right_key)
                        .map(|k| k.text.clone())
                        .collect::<Vec<_>>(),
                ),
                _ => None,
            })
            .expect("a join")
    };
    assert_eq!(keys(&sql), keys(&yaml));
}

/// The sink of `sql` (after [`BID`]'s tables), which must lower.
fn sink_kind(sql: &str) -> SinkKind {
    lower(sql).sinks.remove(0).kind
}

#[test]
fn a_primary_key_is_the_upsert_key_of_a_sink() {
    let agg = "INSERT INTO t SELECT auction, max(price) AS top FROM bid GROUP BY auction;";
    let pg = sink_kind(&format!(
        "CREATE TABLE t (auction BIGINT, top BIGINT, PRIMARY KEY (auction) NOT ENFORCED) \
         WITH ('connector' = 'jdbc', 'url' = 'postgres://u@h/db', 'table' = 't');\n{agg}"
    ));
    let SinkKind::Postgres(pg) = pg else {
        panic!("{pg:?}")
    };
    assert_eq!(pg.key, ["auction"]);
    assert_eq!(format!("{:?}", pg.mode), "Upsert");
    let mongo = sink_kind(&format!(
        "CREATE TABLE t (auction BIGINT PRIMARY KEY NOT ENFORCED, top BIGINT) \
         WITH ('connector' = 'mongodb', 'uri' = 'mongodb://h:27017', 'database' = 'd', 'collection' = 'c');\n{agg}"
    ));
    let SinkKind::Mongodb(mongo) = mongo else {
        panic!("{mongo:?}")
    };
    assert_eq!(mongo.key, ["auction"]);
    assert_eq!(format!("{:?}", mongo.mode), "Upsert");
    let es = sink_kind(&format!(
        "CREATE TABLE t (auction BIGINT, top BIGINT, PRIMARY KEY (auction, top) NOT ENFORCED) \
         WITH ('connector' = 'elasticsearch', 'url' = 'http://h:9200', 'index' = 'i');\n{agg}"
    ));
    let SinkKind::Elasticsearch(es) = es else {
        panic!("{es:?}")
    };
    let id = es.id.expect("an id from the primary key").text;
    assert_eq!(
        id,
        "CAST(`auction` AS string) || '_' || CAST(`top` AS string)"
    );
    let kafka = sink_kind(&format!(
        "CREATE TABLE t (auction BIGINT, top BIGINT, PRIMARY KEY (auction) NOT ENFORCED) \
         WITH ('connector' = 'upsert-kafka', 'topic' = 'o', 'properties.bootstrap.servers' = 'h:9092');\n{agg}"
    ));
    let SinkKind::Kafka(kafka) = kafka else {
        panic!("{kafka:?}")
    };
    assert_eq!(kafka.key.expect("a key").text, "`auction`");
    assert!(kafka.upsert, "upsert-kafka writes deletes as tombstones");
    // Options the user gives win over the primary key.
    let pg = sink_kind(&format!(
        "CREATE TABLE t (auction BIGINT, top BIGINT, PRIMARY KEY (auction) NOT ENFORCED) \
         WITH ('connector' = 'jdbc', 'url' = 'postgres://u@h/db', 'table' = 't', \
         'key' = 'auction, top');\n{agg}"
    ));
    let SinkKind::Postgres(pg) = pg else {
        panic!("{pg:?}")
    };
    assert_eq!(pg.key, ["auction", "top"]);
    assert_eq!(format!("{:?}", pg.mode), "Upsert");
    let e = error(&format!(
        "CREATE TABLE t (auction BIGINT, top BIGINT, PRIMARY KEY (auction) NOT ENFORCED) \
         WITH ('connector' = 'jdbc', 'url' = 'postgres://u@h/db', 'table' = 't', \
         'mode' = 'append');\n{agg}"
    ));
    assert!(e.contains("but 'mode' is 'append'"), "{e}");
}

#[test]
fn a_primary_key_where_nothing_reads_it_is_an_error() {
    let e = error(
        "CREATE TABLE t (auction BIGINT, PRIMARY KEY (auction) NOT ENFORCED) \
         WITH ('connector' = 'filesystem', 'path' = '/tmp/x', 'format' = 'json');\n\
         INSERT INTO t SELECT auction FROM bid;",
    );
    assert!(
        e.contains("t.sql:3:") && e.contains("`file` sink has no key"),
        "{e}"
    );
    let e = error_text(
        "CREATE TABLE s (a BIGINT, PRIMARY KEY (a) NOT ENFORCED) \
         WITH ('connector' = 'filesystem', 'path' = '/tmp/x', 'format' = 'json');\n\
         CREATE TABLE out WITH ('connector' = 'blackhole');\n\
         INSERT INTO out SELECT a FROM s;",
    );
    assert!(e.contains("only on sink tables"), "{e}");
    let e = error_text(
        "CREATE TABLE s (a BIGINT, UNIQUE (a)) \
         WITH ('connector' = 'filesystem', 'path' = '/tmp/x', 'format' = 'json');\n\
         CREATE TABLE out WITH ('connector' = 'blackhole');\n\
         INSERT INTO out SELECT a FROM s;",
    );
    assert!(
        e.contains("only a `PRIMARY KEY (...) NOT ENFORCED` constraint"),
        "{e}"
    );
    let e = error(
        "CREATE TABLE t (a BIGINT, b BIGINT, PRIMARY KEY (a, b) NOT ENFORCED) \
         WITH ('connector' = 'kafka', 'topic' = 'o', 'properties.bootstrap.servers' = 'h:9092');\n\
         INSERT INTO t SELECT auction AS a, price AS b FROM bid;",
    );
    assert!(e.contains("one column"), "{e}");
}

#[test]
fn dotted_options_fill_a_sinks_document_and_columns() {
    let es = sink_kind(
        "CREATE TABLE t WITH ('connector' = 'elasticsearch', 'url' = 'http://h:9200', \
         'index' = 'i', 'document.a' = 'auction', 'document.cents' = 'price * 100');\n\
         INSERT INTO t SELECT auction, price FROM bid;",
    );
    let SinkKind::Elasticsearch(es) = es else {
        panic!("{es:?}")
    };
    let fields: Vec<(&str, &str)> = es
        .document
        .iter()
        .map(|(f, e)| (f.as_str(), e.text.as_str()))
        .collect();
    assert_eq!(fields, [("a", "auction"), ("cents", "price * 100")]);
    let pg = sink_kind(
        "CREATE TABLE t WITH ('connector' = 'jdbc', 'url' = 'postgres://u@h/db', \
         'table' = 't', 'columns.id' = 'auction');\n\
         INSERT INTO t SELECT auction, price FROM bid;",
    );
    let SinkKind::Postgres(pg) = pg else {
        panic!("{pg:?}")
    };
    assert_eq!(pg.columns.len(), 1);
    assert_eq!(
        (pg.columns[0].0.as_str(), pg.columns[0].1.text.as_str()),
        ("id", "auction")
    );
}

const KAFKA_TAIL: &str = "WITH ('connector' = 'kafka', 'topic' = 'orders', \
    'properties.bootstrap.servers' = '127.0.0.1:9092');\n\
    CREATE TABLE out WITH ('connector' = 'blackhole');\n";

#[test]
fn metadata_columns_are_kafka_record_metadata() {
    let spec = lower_text(&format!(
        "CREATE TABLE orders (id BIGINT, \n  ts TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL, \
         part INT METADATA FROM 'partition', `offset` BIGINT METADATA, \
         WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) {KAFKA_TAIL}\
         INSERT INTO out SELECT id, ts, part, `offset` FROM orders;"
    ));
    let SourceKind::Kafka(kafka) = &spec.sources[0].kind else {
        panic!()
    };
    let fields: Vec<String> = kafka
        .schema
        .fields()
        .iter()
        .map(|f| f.name.clone())
        .collect();
    assert_eq!(fields, ["id", "ts", "part", "offset"]);
    assert_eq!(
        format!("{:?}", kafka.metadata),
        "[Timestamp, Partition, Offset]"
    );
    assert_eq!(
        kafka.event_time.as_ref().map(|n| n.name.as_str()),
        Some("ts")
    );
    // The metadata column first in the list.
    let spec = lower_text(&format!(
        "CREATE TABLE orders (k BYTES METADATA FROM 'key', id BIGINT) {KAFKA_TAIL}\
         INSERT INTO out SELECT id, k FROM orders;"
    ));
    let SourceKind::Kafka(kafka) = &spec.sources[0].kind else {
        panic!()
    };
    assert_eq!(format!("{:?}", kafka.metadata), "[Key]");
}

#[test]
fn bad_metadata_columns_are_errors_at_the_column() {
    let e = error_text(&format!(
        "CREATE TABLE orders (id BIGINT,\n ts BIGINT METADATA FROM 'timestamp') {KAFKA_TAIL}\
         INSERT INTO out SELECT id FROM orders;"
    ));
    assert!(
        e.contains("t.sql:2:2:") && e.contains("of type timestamp, not `BIGINT`"),
        "{e}"
    );
    let e = error_text(&format!(
        "CREATE TABLE orders (id BIGINT, h STRING METADATA FROM 'headers') {KAFKA_TAIL}\
         INSERT INTO out SELECT id FROM orders;"
    ));
    assert!(e.contains("unknown metadata key `headers`"), "{e}");
    let e = error(
        "CREATE TABLE b2 (auction BIGINT, ts TIMESTAMP(3) METADATA FROM 'timestamp') \
         WITH ('connector' = 'nexmark', 'stream' = 'bid');\n\
         INSERT INTO out SELECT auction FROM b2;",
    );
    assert!(e.contains("METADATA columns are for kafka tables"), "{e}");
    // A column that is only named `metadata` is a column.
    let spec = lower_text(
        "CREATE TABLE s (metadata VARCHAR, a BIGINT) \
         WITH ('connector' = 'filesystem', 'path' = '/tmp/x', 'format' = 'json');\n\
         CREATE TABLE out WITH ('connector' = 'blackhole');\n\
         INSERT INTO out SELECT metadata, a FROM s;",
    );
    let SourceKind::File(file) = &spec.sources[0].kind else {
        panic!()
    };
    assert_eq!(file.schema.fields().len(), 2);
}

#[test]
fn kafka_tables_take_flinks_topic_and_startup_options() {
    let spec = lower_text(
        "CREATE TABLE orders (id BIGINT) WITH ('connector' = 'kafka', 'topic' = 'a; b', \
         'properties.bootstrap.servers' = 'h:9092', 'scan.startup.mode' = 'timestamp', \
         'scan.startup.timestamp-millis' = '1700000000000');\n\
         CREATE TABLE out (id BIGINT) WITH ('connector' = 'kafka', 'topic' = 'o', \
         'properties.bootstrap.servers' = 'h:9092');\n\
         INSERT INTO out SELECT id FROM orders;",
    );
    let SourceKind::Kafka(kafka) = &spec.sources[0].kind else {
        panic!()
    };
    assert_eq!(format!("{:?}", kafka.topics), r#"List(["a", "b"])"#);
    assert_eq!(format!("{:?}", kafka.start), "Timestamp(1700000000000)");
    let SinkKind::Kafka(sink) = &spec.sinks[0].kind else {
        panic!()
    };
    assert_eq!(sink.topic, "o");
    let spec = lower_text(
        "CREATE TABLE orders (id BIGINT) WITH ('connector' = 'kafka', 'topic' = 'a', \
         'properties.bootstrap.servers' = 'h:9092', 'scan.startup.mode' = 'latest-offset');\n\
         CREATE TABLE out WITH ('connector' = 'blackhole');\n\
         INSERT INTO out SELECT id FROM orders;",
    );
    let SourceKind::Kafka(kafka) = &spec.sources[0].kind else {
        panic!()
    };
    assert_eq!(format!("{:?}", kafka.start), "Latest");
}

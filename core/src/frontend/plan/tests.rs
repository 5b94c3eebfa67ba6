use super::*;
use crate::frontend::spec::Pos;

const BASE: &str = "\
sources:
  bids:
    type: nexmark
    stream: bid
    events: 1000
operators:
  - name: cheap
    from: bids
    filter: price < 100
  - name: converted
    from: cheap
    map:
      price: price * 0.908
      doubled: auction * 2
sinks:
  out:
    type: blackhole
    from: converted
";

fn plan(text: &str) -> Result<Plan, SpecError> {
    Plan::from_spec(&PipelineSpec::parse("p.yaml", text)?)
}

#[test]
fn map_keeps_input_fields_and_replaces_or_adds() {
    let plan = plan(BASE).unwrap();
    let schema = &plan.operators[1].schema;
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "auction",
            "bidder",
            "price",
            "channel",
            "url",
            "date_time",
            "extra",
            "doubled"
        ]
    );
    assert_eq!(schema.fields()[2].data_type, DataType::F64);
    assert_eq!(plan.sinks[0].input, Input::Operator(1));
    assert_eq!(plan.sources[0].event_time, Some(5));
}

#[test]
fn operators_are_ordered_inputs_first() {
    let text = "\
sources:
  bids: {type: nexmark, stream: bid}
operators:
  - name: second
    from: first
    project: {a: auction}
  - name: first
    from: bids
    filter: 'true'
sinks:
  out: {type: blackhole, from: second}
";
    let plan = plan(text).unwrap();
    assert_eq!(plan.operators[0].name, "first");
    assert_eq!(plan.operators[1].inputs, [Input::Operator(0)]);
}

#[test]
fn type_errors_point_into_the_expression() {
    let error = plan(&BASE.replace("price < 100", "pricee < 100")).unwrap_err();
    assert_eq!(error.path, "operators[0].filter");
    assert_eq!(
        error.pos,
        Pos {
            line: 9,
            column: 13
        }
    );
    assert!(error.message.contains("pricee"), "{error}");
    let error = plan(&BASE.replace("price < 100", "price + 1")).unwrap_err();
    assert!(error.message.contains("must be bool"), "{error}");
    let error = plan(&BASE.replace("auction * 2", "auction * 'x'")).unwrap_err();
    assert_eq!(error.pos.line, 14);
    assert_eq!(error.path, "operators[1].map.doubled");
}

#[test]
fn names_resolve_or_fail_clearly() {
    let error = plan(&BASE.replace("from: cheap", "from: chaep")).unwrap_err();
    assert!(error.message.contains("did you mean `cheap`"), "{error}");
    assert_eq!(
        error.pos,
        Pos {
            line: 11,
            column: 11
        }
    );
    let error = plan(&BASE.replace("from: converted", "from: out")).unwrap_err();
    assert!(error.message.contains("is a sink"), "{error}");
    let error = plan(&BASE.replace("name: converted", "name: bids")).unwrap_err();
    assert!(error.message.contains("used twice"), "{error}");
    let error = plan(&BASE.replace("from: bids", "from: converted")).unwrap_err();
    assert!(error.message.contains("cycle"), "{error}");
}

#[test]
fn union_inputs_must_match() {
    let text = "\
sources:
  bids: {type: nexmark, stream: bid}
  people: {type: nexmark, stream: person}
operators:
  - name: both
    union: [bids, people]
sinks:
  out: {type: blackhole, from: both}
";
    let error = plan(text).unwrap_err();
    assert!(error.message.contains("same fields"), "{error}");
    assert_eq!(error.pos.line, 6);
    let ok = text
        .replace(
            "people: {type: nexmark, stream: person}",
            "more: {type: nexmark, stream: bid}",
        )
        .replace("[bids, people]", "[bids, more]");
    assert_eq!(plan(&ok).unwrap().operators[0].inputs.len(), 2);
}

#[test]
fn an_event_time_expression_appends_a_time_field_and_must_be_a_time() {
    let source = |event_time: &str| {
        format!(
            "sources:\n  r:\n    type: file\n    path: x.csv\n    schema: {{name: string, secs: i64}}\n    event_time: {event_time}\nsinks:\n  out: {{type: blackhole, from: r}}\n"
        )
    };
    let planned = plan(&source("to_timestamp(secs * 1000)")).unwrap();
    assert_eq!(planned.operators[0].name, "r.event_time");
    let names: Vec<&str> = planned.operators[0]
        .schema
        .fields()
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(names, ["name", "secs", "event_time"]);
    assert_eq!(planned.sinks[0].input, Input::Operator(0));
    let err = plan(&source("upper(name)")).unwrap_err();
    assert!(
        err.to_string()
            .contains("event_time must be a timestamp or i64, found string"),
        "{err}"
    );
    let err = plan(&source("sec")).unwrap_err();
    assert!(err.to_string().contains("did you mean `secs`?"), "{err}");
}

const JOINED: &str = "\
sources:
  auctions: {type: nexmark, stream: auction}
  persons: {type: nexmark, stream: person}
operators:
  - name: sellers
    join: {left: auctions, right: persons, left_key: [seller], right_key: [id], right_prefix: person_}
  - name: western
    from: sellers
    filter: state = 'OR'
  - name: result
    from: western
    project: {name: name, id: id}
";

/// The indices `keep` marks.
fn kept(keep: &[bool]) -> Vec<usize> {
    (0..keep.len()).filter(|&i| keep[i]).collect()
}

/// The `keep` of the plan's only join.
fn join_keep(plan: &Plan) -> Option<[Vec<bool>; 2]> {
    plan.operators
        .iter()
        .find_map(|operator| match &operator.op {
            Operator::Join(join) => Some(join.keep.clone()),
            _ => None,
        })?
}

#[test]
fn a_join_keeps_only_the_fields_read_after_it() {
    let text = format!("{JOINED}sinks:\n  out: {{type: blackhole, from: result}}\n");
    let plan = plan(&text).unwrap();
    let [left, right] = join_keep(&plan).expect("the join is pruned");
    // The auction's id; the person's name and state (filtered on, then projected away).
    let mut auction = vec![false; 10];
    auction[0] = true;
    let mut person = vec![false; 8];
    person[1] = true;
    person[5] = true;
    assert_eq!((left, right), (auction, person));
    // The exchanges into the join carry those, the keys and the event times.
    let auctions = plan
        .exchange_keep(0, 0)
        .expect("the auctions' exchange is pruned");
    assert_eq!(kept(&auctions), [0, 5, 7]);
    let persons = plan
        .exchange_keep(0, 1)
        .expect("the persons' exchange is pruned");
    assert_eq!(kept(&persons), [0, 1, 5, 6]);
}

#[test]
fn a_join_read_whole_keeps_every_field() {
    // A sink reads every field of what it consumes, here beside the projection.
    let beside = format!(
        "{JOINED}sinks:\n  out: {{type: blackhole, from: result}}\n  all: {{type: blackhole, from: western}}\n"
    );
    // A top's reads are not enumerated: everything is kept for it.
    let topped = JOINED.replace(
        "    project: {name: name, id: id}\n",
        "    top: {n: 1, order_by: [id desc], group_by: [name]}\n",
    ) + "sinks:\n  out: {type: blackhole, from: result}\n";
    for text in [beside, topped] {
        let plan = plan(&text).unwrap();
        assert_eq!(join_keep(&plan), None, "{text}");
    }
}

#[test]
fn a_union_after_a_join_passes_its_readers_needs_through() {
    let text = format!(
        "{JOINED}  - name: both
    union: [western, result2]
  - name: result2
    from: western
    filter: city = 'x'
  - name: named
    from: both
    project: {{city: city}}
sinks:
  out: {{type: blackhole, from: named}}
  ids: {{type: blackhole, from: result}}
"
    );
    let plan = plan(&text).unwrap();
    let [left, right] = join_keep(&plan).expect("the join is pruned");
    assert_eq!(left.iter().filter(|&&k| k).count(), 1);
    // name (result), city (named through the union), state (the filter).
    assert_eq!(right, [false, true, false, false, true, true, false, false]);
}

#[test]
fn an_aggregate_after_a_join_keeps_its_keys_and_arguments() {
    let text = JOINED.replace(
        "    project: {name: name, id: id}\n",
        "    group_by: [name]\n    aggregate: {n: count(*), top: max(reserve), big: count(*) filter (where initial_bid > 10)}\n",
    ) + "sinks:\n  out: {type: blackhole, from: result}\n";
    let plan = plan(&text).unwrap();
    let [left, right] = join_keep(&plan).expect("the join is pruned");
    // initial_bid and reserve of the auction; name and state (filtered) of the person.
    assert_eq!((kept(&left), kept(&right)), (vec![3, 4], vec![1, 5]));
}

/// An exchange into an aggregate carries its keys, arguments and event time; into an
/// aggregate with a late side output (which emits whole rows), every field.
#[test]
fn an_exchange_into_an_aggregate_keeps_what_it_reads() {
    let text = "\
sources:
  bids: {type: nexmark, stream: bid}
operators:
  - name: sessions
    from: bids
    group_by: [bidder]
    window: {type: session, gap: 10s}
    aggregate: {n: count(*), top: max(price)}
sinks:
  out: {type: blackhole, from: sessions}
";
    let planned = plan(text).unwrap();
    let keep = planned.exchange_keep(0, 0).expect("the exchange is pruned");
    // bid: auction, bidder, price, channel, url, date_time, extra.
    assert_eq!(kept(&keep), [1, 2, 5]);
    let late = text.replace(
        "window: {type: session, gap: 10s}",
        "window: {type: session, gap: 10s, late_output: late}",
    ) + "  late_rows: {type: blackhole, from: late}\n";
    assert_eq!(plan(&late).unwrap().exchange_keep(0, 0), None);
    // A key_by's exchange carries its keys and what its consumers read.
    let keyed = "\
sources:
  bids: {type: nexmark, stream: bid}
operators:
  - name: by_bidder
    from: bids
    key_by: [bidder]
  - name: prices
    from: by_bidder
    project: {price: price, date_time: date_time}
sinks:
  out: {type: blackhole, from: prices}
";
    let keep = plan(keyed).unwrap().exchange_keep(0, 0).expect("pruned");
    assert_eq!(kept(&keep), [1, 2, 5]);
    let whole = keyed.replace("from: prices", "from: by_bidder");
    assert_eq!(plan(&whole).unwrap().exchange_keep(0, 0), None);
}

/// A windowed top reads what is read of its output, its keys, its order and its event time;
/// a top that emits an update stream, or whose rows go to a sink, reads every field.
#[test]
fn a_top_reads_what_follows_it_and_its_order() {
    let text = "\
sources:
  bids: {type: nexmark, stream: bid}
operators:
  - name: highest
    from: bids
    top: {n: 1, order_by: price desc, window: {type: tumbling, size: 10s}}
  - name: result
    from: highest
    project: {auction: auction, extra: extra, window_end: window_end}
sinks:
  out: {type: blackhole, from: result}
";
    // bid: auction, bidder, price, channel, url, date_time, extra.
    let planned = plan(text).unwrap();
    assert_eq!(kept(&planned.source_keep(0).expect("pruned")), [0, 2, 5, 6]);
    let sunk = text.replace("from: result}", "from: highest}");
    assert_eq!(plan(&sunk).unwrap().source_keep(0), None);
    let keyed = text.replace("top: {n: 1,", "top: {n: 1, group_by: [bidder],");
    assert_eq!(
        kept(&plan(&keyed).unwrap().source_keep(0).expect("pruned")),
        [0, 1, 2, 5, 6]
    );
    let updates = text
        .replace(", window: {type: tumbling, size: 10s}", "")
        .replace(", window_end: window_end", "");
    assert_eq!(plan(&updates).unwrap().source_keep(0), None);
}

/// A source need produce only what its consumers read (all of it for a sink, a late side
/// output or a whole-row consumer), and always its event time.
#[test]
fn a_source_produces_what_its_consumers_read() {
    let text = "\
sources:
  bids: {type: nexmark, stream: bid}
  auctions: {type: nexmark, stream: auction}
operators:
  - name: cheap
    from: bids
    filter: price < 100
  - name: per_bidder
    from: cheap
    group_by: [bidder]
    window: {type: tumbling, size: 10s}
    aggregate: {n: count(*)}
  - name: categories
    from: auctions
    project: {category: category}
sinks:
  out: {type: blackhole, from: per_bidder}
  other: {type: blackhole, from: categories}
";
    let planned = plan(text).unwrap();
    // bid: auction, bidder, price, channel, url, date_time, extra.
    assert_eq!(kept(&planned.source_keep(0).expect("pruned")), [1, 2, 5]);
    // auction: id, item_name, description, initial_bid, reserve, date_time, expires, seller,
    // category, extra; date_time is its event time.
    assert_eq!(kept(&planned.source_keep(1).expect("pruned")), [5, 8]);
    let sunk = format!("{text}  raw: {{type: blackhole, from: bids}}\n");
    assert_eq!(plan(&sunk).unwrap().source_keep(0), None);
    let late = text.replace("size: 10s}", "size: 10s, late_output: late}")
        + "  late_rows: {type: blackhole, from: late}\n";
    assert_eq!(plan(&late).unwrap().source_keep(0), None);
    let whole = text.replace(
        "filter: price < 100",
        "project: {bidder: bidder, price: price, date_time: date_time, extra: extra}",
    );
    assert_eq!(
        kept(&plan(&whole).unwrap().source_keep(0).expect("pruned")),
        [1, 2, 5, 6]
    );
}

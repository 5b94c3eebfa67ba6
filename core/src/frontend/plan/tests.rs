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

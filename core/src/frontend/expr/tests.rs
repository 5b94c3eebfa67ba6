use super::*;
use crate::record::batch::{BatchBuilder, PartitionId, StreamId};
use crate::record::schema::Field;

fn schema() -> Schema {
    Schema::new(vec![
        Field::new("auction", DataType::I64),
        Field::new("price", DataType::I64),
        Field::new("ratio", DataType::F64),
        Field::new("name", DataType::String),
        Field::nullable("note", DataType::String),
        Field::new("at", DataType::Timestamp),
        Field::new("ok", DataType::Bool),
        Field::nullable("maybe", DataType::I64),
        Field::new("blob", DataType::Bytes),
    ])
}

// 2026-11-29T20:30:51.123Z
const AT: i64 = 1_795_984_251_123;

/// Evaluates `src` over one row and returns the result as an owned value.
fn eval(src: &str) -> Datum<'static> {
    let schema = schema();
    let expr = compile(src, &schema).unwrap_or_else(|e| panic!("{src}: {e} at {}", e.offset));
    let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
    let row = [
        ValueRef::I64(246),
        ValueRef::I64(1000),
        ValueRef::F64(0.5),
        ValueRef::Str("Lagos, NG"),
        ValueRef::Null,
        ValueRef::Timestamp(AT),
        ValueRef::Bool(true),
        ValueRef::Null,
        ValueRef::Bytes(b"\x01\x02"),
    ];
    builder.push(&row).unwrap();
    let batch = builder.finish();
    let value = expr.eval(batch.view().row(0));
    match value {
        Datum::Str(s) => Datum::Str(Cow::Owned(s.into_owned())),
        Datum::Bytes(b) => Datum::Bytes(Cow::Owned(b.into_owned())),
        Datum::Null => Datum::Null,
        Datum::I64(v) => Datum::I64(v),
        Datum::F64(v) => Datum::F64(v),
        Datum::Bool(v) => Datum::Bool(v),
        Datum::Timestamp(v) => Datum::Timestamp(v),
    }
}

fn err(src: &str) -> ExprError {
    compile(src, &schema()).expect_err(src)
}

fn s(text: &str) -> Datum<'static> {
    Datum::Str(Cow::Owned(text.to_string()))
}

#[test]
fn arithmetic_follows_precedence_and_widens() {
    assert_eq!(eval("1 + 2 * 3"), Datum::I64(7));
    assert_eq!(eval("(1 + 2) * 3"), Datum::I64(9));
    assert_eq!(eval("price * 0.908"), Datum::F64(1000.0 * 0.908));
    assert_eq!(eval("auction % 123"), Datum::I64(0));
    assert_eq!(eval("-7 % 3"), Datum::I64(-1));
    assert_eq!(eval("7 / 2"), Datum::I64(3));
    assert_eq!(eval("7 / 2.0"), Datum::F64(3.5));
    assert_eq!(eval("-price"), Datum::I64(-1000));
    assert_eq!(eval("price / 0"), Datum::Null);
    assert_eq!(eval("9223372036854775807 + 1"), Datum::I64(i64::MIN));
    assert_eq!(eval("at + 1000 - at"), Datum::I64(1000));
    assert_eq!(eval("1_000 + 1e3"), Datum::F64(2000.0));
}

#[test]
fn comparisons_and_three_valued_logic() {
    assert_eq!(eval("auction % 123 = 0"), Datum::Bool(true));
    assert_eq!(eval("price == 1000 AND ratio < 1"), Datum::Bool(true));
    assert_eq!(eval("price <> 1000 OR NOT ok"), Datum::Bool(false));
    assert_eq!(eval("price != 1000"), Datum::Bool(false));
    assert_eq!(eval("maybe = 1"), Datum::Null);
    assert_eq!(eval("maybe = 1 AND false"), Datum::Bool(false));
    assert_eq!(eval("maybe = 1 OR true"), Datum::Bool(true));
    assert_eq!(eval("maybe = 1 OR false"), Datum::Null);
    assert_eq!(
        eval("maybe IS NULL AND note IS NULL AND name IS NOT NULL"),
        Datum::Bool(true)
    );
    assert_eq!(eval("name > 'L' AND name < 'M'"), Datum::Bool(true));
    assert_eq!(
        eval("at >= '2026-11-29T00:00:00Z' AND at < '2026-11-30'"),
        Datum::Bool(true)
    );
    assert_eq!(eval("price BETWEEN 999 AND 1000"), Datum::Bool(true));
    assert_eq!(eval("price NOT BETWEEN 999 AND 1000"), Datum::Bool(false));
    assert_eq!(eval("price IN (1, 1000)"), Datum::Bool(true));
    assert_eq!(eval("price NOT IN (1, 2)"), Datum::Bool(true));
    assert_eq!(eval("price IN (1, maybe)"), Datum::Null);
    assert_eq!(eval("ratio = 1 / 2.0"), Datum::Bool(true));
    assert_eq!(
        eval("at IN ('2026-11-29T20:30:51.123Z', '2000-01-01')"),
        Datum::Bool(true)
    );
    assert_eq!(
        eval("CASE at WHEN '2026-11-29T20:30:51.123Z' THEN 1 ELSE 0 END"),
        Datum::I64(1)
    );
}

#[test]
fn like_patterns() {
    assert_eq!(eval("name LIKE 'Lag%'"), Datum::Bool(true));
    assert_eq!(eval("name LIKE '%NG'"), Datum::Bool(true));
    assert_eq!(eval("name LIKE 'L_gos%'"), Datum::Bool(true));
    assert_eq!(eval("name LIKE 'Lagos'"), Datum::Bool(false));
    assert_eq!(eval("name NOT LIKE '%x%'"), Datum::Bool(true));
    assert_eq!(eval("'50%' LIKE '50\\%'"), Datum::Bool(true));
    assert_eq!(eval("'50x' LIKE '50\\%'"), Datum::Bool(false));
    assert_eq!(eval("note LIKE '%'"), Datum::Null);
}

#[test]
fn case_and_if() {
    let q14 = "CASE
          WHEN hour(at) >= 8 AND hour(at) <= 18 THEN 'dayTime'
          WHEN hour(at) <= 6 OR hour(at) >= 20 THEN 'nightTime'
          ELSE 'otherTime'
        END";
    assert_eq!(eval(q14), s("nightTime"));
    assert_eq!(
        eval("CASE price WHEN 1 THEN 'one' WHEN 1000 THEN 'k' END"),
        s("k")
    );
    assert_eq!(eval("CASE price WHEN 1 THEN 'one' END"), Datum::Null);
    assert_eq!(eval("IF(price > 10, price, 0.5)"), Datum::F64(1000.0));
    assert_eq!(eval("if(ok, 'y', 'n')"), s("y"));
    let schema = schema();
    assert!(compile("CASE WHEN ok THEN 1 END", &schema)
        .unwrap()
        .nullable());
    assert!(!compile("IF(ok, 1, 2)", &schema).unwrap().nullable());
    assert_eq!(
        compile("IF(ok, 1, 2.5)", &schema).unwrap().data_type(),
        DataType::F64
    );
}

#[test]
fn casts_convert_or_give_null() {
    assert_eq!(eval("CAST(ratio AS i64)"), Datum::I64(0));
    assert_eq!(eval("CAST('42' AS bigint)"), Datum::I64(42));
    assert_eq!(eval("CAST('4x2' AS i64)"), Datum::Null);
    assert_eq!(eval("CAST(price AS string)"), s("1000"));
    assert_eq!(eval("CAST(at AS string)"), s("2026-11-29T20:30:51.123Z"));
    assert_eq!(
        eval("CAST('2026-11-29T20:30:51.123Z' AS timestamp)"),
        Datum::Timestamp(AT)
    );
    assert_eq!(eval("CAST('true' AS bool)"), Datum::Bool(true));
    assert_eq!(eval("CAST(price AS double)"), Datum::F64(1000.0));
    let schema = schema();
    assert!(!compile("CAST(price AS f64)", &schema).unwrap().nullable());
    assert!(compile("CAST(name AS i64)", &schema).unwrap().nullable());
}

#[test]
fn string_functions() {
    assert_eq!(eval("lower(name)"), s("lagos, ng"));
    assert_eq!(eval("UPPER(name)"), s("LAGOS, NG"));
    assert_eq!(eval("length(name)"), Datum::I64(9));
    assert_eq!(eval("length(blob)"), Datum::I64(2));
    assert_eq!(eval("substr(name, 1, 5)"), s("Lagos"));
    assert_eq!(eval("substr(name, 8)"), s("NG"));
    assert_eq!(eval("substr(name, 0, 2)"), s("L"));
    assert_eq!(eval("substr('héllo', 2, 3)"), s("éll"));
    assert_eq!(eval("trim('  a b ')"), s("a b"));
    assert_eq!(eval("concat(name, '-', price, note)"), s("Lagos, NG-1000"));
    assert_eq!(eval("name || '!' || price"), s("Lagos, NG!1000"));
    assert_eq!(eval("note || 'x'"), Datum::Null);
    assert_eq!(eval("replace(name, ', ', '/')"), s("Lagos/NG"));
    assert_eq!(
        eval("starts_with(name, 'Lag') AND ends_with(name, 'NG')"),
        Datum::Bool(true)
    );
    assert_eq!(eval("contains(name, 'os,')"), Datum::Bool(true));
    assert_eq!(eval("count_char('ccabc', 'c')"), Datum::I64(3));
    assert_eq!(eval("count_char(name, 'é')"), Datum::I64(0));
    assert_eq!(eval("'it''s'"), s("it's"));
}

#[test]
fn number_and_time_functions() {
    assert_eq!(eval("abs(-price)"), Datum::I64(1000));
    assert_eq!(eval("floor(2.7) + ceil(2.2)"), Datum::F64(5.0));
    assert_eq!(eval("round(2.5)"), Datum::F64(3.0));
    assert_eq!(eval("round(2.71828, 2)"), Datum::F64(2.72));
    assert_eq!(eval("round(1234, -2)"), Datum::I64(1200));
    assert_eq!(eval("greatest(1, price, maybe)"), Datum::I64(1000));
    assert_eq!(eval("least(ratio, 2)"), Datum::F64(0.5));
    assert_eq!(eval("coalesce(note, name)"), s("Lagos, NG"));
    assert_eq!(eval("coalesce(maybe, 7)"), Datum::I64(7));
    assert_eq!(eval("nullif(price, 1000)"), Datum::Null);
    assert_eq!(
        eval("year(at) * 10000 + month(at) * 100 + day(at)"),
        Datum::I64(20261129)
    );
    assert_eq!(eval("hour(at) * 100 + minute(at)"), Datum::I64(2030));
    assert_eq!(eval("second(at)"), Datum::I64(51));
    assert_eq!(eval("day_of_week(at)"), Datum::I64(7));
    assert_eq!(eval("epoch_ms(at)"), Datum::I64(AT));
    assert_eq!(eval("to_timestamp(0)"), Datum::Timestamp(0));
    assert_eq!(
        eval("to_timestamp('1970-01-01T00:00:01Z')"),
        Datum::Timestamp(1000)
    );
    assert_eq!(eval("sqrt(-1)"), Datum::Null);
}

#[test]
fn quoted_names_and_bare_fields() {
    let schema = schema();
    let expr = compile("`price`", &schema).unwrap();
    assert_eq!(expr.field_index(), Some(1));
    assert_eq!(compile("\"name\"", &schema).unwrap().field_index(), Some(3));
    assert_eq!(compile("price + 0", &schema).unwrap().field_index(), None);
    assert_eq!(eval("note"), Datum::Null);
    assert!(compile("note", &schema).unwrap().nullable());
}

#[test]
fn errors_point_at_the_problem() {
    let e = err("pricee < 100");
    assert_eq!((e.offset, e.field.as_deref()), (0, Some("pricee")));
    assert!(e.message.contains("did you mean `price`"), "{}", e.message);
    let e = err("auction * 'x'");
    assert_eq!(e.offset, 10);
    assert!(
        e.message.contains("needs numbers, found string"),
        "{}",
        e.message
    );
    let e = err("name + 'x'");
    assert!(e.message.contains("||"), "{}", e.message);
    let e = err("price = 'x'");
    assert_eq!(e.offset, 8);
    assert!(
        e.message.contains("cannot compare i64 with string"),
        "{}",
        e.message
    );
    let e = err("lowr(name)");
    assert!(e.message.contains("did you mean `lower`"), "{}", e.message);
    let e = err("lower(price)");
    assert_eq!(e.offset, 6);
    assert!(
        e.message
            .contains("argument 1 of `lower` must be string, found i64"),
        "{}",
        e.message
    );
    let e = err("substr(name)");
    assert!(
        e.message.contains("takes 2 to 3 arguments, found 1"),
        "{}",
        e.message
    );
    let e = err("price >");
    assert_eq!(e.offset, 7);
    assert!(
        e.message.contains("found the end of the expression"),
        "{}",
        e.message
    );
    let e = err("(price");
    assert!(e.message.contains("expected `)`"), "{}", e.message);
    let e = err("price 1");
    assert_eq!(e.offset, 6);
    assert!(err("'abc").message.contains("unterminated string"));
    assert!(err("price # 2")
        .message
        .contains("unexpected character `#`"));
    assert!(err("99999999999999999999")
        .message
        .contains("does not fit in i64"));
    assert!(err("CAST(price AS money)")
        .message
        .contains("unknown type `money`"));
    assert!(err("NULL").message.contains("bare NULL"));
    assert!(err("").message.contains("empty"));
    assert!(err("IF(ok, 1, 'x')")
        .message
        .contains("mixes i64 and string"));
    assert!(err("at > 5").message.contains("to_timestamp"));
    assert!(err("at > 'yesterday'").message.contains("is not a time"));
    assert!(err("ok AND price")
        .message
        .contains("AND needs a bool operand, found i64"));
    assert!(err("CASE WHEN price THEN 1 END")
        .message
        .contains("WHEN needs a bool"));
    assert!(err("\"nmae\" = 'x'")
        .message
        .contains("did you mean `name`"));
    assert!(err("\"hello world\" = name")
        .message
        .contains("single quotes"));
}

#[test]
fn garbage_never_panics() {
    let schema = schema();
    let samples = [
        "(((",
        ")))",
        "CASE",
        "CASE WHEN",
        "CAST(",
        "CAST(x AS",
        "a IN (",
        "a NOT",
        "NOT NOT NOT",
        "1..2",
        ".5 + 1.",
        "é",
        "`",
        "\"",
        "''''",
        "-",
        "- -",
        "price BETWEEN 1",
        "IS NULL",
        "price IS",
        "f(,)",
        "if()",
        "x LIKE",
        "1e",
        "1e+",
        "0x10",
        "\u{0}",
    ];
    for sample in samples {
        let _ = compile(sample, &schema);
    }
    assert_eq!(eval(".5 + 1."), Datum::F64(1.5));
}

const URL: &str = "https://www.nexmark.com/abcde/fghij/klmno/item.htm?query=1&channel_id=42";

#[test]
fn regexp_extract_returns_a_group_of_the_first_match() {
    let q21 = |url: &str| {
        eval(&format!(
            "regexp_extract('{url}', '(&|^)channel_id=([^&]*)', 2)"
        ))
    };
    assert_eq!(q21(URL), s("42"));
    assert_eq!(q21("channel_id=7&x=1"), s("7"));
    assert_eq!(q21("a=1&channel_id=&b"), s(""));
    assert_eq!(q21("https://www.nexmark.com/item.htm?query=1"), Datum::Null);
    assert_eq!(q21("xchannel_id=1"), Datum::Null);
    assert_eq!(eval("regexp_extract(name, '[A-Z]+$')"), s("NG"));
    assert_eq!(eval("regexp_extract(name, '[A-Z]+$', 0)"), s("NG"));
    assert_eq!(
        eval("regexp_extract(lower(name), '(\\w+), (\\w+)', 2)"),
        s("ng")
    );
    assert_eq!(eval("regexp_extract('b', '(a)|(b)', 1)"), Datum::Null);
    assert_eq!(eval("regexp_extract('b', '(a)|(b)', 2)"), s("b"));
    assert_eq!(eval("regexp_extract('héé!', 'é+')"), s("éé"));
    assert_eq!(eval("regexp_extract(note, 'x')"), Datum::Null);
    let schema = schema();
    assert!(compile("regexp_extract(name, 'x')", &schema)
        .unwrap()
        .nullable());
}

#[test]
fn regexp_extract_checks_its_literals() {
    let e = err("regexp_extract(name, 'a(b')");
    assert_eq!(e.offset, 21);
    assert!(
        e.message
            .starts_with("invalid regular expression: unclosed group"),
        "{}",
        e.message
    );
    let e = err("regexp_extract(name, name)");
    assert_eq!(e.offset, 21);
    assert!(
        e.message.contains("must be a string literal"),
        "{}",
        e.message
    );
    let e = err("regexp_extract(name, '(a)(b)', 3)");
    assert_eq!(e.offset, 31);
    assert!(
        e.message
            .contains("group 3 does not exist: the pattern has 2 capture groups"),
        "{}",
        e.message
    );
    assert!(err("regexp_extract(name, 'a', -1)")
        .message
        .contains("non-negative integer literal"));
    assert!(err("regexp_extract(name, 'a', price)")
        .message
        .contains("non-negative integer literal"));
    assert!(err("regexp_extract(price, 'a')")
        .message
        .contains("argument 1 of `regexp_extract` must be string"));
    assert!(err("regexp_extract(name)")
        .message
        .contains("takes 2 to 3 arguments"));
}

#[test]
fn split_index_follows_flink() {
    let part = |i: i64| eval(&format!("split_index('{URL}', '/', {i})"));
    assert_eq!(part(0), s("https:"));
    assert_eq!(part(1), s(""));
    assert_eq!(part(3), s("abcde"));
    assert_eq!(part(5), s("klmno"));
    assert_eq!(part(6), s("item.htm?query=1&channel_id=42"));
    assert_eq!(part(7), Datum::Null);
    assert_eq!(part(-1), Datum::Null);
    assert_eq!(eval("split_index('a::b::c', '::', 1)"), s("b"));
    assert_eq!(eval("split_index('a//', '/', 2)"), s(""));
    assert_eq!(eval("split_index('/a', '/', 0)"), s(""));
    assert_eq!(eval("split_index('aaa', 'aa', 1)"), s("a"));
    assert_eq!(eval("split_index(name, ', ', 1)"), s("NG"));
    assert_eq!(eval("split_index(lower(name), ',', 0)"), s("lagos"));
    assert_eq!(eval("split_index(name, 'x', 0)"), s("Lagos, NG"));
    assert_eq!(eval("split_index('', '/', 0)"), Datum::Null);
    assert_eq!(eval("split_index(name, '', 0)"), Datum::Null);
    assert_eq!(eval("split_index(note, '/', 0)"), Datum::Null);
    assert_eq!(eval("split_index(name, '/', maybe)"), Datum::Null);
    assert!(err("split_index(name, '/')")
        .message
        .contains("takes 3 arguments"));
}

#[test]
fn date_format_writes_the_fields_of_its_pattern() {
    assert_eq!(
        eval("date_format(at, 'yyyy-MM-dd HH:mm:ss.SSS')"),
        s("2026-11-29 20:30:51.123")
    );
    assert_eq!(
        eval("date_format(at, 'yyyy-MM-dd''T''HH')"),
        s("2026-11-29T20")
    );
    assert_eq!(eval("date_format(at, '''''dd''''')"), s("'29'"));
    assert_eq!(
        eval("date_format(at, '''dt=''yyyyMMdd/HH')"),
        s("dt=20261129/20")
    );
    assert_eq!(eval("date_format(at, '')"), s(""));
    assert_eq!(
        eval("date_format(to_timestamp(-1), 'yyyy-MM-dd HH:mm:ss.SSS')"),
        s("1969-12-31 23:59:59.999")
    );
    assert_eq!(
        eval("date_format(to_timestamp(253402300800000), 'yyyy-MM')"),
        s("10000-01")
    );
    assert_eq!(
        eval("date_format(to_timestamp(-62198755200000), 'yyyy')"),
        s("-0001")
    );
    let schema = schema();
    assert!(!compile("date_format(at, 'yyyy')", &schema)
        .unwrap()
        .nullable());
    let e = err("date_format(at, 'yy-MM')");
    assert_eq!(e.offset, 16);
    assert!(
        e.message.contains("`yy` is not a date_format field"),
        "{}",
        e.message
    );
    assert!(err("date_format(at, 'HH''h')")
        .message
        .contains("unterminated quote"));
    assert!(err("date_format(at, name)")
        .message
        .contains("must be a string literal"));
    assert!(err("date_format(price, 'HH')")
        .message
        .contains("argument 1 of `date_format` must be timestamp"));
}

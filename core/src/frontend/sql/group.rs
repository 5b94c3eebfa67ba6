//! Windowing functions, GROUP BY with aggregates, and top-N by `ROW_NUMBER()`.

use sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, Select, SelectItem,
    TableFactor, TableWithJoins, WindowType,
};

use super::expr::{self, aggregate_name, Scope};
use super::query::{group_key, parts, relation, split_and, window, Lower, Relation};
use super::{err, SqlError};
use crate::frontend::spec::{AggregateSpec, ExprText, GroupKey, Named, Pos, TopSpec};
use crate::time::window::{TimeDomain, WindowKind};

/// Whether `call` is one of the windowing functions (the other table functions are processes).
pub(super) fn is_window_function(call: &Function) -> bool {
    super::prep::WINDOW_FUNCTIONS
        .iter()
        .any(|w| call.name.to_string().eq_ignore_ascii_case(w))
}

/// `TUMBLE(t, DESCRIPTOR(ts), size)`, `HOP(t, DESCRIPTOR(ts), slide, size)`,
/// `SESSION(t, DESCRIPTOR(ts), gap)`; `TABLE` before `t` is taken out before parsing.
pub(super) fn window_function(
    lower: &mut Lower,
    function: &Function,
    pos: Pos,
) -> Result<Relation, SqlError> {
    let name = function.name.to_string().to_ascii_uppercase();
    let FunctionArguments::List(list) = &function.args else {
        return err(pos, format!("{name} needs arguments"));
    };
    let args: Vec<&Expr> = list
        .args
        .iter()
        .filter_map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
            _ => None,
        })
        .collect();
    let durations: Vec<Option<i64>> = args.iter().skip(2).map(|e| expr::interval_ms(e)).collect();
    let kind = window_kind(&name, &durations, pos)?;
    if durations.iter().flatten().any(|d| *d <= 0) {
        return err(pos, "window durations must be positive");
    }
    let table = table_argument(lower, args.first().copied(), &name, pos)?;
    let descriptor = match args.get(1) {
        Some(Expr::Function(d)) if d.name.to_string().eq_ignore_ascii_case("DESCRIPTOR") => {
            descriptor_column(d)
        }
        _ => {
            return err(
                pos,
                format!("the second argument of {name} must be DESCRIPTOR(time_column)"),
            )
        }
    };
    let mut spec = window(kind, pos);
    if descriptor.is_some_and(|column| lower.is_proctime(&table, &column)) {
        spec.time = TimeDomain::Processing;
    }
    for arg in &list.args {
        if let FunctionArg::Named {
            name: arg_name,
            arg,
            ..
        } = arg
        {
            window_option(lower, &mut spec, &name, arg_name, arg, pos)?;
        }
    }
    let name = lower.relation(&table, pos)?;
    Ok(relation(name, Scope::of(&table), Some(spec)))
}

/// The window shape of windowing function `name` with its duration arguments.
fn window_kind(name: &str, durations: &[Option<i64>], pos: Pos) -> Result<WindowKind, SqlError> {
    Ok(match (name, durations) {
        ("TUMBLE", [Some(size)]) => WindowKind::Tumbling { size_ms: *size },
        ("HOP", [Some(slide), Some(size)]) => WindowKind::Hop { size_ms: *size, slide_ms: *slide },
        ("SESSION", [Some(gap)]) => WindowKind::Session { gap_ms: *gap },
        ("CUMULATE", [Some(step), Some(size)]) if *step > 0 && *size > 0 && size % step == 0 => {
            WindowKind::Cumulate { step_ms: *step, size_ms: *size }
        }
        ("CUMULATE", _) => return err(pos, "expected CUMULATE(TABLE t, DESCRIPTOR(time_column), INTERVAL step, INTERVAL size), the size a whole number of steps"),
        ("TUMBLE", _) => return err(pos, "expected TUMBLE(TABLE t, DESCRIPTOR(time_column), INTERVAL 'n' unit)"),
        ("HOP", _) => return err(pos, "expected HOP(TABLE t, DESCRIPTOR(time_column), INTERVAL slide, INTERVAL size)"),
        ("SESSION", _) => return err(pos, "expected SESSION(TABLE t, DESCRIPTOR(time_column), INTERVAL gap); group by the session keys"),
        _ => return err(pos, format!("`{name}` is not a windowing function (TUMBLE, HOP, CUMULATE, SESSION)")),
    })
}

/// The table or view a windowing function reads (its first argument, `TABLE` taken out).
fn table_argument(
    lower: &Lower,
    first: Option<&Expr>,
    name: &str,
    pos: Pos,
) -> Result<String, SqlError> {
    match first {
        Some(Expr::Identifier(id)) => {
            if let Some(partition) = lower.partition_at(super::pos_of(id.span.start)) {
                return err(
                    partition.pos,
                    format!("{name} takes no PARTITION BY: group by the keys instead"),
                );
            }
            Ok(id.value.clone())
        }
        _ => err(
            pos,
            format!("the first argument of {name} must be a table or view name"),
        ),
    }
}

/// A named argument of a windowing function: Wire's `ALLOWED_LATENESS => INTERVAL ...` and
/// `LATE_OUTPUT => 'name'` (the YAML window's `allowed_lateness` and `late_output`).
fn window_option(
    lower: &mut Lower,
    spec: &mut crate::frontend::spec::WindowSpec,
    function: &str,
    name: &sqlparser::ast::Ident,
    arg: &FunctionArgExpr,
    at: Pos,
) -> Result<(), SqlError> {
    let pos = if name.span.start.line > 0 {
        super::pos_of(name.span.start)
    } else {
        at
    };
    let value = match arg {
        FunctionArgExpr::Expr(e) => e,
        _ => return err(pos, format!("`{}` needs a value", name.value)),
    };
    match name.value.to_ascii_uppercase().as_str() {
        "ALLOWED_LATENESS" => match expr::interval_ms(value) {
            Some(ms) if ms >= 0 => spec.allowed_lateness_ms = ms,
            _ => return err(pos, "ALLOWED_LATENESS takes an interval, such as INTERVAL '5' SECOND"),
        },
        "LATE_OUTPUT" => {
            let late = match value {
                Expr::Value(v) => match &v.value {
                    sqlparser::ast::Value::SingleQuotedString(s) => s.clone(),
                    _ => return err(pos, "LATE_OUTPUT takes a name, such as 'late_bids'"),
                },
                Expr::Identifier(id) => id.value.clone(),
                _ => return err(pos, "LATE_OUTPUT takes a name, such as 'late_bids'"),
            };
            lower.late_output(&late, pos)?;
            spec.late_output = Some(Named { name: late, pos });
        }
        other => {
            return err(
                pos,
                format!("{function} has no argument `{other}` (Wire's named arguments: ALLOWED_LATENESS, LATE_OUTPUT)"),
            )
        }
    }
    Ok(())
}

/// The column `DESCRIPTOR(col)` names.
fn descriptor_column(descriptor: &Function) -> Option<String> {
    let FunctionArguments::List(list) = &descriptor.args else {
        return None;
    };
    match list.args.as_slice() {
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Identifier(id)))] => {
            Some(id.value.clone())
        }
        _ => None,
    }
}

fn is_column(e: &Expr, name: &str) -> bool {
    match e {
        Expr::Identifier(id) => id.value == name,
        Expr::CompoundIdentifier(parts) => parts.last().is_some_and(|p| p.value == name),
        _ => false,
    }
}

fn item_expr(item: &SelectItem) -> Option<(&Expr, Option<&str>)> {
    match item {
        SelectItem::UnnamedExpr(e) => Some((e, None)),
        SelectItem::ExprWithAlias { expr, alias } => Some((expr, Some(alias.value.as_str()))),
        _ => None,
    }
}

/// The `aggregate` operator of a SELECT with GROUP BY or aggregates.
pub(super) fn aggregate(
    lower: &mut Lower,
    select: &Select,
    group_by: &[Expr],
    rel: Relation,
    at: Pos,
) -> Result<Relation, SqlError> {
    let (input, scope, window_spec) = parts(&rel);
    let (input, scope, window_spec) = (input.to_string(), scope.clone(), window_spec.cloned());
    let mut keys: Vec<&Expr> = group_by.iter().collect();
    if window_spec.is_some() {
        let has = |n: &str| keys.iter().any(|k| is_column(k, n));
        if !(has("window_start") && has("window_end")) {
            return err(
                at,
                "a windowed aggregate must GROUP BY window_start, window_end (and its keys)",
            );
        }
        keys.retain(|k| !is_column(k, "window_start") && !is_column(k, "window_end"));
    }
    let mut out_scope = Scope {
        qualifiers: scope.qualifiers.clone(),
        ..Scope::default()
    };
    let mut group = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let text = expr::lower(key, &scope, "GROUP BY", at)?;
        let name = match key {
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) => None,
            _ => {
                let alias = select
                    .projection
                    .iter()
                    .filter_map(item_expr)
                    .find(|(e, _)| e == key)
                    .and_then(|(_, a)| a);
                let name = alias.map_or_else(|| format!("key{i}"), str::to_string);
                out_scope.replace.push((key.to_string(), name.clone()));
                Some(Named {
                    name,
                    pos: expr::start_of(key).unwrap_or(at),
                })
            }
        };
        group.push(group_key(name, text));
    }
    let aggregates = aggregate_calls(select, &scope, at, &mut out_scope)?;
    if aggregates.is_empty() {
        return err(
            at,
            "GROUP BY without an aggregate in the select list is not supported; add count(*)",
        );
    }
    let spec = AggregateSpec {
        group_by: group,
        window: window_spec,
        aggregates,
    };
    let name = lower.push_aggregate(&input, spec, at);
    Ok(relation(name, out_scope, None))
}

/// The aggregate calls of the select list and HAVING, each named by its alias when it is a
/// whole select item (`agg<i>` otherwise) and recorded in `out_scope` under that name.
fn aggregate_calls(
    select: &Select,
    scope: &Scope,
    at: Pos,
    out_scope: &mut Scope,
) -> Result<Vec<(Named, ExprText)>, SqlError> {
    let mut aggregates: Vec<(Named, ExprText)> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let mut calls: Vec<(&Expr, Option<&str>)> = Vec::new();
    for (e, alias) in select.projection.iter().filter_map(item_expr) {
        collect_calls(e, alias, &mut calls);
    }
    if let Some(having) = &select.having {
        collect_calls(having, None, &mut calls);
    }
    for (call, alias) in calls {
        let sql = call.to_string();
        if seen.contains(&sql) {
            continue;
        }
        let name = alias.map_or_else(|| format!("agg{}", seen.len()), str::to_string);
        seen.push(sql.clone());
        let text = expr::lower(call, scope, &format!("SELECT {name}"), at)?;
        out_scope.replace.push((sql, name.clone()));
        aggregates.push((
            Named {
                name,
                pos: expr::start_of(call).unwrap_or(at),
            },
            text,
        ));
    }
    Ok(aggregates)
}

/// The aggregate calls in `e`; `alias` names `e` when `e` is itself the call.
fn collect_calls<'e>(
    e: &'e Expr,
    alias: Option<&'e str>,
    out: &mut Vec<(&'e Expr, Option<&'e str>)>,
) {
    if let Expr::Function(f) = e {
        if f.over.is_none() && aggregate_name(&f.name.to_string()).is_some() {
            out.push((e, alias));
            return;
        }
    }
    find_calls(e, out);
}

fn find_calls<'e>(e: &'e Expr, out: &mut Vec<(&'e Expr, Option<&'e str>)>) {
    match e {
        Expr::Function(f) if f.over.is_none() && aggregate_name(&f.name.to_string()).is_some() => {
            out.push((e, None))
        }
        Expr::BinaryOp { left, right, .. } => {
            find_calls(left, out);
            find_calls(right, out);
        }
        Expr::UnaryOp { expr, .. } | Expr::Nested(expr) | Expr::Cast { expr, .. } => {
            find_calls(expr, out)
        }
        Expr::Function(f) => {
            if let FunctionArguments::List(list) = &f.args {
                for arg in &list.args {
                    if let FunctionArg::Unnamed(FunctionArgExpr::Expr(a)) = arg {
                        find_calls(a, out);
                    }
                }
            }
        }
        Expr::Case {
            operand,
            conditions,
            else_result,
            ..
        } => {
            if let Some(o) = operand {
                find_calls(o, out);
            }
            for c in conditions {
                find_calls(&c.condition, out);
                find_calls(&c.result, out);
            }
            if let Some(o) = else_result {
                find_calls(o, out);
            }
        }
        _ => {}
    }
}

/// The `rn` bound of `rn <= N`, `rn < N` or `rn = N` (N = 1 only for `=`).
fn rank_bound(condition: &Expr, rn: &str) -> Option<u64> {
    use sqlparser::ast::BinaryOperator as B;
    let Expr::BinaryOp { left, op, right } = condition else {
        return None;
    };
    let number = |e: &Expr| match e {
        Expr::Value(v) => match &v.value {
            sqlparser::ast::Value::Number(n, _) => n.parse::<u64>().ok(),
            _ => None,
        },
        _ => None,
    };
    match (is_column(left, rn), op, number(right)) {
        (true, B::LtEq, Some(n)) => Some(n),
        (true, B::Lt, Some(n)) => n.checked_sub(1),
        (true, B::Eq, Some(1)) => Some(1),
        _ => None,
    }
}

/// The inner select of a top-N subquery and its `ROW_NUMBER()`/`RANK()` call with its alias.
fn ranked(from: &TableWithJoins) -> Option<(&Select, &Function, &str)> {
    let TableFactor::Derived { subquery, .. } = &from.relation else {
        return None;
    };
    let sqlparser::ast::SetExpr::Select(inner) = subquery.body.as_ref() else {
        return None;
    };
    inner.projection.iter().find_map(|item| match item {
        SelectItem::ExprWithAlias {
            expr: Expr::Function(f),
            alias,
        } if f.over.is_some() => Some((inner.as_ref(), f, alias.value.as_str())),
        _ => None,
    })
}

/// The bound N of `WHERE rn <= N` in the enclosing select, and its other conditions.
fn rank_limit<'s>(
    select: &'s Select,
    rn: &str,
    call: &str,
    at: Pos,
) -> Result<(u64, Vec<&'s Expr>), SqlError> {
    let mut conjuncts = Vec::new();
    if let Some(selection) = &select.selection {
        split_and(selection, &mut conjuncts);
    }
    let Some(n) = conjuncts.iter().find_map(|c| rank_bound(c, rn)) else {
        return err(
            at,
            format!("`{call}() OVER (...) AS {rn}` needs `WHERE {rn} <= N` in the enclosing query"),
        );
    };
    if n == 0 {
        return err(at, format!("`{rn}` bound must be at least 1"));
    }
    let selects_rn = select
        .projection
        .iter()
        .filter_map(item_expr)
        .any(|(e, _)| is_column(e, rn));
    if selects_rn {
        return err(
            at,
            format!("selecting `{rn}` is not supported: the top-N output has no rank column"),
        );
    }
    let rest = conjuncts
        .into_iter()
        .filter(|c| rank_bound(c, rn).is_none())
        .collect();
    Ok((n, rest))
}

/// An order expression and whether it is descending.
type Order = (ExprText, bool);

/// The keys and order of a top over a relation with `scope` and maybe a window of its own.
fn top_order(
    over: &sqlparser::ast::WindowSpec,
    scope: &Scope,
    windowed: bool,
    at: Pos,
) -> Result<(Vec<GroupKey>, Vec<Order>), SqlError> {
    let mut keys: Vec<&Expr> = over.partition_by.iter().collect();
    if windowed {
        keys.retain(|k| !is_column(k, "window_start") && !is_column(k, "window_end"));
    } else if keys.iter().any(|k| is_column(k, "window_end")) {
        // Over a windowed aggregate: window_end alone picks the window.
        keys.retain(|k| !is_column(k, "window_start"));
    }
    let group_by = keys
        .iter()
        .map(|k| Ok(group_key(None, expr::lower(k, scope, "PARTITION BY", at)?)))
        .collect::<Result<Vec<GroupKey>, SqlError>>()?;
    let order_by = over
        .order_by
        .iter()
        .map(|o| {
            Ok((
                expr::lower(&o.expr, scope, "ORDER BY", at)?,
                o.options.asc == Some(false),
            ))
        })
        .collect::<Result<Vec<_>, SqlError>>()?;
    Ok((group_by, order_by))
}

/// Top-N: `FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY e DESC) AS rn FROM x)
/// WHERE rn <= N`; `RANK()` keeps ties. `None` when the FROM is not of that shape.
pub(super) fn top_n(
    lower: &mut Lower,
    select: &Select,
    from: &TableWithJoins,
    at: Pos,
) -> Result<Option<Relation>, SqlError> {
    let Some((inner, function, rn)) = ranked(from) else {
        return Ok(None);
    };
    let call = function.name.to_string().to_ascii_uppercase();
    let with_ties = match call.as_str() {
        "ROW_NUMBER" => false,
        "RANK" => true,
        _ => {
            return err(
                at,
                format!("`{call}() OVER` is not supported; use ROW_NUMBER() or RANK()"),
            )
        }
    };
    let Some(WindowType::WindowSpec(over)) = &function.over else {
        return err(at, "named windows are not supported in OVER");
    };
    let others = inner
        .projection
        .iter()
        .filter(|i| !matches!(i, SelectItem::Wildcard(_)))
        .count();
    if others != 1 || !from.joins.is_empty() || inner.from.len() != 1 {
        return err(
            at,
            format!("a top-N subquery must be `SELECT *, {call}() OVER (...) AS {rn} FROM ...`"),
        );
    }
    let (n, rest) = rank_limit(select, rn, &call, at)?;
    let rel = lower.lower_from(&inner.from[0], inner.selection.as_ref(), at)?;
    let (input, scope, window_spec) = parts(&rel);
    let (input, scope, window_spec) = (input.to_string(), scope.clone(), window_spec.cloned());
    let (group_by, order_by) = top_order(over, &scope, window_spec.is_some(), at)?;
    if order_by.is_empty() {
        return err(at, format!("`{call}() OVER` needs ORDER BY"));
    }
    let top = TopSpec {
        n,
        order_by,
        group_by,
        with_ties,
        window: window_spec,
    };
    let name = lower.push_top(&input, top, at);
    let mut rel = relation(name, scope, None);
    for condition in rest {
        rel = lower.lower_filter(rel, condition, at)?;
    }
    Ok(Some(rel))
}

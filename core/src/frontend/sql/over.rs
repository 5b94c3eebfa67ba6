//! `OVER` aggregates with a rows frame: `AVG(x) OVER (PARTITION BY k ORDER BY t ROWS BETWEEN n
//! PRECEDING AND CURRENT ROW)` in a select list, lowered to the `process` operator `over_rows`
//! (see `core/src/operator/process/over_rows.rs`), whose output is the input's columns then the
//! aggregates; the select list then reads the aggregates by name.

use sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, SelectItem, Spanned,
    WindowFrameBound, WindowFrameUnits, WindowSpec, WindowType,
};

use super::expr::{self, Scope};
use super::query::{parts, relation, Lower, Relation};
use super::{err, pos_of, SqlError};
use crate::frontend::spec::{GroupKey, Named, OperatorKind, Pos, ProcessSpec};

/// The functions an `OVER` rows frame can aggregate with.
const FUNCTIONS: [&str; 5] = ["avg", "sum", "count", "min", "max"];

/// Whether a select item is an aggregate call with `OVER` (not a ranking function).
fn over_call(e: &Expr) -> Option<&Function> {
    match e {
        Expr::Function(f)
            if f.over.is_some()
                && FUNCTIONS.contains(&f.name.to_string().to_ascii_lowercase().as_str()) =>
        {
            Some(f)
        }
        _ => None,
    }
}

/// Whether the select list has an `OVER` aggregate.
pub(super) fn has_over(items: &[SelectItem]) -> bool {
    items.iter().any(|item| match item {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
            over_call(e).is_some()
        }
        _ => false,
    })
}

/// Lowers the `OVER` aggregates of `items` over `rel` to one `over_rows` process; returns its
/// relation and the select list with each aggregate replaced by its output column.
pub(super) fn lower(
    lower: &mut Lower,
    items: &[SelectItem],
    rel: Relation,
    at: Pos,
) -> Result<(Relation, Vec<SelectItem>), SqlError> {
    let (input, scope, window) = parts(&rel);
    if window.is_some() {
        return err(at, "an OVER aggregate cannot read a windowing function (TUMBLE, HOP, SESSION) directly; aggregate the window first");
    }
    let (input, scope) = (input.to_string(), scope.clone());
    let fields = lower.fields(&input, at)?;
    let mut calls = Calls {
        scope: &scope,
        fields: &fields,
        texts: Vec::new(),
        window: None,
    };
    let mut rewritten = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        rewritten.push(calls.item(item, index, at)?);
    }
    let Some((over, pos)) = calls.window else {
        return err(at, "no OVER aggregate in the select list");
    };
    let process = process(over, pos, &scope, &fields, &calls.texts, at)?;
    let name = lower.push_operator("over", &input, OperatorKind::Process(process), pos);
    Ok((relation(name, scope, None), rewritten))
}

/// The `OVER` aggregates of a select list, collected item by item.
struct Calls<'a> {
    scope: &'a Scope,
    fields: &'a [String],
    /// `name = func(column)` of each aggregate, as `over_rows` reads them.
    texts: Vec<String>,
    /// The window they share, and where it was first written.
    window: Option<(&'a WindowSpec, Pos)>,
}

impl<'a> Calls<'a> {
    /// The select item `item` (the `index`th), an `OVER` aggregate replaced by its output
    /// column.
    fn item(
        &mut self,
        item: &'a SelectItem,
        index: usize,
        at: Pos,
    ) -> Result<SelectItem, SqlError> {
        let (e, alias) = match item {
            SelectItem::UnnamedExpr(e) => (e, None),
            SelectItem::ExprWithAlias { expr: e, alias } => (e, Some(alias)),
            other => return Ok(other.clone()),
        };
        let Some(function) = over_call(e) else {
            return Ok(item.clone());
        };
        let pos = expr::start_of(e).unwrap_or(at);
        let name = alias.map_or(format!("EXPR${index}"), |a| a.value.clone());
        if self.fields.contains(&name) {
            let at = alias.map_or(pos, |a| pos_of(a.span.start));
            return err(
                at,
                format!(
                    "`{name}` is a column of the input; name the OVER aggregate otherwise (AS ...)"
                ),
            );
        }
        let Some(WindowType::WindowSpec(over)) = &function.over else {
            return err(pos, "named windows are not supported in OVER");
        };
        match self.window {
            Some((first, _)) if first != over => {
                return err(pos, "OVER aggregates over different windows in one SELECT are not supported; use one subquery per window");
            }
            Some(_) => {}
            None => self.window = Some((over, pos)),
        }
        let func = function.name.to_string().to_ascii_lowercase();
        let arg = argument(function, &func, self.scope, self.fields, pos)?;
        self.texts.push(format!("{name} = {func}({arg})"));
        let column = Expr::Identifier(Ident::new(name.clone()));
        Ok(SelectItem::ExprWithAlias {
            expr: column,
            alias: alias.cloned().unwrap_or_else(|| Ident {
                value: name,
                quote_style: None,
                span: function.name.span(),
            }),
        })
    }
}

/// The `over_rows` process of the aggregates `calls` over the window `over` (written at `pos`).
fn process(
    over: &WindowSpec,
    pos: Pos,
    scope: &Scope,
    fields: &[String],
    calls: &[String],
    at: Pos,
) -> Result<ProcessSpec, SqlError> {
    let (order, preceding) = frame(over, scope, fields, pos)?;
    let group_by = over
        .partition_by
        .iter()
        .map(|k| {
            Ok(GroupKey {
                name: None,
                expr: expr::lower(k, scope, "PARTITION BY", at)?,
            })
        })
        .collect::<Result<Vec<_>, SqlError>>()?;
    let setting = |key: &str, value: String| {
        (
            Named {
                name: key.to_string(),
                pos,
            },
            value,
        )
    };
    Ok(ProcessSpec {
        function: Named {
            name: "over_rows".into(),
            pos,
        },
        group_by,
        config: vec![
            setting("order", order),
            setting("preceding", preceding.to_string()),
            setting("aggregates", calls.join(", ")),
        ],
    })
}

/// The column an OVER aggregate reads (`*` for `count(*)`).
fn argument(
    function: &Function,
    func: &str,
    scope: &Scope,
    fields: &[String],
    pos: Pos,
) -> Result<String, SqlError> {
    if function.filter.is_some() {
        return err(
            pos,
            "`FILTER (WHERE ...)` is not supported in an OVER aggregate",
        );
    }
    let FunctionArguments::List(list) = &function.args else {
        return err(pos, format!("`{func}` takes one argument"));
    };
    if list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
        return err(pos, format!("`{func}(DISTINCT ...)` and argument clauses are not supported in an OVER aggregate"));
    }
    match list.args.as_slice() {
        [FunctionArg::Unnamed(FunctionArgExpr::Wildcard)] if func == "count" => Ok("*".into()),
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(e))] => {
            column(e, scope, fields, "the argument of an OVER aggregate", pos)
        }
        _ => err(pos, format!("`{func}` takes one column")),
    }
}

/// The input field `e` names; `what` says where, in the error when `e` is not a column.
fn column(
    e: &Expr,
    scope: &Scope,
    fields: &[String],
    what: &str,
    pos: Pos,
) -> Result<String, SqlError> {
    let at = expr::start_of(e).unwrap_or(pos);
    let text = expr::lower(e, scope, what, at)?.text;
    match fields.iter().find(|f| expr::quote(f) == text) {
        Some(field) => Ok(field.clone()),
        None => err(
            at,
            format!("{what} must be a column; compute `{e}` in a subquery first"),
        ),
    }
}

/// The `ORDER BY` column and the number of preceding rows of a `ROWS` frame.
fn frame(
    over: &WindowSpec,
    scope: &Scope,
    fields: &[String],
    pos: Pos,
) -> Result<(String, u64), SqlError> {
    let [order] = over.order_by.as_slice() else {
        return err(
            pos,
            "an OVER aggregate needs `ORDER BY` one time column (ascending)",
        );
    };
    if order.options.asc == Some(false) {
        return err(
            pos,
            "an OVER aggregate orders by time ascending; `DESC` is not supported",
        );
    }
    let order = column(&order.expr, scope, fields, "ORDER BY in OVER", pos)?;
    let unsupported = || {
        err(pos, "only `ROWS BETWEEN n PRECEDING AND CURRENT ROW` (or `ROWS n PRECEDING`) frames are supported in OVER; RANGE frames, UNBOUNDED and FOLLOWING are not")
    };
    let Some(frame) = &over.window_frame else {
        return unsupported();
    };
    if frame.units != WindowFrameUnits::Rows
        || !matches!(frame.end_bound, None | Some(WindowFrameBound::CurrentRow))
    {
        return unsupported();
    }
    let preceding = match &frame.start_bound {
        WindowFrameBound::CurrentRow => 0,
        WindowFrameBound::Preceding(Some(n)) => match n.as_ref() {
            Expr::Value(v) => match v.value.to_string().parse::<u64>() {
                Ok(n) => n,
                Err(_) => return unsupported(),
            },
            _ => return unsupported(),
        },
        _ => return unsupported(),
    };
    Ok((order, preceding))
}

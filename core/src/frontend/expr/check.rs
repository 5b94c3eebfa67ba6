//! The type checker: resolves field names against the input schema, checks operand types and
//! builds the typed tree, inserting widening casts (i64 to f64) where branches meet.

use std::borrow::Cow;

use super::eval::{Arith, Cmp, Node};
use super::parse::{Ast, AstKind, BinOp};
use super::{func, Datum, ExprError};
use crate::record::schema::{DataType, Schema};

/// A checked node with its type (`None` for an untyped NULL literal) and nullability.
#[derive(Debug, Clone)]
pub(super) struct Typed {
    pub node: Node,
    pub ty: Option<DataType>,
    pub nullable: bool,
    pub offset: usize,
}

impl Typed {
    fn new(node: Node, ty: Option<DataType>, nullable: bool, offset: usize) -> Typed {
        Typed {
            node,
            ty,
            nullable,
            offset,
        }
    }

    fn is_numeric(&self) -> bool {
        matches!(self.ty, Some(DataType::I64 | DataType::F64) | None)
    }

    /// Whether this is a literal other than zero (so dividing by it cannot yield NULL).
    fn is_nonzero_literal(&self) -> bool {
        match &self.node {
            Node::Const(Datum::I64(v)) => *v != 0,
            Node::Const(Datum::F64(v)) => *v != 0.0,
            _ => false,
        }
    }
}

pub(super) struct Checker<'s> {
    pub schema: &'s Schema,
}

impl Checker<'_> {
    pub(super) fn check(&self, ast: &Ast) -> Result<Typed, ExprError> {
        let offset = ast.offset;
        let constant =
            |value: Datum<'static>, ty| Ok(Typed::new(Node::Const(value), ty, false, offset));
        match &ast.kind {
            AstKind::Int(v) => constant(Datum::I64(*v), Some(DataType::I64)),
            AstKind::Float(v) => constant(Datum::F64(*v), Some(DataType::F64)),
            AstKind::Bool(v) => constant(Datum::Bool(*v), Some(DataType::Bool)),
            AstKind::Str(s) => constant(Datum::Str(Cow::Owned(s.clone())), Some(DataType::String)),
            AstKind::Null => Ok(Typed::new(Node::Const(Datum::Null), None, true, offset)),
            AstKind::Field { name, quoted } => self.field(name, *quoted, offset),
            AstKind::Neg(inner) => {
                let inner = self.check(inner)?;
                expect_numeric(&inner, "`-`")?;
                let (ty, nullable) = (inner.ty, inner.nullable);
                Ok(Typed::new(
                    Node::Neg(Box::new(inner.node)),
                    ty,
                    nullable,
                    offset,
                ))
            }
            AstKind::Not(inner) => {
                let inner = self.boolean(inner, "NOT")?;
                let nullable = inner.nullable;
                Ok(Typed::new(
                    Node::Not(Box::new(inner.node)),
                    Some(DataType::Bool),
                    nullable,
                    offset,
                ))
            }
            AstKind::Binary(op, left, right) => self.binary(*op, left, right, offset),
            AstKind::IsNull { expr, negated } => {
                let inner = self.check(expr)?;
                let node = Node::IsNull(Box::new(inner.node), *negated);
                Ok(Typed::new(node, Some(DataType::Bool), false, offset))
            }
            AstKind::Like {
                expr,
                pattern,
                negated,
            } => {
                let text = self.string(expr, "LIKE")?;
                let pattern = self.string(pattern, "LIKE")?;
                let nullable = text.nullable || pattern.nullable;
                let node = Node::Like(Box::new(text.node), Box::new(pattern.node));
                Ok(negate(
                    Typed::new(node, Some(DataType::Bool), nullable, offset),
                    *negated,
                ))
            }
            AstKind::In {
                expr,
                list,
                negated,
            } => {
                let needle = self.check(expr)?;
                let mut nullable = needle.nullable;
                let mut items = Vec::with_capacity(list.len());
                for item in list {
                    let mut item = self.check(item)?;
                    if needle.ty == Some(DataType::Timestamp) {
                        item = timestamp_literal(item)?;
                    }
                    comparable(&needle, &item, "IN")?;
                    nullable |= item.nullable;
                    items.push(item.node);
                }
                let node = Node::In(Box::new(needle.node), items);
                Ok(negate(
                    Typed::new(node, Some(DataType::Bool), nullable, offset),
                    *negated,
                ))
            }
            AstKind::Between {
                expr,
                low,
                high,
                negated,
            } => {
                let ge = self.binary(BinOp::Ge, expr, low, offset)?;
                let le = self.binary(BinOp::Le, expr, high, offset)?;
                let nullable = ge.nullable || le.nullable;
                let node = Node::And(Box::new(ge.node), Box::new(le.node));
                Ok(negate(
                    Typed::new(node, Some(DataType::Bool), nullable, offset),
                    *negated,
                ))
            }
            AstKind::Case {
                operand,
                branches,
                otherwise,
            } => self.case(operand.as_deref(), branches, otherwise.as_deref(), offset),
            AstKind::Cast { expr, to } => {
                let inner = self.check(expr)?;
                let lossless = inner.ty == Some(*to)
                    || matches!(
                        (inner.ty, to),
                        (
                            Some(DataType::I64),
                            DataType::F64 | DataType::Timestamp | DataType::String
                        ) | (
                            Some(DataType::Timestamp),
                            DataType::I64 | DataType::F64 | DataType::String
                        ) | (
                            Some(DataType::F64 | DataType::Bool),
                            DataType::String | DataType::F64
                        ) | (Some(DataType::Bool), DataType::I64)
                            | (Some(DataType::I64), DataType::Bool)
                            | (Some(DataType::String), DataType::Bytes)
                    );
                let nullable = inner.nullable || !lossless;
                Ok(Typed::new(
                    Node::Cast(Box::new(inner.node), *to),
                    Some(*to),
                    nullable,
                    offset,
                ))
            }
            AstKind::Call { name, args } if name == "if" => {
                if args.len() != 3 {
                    return Err(ExprError::at(
                        offset,
                        format!(
                            "`if` takes 3 arguments (condition, then, else), found {}",
                            args.len()
                        ),
                    ));
                }
                let branches = [(args[0].clone(), args[1].clone())];
                self.case(None, &branches, Some(&args[2]), offset)
            }
            AstKind::Call { name, args } => {
                let args = args
                    .iter()
                    .map(|arg| self.check(arg))
                    .collect::<Result<Vec<_>, _>>()?;
                let (node, ty, nullable) = func::check(name, offset, args)?;
                Ok(Typed::new(node, ty, nullable, offset))
            }
        }
    }

    fn field(&self, name: &str, quoted: bool, offset: usize) -> Result<Typed, ExprError> {
        let Some(index) = self.schema.index_of(name) else {
            let names: Vec<&str> = self
                .schema
                .fields()
                .iter()
                .map(|f| f.name.as_str())
                .collect();
            let hint = match crate::frontend::spec::closest(name, &names) {
                Some(close) => format!("; did you mean `{close}`?"),
                None if quoted => "; strings take single quotes ('text')".to_string(),
                None => format!("; the fields are: {}", names.join(", ")),
            };
            return Err(ExprError {
                offset,
                message: format!("unknown field `{name}`{hint}"),
                field: Some(name.to_string()),
            });
        };
        let field = &self.schema.fields()[index];
        Ok(Typed::new(
            Node::Field(index),
            Some(field.data_type),
            field.nullable,
            offset,
        ))
    }

    fn boolean(&self, ast: &Ast, context: &str) -> Result<Typed, ExprError> {
        let typed = self.check(ast)?;
        match typed.ty {
            Some(DataType::Bool) | None => Ok(typed),
            Some(other) => Err(ExprError::at(
                typed.offset,
                format!("{context} needs a bool operand, found {other}"),
            )),
        }
    }

    fn string(&self, ast: &Ast, context: &str) -> Result<Typed, ExprError> {
        let typed = self.check(ast)?;
        match typed.ty {
            Some(DataType::String) | None => Ok(typed),
            Some(other) => Err(ExprError::at(
                typed.offset,
                format!("{context} needs string operands, found {other}"),
            )),
        }
    }

    fn binary(
        &self,
        op: BinOp,
        left: &Ast,
        right: &Ast,
        offset: usize,
    ) -> Result<Typed, ExprError> {
        if matches!(op, BinOp::And | BinOp::Or) {
            let l = self.boolean(left, op.symbol())?;
            let r = self.boolean(right, op.symbol())?;
            let nullable = l.nullable || r.nullable;
            let (l, r) = (Box::new(l.node), Box::new(r.node));
            let node = if op == BinOp::And {
                Node::And(l, r)
            } else {
                Node::Or(l, r)
            };
            return Ok(Typed::new(node, Some(DataType::Bool), nullable, offset));
        }
        let l = self.check(left)?;
        let mut r = self.check(right)?;
        let nullable = l.nullable || r.nullable;
        if let Some(cmp) = comparison(op) {
            if l.ty == Some(DataType::Timestamp) {
                r = timestamp_literal(r)?;
            }
            let l = if r.ty == Some(DataType::Timestamp) {
                timestamp_literal(l)?
            } else {
                l
            };
            comparable(&l, &r, op.symbol())?;
            let both_i64 = l.ty == Some(DataType::I64) && r.ty == Some(DataType::I64);
            let (l, r) = (Box::new(l.node), Box::new(r.node));
            let node = if both_i64 {
                Node::CmpI64(cmp, l, r)
            } else {
                Node::Cmp(cmp, l, r)
            };
            return Ok(Typed::new(node, Some(DataType::Bool), nullable, offset));
        }
        if op == BinOp::Concat {
            let node = Node::Concat(Box::new(l.node), Box::new(r.node));
            return Ok(Typed::new(node, Some(DataType::String), nullable, offset));
        }
        let arith = match op {
            BinOp::Add => Arith::Add,
            BinOp::Sub => Arith::Sub,
            BinOp::Mul => Arith::Mul,
            BinOp::Div => Arith::Div,
            _ => Arith::Rem,
        };
        let ty = arith_type(arith, &l, &r, op.symbol())?;
        let may_fail = matches!(arith, Arith::Div | Arith::Rem) && !r.is_nonzero_literal();
        let both_i64 = l.ty == Some(DataType::I64) && r.ty == Some(DataType::I64);
        let (l, r) = (Box::new(l.node), Box::new(r.node));
        let node = if both_i64 {
            Node::ArithI64(arith, l, r)
        } else {
            Node::Arith(arith, l, r)
        };
        Ok(Typed::new(node, ty, nullable || may_fail, offset))
    }

    fn case(
        &self,
        operand: Option<&Ast>,
        branches: &[(Ast, Ast)],
        otherwise: Option<&Ast>,
        offset: usize,
    ) -> Result<Typed, ExprError> {
        let operand = operand.map(|ast| self.check(ast)).transpose()?;
        let mut conditions = Vec::with_capacity(branches.len());
        let mut values = Vec::with_capacity(branches.len() + 1);
        for (condition, value) in branches {
            let condition = match &operand {
                Some(operand) => {
                    let mut when = self.check(condition)?;
                    if operand.ty == Some(DataType::Timestamp) {
                        when = timestamp_literal(when)?;
                    }
                    comparable(operand, &when, "CASE … WHEN")?;
                    Node::Cmp(Cmp::Eq, Box::new(operand.node.clone()), Box::new(when.node))
                }
                None => self.boolean(condition, "WHEN")?.node,
            };
            conditions.push(condition);
            values.push(self.check(value)?);
        }
        let has_else = otherwise.is_some();
        match otherwise {
            Some(ast) => values.push(self.check(ast)?),
            None => values.push(Typed::new(Node::Const(Datum::Null), None, true, offset)),
        }
        let ty = unify(&mut values, "CASE")?;
        let nullable = values.iter().any(|v| v.nullable) || !has_else;
        let mut nodes = values.into_iter().map(|v| v.node);
        let branches: Vec<(Node, Node)> = conditions.into_iter().zip(nodes.by_ref()).collect();
        let otherwise = nodes.next().unwrap_or(Node::Const(Datum::Null));
        Ok(Typed::new(
            Node::Case(branches, Box::new(otherwise)),
            ty,
            nullable,
            offset,
        ))
    }
}

/// The common type of `values` (i64 widens to f64; NULL fits anything), widening in place.
pub(super) fn unify(values: &mut [Typed], context: &str) -> Result<Option<DataType>, ExprError> {
    let mut ty: Option<DataType> = None;
    for value in values.iter() {
        ty = match (ty, value.ty) {
            (None, t) | (t, None) => t,
            (Some(a), Some(b)) if a == b => Some(a),
            (Some(DataType::I64 | DataType::F64), Some(DataType::I64 | DataType::F64)) => {
                Some(DataType::F64)
            }
            (Some(a), Some(b)) => {
                return Err(ExprError::at(
                    value.offset,
                    format!("{context} mixes {a} and {b}; make the types agree (e.g. with CAST)"),
                ))
            }
        };
    }
    if ty == Some(DataType::F64) {
        for value in values.iter_mut() {
            if value.ty == Some(DataType::I64) {
                let node = std::mem::replace(&mut value.node, Node::Const(Datum::Null));
                value.node = Node::Cast(Box::new(node), DataType::F64);
                value.ty = Some(DataType::F64);
            }
        }
    }
    Ok(ty)
}

fn negate(typed: Typed, negated: bool) -> Typed {
    if !negated {
        return typed;
    }
    let Typed {
        node,
        ty,
        nullable,
        offset,
    } = typed;
    Typed::new(Node::Not(Box::new(node)), ty, nullable, offset)
}

fn comparison(op: BinOp) -> Option<Cmp> {
    Some(match op {
        BinOp::Eq => Cmp::Eq,
        BinOp::Ne => Cmp::Ne,
        BinOp::Lt => Cmp::Lt,
        BinOp::Le => Cmp::Le,
        BinOp::Gt => Cmp::Gt,
        BinOp::Ge => Cmp::Ge,
        _ => return None,
    })
}

/// A string literal compared with a timestamp is read as an RFC 3339 time once, here.
fn timestamp_literal(typed: Typed) -> Result<Typed, ExprError> {
    let Node::Const(Datum::Str(text)) = &typed.node else {
        return Ok(typed);
    };
    match crate::time::parse_rfc3339(text) {
        Ok(ms) => Ok(Typed::new(
            Node::Const(Datum::Timestamp(ms)),
            Some(DataType::Timestamp),
            false,
            typed.offset,
        )),
        Err(reason) => Err(ExprError::at(
            typed.offset,
            format!("'{text}' is not a time ({reason}); write e.g. '2026-01-31T12:00:00Z'"),
        )),
    }
}

fn comparable(left: &Typed, right: &Typed, context: &str) -> Result<(), ExprError> {
    let ok = match (left.ty, right.ty) {
        (None, _) | (_, None) => true,
        (Some(a), Some(b)) => a == b || left.is_numeric() && right.is_numeric(),
    };
    if ok {
        return Ok(());
    }
    let (a, b) = (
        left.ty.map_or("null", DataType::name),
        right.ty.map_or("null", DataType::name),
    );
    let hint = match (left.ty, right.ty) {
        (Some(DataType::Timestamp), Some(DataType::I64))
        | (Some(DataType::I64), Some(DataType::Timestamp)) => {
            "; convert with to_timestamp(…) or epoch_ms(…)"
        }
        _ => "",
    };
    Err(ExprError::at(
        right.offset,
        format!("cannot compare {a} with {b} in `{context}`{hint}"),
    ))
}

fn expect_numeric(typed: &Typed, context: &str) -> Result<(), ExprError> {
    if typed.is_numeric() {
        return Ok(());
    }
    let ty = typed.ty.map_or("null", DataType::name);
    Err(ExprError::at(
        typed.offset,
        format!("{context} needs a number, found {ty}"),
    ))
}

fn arith_type(
    op: Arith,
    l: &Typed,
    r: &Typed,
    symbol: &str,
) -> Result<Option<DataType>, ExprError> {
    use DataType::{Timestamp, F64, I64};
    Ok(match (l.ty, r.ty, op) {
        (Some(Timestamp), Some(I64) | None, Arith::Add | Arith::Sub) => Some(Timestamp),
        (Some(I64) | None, Some(Timestamp), Arith::Add) => Some(Timestamp),
        (Some(Timestamp), Some(Timestamp), Arith::Sub) => Some(I64),
        (Some(I64), Some(I64), _) => Some(I64),
        _ if l.is_numeric() && r.is_numeric() => match (l.ty, r.ty) {
            (Some(F64), _) | (_, Some(F64)) => Some(F64),
            (Some(I64), _) | (_, Some(I64)) => Some(I64),
            _ => None,
        },
        _ => {
            let bad = if l.is_numeric() { r } else { l };
            let ty = bad.ty.map_or("null", DataType::name);
            let hint = if bad.ty == Some(DataType::String) && symbol == "+" {
                "; join strings with `||` or concat(…)"
            } else {
                ""
            };
            return Err(ExprError::at(
                bad.offset,
                format!("`{symbol}` needs numbers, found {ty}{hint}"),
            ));
        }
    })
}

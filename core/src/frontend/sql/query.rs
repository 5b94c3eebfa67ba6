//! Lowering of statements and queries to sources, operators and sinks.
//!
//! A query is lowered clause by clause, each clause that does something becoming one operator
//! whose output the next reads: `FROM` (a table, a view, a join, a windowing function, a
//! subquery), `WHERE` (`filter`), `GROUP BY` and aggregates (`aggregate`), `HAVING` (`filter`),
//! `OVER` aggregates with a rows frame (`process` `over_rows`), the select list (`map` or
//! `project`, none when it changes nothing), and a subquery with
//! `ROW_NUMBER() OVER (...)` filtered by `rn <= N` (`top`).

use sqlparser::ast::{
    CreateTable, Expr, GroupByExpr, Join, JoinConstraint, JoinOperator, Query, Select, SelectItem,
    SetExpr, SetOperator, SetQuantifier, Statement, TableFactor, TableWithJoins,
};

use super::expr::{self, has_aggregate, Scope};
use super::prep::{Metadata, Partition, ProcTime, Temporal, Watermark};
use super::{err, name_pos, object_name, pos_of, SqlError, Table};
use crate::frontend::plan::Plan;
use crate::frontend::spec::{
    AggregateSpec, ExprText, GroupKey, JoinSpec, LookupSpec, Named, OperatorKind, OperatorSpec,
    Origin, PipelineSpec, Pos, Settings, SinkKind, SinkSpec, SourceSpec, TopSpec, WindowSpec,
};
use crate::time::window::{TimeDomain, WindowKind};

/// A lowered relation: the source or operator that emits it, how its columns are named, and
/// the window of a windowing function read in its `FROM`.
#[derive(Debug, Clone)]
pub(super) struct Rel {
    name: String,
    scope: Scope,
    window: Option<WindowSpec>,
}

/// The lowering state of one SQL file.
pub(super) struct Lower {
    file: String,
    name: String,
    origin: Origin,
    pub watermarks: Vec<Watermark>,
    pub temporals: Vec<Temporal>,
    pub proctimes: Vec<ProcTime>,
    pub metadata: Vec<Metadata>,
    pub partitions: Vec<Partition>,
    tables: Vec<Table>,
    views: Vec<(String, String)>,
    sources: Vec<SourceSpec>,
    operators: Vec<OperatorSpec>,
    sinks: Vec<SinkSpec>,
    next: usize,
}

impl Lower {
    pub fn new(file: &str, name: String, origin: Origin) -> Lower {
        Lower {
            file: file.to_string(),
            name,
            origin,
            watermarks: Vec::new(),
            temporals: Vec::new(),
            proctimes: Vec::new(),
            metadata: Vec::new(),
            partitions: Vec::new(),
            tables: Vec::new(),
            views: Vec::new(),
            sources: Vec::new(),
            operators: Vec::new(),
            sinks: Vec::new(),
            next: 0,
        }
    }

    /// The pipeline, once every statement is lowered.
    pub fn finish(self) -> Result<PipelineSpec, SqlError> {
        if self.sinks.is_empty() {
            return err(
                Pos { line: 1, column: 1 },
                "a pipeline needs at least one `INSERT INTO table SELECT ...`",
            );
        }
        Ok(PipelineSpec {
            name: self.name,
            sources: self.sources,
            operators: self.operators,
            sinks: self.sinks,
            settings: Settings::default(),
            origin: self.origin,
        })
    }

    /// Records a `CREATE TABLE`, with the clauses the token pass took out of it.
    fn create_table(&mut self, create: &CreateTable, at: Pos) -> Result<(), SqlError> {
        let mut table = super::table(create, at)?;
        self.check_free(&table.name.name, table.name.pos)?;
        if let Some(mark) = self.watermarks.iter().find(|m| m.table == table.name.name) {
            table.watermark = Some(watermark_delay(mark)?);
        }
        table.metadata = self
            .metadata
            .iter()
            .filter(|m| m.table == table.name.name)
            .cloned()
            .collect();
        self.tables.push(table);
        Ok(())
    }

    pub fn statement(&mut self, statement: &Statement) -> Result<(), SqlError> {
        let at = statement_pos(statement);
        match statement {
            Statement::CreateTable(create) => self.create_table(create, at)?,
            Statement::CreateView {
                name,
                query,
                materialized: false,
                or_alter: false,
                columns,
                ..
            } if columns.is_empty() => {
                let view = object_name(name);
                let pos = name_pos(name, at);
                self.check_free(&view, pos)?;
                let before = self.operators.len();
                let rel = self.query(query, at)?;
                if self.operators.len() > before
                    && self
                        .operators
                        .last()
                        .is_some_and(|o| o.name.name == rel.name)
                {
                    if let Some(last) = self.operators.last_mut() {
                        last.name = Named {
                            name: view.clone(),
                            pos,
                        };
                    }
                    self.views.push((view.clone(), view));
                } else {
                    self.views.push((view, rel.name));
                }
            }
            Statement::Insert(insert) => {
                let Some(target) = super::insert_target(&insert.table) else {
                    return err(at, "`INSERT INTO` needs a table name");
                };
                let Some(source) = &insert.source else {
                    return err(at, "`INSERT INTO` needs a `SELECT`");
                };
                if !insert.columns.is_empty() {
                    return err(at, "`INSERT INTO t (columns)` is not supported; name the columns in the SELECT");
                }
                let rel = self.query(source, at)?;
                self.insert(target, &rel.name, at)?;
            }
            other => {
                return err(
                    at,
                    format!(
                        "`{}` is not supported (supported: {})",
                        super::statement_name(other),
                        super::STATEMENTS
                    ),
                );
            }
        }
        Ok(())
    }

    fn check_free(&self, name: &str, pos: Pos) -> Result<(), SqlError> {
        if self.tables.iter().any(|t| t.name.name == name)
            || self.views.iter().any(|(v, _)| v == name)
        {
            return err(pos, format!("`{name}` is already defined"));
        }
        Ok(())
    }

    fn insert(
        &mut self,
        target: &sqlparser::ast::ObjectName,
        from: &str,
        at: Pos,
    ) -> Result<(), SqlError> {
        let name = object_name(target);
        let pos = name_pos(target, at);
        let Some(table) = self.tables.iter().find(|t| t.name.name == name).cloned() else {
            return err(
                pos,
                format!("unknown table `{name}`; declare it with CREATE TABLE"),
            );
        };
        if self.sinks.iter().any(|s| s.name.name == name) {
            return err(
                pos,
                format!("table `{name}` is already written by an earlier INSERT; use UNION ALL"),
            );
        }
        if self.sources.iter().any(|s| s.name.name == name) {
            return err(
                pos,
                format!("table `{name}` is read by a query, so it cannot be written too"),
            );
        }
        let mut sink = table.sink(&self.file, from)?;
        sink.input = Named {
            name: from.to_string(),
            pos,
        };
        self.sinks.push(sink);
        Ok(())
    }

    fn fresh(&mut self, base: &str) -> String {
        loop {
            self.next += 1;
            let name = format!("{base}_{}", self.next);
            let taken = self.tables.iter().any(|t| t.name.name == name)
                || self.views.iter().any(|(v, _)| *v == name)
                || self.operators.iter().any(|o| o.name.name == name);
            if !taken {
                return name;
            }
        }
    }

    /// Adds an operator reading `inputs`; returns its name.
    fn push(&mut self, base: &str, inputs: &[&str], kind: OperatorKind, pos: Pos) -> String {
        let name = self.fresh(base);
        self.operators.push(OperatorSpec {
            name: Named {
                name: name.clone(),
                pos,
            },
            inputs: inputs
                .iter()
                .map(|i| Named {
                    name: i.to_string(),
                    pos,
                })
                .collect(),
            kind,
        });
        name
    }

    /// The field names `name` emits, from the plan of what is lowered so far.
    fn fields_of(&self, name: &str, pos: Pos) -> Result<Vec<String>, SqlError> {
        Ok(self.stream_of(name, pos)?.0)
    }

    /// The field names of what `name` emits, and the name of its event-time field when its
    /// rows carry their event time as-is in one.
    fn stream_of(&self, name: &str, pos: Pos) -> Result<(Vec<String>, Option<String>), SqlError> {
        let spec = PipelineSpec {
            name: self.name.clone(),
            sources: self.sources.clone(),
            operators: self.operators.clone(),
            sinks: vec![SinkSpec {
                name: Named {
                    name: format!("{name}__fields"),
                    pos,
                },
                input: Named {
                    name: name.to_string(),
                    pos,
                },
                kind: SinkKind::Blackhole,
            }],
            settings: Settings::default(),
            origin: self.origin.clone(),
        };
        let plan = Plan::from_spec(&spec).map_err(|e| SqlError {
            pos: e.pos,
            message: e.message,
        })?;
        let schema = &plan.sinks[0].schema;
        let fields: Vec<String> = schema.fields().iter().map(|f| f.name.clone()).collect();
        let time = plan
            .time_of(plan.sinks[0].input)
            .filter(|t| t.offset_ms == 0)
            .and_then(|t| fields.get(t.field).cloned());
        Ok((fields, time))
    }

    /// Lowers a query; returns the relation of its result.
    fn query(&mut self, query: &Query, at: Pos) -> Result<Rel, SqlError> {
        if query.with.is_some() {
            return err(
                at,
                "`WITH` (common table expressions) is not supported; use CREATE TEMPORARY VIEW",
            );
        }
        if query.order_by.is_some() || query.limit_clause.is_some() || query.fetch.is_some() {
            return err(at, "`ORDER BY` and `LIMIT` on a streaming query are not supported; use ROW_NUMBER() OVER (...) for top-N");
        }
        self.set_expr(&query.body, at)
    }

    fn set_expr(&mut self, body: &SetExpr, at: Pos) -> Result<Rel, SqlError> {
        match body {
            SetExpr::Select(select) => self.select(select, at),
            SetExpr::Query(query) => self.query(query, at),
            SetExpr::SetOperation { op: SetOperator::Union, set_quantifier: SetQuantifier::All, left, right } => {
                let left = self.set_expr(left, at)?;
                let right = self.set_expr(right, at)?;
                let name = self.push("union", &[&left.name, &right.name], OperatorKind::Union, at);
                Ok(Rel { scope: Scope::of(&name), name, window: None })
            }
            SetExpr::SetOperation { .. } => err(at, "only `UNION ALL` is supported among set operations (UNION, INTERSECT and EXCEPT are not)"),
            other => err(at, format!("`{}` is not supported as a query", other.to_string().chars().take(30).collect::<String>())),
        }
    }

    /// A SELECT, then `DISTRIBUTE BY keys` (Hive's) as a `key_by` over its output.
    fn select(&mut self, select: &Select, _at: Pos) -> Result<Rel, SqlError> {
        let at = pos_of(select.select_token.0.span.start);
        if !select.cluster_by.is_empty() || !select.sort_by.is_empty() {
            return err(at, "`CLUSTER BY` and `SORT BY` are not supported; `DISTRIBUTE BY keys` routes rows by key");
        }
        if select.qualify.is_some()
            || !select.named_window.is_empty()
            || !select.lateral_views.is_empty()
        {
            return err(
                at,
                "`QUALIFY`, `WINDOW` clauses and `LATERAL VIEW` are not supported",
            );
        }
        let rel = self.select_body(select, at)?;
        if select.distribute_by.is_empty() {
            return Ok(rel);
        }
        let keys = select
            .distribute_by
            .iter()
            .map(|k| expr::lower(k, &rel.scope, "DISTRIBUTE BY", at))
            .collect::<Result<Vec<_>, SqlError>>()?;
        let name = self.push("key_by", &[&rel.name], OperatorKind::KeyBy(keys), at);
        Ok(Rel { name, ..rel })
    }

    fn select_body(&mut self, select: &Select, at: Pos) -> Result<Rel, SqlError> {
        if select.distinct.is_some() {
            return err(at, "`SELECT DISTINCT` is not supported; use GROUP BY");
        }
        let [from] = select.from.as_slice() else {
            return err(
                at,
                "a SELECT needs exactly one FROM item (join with JOIN ... ON)",
            );
        };
        if let Some(rel) = self.top_n(select, from, at)? {
            return self.finish_select(select, rel, at);
        }
        let rel = self.from(from, select.selection.as_ref(), at)?;
        if super::over::has_over(&select.projection) {
            let grouped =
                !matches!(&select.group_by, GroupByExpr::Expressions(keys, _) if keys.is_empty());
            if grouped || select.having.is_some() {
                return err(at, "OVER aggregates and GROUP BY in one SELECT are not supported; group in a subquery first");
            }
            let (rel, items) = super::over::lower(self, &select.projection, rel, at)?;
            return self.projection(&items, rel, at);
        }
        self.finish_select(select, rel, at)
    }

    /// GROUP BY, HAVING and the select list, over `rel`.
    fn finish_select(&mut self, select: &Select, mut rel: Rel, at: Pos) -> Result<Rel, SqlError> {
        let GroupByExpr::Expressions(group_by, modifiers) = &select.group_by else {
            return err(at, "`GROUP BY ALL` is not supported");
        };
        if !modifiers.is_empty() {
            return err(at, "GROUP BY modifiers (ROLLUP, CUBE) are not supported");
        }
        let aggregates = select.projection.iter().any(|item| match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                has_aggregate(e)
            }
            _ => false,
        });
        if !group_by.is_empty() || aggregates {
            rel = super::group::aggregate(self, select, group_by, rel, at)?;
            if let Some(having) = &select.having {
                rel = self.filter(rel, having, at)?;
            }
        } else if select.having.is_some() {
            return err(at, "`HAVING` needs GROUP BY or aggregates");
        } else if rel.window.is_some() {
            return err(at, "a windowing function (TUMBLE, HOP, SESSION) needs GROUP BY window_start, window_end, or a ROW_NUMBER() top-N over it");
        }
        self.projection(&select.projection, rel, at)
    }

    fn filter(&mut self, rel: Rel, condition: &Expr, at: Pos) -> Result<Rel, SqlError> {
        let text = expr::lower(condition, &rel.scope, "WHERE", at)?;
        let name = self.push("filter", &[&rel.name], OperatorKind::Filter(text), at);
        Ok(Rel { name, ..rel })
    }

    /// The select list as a `map` or `project`, or nothing when it keeps the input as it is.
    fn projection(&mut self, items: &[SelectItem], rel: Rel, at: Pos) -> Result<Rel, SqlError> {
        let (star, outputs) = select_items(items, at)?;
        let mut fields = self.fields_of(&rel.name, at)?;
        // An update stream's leading `op` passes through every projection.
        if fields.first().is_some_and(|f| f == "op") && !outputs.iter().any(|(n, _)| n.name == "op")
        {
            fields.remove(0);
        }
        let mut pairs = Vec::new();
        for (named, e) in outputs {
            let text = expr::lower(e, &rel.scope, &format!("SELECT {}", named.name), at)?;
            pairs.push((named, text));
        }
        let identity =
            |pairs: &[(Named, ExprText)]| pairs.iter().all(|(n, t)| expr::quote(&n.name) == t.text);
        if star {
            if pairs.is_empty()
                || (identity(&pairs) && pairs.iter().all(|(n, _)| fields.contains(&n.name)))
            {
                return Ok(rel);
            }
            let name = self.push("map", &[&rel.name], OperatorKind::Map(pairs), at);
            return Ok(Rel {
                scope: Scope::of(&name),
                name,
                window: None,
            });
        }
        let same = pairs.len() == fields.len()
            && identity(&pairs)
            && pairs.iter().zip(&fields).all(|((n, _), f)| n.name == *f);
        if same {
            return Ok(rel);
        }
        let name = self.push("project", &[&rel.name], OperatorKind::Project(pairs), at);
        Ok(Rel {
            scope: Scope::of(&name),
            name,
            window: None,
        })
    }

    /// A FROM item with its joins, and the WHERE over it.
    ///
    /// Each conjunct of the WHERE that reads the columns of one input of an inner join only is
    /// a filter on that input, below the join (as a YAML pipeline filters each side before
    /// joining): the join then keeps and matches only the rows that can pass. The other
    /// conjuncts are one filter after the joins.
    fn from(
        &mut self,
        from: &TableWithJoins,
        selection: Option<&Expr>,
        at: Pos,
    ) -> Result<Rel, SqlError> {
        let mut pending = Vec::new();
        if let Some(selection) = selection {
            split_and(selection, &mut pending);
        }
        let total = pending.len();
        let mut rel = self.factor(&from.relation, at)?;
        for (i, join) in from.joins.iter().enumerate() {
            rel = if super::lookup::is_temporal(self, join) {
                super::lookup::lookup_join(self, rel, join, at)?
            } else {
                let later: Vec<String> = from.joins[i + 1..]
                    .iter()
                    .flat_map(|j| qualifiers_of(&j.relation))
                    .collect();
                self.join(rel, join, &mut pending, &later, at)?
            };
        }
        match (selection, conjoin(&pending)) {
            (Some(selection), Some(_)) if pending.len() == total => self.filter(rel, selection, at),
            (_, Some(rest)) => self.filter(rel, &rest, at),
            (_, None) => Ok(rel),
        }
    }

    fn factor(&mut self, factor: &TableFactor, at: Pos) -> Result<Rel, SqlError> {
        match factor {
            TableFactor::Table { name, alias, args: None, version: None, .. } => {
                let table = object_name(name);
                let pos = name_pos(name, at);
                let relation = self.relation(&table, pos)?;
                let shown = alias.as_ref().map_or(table.clone(), |a| a.name.value.clone());
                // The alias comes last: a join prefixes clashing right fields with it.
                let mut scope = Scope::of(&table);
                if shown != table {
                    scope.qualifiers.push(shown);
                }
                Ok(Rel { name: relation, scope, window: None })
            }
            TableFactor::TableFunction { expr, alias } => {
                let pos = expr::start_of(expr).unwrap_or(at);
                let Expr::Function(function) = expr else {
                    return err(pos, "expected a table function call: TABLE(TUMBLE(...)), TABLE(HOP(...)), TABLE(f(TABLE t PARTITION BY k, ...))");
                };
                let mut rel = if super::group::is_window_function(function) {
                    super::group::window_function(self, function, pos)?
                } else {
                    super::process::process_function(self, function, pos)?
                };
                if let Some(alias) = alias {
                    rel.scope.qualifiers.push(alias.name.value.clone());
                }
                Ok(rel)
            }
            TableFactor::Derived { lateral: false, subquery, alias } => {
                let mut rel = self.query(subquery, at)?;
                if let Some(alias) = alias {
                    rel.scope.qualifiers.push(alias.name.value.clone());
                }
                Ok(rel)
            }
            TableFactor::Table { version: Some(_), .. } => err(at, "temporal joins (`FOR SYSTEM_TIME AS OF`) are not supported yet; use a lookup in YAML"),
            other => err(at, format!("`{other}` is not supported in FROM")),
        }
    }

    /// The source, operator or view that emits `name`, adding a table's source on first use.
    pub(super) fn relation(&mut self, name: &str, pos: Pos) -> Result<String, SqlError> {
        if let Some((_, rel)) = self.views.iter().find(|(v, _)| v == name) {
            return Ok(rel.clone());
        }
        if self.sources.iter().any(|s| s.name.name == name) {
            return Ok(name.to_string());
        }
        let Some(table) = self.tables.iter().find(|t| t.name.name == name).cloned() else {
            let known: Vec<&str> = self
                .tables
                .iter()
                .map(|t| t.name.name.as_str())
                .chain(self.views.iter().map(|(v, _)| v.as_str()))
                .collect();
            let hint = crate::frontend::spec::closest(name, &known)
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            return err(pos, format!("unknown table or view `{name}`{hint}"));
        };
        if self.sinks.iter().any(|s| s.name.name == name) {
            return err(
                pos,
                format!("table `{name}` is written by an INSERT, so it cannot be read"),
            );
        }
        let source = table.source(&self.file)?;
        self.sources.push(source);
        Ok(name.to_string())
    }

    /// An inner join of `left` and the join's table. The conditions of `pending` (the WHERE's
    /// conjuncts not placed yet) and of `ON` that read one side only become filters on that
    /// side; a WHERE conjunct that reads both stays in `pending`. `later` are the names that
    /// qualify columns of the joins after this one.
    fn join<'e>(
        &mut self,
        left: Rel,
        join: &'e Join,
        pending: &mut Vec<&'e Expr>,
        later: &[String],
        at: Pos,
    ) -> Result<Rel, SqlError> {
        let on = join_condition(join, at)?;
        let right = self.factor(&join.relation, at)?;
        let left_fields = self.fields_of(&left.name, at)?;
        let (right_fields, _) = self.stream_of(&right.name, at)?;
        let sides = Sides {
            left: (&left.scope, &left_fields),
            right: (&right.scope, &right_fields),
            later,
        };
        let (conditions, to_left, to_right) = sides.place(on, pending);
        let left = match conjoin(&to_left) {
            Some(condition) => self.filter(left, &condition, at)?,
            None => left,
        };
        let right = match conjoin(&to_right) {
            Some(condition) => self.filter(right, &condition, at)?,
            None => right,
        };
        let (mut left_key, mut right_key, between) = join_keys(&conditions, &left, &right, at)?;
        if same_windows(self.window_of(&left.name), self.window_of(&right.name)) {
            implied_window_start(&mut left_key, &mut right_key);
        }
        let (right_fields, right_time) = self.stream_of(&right.name, at)?;
        if let Some((column, pos, _)) = &between {
            check_interval_time(column, *pos, right_time.as_deref())?;
        }
        let prefix = format!(
            "{}_",
            right
                .scope
                .qualifiers
                .last()
                .cloned()
                .unwrap_or_else(|| right.name.clone())
        );
        let spec = JoinSpec {
            left_key,
            right_key,
            between: between.map(|(_, _, bounds)| bounds),
            retention_ms: None,
            right_prefix: Some(prefix.clone()),
        };
        let name = self.push(
            "join",
            &[&left.name, &right.name],
            OperatorKind::Join(spec),
            at,
        );
        Ok(Rel {
            name,
            scope: joined_scope(
                &left.scope,
                &right.scope,
                &left_fields,
                &right_fields,
                &prefix,
            ),
            window: None,
        })
    }

    /// The window of the aggregate `name`, when it is a windowed aggregate.
    fn window_of(&self, name: &str) -> Option<&WindowSpec> {
        match &self.operators.iter().find(|o| o.name.name == name)?.kind {
            OperatorKind::Aggregate(a) => a.window.as_ref(),
            _ => None,
        }
    }

    pub(super) fn push_lookup(&mut self, input: &str, spec: LookupSpec, at: Pos) -> String {
        self.push("lookup", &[input], OperatorKind::Lookup(spec), at)
    }

    /// The table `name` made by `CREATE TABLE`, if there is one.
    pub(super) fn table(&self, name: &str) -> Option<Table> {
        self.tables.iter().find(|t| t.name.name == name).cloned()
    }

    /// Whether `column` of table `table` is `AS PROCTIME()`.
    /// The `PARTITION BY` written after the table argument whose name starts at `pos`.
    pub(super) fn partition_at(&self, pos: Pos) -> Option<&Partition> {
        self.partitions.iter().find(|p| p.table_pos == pos)
    }

    /// Makes `name` readable as the late side output of a window (a view of its own name).
    pub(super) fn late_output(&mut self, name: &str, pos: Pos) -> Result<(), SqlError> {
        self.check_free(name, pos)?;
        self.views.push((name.to_string(), name.to_string()));
        Ok(())
    }

    pub(super) fn is_proctime(&self, table: &str, column: &str) -> bool {
        self.proctimes
            .iter()
            .any(|p| p.table == table && p.column == column)
    }

    /// The SQL file's name, for errors.
    pub(super) fn file(&self) -> &str {
        &self.file
    }

    /// The field names of what `name` emits.
    pub(super) fn fields(&self, name: &str, pos: Pos) -> Result<Vec<String>, SqlError> {
        self.fields_of(name, pos)
    }

    /// Adds an operator of `kind` reading `input`; returns its name.
    pub(super) fn push_operator(
        &mut self,
        base: &str,
        input: &str,
        kind: OperatorKind,
        at: Pos,
    ) -> String {
        self.push(base, &[input], kind, at)
    }

    pub(super) fn push_aggregate(&mut self, input: &str, spec: AggregateSpec, at: Pos) -> String {
        self.push("aggregate", &[input], OperatorKind::Aggregate(spec), at)
    }

    pub(super) fn push_top(&mut self, input: &str, spec: TopSpec, at: Pos) -> String {
        self.push("top", &[input], OperatorKind::Top(spec), at)
    }

    /// `SELECT ... FROM (SELECT *, ROW_NUMBER() OVER (...) AS rn FROM x) WHERE rn <= N`.
    fn top_n(
        &mut self,
        select: &Select,
        from: &TableWithJoins,
        at: Pos,
    ) -> Result<Option<Rel>, SqlError> {
        super::group::top_n(self, select, from, at)
    }

    pub(super) fn lower_from(
        &mut self,
        from: &TableWithJoins,
        selection: Option<&Expr>,
        at: Pos,
    ) -> Result<Rel, SqlError> {
        self.from(from, selection, at)
    }

    pub(super) fn lower_filter(
        &mut self,
        rel: Rel,
        condition: &Expr,
        at: Pos,
    ) -> Result<Rel, SqlError> {
        self.filter(rel, condition, at)
    }
}

pub(super) use Rel as Relation;

/// Builds a relation value (for the group module).
pub(super) fn relation(name: String, scope: Scope, window: Option<WindowSpec>) -> Rel {
    Rel {
        name,
        scope,
        window,
    }
}

/// The parts of a relation (for the group module).
pub(super) fn parts(rel: &Rel) -> (&str, &Scope, Option<&WindowSpec>) {
    (&rel.name, &rel.scope, rel.window.as_ref())
}

/// A named select item.
type Item<'a> = (Named, &'a Expr);

/// The select list: whether it starts with `*`, and each named item.
fn select_items(items: &[SelectItem], at: Pos) -> Result<(bool, Vec<Item<'_>>), SqlError> {
    let mut outputs: Vec<(Named, &Expr)> = Vec::new();
    let mut star = false;
    for (index, item) in items.iter().enumerate() {
        match item {
            SelectItem::Wildcard(_) if index == 0 => star = true,
            SelectItem::Wildcard(_) => return err(at, "`*` must come first in the select list"),
            SelectItem::QualifiedWildcard(..) => {
                return err(at, "`t.*` is not supported; name the columns or use `*`");
            }
            SelectItem::UnnamedExpr(e) => {
                let pos = expr::start_of(e).unwrap_or(at);
                let name = match e {
                    Expr::Identifier(id) => id.value.clone(),
                    Expr::CompoundIdentifier(parts) => {
                        parts.last().map(|p| p.value.clone()).unwrap_or_default()
                    }
                    _ => format!("EXPR${index}"),
                };
                outputs.push((Named { name, pos }, e));
            }
            SelectItem::ExprWithAlias { expr: e, alias } => {
                outputs.push((
                    Named {
                        name: alias.value.clone(),
                        pos: pos_of(alias.span.start),
                    },
                    e,
                ));
            }
        }
    }
    Ok((star, outputs))
}

/// The `ON` condition of an inner join.
pub(super) fn join_condition(join: &Join, at: Pos) -> Result<&Expr, SqlError> {
    let constraint = match &join.join_operator {
        JoinOperator::Join(c) | JoinOperator::Inner(c) => c,
        other => {
            let kind = match other {
                JoinOperator::Left(_) | JoinOperator::LeftOuter(_) => "LEFT JOIN",
                JoinOperator::Right(_) | JoinOperator::RightOuter(_) => "RIGHT JOIN",
                JoinOperator::FullOuter(_) => "FULL OUTER JOIN",
                JoinOperator::CrossJoin(_) => "CROSS JOIN",
                _ => "this kind of join",
            };
            return err(
                at,
                format!("`{kind}` is not supported; only inner joins (`JOIN ... ON`) are"),
            );
        }
    };
    let JoinConstraint::On(on) = constraint else {
        return err(at, "a join needs `ON left.key = right.key [AND ...]`");
    };
    Ok(on)
}

/// An interval join's bounds: the right column the `BETWEEN` tests (and where), and the
/// lower and upper bound over the left row.
type Between = (String, Pos, (ExprText, ExprText));

/// A join's condition: the left and right keys of its equalities, and the bounds of an
/// interval join.
type JoinOn = (Vec<ExprText>, Vec<ExprText>, Option<Between>);

/// The key pairs of `ON l.a = r.b AND ...`, each side lowered in its own scope, and the
/// bounds of an interval join (`AND r.t BETWEEN l.x AND l.y`).
fn join_keys(conjuncts: &[&Expr], left: &Rel, right: &Rel, at: Pos) -> Result<JoinOn, SqlError> {
    let (mut left_key, mut right_key) = (Vec::new(), Vec::new());
    let mut between = None;
    for &condition in conjuncts {
        if let Expr::Between { .. } = condition {
            if between.is_some() {
                let pos = expr::start_of(condition).unwrap_or(at);
                return err(pos, "an interval join takes one `BETWEEN` condition");
            }
            between = Some(interval_bounds(condition, left, right, at)?);
            continue;
        }
        let Expr::BinaryOp {
            left: l,
            op: sqlparser::ast::BinaryOperator::Eq,
            right: r,
        } = condition
        else {
            return err(expr::start_of(condition).unwrap_or(at), format!("join conditions must be equalities of a left and a right column; `{condition}` is not supported"));
        };
        let (lk, rk) = if refers_to(l, &right.scope) && !refers_to(r, &right.scope) {
            (r, l)
        } else {
            (l, r)
        };
        left_key.push(expr::lower(lk, &left.scope, "JOIN ON", at)?);
        right_key.push(expr::lower(rk, &right.scope, "JOIN ON", at)?);
    }
    Ok((left_key, right_key, between))
}

/// `r.t BETWEEN l.lower AND l.upper`: a right column, bounds over the left row.
fn interval_bounds(
    condition: &Expr,
    left: &Rel,
    right: &Rel,
    at: Pos,
) -> Result<Between, SqlError> {
    let pos = expr::start_of(condition).unwrap_or(at);
    let Expr::Between {
        expr: column,
        negated: false,
        low,
        high,
    } = condition
    else {
        return err(pos, "`NOT BETWEEN` cannot bound an interval join");
    };
    let name = match column.as_ref() {
        Expr::Identifier(id) => Some(id.value.clone()),
        Expr::CompoundIdentifier(parts) => parts.last().map(|id| id.value.clone()),
        _ => None,
    };
    let Some(name) = name.filter(|_| refers_to(column, &right.scope)) else {
        return err(pos, format!("an interval join tests the right side's event time: write `{}.time_column BETWEEN left.lower AND left.upper`", right.scope.qualifiers.last().map_or("right", String::as_str)));
    };
    if refers_to(low, &right.scope) || refers_to(high, &right.scope) {
        return err(
            pos,
            "the bounds of an interval join are expressions over the left side's columns",
        );
    }
    let lower = expr::lower(low, &left.scope, "JOIN ON", at)?;
    let upper = expr::lower(high, &left.scope, "JOIN ON", at)?;
    Ok((name, pos, (lower, upper)))
}

/// The column an interval join's `BETWEEN` tests must be the right side's event time: the
/// engine compares the bounds with each right row's event time.
fn check_interval_time(column: &str, pos: Pos, time: Option<&str>) -> Result<(), SqlError> {
    match time {
        Some(time) if time == column => Ok(()),
        Some(time) => err(pos, format!("an interval join bounds the right side's event time `{time}`, not `{column}`")),
        None => err(pos, "the right side of an interval join has no event-time column (declare a WATERMARK on its table)"),
    }
}

/// How a join's output names columns: the left's as they are, the right's with the fields
/// the left also has prefixed with `prefix`.
fn joined_scope(
    left: &Scope,
    right: &Scope,
    left_fields: &[String],
    right_fields: &[String],
    prefix: &str,
) -> Scope {
    let mut scope = Scope {
        qualifiers: left.qualifiers.clone(),
        ..Scope::default()
    };
    scope.renames.extend(left.renames.iter().cloned());
    for qualifier in &right.qualifiers {
        scope.qualifiers.push(qualifier.clone());
        for field in right_fields {
            if left_fields.contains(field) {
                scope
                    .renames
                    .push((qualifier.clone(), field.clone(), format!("{prefix}{field}")));
            }
        }
    }
    scope
}

/// Whether two aggregates' windows are the same tumbling, hop or cumulate windows: windows
/// whose end determines their start.
fn same_windows(left: Option<&WindowSpec>, right: Option<&WindowSpec>) -> bool {
    let (Some(left), Some(right)) = (left, right) else {
        return false;
    };
    left.kind == right.kind
        && left.time == right.time
        && !matches!(left.kind, WindowKind::Session { .. })
}

/// Drops the key pair `window_start = window_start` from a join of two aggregates over the
/// same windows that is also keyed on `window_end = window_end` (Flink's window join writes
/// both): the end implies the start, so the join is the window join on `window_end` that YAML
/// writes, without hashing and comparing a second timestamp per row.
fn implied_window_start(left: &mut Vec<ExprText>, right: &mut Vec<ExprText>) {
    let pair = |l: &ExprText, r: &ExprText, field: &str| l.text == field && r.text == field;
    if !left
        .iter()
        .zip(right.iter())
        .any(|(l, r)| pair(l, r, "window_end"))
    {
        return;
    }
    let keep: Vec<bool> = left
        .iter()
        .zip(right.iter())
        .map(|(l, r)| !pair(l, r, "window_start"))
        .collect();
    let mut flags = keep.iter();
    left.retain(|_| *flags.next().unwrap_or(&true));
    let mut flags = keep.iter();
    right.retain(|_| *flags.next().unwrap_or(&true));
}

/// Which input of a join a condition reads.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Side {
    Left,
    Right,
}

/// The two inputs of a join, by how their columns are named: each side's scope and fields,
/// and the qualifiers of the joins after this one.
struct Sides<'a> {
    left: (&'a Scope, &'a [String]),
    right: (&'a Scope, &'a [String]),
    later: &'a [String],
}

/// A join's conditions, its filters below it: the `ON` conditions that stay join conditions,
/// then the conditions that filter the left and the right input.
type Placed<'e> = (Vec<&'e Expr>, Vec<&'e Expr>, Vec<&'e Expr>);

impl Sides<'_> {
    /// Places the conditions of `on` and of `pending` (the WHERE's conjuncts not placed yet)
    /// that read one side only on that side; takes those out of `pending`. In ON, a bare
    /// column may name either side (`seller = id`), so only qualified ones place a condition,
    /// and a BETWEEN stays a join condition.
    fn place<'e>(&self, on: &'e Expr, pending: &mut Vec<&'e Expr>) -> Placed<'e> {
        let (mut to_left, mut to_right) = (Vec::new(), Vec::new());
        let mut put = |c: &'e Expr, side| match side {
            Side::Left => to_left.push(c),
            Side::Right => to_right.push(c),
        };
        let mut conditions = Vec::new();
        split_and(on, &mut conditions);
        conditions.retain(|c| match self.one_side(c, false) {
            Some(side) if !matches!(c, Expr::Between { .. }) => {
                put(c, side);
                false
            }
            _ => true,
        });
        pending.retain(|c| match self.one_side(c, true) {
            Some(side) => {
                put(c, side);
                false
            }
            None => true,
        });
        (conditions, to_left, to_right)
    }

    /// The side whose columns are all that `condition` reads, when that is sure: every
    /// qualifier names one side only (and no later join), and, with `bare`, a bare column is
    /// the left's when the left has it (the join keeps the left's names), else the right's.
    /// `None` when it reads both, neither, or something this cannot see into.
    fn one_side(&self, condition: &Expr, bare: bool) -> Option<Side> {
        let (mut left, mut right, mut unsure) = (false, false, false);
        expr::walk(condition, &mut |e| match e {
            Expr::Identifier(id) if bare && self.left.1.contains(&id.value) => left = true,
            Expr::Identifier(id) if bare && self.right.1.contains(&id.value) => right = true,
            Expr::CompoundIdentifier(parts) if parts.len() == 2 => {
                let q = &parts[0].value;
                let (l, r) = (
                    self.left.0.qualifiers.contains(q),
                    self.right.0.qualifiers.contains(q),
                );
                if l == r || self.later.contains(q) {
                    unsure = true;
                }
                left |= l;
                right |= r;
            }
            Expr::Function(f) => unsure |= !expr::walks_all_args(f),
            Expr::BinaryOp { .. }
            | Expr::UnaryOp { .. }
            | Expr::Nested(_)
            | Expr::Cast { .. }
            | Expr::IsNull(_)
            | Expr::IsNotNull(_)
            | Expr::Extract { .. }
            | Expr::InList { .. }
            | Expr::Between { .. }
            | Expr::Like { .. }
            | Expr::Case { .. }
            | Expr::Value(_)
            | Expr::Interval(_)
            | Expr::TypedString { .. } => {}
            _ => unsure = true,
        });
        match (left, right, unsure) {
            (true, false, false) => Some(Side::Left),
            (false, true, false) => Some(Side::Right),
            _ => None,
        }
    }
}

/// The names that may qualify the columns of a FROM item: a table's name and alias, a
/// subquery's or table function's alias.
fn qualifiers_of(factor: &TableFactor) -> Vec<String> {
    let (name, alias) = match factor {
        TableFactor::Table { name, alias, .. } => (Some(object_name(name)), alias),
        TableFactor::Derived { alias, .. } | TableFactor::TableFunction { alias, .. } => {
            (None, alias)
        }
        _ => (None, &None),
    };
    name.into_iter()
        .chain(alias.iter().map(|a| a.name.value.clone()))
        .collect()
}

/// `a AND b AND ...` of `conditions`; `None` when there are none.
fn conjoin(conditions: &[&Expr]) -> Option<Expr> {
    let (first, rest) = conditions.split_first()?;
    Some(rest.iter().fold((*first).clone(), |all, c| Expr::BinaryOp {
        left: Box::new(all),
        op: sqlparser::ast::BinaryOperator::And,
        right: Box::new((*c).clone()),
    }))
}

/// The conjuncts of `a AND b AND ...`.
pub(super) fn split_and<'e>(expr: &'e Expr, out: &mut Vec<&'e Expr>) {
    match expr {
        Expr::BinaryOp {
            left,
            op: sqlparser::ast::BinaryOperator::And,
            right,
        } => {
            split_and(left, out);
            split_and(right, out);
        }
        Expr::Nested(inner) => split_and(inner, out),
        other => out.push(other),
    }
}

/// Whether `expr` names a column qualified by one of `scope`'s qualifiers.
pub(super) fn refers_to(expr: &Expr, scope: &Scope) -> bool {
    let mut found = false;
    expr::walk(expr, &mut |e| {
        if let Expr::CompoundIdentifier(parts) = e {
            if parts
                .first()
                .is_some_and(|q| scope.qualifiers.contains(&q.value))
            {
                found = true;
            }
        }
    });
    found
}

/// The delay of a `WATERMARK FOR col AS col [- INTERVAL ...]` clause.
fn watermark_delay(mark: &Watermark) -> Result<(String, i64), SqlError> {
    let bad = || SqlError {
        pos: mark.pos,
        message: format!(
            "WATERMARK FOR {}: the expression must be `{0}` or `{0} - INTERVAL 'n' SECOND`",
            mark.column
        ),
    };
    let parsed = sqlparser::parser::Parser::new(&sqlparser::dialect::GenericDialect {})
        .try_with_sql(&mark.expr)
        .and_then(|mut p| p.parse_expr())
        .map_err(|_| bad())?;
    let is_column = |e: &Expr| matches!(e, Expr::Identifier(id) if id.value == mark.column);
    match &parsed {
        e if is_column(e) => Ok((mark.column.clone(), 0)),
        Expr::BinaryOp {
            left,
            op: sqlparser::ast::BinaryOperator::Minus,
            right,
        } if is_column(left) => {
            let ms = expr::interval_ms(right).ok_or_else(bad)?;
            Ok((mark.column.clone(), ms))
        }
        _ => Err(bad()),
    }
}

/// A window spec of `kind` on event time.
pub(super) fn window(kind: WindowKind, pos: Pos) -> WindowSpec {
    WindowSpec {
        kind,
        time: TimeDomain::Event,
        allowed_lateness_ms: 0,
        late_output: None,
        path: "FROM".into(),
        pos,
    }
}

/// Where a statement starts.
fn statement_pos(statement: &Statement) -> Pos {
    use sqlparser::ast::Spanned;
    let span = statement.span();
    if span.start.line > 0 {
        pos_of(span.start)
    } else {
        Pos { line: 1, column: 1 }
    }
}

/// A group key with an optional name.
pub(super) fn group_key(name: Option<Named>, expr: ExprText) -> GroupKey {
    GroupKey { name, expr }
}

//! The physical graph: the plan cut into tasks, each a head plus the operators fused into it.
//! Stateful operators (`aggregate`, `top`) always head a task, and the edge into one routes
//! rows by its group keys; a windowed operator's late rows leave on its side-output edges.
//!
//! Every task runs one instance on every data core. A stateless operator is fused into its
//! input's task when it is that input's only consumer and the input does not repartition
//! (`key_by`); everything else — sinks, unions, consumers of a `key_by` or of a fan-out —
//! heads a task of its own with a mailbox. Pure: built and tested without a runtime.

use wire_core::frontend::plan::{Input, Operator, Plan};

/// Where a task starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// Runs source `i`'s partitions owned by the core.
    Source(usize),
    /// Receives batches for operator `i` in its mailbox.
    Operator(usize),
    /// Receives batches for sink `i` in its mailbox.
    Sink(usize),
}

/// How rows travel along an edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// To the consumer instance on the same core.
    Forward,
    /// To the core owning each row's key group, by the keys of the `key_by` operator `i`.
    KeyBy(usize),
    /// To the core owning each row's key group, by the group keys of stateful operator `i`.
    GroupBy(usize),
}

/// An edge to a consuming task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    /// The consuming task (index into `PhysicalGraph::tasks`).
    pub task: usize,
    /// How rows get there.
    pub routing: Routing,
    /// Which of the consumer's inputs this edge feeds (0, or 1 for a join's right input).
    pub port: u8,
}

/// One task: its head, the operators run inline after it, and where its output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSpec {
    /// What starts the task.
    pub head: Head,
    /// Operators (indices into `plan.operators`) applied in order to every batch, starting
    /// with the head when it is an operator. A `key_by` can only be last.
    pub chain: Vec<usize>,
    /// Tasks receiving this task's output.
    pub outputs: Vec<Edge>,
    /// Tasks receiving the head's late rows (its side output), if it has one.
    pub side_outputs: Vec<Edge>,
}

/// The tasks of a plan and their edges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhysicalGraph {
    /// All tasks; sources first.
    pub tasks: Vec<TaskSpec>,
}

impl PhysicalGraph {
    /// Cuts `plan` into tasks.
    pub fn build(plan: &Plan) -> PhysicalGraph {
        let consumers = consumers(plan);
        let (mut tasks, task_of_node) = cut_tasks(plan, &consumers);
        let task_of = |node: Node| -> usize {
            task_of_node
                .iter()
                .find(|(n, _)| *n == node)
                .map(|(_, t)| *t)
                .expect("every node belongs to a task")
        };
        let edges_from = |from: Input| -> Vec<Edge> {
            consumers_of(&consumers, from)
                .iter()
                .map(|node| Edge {
                    task: task_of(*node),
                    routing: routing(plan, from, *node),
                    port: port_of(plan, from, *node),
                })
                .collect()
        };
        for task in &mut tasks {
            let tail = match (task.head, task.chain.last()) {
                (Head::Sink(_), _) => continue,
                (_, Some(op)) => Input::Operator(*op),
                (Head::Source(i), None) => Input::Source(i),
                (Head::Operator(_), None) => unreachable!("operator heads start their chain"),
            };
            task.outputs = edges_from(tail);
            if let Head::Operator(head) = task.head {
                if let Some(late) = late_of(plan, head) {
                    task.side_outputs = edges_from(Input::Operator(late));
                }
            }
        }
        PhysicalGraph { tasks }
    }

    /// How many `End`s the mailbox of `task` receives on each core before it is done: one per
    /// upstream instance that sends to this core.
    pub fn senders(&self, task: usize, cores: usize) -> usize {
        self.tasks
            .iter()
            .flat_map(|upstream| upstream.outputs.iter().chain(&upstream.side_outputs))
            .filter(|edge| edge.task == task)
            .map(|edge| match edge.routing {
                Routing::Forward => 1,
                _ => cores,
            })
            .sum()
    }
}

/// The tasks of `plan` (without their outputs yet): one per source, per operator that is
/// not fused into its input's task, and per sink; with the task each node runs in.
fn cut_tasks(plan: &Plan, consumers: &[(Input, Vec<Node>)]) -> (Vec<TaskSpec>, Vec<(Node, usize)>) {
    let fused = |op: usize| is_fused(plan, consumers, op);
    let mut tasks: Vec<TaskSpec> = Vec::new();
    let mut task_of_node: Vec<(Node, usize)> = Vec::new();
    let heads = (0..plan.sources.len())
        .map(Head::Source)
        .chain(
            (0..plan.operators.len())
                .filter(|op| !fused(*op) && !matches!(plan.operators[*op].op, Operator::Late))
                .map(Head::Operator),
        )
        .chain((0..plan.sinks.len()).map(Head::Sink));
    for head in heads {
        let mut chain = Vec::new();
        let mut last = match head {
            Head::Source(i) => Some(Node::Input(Input::Source(i))),
            Head::Operator(i) => {
                chain.push(i);
                if let Some(late) = late_of(plan, i) {
                    task_of_node.push((Node::Input(Input::Operator(late)), tasks.len()));
                }
                Some(Node::Input(Input::Operator(i)))
            }
            Head::Sink(i) => {
                task_of_node.push((Node::Sink(i), tasks.len()));
                None
            }
        };
        // Follow the single fused consumer while there is one.
        while let Some(Node::Input(input)) = last {
            task_of_node.push((Node::Input(input), tasks.len()));
            last = match consumers_of(consumers, input) {
                [Node::Input(Input::Operator(next))] if fused(*next) => {
                    chain.push(*next);
                    Some(Node::Input(Input::Operator(*next)))
                }
                _ => None,
            };
        }
        tasks.push(TaskSpec {
            head,
            chain,
            outputs: Vec::new(),
            side_outputs: Vec::new(),
        });
    }
    (tasks, task_of_node)
}

/// Whether operator `op` runs inline in its input's task: a stateless operator that is its
/// input's only consumer, where the input neither repartitions nor is a side output.
fn is_fused(plan: &Plan, consumers: &[(Input, Vec<Node>)], op: usize) -> bool {
    let operator = &plan.operators[op];
    if operator.inputs.len() != 1
        || matches!(operator.op, Operator::Union | Operator::Late)
        || operator.op.is_stateful()
    {
        return false;
    }
    let input = operator.inputs[0];
    let from_late =
        matches!(input, Input::Operator(i) if matches!(plan.operators[i].op, Operator::Late));
    consumers_of(consumers, input).len() == 1 && !is_key_by(plan, input) && !from_late
}

/// The late side output of operator `op`, if it has one.
fn late_of(plan: &Plan, op: usize) -> Option<usize> {
    plan.operators.iter().position(|o| {
        matches!(o.op, Operator::Late) && o.inputs.first() == Some(&Input::Operator(op))
    })
}

/// Stateful consumers get rows by their group keys; after a `key_by`, by its keys.
fn routing(plan: &Plan, from: Input, to: Node) -> Routing {
    if let Node::Input(Input::Operator(consumer)) = to {
        if plan.operators[consumer].op.group_keys(0).is_some() {
            return Routing::GroupBy(consumer);
        }
    }
    match from {
        Input::Operator(op) if is_key_by(plan, from) => Routing::KeyBy(op),
        _ => Routing::Forward,
    }
}

/// The input position of `from` in the consumer `to`.
fn port_of(plan: &Plan, from: Input, to: Node) -> u8 {
    match to {
        Node::Input(Input::Operator(consumer)) => plan.operators[consumer]
            .inputs
            .iter()
            .position(|input| *input == from)
            .unwrap_or(0) as u8,
        _ => 0,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Input(Input),
    Sink(usize),
}

fn consumers(plan: &Plan) -> Vec<(Input, Vec<Node>)> {
    let mut table: Vec<(Input, Vec<Node>)> = (0..plan.sources.len())
        .map(|i| (Input::Source(i), Vec::new()))
        .chain((0..plan.operators.len()).map(|i| (Input::Operator(i), Vec::new())))
        .collect();
    let mut add = |input: Input, node: Node| {
        if let Some((_, list)) = table.iter_mut().find(|(i, _)| *i == input) {
            list.push(node);
        }
    };
    for (index, operator) in plan.operators.iter().enumerate() {
        if matches!(operator.op, Operator::Late) {
            continue; // Fed by its window's task, not a consumer of the window's output.
        }
        for input in &operator.inputs {
            add(*input, Node::Input(Input::Operator(index)));
        }
    }
    for (index, sink) in plan.sinks.iter().enumerate() {
        add(sink.input, Node::Sink(index));
    }
    table
}

fn consumers_of(table: &[(Input, Vec<Node>)], input: Input) -> &[Node] {
    table
        .iter()
        .find(|(i, _)| *i == input)
        .map_or(&[], |(_, list)| list.as_slice())
}

fn is_key_by(plan: &Plan, input: Input) -> bool {
    matches!(input, Input::Operator(i) if matches!(plan.operators[i].op, Operator::KeyBy(_)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire_core::frontend::spec::PipelineSpec;

    fn graph(text: &str) -> PhysicalGraph {
        let spec = PipelineSpec::parse("t.yaml", text).expect("spec");
        PhysicalGraph::build(&Plan::from_spec(&spec).expect("plan"))
    }

    #[test]
    fn a_linear_chain_fuses_into_the_source_task() {
        let g = graph(
            "sources: {b: {type: nexmark, stream: bid}}
operators:
  - {name: f, from: b, filter: 'true'}
  - {name: p, from: f, project: {a: auction}}
sinks: {out: {type: blackhole, from: p}}",
        );
        assert_eq!(g.tasks.len(), 2);
        assert_eq!(g.tasks[0].head, Head::Source(0));
        assert_eq!(g.tasks[0].chain, [0, 1]);
        assert_eq!(
            g.tasks[0].outputs,
            [Edge {
                task: 1,
                routing: Routing::Forward,
                port: 0
            }]
        );
        assert_eq!(g.tasks[1].head, Head::Sink(0));
        assert_eq!(g.senders(1, 4), 1);
    }

    #[test]
    fn key_by_ends_a_chain_and_fans_in_from_every_core() {
        let g = graph(
            "sources: {b: {type: nexmark, stream: bid}}
operators:
  - {name: k, from: b, key_by: auction}
  - {name: p, from: k, project: {a: auction}}
sinks: {out: {type: blackhole, from: p}}",
        );
        assert_eq!(g.tasks[0].chain, [0]);
        assert_eq!(g.tasks[0].outputs[0].routing, Routing::KeyBy(0));
        assert_eq!(g.tasks[1].head, Head::Operator(1));
        assert_eq!(g.senders(1, 3), 3);
        assert_eq!(g.tasks[1].outputs[0].task, 2);
    }

    #[test]
    fn unions_and_fan_out_head_their_own_tasks() {
        let g = graph(
            "sources: {a: {type: nexmark, stream: bid}, b: {type: nexmark, stream: bid}}
operators:
  - {name: u, union: [a, b]}
sinks: {one: {type: blackhole, from: u}, two: {type: blackhole, from: u}}",
        );
        assert_eq!(g.tasks.len(), 5);
        assert_eq!(g.tasks[2].head, Head::Operator(0));
        assert_eq!(g.senders(2, 2), 2);
        let outs: Vec<usize> = g.tasks[2].outputs.iter().map(|e| e.task).collect();
        assert_eq!(outs, [3, 4]);
    }
}

//! The physical graph: the plan cut into tasks, each a head plus the operators fused into it.
//!
//! Every task runs one instance on every data core. A stateless operator is fused into its
//! input's task when it is that input's only consumer and the input does not repartition
//! (`key_by`); everything else — sinks, unions, consumers of a `key_by` or of a fan-out —
//! heads a task of its own with a mailbox. Pure: built and tested without a runtime.

use wire_core::plan::{Input, Operator, Plan};

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

/// One task: its head, the operators run inline after it, and where its output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSpec {
    /// What starts the task.
    pub head: Head,
    /// Operators (indices into `plan.operators`) applied in order to every batch, starting
    /// with the head when it is an operator. A `key_by` can only be last.
    pub chain: Vec<usize>,
    /// Tasks (indices into `PhysicalGraph::tasks`) receiving this task's output.
    pub outputs: Vec<usize>,
    /// Whether output is routed by key group (the chain ends in `key_by`).
    pub partitioned: bool,
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
        let fused = |op: usize| -> bool {
            let operator = &plan.operators[op];
            if operator.inputs.len() != 1 || matches!(operator.op, Operator::Union) {
                return false;
            }
            let input = operator.inputs[0];
            consumers_of(&consumers, input).len() == 1 && !is_key_by(plan, input)
        };
        let mut tasks: Vec<TaskSpec> = Vec::new();
        let mut task_of_node: Vec<(Node, usize)> = Vec::new();
        let heads = (0..plan.sources.len())
            .map(Head::Source)
            .chain(
                (0..plan.operators.len())
                    .filter(|op| !fused(*op))
                    .map(Head::Operator),
            )
            .chain((0..plan.sinks.len()).map(Head::Sink));
        for head in heads {
            let mut chain = Vec::new();
            let mut last = match head {
                Head::Source(i) => Some(Node::Input(Input::Source(i))),
                Head::Operator(i) => {
                    chain.push(i);
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
                last = match consumers_of(&consumers, input) {
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
                partitioned: false,
            });
        }
        let task_of = |node: Node| -> usize {
            task_of_node
                .iter()
                .find(|(n, _)| *n == node)
                .map(|(_, t)| *t)
                .expect("every node belongs to a task")
        };
        for task in &mut tasks {
            let tail = match (task.head, task.chain.last()) {
                (Head::Sink(_), _) => continue,
                (_, Some(op)) => Input::Operator(*op),
                (Head::Source(i), None) => Input::Source(i),
                (Head::Operator(_), None) => unreachable!("operator heads start their chain"),
            };
            task.partitioned = is_key_by(plan, tail);
            task.outputs = consumers_of(&consumers, tail)
                .iter()
                .map(|node| task_of(*node))
                .collect();
        }
        PhysicalGraph { tasks }
    }

    /// How many `End`s the mailbox of `task` receives on each core before it is done: one per
    /// upstream instance that sends to this core.
    pub fn senders(&self, task: usize, cores: usize) -> usize {
        self.tasks
            .iter()
            .map(|upstream| {
                let edges = upstream.outputs.iter().filter(|t| **t == task).count();
                edges * if upstream.partitioned { cores } else { 1 }
            })
            .sum()
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
    use wire_core::spec::PipelineSpec;

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
        assert_eq!(g.tasks[0].outputs, [1]);
        assert!(!g.tasks[0].partitioned);
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
        assert!(g.tasks[0].partitioned);
        assert_eq!(g.tasks[1].head, Head::Operator(1));
        assert_eq!(g.senders(1, 3), 3);
        assert_eq!(g.tasks[1].outputs, [2]);
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
        assert_eq!(g.tasks[2].outputs, [3, 4]);
    }
}

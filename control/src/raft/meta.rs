//! The replicated metadata state machine: nodes, pipelines, assignments, checkpoints and
//! savepoints, changed only by applying committed [`MetaCommand`]s in log order.
//!
//! `apply` is deterministic and all-or-nothing: a command that is invalid returns an error and
//! changes nothing, so every replica that applies the same log holds the same state.

use std::collections::BTreeMap;

use super::codec::{Reader, Writer};
use super::MetaError;

mod tokens;

pub use tokens::{AccessRole, TokenRecord, TokenScope};

/// Completed checkpoints kept per pipeline (the newest ones).
pub const CHECKPOINTS_KEPT: usize = 16;

/// Savepoints kept per pipeline (the newest ones).
pub const SAVEPOINTS_KEPT: usize = 64;

/// Checkpoints of a spread pipeline whose parts are still being reported, kept per pipeline
/// (the newest ones): a checkpoint one node never completes is dropped in the end.
pub const PENDING_PARTS_KEPT: usize = 16;

/// Version byte that starts an encoded command. Version 2 added the checkpoint timeout,
/// retention and deltas to [`RunOptions`]; version 1 commands (logs written before) still
/// decode, with those options unset. Version 3 added the token commands (tags 12 and 13),
/// which an older version byte may not carry. Version 4 added `NodeCheckpoint` (tag 14), version 5
/// `Rescale` (tag 15).
const COMMAND_VERSION: u8 = 5;

/// Version byte that starts an encoded state snapshot (versions 1 and 2 still decode, as
/// commands; version 3 added the tokens after the pipelines, none in older snapshots;
/// version 4 added each pipeline's pending checkpoint parts).
const STATE_VERSION: u8 = 4;

/// The oldest command and snapshot version that still decodes.
const OLDEST_VERSION: u8 = 1;

/// A registered node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's gRPC address (`HOST:PORT`).
    pub addr: String,
    /// The raft index at which the node was registered.
    pub joined_at_index: u64,
}

/// How a pipeline runs, as given to `wirectl pipeline create` (and changed by `scale`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RunOptions {
    /// Checkpoint interval in milliseconds; `None` means the pipeline does not checkpoint.
    pub checkpoint_interval_ms: Option<u64>,
    /// Data cores to run on; `None` means the node's default.
    pub cores: Option<u32>,
    /// A savepoint directory to start from.
    pub from_savepoint: Option<String>,
    /// Abort a checkpoint not complete after this many milliseconds; `None`: `wire run`'s
    /// default (60 s).
    pub checkpoint_timeout_ms: Option<u64>,
    /// Completed checkpoints kept on disk; `None`: `wire run`'s default (3).
    pub checkpoints_retained: Option<u32>,
    /// Incremental checkpoints in a row at most (0: none); `None`: `wire run`'s default (10).
    pub checkpoint_deltas: Option<u32>,
}

/// What the operator asked a pipeline to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DesiredState {
    /// Run (the state right after creation).
    Running,
    /// Pause sources, keep state.
    Paused,
    /// Take a final checkpoint and stop.
    Stopped,
}

/// What a pipeline is doing, as reported by the node that runs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActualState {
    /// Recorded, not started yet.
    Created,
    /// Running.
    Running,
    /// Paused.
    Paused,
    /// Taking its final checkpoint.
    Stopping,
    /// Ended (a bounded pipeline, or a stop that completed).
    Finished,
    /// Failed; see [`PipelineMeta::failure`].
    Failed,
}

/// One key-group range of a pipeline placed on one core of one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// First key group of the range.
    pub key_group_start: u32,
    /// One past the last key group of the range.
    pub key_group_end: u32,
    /// The node that runs the range.
    pub node: u64,
    /// The data core on that node.
    pub core: u32,
}

/// A completed checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointRecord {
    /// Checkpoint id (strictly increasing per pipeline).
    pub id: u64,
    /// Where its files are.
    pub path: String,
}

/// A savepoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavepointRecord {
    /// The directory it was written to.
    pub path: String,
    /// The checkpoint id it was taken at.
    pub checkpoint_id: u64,
    /// The raft index at which it was recorded.
    pub recorded_at_index: u64,
}

/// One pipeline's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipelineMeta {
    /// The pipeline file's text (YAML or SQL, told apart by `stored_file_name`), as checked
    /// on creation.
    pub spec_yaml: String,
    /// Run options.
    pub options: RunOptions,
    /// Bumped by every change to the spec or options (starts at 1).
    pub version: u64,
    /// What the operator asked for.
    pub desired: DesiredState,
    /// What the running node reported.
    pub actual: ActualState,
    /// Why it failed, when `actual` is `Failed`.
    pub failure: Option<String>,
    /// Key-group ranges → (node, core), sorted and disjoint.
    pub assignment: Vec<Assignment>,
    /// The newest completed checkpoints, oldest first (at most [`CHECKPOINTS_KEPT`]).
    pub checkpoints: Vec<CheckpointRecord>,
    /// Savepoints, oldest first (at most [`SAVEPOINTS_KEPT`]).
    pub savepoints: Vec<SavepointRecord>,
    /// The raft index of the `CreatePipeline` that made it: a pipeline deleted and created
    /// again under the same name is another incarnation, with checkpoints of its own. 0 for
    /// pipelines recorded before version 2 of the encoding.
    pub created_at_index: u64,
    /// A spread pipeline's checkpoints that some of its nodes have completed their parts of,
    /// by id, then node: where each part is (the node's part store). Once every node of the
    /// assignment has, the checkpoint is complete and moves to `checkpoints`, its path the
    /// parts' stores, one per line. Cleared when the assignment changes.
    pub pending_parts: BTreeMap<u64, BTreeMap<u64, String>>,
}

/// The whole replicated metadata.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct MetaState {
    /// Registered nodes by id.
    pub nodes: BTreeMap<u64, NodeInfo>,
    /// Pipelines by name.
    pub pipelines: BTreeMap<String, PipelineMeta>,
    /// Bearer tokens by id (hashed secrets only).
    pub tokens: BTreeMap<String, TokenRecord>,
}

/// A change to the metadata, replicated through the raft log.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetaCommand {
    /// Record a new pipeline (desired `Running`, actual `Created`).
    CreatePipeline {
        /// Unique pipeline name.
        name: String,
        /// The checked pipeline file.
        spec_yaml: String,
        /// Run options.
        options: RunOptions,
    },
    /// Replace a pipeline's spec and options (bumps its version).
    UpdatePipeline {
        /// Pipeline name.
        name: String,
        /// The new checked pipeline file.
        spec_yaml: String,
        /// The new options.
        options: RunOptions,
    },
    /// Set what a pipeline should do.
    SetDesired {
        /// Pipeline name.
        name: String,
        /// The desired state.
        desired: DesiredState,
    },
    /// Record what a pipeline is doing; `failure` must be set exactly when `actual` is `Failed`.
    ReportActual {
        /// Pipeline name.
        name: String,
        /// The reported state.
        actual: ActualState,
        /// The failure message.
        failure: Option<String>,
    },
    /// What the node running a pipeline reports of it: applied only when the pipeline is
    /// placed on `node` and still at `version`, so a node that lost the pipeline (removed, or
    /// replaced by a newer version) cannot overwrite what its new runner reports.
    NodeReport {
        /// The reporting node.
        node: u64,
        /// The pipeline version the node runs.
        version: u64,
        /// Pipeline name.
        name: String,
        /// The reported state.
        actual: ActualState,
        /// The failure message (exactly when `actual` is `Failed`).
        failure: Option<String>,
    },
    /// Forget a pipeline.
    DeletePipeline {
        /// Pipeline name.
        name: String,
    },
    /// Replace a pipeline's placement (ranges sorted, disjoint, non-empty, on registered nodes).
    SetAssignment {
        /// Pipeline name.
        name: String,
        /// The new placement.
        assignment: Vec<Assignment>,
    },
    /// Scale a spread pipeline: new options (its core count) and its slots dealt again, in one
    /// step, as a new version (the nodes that ran it stop, and every slot of the new version
    /// restores from the last complete checkpoint).
    Rescale {
        /// Pipeline name.
        name: String,
        /// The new options.
        options: RunOptions,
        /// The new placement (as [`MetaCommand::SetAssignment`] takes it).
        assignment: Vec<Assignment>,
    },
    /// Record a completed checkpoint (ids strictly increase).
    RecordCheckpoint {
        /// Pipeline name.
        name: String,
        /// Checkpoint id.
        id: u64,
        /// Where its files are.
        path: String,
    },
    /// What the node running a pipeline records of a checkpoint it completed: applied only
    /// when the pipeline is placed on `node` and still at `version`, like [`MetaCommand::NodeReport`],
    /// so a node the pipeline was moved away from cannot record checkpoints of it.
    NodeCheckpoint {
        /// The recording node.
        node: u64,
        /// The pipeline version the node runs.
        version: u64,
        /// Pipeline name.
        name: String,
        /// Checkpoint id.
        id: u64,
        /// Where its files are.
        path: String,
    },
    /// Record a savepoint.
    RecordSavepoint {
        /// Pipeline name.
        name: String,
        /// Its directory.
        path: String,
        /// The checkpoint id it was taken at.
        checkpoint_id: u64,
    },
    /// Register a node (the metadata half of adding a voter).
    AddNode {
        /// Node id (non-zero, not in use).
        id: u64,
        /// Its gRPC address.
        addr: String,
    },
    /// Unregister a node (the metadata half of removing a voter).
    RemoveNode {
        /// Node id.
        id: u64,
    },
    /// Record a bearer token (the id must be new).
    CreateToken {
        /// Token id (not secret).
        id: String,
        /// Its role, hash and expiry.
        token: TokenRecord,
    },
    /// Forget a bearer token: it stops working on each member as the member applies this.
    RevokeToken {
        /// Token id.
        id: String,
    },
}

impl MetaCommand {
    /// The command's name, as traces show it (never its fields: tokens are secrets).
    pub fn name(&self) -> &'static str {
        match self {
            MetaCommand::CreatePipeline { .. } => "create_pipeline",
            MetaCommand::UpdatePipeline { .. } => "update_pipeline",
            MetaCommand::SetDesired { .. } => "set_desired",
            MetaCommand::ReportActual { .. } => "report_actual",
            MetaCommand::NodeReport { .. } => "node_report",
            MetaCommand::DeletePipeline { .. } => "delete_pipeline",
            MetaCommand::SetAssignment { .. } => "set_assignment",
            MetaCommand::Rescale { .. } => "rescale",
            MetaCommand::RecordCheckpoint { .. } => "record_checkpoint",
            MetaCommand::NodeCheckpoint { .. } => "node_checkpoint",
            MetaCommand::RecordSavepoint { .. } => "record_savepoint",
            MetaCommand::AddNode { .. } => "add_node",
            MetaCommand::RemoveNode { .. } => "remove_node",
            MetaCommand::CreateToken { .. } => "create_token",
            MetaCommand::RevokeToken { .. } => "revoke_token",
        }
    }
}

/// What applying a command produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaResponse {
    /// The raft index the command was applied at.
    pub index: u64,
    /// The pipeline's version after the command, for pipeline commands that keep it.
    pub version: Option<u64>,
}

impl MetaState {
    /// Applies `cmd`, committed at raft `index`; on error nothing has changed.
    pub fn apply(&mut self, index: u64, cmd: &MetaCommand) -> Result<MetaResponse, MetaError> {
        let version = match cmd {
            MetaCommand::CreatePipeline {
                name,
                spec_yaml,
                options,
            } => Some(self.create(index, name, spec_yaml, options)?),
            MetaCommand::UpdatePipeline {
                name,
                spec_yaml,
                options,
            } => {
                let p = self.pipeline_mut(name)?;
                p.spec_yaml.clone_from(spec_yaml);
                p.options = options.clone();
                p.version += 1;
                p.pending_parts.clear();
                Some(p.version)
            }
            MetaCommand::SetDesired { name, desired } => {
                let p = self.pipeline_mut(name)?;
                p.desired = *desired;
                Some(p.version)
            }
            MetaCommand::ReportActual {
                name,
                actual,
                failure,
            } => Some(self.report_actual(name, *actual, failure)?),
            MetaCommand::NodeReport {
                node,
                version,
                name,
                actual,
                failure,
            } => {
                self.check_fresh(name, *node, *version)?;
                Some(self.report_actual(name, *actual, failure)?)
            }
            MetaCommand::NodeCheckpoint {
                node,
                version,
                name,
                id,
                path,
            } => {
                self.check_fresh(name, *node, *version)?;
                Some(self.record_node_checkpoint(name, *node, *id, path)?)
            }
            MetaCommand::DeletePipeline { name } => {
                self.pipelines.remove(name).ok_or_else(|| unknown(name))?;
                None
            }
            MetaCommand::SetAssignment { name, assignment } => {
                Some(self.set_assignment(name, assignment)?)
            }
            MetaCommand::Rescale {
                name,
                options,
                assignment,
            } => Some(self.rescale(name, options, assignment)?),
            MetaCommand::RecordCheckpoint { name, id, path } => {
                Some(self.record_checkpoint(name, *id, path)?)
            }
            MetaCommand::RecordSavepoint {
                name,
                path,
                checkpoint_id,
            } => Some(self.record_savepoint(index, name, path, *checkpoint_id)?),
            MetaCommand::AddNode { id, addr } => {
                self.add_node(index, *id, addr)?;
                None
            }
            MetaCommand::RemoveNode { id } => {
                self.check_remove_node(*id)?;
                self.nodes.remove(id);
                None
            }
            MetaCommand::CreateToken { .. } | MetaCommand::RevokeToken { .. } => {
                self.apply_token(cmd)?;
                None
            }
        };
        Ok(MetaResponse { index, version })
    }

    /// Whether `AddNode { id, addr }` would apply: the id is non-zero and unused, the address set.
    pub fn check_add_node(&self, id: u64, addr: &str) -> Result<(), MetaError> {
        if id == 0 {
            return Err(MetaError::Invalid {
                reason: "node id 0 is reserved".into(),
            });
        }
        if addr.is_empty() {
            return Err(MetaError::Invalid {
                reason: format!("node {id} has an empty address"),
            });
        }
        if self.nodes.contains_key(&id) {
            return Err(MetaError::NodeExists { id });
        }
        Ok(())
    }

    /// Whether `RemoveNode { id }` would apply: the node is registered.
    pub fn check_remove_node(&self, id: u64) -> Result<(), MetaError> {
        if !self.nodes.contains_key(&id) {
            return Err(MetaError::UnknownNode { id });
        }
        Ok(())
    }

    fn add_node(&mut self, index: u64, id: u64, addr: &str) -> Result<(), MetaError> {
        self.check_add_node(id, addr)?;
        let info = NodeInfo {
            addr: addr.to_owned(),
            joined_at_index: index,
        };
        self.nodes.insert(id, info);
        Ok(())
    }

    fn record_savepoint(
        &mut self,
        index: u64,
        name: &str,
        path: &str,
        checkpoint_id: u64,
    ) -> Result<u64, MetaError> {
        let p = self.pipeline_mut(name)?;
        p.savepoints.push(SavepointRecord {
            path: path.to_owned(),
            checkpoint_id,
            recorded_at_index: index,
        });
        trim_front(&mut p.savepoints, SAVEPOINTS_KEPT);
        Ok(p.version)
    }

    /// Applies `CreateToken` (a new id only) or `RevokeToken` (a known id only).
    fn apply_token(&mut self, cmd: &MetaCommand) -> Result<(), MetaError> {
        match cmd {
            MetaCommand::CreateToken { id, token } => {
                if id.is_empty() || self.tokens.contains_key(id) {
                    return Err(MetaError::Invalid {
                        reason: format!("token id `{id}` is empty or in use"),
                    });
                }
                self.tokens.insert(id.clone(), token.clone());
            }
            MetaCommand::RevokeToken { id } => {
                self.tokens
                    .remove(id)
                    .ok_or_else(|| MetaError::UnknownToken { id: id.clone() })?;
            }
            _ => {}
        }
        Ok(())
    }

    fn pipeline_mut(&mut self, name: &str) -> Result<&mut PipelineMeta, MetaError> {
        self.pipelines.get_mut(name).ok_or_else(|| unknown(name))
    }

    fn create(
        &mut self,
        index: u64,
        name: &str,
        spec: &str,
        options: &RunOptions,
    ) -> Result<u64, MetaError> {
        if name.is_empty() {
            return Err(MetaError::Invalid {
                reason: "pipeline name is empty".into(),
            });
        }
        if self.pipelines.contains_key(name) {
            return Err(MetaError::PipelineExists {
                name: name.to_owned(),
            });
        }
        let meta = PipelineMeta {
            spec_yaml: spec.to_owned(),
            options: options.clone(),
            version: 1,
            desired: DesiredState::Running,
            actual: ActualState::Created,
            failure: None,
            assignment: Vec::new(),
            checkpoints: Vec::new(),
            savepoints: Vec::new(),
            created_at_index: index,
            pending_parts: BTreeMap::new(),
        };
        self.pipelines.insert(name.to_owned(), meta);
        Ok(1)
    }

    fn report_actual(
        &mut self,
        name: &str,
        actual: ActualState,
        failure: &Option<String>,
    ) -> Result<u64, MetaError> {
        if (actual == ActualState::Failed) != failure.is_some() {
            return Err(MetaError::Invalid {
                reason: format!(
                    "pipeline {name}: a failure message goes with the failed state only"
                ),
            });
        }
        let p = self.pipeline_mut(name)?;
        p.actual = actual;
        p.failure.clone_from(failure);
        Ok(p.version)
    }

    fn set_assignment(&mut self, name: &str, assignment: &[Assignment]) -> Result<u64, MetaError> {
        self.check_assignment(name, assignment)?;
        let p = self.pipeline_mut(name)?;
        // Moving a placed pipeline starts a new epoch of it: the nodes that ran it stop, and
        // what they still report of the old version is refused as stale.
        if !p.assignment.is_empty() && p.assignment != assignment {
            p.version += 1;
            p.pending_parts.clear();
        }
        p.assignment = assignment.to_vec();
        Ok(p.version)
    }

    /// Sets `name`'s options and assignment as a new version, whether or not the slots moved
    /// (a new version restores from the last complete checkpoint).
    fn rescale(
        &mut self,
        name: &str,
        options: &RunOptions,
        assignment: &[Assignment],
    ) -> Result<u64, MetaError> {
        self.check_assignment(name, assignment)?;
        let p = self.pipeline_mut(name)?;
        p.options = options.clone();
        p.assignment = assignment.to_vec();
        p.version += 1;
        p.pending_parts.clear();
        Ok(p.version)
    }

    /// Refuses an assignment of pipeline `name` whose ranges are empty, unsorted or overlap,
    /// or that names a node not registered.
    fn check_assignment(&self, name: &str, assignment: &[Assignment]) -> Result<(), MetaError> {
        if !self.pipelines.contains_key(name) {
            return Err(unknown(name));
        }
        let mut next_start = 0u32;
        for (i, a) in assignment.iter().enumerate() {
            if a.key_group_start >= a.key_group_end || (i > 0 && a.key_group_start < next_start) {
                return Err(MetaError::Invalid {
                    reason: format!("pipeline {name}: assignment range {i} is empty or overlaps"),
                });
            }
            if !self.nodes.contains_key(&a.node) {
                return Err(MetaError::UnknownNode { id: a.node });
            }
            next_start = a.key_group_end;
        }
        Ok(())
    }

    /// Refuses what `node` says of pipeline `name` at `version` unless the pipeline is still
    /// at that version and placed on that node (anything else is stale: it was moved or changed).
    fn check_fresh(&self, name: &str, node: u64, version: u64) -> Result<(), MetaError> {
        let p = self.pipelines.get(name).ok_or_else(|| unknown(name))?;
        if p.version != version || !p.assignment.iter().any(|a| a.node == node) {
            return Err(MetaError::Invalid {
                reason: format!(
                    "pipeline {name}: a stale report from node {node} (version {version}; \
                     the pipeline is at version {} on nodes {:?})",
                    p.version,
                    p.assignment.iter().map(|a| a.node).collect::<Vec<_>>()
                ),
            });
        }
        Ok(())
    }

    /// Records checkpoint `id` that `node` completed: the whole checkpoint of a pipeline placed
    /// on one node; one part of a spread pipeline's, which completes when every node of the
    /// assignment has recorded its part of it.
    fn record_node_checkpoint(
        &mut self,
        name: &str,
        node: u64,
        id: u64,
        path: &str,
    ) -> Result<u64, MetaError> {
        let p = self.pipeline_mut(name)?;
        let nodes: std::collections::BTreeSet<u64> = p.assignment.iter().map(|a| a.node).collect();
        if nodes.len() < 2 {
            return self.record_checkpoint(name, id, path);
        }
        if p.checkpoints.last().is_some_and(|last| id <= last.id) {
            return Err(MetaError::Invalid {
                reason: format!(
                    "pipeline {name}: checkpoint {id} is not after the last complete one"
                ),
            });
        }
        let parts = p.pending_parts.entry(id).or_default();
        parts.insert(node, path.to_owned());
        if parts.len() < nodes.len() {
            while p.pending_parts.len() > PENDING_PARTS_KEPT {
                p.pending_parts.pop_first();
            }
            return Ok(p.version);
        }
        let stores: Vec<&str> = parts.values().map(String::as_str).collect();
        let path = stores.join("\n");
        p.pending_parts.retain(|pending, _| *pending > id);
        self.record_checkpoint(name, id, &path)
    }

    fn record_checkpoint(&mut self, name: &str, id: u64, path: &str) -> Result<u64, MetaError> {
        let p = self.pipeline_mut(name)?;
        if let Some(last) = p.checkpoints.last() {
            if id <= last.id {
                return Err(MetaError::Invalid {
                    reason: format!("pipeline {name}: checkpoint {id} is not after {}", last.id),
                });
            }
        }
        p.checkpoints.push(CheckpointRecord {
            id,
            path: path.to_owned(),
        });
        trim_front(&mut p.checkpoints, CHECKPOINTS_KEPT);
        Ok(p.version)
    }
}

fn unknown(name: &str) -> MetaError {
    MetaError::UnknownPipeline {
        name: name.to_owned(),
    }
}

fn trim_front<T>(v: &mut Vec<T>, keep: usize) {
    if v.len() > keep {
        let extra = v.len() - keep;
        v.drain(..extra);
    }
}

// ---- encoding -------------------------------------------------------------------------------

impl MetaCommand {
    /// Encodes the command (version byte first).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(COMMAND_VERSION);
        encode_command(&mut w, self);
        w.bytes
    }

    /// Decodes a command; never panics, and names the field and offset of what is wrong.
    pub fn decode(bytes: &[u8]) -> Result<MetaCommand, MetaError> {
        let mut r = Reader::new("metadata command", bytes);
        let version = r.u8("version")?;
        if !(OLDEST_VERSION..=COMMAND_VERSION).contains(&version) {
            return Err(r.error("version", "unknown version"));
        }
        let cmd = decode_command(&mut r, version)?;
        r.finish()?;
        Ok(cmd)
    }
}

fn encode_command(w: &mut Writer, cmd: &MetaCommand) {
    match cmd {
        MetaCommand::CreatePipeline {
            name,
            spec_yaml,
            options,
        } => {
            w.u8(1);
            w.str(name);
            w.str(spec_yaml);
            encode_options(w, options);
        }
        MetaCommand::UpdatePipeline {
            name,
            spec_yaml,
            options,
        } => {
            w.u8(2);
            w.str(name);
            w.str(spec_yaml);
            encode_options(w, options);
        }
        MetaCommand::SetDesired { name, desired } => {
            w.u8(3);
            w.str(name);
            w.u8(desired_tag(*desired));
        }
        MetaCommand::ReportActual {
            name,
            actual,
            failure,
        } => {
            w.u8(4);
            w.str(name);
            w.u8(actual_tag(*actual));
            w.opt_str(failure.as_deref());
        }
        MetaCommand::NodeReport { .. } | MetaCommand::NodeCheckpoint { .. } => {
            encode_node_command(w, cmd);
        }
        MetaCommand::DeletePipeline { name } => {
            w.u8(5);
            w.str(name);
        }
        MetaCommand::RecordCheckpoint { name, id, path } => {
            w.u8(7);
            w.str(name);
            w.u64(*id);
            w.str(path);
        }
        MetaCommand::RecordSavepoint {
            name,
            path,
            checkpoint_id,
        } => {
            w.u8(8);
            w.str(name);
            w.str(path);
            w.u64(*checkpoint_id);
        }
        MetaCommand::CreateToken { .. } | MetaCommand::RevokeToken { .. } => {
            encode_token_command(w, cmd);
        }
        MetaCommand::SetAssignment { .. }
        | MetaCommand::Rescale { .. }
        | MetaCommand::AddNode { .. }
        | MetaCommand::RemoveNode { .. } => encode_placement_command(w, cmd),
    }
}

/// Where pipelines run and which nodes there are: assignments and members.
fn encode_placement_command(w: &mut Writer, cmd: &MetaCommand) {
    match cmd {
        MetaCommand::SetAssignment { name, assignment } => {
            w.u8(6);
            w.str(name);
            encode_assignment(w, assignment);
        }
        MetaCommand::Rescale {
            name,
            options,
            assignment,
        } => {
            w.u8(15);
            w.str(name);
            encode_options(w, options);
            encode_assignment(w, assignment);
        }
        MetaCommand::AddNode { id, addr } => {
            w.u8(9);
            w.u64(*id);
            w.str(addr);
        }
        MetaCommand::RemoveNode { id } => {
            w.u8(10);
            w.u64(*id);
        }
        _ => {}
    }
}

/// What a node says of a pipeline it runs: its state, or a checkpoint it completed.
fn encode_node_command(w: &mut Writer, cmd: &MetaCommand) {
    match cmd {
        MetaCommand::NodeReport {
            node,
            version,
            name,
            actual,
            failure,
        } => {
            w.u8(11);
            w.u64(*node);
            w.u64(*version);
            w.str(name);
            w.u8(actual_tag(*actual));
            w.opt_str(failure.as_deref());
        }
        MetaCommand::NodeCheckpoint {
            node,
            version,
            name,
            id,
            path,
        } => {
            w.u8(14);
            w.u64(*node);
            w.u64(*version);
            w.str(name);
            w.u64(*id);
            w.str(path);
        }
        _ => {}
    }
}

fn encode_token_command(w: &mut Writer, cmd: &MetaCommand) {
    match cmd {
        MetaCommand::CreateToken { id, token } => {
            w.u8(12);
            tokens::encode_token(w, id, token);
        }
        MetaCommand::RevokeToken { id } => {
            w.u8(13);
            w.str(id);
        }
        _ => {}
    }
}

/// Decodes the body of placement command `tag` (see [`encode_placement_command`]).
fn decode_placement_command(
    r: &mut Reader<'_>,
    tag: u8,
    version: u8,
) -> Result<MetaCommand, MetaError> {
    Ok(match tag {
        6 => MetaCommand::SetAssignment {
            name: r.string("name")?,
            assignment: decode_assignment(r)?,
        },
        9 => MetaCommand::AddNode {
            id: r.u64("id")?,
            addr: r.string("addr")?,
        },
        10 => MetaCommand::RemoveNode { id: r.u64("id")? },
        15 if version >= 5 => MetaCommand::Rescale {
            name: r.string("name")?,
            options: decode_options(r, version)?,
            assignment: decode_assignment(r)?,
        },
        _ => return Err(r.error("command", "unknown command tag")),
    })
}

/// Decodes a command body written at format `version`.
fn decode_command(r: &mut Reader<'_>, version: u8) -> Result<MetaCommand, MetaError> {
    let cmd = match r.u8("command")? {
        tag @ (6 | 9 | 10 | 15) => decode_placement_command(r, tag, version)?,
        1 => MetaCommand::CreatePipeline {
            name: r.string("name")?,
            spec_yaml: r.string("spec_yaml")?,
            options: decode_options(r, version)?,
        },
        2 => MetaCommand::UpdatePipeline {
            name: r.string("name")?,
            spec_yaml: r.string("spec_yaml")?,
            options: decode_options(r, version)?,
        },
        3 => MetaCommand::SetDesired {
            name: r.string("name")?,
            desired: decode_desired(r)?,
        },
        4 => MetaCommand::ReportActual {
            name: r.string("name")?,
            actual: decode_actual(r)?,
            failure: r.opt_string("failure")?,
        },
        5 => MetaCommand::DeletePipeline {
            name: r.string("name")?,
        },
        7 => MetaCommand::RecordCheckpoint {
            name: r.string("name")?,
            id: r.u64("id")?,
            path: r.string("path")?,
        },
        8 => MetaCommand::RecordSavepoint {
            name: r.string("name")?,
            path: r.string("path")?,
            checkpoint_id: r.u64("checkpoint_id")?,
        },
        11 => MetaCommand::NodeReport {
            node: r.u64("node")?,
            version: r.u64("version")?,
            name: r.string("name")?,
            actual: decode_actual(r)?,
            failure: r.opt_string("failure")?,
        },
        14 if version >= 4 => MetaCommand::NodeCheckpoint {
            node: r.u64("node")?,
            version: r.u64("version")?,
            name: r.string("name")?,
            id: r.u64("id")?,
            path: r.string("path")?,
        },
        12 if version >= 3 => {
            let (id, token) = tokens::decode_token(r)?;
            MetaCommand::CreateToken { id, token }
        }
        13 if version >= 3 => MetaCommand::RevokeToken {
            id: r.string("token id")?,
        },
        _ => return Err(r.error("command", "unknown command tag")),
    };
    Ok(cmd)
}

fn encode_options(w: &mut Writer, o: &RunOptions) {
    w.opt_u64(o.checkpoint_interval_ms);
    w.opt_u64(o.cores.map(u64::from));
    w.opt_str(o.from_savepoint.as_deref());
    // Version 2.
    w.opt_u64(o.checkpoint_timeout_ms);
    w.opt_u64(o.checkpoints_retained.map(u64::from));
    w.opt_u64(o.checkpoint_deltas.map(u64::from));
}

/// Decodes run options written at format `version` (version 1 had the first three only).
fn decode_options(r: &mut Reader<'_>, version: u8) -> Result<RunOptions, MetaError> {
    let mut options = RunOptions {
        checkpoint_interval_ms: r.opt_u64("checkpoint_interval_ms")?,
        cores: opt_u32(r, "cores")?,
        from_savepoint: r.opt_string("from_savepoint")?,
        ..RunOptions::default()
    };
    if version >= 2 {
        options.checkpoint_timeout_ms = r.opt_u64("checkpoint_timeout_ms")?;
        options.checkpoints_retained = opt_u32(r, "checkpoints_retained")?;
        options.checkpoint_deltas = opt_u32(r, "checkpoint_deltas")?;
    }
    Ok(options)
}

/// An optional u32 written as an optional u64.
fn opt_u32(r: &mut Reader<'_>, field: &'static str) -> Result<Option<u32>, MetaError> {
    match r.opt_u64(field)? {
        None => Ok(None),
        Some(v) => u32::try_from(v)
            .map(Some)
            .map_err(|_| r.error(field, "over u32")),
    }
}

fn desired_tag(d: DesiredState) -> u8 {
    match d {
        DesiredState::Running => 0,
        DesiredState::Paused => 1,
        DesiredState::Stopped => 2,
    }
}

fn decode_desired(r: &mut Reader<'_>) -> Result<DesiredState, MetaError> {
    match r.u8("desired")? {
        0 => Ok(DesiredState::Running),
        1 => Ok(DesiredState::Paused),
        2 => Ok(DesiredState::Stopped),
        _ => Err(r.error("desired", "unknown state")),
    }
}

fn actual_tag(a: ActualState) -> u8 {
    match a {
        ActualState::Created => 0,
        ActualState::Running => 1,
        ActualState::Paused => 2,
        ActualState::Stopping => 3,
        ActualState::Finished => 4,
        ActualState::Failed => 5,
    }
}

fn decode_actual(r: &mut Reader<'_>) -> Result<ActualState, MetaError> {
    match r.u8("actual")? {
        0 => Ok(ActualState::Created),
        1 => Ok(ActualState::Running),
        2 => Ok(ActualState::Paused),
        3 => Ok(ActualState::Stopping),
        4 => Ok(ActualState::Finished),
        5 => Ok(ActualState::Failed),
        _ => Err(r.error("actual", "unknown state")),
    }
}

fn encode_assignment(w: &mut Writer, a: &[Assignment]) {
    w.u32(u32::try_from(a.len()).expect("assignment over u32 ranges"));
    for x in a {
        w.u32(x.key_group_start);
        w.u32(x.key_group_end);
        w.u64(x.node);
        w.u32(x.core);
    }
}

fn decode_assignment(r: &mut Reader<'_>) -> Result<Vec<Assignment>, MetaError> {
    let n = r.count("assignment", 20)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(Assignment {
            key_group_start: r.u32("key_group_start")?,
            key_group_end: r.u32("key_group_end")?,
            node: r.u64("node")?,
            core: r.u32("core")?,
        });
    }
    Ok(out)
}

impl MetaState {
    /// Encodes the whole state (version byte first), as stored in raft snapshots.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(STATE_VERSION);
        w.u32(u32::try_from(self.nodes.len()).expect("node count over u32"));
        for (id, n) in &self.nodes {
            w.u64(*id);
            w.str(&n.addr);
            w.u64(n.joined_at_index);
        }
        w.u32(u32::try_from(self.pipelines.len()).expect("pipeline count over u32"));
        for (name, p) in &self.pipelines {
            w.str(name);
            encode_pipeline(&mut w, p);
        }
        // Version 3.
        w.u32(u32::try_from(self.tokens.len()).expect("token count over u32"));
        for (id, token) in &self.tokens {
            tokens::encode_token(&mut w, id, token);
        }
        w.bytes
    }

    /// Decodes a state snapshot; never panics, and names the field and offset of what is wrong.
    pub fn decode(bytes: &[u8]) -> Result<MetaState, MetaError> {
        let mut r = Reader::new("metadata snapshot", bytes);
        let version = r.u8("version")?;
        if !(OLDEST_VERSION..=STATE_VERSION).contains(&version) {
            return Err(r.error("version", "unknown version"));
        }
        let mut state = MetaState::default();
        for _ in 0..r.count("nodes", 20)? {
            let id = r.u64("node id")?;
            let info = NodeInfo {
                addr: r.string("addr")?,
                joined_at_index: r.u64("joined_at")?,
            };
            if state.nodes.insert(id, info).is_some() {
                return Err(r.error("node id", "duplicate node"));
            }
        }
        for _ in 0..r.count("pipelines", 30)? {
            let name = r.string("pipeline name")?;
            let p = decode_pipeline(&mut r, version)?;
            if state.pipelines.insert(name, p).is_some() {
                return Err(r.error("pipeline name", "duplicate pipeline"));
            }
        }
        if version >= 3 {
            for _ in 0..r.count("tokens", 50)? {
                let (id, token) = tokens::decode_token(&mut r)?;
                if state.tokens.insert(id, token).is_some() {
                    return Err(r.error("token id", "duplicate token"));
                }
            }
        }
        r.finish()?;
        Ok(state)
    }
}

fn encode_pipeline(w: &mut Writer, p: &PipelineMeta) {
    w.str(&p.spec_yaml);
    encode_options(w, &p.options);
    w.u64(p.version);
    w.u8(desired_tag(p.desired));
    w.u8(actual_tag(p.actual));
    w.opt_str(p.failure.as_deref());
    encode_assignment(w, &p.assignment);
    w.u32(u32::try_from(p.checkpoints.len()).expect("checkpoints over u32"));
    for c in &p.checkpoints {
        w.u64(c.id);
        w.str(&c.path);
    }
    w.u32(u32::try_from(p.savepoints.len()).expect("savepoints over u32"));
    for s in &p.savepoints {
        w.str(&s.path);
        w.u64(s.checkpoint_id);
        w.u64(s.recorded_at_index);
    }
    // Version 2.
    w.u64(p.created_at_index);
    // Version 4.
    w.u32(u32::try_from(p.pending_parts.len()).expect("pending checkpoints over u32"));
    for (id, parts) in &p.pending_parts {
        w.u64(*id);
        w.u32(u32::try_from(parts.len()).expect("parts over u32"));
        for (node, path) in parts {
            w.u64(*node);
            w.str(path);
        }
    }
}

/// Decodes a pipeline written at snapshot format `format`.
fn decode_pipeline(r: &mut Reader<'_>, format: u8) -> Result<PipelineMeta, MetaError> {
    let spec_yaml = r.string("spec_yaml")?;
    let options = decode_options(r, format)?;
    let version = r.u64("version")?;
    let desired = decode_desired(r)?;
    let actual = decode_actual(r)?;
    let failure = r.opt_string("failure")?;
    let assignment = decode_assignment(r)?;
    let mut checkpoints = Vec::new();
    for _ in 0..r.count("checkpoints", 12)? {
        checkpoints.push(CheckpointRecord {
            id: r.u64("checkpoint id")?,
            path: r.string("path")?,
        });
    }
    let mut savepoints = Vec::new();
    for _ in 0..r.count("savepoints", 20)? {
        savepoints.push(SavepointRecord {
            path: r.string("path")?,
            checkpoint_id: r.u64("checkpoint_id")?,
            recorded_at_index: r.u64("recorded_at_index")?,
        });
    }
    let created_at_index = match format {
        1 => 0,
        _ => r.u64("created_at_index")?,
    };
    let mut pending_parts = BTreeMap::new();
    if format >= 4 {
        for _ in 0..r.count("pending checkpoints", 12)? {
            let id = r.u64("pending checkpoint id")?;
            let mut parts = BTreeMap::new();
            for _ in 0..r.count("parts", 12)? {
                parts.insert(r.u64("part node")?, r.string("part path")?);
            }
            pending_parts.insert(id, parts);
        }
    }
    Ok(PipelineMeta {
        spec_yaml,
        options,
        version,
        desired,
        actual,
        failure,
        assignment,
        checkpoints,
        savepoints,
        created_at_index,
        pending_parts,
    })
}

#[cfg(test)]
mod tests;

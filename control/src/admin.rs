//! The AdminService: `wirectl`'s verbs over this node's [`MetaHandle`].
//!
//! Any member answers. Writes go through the leader: a follower forwards them (once) to the
//! leader's AdminService, or answers UNAVAILABLE naming the leader when it cannot. Reads are
//! linearizable (raft read index). Requests are checked before anything is proposed, and a
//! command the state machine refuses changes nothing, so an error leaves the metadata as it
//! was. Runs on the process's tokio runtime.
//!
//! A request about what a running pipeline does (`pipeline get`'s counters, checkpoints and
//! savepoints on demand) is served by the node that hosts the pipeline (its placement in the
//! metadata): another member forwards it there once (see [`hosted`]).

pub(crate) mod convert;
mod forward;
mod hosted;
mod scale;

use std::time::Duration;

use tonic::{Request, Response, Status};

use crate::node::config::check_host_port;
use crate::proto::admin::admin_service_server::{AdminService, AdminServiceServer};
use crate::proto::admin::{
    AddNodeRequest, AddNodeResponse, ClusterStatusRequest, ClusterStatusResponse, CompactRequest,
    CompactResponse, CreateBackupRequest, CreateBackupResponse, CreatePipelineRequest,
    CreateSavepointRequest, CreateSavepointResponse, CreateTokenRequest, CreateTokenResponse,
    DeletePipelineResponse, ListCheckpointsResponse, ListPipelinesRequest, ListPipelinesResponse,
    ListTokensRequest, ListTokensResponse, Pipeline, PipelineRef, RemoveNodeRequest,
    RemoveNodeResponse, RevokeTokenRequest, RevokeTokenResponse, ScalePipelineRequest,
    TriggerCheckpointResponse,
};
use crate::raft::{ActualState, DesiredState, MetaCommand, MetaError, MetaHandle, MetaState};
use crate::supervisor::LocalJobs;
use crate::transport::GrpcTransport;
use forward::{is_for_host, is_forwarded, Leader};
use hosted::Hosting;

pub use forward::FORWARDED;

/// How long a write reaching a node that knows no leader waits for one to be elected.
const LEADER_WAIT: Duration = Duration::from_secs(3);

/// Calls `$method` on the leader with `$message` as a forwarded request.
macro_rules! forward {
    ($leader:expr, $method:ident, $message:expr) => {{
        let mut leader = $leader;
        let request = leader.request($message);
        let answer = leader.client.$method(request).await;
        leader.answer(answer)
    }};
}

/// The AdminService of one node.
pub struct AdminServer {
    node_id: u64,
    meta: MetaHandle,
    transport: GrpcTransport,
    /// The pipelines running on this node.
    jobs: LocalJobs,
}

/// Where a request is served.
enum Route<T> {
    /// Here, with this result.
    Here(T),
    /// By the leader.
    Leader(Box<Leader>),
}

impl AdminServer {
    /// The tonic service for node `node_id`, which runs `jobs`.
    pub fn service(
        node_id: u64,
        meta: MetaHandle,
        transport: GrpcTransport,
        jobs: LocalJobs,
    ) -> AdminServiceServer<AdminServer> {
        AdminServiceServer::new(AdminServer {
            node_id,
            meta,
            transport,
            jobs,
        })
        .max_decoding_message_size(crate::transport::MESSAGE_BYTES_MAX)
        .max_encoding_message_size(crate::transport::MESSAGE_BYTES_MAX)
    }

    /// The metadata after a linearizable read, or the leader to ask instead.
    async fn state(&self, forwarded: bool) -> Result<Route<MetaState>, Status> {
        match self.meta.read(true).await {
            Ok(state) => Ok(Route::Here(state)),
            Err(err) => Ok(Route::Leader(Box::new(
                self.not_here(err, forwarded).await?,
            ))),
        }
    }

    /// Proposes `command`; `Leader` when this node is not the leader.
    async fn propose(&self, command: MetaCommand, forwarded: bool) -> Result<Route<()>, Status> {
        match self.meta.propose(command).await {
            Ok(_) => Ok(Route::Here(())),
            Err(err) => Ok(Route::Leader(Box::new(
                self.not_here(err, forwarded).await?,
            ))),
        }
    }

    /// The leader for a `NotLeader` error; any other error as its status.
    async fn not_here(&self, err: MetaError, forwarded: bool) -> Result<Leader, Status> {
        match err {
            MetaError::NotLeader { leader: None } => {
                let leader = self.await_leader().await;
                forward::leader(self.node_id, &self.transport.dialer(), leader, forwarded).await
            }
            MetaError::NotLeader { leader } => {
                forward::leader(self.node_id, &self.transport.dialer(), leader, forwarded).await
            }
            other => Err(convert::status(&other)),
        }
    }

    /// Another node once one is elected, within [`LEADER_WAIT`] (an election takes 1 to 2 s);
    /// `None` when none is, or when this node became the leader (the caller answers
    /// UNAVAILABLE and the client retries).
    async fn await_leader(&self) -> Option<(u64, String)> {
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let Ok(status) = self.meta.status().await else {
                return None;
            };
            match status.leader.zip(status.leader_addr) {
                Some((id, _)) if id == self.node_id => return None,
                Some(leader) => return Some(leader),
                None => {}
            }
        }
        None
    }

    /// The state on the leader when this node is it; otherwise the leader to forward to.
    async fn leader_state(&self, forwarded: bool) -> Result<Route<MetaState>, Status> {
        let status = self
            .meta
            .status()
            .await
            .map_err(|err| convert::status(&err))?;
        if status.leader != Some(self.node_id) {
            let leader = status.leader.zip(status.leader_addr);
            return Ok(Route::Leader(Box::new(
                forward::leader(self.node_id, &self.transport.dialer(), leader, forwarded).await?,
            )));
        }
        self.state(forwarded).await
    }

    /// Pipeline `name` as recorded here (after a write this node applied).
    async fn pipeline_here(&self, name: &str) -> Result<Pipeline, Status> {
        let state = self
            .meta
            .read(false)
            .await
            .map_err(|err| convert::status(&err))?;
        let meta = state
            .pipelines
            .get(name)
            .ok_or_else(|| convert::status(&MetaError::UnknownPipeline { name: name.into() }))?;
        Ok(convert::pipeline(name, meta, true))
    }

    async fn set_desired(
        &self,
        request: Request<PipelineRef>,
        desired: DesiredState,
    ) -> Result<Response<Pipeline>, Status> {
        let forwarded = is_forwarded(&request);
        let name = request.into_inner().name;
        let state = match self.leader_state(forwarded).await? {
            Route::Here(state) => state,
            Route::Leader(leader) => return forward_desired(leader, name, desired).await,
        };
        let pipeline = find(&state, &name)?;
        check_transition(&name, pipeline, desired)?;
        let command = MetaCommand::SetDesired {
            name: name.clone(),
            desired,
        };
        match self.propose(command, forwarded).await? {
            Route::Here(()) => Ok(Response::new(self.pipeline_here(&name).await?)),
            Route::Leader(leader) => forward_desired(leader, name, desired).await,
        }
    }
}

async fn forward_desired(
    leader: Box<Leader>,
    name: String,
    desired: DesiredState,
) -> Result<Response<Pipeline>, Status> {
    let message = PipelineRef { name };
    match desired {
        DesiredState::Running => forward!(leader, resume_pipeline, message),
        DesiredState::Paused => forward!(leader, pause_pipeline, message),
        DesiredState::Stopped => forward!(leader, stop_pipeline, message),
    }
}

fn find<'a>(state: &'a MetaState, name: &str) -> Result<&'a crate::raft::PipelineMeta, Status> {
    state
        .pipelines
        .get(name)
        .ok_or_else(|| convert::status(&MetaError::UnknownPipeline { name: name.into() }))
}

/// Whether a pipeline may be asked for `desired` now (asking again for the same is fine).
fn check_transition(
    name: &str,
    pipeline: &crate::raft::PipelineMeta,
    desired: DesiredState,
) -> Result<(), Status> {
    if pipeline.desired == desired {
        return Ok(());
    }
    check_live(name, pipeline)
}

/// A pipeline that ended or was stopped takes no more requests but `delete`.
fn check_live(name: &str, pipeline: &crate::raft::PipelineMeta) -> Result<(), Status> {
    if matches!(pipeline.actual, ActualState::Finished | ActualState::Failed) {
        return Err(Status::failed_precondition(format!(
            "pipeline `{name}` has {}; delete it and create it again",
            convert::actual_name(pipeline.actual)
        )));
    }
    if pipeline.desired == DesiredState::Stopped {
        return Err(Status::failed_precondition(format!(
            "pipeline `{name}` was stopped; delete it and create it again"
        )));
    }
    Ok(())
}

#[tonic::async_trait]
impl AdminService for AdminServer {
    async fn cluster_status(
        &self,
        request: Request<ClusterStatusRequest>,
    ) -> Result<Response<ClusterStatusResponse>, Status> {
        let forwarded = is_forwarded(&request);
        status::cluster_status(self, forwarded)
            .await
            .map(Response::new)
    }

    async fn add_node(
        &self,
        request: Request<AddNodeRequest>,
    ) -> Result<Response<AddNodeResponse>, Status> {
        let forwarded = is_forwarded(&request);
        let joining = match request.extensions().get::<crate::auth::Identity>() {
            Some(crate::auth::Identity::Joining { address }) => Some(address.clone()),
            _ => None,
        };
        let message = request.into_inner();
        if joining.is_some_and(|address| address != message.address) {
            return Err(Status::permission_denied(
                "a joining node may only ask to be added at its own address",
            ));
        }
        check_host_port(&message.address)
            .map_err(|err| Status::invalid_argument(format!("node {}: {err}", message.id)))?;
        let state = match self.leader_state(forwarded).await? {
            Route::Here(state) => state,
            Route::Leader(leader) => return forward!(leader, add_node, message),
        };
        state
            .check_add_node(message.id, &message.address)
            .map_err(|err| convert::status(&err))?;
        if let Some((id, _)) = state.nodes.iter().find(|(_, n)| n.addr == message.address) {
            return Err(Status::already_exists(format!(
                "address {} is node {id}'s already",
                message.address
            )));
        }
        self.transport.add_peer(message.id, &message.address);
        match self
            .meta
            .add_node(message.id, message.address.clone())
            .await
        {
            Ok(_) => {}
            Err(err) => match self.not_here(err, forwarded).await {
                Ok(leader) => return forward!(leader, add_node, message),
                Err(status) => return Err(status),
            },
        }
        let status = status::cluster_status(self, forwarded).await?;
        Ok(Response::new(AddNodeResponse {
            members: status.members,
        }))
    }

    async fn remove_node(
        &self,
        request: Request<RemoveNodeRequest>,
    ) -> Result<Response<RemoveNodeResponse>, Status> {
        let forwarded = is_forwarded(&request);
        let message = request.into_inner();
        let state = match self.leader_state(forwarded).await? {
            Route::Here(state) => state,
            Route::Leader(leader) => return forward!(leader, remove_node, message),
        };
        state
            .check_remove_node(message.id)
            .map_err(|err| convert::status(&err))?;
        if state.nodes.len() == 1 {
            return Err(Status::failed_precondition(format!(
                "node {} is the only member; a cluster cannot remove its last member",
                message.id
            )));
        }
        match self.meta.remove_node(message.id).await {
            Ok(_) => Ok(Response::new(RemoveNodeResponse {})),
            Err(err) => {
                let leader = self.not_here(err, forwarded).await?;
                forward!(leader, remove_node, message)
            }
        }
    }

    async fn create_pipeline(
        &self,
        request: Request<CreatePipelineRequest>,
    ) -> Result<Response<Pipeline>, Status> {
        let forwarded = is_forwarded(&request);
        let message = request.into_inner();
        let checked = crate::check::check_text(&message.file, &message.spec)
            .map_err(|err| Status::invalid_argument(err.to_string()))?;
        // The metadata keeps the text without its file name; it must read as the same language.
        if !wire_core::frontend::spec::stored_language_agrees(&message.file, &message.spec) {
            return Err(Status::invalid_argument(format!(
                "{}: cannot tell this pipeline's language from its text; start a SQL file \
                 with a statement (CREATE, INSERT, SET) and a YAML file with a key",
                message.file
            )));
        }
        let name = checked.spec.name.clone();
        let options = convert::run_options(message.options.as_ref());
        convert::check_options(&options)?;
        let command = MetaCommand::CreatePipeline {
            name: name.clone(),
            spec_yaml: message.spec.clone(),
            options,
        };
        match self.propose(command, forwarded).await? {
            Route::Here(()) => Ok(Response::new(self.pipeline_here(&name).await?)),
            Route::Leader(leader) => forward!(leader, create_pipeline, message),
        }
    }

    async fn list_pipelines(
        &self,
        request: Request<ListPipelinesRequest>,
    ) -> Result<Response<ListPipelinesResponse>, Status> {
        let forwarded = is_forwarded(&request);
        let state = match self.state(forwarded).await? {
            Route::Here(state) => state,
            Route::Leader(leader) => {
                return forward!(leader, list_pipelines, ListPipelinesRequest {})
            }
        };
        let pipelines = state
            .pipelines
            .iter()
            .map(|(name, meta)| convert::pipeline(name, meta, false))
            .collect();
        Ok(Response::new(ListPipelinesResponse { pipelines }))
    }

    async fn get_pipeline(
        &self,
        request: Request<PipelineRef>,
    ) -> Result<Response<Pipeline>, Status> {
        let hop = is_for_host(&request);
        let forwarded = is_forwarded(&request) || hop;
        let message = request.into_inner();
        let state = match self.state(forwarded).await? {
            Route::Here(state) => state,
            Route::Leader(leader) => return forward!(leader, get_pipeline, message),
        };
        let pipeline = find(&state, &message.name)?;
        let mut answer = convert::pipeline(&message.name, pipeline, true);
        (answer.operators, answer.ingest) = self.live(&state, &message.name, hop).await;
        if let Ok(status) = self.meta.status().await {
            answer.waiting = crate::failover::waiting(&status, &state, pipeline);
        }
        Ok(Response::new(answer))
    }

    async fn pause_pipeline(
        &self,
        request: Request<PipelineRef>,
    ) -> Result<Response<Pipeline>, Status> {
        self.set_desired(request, DesiredState::Paused).await
    }

    async fn resume_pipeline(
        &self,
        request: Request<PipelineRef>,
    ) -> Result<Response<Pipeline>, Status> {
        self.set_desired(request, DesiredState::Running).await
    }

    async fn stop_pipeline(
        &self,
        request: Request<PipelineRef>,
    ) -> Result<Response<Pipeline>, Status> {
        self.set_desired(request, DesiredState::Stopped).await
    }

    async fn delete_pipeline(
        &self,
        request: Request<PipelineRef>,
    ) -> Result<Response<DeletePipelineResponse>, Status> {
        let forwarded = is_forwarded(&request);
        let message = request.into_inner();
        let state = match self.leader_state(forwarded).await? {
            Route::Here(state) => state,
            Route::Leader(leader) => return forward!(leader, delete_pipeline, message),
        };
        let pipeline = find(&state, &message.name)?;
        if matches!(
            pipeline.actual,
            ActualState::Running | ActualState::Paused | ActualState::Stopping
        ) {
            return Err(Status::failed_precondition(format!(
                "pipeline `{}` is {}; stop it first (`wirectl pipeline stop {}`)",
                message.name,
                convert::actual_name(pipeline.actual),
                message.name
            )));
        }
        let command = MetaCommand::DeletePipeline {
            name: message.name.clone(),
        };
        match self.propose(command, forwarded).await? {
            Route::Here(()) => Ok(Response::new(DeletePipelineResponse {})),
            Route::Leader(leader) => forward!(leader, delete_pipeline, message),
        }
    }

    async fn scale_pipeline(
        &self,
        request: Request<ScalePipelineRequest>,
    ) -> Result<Response<Pipeline>, Status> {
        let forwarded = is_forwarded(&request);
        let message = request.into_inner();
        if message.cores == 0 {
            return Err(Status::invalid_argument(
                "cores: 0 is not a core count (use 1 or more)",
            ));
        }
        let state = match self.leader_state(forwarded).await? {
            Route::Here(state) => state,
            Route::Leader(leader) => return forward!(leader, scale_pipeline, message),
        };
        let pipeline = find(&state, &message.name)?;
        check_live(&message.name, pipeline)?;
        let command = if crate::spread::is_spread(pipeline) {
            let (name, cores) = (&message.name, message.cores);
            self.rescale_spread(&state, name, pipeline, cores).await?
        } else {
            let mut options = pipeline.options.clone();
            options.cores = Some(message.cores);
            MetaCommand::UpdatePipeline {
                name: message.name.clone(),
                spec_yaml: pipeline.spec_yaml.clone(),
                options,
            }
        };
        match self.propose(command, forwarded).await? {
            Route::Here(()) => Ok(Response::new(self.pipeline_here(&message.name).await?)),
            Route::Leader(leader) => forward!(leader, scale_pipeline, message),
        }
    }

    async fn trigger_checkpoint(
        &self,
        request: Request<PipelineRef>,
    ) -> Result<Response<TriggerCheckpointResponse>, Status> {
        let hop = is_for_host(&request);
        let forwarded = is_forwarded(&request) || hop;
        let message = request.into_inner();
        let state = match self.state(forwarded).await? {
            Route::Here(state) => state,
            Route::Leader(leader) => return forward!(leader, trigger_checkpoint, message),
        };
        let pipeline = find(&state, &message.name)?;
        hosted::check_on_demand(&message.name, pipeline, "checkpoint")?;
        if crate::spread::checkpoints_in_parts(pipeline) {
            let taken = self.trigger_spread(&state, &message.name, hop).await;
            return taken.map(Response::new);
        }
        match self.host(&state, &message.name, hop).await? {
            Hosting::Here => self.trigger_here(&message.name).await.map(Response::new),
            Hosting::Node(host) => forward!(host, trigger_checkpoint, message),
        }
    }

    async fn list_checkpoints(
        &self,
        request: Request<PipelineRef>,
    ) -> Result<Response<ListCheckpointsResponse>, Status> {
        let forwarded = is_forwarded(&request);
        let message = request.into_inner();
        let state = match self.state(forwarded).await? {
            Route::Here(state) => state,
            Route::Leader(leader) => return forward!(leader, list_checkpoints, message),
        };
        let pipeline = find(&state, &message.name)?;
        Ok(Response::new(ListCheckpointsResponse {
            checkpoints: convert::checkpoints(pipeline),
        }))
    }

    async fn create_savepoint(
        &self,
        request: Request<CreateSavepointRequest>,
    ) -> Result<Response<CreateSavepointResponse>, Status> {
        let hop = is_for_host(&request);
        let forwarded = is_forwarded(&request) || hop;
        let message = request.into_inner();
        hosted::check_savepoint_dir(&message.dir)?;
        let state = match self.state(forwarded).await? {
            Route::Here(state) => state,
            Route::Leader(leader) => return forward!(leader, create_savepoint, message),
        };
        let pipeline = find(&state, &message.name)?;
        hosted::check_on_demand(&message.name, pipeline, "savepoint")?;
        hosted::check_savepoint_whole(&message.name, pipeline)?;
        match self.host(&state, &message.name, hop).await? {
            Hosting::Here => self
                .savepoint_here(&message.name, &message.dir)
                .await
                .map(Response::new),
            Hosting::Node(host) => forward!(host, create_savepoint, message),
        }
    }

    async fn compact(
        &self,
        _request: Request<CompactRequest>,
    ) -> Result<Response<CompactResponse>, Status> {
        let snapshot_index = self
            .meta
            .compact()
            .await
            .map_err(|err| convert::status(&err))?;
        Ok(Response::new(CompactResponse {
            node_id: self.node_id,
            snapshot_index,
        }))
    }

    async fn create_backup(
        &self,
        request: Request<CreateBackupRequest>,
    ) -> Result<Response<CreateBackupResponse>, Status> {
        let forwarded = is_forwarded(&request);
        if let Route::Leader(leader) = self.state(forwarded).await? {
            return forward!(leader, create_backup, CreateBackupRequest {});
        }
        status::backup(self).await.map(Response::new)
    }

    async fn create_token(
        &self,
        request: Request<CreateTokenRequest>,
    ) -> Result<Response<CreateTokenResponse>, Status> {
        self.create_token_here(request).await
    }

    async fn list_tokens(
        &self,
        request: Request<ListTokensRequest>,
    ) -> Result<Response<ListTokensResponse>, Status> {
        self.list_tokens_here(request).await
    }

    async fn revoke_token(
        &self,
        request: Request<RevokeTokenRequest>,
    ) -> Result<Response<RevokeTokenResponse>, Status> {
        self.revoke_token_here(request).await
    }
}

mod status;
mod tokens;

//! One function per verb: build the request, call the member, print the answer.

use std::path::Path;

use wire_control::proto::admin::{
    AddNodeRequest, ClusterStatusRequest, CompactRequest, CreateBackupRequest,
    CreatePipelineRequest, CreateSavepointRequest, CreateTokenRequest, ListPipelinesRequest,
    ListTokensRequest, PipelineOptions, PipelineRef, RemoveNodeRequest, RevokeTokenRequest,
    ScalePipelineRequest,
};

use crate::client::{connect, status_message, Bearer, Client};
use crate::output::Printer;
use crate::{
    BackupCmd, CheckpointCmd, Cli, ClusterCmd, Command, NodeCmd, PipelineCmd, PipelineOpts,
    SavepointCmd, TokenCmd,
};

/// The verbs that do not talk to the AdminService: a restore works offline, on a stopped
/// node's data directory; `top` reads the nodes' metrics endpoints.
async fn without_admin(cli: &Cli) -> Option<Result<(), String>> {
    match &cli.command {
        Command::Backup(BackupCmd::Restore {
            file,
            data_dir,
            node_id,
        }) => Some(restore(file, data_dir, *node_id)),
        Command::Top(args) => Some(top(cli, args).await),
        _ => None,
    }
}

/// `wirectl top` with the TLS settings and token of `cli`.
async fn top(cli: &Cli, args: &crate::TopArgs) -> Result<(), String> {
    let identity = cli.cert.as_deref().zip(cli.key.as_deref());
    let scraper = crate::top::Scraper::new(cli.ca.as_deref(), identity, cli.token.as_deref())?;
    crate::top::run(args, cli.output, &scraper).await
}

/// Runs the command `cli` names.
pub async fn run(cli: &Cli, endpoint: &str) -> Result<(), String> {
    if let Some(done) = without_admin(cli).await {
        return done;
    }
    let out = Printer::new(cli.output);
    let bearer = Bearer::new(cli.token.as_deref())?;
    let mut client = connect(endpoint, tls(cli)?, bearer).await?;
    let failed = |status: tonic::Status| status_message(endpoint, &status);
    match &cli.command {
        Command::Cluster(ClusterCmd::Status) => {
            let status = client.cluster_status(ClusterStatusRequest {}).await;
            out.cluster(&status.map_err(failed)?.into_inner());
            Ok(())
        }
        Command::Cluster(ClusterCmd::Compact) => {
            let answer = client.compact(CompactRequest {}).await.map_err(failed)?;
            let answer = answer.into_inner();
            out.done(&format!(
                "node {} compacted its raft log up to index {}",
                answer.node_id, answer.snapshot_index
            ));
            Ok(())
        }
        Command::Node(cmd) => node(&mut client, cmd, &out).await.map_err(failed),
        Command::Pipeline(PipelineCmd::Create { file, options }) => {
            let request = create_request(file, options)?;
            let answer = client.create_pipeline(request).await.map_err(failed)?;
            out.pipeline(&answer.into_inner());
            Ok(())
        }
        Command::Pipeline(cmd) => pipeline(&mut client, cmd, &out).await.map_err(failed),
        Command::Checkpoint(cmd) => checkpoint(&mut client, cmd, &out).await.map_err(failed),
        Command::Savepoint(SavepointCmd::Create { name, dir }) => {
            let request = CreateSavepointRequest {
                name: name.clone(),
                dir: dir.display().to_string(),
            };
            let answer = client.create_savepoint(request).await.map_err(failed)?;
            out.savepoint(&answer.into_inner());
            Ok(())
        }
        Command::Backup(BackupCmd::Create { out: path }) => {
            let answer = client.create_backup(CreateBackupRequest {}).await;
            let backup = answer.map_err(failed)?.into_inner();
            std::fs::write(path, &backup.snapshot)
                .map_err(|err| format!("cannot write the backup to {}: {err}", path.display()))?;
            out.backup(path, &backup);
            Ok(())
        }
        Command::Backup(BackupCmd::Restore { .. }) | Command::Top(_) => {
            unreachable!("handled by without_admin")
        }
        Command::Token(cmd) => token(&mut client, cmd, &out).await.map_err(failed),
    }
}

async fn token(client: &mut Client, cmd: &TokenCmd, out: &Printer) -> Result<(), tonic::Status> {
    match cmd {
        TokenCmd::Create {
            role,
            expires,
            pipeline,
            source,
        } => {
            let request = CreateTokenRequest {
                role: role.clone(),
                expires_in_ms: expires.0.map_or(0, |d| d.as_millis().max(1) as u64),
                pipeline: pipeline.clone().unwrap_or_default(),
                source: source.clone().unwrap_or_default(),
            };
            out.token_created(&client.create_token(request).await?.into_inner());
        }
        TokenCmd::List => out.tokens(&client.list_tokens(ListTokensRequest {}).await?.into_inner()),
        TokenCmd::Revoke { id } => {
            client
                .revoke_token(RevokeTokenRequest { id: id.clone() })
                .await?;
            out.done(&format!("token {id} revoked"));
        }
    }
    Ok(())
}

async fn node(client: &mut Client, cmd: &NodeCmd, out: &Printer) -> Result<(), tonic::Status> {
    match cmd {
        NodeCmd::Add { id, address } => {
            let request = AddNodeRequest {
                id: *id,
                address: address.clone(),
            };
            client.add_node(request).await?;
            out.done(&format!("node {id} added at {address}"));
        }
        NodeCmd::Remove { id } => {
            client.remove_node(RemoveNodeRequest { id: *id }).await?;
            out.done(&format!("node {id} removed"));
        }
    }
    Ok(())
}

async fn pipeline(
    client: &mut Client,
    cmd: &PipelineCmd,
    out: &Printer,
) -> Result<(), tonic::Status> {
    let by_name = |name: &String| PipelineRef { name: name.clone() };
    let answer = match cmd {
        PipelineCmd::Create { .. } => unreachable!("created in `run`"),
        PipelineCmd::List => {
            let list = client.list_pipelines(ListPipelinesRequest {}).await?;
            out.pipelines(&list.into_inner());
            return Ok(());
        }
        PipelineCmd::Get { name } => client.get_pipeline(by_name(name)).await?,
        PipelineCmd::Pause { name } => client.pause_pipeline(by_name(name)).await?,
        PipelineCmd::Resume { name } => client.resume_pipeline(by_name(name)).await?,
        PipelineCmd::Stop { name } => client.stop_pipeline(by_name(name)).await?,
        PipelineCmd::Delete { name } => {
            client.delete_pipeline(by_name(name)).await?;
            out.done(&format!("pipeline {name} deleted"));
            return Ok(());
        }
        PipelineCmd::Scale { name, cores } => {
            let request = ScalePipelineRequest {
                name: name.clone(),
                cores: *cores,
            };
            client.scale_pipeline(request).await?
        }
    };
    out.pipeline(&answer.into_inner());
    Ok(())
}

async fn checkpoint(
    client: &mut Client,
    cmd: &CheckpointCmd,
    out: &Printer,
) -> Result<(), tonic::Status> {
    match cmd {
        CheckpointCmd::Trigger { name } => {
            let request = PipelineRef { name: name.clone() };
            let answer = client.trigger_checkpoint(request).await?.into_inner();
            out.triggered(name, &answer);
        }
        CheckpointCmd::List { name } => {
            let request = PipelineRef { name: name.clone() };
            let answer = client.list_checkpoints(request).await?.into_inner();
            out.checkpoints(&answer);
        }
    }
    Ok(())
}

fn create_request(file: &Path, options: &PipelineOpts) -> Result<CreatePipelineRequest, String> {
    let spec = std::fs::read_to_string(file)
        .map_err(|err| format!("cannot read the pipeline file {}: {err}", file.display()))?;
    let millis = |d: Option<std::time::Duration>| d.map_or(0, |d| d.as_millis() as u64);
    Ok(CreatePipelineRequest {
        file: file.display().to_string(),
        spec,
        options: Some(PipelineOptions {
            checkpoint_interval_ms: millis(options.checkpoint_interval),
            cores: options.cores.unwrap_or(0),
            from_savepoint: options
                .from_savepoint
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            checkpoint_timeout_ms: options.checkpoint_timeout.map(|d| d.as_millis() as u64),
            checkpoints_retained: options.checkpoints_retained,
            checkpoint_deltas: options.checkpoint_deltas,
        }),
    })
}

fn restore(file: &Path, data_dir: &Path, node_id: u64) -> Result<(), String> {
    let bytes = std::fs::read(file)
        .map_err(|err| format!("cannot read the backup {}: {err}", file.display()))?;
    wire_control::node::restore_backup(data_dir, node_id, &bytes)?;
    eprintln!(
        "restored node {node_id}'s data directory {} from {}; start the node with `wire start`",
        data_dir.display(),
        file.display()
    );
    Ok(())
}

/// The TLS settings `--ca`, `--cert` and `--key` ask for, if any.
fn tls(cli: &Cli) -> Result<Option<tonic::transport::ClientTlsConfig>, String> {
    let Some(ca) = &cli.ca else {
        if cli.cert.is_some() {
            return Err(
                "--cert needs --ca (the cluster CA that signed the node's certificate)".into(),
            );
        }
        return Ok(None);
    };
    let identity = cli.cert.as_deref().zip(cli.key.as_deref());
    wire_control::tls::client_config(ca, identity).map(Some)
}

//! `ScalePipeline` of a spread pipeline: its slots dealt again over the live nodes, through a
//! checkpoint. The leader takes a checkpoint of the running pipeline on demand (every node
//! writes its part), then records the new core count and the new deal in one metadata write:
//! a new version, whose slots restore that checkpoint (by key group, so any slot count takes
//! it) wherever they now run, while the old version's jobs abort.

use std::time::Duration;

use tonic::Status;

use super::AdminServer;
use crate::raft::{MetaCommand, MetaState, PipelineMeta};

/// How long the leader waits for the checkpoint it takes before a rescale; past it, the new
/// version restores the last checkpoint complete before (nothing is lost either way: the
/// sources rewind to it).
const CHECKPOINT_WAIT: Duration = Duration::from_secs(8);

impl AdminServer {
    /// Rescales `name`, spread now, to `cores` slots (dealt over the live nodes, at most this
    /// node's core count on each); the metadata command that does it.
    pub(super) async fn rescale_spread(
        &self,
        state: &MetaState,
        name: &str,
        pipeline: &PipelineMeta,
        cores: u32,
    ) -> Result<MetaCommand, Status> {
        if pipeline.options.checkpoint_interval_ms.is_none() {
            return Err(Status::failed_precondition(format!(
                "pipeline `{name}` is spread over nodes and takes no checkpoints, so its state \
                 cannot move to other slots; create it with --checkpoint-interval to scale it"
            )));
        }
        if crate::spread::has_ingest_source(pipeline) {
            return Err(Status::failed_precondition(format!(
                "pipeline `{name}` is spread over nodes and reads an ingest source: the input \
                 acknowledged to each slot is in the WAL of the node it runs on, so its slots \
                 cannot move (not replicated yet); create it again with --cores to change its size"
            )));
        }
        let status = self
            .meta
            .status()
            .await
            .map_err(|err| super::convert::status(&err))?;
        let mut live = crate::supervisor::live_nodes(&status, state, &Default::default());
        live.sort_unstable();
        let key_groups = pipeline.assignment.last().map_or(0, |a| a.key_group_end);
        let slots = slot_count(cores, self.jobs.cores(), live.len(), key_groups);
        if slots < 2 {
            return Err(Status::failed_precondition(format!(
                "pipeline `{name}` is spread over nodes: it scales to 2 slots or more, and \
                 --cores {cores} leaves {slots} on the {} live node(s) (at most {} each, {key_groups} key groups)",
                live.len(),
                self.jobs.cores()
            )));
        }
        match tokio::time::timeout(CHECKPOINT_WAIT, self.trigger_spread(state, name, false)).await {
            Ok(Ok(taken)) => {
                tracing::info!(pipeline = %name, checkpoint = taken.checkpoint_id, slots, "rescaling");
            }
            Ok(Err(err)) => {
                let cause = err.message();
                tracing::warn!(pipeline = %name, %cause, "no checkpoint before the rescale: it restores the last complete one");
            }
            Err(_) => {
                tracing::warn!(pipeline = %name, "the checkpoint before the rescale took too long: it restores the last complete one");
            }
        }
        let mut options = pipeline.options.clone();
        options.cores = Some(cores);
        Ok(MetaCommand::Rescale {
            name: name.to_string(),
            options,
            assignment: crate::spread::deal(&live, slots, key_groups),
        })
    }
}

/// The slots a spread pipeline scaled to `cores` gets: as many, but at most `per_node` on each
/// of `live` nodes and one per key group.
fn slot_count(cores: u32, per_node: usize, live: usize, key_groups: u32) -> usize {
    (cores as usize)
        .min(per_node.max(1) * live)
        .min(key_groups as usize)
}

#[cfg(test)]
mod tests {
    use super::slot_count;

    #[test]
    fn slots_are_capped_by_the_live_cores_and_the_key_groups() {
        assert_eq!(slot_count(4, 2, 3, 128), 4);
        assert_eq!(slot_count(9, 2, 3, 128), 6);
        assert_eq!(slot_count(9, 2, 3, 5), 5);
        assert_eq!(slot_count(3, 2, 0, 128), 0);
    }
}

//! The ready/advance step of [`MetaNode`]: persist, sync, send, apply; plus compaction,
//! status and backups.

use ::raft::eraftpb::{ConfChange, ConfChangeType, Entry, EntryType, MessageType, Snapshot};
use ::raft::{SnapshotStatus, StateRole, Storage as _};
use protobuf::Message as _;

use super::{conf_state_of, AppliedEntry, MemberStatus, MetaNode, MetaReady, MetaStatus, Role};
use crate::raft::disk::Disk;
use crate::raft::meta::{MetaCommand, MetaResponse, MetaState};
use crate::raft::MetaError;

/// Magic that starts a backup file.
pub(crate) const BACKUP_MAGIC: &[u8; 8] = b"WIREMETA";
const BACKUP_VERSION: u8 = 1;

impl<D: Disk> MetaNode<D> {
    /// Runs one ready step: installs a received snapshot, appends entries and the hard state,
    /// syncs, and only then hands back the messages; applies committed entries; advances raft;
    /// compacts when the log grew past the threshold. A storage error poisons the node: the
    /// caller must stop it.
    pub fn ready(&mut self) -> Result<MetaReady, MetaError> {
        let mut out = MetaReady::default();
        if self.raw.has_ready() {
            self.ready_step(&mut out)?;
            self.maybe_compact()?;
        }
        self.collect_reads(&mut out);
        Ok(out)
    }

    fn ready_step(&mut self, out: &mut MetaReady) -> Result<(), MetaError> {
        let mut rd = self.raw.ready();
        if let Some(ss) = rd.ss() {
            self.role_changed(ss.raft_state, ss.leader_id);
        }
        if !rd.snapshot().is_empty() {
            let snap = rd.snapshot().clone();
            self.install_snapshot(&snap)?;
            out.installed_snapshot = Some(snap.get_metadata().index);
        }
        let store = self.raw.mut_store();
        store.append(rd.entries())?;
        out.persisted_entries = rd.entries().len();
        if let Some(hs) = rd.hs() {
            store.set_hard_state(hs)?;
        }
        // Votes, terms and appended entries are durable before any message that reveals them.
        store.sync()?;
        out.messages = rd.take_messages();
        out.messages.extend(rd.take_persisted_messages());
        for rs in rd.take_read_states() {
            let mut id = [0u8; 8];
            if rs.request_ctx.len() == 8 {
                id.copy_from_slice(&rs.request_ctx);
                self.pending_reads.push((rs.index, u64::from_le_bytes(id)));
            }
        }
        self.apply_entries(rd.take_committed_entries(), out)?;
        let mut light = self.raw.advance(rd);
        if let Some(commit) = light.commit_index() {
            self.raw.mut_store().set_commit(commit)?;
        }
        out.messages.extend(light.take_messages());
        self.apply_entries(light.take_committed_entries(), out)?;
        self.raw.advance_apply_to(self.applied);
        // The leader waits for a report on every snapshot it sends. Reporting "finished" as it
        // leaves lets it probe the follower again: a lost snapshot is simply sent again.
        for m in &out.messages {
            if m.get_msg_type() == MessageType::MsgSnapshot {
                self.raw.report_snapshot(m.to, SnapshotStatus::Finish);
            }
        }
        Ok(())
    }

    fn install_snapshot(&mut self, snap: &Snapshot) -> Result<(), MetaError> {
        let state = MetaState::decode(&snap.data)?;
        self.raw.mut_store().apply_snapshot(snap)?;
        self.state = state;
        self.applied = snap.get_metadata().index;
        Ok(())
    }

    fn collect_reads(&mut self, out: &mut MetaReady) {
        let applied = self.applied;
        self.pending_reads.retain(|(index, request)| {
            if *index <= applied {
                out.reads.push(*request);
                false
            } else {
                true
            }
        });
    }

    fn apply_entries(&mut self, entries: Vec<Entry>, out: &mut MetaReady) -> Result<(), MetaError> {
        for e in entries {
            if e.index <= self.applied {
                continue;
            }
            self.applied = e.index;
            let result = match e.get_entry_type() {
                EntryType::EntryNormal if e.data.is_empty() => None,
                EntryType::EntryNormal => Some(MetaCommand::decode(&e.data).and_then(|cmd| {
                    let span = tracing::info_span!(
                        "raft.apply",
                        node = self.id(),
                        index = e.index,
                        term = e.term,
                        command = cmd.name(),
                        error = tracing::field::Empty,
                    );
                    let _entered = span.enter();
                    let applied = self.state.apply(e.index, &cmd);
                    if let Err(err) = &applied {
                        span.record("error", tracing::field::display(err));
                    }
                    applied
                })),
                EntryType::EntryConfChange => {
                    let span = tracing::info_span!(
                        "raft.conf_change",
                        node = self.id(),
                        index = e.index,
                        term = e.term,
                        change = tracing::field::Empty,
                        member = tracing::field::Empty,
                        error = tracing::field::Empty,
                    );
                    let _entered = span.enter();
                    let applied = self.apply_conf_change(&e)?;
                    if let Err(err) = &applied {
                        span.record("error", tracing::field::display(err));
                    }
                    Some(applied)
                }
                EntryType::EntryConfChangeV2 => None,
            };
            if let (Some(result), Some(request)) = (result, self.own_request(&e.context)) {
                out.applied.push((request, result));
            }
            out.applied_entries.push(AppliedEntry {
                index: e.index,
                term: e.term,
                context: e.context.to_vec(),
                data: e.data.to_vec(),
            });
        }
        Ok(())
    }

    /// Applies a membership change and its registration together, or neither. The outer error
    /// is a storage failure; the inner result is the command's.
    fn apply_conf_change(
        &mut self,
        e: &Entry,
    ) -> Result<Result<MetaResponse, MetaError>, MetaError> {
        let Ok(cc) = ConfChange::parse_from_bytes(&e.data) else {
            return Ok(Err(MetaError::Invalid {
                reason: "undecodable conf change".into(),
            }));
        };
        let span = tracing::Span::current();
        span.record("change", format!("{:?}", cc.get_change_type()).as_str());
        span.record("member", cc.node_id);
        let cmd = match MetaCommand::decode(&cc.context) {
            Ok(cmd) => cmd,
            Err(err) => return Ok(Err(err)),
        };
        let check = match (&cmd, cc.get_change_type()) {
            (MetaCommand::AddNode { id, addr }, ConfChangeType::AddNode) if *id == cc.node_id => {
                self.state.check_add_node(*id, addr)
            }
            (MetaCommand::RemoveNode { id }, ConfChangeType::RemoveNode) if *id == cc.node_id => {
                self.state.check_remove_node(*id)
            }
            _ => Err(MetaError::Invalid {
                reason: "conf change does not match its command".into(),
            }),
        };
        if let Err(err) = check {
            return Ok(Err(err));
        }
        let cs = match self.raw.apply_conf_change(&cc) {
            Ok(cs) => cs,
            Err(err) => return Ok(Err(err.into())),
        };
        self.raw.mut_store().set_conf_state(e.index, &cs)?;
        // raft-rs refuses a snapshot whose voters do not include the receiver, so a node that
        // joins empty needs a snapshot taken after its addition: take one right after this step.
        self.compact_requested |= cc.get_change_type() == ConfChangeType::AddNode;
        if self.is_leader() && !cs.voters.contains(&self.id()) {
            // raft-rs keeps a removed leader leading (and then panics looking up its own
            // progress); step down so the remaining voters elect a new leader.
            let term = self.raw.raft.term;
            self.raw.raft.become_follower(term, ::raft::INVALID_ID);
        }
        Ok(self.state.apply(e.index, &cmd))
    }

    /// Traces elections: a `raft.election` span opens when this node starts campaigning and
    /// closes when it leads or follows again, with the outcome and the leader.
    fn role_changed(&mut self, role: StateRole, leader: u64) {
        let term = self.raw.raft.term;
        match role {
            StateRole::PreCandidate | StateRole::Candidate => {
                if self.election.is_none() {
                    self.election = Some(tracing::info_span!(
                        parent: None,
                        "raft.election",
                        node = self.id(),
                        term_started = term,
                        term = tracing::field::Empty,
                        outcome = tracing::field::Empty,
                        leader = tracing::field::Empty,
                    ));
                }
            }
            StateRole::Leader | StateRole::Follower => {
                let won = role == StateRole::Leader;
                if let Some(election) = self.election.take() {
                    election.record("term", term);
                    election.record("outcome", if won { "won" } else { "lost" });
                    election.record("leader", leader);
                }
                tracing::info!(
                    node = self.id(),
                    term,
                    leader,
                    leading = won,
                    "raft role changed"
                );
            }
        }
    }

    fn own_request(&self, context: &[u8]) -> Option<u64> {
        if context.len() != 16 || context[..8] != self.id().to_le_bytes() {
            return None;
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&context[8..]);
        Some(u64::from_le_bytes(id))
    }

    fn maybe_compact(&mut self) -> Result<(), MetaError> {
        let snap_index = self.raw.store().snapshot_ref().get_metadata().index;
        if std::mem::take(&mut self.compact_requested)
            || self.applied >= snap_index + self.compact_after_entries
        {
            self.compact()?;
        }
        Ok(())
    }

    /// Snapshots the state at the applied index and drops the log up to it; returns the
    /// snapshot's index.
    pub fn compact(&mut self) -> Result<u64, MetaError> {
        let snap = self.snapshot_now()?;
        let index = snap.get_metadata().index;
        self.raw.mut_store().compact(&snap)?;
        Ok(index)
    }

    fn snapshot_now(&self) -> Result<Snapshot, MetaError> {
        let store = self.raw.store();
        let current = store.snapshot_ref();
        if self.applied <= current.get_metadata().index {
            return Ok(current.clone());
        }
        let mut snap = Snapshot {
            data: self.state.encode().into(),
            ..Default::default()
        };
        let meta = snap.mut_metadata();
        meta.index = self.applied;
        meta.term = store.term(self.applied)?;
        meta.set_conf_state(conf_state_of(&self.raw));
        Ok(snap)
    }

    /// A backup of the metadata: a snapshot at the applied index, framed with a magic, a
    /// version and a CRC. Restore it with [`crate::raft::restore_backup`].
    pub fn backup(&self) -> Result<Vec<u8>, MetaError> {
        let snap = self.snapshot_now()?;
        let body = snap.write_to_bytes().map_err(::raft::Error::from)?;
        let mut out = BACKUP_MAGIC.to_vec();
        out.push(BACKUP_VERSION);
        out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// This node's view of the group (`last_contact_ms` left for the driver to fill).
    pub fn status(&self) -> MetaStatus {
        let raft = &self.raw.raft;
        let role = match raft.state {
            StateRole::Leader => Role::Leader,
            StateRole::Follower => Role::Follower,
            StateRole::Candidate => Role::Candidate,
            StateRole::PreCandidate => Role::PreCandidate,
        };
        let leader = self.leader();
        let store = self.raw.store();
        MetaStatus {
            id: self.id(),
            role,
            leader: leader.as_ref().map(|l| l.0),
            leader_addr: leader.map(|l| l.1),
            term: raft.term,
            commit: raft.raft_log.committed,
            applied: self.applied,
            snapshot_index: store.snapshot_ref().get_metadata().index,
            last_index: store.last_index().unwrap_or(0),
            members: self.members(),
        }
    }

    fn members(&self) -> Vec<MemberStatus> {
        let raft = &self.raw.raft;
        let voters = raft.prs().conf().voters().ids();
        let mut ids: Vec<u64> = voters.iter().collect();
        ids.extend(self.state.nodes.keys().copied());
        ids.sort_unstable();
        ids.dedup();
        let leader = raft.state == StateRole::Leader;
        ids.into_iter()
            .map(|id| MemberStatus {
                id,
                addr: self.state.nodes.get(&id).map(|n| n.addr.clone()),
                voter: voters.contains(id),
                match_index: if leader {
                    raft.prs().get(id).map(|p| p.matched)
                } else {
                    None
                },
                last_contact_ms: None,
            })
            .collect()
    }
}

/// Decodes a backup made by [`MetaNode::backup`] into its snapshot and state.
pub(crate) fn decode_backup(bytes: &[u8]) -> Result<(Snapshot, MetaState), MetaError> {
    let bad = |field, offset: usize, reason| MetaError::Decode {
        what: "metadata backup",
        field,
        offset: offset as u64,
        reason,
    };
    if bytes.len() < 13 || &bytes[..8] != BACKUP_MAGIC {
        return Err(bad("magic", 0, "not a wire metadata backup"));
    }
    if bytes[8] != BACKUP_VERSION {
        return Err(bad("version", 8, "unknown version"));
    }
    let crc = u32::from_le_bytes([bytes[9], bytes[10], bytes[11], bytes[12]]);
    let body = &bytes[13..];
    if crc32c::crc32c(body) != crc {
        return Err(bad("crc", 9, "checksum mismatch"));
    }
    let snap = Snapshot::parse_from_bytes(body).map_err(|_| bad("snapshot", 13, "bad snapshot"))?;
    let state = MetaState::decode(&snap.data)?;
    Ok((snap, state))
}

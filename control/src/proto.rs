//! The gRPC messages and services generated from `control/proto` (tonic + prost), and the
//! encoded descriptor set that server reflection serves (so `grpcurl` works without files).

/// `wire.admin.v1`: the AdminService `wirectl` calls.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod admin {
    tonic::include_proto!("wire.admin.v1");
}

/// `wire.raft.v1`: the node-to-node RaftService.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod raft {
    tonic::include_proto!("wire.raft.v1");
}

/// Both files' descriptors, for `tonic_reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("wire_descriptor");

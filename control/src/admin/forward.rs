//! Forwarding a request that reached a follower to the leader's AdminService, and a request
//! about a running pipeline (counters, checkpoints and savepoints on demand) to the node that
//! hosts it.
//!
//! A request forwarded to the leader carries the [`FORWARDED`] header; a node that gets one and
//! is not the leader either answers UNAVAILABLE instead of forwarding again, so a request hops
//! to the leader at most once. A request forwarded to the hosting node carries [`FOR_HOST`]; a
//! node that gets one serves it itself or answers UNAVAILABLE (the pipeline moved), so it hops
//! to a host at most once too.

use std::time::Duration;

use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Request, Status};

use crate::proto::admin::admin_service_client::AdminServiceClient;
use crate::transport::Dialer;

/// The header that marks a request forwarded by a member.
pub const FORWARDED: &str = "x-wire-forwarded";

/// The header that marks a request forwarded by a member to the node hosting its pipeline.
pub const FOR_HOST: &str = "x-wire-for-host";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(12);

/// Whether `request` was forwarded by another member.
pub fn is_forwarded<T>(request: &Request<T>) -> bool {
    request.metadata().contains_key(FORWARDED)
}

/// Whether `request` was forwarded to this node as the host of its pipeline.
pub fn is_for_host<T>(request: &Request<T>) -> bool {
    request.metadata().contains_key(FOR_HOST)
}

/// Node `id` at `address`, which hosts pipeline `pipeline`, as a client ready for one
/// forwarded call (a request already forwarded to a host is not forwarded again).
pub async fn host(
    this: u64,
    dialer: &Dialer,
    (id, address): (u64, String),
    pipeline: &str,
) -> Result<Peer, Status> {
    let unreachable = |why: &str| {
        Status::unavailable(format!(
            "pipeline `{pipeline}` runs on node {id} at {address}, which node {this} cannot \
             reach ({why}); retry, or use --endpoint {address}"
        ))
    };
    let endpoint = dialer
        .endpoint(&address, CONNECT_TIMEOUT, REQUEST_TIMEOUT)
        .map_err(|err| unreachable(&err))?;
    let channel = endpoint
        .connect()
        .await
        .map_err(|err| unreachable(&err.to_string()))?;
    Ok(Peer {
        this,
        id,
        address,
        header: FOR_HOST,
        client: AdminServiceClient::new(channel),
    })
}

/// The leader as a client, ready for one forwarded call; `None` leader or a request that was
/// already forwarded is UNAVAILABLE.
pub async fn leader(
    this: u64,
    dialer: &Dialer,
    leader: Option<(u64, String)>,
    forwarded: bool,
) -> Result<Peer, Status> {
    let Some((id, address)) = leader else {
        return Err(Status::unavailable(
            "no leader is elected yet (is a majority of the members up?); retry",
        ));
    };
    if forwarded {
        return Err(Status::unavailable(format!(
            "node {this} is not the leader either (the leader moved to node {id} at {address}); \
             retry"
        )));
    }
    let endpoint = dialer
        .endpoint(&address, CONNECT_TIMEOUT, REQUEST_TIMEOUT)
        .map_err(|err| unavailable(this, id, &address, &err))?;
    let channel = endpoint
        .connect()
        .await
        .map_err(|err| unavailable(this, id, &address, &err.to_string()))?;
    Ok(Peer {
        this,
        id,
        address,
        header: FORWARDED,
        client: AdminServiceClient::new(channel),
    })
}

/// Another member's admin client (the leader's, or a pipeline's host's) and who it is.
pub struct Peer {
    this: u64,
    id: u64,
    address: String,
    /// The header that marks requests to it ([`FORWARDED`] or [`FOR_HOST`]).
    header: &'static str,
    /// The client; call it with [`Peer::request`]s and pass answers through [`Peer::answer`].
    pub client: AdminServiceClient<Channel>,
}

/// The leader, as a [`Peer`].
pub type Leader = Peer;

impl Peer {
    /// `message` as a forwarded request.
    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert(self.header, MetadataValue::from(self.this));
        request
    }

    /// The peer's answer; a transport failure becomes UNAVAILABLE naming the peer.
    pub fn answer<T>(&self, answer: Result<T, Status>) -> Result<T, Status> {
        answer.map_err(|status| {
            if std::error::Error::source(&status).is_none() {
                return status;
            }
            if self.header == FOR_HOST {
                return Status::unavailable(format!(
                    "node {} at {} hosts the pipeline, and node {} lost it ({}); retry, or use \
                     --endpoint {}",
                    self.id,
                    self.address,
                    self.this,
                    status.message(),
                    self.address
                ));
            }
            unavailable(self.this, self.id, &self.address, status.message())
        })
    }
}

fn unavailable(this: u64, leader: u64, address: &str, why: &str) -> Status {
    Status::unavailable(format!(
        "node {this} is not the leader and cannot reach the leader, node {leader} at {address} \
         ({why}); retry, or use --endpoint {address}"
    ))
}

//! Forwarding a request that reached a follower to the leader's AdminService.
//!
//! A forwarded request carries the [`FORWARDED`] header; a node that gets one and is not the
//! leader either answers UNAVAILABLE instead of forwarding again, so a request hops at most
//! once.

use std::time::Duration;

use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Request, Status};

use crate::proto::admin::admin_service_client::AdminServiceClient;
use crate::transport::Dialer;

/// The header that marks a request forwarded by a member.
pub const FORWARDED: &str = "x-wire-forwarded";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(12);

/// Whether `request` was forwarded by another member.
pub fn is_forwarded<T>(request: &Request<T>) -> bool {
    request.metadata().contains_key(FORWARDED)
}

/// The leader as a client, ready for one forwarded call; `None` leader or a request that was
/// already forwarded is UNAVAILABLE.
pub async fn leader(
    this: u64,
    dialer: &Dialer,
    leader: Option<(u64, String)>,
    forwarded: bool,
) -> Result<Leader, Status> {
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
    Ok(Leader {
        this,
        id,
        address,
        client: AdminServiceClient::new(channel),
    })
}

/// The leader's admin client and who it is.
pub struct Leader {
    this: u64,
    id: u64,
    address: String,
    /// The client; call it with [`Leader::request`]s and pass answers through [`Leader::answer`].
    pub client: AdminServiceClient<Channel>,
}

impl Leader {
    /// `message` as a forwarded request.
    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert(FORWARDED, MetadataValue::from(self.this));
        request
    }

    /// The leader's answer; a transport failure becomes UNAVAILABLE naming the leader.
    pub fn answer<T>(&self, answer: Result<T, Status>) -> Result<T, Status> {
        answer.map_err(|status| {
            if std::error::Error::source(&status).is_some() {
                unavailable(self.this, self.id, &self.address, status.message())
            } else {
                status
            }
        })
    }
}

fn unavailable(this: u64, leader: u64, address: &str, why: &str) -> Status {
    Status::unavailable(format!(
        "node {this} is not the leader and cannot reach the leader, node {leader} at {address} \
         ({why}); retry, or use --endpoint {address}"
    ))
}

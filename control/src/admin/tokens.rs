//! The token verbs: create (the secret is generated here and answered once; the metadata
//! keeps its hash), list and revoke.

use tonic::{Request, Response, Status};

use super::{forward::is_forwarded, AdminServer, Route};
use crate::auth::{generate, now_ms, AccessRole};
use crate::proto::admin::{
    CreateTokenRequest, CreateTokenResponse, ListTokensRequest, ListTokensResponse,
    RevokeTokenRequest, RevokeTokenResponse, Token,
};
use crate::raft::{MetaCommand, TokenRecord, TokenScope};

fn token(id: &str, record: &TokenRecord) -> Token {
    let scope = record.scope.as_ref();
    Token {
        id: id.to_string(),
        role: record.role.name().to_string(),
        created_at_ms: record.created_at_ms,
        expires_at_ms: record.expires_at_ms.unwrap_or(0),
        pipeline: scope.map(|s| s.pipeline.clone()).unwrap_or_default(),
        source: scope.and_then(|s| s.source.clone()).unwrap_or_default(),
    }
}

/// The scope a create request asks for: only a producer token may have one, and a source
/// only within a pipeline.
fn scope_of(message: &CreateTokenRequest, role: AccessRole) -> Result<Option<TokenScope>, Status> {
    match (message.pipeline.as_str(), message.source.as_str()) {
        ("", "") => Ok(None),
        ("", _) => Err(Status::invalid_argument(
            "source: a token scoped to a source needs its pipeline too",
        )),
        (_, _) if role != AccessRole::Producer => Err(Status::invalid_argument(format!(
            "pipeline: only producer tokens are scoped, not {} tokens",
            role.name()
        ))),
        (pipeline, source) => Ok(Some(TokenScope {
            pipeline: pipeline.to_string(),
            source: (!source.is_empty()).then(|| source.to_string()),
        })),
    }
}

impl AdminServer {
    pub(super) async fn create_token_here(
        &self,
        request: Request<CreateTokenRequest>,
    ) -> Result<Response<CreateTokenResponse>, Status> {
        let forwarded = is_forwarded(&request);
        let message = request.into_inner();
        let role = AccessRole::parse(&message.role).ok_or_else(|| {
            Status::invalid_argument(format!(
                "role `{}`: not a role (admin, operator, viewer, producer)",
                message.role
            ))
        })?;
        let scope = scope_of(&message, role)?;
        let new = generate().map_err(Status::internal)?;
        let created_at_ms = now_ms();
        let expires_at_ms = match message.expires_in_ms {
            0 => None,
            ms => Some(created_at_ms.saturating_add(ms)),
        };
        let record = TokenRecord {
            role,
            hash: new.hash,
            created_at_ms,
            expires_at_ms,
            scope,
        };
        let command = MetaCommand::CreateToken {
            id: new.id.clone(),
            token: record.clone(),
        };
        match self.propose(command, forwarded).await? {
            Route::Here(()) => Ok(Response::new(CreateTokenResponse {
                token: Some(token(&new.id, &record)),
                secret: new.text,
            })),
            Route::Leader(leader) => forward!(leader, create_token, message),
        }
    }

    pub(super) async fn list_tokens_here(
        &self,
        request: Request<ListTokensRequest>,
    ) -> Result<Response<ListTokensResponse>, Status> {
        let forwarded = is_forwarded(&request);
        let state = match self.state(forwarded).await? {
            Route::Here(state) => state,
            Route::Leader(leader) => return forward!(leader, list_tokens, ListTokensRequest {}),
        };
        let tokens = state
            .tokens
            .iter()
            .map(|(id, record)| token(id, record))
            .collect();
        Ok(Response::new(ListTokensResponse { tokens }))
    }

    pub(super) async fn revoke_token_here(
        &self,
        request: Request<RevokeTokenRequest>,
    ) -> Result<Response<RevokeTokenResponse>, Status> {
        let forwarded = is_forwarded(&request);
        let message = request.into_inner();
        let command = MetaCommand::RevokeToken {
            id: message.id.clone(),
        };
        match self.propose(command, forwarded).await? {
            Route::Here(()) => Ok(Response::new(RevokeTokenResponse {})),
            Route::Leader(leader) => forward!(leader, revoke_token, message),
        }
    }
}

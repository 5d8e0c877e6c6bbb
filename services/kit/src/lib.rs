//! Shared pieces of every douyin role: configuration, the error type, the
//! database, cache, pub/sub and object-storage backends, authentication, the gRPC
//! client factory, health reporting and shutdown.

pub mod auth;
pub mod breaker;
pub mod cache;
pub mod config;
pub mod db;
pub mod deadline;
pub mod error;
pub mod grpc;
pub mod health;
pub mod host;
pub mod ids;
pub mod metrics;
pub mod pubsub;
pub mod shutdown;
pub mod storage;
pub mod telemetry;
pub mod text;

pub use config::Config;
pub use error::{Error, Result};

/// A role of the `douyin` binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Api,
    User,
    Video,
    Interaction,
    Relation,
    Chat,
    Counter,
}

impl Role {
    pub const ALL: [Role; 7] =
        [Role::Api, Role::User, Role::Video, Role::Interaction, Role::Relation, Role::Chat, Role::Counter];

    /// The roles that serve gRPC.
    pub const GRPC: [Role; 6] = [Role::User, Role::Video, Role::Interaction, Role::Relation, Role::Chat, Role::Counter];

    pub fn name(self) -> &'static str {
        match self {
            Role::Api => "api",
            Role::User => "user",
            Role::Video => "video",
            Role::Interaction => "interaction",
            Role::Relation => "relation",
            Role::Chat => "chat",
            Role::Counter => "counter",
        }
    }

    /// The fully qualified gRPC service name, also its tonic-health name.
    pub fn grpc_service(self) -> &'static str {
        match self {
            Role::Api => "",
            Role::User => "douyin.user.v1.UserService",
            Role::Video => "douyin.video.v1.VideoService",
            Role::Interaction => "douyin.interaction.v1.InteractionService",
            Role::Relation => "douyin.relation.v1.RelationService",
            Role::Chat => "douyin.chat.v1.ChatService",
            Role::Counter => "douyin.counter.v1.CounterService",
        }
    }

    /// Whether the role stores rows (every role but the gateway).
    pub fn needs_database(self) -> bool {
        self != Role::Api
    }

    /// Whether the role reads or writes media objects.
    pub fn needs_storage(self) -> bool {
        matches!(self, Role::Api | Role::Video)
    }

    /// Whether the role signs or verifies user tokens.
    pub fn needs_tokens(self) -> bool {
        matches!(self, Role::Api | Role::User)
    }

    /// Where the role is found in a cluster when no endpoint is configured.
    pub fn default_endpoint(self) -> String {
        format!("http://douyin-{}:50051", self.name())
    }

    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == name)
    }

    /// Its place in [`Role::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::Role;

    #[test]
    fn every_role_is_listed_once_in_declaration_order() {
        for (i, role) in Role::ALL.into_iter().enumerate() {
            assert_eq!(role.index(), i, "{role}");
            assert_eq!(Role::parse(role.name()), Some(role));
        }
        assert_eq!(Role::GRPC[..], Role::ALL[1..], "every role but the gateway serves gRPC");
    }
}

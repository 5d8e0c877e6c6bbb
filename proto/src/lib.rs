//! Generated gRPC types of every douyin service. Modules mirror the protobuf
//! packages; the short re-exports (`user`, `video`, …) are what callers use.
#![allow(clippy::all, missing_docs, unreachable_pub)]

pub mod douyin {
    pub mod common {
        pub mod v1 {
            tonic::include_proto!("douyin.common.v1");
        }
    }
    pub mod user {
        pub mod v1 {
            tonic::include_proto!("douyin.user.v1");
        }
    }
    pub mod video {
        pub mod v1 {
            tonic::include_proto!("douyin.video.v1");
        }
    }
    pub mod interaction {
        pub mod v1 {
            tonic::include_proto!("douyin.interaction.v1");
        }
    }
    pub mod relation {
        pub mod v1 {
            tonic::include_proto!("douyin.relation.v1");
        }
    }
    pub mod chat {
        pub mod v1 {
            tonic::include_proto!("douyin.chat.v1");
        }
    }
    pub mod counter {
        pub mod v1 {
            tonic::include_proto!("douyin.counter.v1");
        }
    }
}

pub mod grpc {
    pub mod health {
        /// The standard health protocol (served by tonic-health; the client is
        /// used by `douyin health` and the tests).
        pub mod v1 {
            tonic::include_proto!("grpc.health.v1");
        }
    }
}

pub use douyin::{
    chat::v1 as chat, common::v1 as common, counter::v1 as counter, interaction::v1 as interaction,
    relation::v1 as relation, user::v1 as user, video::v1 as video,
};
pub use grpc::health::v1 as health;

pub mod hosted;
pub mod push;

/// The gRPC paths (`/package.Service/Method`) of the methods marked
/// `option idempotency_level = NO_SIDE_EFFECTS` in the protobuf files: they
/// only read, so a failed attempt may be repeated.
pub const NO_SIDE_EFFECTS: &[&str] = include!(concat!(env!("OUT_DIR"), "/no_side_effects.rs"));

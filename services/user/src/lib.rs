//! The user role: registration, login and profiles relative to a viewer.

mod passwords;
mod repo;
mod service;

use std::sync::Arc;

use douyin_kit::{
    Error,
    auth::new_account_key,
    cache::{Flags, Generation, RowCache},
    db::{Db, ServiceMigrations},
    grpc::Handlers,
    host::{Built, RoleContext},
};
use douyin_proto::{
    common::{Ids, UserList},
    user::{AccountKey, AccountKeyList, Credentials, GetUsersRequest, Session, user_service_server},
};
use tonic::{Request, Response, Status};

use passwords::Passwords;
use repo::{NewAccount, UserRepo};
use service::UserService;

pub static MIGRATIONS: ServiceMigrations = ServiceMigrations {
    service: "user",
    sqlite: &sqlx::migrate!("./migrations/sqlite"),
    mysql: &sqlx::migrate!("./migrations/mysql"),
};

/// Gives accounts stored before names had skeletons theirs (run after the
/// migrations; safe to run from several processes at once).
pub async fn fill_name_keys(db: &Db) -> douyin_kit::Result<()> {
    let filled = UserRepo::new(db.clone()).fill_name_keys(douyin_kit::text::skeleton).await?;
    if filled > 0 {
        tracing::info!(filled, "account name skeletons filled");
    }
    Ok(())
}

/// The account that publishes the demo videos of a fresh embedded install:
/// found by name, else created with a random password nobody knows (it cannot
/// be signed into), its counts row and the demo profile in one transaction.
pub async fn demo_account(db: &Db) -> douyin_kit::Result<i64> {
    const USERNAME: &str = "douyin-demo";
    let repo = UserRepo::new(db.clone());
    let name_key = douyin_kit::text::skeleton(USERNAME);
    if let Some((id, _, _)) = repo.credentials(USERNAME, USERNAME, &name_key).await? {
        return Ok(id);
    }
    let secret = format!("{}{}", new_account_key(), new_account_key());
    let password_hash = Passwords::new().hash(&secret).await?;
    let account_key = new_account_key();
    let account = NewAccount {
        username: USERNAME,
        name_key: &name_key,
        password_hash: &password_hash,
        account_key: &account_key,
        name: "Douyin Demo",
        signature: "Sample videos shipped with douyin-rs",
    };
    match repo.create(account).await {
        Ok((id, _)) => Ok(id),
        // Created by another process at the same moment.
        Err(Error::AlreadyExists(_)) => match repo.credentials(USERNAME, USERNAME, &name_key).await? {
            Some((id, _, _)) => Ok(id),
            None => Err(Error::internal("the demo account was neither created nor found")),
        },
        Err(error) => Err(error),
    }
}

/// The user role: accounts and profiles, checked on its own tables.
pub fn build(ctx: &RoleContext) -> douyin_kit::Result<Built<user_service_server::UserServiceServer<UserGrpc>>> {
    let counts = douyin_counts::Reader::new(ctx.clients.clone(), ctx.db.clone(), ctx.cache.clone());
    let generation = Generation::new(ctx.db.clone());
    let profiles = RowCache::new(ctx.cache.clone(), generation.clone(), "profile");
    let follows = Flags::new(ctx.cache.clone(), generation, "follows");
    let service = UserService::new(UserRepo::new(ctx.db.clone()), ctx.tokens()?, counts, profiles, follows);
    let handlers = Arc::new(UserGrpc(service));
    Ok(Built {
        server: user_service_server::UserServiceServer::from_arc(handlers.clone()),
        handlers: Handlers::User(handlers),
        probes: ctx.table_probes(&["users", "user_stats"]),
    })
}

/// gRPC adapter over [`UserService`].
#[derive(Clone)]
pub struct UserGrpc(pub UserService);

#[tonic::async_trait]
impl user_service_server::UserService for UserGrpc {
    async fn register(&self, request: Request<Credentials>) -> Result<Response<Session>, Status> {
        let c = request.into_inner();
        let s = self.0.register(&c.username, &c.password).await?;
        Ok(Response::new(Session { user_id: s.user_id, token: s.token }))
    }

    async fn login(&self, request: Request<Credentials>) -> Result<Response<Session>, Status> {
        let c = request.into_inner();
        let s = self.0.login(&c.username, &c.password).await?;
        Ok(Response::new(Session { user_id: s.user_id, token: s.token }))
    }

    async fn get_users(&self, request: Request<GetUsersRequest>) -> Result<Response<UserList>, Status> {
        let r = request.into_inner();
        let users = self.0.users(&r.ids, r.viewer_id, r.viewer_version, !r.without_counts).await?;
        Ok(Response::new(UserList { users }))
    }

    async fn existing_users(&self, request: Request<Ids>) -> Result<Response<Ids>, Status> {
        let ids = self.0.existing(&request.into_inner().ids).await.map_err(Error::into_status)?;
        Ok(Response::new(Ids { ids }))
    }

    async fn account_keys(&self, request: Request<Ids>) -> Result<Response<AccountKeyList>, Status> {
        let keys = self.0.account_keys(&request.into_inner().ids).await.map_err(Error::into_status)?;
        Ok(Response::new(AccountKeyList {
            keys: keys.into_iter().map(|(user_id, key)| AccountKey { user_id, key }).collect(),
        }))
    }
}

//! The questions every role asks the user role.

use std::collections::HashMap;

use douyin_proto::{
    common::{Ids, User},
    user::GetUsersRequest,
};

use super::Clients;
use crate::{Result, ids};

impl Clients {
    /// Whether account `user_id` exists.
    pub async fn user_exists(&self, user_id: i64) -> Result<bool> {
        let mut user = self.user.clone();
        Ok(!user.existing_users(Ids { ids: vec![user_id] }).await?.into_inner().ids.is_empty())
    }

    /// The profiles of `ids` as `viewer_id` sees them, with their counts, in
    /// the user role's order; unknown ids are left out, and an empty list
    /// asks nothing.
    pub async fn users(&self, ids: Vec<i64>, viewer_id: i64) -> Result<Vec<User>> {
        self.get_users(ids, viewer_id, 0, false).await
    }

    /// The profiles of `ids` (repeats asked once) as `viewer_id` sees them, by
    /// id; unknown ids are left out.
    pub async fn users_by_id(&self, ids: &[i64], viewer_id: i64) -> Result<HashMap<i64, User>> {
        Ok(by_id(self.get_users(ids::unique(ids), viewer_id, 0, false).await?))
    }

    /// As [`Clients::users_by_id`], without the counts (for a caller that reads
    /// them together with others of its own); `viewer_version` is the version
    /// of the viewer's counts it read (0 when it did not).
    pub async fn profiles_by_id(&self, ids: &[i64], viewer_id: i64, viewer_version: i64) -> Result<HashMap<i64, User>> {
        Ok(by_id(self.get_users(ids::unique(ids), viewer_id, viewer_version, true).await?))
    }

    async fn get_users(
        &self,
        ids: Vec<i64>,
        viewer_id: i64,
        viewer_version: i64,
        without_counts: bool,
    ) -> Result<Vec<User>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut user = self.user.clone();
        Ok(user.get_users(GetUsersRequest { ids, viewer_id, without_counts, viewer_version }).await?.into_inner().users)
    }
}

fn by_id(users: Vec<User>) -> HashMap<i64, User> {
    users.into_iter().map(|u| (u.id, u)).collect()
}

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

    /// The profiles of `ids` (repeats asked once) as `viewer_id` sees them, by
    /// id; unknown ids are left out.
    pub async fn users_by_id(&self, ids: &[i64], viewer_id: i64) -> Result<HashMap<i64, User>> {
        let ids = ids::unique(ids);
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let mut user = self.user.clone();
        let users = user.get_users(GetUsersRequest { ids, viewer_id, without_counts: false }).await?.into_inner().users;
        Ok(users.into_iter().map(|u| (u.id, u)).collect())
    }
}

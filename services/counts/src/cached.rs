//! How counts are kept in the cache: one entry per video and per user under
//! the database's generation, each `version:numbers`. The counter role fills
//! and updates the entries; any role reads them ([`crate::Reader`]), so a page
//! whose counts are cached costs one cache read and no call.

use std::{collections::HashMap, sync::Arc};

use douyin_kit::cache::{user_counts_key, version_of, versioned};
use douyin_proto::counter::{UserCounts, VideoCounts};

use crate::stats::{UserStats, VideoStats};

/// The cache keys of one database generation (`stats::generation`): entries
/// filled from another database, or from this one before a restore, are
/// under other keys and never read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    pub generation: Arc<str>,
}

impl Keys {
    /// A video's counts, in the video's group `{v<id>}` (its hash slot in a
    /// Redis Cluster).
    pub fn video(&self, id: i64) -> String {
        format!("{}:vc:{{v{id}}}", self.generation)
    }

    pub fn user(&self, id: i64) -> String {
        user_counts_key(&self.generation, id)
    }

    /// The keys of `video_ids`, then of `user_ids`: what [`found`] decodes.
    pub fn all(&self, video_ids: &[i64], user_ids: &[i64]) -> Vec<String> {
        video_ids.iter().map(|id| self.video(*id)).chain(user_ids.iter().map(|id| self.user(*id))).collect()
    }
}

/// The counts among `values`, read for [`Keys::all`] of the same ids (a
/// missing or malformed value is absent).
pub fn found(
    video_ids: &[i64],
    user_ids: &[i64],
    values: &[Option<String>],
) -> (HashMap<i64, VideoCounts>, HashMap<i64, UserCounts>) {
    let (video_values, user_values) = values.split_at(video_ids.len().min(values.len()));
    let videos = video_ids
        .iter()
        .zip(video_values)
        .filter_map(|(id, v)| Some((*id, decode_video(*id, v.as_deref()?)?)))
        .collect();
    let users =
        user_ids.iter().zip(user_values).filter_map(|(id, v)| Some((*id, decode_user(*id, v.as_deref()?)?))).collect();
    (videos, users)
}

/// The ids of `ids` that `found` lacks.
pub fn missing<T>(ids: &[i64], found: &HashMap<i64, T>) -> Vec<i64> {
    ids.iter().copied().filter(|id| !found.contains_key(id)).collect()
}

/// One entry per id of `ids`, zeros where `found` has none.
pub fn in_order<T: Counted>(ids: &[i64], mut found: HashMap<i64, T>) -> Vec<T> {
    ids.iter().map(|id| found.remove(id).unwrap_or_else(|| T::zero(*id))).collect()
}

/// Counts of one id.
pub trait Counted {
    /// The counts of an id without a row.
    fn zero(id: i64) -> Self;
}

impl Counted for VideoCounts {
    fn zero(id: i64) -> Self {
        VideoCounts { video_id: id, ..Default::default() }
    }
}

impl Counted for UserCounts {
    fn zero(id: i64) -> Self {
        UserCounts { user_id: id, ..Default::default() }
    }
}

pub fn encode_video(s: &VideoStats) -> String {
    versioned(s.version, &format!("{}:{}", s.favorite_count, s.comment_count))
}

pub fn encode_user(s: &UserStats) -> String {
    versioned(
        s.version,
        &format!("{}:{}:{}:{}:{}", s.follow_count, s.follower_count, s.total_favorited, s.work_count, s.favorite_count),
    )
}

/// The numbers after the version of a cached value.
fn decode(value: &str, fields: usize) -> Option<Vec<i64>> {
    let numbers: Vec<i64> = value.split(':').skip(1).map(|n| n.parse().ok()).collect::<Option<_>>()?;
    (numbers.len() == fields).then_some(numbers)
}

/// A video's counts from its cached value (`None` for one not of that form).
pub fn decode_video(id: i64, value: &str) -> Option<VideoCounts> {
    let n = decode(value, 2)?;
    Some(VideoCounts { video_id: id, favorite_count: n[0], comment_count: n[1] })
}

/// A user's counts, with the version of the row, from its cached value.
pub fn decode_user(id: i64, value: &str) -> Option<UserCounts> {
    let n = decode(value, 5)?;
    Some(user_counts(&UserStats {
        user_id: id,
        follow_count: n[0],
        follower_count: n[1],
        total_favorited: n[2],
        work_count: n[3],
        favorite_count: n[4],
        version: version_of(value),
    }))
}

pub fn video_counts(s: &VideoStats) -> VideoCounts {
    VideoCounts { video_id: s.video_id, favorite_count: s.favorite_count, comment_count: s.comment_count }
}

pub fn user_counts(s: &UserStats) -> UserCounts {
    UserCounts {
        version: s.version,
        user_id: s.user_id,
        follow_count: s.follow_count,
        follower_count: s.follower_count,
        total_favorited: s.total_favorited,
        work_count: s.work_count,
        favorite_count: s.favorite_count,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_values_round_trip() {
        let s = UserStats {
            user_id: 1,
            follow_count: 2,
            follower_count: 3,
            total_favorited: 4,
            work_count: 5,
            favorite_count: 6,
            version: 9,
        };
        assert_eq!(decode_user(1, &encode_user(&s)), Some(user_counts(&s)));
        let v = VideoStats { video_id: 7, favorite_count: 8, comment_count: 9, version: 3 };
        assert_eq!(decode_video(7, &encode_video(&v)), Some(video_counts(&v)));
        assert_eq!(decode_video(7, "3:1"), None);
        assert_eq!(decode_user(1, "garbage"), None);
    }
}

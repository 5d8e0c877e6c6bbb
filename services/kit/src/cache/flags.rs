//! The ids a user has set a pair with (the videos they like, the users they
//! follow), cached per user so that a page's `is_favorite` / `is_follow`
//! flags read no SQL.
//!
//! Every like, unlike, follow and unfollow by a user changes that user's
//! counts row (`user_stats`) in the same transaction, which raises its
//! version. An entry `<generation>:<kind>:{u<user>}` holds the user's whole set
//! as read in one statement together with that version, and is only used
//! while the counter's cached counts of the user (`<generation>:uc:{u<user>}`,
//! refreshed by every writer before it answers) are at the same version: a
//! like is visible in the next page exactly when its count is. Both are read
//! in one round trip. Fills carry the cache epoch read before the database
//! was read and never replace a newer version, so a flush or a race with a
//! writer leaves nothing stale behind.

use std::{collections::HashSet, sync::Arc, time::Duration};

use super::{Cache, Generation, rows::Local, user_counts_key, user_key, version_of, versioned};

/// How long an entry lives without being filled again.
const TTL: Duration = Duration::from_secs(3600);
/// Sets larger than this are not cached: their owners' flags are read per page.
pub const MAX_CACHED: usize = 5000;
/// The payload of a set too large to cache.
const TOO_MANY: &str = "*";

/// Sets this process keeps decoded (by user, with their version), so that an
/// entry read again at the same version is not parsed again.
const LOCAL_SETS: usize = 4096;

/// A set as decoded at a version; `None`: the set is too large to cache.
type Decoded = (i64, Option<Arc<HashSet<i64>>>);

#[derive(Clone)]
pub struct Flags {
    cache: Arc<dyn Cache>,
    generation: Generation,
    kind: &'static str,
    decoded: Arc<Local<Decoded>>,
}

/// What a lookup found.
pub enum Lookup {
    /// The user's whole set, current.
    Set(Arc<HashSet<i64>>),
    /// The set is too large to cache: read the page's flags from the database.
    TooMany,
    /// Not cached at the user's current version: read the set (with the
    /// version) from the database and [`Flags::fill`] it with this.
    Miss(Fill),
}

/// What a fill is conditional on.
pub struct Fill {
    keys: Option<(String, String)>,
}

impl Fill {
    fn none() -> Self {
        Self { keys: None }
    }
}

impl Flags {
    /// Entries named `<generation>:<kind>:{u<user id>}`.
    pub fn new(cache: Arc<dyn Cache>, generation: Generation, kind: &'static str) -> Self {
        Self { cache, generation, kind, decoded: Arc::new(Local::new(LOCAL_SETS)) }
    }

    /// The cached set of `user_id` if it is at the version of the user's
    /// counts: `version` when the caller read it from the counter (then a set
    /// this process decoded at that version costs no round trip), else the
    /// counter's cached counts read together with the set (one round trip;
    /// two when the cache was just lost).
    pub async fn get(&self, user_id: i64, version: i64) -> Lookup {
        let generation = match self.generation.current().await {
            Ok(generation) => generation,
            Err(error) => {
                tracing::warn!(%error, kind = self.kind, "database generation unknown; flags not cached");
                return Lookup::Miss(Fill::none());
            }
        };
        let key = user_key(&generation, self.kind, user_id);
        if version > 0
            && let Some(lookup) = self.known(&generation, user_id, version)
        {
            crate::metrics::cache_lookups(self.kind, 1, 0);
            return lookup;
        }
        let keys =
            if version > 0 { vec![key.clone()] } else { vec![user_counts_key(&generation, user_id), key.clone()] };
        let (epoch, values) = match self.cache.get_many_with_epoch(&keys).await {
            Ok(read) => read,
            Err(error) => {
                tracing::debug!(%error, kind = self.kind, "cache unavailable; reading flags from the database");
                return Lookup::Miss(Fill::none());
            }
        };
        let current = if version > 0 { Some(version) } else { values[0].as_deref().map(version_of) };
        if let (Some(current), Some(entry)) = (current, values.last().cloned().flatten())
            && current >= 0
            && version_of(&entry) == current
            && let Some((_, payload)) = entry.split_once(':')
            && let Some(lookup) = self.decode(&generation, user_id, current, payload)
        {
            crate::metrics::cache_lookups(self.kind, 1, 0);
            return lookup;
        }
        crate::metrics::cache_lookups(self.kind, 0, 1);
        let epoch = match epoch {
            Some(epoch) => Some(epoch),
            // Before the caller reads the database: the fill carries the epoch it saw.
            None => self.cache.epoch().await.ok(),
        };
        Lookup::Miss(Fill { keys: epoch.map(|epoch| (key, epoch)) })
    }

    /// The set this process decoded for `user_id` at `version`, if it did.
    fn known(&self, generation: &Arc<str>, user_id: i64, version: i64) -> Option<Lookup> {
        let (_, set) = self.decoded.get(generation, user_id).filter(|(known, _)| *known == version)?;
        Some(match set {
            Some(set) => Lookup::Set(set),
            None => Lookup::TooMany,
        })
    }

    /// The lookup of an entry's `payload` at `version`, decoded once per version.
    fn decode(&self, generation: &Arc<str>, user_id: i64, version: i64, payload: &str) -> Option<Lookup> {
        if let Some(lookup) = self.known(generation, user_id, version) {
            return Some(lookup);
        }
        let set = match payload {
            TOO_MANY => None,
            _ => Some(Arc::new(serde_json::from_str::<Vec<i64>>(payload).ok()?.into_iter().collect::<HashSet<i64>>())),
        };
        self.decoded.put(generation, user_id, (version, set.clone()));
        Some(match set {
            Some(set) => Lookup::Set(set),
            None => Lookup::TooMany,
        })
    }

    /// Stores the set read from the database after `fill`'s lookup missed,
    /// with the version of the user's counts row read in the same statement;
    /// `None` when the set has more than [`MAX_CACHED`] ids.
    pub async fn fill(&self, fill: &Fill, version: i64, ids: Option<&[i64]>) {
        let Some((key, epoch)) = &fill.keys else { return };
        let payload = match ids {
            Some(ids) => serde_json::to_string(ids).unwrap_or_default(),
            None => TOO_MANY.to_owned(),
        };
        let entry = [(key.clone(), versioned(version, &payload))];
        if let Err(error) = self.cache.set_versioned(epoch, &entry, TTL).await {
            tracing::warn!(%error, kind = self.kind, "could not fill the flags cache");
        }
    }
}

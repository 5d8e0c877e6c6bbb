//! How many uploads one gateway takes at once (in total, per client address,
//! per user) and the memory it lends to file parts that arrive before their
//! token: such a part is held in memory, never written anywhere, until the
//! token is checked, up to a small size per upload under one budget for all.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use douyin_kit::{Config, Error};

/// A refused upload and the reason its refusal is counted under.
#[derive(Debug)]
pub struct Refused {
    pub error: Error,
    pub reason: &'static str,
}

impl From<Error> for Refused {
    fn from(error: Error) -> Self {
        Self { reason: error.kind(), error }
    }
}

impl Refused {
    fn new(reason: &'static str, error: Error) -> Self {
        Self { error, reason }
    }
}

#[derive(Default)]
struct Counts {
    total: usize,
    addresses: HashMap<String, usize>,
    users: HashMap<i64, usize>,
    early_bytes: usize,
}

/// The limits and what is in progress against them.
pub struct Uploads {
    max_total: usize,
    max_per_address: usize,
    max_per_user: usize,
    early_per_upload: usize,
    early_budget: usize,
    counts: Mutex<Counts>,
}

/// `0` = unlimited.
fn limit(n: u32) -> usize {
    if n == 0 { usize::MAX } else { n as usize }
}

impl Uploads {
    pub fn new(config: &Config) -> Arc<Self> {
        Arc::new(Self {
            max_total: limit(config.uploads_max_in_progress),
            max_per_address: limit(config.uploads_max_per_address),
            max_per_user: limit(config.uploads_max_per_user),
            early_per_upload: usize::try_from(config.upload_early_data_bytes).unwrap_or(usize::MAX),
            early_budget: usize::try_from(config.upload_early_data_budget_bytes).unwrap_or(usize::MAX),
            counts: Mutex::default(),
        })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts an upload from `address`, refused when the gateway or that
    /// address already has as many in progress as allowed.
    pub fn start(self: &Arc<Self>, address: String) -> Result<Slot, Refused> {
        let mut counts = self.counts();
        if counts.total >= self.max_total {
            return Err(Refused::new(
                "busy_total",
                Error::RateLimited(format!(
                    "this server has {} uploads in progress, its most; retry shortly",
                    self.max_total
                )),
            ));
        }
        let from_address = counts.addresses.get(&address).copied().unwrap_or(0);
        if from_address >= self.max_per_address {
            return Err(Refused::new(
                "busy_address",
                Error::RateLimited(format!(
                    "too many uploads in progress from this address (at most {} at once); retry when one ends",
                    self.max_per_address
                )),
            ));
        }
        counts.total += 1;
        *counts.addresses.entry(address.clone()).or_default() += 1;
        Ok(Slot { uploads: self.clone(), address, user: None, early_bytes: 0 })
    }
}

/// One upload in progress; dropping it gives back what it holds.
pub struct Slot {
    uploads: Arc<Uploads>,
    address: String,
    user: Option<i64>,
    early_bytes: usize,
}

impl Slot {
    /// Counts this upload for `user_id`, refused when that user already has
    /// as many in progress as allowed.
    pub fn claim(&mut self, user_id: i64) -> Result<(), Refused> {
        if self.user.is_some() {
            return Ok(());
        }
        let max = self.uploads.max_per_user;
        let mut counts = self.uploads.counts();
        let entry = counts.users.entry(user_id).or_default();
        if *entry >= max {
            return Err(Refused::new(
                "busy_user",
                Error::RateLimited(format!(
                    "you already have {max} uploads in progress, the most at once; retry when one ends"
                )),
            ));
        }
        *entry += 1;
        drop(counts);
        self.user = Some(user_id);
        Ok(())
    }

    /// Lends `n` more bytes of memory to a file part that came before its
    /// token, refused past the per-upload size or the shared budget.
    pub fn hold_early(&mut self, n: usize) -> Result<(), Refused> {
        let per_upload = self.uploads.early_per_upload;
        let wanted = self.early_bytes.saturating_add(n);
        if wanted > per_upload {
            return Err(Refused::new(
                "data_before_token",
                Error::invalid(format!(
                    "send the token before the data part (or in the query string or an Authorization header): \
                     a file that comes before its token is taken only up to {} KiB",
                    per_upload / 1024
                )),
            ));
        }
        let mut counts = self.uploads.counts();
        if counts.early_bytes.saturating_add(n) > self.uploads.early_budget {
            return Err(Refused::new(
                "early_budget",
                Error::RateLimited(
                    "this server holds too many files sent before their token; retry shortly, or send the token \
                     before the data part"
                        .into(),
                ),
            ));
        }
        counts.early_bytes += n;
        self.early_bytes = wanted;
        Ok(())
    }

    /// The held bytes went on to the video role: their memory is free again.
    pub fn release_early(&mut self) {
        let mut counts = self.uploads.counts();
        counts.early_bytes = counts.early_bytes.saturating_sub(self.early_bytes);
        self.early_bytes = 0;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.release_early();
        let mut counts = self.uploads.counts();
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.addresses.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                counts.addresses.remove(&self.address);
            }
        }
        if let Some(user) = self.user
            && let Some(n) = counts.users.get_mut(&user)
        {
            *n -= 1;
            if *n == 0 {
                counts.users.remove(&user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uploads(total: u32, per_address: u32, per_user: u32, early: u64, budget: u64) -> Arc<Uploads> {
        Uploads::new(&Config {
            uploads_max_in_progress: total,
            uploads_max_per_address: per_address,
            uploads_max_per_user: per_user,
            upload_early_data_bytes: early,
            upload_early_data_budget_bytes: budget,
            ..Config::default()
        })
    }

    #[test]
    fn slots_are_counted_per_address_user_and_total_and_given_back() {
        let u = uploads(3, 2, 1, 10, 10);
        let a1 = u.start("a".into()).unwrap();
        let mut a2 = u.start("a".into()).unwrap();
        assert_eq!(u.start("a".into()).err().unwrap().reason, "busy_address");
        let mut b = u.start("b".into()).unwrap();
        assert_eq!(u.start("c".into()).err().unwrap().reason, "busy_total");
        a2.claim(7).unwrap();
        assert_eq!(b.claim(7).err().unwrap().reason, "busy_user");
        b.claim(8).unwrap();
        drop((a1, a2));
        let mut again = u.start("a".into()).unwrap();
        again.claim(7).unwrap();
        assert_eq!(u.counts().users.get(&7), Some(&1));
    }

    #[test]
    fn early_data_is_bounded_per_upload_and_in_total() {
        let u = uploads(0, 0, 0, 6, 10);
        let mut first = u.start("a".into()).unwrap();
        first.hold_early(6).unwrap();
        assert_eq!(first.hold_early(1).err().unwrap().reason, "data_before_token");
        let mut second = u.start("a".into()).unwrap();
        second.hold_early(4).unwrap();
        assert_eq!(second.hold_early(1).err().unwrap().reason, "early_budget");
        first.release_early();
        second.hold_early(1).unwrap();
        drop(second);
        assert_eq!(u.counts().early_bytes, 0);
    }
}

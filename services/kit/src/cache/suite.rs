//! One behaviour suite for every implementation of [`Cache`] (the Redis run
//! lives in the integration tests, which need a server). Each function uses
//! keys of its own except `writes_read_before_a_flush_are_dropped`, which
//! clears the cache.

use std::time::Duration;

use super::{Cache, Ranked, versioned};

const TTL: Duration = Duration::from_secs(60);

fn ranked(id: i64, score: i64, version: i64) -> Ranked {
    Ranked { id, score, version }
}

pub async fn versioned_writes_never_go_back(cache: &dyn Cache) {
    let epoch = cache.epoch().await.unwrap();
    assert_eq!(cache.epoch().await.unwrap(), epoch, "the epoch stays until the cache is lost");
    let key = format!("suite:v:{}", uuid::Uuid::new_v4());
    assert!(cache.set_versioned(&epoch, &[(key.clone(), versioned(2, "b"))], TTL).await.unwrap());
    assert!(cache.set_versioned(&epoch, &[(key.clone(), versioned(1, "a"))], TTL).await.unwrap());
    assert_eq!(cache.get_many(std::slice::from_ref(&key)).await.unwrap(), vec![Some("2:b".to_owned())]);
    cache.set_versioned(&epoch, &[(key.clone(), versioned(3, "c"))], TTL).await.unwrap();
    let missing = format!("suite:missing:{}", uuid::Uuid::new_v4());
    let (seen, values) = cache.get_many_with_epoch(&[key, missing]).await.unwrap();
    assert_eq!(seen.as_deref(), Some(epoch.as_str()));
    assert_eq!(values, vec![Some("3:c".to_owned()), None]);
}

pub async fn writes_read_before_a_flush_are_dropped(cache: &dyn Cache) {
    let key = format!("suite:f:{}", uuid::Uuid::new_v4());
    let rank = format!("suite:fz:{}", uuid::Uuid::new_v4());
    let before = cache.epoch().await.unwrap();
    assert!(cache.set_versioned(&before, &[(key.clone(), versioned(5, "new"))], TTL).await.unwrap());
    cache.clear().await.unwrap();
    let (seen, values) = cache.get_many_with_epoch(std::slice::from_ref(&key)).await.unwrap();
    assert_eq!(values, vec![None], "a flush forgets values");
    // One Redis forgets the epoch; a cluster moves it on at once.
    assert_ne!(seen.as_deref(), Some(before.as_str()), "a flush ends the epoch the values were read in");

    // A value read from the database before the flush must not come back.
    assert!(!cache.set_versioned(&before, &[(key.clone(), versioned(4, "old"))], TTL).await.unwrap());
    assert!(!cache.zadd_versioned(&before, &[(rank.as_str(), &[ranked(1, 4, 4)])]).await.unwrap());
    assert_eq!(cache.get_many(std::slice::from_ref(&key)).await.unwrap(), vec![None]);
    assert!(cache.ztop(&rank, 10).await.unwrap().is_empty());

    let after = cache.epoch().await.unwrap();
    assert_ne!(after, before, "a lost cache starts a new epoch");
    assert!(cache.set_versioned(&after, &[(key.clone(), versioned(5, "new"))], TTL).await.unwrap());
    assert!(cache.zadd_versioned(&after, &[(rank.as_str(), &[ranked(1, 5, 5)])]).await.unwrap());
    assert_eq!(cache.get_many(std::slice::from_ref(&key)).await.unwrap(), vec![Some("5:new".to_owned())]);
    assert_eq!(cache.ztop(&rank, 10).await.unwrap(), vec![(1, 5)]);
}

pub async fn sorted_sets_rank_by_score(cache: &dyn Cache) {
    let epoch = cache.epoch().await.unwrap();
    let key = format!("suite:z:{}", uuid::Uuid::new_v4());
    let other = format!("suite:z:{}", uuid::Uuid::new_v4());
    let sets: [(&str, &[Ranked]); 2] =
        [(key.as_str(), &[ranked(1, 5, 1), ranked(2, 9, 1), ranked(3, 5, 1)]), (other.as_str(), &[ranked(7, 1, 1)])];
    assert!(cache.zadd_versioned(&epoch, &sets).await.unwrap());
    cache.zadd_versioned(&epoch, &[(key.as_str(), &[ranked(1, 10, 2)])]).await.unwrap();
    // An older version of a member never replaces a newer one.
    cache.zadd_versioned(&epoch, &[(key.as_str(), &[ranked(1, 1, 1), ranked(2, 0, 1)])]).await.unwrap();
    assert_eq!(cache.ztop(&key, 2).await.unwrap(), vec![(1, 10), (2, 9)]);
    assert_eq!(cache.ztop(&key, 10).await.unwrap(), vec![(1, 10), (2, 9), (3, 5)]);
    assert_eq!(cache.ztop(&other, 10).await.unwrap(), vec![(7, 1)]);
    assert!(cache.ztop("suite:z:none", 10).await.unwrap().is_empty());

    // Ties go to the lower id, also where the limit cuts through them
    // (and 9 < 10 < 11 numerically, not as text).
    let ties = format!("suite:zt:{}", uuid::Uuid::new_v4());
    let members: Vec<Ranked> = (1..=12).rev().map(|id| ranked(id, 3, 1)).collect();
    cache.zadd_versioned(&epoch, &[(ties.as_str(), &members)]).await.unwrap();
    cache.zadd_versioned(&epoch, &[(ties.as_str(), &[ranked(11, 4, 2)])]).await.unwrap();
    assert_eq!(cache.ztop(&ties, 4).await.unwrap(), vec![(11, 4), (1, 3), (2, 3), (3, 3)]);
    let ids: Vec<i64> = cache.ztop(&ties, 12).await.unwrap().into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, vec![11, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12]);
}

pub async fn sorted_sets_read_below_a_score(cache: &dyn Cache) {
    let epoch = cache.epoch().await.unwrap();
    let key = format!("suite:zb:{}", uuid::Uuid::new_v4());
    assert_eq!(cache.zbelow(&key, 100, 10, 0).await.unwrap(), super::Slice::default(), "a missing set");
    let members = [ranked(1, 1_600_000_000_010, 0), ranked(2, 1_600_000_000_020, 0), ranked(3, 1_600_000_000_030, 0)];
    cache.zadd_versioned(&epoch, &[(key.as_str(), &members), (key.as_str(), &[ranked(0, 5, 7)])]).await.unwrap();
    let slice = cache.zbelow(&key, 1_600_000_000_030, 10, 0).await.unwrap();
    assert_eq!(slice.members, vec![(2, 1_600_000_000_020), (1, 1_600_000_000_010), (0, 5)], "strictly below");
    assert_eq!(slice.probe, Some((5, 7)));
    let slice = cache.zbelow(&key, i64::MAX, 2, 9).await.unwrap();
    assert_eq!(slice.members, vec![(3, 1_600_000_000_030), (2, 1_600_000_000_020)]);
    assert_eq!(slice.probe, None, "not a member");
    assert!(cache.zbelow(&key, 5, 10, 0).await.unwrap().members.is_empty());
}

pub async fn hits_count_within_a_window(cache: &dyn Cache) {
    let key = format!("suite:h:{}", uuid::Uuid::new_v4());
    let window = Duration::from_secs(30);
    assert_eq!(cache.hit(&key, window).await.unwrap().0, 1);
    let (n, left) = cache.hit(&key, window).await.unwrap();
    assert_eq!(n, 2);
    assert!(left <= window && left > Duration::from_secs(20));
}

pub async fn buckets_take_up_to_their_burst_then_refill(cache: &dyn Cache) {
    use super::Bucket;
    let key = format!("suite:b:{}", uuid::Uuid::new_v4());
    // One token a minute: nothing refills during the test.
    let slow = Bucket { burst: 3, per_sec: 1.0 / 60.0 };
    assert_eq!(cache.take(&key, slow, 0).await.unwrap().tokens, 3.0, "a new bucket is full; a look takes nothing");
    for left in [2.0, 1.0, 0.0] {
        let taken = cache.take(&key, slow, 1).await.unwrap();
        assert!(taken.allowed);
        assert!((taken.tokens - left).abs() < 0.01, "{} left, expected {left}", taken.tokens);
    }
    let refused = cache.take(&key, slow, 1).await.unwrap();
    assert!(!refused.allowed, "an empty bucket refuses");
    assert!(refused.wait > Duration::from_secs(50) && refused.wait <= Duration::from_secs(60), "{:?}", refused.wait);
    assert!(cache.take(&key, slow, -1).await.unwrap().allowed, "a token given back");
    assert!(cache.take(&key, slow, 1).await.unwrap().allowed, "is there to take");
    for _ in 0..10 {
        cache.take(&key, slow, -1).await.unwrap();
    }
    assert!(cache.take(&key, slow, 0).await.unwrap().tokens <= 3.0, "never more than the burst");

    // A fast bucket refills while the test waits for it (polled, no fixed sleep).
    let other = format!("suite:b:{}", uuid::Uuid::new_v4());
    let fast = Bucket { burst: 2, per_sec: 50.0 };
    assert!(cache.take(&other, fast, 2).await.unwrap().allowed);
    assert!(!cache.take(&other, fast, 2).await.unwrap().allowed);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !cache.take(&other, fast, 1).await.unwrap().allowed {
        assert!(std::time::Instant::now() < deadline, "the bucket never refilled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every function above, in an order that keeps them independent.
pub async fn all(cache: &dyn Cache) {
    versioned_writes_never_go_back(cache).await;
    sorted_sets_rank_by_score(cache).await;
    sorted_sets_read_below_a_score(cache).await;
    hits_count_within_a_window(cache).await;
    buckets_take_up_to_their_burst_then_refill(cache).await;
    writes_read_before_a_flush_are_dropped(cache).await;
}

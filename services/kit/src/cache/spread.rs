//! Sorted sets spread over parts in a Redis Cluster. A ranking is written on
//! every counted like or follow; as one sorted set it would put that whole
//! write load on one master. A set whose key ends with [`SUFFIX`] is kept by
//! the cluster cache as [`PARTS`] sets, a member in the part of its id (each
//! part in its own hash slot, so on up to [`PARTS`] masters); a read asks
//! every part and merges. Other backends keep it as one set.

/// Marks a sorted set key as spread.
pub const SUFFIX: &str = "~spread";
/// How many parts a spread set has.
pub const PARTS: i64 = 8;

/// The keys of the parts of `key` (just `key` when it is not spread).
pub fn parts(key: &str) -> Vec<String> {
    if key.ends_with(SUFFIX) { (0..PARTS).map(|p| format!("{key}#{p}")).collect() } else { vec![key.to_owned()] }
}

/// The part of `key` that holds member `id`.
pub fn part(key: &str, id: i64) -> String {
    if key.ends_with(SUFFIX) { format!("{key}#{}", id.rem_euclid(PARTS)) } else { key.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_go_to_one_part_of_a_spread_set() {
        let key = format!("g:rank:videos{SUFFIX}");
        assert_eq!(parts(&key).len(), PARTS as usize);
        assert!(parts(&key).contains(&part(&key, 13)));
        assert_eq!(parts("g:feed"), vec!["g:feed".to_owned()]);
        assert_eq!(part("g:feed", 13), "g:feed");
    }
}

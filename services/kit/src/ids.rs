//! Id lists as they arrive in batch calls.

/// Positive ids of `ids`, first occurrence kept, order kept.
pub fn unique(ids: &[i64]) -> Vec<i64> {
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    ids.iter().copied().filter(|id| *id > 0 && seen.insert(*id)).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn keeps_first_positive_occurrences() {
        assert_eq!(super::unique(&[3, 1, 3, -2, 0, 2, 1]), vec![3, 1, 2]);
    }
}

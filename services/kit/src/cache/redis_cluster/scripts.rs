//! The cluster cache's Lua scripts (each on keys of one hash slot) and how
//! keys are grouped into buckets.

use super::BUCKETS;

/// The current epoch, made (as the Redis clock's microseconds) when missing.
/// Returns it and whether it was made.
pub(super) const EPOCH: &str = r"
local e = redis.call('GET', KEYS[1])
if e then return {e, 0} end
local t = redis.call('TIME')
e = t[1] .. string.format('%06d', tonumber(t[2]))
redis.call('SET', KEYS[1], e)
return {e, 1}
";

/// A new epoch, larger than the current one and than the Redis clock.
pub(super) const RENEW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local e = string.format('%.0f', math.max(now, cur + 1))
redis.call('SET', KEYS[1], e)
return e
";

/// KEYS: the bucket's marker, then value keys of that bucket. ARGV: the epoch,
/// the ttl, one versioned value per key. Returns -1 when the marker is
/// missing, 0 when it is newer than the epoch, 1 when written.
pub(super) const SET_VERSIONED: &str = r"
local m = redis.call('GET', KEYS[1])
if not m then return -1 end
local e = tonumber(ARGV[1])
if not e or tonumber(m) > e then return 0 end
local ttl = tonumber(ARGV[2])
for i = 2, #KEYS do
  local new = ARGV[i + 1]
  local newv = tonumber(string.match(new, '^(%-?%d+):'))
  local cur = redis.call('GET', KEYS[i])
  local curv = -1
  if cur then curv = tonumber(string.match(cur, '^(%-?%d+):')) or -1 end
  if newv and newv > curv then
    redis.call('SET', KEYS[i], new, 'EX', ttl)
  end
end
return 1
";

/// KEYS: the bucket's marker, a sorted set, its member versions. ARGV: the
/// epoch, then (member, score, version) triples. Returns as [`SET_VERSIONED`].
pub(super) const ZADD_VERSIONED: &str = r"
local m = redis.call('GET', KEYS[1])
if not m then return -1 end
local e = tonumber(ARGV[1])
if not e or tonumber(m) > e then return 0 end
for a = 2, #ARGV, 3 do
  local mem, s, v = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  local cur = tonumber(redis.call('HGET', KEYS[3], mem) or '-1')
  if v > cur then
    redis.call('ZADD', KEYS[2], s, mem)
    redis.call('HSET', KEYS[3], mem, v)
  end
end
return 1
";

/// Forgets this node's entries of the deployment whose keys match ARGV[1]
/// (prefix ARGV[2]), sent to every master. Values go; each bucket marker stays
/// and becomes the node's clock (microseconds, as epochs are), newer than any
/// epoch read before the clear, so no write read before it lands here. A
/// missing marker stays missing (that bucket was lost). The epoch key is left
/// to the caller, which moves it on past every marker once all masters are
/// done: unlike deleting the markers, this costs no marking of every bucket
/// afterwards.
pub(super) const CLEAR: &str = r"#!lua flags=allow-cross-slot-keys
local t = redis.call('TIME')
local now = t[1] .. string.format('%06d', tonumber(t[2]))
local p = ARGV[2]
local epoch_key = p .. ':{epoch}'
local cursor = '0'
local n = 0
repeat
  local page = redis.call('SCAN', cursor, 'MATCH', ARGV[1], 'COUNT', 1000)
  cursor = page[1]
  for _, key in ipairs(page[2]) do
    if string.match(string.sub(key, #p + 1), '^:{b%d+}:epoch$') then
      redis.call('SET', key, now)
    elseif key ~= epoch_key then
      redis.call('DEL', key)
      n = n + 1
    end
  end
until cursor == '0'
return n
";

/// The bucket of `key`: of its first non-empty `{…}` group, else of the key.
pub fn bucket_of(key: &str) -> u64 {
    let group = key
        .split_once('{')
        .and_then(|(_, rest)| rest.split_once('}'))
        .map(|(group, _)| group)
        .filter(|group| !group.is_empty())
        .unwrap_or(key);
    // FNV-1a: stable across processes and versions.
    let hash = group.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    hash % BUCKETS
}

/// Members of several parts, highest score first (ties: lower id first).
pub(super) fn merged(parts: Vec<Vec<(i64, i64)>>, limit: usize) -> Vec<(i64, i64)> {
    let mut all: Vec<(i64, i64)> = parts.into_iter().flatten().collect();
    all.sort_by_key(|(id, score)| (std::cmp::Reverse(*score), *id));
    all.truncate(limit);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_one_group_share_a_bucket() {
        assert_eq!(bucket_of("g:uc:{u42}"), bucket_of("g:likes:{u42}"));
        assert_eq!(bucket_of("a{}b"), bucket_of("a{}b"));
        assert!(bucket_of("g:vc:1") < BUCKETS);
        let spread: std::collections::HashSet<u64> = (0..200).map(|i| bucket_of(&format!("g:vc:{i}"))).collect();
        assert!(spread.len() > 150, "ids spread over the buckets");
    }
}

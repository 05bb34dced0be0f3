//! The order of tags: semantic versions (an optional leading `v`) as versions, after the other
//! tags, which keep the order of their names.

use std::cmp::Ordering;

/// A tag with its sort key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    name: String,
    version: Option<semver::Version>,
}

impl Tag {
    /// A tag, parsed as a version when it is one (`1.2.3`, `v1.2.3`, `1.2`, `1`).
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            version: parse_version(name),
        }
    }

    /// The tag as the registry lists it.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// `1` and `1.2` are read as `1.0.0` and `1.2.0`, so `1.10` sorts after `1.9`.
fn parse_version(name: &str) -> Option<semver::Version> {
    let t = name.strip_prefix('v').unwrap_or(name);
    if let Ok(v) = semver::Version::parse(t) {
        return Some(v);
    }
    let (core, rest) = match t.find(['-', '+']) {
        Some(i) => t.split_at(i),
        None => (t, ""),
    };
    let parts: Vec<&str> = core.split('.').collect();
    if parts.is_empty() || parts.len() > 2 || parts.iter().any(|p| p.parse::<u64>().is_err()) {
        return None;
    }
    let padded = match parts.len() {
        1 => format!("{core}.0.0{rest}"),
        _ => format!("{core}.0{rest}"),
    };
    semver::Version::parse(&padded).ok()
}

impl Ord for Tag {
    fn cmp(&self, other: &Self) -> Ordering {
        match (&self.version, &other.version) {
            (Some(a), Some(b)) => a.cmp(b).then_with(|| self.name.cmp(&other.name)),
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (None, None) => self.name.cmp(&other.name),
        }
    }
}

impl PartialOrd for Tag {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The tags after `last` (all when `None`), oldest first; the first check (`last` is `None`)
/// gets only the newest, and at most `limit` are returned (the newest ones).
pub fn newer(mut tags: Vec<Tag>, last: Option<&str>, limit: usize) -> Vec<Tag> {
    tags.sort();
    tags.dedup();
    let after: Vec<Tag> = match last {
        None => tags.pop().into_iter().collect(),
        Some(l) => {
            let l = Tag::new(l);
            tags.into_iter().filter(|t| *t > l).collect()
        }
    };
    let skip = after.len().saturating_sub(limit);
    after.into_iter().skip(skip).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(t: &[Tag]) -> Vec<&str> {
        t.iter().map(Tag::name).collect()
    }

    #[test]
    fn versions_sort_as_versions_after_other_tags() {
        let tags = [
            "1.10.0",
            "latest",
            "1.9.0",
            "v1.2",
            "2",
            "1.10.0-rc.1",
            "edge",
        ]
        .into_iter()
        .map(Tag::new)
        .collect();
        let all = newer(tags, Some(""), 100);
        assert_eq!(
            names(&all),
            [
                "edge",
                "latest",
                "v1.2",
                "1.9.0",
                "1.10.0-rc.1",
                "1.10.0",
                "2"
            ]
        );
    }

    #[test]
    fn the_first_check_returns_the_newest_and_later_ones_what_is_newer() {
        let tags = || {
            ["1.0.0", "1.1.0", "1.2.0"]
                .into_iter()
                .map(Tag::new)
                .collect()
        };
        assert_eq!(names(&newer(tags(), None, 100)), ["1.2.0"]);
        assert_eq!(
            names(&newer(tags(), Some("1.0.0"), 100)),
            ["1.1.0", "1.2.0"]
        );
        assert_eq!(
            names(&newer(tags(), Some("1.2.0"), 100)),
            Vec::<&str>::new()
        );
        // A deleted tag still orders: what is newer than it comes back.
        assert_eq!(
            names(&newer(tags(), Some("1.0.5"), 100)),
            ["1.1.0", "1.2.0"]
        );
        assert_eq!(names(&newer(tags(), Some("0.1.0"), 2)), ["1.1.0", "1.2.0"]);
    }
}

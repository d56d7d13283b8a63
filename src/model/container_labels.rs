//! A container's labels as the inventory keeps them: in two allocations.
//!
//! At 10,000 containers, a `HashMap<String, String>` of the five labels
//! teal reads was eleven allocations each (the table, a key and a value
//! per label), 7 MB of the heap counting glibc's minimum chunk per string.

use std::fmt;

/// Label keys and their values, sorted by key: one string holding them
/// all, and where each key and each value ends in it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Labels {
    text: Box<str>,
    /// Two per label: the end of its key, then of its value.
    ends: Box<[u32]>,
}

impl Labels {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// In key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut start = 0;
        self.ends.chunks_exact(2).map(move |ends| {
            let (key_end, value_end) = (ends[0] as usize, ends[1] as usize);
            let pair = (&self.text[start..key_end], &self.text[key_end..value_end]);
            start = value_end;
            pair
        })
    }

    /// Keeps the labels whose key `keep` says.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        *self = self.iter().filter(|(key, _)| keep(key)).collect();
    }

    /// Sets `key` to `value`, in place of its value if it has one. Tests
    /// build facts label by label; teal itself only collects and retains.
    #[cfg(test)]
    pub fn insert(&mut self, key: impl AsRef<str>, value: impl AsRef<str>) {
        let (key, value) = (key.as_ref(), value.as_ref());
        *self = self.iter().filter(|(k, _)| *k != key).chain([(key, value)]).collect();
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Labels {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        let mut pairs: Vec<(K, V)> = pairs.into_iter().collect();
        pairs.sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
        // A key given twice keeps its last value, as a map's insert does.
        pairs.reverse();
        pairs.dedup_by(|a, b| a.0.as_ref() == b.0.as_ref());
        pairs.reverse();
        let mut text = String::with_capacity(pairs.iter().map(|(k, v)| k.as_ref().len() + v.as_ref().len()).sum());
        let mut ends = Vec::with_capacity(pairs.len() * 2);
        for (key, value) in &pairs {
            for part in [key.as_ref(), value.as_ref()] {
                text.push_str(part);
                // Docker refuses labels of 4 GiB long before this could wrap.
                ends.push(u32::try_from(text.len()).expect("labels under 4 GiB"));
            }
        }
        Labels {
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
        }
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_finds_its_own_value() {
        let labels: Labels = [("teal.service", "web"), ("teal.port", "8080"), ("", ""), ("a", "")]
            .into_iter()
            .collect();
        assert_eq!(labels.get("teal.service"), Some("web"));
        assert_eq!(labels.get("teal.port"), Some("8080"));
        assert_eq!(labels.get(""), Some(""));
        assert_eq!(labels.get("a"), Some(""));
        assert_eq!(labels.get("teal"), None);
        assert_eq!(
            labels.iter().collect::<Vec<_>>(),
            [("", ""), ("a", ""), ("teal.port", "8080"), ("teal.service", "web")]
        );
    }

    #[test]
    fn equal_whatever_the_order_they_came_in() {
        let a: Labels = [("x", "1"), ("y", "2")].into_iter().collect();
        let b: Labels = [("y", "2"), ("x", "1")].into_iter().collect();
        assert_eq!(a, b);
        // Where a key ends and its value starts counts, not the text alone.
        let c: Labels = [("x1", ""), ("y", "2")].into_iter().collect();
        assert_ne!(a, c);
    }

    #[test]
    fn insert_replaces_and_retain_filters() {
        let mut labels: Labels = [("x", "1"), ("y", "2"), ("x", "3")].into_iter().collect();
        assert_eq!(labels.get("x"), Some("3"));
        labels.insert("y", "4");
        labels.insert("z", "5");
        assert_eq!(format!("{labels:?}"), r#"{"x": "3", "y": "4", "z": "5"}"#);
        labels.retain(|key| key != "x");
        assert_eq!(labels.iter().collect::<Vec<_>>(), [("y", "4"), ("z", "5")]);
    }
}

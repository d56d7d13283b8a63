//! `haproxy -c` verdicts remembered by the text checked, so an identical
//! config is never checked twice (each check is a whole HAProxy start-up).

use std::collections::{HashMap, VecDeque};

use sha2::{Digest, Sha256};

/// How many verdicts are kept; the oldest go first.
const KEPT: usize = 64;

#[derive(Debug, Default)]
pub struct Verdicts {
    by_text: HashMap<[u8; 32], Result<(), String>>,
    order: VecDeque<[u8; 32]>,
}

impl Verdicts {
    /// The verdict on `text`, if it was checked before.
    pub fn get(&self, text: &str) -> Option<Result<(), String>> {
        self.by_text.get(&digest(text)).cloned()
    }

    pub fn insert(&mut self, text: &str, verdict: Result<(), String>) {
        let key = digest(text);
        if self.by_text.insert(key, verdict).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > KEPT {
            if let Some(oldest) = self.order.pop_front() {
                self.by_text.remove(&oldest);
            }
        }
    }
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_by_text_and_forgets_the_oldest() {
        let mut verdicts = Verdicts::default();
        verdicts.insert("a", Err("no".into()));
        verdicts.insert("b", Ok(()));
        assert_eq!(verdicts.get("a"), Some(Err("no".into())));
        assert_eq!(verdicts.get("b"), Some(Ok(())));
        assert_eq!(verdicts.get("c"), None);
        for i in 0..KEPT {
            verdicts.insert(&format!("x{i}"), Ok(()));
        }
        assert_eq!(verdicts.get("a"), None);
        assert_eq!(verdicts.by_text.len(), KEPT);
    }
}

//! A change list: for each key, the rule before and after one deploy (or
//! sweep). Applying it puts every `after` in place; its inverse puts every
//! `before` back, which is how a deploy whose store commit failed is undone.

use crate::model::{List, Rule, Target};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeList {
    upserts: Vec<Rule>,
    removals: Vec<(Target, List)>,
    undo_upserts: Vec<Rule>,
    undo_removals: Vec<(Target, List)>,
}

impl ChangeList {
    /// The changes as (before, after) pairs of one key each; a pair with
    /// neither side is no change and is left out.
    pub fn new(changes: impl IntoIterator<Item = (Option<Rule>, Option<Rule>)>) -> Self {
        let mut list = Self::default();
        for (before, after) in changes {
            let Some(key) = after.as_ref().or(before.as_ref()).map(Rule::key) else {
                continue;
            };
            match after {
                Some(r) => list.upserts.push(r),
                None => list.removals.push(key),
            }
            match before {
                Some(r) => list.undo_upserts.push(r),
                None => list.undo_removals.push(key),
            }
        }
        list
    }

    /// Removals only: what leaves the kernel, each with its rule as it was.
    pub fn removing(rules: impl IntoIterator<Item = Rule>) -> Self {
        Self::new(rules.into_iter().map(|r| (Some(r), None)))
    }

    /// The same keys, put back as they were.
    pub fn inverse(&self) -> Self {
        Self {
            upserts: self.undo_upserts.clone(),
            removals: self.undo_removals.clone(),
            undo_upserts: self.upserts.clone(),
            undo_removals: self.removals.clone(),
        }
    }

    /// The rules this list installs or changes.
    pub fn upserts(&self) -> &[Rule] {
        &self.upserts
    }

    /// The keys this list takes out.
    pub fn removals(&self) -> &[(Target, List)] {
        &self.removals
    }

    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.removals.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: u32, t: &str, monitor: bool) -> Rule {
        Rule {
            id,
            target: Target::parse(t).unwrap(),
            list: List::Deny,
            monitor,
            expires_ms: None,
        }
    }

    #[test]
    fn the_inverse_puts_every_key_back() {
        let added = rule(1, "192.0.2.1", false);
        let before = rule(2, "192.0.2.2", false);
        let after = rule(2, "192.0.2.2", true);
        let removed = rule(3, "192.0.2.0/24", false);
        let list = ChangeList::new([
            (None, Some(added)),
            (Some(before), Some(after)),
            (Some(removed), None),
            (None, None),
        ]);
        assert_eq!(list.upserts(), [added, after]);
        assert_eq!(list.removals(), [removed.key()]);
        let undo = list.inverse();
        assert_eq!(undo.upserts(), [before, removed]);
        assert_eq!(undo.removals(), [added.key()]);
        assert_eq!(undo.inverse(), list);
        assert!(ChangeList::new([]).is_empty());
    }
}

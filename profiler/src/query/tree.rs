//! Folded stacks as a tree for the API: children largest first, at most
//! `max_nodes` nodes; what the budget leaves out is folded into one
//! explicit `other` node per parent, so every total still adds up.

use std::collections::BTreeMap;

use serde::Serialize;

/// One node: a frame (or a group at the root's children) and its total.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    pub name: String,
    pub value: u64,
    /// Value of the frame itself (not in its children).
    #[serde(rename = "self")]
    pub self_value: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<Node>,
    /// An `other` node: children left out by the node budget; ask for the
    /// parent's subtree (`focus`) to see them.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub other: bool,
}

/// Name of the node holding what the budget left out.
pub const OTHER: &str = "[other]";

#[derive(Default)]
struct Trie {
    value: u64,
    children: BTreeMap<String, Trie>,
}

/// The tree of `folded` (`frame;frame;… count` lines as a map), under the
/// path `focus` (frames from the root; empty for all), with at most
/// `max_nodes` nodes besides the root.
pub fn build(folded: &BTreeMap<String, u64>, focus: &[String], max_nodes: usize) -> Node {
    let mut root = Trie::default();
    for (line, &n) in folded {
        let frames: Vec<&str> = line.split(';').collect();
        if frames.len() < focus.len() || frames.iter().zip(focus).any(|(f, want)| *f != want) {
            continue;
        }
        root.value += n;
        let mut t = &mut root;
        for f in &frames[focus.len()..] {
            t = t.children.entry((*f).to_owned()).or_default();
            t.value += n;
        }
    }
    // The budget goes to the largest nodes: a node is never smaller than a
    // descendant, so the kept nodes hang together from the root.
    let mut values: Vec<u64> = Vec::new();
    collect(&root, &mut values);
    values.sort_unstable_by(|a, b| b.cmp(a));
    let cut = values.get(max_nodes.saturating_sub(1)).copied().unwrap_or(0);
    let mut budget = max_nodes;
    let name = focus.last().cloned().unwrap_or_else(|| "all".to_owned());
    convert(name, &root, cut, &mut budget)
}

fn collect(t: &Trie, out: &mut Vec<u64>) {
    for c in t.children.values() {
        out.push(c.value);
        collect(c, out);
    }
}

fn convert(name: String, t: &Trie, cut: u64, budget: &mut usize) -> Node {
    let mut kids: Vec<(&String, &Trie)> = t.children.iter().collect();
    kids.sort_by(|a, b| b.1.value.cmp(&a.1.value).then_with(|| a.0.cmp(b.0)));
    let mut children = Vec::new();
    let mut left_out = 0u64;
    for (n, c) in kids {
        if c.value >= cut && *budget > 0 {
            *budget -= 1;
            children.push(convert(n.clone(), c, cut, budget));
        } else {
            left_out += c.value;
        }
    }
    let in_children: u64 = t.children.values().map(|c| c.value).sum();
    if left_out > 0 {
        children.push(Node {
            name: OTHER.into(),
            value: left_out,
            self_value: left_out,
            children: vec![],
            other: true,
        });
    }
    Node { name, value: t.value, self_value: t.value.saturating_sub(in_children), children, other: false }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folded(lines: &[(&str, u64)]) -> BTreeMap<String, u64> {
        lines.iter().map(|(l, n)| ((*l).to_owned(), *n)).collect()
    }

    fn total(n: &Node) -> u64 {
        n.self_value + n.children.iter().map(total).sum::<u64>()
    }

    #[test]
    fn a_budget_folds_the_smallest_into_other_and_keeps_totals() {
        let f = folded(&[("a;b;c", 5), ("a;b;d", 3), ("a;e", 1), ("f", 1)]);
        let all = build(&f, &[], 100);
        assert_eq!(all.value, 10);
        assert_eq!(total(&all), 10);
        assert_eq!(all.children[0].name, "a");
        let small = build(&f, &[], 3);
        assert_eq!(total(&small), 10, "{small:#?}");
        let other: Vec<&Node> = small.children.iter().filter(|n| n.other).collect();
        assert_eq!(other.len(), 1, "f went into other at the root: {small:#?}");
        let focused = build(&f, &["a".into(), "b".into()], 100);
        assert_eq!((focused.name.as_str(), focused.value, focused.children.len()), ("b", 8, 2));
    }
}

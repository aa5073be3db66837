//! Form field names to nested trees, with RoadRunner's rules (spec 3.4).

use super::PayloadError;
use serde_json::{Map, Value};
use std::collections::btree_map::{BTreeMap, Entry};

/// Keys with more levels than this are dropped (RoadRunner's `MaxLevel`).
pub const MAX_DEPTH: usize = 127;

/// RoadRunner's `FetchIndexes`: `a[b][]` gives `["a", "b", ""]`.
///
/// Spaces are ignored anywhere in the name. The scanner is RoadRunner's, quirks
/// included: `a[b]c` gives `["a", "b", "c"]` and `[a]` gives `["", "a"]`.
pub(super) fn fetch_indexes(name: &str) -> Vec<String> {
    #[derive(PartialEq)]
    enum Pos {
        InName,
        Opened,
        Closed,
    }
    let mut keys = vec![String::new()];
    let mut pos = Pos::InName;
    for c in name.chars() {
        match c {
            ' ' => {}
            '[' => pos = Pos::Opened,
            ']' => {
                if pos == Pos::Opened {
                    keys.push(String::new());
                }
                pos = Pos::Closed;
            }
            c => {
                if pos != Pos::InName {
                    keys.push(String::new());
                }
                if let Some(last) = keys.last_mut() {
                    last.push(c);
                }
                pos = Pos::InName;
            }
        }
    }
    keys
}

/// What happens when a plain key is sent again.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Repeat {
    /// Form values: the last value wins.
    Last,
    /// Files: the first file wins.
    First,
}

enum Node<L> {
    Leaf(L),
    List(Vec<L>),
    Branch(BTreeMap<String, Node<L>>),
}

/// A tree of form fields with leaves of type `L`.
pub(super) struct Tree<L> {
    root: BTreeMap<String, Node<L>>,
    repeat: Repeat,
}

impl<L> Tree<L> {
    pub(super) fn new(repeat: Repeat) -> Tree<L> {
        Tree {
            root: BTreeMap::new(),
            repeat,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.root.is_empty()
    }

    /// Adds `value` under the field name `name`. `Ok(false)` when the value was
    /// not kept: the name is too deep, or (for [`Repeat::First`]) the place is
    /// already taken.
    ///
    /// Rules: `a` is a leaf; `a[]` appends to a list; `a[b]…` descends into
    /// groups. A leaf and a list at the same place replace each other (or, with
    /// `Repeat::First`, the first stays). A group meeting a leaf or list, either
    /// way round, is an error: RoadRunner fails such a request in the order it
    /// sees them, and since Go's map order is random we fail it always.
    pub(super) fn push(&mut self, name: &str, value: L) -> Result<bool, PayloadError> {
        let keys = fetch_indexes(name);
        if keys.len() > MAX_DEPTH {
            return Ok(false);
        }
        let collision = || PayloadError::MultipleValues {
            key: name.to_string(),
        };
        let mut level = &mut self.root;
        let mut rest = keys.as_slice();
        loop {
            match rest {
                [key] => {
                    return Ok(match level.entry(key.clone()) {
                        Entry::Vacant(e) => {
                            e.insert(Node::Leaf(value));
                            true
                        }
                        Entry::Occupied(mut e) => match (e.get(), self.repeat) {
                            (Node::Branch(_), _) => return Err(collision()),
                            (_, Repeat::First) => false,
                            (_, Repeat::Last) => {
                                e.insert(Node::Leaf(value));
                                true
                            }
                        },
                    });
                }
                [key, last] if last.is_empty() => {
                    return Ok(match level.entry(key.clone()) {
                        Entry::Vacant(e) => {
                            e.insert(Node::List(vec![value]));
                            true
                        }
                        Entry::Occupied(mut e) => match (e.get_mut(), self.repeat) {
                            (Node::Branch(_), _) => return Err(collision()),
                            (Node::List(items), _) => {
                                items.push(value);
                                true
                            }
                            (Node::Leaf(_), Repeat::First) => false,
                            (Node::Leaf(_), Repeat::Last) => {
                                e.insert(Node::List(vec![value]));
                                true
                            }
                        },
                    });
                }
                [key, tail @ ..] => {
                    let node = level
                        .entry(key.clone())
                        .or_insert_with(|| Node::Branch(BTreeMap::new()));
                    let Node::Branch(next) = node else {
                        return Err(collision());
                    };
                    level = next;
                    rest = tail;
                }
                [] => return Ok(false),
            }
        }
    }

    /// The tree as JSON, leaves turned into values by `leaf`.
    pub(super) fn into_value(self, leaf: &mut impl FnMut(L) -> Value) -> Value {
        branch_value(self.root, leaf)
    }
}

fn branch_value<L>(branch: BTreeMap<String, Node<L>>, leaf: &mut impl FnMut(L) -> Value) -> Value {
    let mut m = Map::new();
    for (k, node) in branch {
        let v = match node {
            Node::Leaf(l) => leaf(l),
            Node::List(items) => Value::Array(items.into_iter().map(&mut *leaf).collect()),
            Node::Branch(b) => branch_value(b, leaf),
        };
        m.insert(k, v);
    }
    Value::Object(m)
}

/// The data tree of form values (spec 3.4), what PHP gets as the parsed body.
///
/// ```
/// # use courser_http::payload::{DataTree, to_go_json};
/// let mut t = DataTree::new();
/// t.push("a[b][]", "x".into()).unwrap();
/// t.push("a[b][]", "y".into()).unwrap();
/// t.push("c", "1".into()).unwrap();
/// t.push("c", "2".into()).unwrap();
/// let mut out = Vec::new();
/// to_go_json(&t.into_value(), &mut out);
/// assert_eq!(out, br#"{"a":{"b":["x","y"]},"c":"2"}"#);
/// ```
pub struct DataTree(Tree<String>);

impl Default for DataTree {
    fn default() -> Self {
        DataTree::new()
    }
}

impl DataTree {
    /// An empty tree.
    pub fn new() -> DataTree {
        DataTree(Tree::new(Repeat::Last))
    }

    /// Adds one form value. `a[b][c]` nests, `a[]` appends to a list, a plain
    /// key sent again keeps the last value, spaces in names are ignored, and a
    /// name more than [`MAX_DEPTH`] levels deep is dropped. A name used both for
    /// a value and for a group is an error ("invalid multiple values to key").
    pub fn push(&mut self, name: &str, value: String) -> Result<(), PayloadError> {
        self.0.push(name, value).map(drop)
    }

    /// True when no value was kept.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The tree as a JSON object (write it with [`super::to_go_json`]).
    pub fn into_value(self) -> Value {
        self.0.into_value(&mut Value::String)
    }
}

/// Parses an `application/x-www-form-urlencoded` body into its data tree.
pub fn parse_urlencoded(body: &[u8]) -> Result<Value, PayloadError> {
    let mut tree = DataTree::new();
    for (name, value) in form_urlencoded::parse(body) {
        tree.push(&name, value.into_owned())?;
    }
    Ok(tree.into_value())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes() {
        for (name, want) in [
            ("a", &["a"][..]),
            ("a[b][c]", &["a", "b", "c"]),
            ("a[]", &["a", ""]),
            ("a[b][]", &["a", "b", ""]),
            (" a [ b ] ", &["a", "b"]),
            ("a[b]c", &["a", "b", "c"]),
            ("[a]", &["", "a"]),
            ("", &[""]),
            ("a[][]", &["a", "", ""]),
        ] {
            assert_eq!(fetch_indexes(name), want, "{name}");
        }
    }
}

//! Who gets what: the subscriptions and the retained messages of the embedded broker, each in a
//! topic tree (one node per topic level).
//!
//! - A publish walks the subscription tree along its topic levels, looking only at the literal
//!   level, `+` and `#` children of each node it reaches: its cost grows with the topic's depth
//!   and the subscribers it matches, never with the number of subscriptions.
//! - A subscribe walks the retained tree along its filter: a literal level follows one child, so
//!   an exact-topic subscribe costs one lookup per level; `+` visits the children of one level and
//!   `#` the subtree below it — only the retained messages the filter can match.
//!
//! Topics starting with `$` are not matched by a wildcard in the first level (MQTT 3.1.1, 4.7.2).
//! Nothing here does I/O: the connection tasks act on what these functions return.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

/// A connection, numbered in the order of acceptance.
pub type ConnId = u64;

/// A message to deliver (shared by every subscriber it goes to).
#[derive(Debug)]
pub struct Message {
    pub topic: String,
    pub payload: Bytes,
    /// QoS it was published with (at most 1); a subscriber gets the lower of this and its own.
    pub qos: u8,
    /// Client id of the network client that published it (or whose will it is); `None` for the
    /// engine's own publishes.
    pub from: Option<Arc<str>>,
    /// The device the publisher proved to be with its own login (or whose will it is); `None`
    /// for the site's login and the engine.
    pub device: Option<Arc<str>>,
}

/// A valid topic to publish to: not empty, no wildcard, at most 65,535 bytes.
pub fn valid_topic(topic: &str) -> bool {
    !topic.is_empty() && topic.len() <= usize::from(u16::MAX) && !topic.contains(['+', '#'])
}

/// A valid filter: `+` a whole level, `#` a whole level and the last one.
pub fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.len() > usize::from(u16::MAX) {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    let last = levels.len() - 1;
    levels.iter().enumerate().all(|(i, l)| match *l {
        "#" => i == last,
        "+" => true,
        l => !l.contains(['+', '#']),
    })
}

#[derive(Debug, Default)]
struct SubNode {
    children: HashMap<Box<str>, SubNode>,
    /// Subscribers whose filter ends here, with their granted QoS.
    subscribers: HashMap<ConnId, u8>,
}

impl SubNode {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.subscribers.is_empty()
    }
}

/// Subscriptions by filter.
#[derive(Debug, Default)]
pub struct Subscriptions {
    root: SubNode,
}

impl Subscriptions {
    /// Adds (or replaces the QoS of) `conn`'s subscription to `filter`.
    pub fn add(&mut self, filter: &str, conn: ConnId, qos: u8) {
        let mut node = &mut self.root;
        for level in filter.split('/') {
            node = node.children.entry(level.into()).or_default();
        }
        node.subscribers.insert(conn, qos);
    }

    /// Removes `conn`'s subscription to `filter`; empty branches go with it.
    pub fn remove(&mut self, filter: &str, conn: ConnId) {
        fn go<'a>(node: &mut SubNode, mut levels: impl Iterator<Item = &'a str>, conn: ConnId) {
            match levels.next() {
                None => {
                    node.subscribers.remove(&conn);
                }
                Some(level) => {
                    if let Some(child) = node.children.get_mut(level) {
                        go(child, levels, conn);
                        if child.is_empty() {
                            node.children.remove(level);
                        }
                    }
                }
            }
        }
        go(&mut self.root, filter.split('/'), conn);
    }

    /// Every subscriber of `topic` with the highest QoS of its matching filters (each once).
    pub fn matches(&self, topic: &str, out: &mut Vec<(ConnId, u8)>) {
        let levels: Vec<&str> = topic.split('/').collect();
        collect(&self.root, &levels, 0, topic.starts_with('$'), out);
        if out.len() > 1 {
            out.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
            out.dedup_by_key(|s| s.0);
        }
    }

    #[cfg(test)]
    fn node_count(&self) -> usize {
        fn count(n: &SubNode) -> usize {
            1 + n.children.values().map(count).sum::<usize>()
        }
        count(&self.root)
    }
}

fn collect(node: &SubNode, levels: &[&str], i: usize, dollar: bool, out: &mut Vec<(ConnId, u8)>) {
    let wild = !(dollar && i == 0);
    if wild && let Some(all) = node.children.get("#") {
        out.extend(all.subscribers.iter().map(|(c, q)| (*c, *q)));
    }
    let Some(level) = levels.get(i) else {
        out.extend(node.subscribers.iter().map(|(c, q)| (*c, *q)));
        return;
    };
    if let Some(child) = node.children.get(*level) {
        collect(child, levels, i + 1, dollar, out);
    }
    if wild && let Some(any) = node.children.get("+") {
        collect(any, levels, i + 1, dollar, out);
    }
}

#[derive(Debug, Default)]
struct RetainedNode {
    children: HashMap<Box<str>, RetainedNode>,
    message: Option<Arc<Message>>,
}

/// Retained messages by topic.
#[derive(Debug, Default)]
pub struct Retained {
    root: RetainedNode,
    count: usize,
}

impl Retained {
    /// Keeps `message` as the retained message of its topic; an empty payload removes it.
    pub fn set(&mut self, message: Arc<Message>) {
        if message.payload.is_empty() {
            fn go<'a>(node: &mut RetainedNode, mut levels: impl Iterator<Item = &'a str>) -> bool {
                match levels.next() {
                    None => node.message.take().is_some(),
                    Some(level) => {
                        let Some(child) = node.children.get_mut(level) else { return false };
                        let removed = go(child, levels);
                        if child.message.is_none() && child.children.is_empty() {
                            node.children.remove(level);
                        }
                        removed
                    }
                }
            }
            if go(&mut self.root, message.topic.split('/')) {
                self.count -= 1;
            }
            return;
        }
        let mut node = &mut self.root;
        for level in message.topic.split('/') {
            node = node.children.entry(level.into()).or_default();
        }
        if node.message.replace(message).is_none() {
            self.count += 1;
        }
    }

    /// Retained messages held.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no retained message is held.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The retained messages `filter` matches.
    pub fn matching(&self, filter: &str, out: &mut Vec<Arc<Message>>) {
        let levels: Vec<&str> = filter.split('/').collect();
        walk(&self.root, &levels, 0, out);
    }
}

fn walk(node: &RetainedNode, levels: &[&str], i: usize, out: &mut Vec<Arc<Message>>) {
    let Some(level) = levels.get(i) else {
        out.extend(node.message.iter().cloned());
        return;
    };
    // A wildcard in the first level does not match topics starting with `$`.
    let visible = |name: &str| i > 0 || !name.starts_with('$');
    match *level {
        "#" => {
            // `a/#` matches `a` itself too.
            if i > 0 {
                out.extend(node.message.iter().cloned());
            }
            fn all(node: &RetainedNode, out: &mut Vec<Arc<Message>>) {
                out.extend(node.message.iter().cloned());
                for child in node.children.values() {
                    all(child, out);
                }
            }
            for (name, child) in &node.children {
                if visible(name) {
                    all(child, out);
                }
            }
        }
        "+" => {
            for (name, child) in &node.children {
                if visible(name) {
                    walk(child, levels, i + 1, out);
                }
            }
        }
        literal => {
            if let Some(child) = node.children.get(literal) {
                walk(child, levels, i + 1, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn subs(filters: &[(&str, ConnId, u8)]) -> Subscriptions {
        let mut s = Subscriptions::default();
        for (f, c, q) in filters {
            s.add(f, *c, *q);
        }
        s
    }

    fn who(s: &Subscriptions, topic: &str) -> Vec<(ConnId, u8)> {
        let mut out = Vec::new();
        s.matches(topic, &mut out);
        out
    }

    #[test]
    fn wildcards_match_as_the_specification_says() {
        let s = subs(&[
            ("sport/tennis/player1/#", 1, 0),
            ("sport/+", 2, 0),
            ("sport/tennis/+", 3, 1),
            ("#", 4, 0),
            ("+/+", 5, 0),
            ("/+", 6, 0),
            ("sport/tennis/player1", 7, 1),
        ]);
        assert_eq!(who(&s, "sport/tennis/player1"), vec![(1, 0), (3, 1), (4, 0), (7, 1)]);
        assert_eq!(who(&s, "sport/tennis/player1/ranking"), vec![(1, 0), (4, 0)]);
        assert_eq!(who(&s, "sport"), vec![(4, 0)]);
        assert_eq!(who(&s, "sport/"), vec![(2, 0), (4, 0), (5, 0)]);
        assert_eq!(who(&s, "/finance"), vec![(4, 0), (5, 0), (6, 0)]);
        assert_eq!(who(&s, "$SYS/x"), vec![], "wildcards do not match $ topics in the first level");
        let s2 = subs(&[("$SYS/#", 1, 0), ("$SYS/+", 2, 1)]);
        assert_eq!(who(&s2, "$SYS/x"), vec![(1, 0), (2, 1)]);
    }

    #[test]
    fn overlapping_filters_deliver_once_with_the_highest_qos() {
        let s = subs(&[("a/#", 1, 0), ("a/b", 1, 1), ("+/b", 1, 0)]);
        assert_eq!(who(&s, "a/b"), vec![(1, 1)]);
    }

    #[test]
    fn removing_subscriptions_prunes_the_tree() {
        let mut s = subs(&[("a/b/c", 1, 0), ("a/b/c", 2, 0), ("a/+/d", 1, 0)]);
        s.remove("a/b/c", 1);
        assert_eq!(who(&s, "a/b/c"), vec![(2, 0)]);
        s.remove("a/b/c", 2);
        s.remove("a/+/d", 1);
        s.remove("not/there", 1);
        assert_eq!(s.node_count(), 1);
    }

    #[test]
    fn filters_and_topics_are_checked() {
        for ok in ["a", "a/b", "+", "#", "a/+/c", "a/#", "+/+", "/", "$SYS/#"] {
            assert!(valid_filter(ok), "{ok}");
        }
        for bad in ["", "a#", "a/#/b", "a+/b", "#/a", "a/b+"] {
            assert!(!valid_filter(bad), "{bad}");
        }
        assert!(valid_topic("a/b") && valid_topic("/"));
        assert!(!valid_topic("") && !valid_topic("a/+") && !valid_topic("#"));
    }

    fn msg(topic: &str, payload: &'static str) -> Arc<Message> {
        Arc::new(Message {
            topic: topic.into(),
            payload: Bytes::from_static(payload.as_bytes()),
            qos: 1,
            from: None,
            device: None,
        })
    }

    fn retained(r: &Retained, filter: &str) -> Vec<String> {
        let mut out = Vec::new();
        r.matching(filter, &mut out);
        let mut t: Vec<String> = out.iter().map(|m| m.topic.clone()).collect();
        t.sort();
        t
    }

    #[test]
    fn retained_messages_are_found_by_filter_and_cleared_by_an_empty_payload() {
        let mut r = Retained::default();
        for t in ["a", "a/b", "a/b/c", "a/x/c", "b/b", "$SYS/up"] {
            r.set(msg(t, "1"));
        }
        r.set(msg("a/b", "2")); // replaces
        assert_eq!(r.len(), 6);
        assert_eq!(retained(&r, "a/b"), ["a/b"]);
        assert_eq!(retained(&r, "a/#"), ["a", "a/b", "a/b/c", "a/x/c"]);
        assert_eq!(retained(&r, "a/+/c"), ["a/b/c", "a/x/c"]);
        assert_eq!(retained(&r, "+/b"), ["a/b", "b/b"]);
        assert_eq!(retained(&r, "#"), ["a", "a/b", "a/b/c", "a/x/c", "b/b"]);
        assert_eq!(retained(&r, "$SYS/#"), ["$SYS/up"]);
        assert_eq!(retained(&r, "nothing/here"), Vec::<String>::new());
        r.set(msg("a/b/c", ""));
        r.set(msg("a/x/c", ""));
        r.set(msg("never/set", ""));
        assert_eq!(r.len(), 4);
        assert_eq!(retained(&r, "a/#"), ["a", "a/b"]);
        assert!(!r.root.children["a"].children.contains_key("x"), "empty branches are pruned");
    }
}

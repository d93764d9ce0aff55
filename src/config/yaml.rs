//! A YAML tree that remembers where everything was written.
//!
//! yaml-rust2's event parser gives a position for every event and the raw text of every scalar;
//! this file turns those events into a small tree of `Node`s (line and column 1-based, scalars
//! kept as written with their quoting). Typing a scalar (is `022` a number, is `~` null) is left
//! to whoever reads the tree, because only the reader knows that `umask: 022` means octal.
//!
//! Aliases are resolved by copying the anchored node, and `<<: *anchor` merge keys are applied,
//! so a config may share defaults between jobs. A mapping that names the same key twice is an
//! error naming both lines. This file knows nothing about sup's keys.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Aliases copy nodes, so a few lines can expand to billions of nodes ("billion laughs"). No
/// honest config comes near this bound.
const MAX_NODES: usize = 1_000_000;

/// Lists and maps nested deeper than this are refused, block style or flow style, and so is an
/// alias that would carry a tree past it. Everything that walks the tree (clone, drop, `size`,
/// resolution) recurses, so the bound keeps that recursion far from the stack's end; a config
/// needs perhaps 5 levels.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// 1-based.
    pub line: usize,
    /// 1-based.
    pub col: usize,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Scalar(Scalar),
    Seq(Vec<Node>),
    /// Entries in the order written, duplicates already removed (the first one is kept).
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    /// The text as written, after YAML unquoting and unescaping.
    pub text: String,
    /// Quoted, block (`|`, `>`) or tagged `!!str`: certainly a string, never null, a number or
    /// a bool.
    pub quoted: bool,
}

impl Scalar {
    /// `~`, `null`, or nothing at all (`key:` with no value).
    pub fn is_null(&self) -> bool {
        !self.quoted && matches!(self.text.as_str(), "" | "~" | "null" | "Null" | "NULL")
    }

    /// YAML 1.2 core-schema booleans, by text whatever the quoting, so that `"true"` works too.
    pub fn as_bool(&self) -> Option<bool> {
        match self.text.as_str() {
            "true" | "True" | "TRUE" => Some(true),
            "false" | "False" | "FALSE" => Some(false),
            _ => None,
        }
    }

    /// A decimal integer by text (`5`, `+5`, `-1`, `"5"`). Leading zeros are decimal here;
    /// readers that want octal (umask) look at `text` themselves.
    pub fn as_int(&self) -> Option<i64> {
        let t = self.text.trim();
        let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        t.strip_prefix('+').unwrap_or(t).parse().ok()
    }

    /// A plain scalar that reads as a number (int or float), for describing what was found.
    fn looks_numeric(&self) -> bool {
        !self.quoted && (self.as_int().is_some() || self.text.parse::<f64>().is_ok())
    }
}

impl Node {
    pub fn scalar(&self) -> Option<&Scalar> {
        match &self.kind {
            Kind::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// The scalar's text when it is a scalar and not null.
    pub fn text(&self) -> Option<&str> {
        self.scalar()
            .filter(|s| !s.is_null())
            .map(|s| s.text.as_str())
    }

    pub fn is_null(&self) -> bool {
        self.scalar().is_some_and(Scalar::is_null)
    }

    /// What the user wrote, for "found …" in messages: `"sometimes"`, `0`, `true`, `null`,
    /// `a list`, `a map`.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Seq(_) => "a list".into(),
            Kind::Map(_) => "a map".into(),
            Kind::Scalar(s) if s.is_null() => "null".into(),
            Kind::Scalar(s) if !s.quoted && (s.as_bool().is_some() || s.looks_numeric()) => {
                s.text.clone()
            }
            Kind::Scalar(s) => format!("{:?}", s.text),
        }
    }

    /// The number of nodes in this subtree, for the alias expansion bound.
    fn size(&self) -> usize {
        match &self.kind {
            Kind::Scalar(_) => 1,
            Kind::Seq(items) => 1 + items.iter().map(Node::size).sum::<usize>(),
            Kind::Map(entries) => {
                1 + entries
                    .iter()
                    .map(|(k, v)| k.size() + v.size())
                    .sum::<usize>()
            }
        }
    }
}

/// A problem found while reading YAML, positioned and, where it is inside a mapping, with the
/// path of keys that lead to it (`["programs", "web", "numprocs"]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub line: usize,
    pub col: usize,
    pub path: Vec<String>,
    pub message: String,
}

/// The tree of the document (`None` for an empty file) and every problem found. A syntax error
/// leaves no tree; duplicate keys leave a tree with the first of each key kept.
pub fn parse(source: &str) -> (Option<Node>, Vec<YamlError>) {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(source);
    // Events are pulled one by one: `Parser::load` recurses once per level of nesting, so a
    // deep enough file would overflow the stack before the builder could refuse it.
    while !builder.aborted {
        match parser.next_token() {
            Ok((Event::StreamEnd, _)) => break,
            Ok((ev, mark)) => builder.on_event(ev, mark),
            Err(e) => {
                let m = e.marker();
                let error = YamlError {
                    line: m.line(),
                    col: m.col() + 1,
                    path: Vec::new(),
                    message: format!("invalid YAML: {}", e.info()),
                };
                return (None, vec![error]);
            }
        }
    }
    if builder.aborted {
        return (None, builder.errors);
    }
    (builder.root, builder.errors)
}

enum Frame {
    Seq {
        start: (usize, usize),
        anchor: usize,
        /// Levels of lists and maps in the deepest item so far.
        height: usize,
        items: Vec<Node>,
    },
    Map {
        start: (usize, usize),
        anchor: usize,
        height: usize,
        entries: Vec<(Node, Node)>,
        pending_key: Option<Node>,
        /// Scalar key text → line, to name both lines of a duplicate without a quadratic scan.
        seen: HashMap<String, usize>,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    /// Each anchored node with its height, so an alias can be checked against `MAX_DEPTH`
    /// without walking it.
    anchors: HashMap<usize, (Node, usize)>,
    root: Option<Node>,
    documents: usize,
    expanded: usize,
    /// Set when the tree cannot be trusted (a second document, an alias bomb).
    aborted: bool,
    errors: Vec<YamlError>,
}

fn pos(mark: Marker) -> (usize, usize) {
    (mark.line(), mark.col() + 1)
}

impl Builder {
    fn key_path(&self) -> Vec<String> {
        self.stack
            .iter()
            .filter_map(|f| match f {
                Frame::Map {
                    pending_key: Some(k),
                    ..
                } => k.scalar().map(|s| s.text.clone()),
                _ => None,
            })
            .collect()
    }

    fn error(&mut self, (line, col): (usize, usize), path: Vec<String>, message: String) {
        self.errors.push(YamlError {
            line,
            col,
            path,
            message,
        });
    }

    /// A finished node goes into its parent: as the next key, the value for the pending key, or
    /// the next list item.
    fn push(&mut self, node: Node, height: usize, anchor: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, (node.clone(), height));
        }
        let mut duplicate = None;
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq {
                items, height: h, ..
            }) => {
                *h = (*h).max(height);
                items.push(node);
            }
            Some(Frame::Map {
                entries,
                pending_key,
                seen,
                height: h,
                ..
            }) => {
                *h = (*h).max(height);
                match pending_key.take() {
                    None => *pending_key = Some(node),
                    Some(key) => {
                        let text = key.scalar().map(|s| s.text.clone());
                        match text {
                            // `<<` is kept so that merging at the end of the map can find it.
                            Some(t) if t != "<<" => {
                                if let Some(&first) = seen.get(&t) {
                                    duplicate = Some((key.line, key.col, t, first));
                                } else {
                                    seen.insert(t, key.line);
                                    entries.push((key, node));
                                }
                            }
                            _ => entries.push((key, node)),
                        }
                    }
                }
            }
        }
        if let Some((line, col, key, first)) = duplicate {
            let mut path = self.key_path();
            path.push(key.clone());
            self.error(
                (line, col),
                path,
                format!("duplicate key {key:?}: first at line {first}, again at line {line}"),
            );
        }
    }
}

impl Builder {
    /// The tree is dropped here: its frames are at most `MAX_DEPTH` deep, so that is safe.
    fn too_deep(&mut self, mark: Marker) {
        let path = self.key_path();
        self.error(
            pos(mark),
            path,
            format!("lists and maps nest deeper than {MAX_DEPTH} levels"),
        );
        self.aborted = true;
        self.stack.clear();
        self.anchors.clear();
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.aborted {
            return;
        }
        match ev {
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    // A second document would be silently ignored; better to say so.
                    self.error(
                        pos(mark),
                        Vec::new(),
                        "a config holds one YAML document, found a second one (`---`)".into(),
                    );
                    self.aborted = true;
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                let tagged_str = tag.is_some_and(|t| t.suffix == "str");
                let quoted = tagged_str || !matches!(style, TScalarStyle::Plain);
                let (line, col) = pos(mark);
                let node = Node {
                    line,
                    col,
                    kind: Kind::Scalar(Scalar { text, quoted }),
                };
                self.push(node, 0, anchor);
            }
            Event::Alias(id) => {
                let Some((target, height)) = self.anchors.get(&id) else {
                    // The parser rejects unknown anchors itself; this is only a guard.
                    self.error(pos(mark), self.key_path(), "unknown alias".into());
                    return;
                };
                let height = *height;
                if self.stack.len() + height > MAX_DEPTH {
                    self.too_deep(mark);
                    return;
                }
                self.expanded += target.size();
                if self.expanded > MAX_NODES {
                    self.error(
                        pos(mark),
                        self.key_path(),
                        format!("aliases expand to more than {MAX_NODES} nodes"),
                    );
                    self.aborted = true;
                    return;
                }
                let (line, col) = pos(mark);
                let mut node = target.clone();
                // The copy is placed where the alias is written, so errors in a shared value
                // point at the use; its insides still point at the anchored text.
                node.line = line;
                node.col = col;
                self.push(node, height, 0);
            }
            Event::SequenceStart(..) | Event::MappingStart(..) if self.stack.len() >= MAX_DEPTH => {
                self.too_deep(mark);
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq {
                start: pos(mark),
                anchor,
                height: 0,
                items: Vec::new(),
            }),
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Map {
                start: pos(mark),
                anchor,
                height: 0,
                entries: Vec::new(),
                pending_key: None,
                seen: HashMap::new(),
            }),
            Event::SequenceEnd => {
                if let Some(Frame::Seq {
                    start,
                    anchor,
                    height,
                    items,
                }) = self.stack.pop()
                {
                    let node = Node {
                        line: start.0,
                        col: start.1,
                        kind: Kind::Seq(items),
                    };
                    self.push(node, height + 1, anchor);
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map {
                    start,
                    anchor,
                    height,
                    entries,
                    ..
                }) = self.stack.pop()
                {
                    let entries = merge(entries);
                    // yaml-rust2 marks a block mapping's start at its first value; its first key
                    // is where a reader would look.
                    let (line, col) = entries.first().map_or(start, |(k, _)| (k.line, k.col));
                    let node = Node {
                        line,
                        col,
                        kind: Kind::Map(entries),
                    };
                    self.push(node, height + 1, anchor);
                }
            }
        }
    }
}

/// Apply `<<` merge keys: entries of the merged map(s) that the map does not set itself. A `<<`
/// whose value is not a map (or a list of maps) is left in place so that the reader reports it
/// as an unknown key.
fn merge(entries: Vec<(Node, Node)>) -> Vec<(Node, Node)> {
    let is_merge = |k: &Node| k.scalar().is_some_and(|s| !s.quoted && s.text == "<<");
    if !entries.iter().any(|(k, _)| is_merge(k)) {
        return entries;
    }
    let mut own = Vec::with_capacity(entries.len());
    let mut merged = Vec::new();
    for (k, v) in entries {
        if !is_merge(&k) {
            own.push((k, v));
            continue;
        }
        match v.kind {
            Kind::Map(m) => merged.push(m),
            Kind::Seq(items) if items.iter().all(|i| matches!(i.kind, Kind::Map(_))) => {
                for item in items {
                    if let Kind::Map(m) = item.kind {
                        merged.push(m);
                    }
                }
            }
            kind => own.push((k, Node { kind, ..v })),
        }
    }
    let mut present: std::collections::HashSet<String> = own
        .iter()
        .filter_map(|(k, _)| k.scalar().map(|s| s.text.clone()))
        .collect();
    for map in merged {
        for (k, v) in map {
            let Some(text) = k.scalar().map(|s| s.text.clone()) else {
                continue;
            };
            if present.insert(text) {
                own.push((k, v));
            }
        }
    }
    own
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(src: &str) -> Node {
        let (root, errors) = parse(src);
        assert!(errors.is_empty(), "{errors:?}");
        root.expect("a document")
    }

    fn get<'a>(node: &'a Node, key: &str) -> &'a Node {
        match &node.kind {
            Kind::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.text() == Some(key))
                .map(|(_, v)| v)
                .unwrap_or_else(|| panic!("no key {key}")),
            other => panic!("not a map: {other:?}"),
        }
    }

    #[test]
    fn positions_are_one_based_and_point_at_the_text() {
        let root = tree("programs:\n  web:\n    numprocs: 3\n");
        assert_eq!((root.line, root.col), (1, 1));
        let web = get(get(&root, "programs"), "web");
        assert_eq!((web.line, web.col), (3, 5));
        let n = get(web, "numprocs");
        assert_eq!((n.line, n.col), (3, 15));
        assert_eq!(n.describe(), "3");
    }

    #[test]
    fn scalars_keep_raw_text_and_quoting() {
        let root = tree("a: 022\nb: \"022\"\nc: ~\nd:\ne: 'null'\nf: !!str 7\ng: |\n  x\n");
        let a = get(&root, "a").scalar().unwrap();
        assert_eq!((a.text.as_str(), a.quoted), ("022", false));
        assert!(get(&root, "b").scalar().unwrap().quoted);
        assert!(get(&root, "c").is_null());
        assert!(get(&root, "d").is_null());
        assert!(!get(&root, "e").is_null());
        assert_eq!(get(&root, "e").describe(), "\"null\"");
        assert!(get(&root, "f").scalar().unwrap().quoted);
        assert_eq!(get(&root, "g").text(), Some("x\n"));
    }

    #[test]
    fn describe_says_what_was_found() {
        let root = tree("a: [1]\nb: {x: 1}\nc: true\nd: 1.5\ne: sometimes\nf: \"5\"\n");
        assert_eq!(get(&root, "a").describe(), "a list");
        assert_eq!(get(&root, "b").describe(), "a map");
        assert_eq!(get(&root, "c").describe(), "true");
        assert_eq!(get(&root, "d").describe(), "1.5");
        assert_eq!(get(&root, "e").describe(), "\"sometimes\"");
        assert_eq!(get(&root, "f").describe(), "\"5\"");
    }

    #[test]
    fn ints_and_bools_by_text() {
        let s = |t: &str| Scalar {
            text: t.into(),
            quoted: false,
        };
        assert_eq!(s("5").as_int(), Some(5));
        assert_eq!(s("+5").as_int(), Some(5));
        assert_eq!(s("-1").as_int(), Some(-1));
        assert_eq!(s("1.0").as_int(), None);
        assert_eq!(s("").as_int(), None);
        assert_eq!(s("-").as_int(), None);
        assert_eq!(s("True").as_bool(), Some(true));
        assert_eq!(s("yes").as_bool(), None);
    }

    #[test]
    fn syntax_error_has_a_position() {
        let (root, errors) = parse("a: 1\n  b: [\n");
        assert!(root.is_none());
        assert_eq!(errors.len(), 1);
        assert_eq!((errors[0].line, errors[0].col), (2, 4));
        assert!(errors[0].message.starts_with("invalid YAML: "));
    }

    #[test]
    fn duplicate_keys_name_both_lines_and_keep_the_first() {
        let (root, errors) = parse("programs:\n  web:\n    cmd: a\n    cmd: b\n");
        assert_eq!(errors.len(), 1);
        let e = &errors[0];
        assert_eq!((e.line, e.col), (4, 5));
        assert_eq!(e.path, ["programs", "web", "cmd"]);
        assert_eq!(
            e.message,
            "duplicate key \"cmd\": first at line 3, again at line 4"
        );
        let root = root.unwrap();
        let web = get(get(&root, "programs"), "web");
        assert_eq!(get(web, "cmd").text(), Some("a"));
    }

    #[test]
    fn aliases_are_copied_and_merge_keys_apply() {
        let src = "base: &b\n  numprocs: 2\n  cmd: x\nweb:\n  <<: *b\n  cmd: y\nlist: &l [1, 2]\nagain: *l\n";
        let root = tree(src);
        let web = get(&root, "web");
        assert_eq!(get(web, "cmd").text(), Some("y"));
        assert_eq!(get(web, "numprocs").text(), Some("2"));
        let again = get(&root, "again");
        assert_eq!(again.line, 8);
        assert!(matches!(&again.kind, Kind::Seq(items) if items.len() == 2));
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut src = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let p = i - 1;
            src.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let (root, errors) = parse(&src);
        assert!(root.is_none());
        assert!(errors[0].message.contains("aliases expand"), "{errors:?}");
    }

    #[test]
    fn a_second_document_is_an_error() {
        let (root, errors) = parse("a: 1\n---\nb: 2\n");
        assert!(root.is_none());
        assert_eq!(errors[0].line, 2);
    }

    #[test]
    fn empty_source_has_no_tree() {
        let (root, errors) = parse("# nothing\n");
        assert!(root.is_none());
        assert!(errors.is_empty());
    }

    #[test]
    fn nesting_past_the_limit_is_refused_at_the_level_that_crosses_it() {
        let ok = format!("{}x\n", "- ".repeat(MAX_DEPTH));
        assert!(parse(&ok).1.is_empty());
        let (root, errors) = parse(&format!("{}x\n", "- ".repeat(30_000)));
        assert!(root.is_none());
        assert_eq!((errors[0].line, errors[0].col), (1, 2 * MAX_DEPTH + 1));
        assert_eq!(
            errors[0].message,
            "lists and maps nest deeper than 64 levels"
        );
    }

    #[test]
    fn an_alias_that_carries_a_tree_past_the_limit_is_refused() {
        let nest = |d: usize, inner: &str| format!("{}{inner}{}", "[".repeat(d), "]".repeat(d));
        let src = format!("a: &a {}\nb: {}\n", nest(40, "1"), nest(30, "*a"));
        let (root, errors) = parse(&src);
        assert!(root.is_none());
        assert_eq!(errors[0].line, 2);
        assert!(errors[0].message.contains("deeper than 64"), "{errors:?}");
        let src = format!("a: &a {}\nb: {}\n", nest(30, "1"), nest(30, "*a"));
        assert!(parse(&src).1.is_empty());
    }
}

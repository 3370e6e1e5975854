//! A YAML document as a small tree whose every node remembers its line.
//!
//! serde_yaml reports no positions for values that parse but fail validation (a duplicate
//! service name, weight 0), and the contract wants the line of every config error. So the file
//! is read through yaml-rust2's event parser, which marks each event, into [`Node`]s; the
//! decoder in `config` then walks the tree by hand and knows the line of everything it rejects.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// One node of a YAML document.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// 1-based line where the node starts.
    pub line: usize,
    /// What the node holds.
    pub kind: NodeKind,
}

/// The shapes a YAML node can take.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    /// A scalar: its text and whether it was quoted (quoted scalars are always strings).
    Scalar { text: String, quoted: bool },
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order: key, the key's line, value.
    Map(Vec<MapEntry>),
}

/// One `key: value` pair of a mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct MapEntry {
    /// The key's text.
    pub key: String,
    /// The key's line.
    pub line: usize,
    /// The value.
    pub value: Node,
}

impl Node {
    /// True for a plain `~`, `null`, `Null`, `NULL` or an empty plain scalar.
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, NodeKind::Scalar { text, quoted: false }
            if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// A short name of the node's shape, for error messages.
    pub fn shape(&self) -> &'static str {
        match &self.kind {
            _ if self.is_null() => "null",
            NodeKind::Scalar { .. } => "a scalar",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
        }
    }

    /// Converts the node to a serde_yaml value, resolving plain scalars by YAML's core schema
    /// (so `threads: 2` is a number and `threads: "2"` a string, as serde_yaml would read them).
    pub fn to_serde_value(&self) -> serde_yaml::Value {
        match &self.kind {
            NodeKind::Scalar { text, quoted: true } => serde_yaml::Value::String(text.clone()),
            NodeKind::Scalar {
                text,
                quoted: false,
            } => serde_yaml::from_str(text)
                .unwrap_or_else(|_| serde_yaml::Value::String(text.clone())),
            NodeKind::Seq(items) => {
                serde_yaml::Value::Sequence(items.iter().map(Node::to_serde_value).collect())
            }
            NodeKind::Map(entries) => serde_yaml::Value::Mapping(
                entries
                    .iter()
                    .map(|e| {
                        (
                            serde_yaml::Value::String(e.key.clone()),
                            e.value.to_serde_value(),
                        )
                    })
                    .collect(),
            ),
        }
    }
}

/// A YAML syntax error with its line.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    /// 1-based line, when known.
    pub line: usize,
    /// What the parser said.
    pub message: String,
}

/// Parses one YAML document. An empty document is an empty mapping.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let mut builder = TreeBuilder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, false).map_err(|e| SyntaxError {
        line: e.marker().line(),
        message: e.info().to_string(),
    })?;
    if let Some(err) = builder.error {
        return Err(err);
    }
    Ok(builder.root.unwrap_or(Node {
        line: 1,
        kind: NodeKind::Map(Vec::new()),
    }))
}

/// A container being filled while events arrive.
enum Open {
    Seq(Node),
    /// A mapping and, when a key has been read, that key waiting for its value.
    Map(Node, Option<(String, usize)>),
}

#[derive(Default)]
struct TreeBuilder {
    stack: Vec<(Open, usize)>,
    root: Option<Node>,
    anchors: HashMap<usize, Node>,
    error: Option<SyntaxError>,
}

impl TreeBuilder {
    fn fail(&mut self, line: usize, message: &str) {
        if self.error.is_none() {
            self.error = Some(SyntaxError {
                line,
                message: message.to_string(),
            });
        }
    }

    /// Attaches a finished node to its parent, or makes it the root.
    fn push_node(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some((Open::Seq(seq), _)) => {
                if let NodeKind::Seq(items) = &mut seq.kind {
                    items.push(node);
                }
            }
            Some((Open::Map(map, pending), _)) => match pending.take() {
                Some((key, line)) => {
                    if let NodeKind::Map(entries) = &mut map.kind {
                        entries.push(MapEntry {
                            key,
                            line,
                            value: node,
                        });
                    }
                }
                None => match node.kind {
                    NodeKind::Scalar { text, .. } => *pending = Some((text, node.line)),
                    _ => self.fail(node.line, "mapping keys must be plain scalars"),
                },
            },
        }
    }
}

impl MarkedEventReceiver for TreeBuilder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line();
        match ev {
            Event::Scalar(text, style, anchor, _tag) => {
                let quoted = !matches!(style, TScalarStyle::Plain);
                self.push_node(
                    Node {
                        line,
                        kind: NodeKind::Scalar { text, quoted },
                    },
                    anchor,
                );
            }
            Event::SequenceStart(anchor, _) => self.stack.push((
                Open::Seq(Node {
                    line,
                    kind: NodeKind::Seq(Vec::new()),
                }),
                anchor,
            )),
            Event::MappingStart(anchor, _) => self.stack.push((
                Open::Map(
                    Node {
                        line,
                        kind: NodeKind::Map(Vec::new()),
                    },
                    None,
                ),
                anchor,
            )),
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((open, anchor)) = self.stack.pop() {
                    let node = match open {
                        Open::Seq(node) | Open::Map(node, _) => node,
                    };
                    self.push_node(node, anchor);
                }
            }
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(mut node) => {
                    node.line = line;
                    self.push_node(node, 0);
                }
                None => self.fail(line, "alias to an unknown anchor"),
            },
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(node: &Node) -> &[MapEntry] {
        match &node.kind {
            NodeKind::Map(e) => e,
            other => panic!("not a map: {other:?}"),
        }
    }

    #[test]
    fn nodes_carry_their_lines() {
        let root = parse("a: 1\nb:\n  - x\n  - 'y'\nc: {d: ~}\n").unwrap();
        let e = entries(&root);
        assert_eq!(e[0].key, "a");
        assert_eq!(e[0].line, 1);
        assert_eq!(e[1].line, 2);
        let NodeKind::Seq(items) = &e[1].value.kind else {
            panic!()
        };
        assert_eq!(items[0].line, 3);
        assert_eq!(
            items[1].kind,
            NodeKind::Scalar {
                text: "y".into(),
                quoted: true
            }
        );
        assert!(entries(&e[2].value)[0].value.is_null());
    }

    #[test]
    fn empty_document_is_an_empty_map() {
        assert_eq!(entries(&parse("").unwrap()).len(), 0);
        assert_eq!(entries(&parse("# only a comment\n").unwrap()).len(), 0);
    }

    #[test]
    fn syntax_error_has_a_line() {
        let err = parse("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert!(err.line >= 2, "{err:?}");
    }

    #[test]
    fn aliases_are_expanded() {
        let root = parse("a: &x {k: 1}\nb: *x\n").unwrap();
        let e = entries(&root);
        assert_eq!(entries(&e[1].value)[0].key, "k");
        assert_eq!(e[1].value.line, 2);
    }

    #[test]
    fn serde_values_follow_the_core_schema() {
        let root = parse("n: 2\ns: '2'\nb: true\nz: ~\n").unwrap();
        let v = root.to_serde_value();
        assert_eq!(v["n"], serde_yaml::Value::from(2));
        assert_eq!(v["s"], serde_yaml::Value::from("2"));
        assert_eq!(v["b"], serde_yaml::Value::from(true));
        assert!(v["z"].is_null());
    }
}

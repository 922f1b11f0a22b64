//! Maps key paths (`routes[1].upstream`) to the line they are written on, so that every config
//! problem can be reported where the operator will look for it.

use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Line numbers (1-based) of every key path in one YAML document.
#[derive(Debug, Default, Clone)]
pub struct LineIndex {
    lines: HashMap<String, usize>,
}

impl LineIndex {
    /// Indexes `text`; a document that does not parse yields an empty index (the YAML parser
    /// reports that error with its own line).
    pub fn new(text: &str) -> Self {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut builder, false).is_err() {
            return Self::default();
        }
        Self {
            lines: builder.lines,
        }
    }

    /// The line of `path`, or of its nearest ancestor that is in the file (a missing key is
    /// reported at its parent).
    pub fn line_of(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(l) = self.lines.get(p) {
                return Some(*l);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

enum Frame {
    Map { key: Option<String>, base: String },
    Seq { index: usize, base: String },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    lines: HashMap<String, usize>,
}

impl Builder {
    /// The path of the value that the next event describes, if it is a value (not a map key).
    fn next_value_path(&self) -> Option<String> {
        match self.stack.last() {
            None => Some(String::new()),
            Some(Frame::Map { key: Some(k), base }) => Some(join_key(base, k)),
            Some(Frame::Map { key: None, .. }) => None,
            Some(Frame::Seq { index, base }) => Some(format!("{base}[{index}]")),
        }
    }

    /// Marks the end of one value in the current container.
    fn value_done(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Map { key, .. }) => *key = None,
            Some(Frame::Seq { index, .. }) => *index += 1,
            None => {}
        }
    }
}

fn join_key(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_string()
    } else {
        format!("{base}.{key}")
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line();
        match ev {
            Event::Scalar(value, ..) => match self.next_value_path() {
                Some(path) => {
                    self.lines.entry(path).or_insert(line);
                    self.value_done();
                }
                None => {
                    if let Some(Frame::Map { key, base }) = self.stack.last_mut() {
                        self.lines.entry(join_key(base, &value)).or_insert(line);
                        *key = Some(value);
                    }
                }
            },
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let base = self.next_value_path().unwrap_or_default();
                self.lines.entry(base.clone()).or_insert(line);
                self.stack.push(if matches!(ev, Event::MappingStart(..)) {
                    Frame::Map { key: None, base }
                } else {
                    Frame::Seq { index: 0, base }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.value_done();
            }
            Event::Alias(_) => self.value_done(),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_keys_and_list_items() {
        let text = "server:\n  http:\n    listen: x\nroutes:\n  - id: a\n    path: /\n  - id: b\n    upstream: [u1, u2]\n";
        let idx = LineIndex::new(text);
        assert_eq!(idx.line_of("server.http.listen"), Some(3));
        assert_eq!(idx.line_of("routes[0].path"), Some(6));
        assert_eq!(idx.line_of("routes[1].id"), Some(7));
        assert_eq!(idx.line_of("routes[1].upstream[1]"), Some(8));
        assert_eq!(idx.line_of("routes[1].timeouts.connect"), Some(7));
    }
}

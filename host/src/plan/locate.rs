//! Line numbers for places in a YAML document, so that errors found after
//! parsing (a dangling input, a missing module) can still name the line.
//!
//! Paths are written the way serde_yaml writes them in its own errors:
//! `operators[2].wasm.module`.

use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

#[derive(Debug, Default)]
pub struct Locator {
    lines: HashMap<String, usize>,
}

impl Locator {
    /// Indexes `text`. A document that does not parse gives an empty index
    /// (the YAML error itself carries the line).
    pub fn new(text: &str) -> Locator {
        let mut recv = Receiver::default();
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut recv, false).is_err() {
            return Locator::default();
        }
        Locator { lines: recv.lines }
    }

    /// The line of `path` (1-based), or of its nearest ancestor that has one.
    pub fn line(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(&l) = self.lines.get(p) {
                return Some(l);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

enum Frame {
    Map { key: Option<String> },
    Seq { index: usize },
}

#[derive(Default)]
struct Receiver {
    lines: HashMap<String, usize>,
    stack: Vec<Frame>,
}

impl Receiver {
    fn path(&self) -> String {
        let mut p = String::new();
        for f in &self.stack {
            match f {
                Frame::Map { key: Some(k) } => {
                    if !p.is_empty() {
                        p.push('.');
                    }
                    p.push_str(k);
                }
                Frame::Map { key: None } => {}
                Frame::Seq { index } => {
                    p.push('[');
                    p.push_str(&index.to_string());
                    p.push(']');
                }
            }
        }
        p
    }

    /// A value has been read in the current container.
    fn value_done(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Map { key }) => *key = None,
            Some(Frame::Seq { index }) => *index += 1,
            None => {}
        }
    }

    fn value_starts(&mut self, line: usize) {
        let path = self.path();
        self.lines.entry(path).or_insert(line);
    }
}

impl MarkedEventReceiver for Receiver {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line();
        match ev {
            Event::Scalar(s, ..) => {
                if let Some(Frame::Map { key: key @ None }) = self.stack.last_mut() {
                    *key = Some(s);
                    self.value_starts(line);
                } else {
                    self.value_starts(line);
                    self.value_done();
                }
            }
            Event::MappingStart(..) => {
                self.value_starts(line);
                self.stack.push(Frame::Map { key: None });
            }
            Event::SequenceStart(..) => {
                self.value_starts(line);
                self.stack.push(Frame::Seq { index: 0 });
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
    use super::Locator;

    #[test]
    fn finds_lines_of_keys_and_items() {
        let text = "name: x\nsources:\n  - uid: a\n    path: p\n  - uid: b\n    event_time:\n      timestamp: /ts\noperators: []\n";
        let l = Locator::new(text);
        assert_eq!(l.line("name"), Some(1));
        assert_eq!(l.line("sources[0].uid"), Some(3));
        assert_eq!(l.line("sources[0].path"), Some(4));
        assert_eq!(l.line("sources[1]"), Some(5));
        assert_eq!(l.line("sources[1].event_time.timestamp"), Some(7));
        assert_eq!(l.line("sources[1].event_time.missing"), Some(6));
        assert_eq!(l.line("operators"), Some(8));
        assert_eq!(l.line("nothing"), None);
    }
}

use crate::connectors::{FormatOption, io_error};
use crate::error::RuntimeError;
use crate::runtime::PositionKind;
use crate::runtime::source::SourceFactory;
use crate::runtime::source::{Format, Source, SourceOutput, SourcePoll, SplitId};
use serde::Deserialize;
use std::fs::File;
use std::io::{IsTerminal, Read, Seek};
use std::path::PathBuf;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceOptions {
    /// A file, or a glob pattern (`data/*.jsonl`).
    pub path: String,
    #[serde(default)]
    pub format: FormatOption,
}

pub struct FileSourceFactory {
    files: Vec<PathBuf>,
    format: Format,
}

impl FileSourceFactory {
    pub fn new(options: FileSourceOptions) -> Result<FileSourceFactory, String> {
        let mut files: Vec<PathBuf> = if options.path.contains(['*', '?', '[']) {
            glob::glob(&options.path)
                .map_err(|e| format!("bad glob pattern `{}`: {e}", options.path))?
                .filter_map(Result::ok)
                .filter(|p| p.is_file())
                .collect()
        } else {
            let p = PathBuf::from(&options.path);
            match std::fs::metadata(&p) {
                Ok(m) if m.is_file() => vec![p],
                Ok(_) => return Err(format!("{} is not a file", p.display())),
                Err(e) => return Err(format!("cannot read {}: {e}", p.display())),
            }
        };
        if files.is_empty() {
            return Err(format!("no file matches `{}`", options.path));
        }
        files.sort();
        Ok(FileSourceFactory {
            files,
            format: options.format.into(),
        })
    }
}

impl SourceFactory for FileSourceFactory {
    fn splits(&self) -> Option<usize> {
        Some(self.files.len())
    }

    fn format(&self) -> Format {
        self.format
    }

    fn create(&self, subtask: u32, parallelism: u32) -> Box<dyn Source> {
        let files = self
            .files
            .iter()
            .skip(subtask as usize)
            .step_by(parallelism as usize)
            .cloned()
            .collect();
        Box::new(FileSource {
            files,
            next_file: 0,
            current: None,
            buf: Vec::new(),
            start: 0,
            buf_offset: 0,
            done: Vec::new(),
            resume: Default::default(),
            progress: None,
        })
    }
}

const CHUNK: usize = 1 << 20;

struct OpenFile {
    file: File,
    split: SplitId,
    path: PathBuf,
    line: u64,
    eof: bool,
}

pub struct FileSource {
    files: Vec<PathBuf>,
    next_file: usize,
    current: Option<OpenFile>,
    /// Bytes read but not yet handed on; `buf[start..]` is unconsumed.
    buf: Vec<u8>,
    start: usize,
    /// Where `buf[0]` is in the current file.
    buf_offset: u64,
    /// Files read to the end.
    done: Vec<String>,
    /// Restored positions: (byte offset, line) by file.
    resume: std::collections::HashMap<String, (u64, u64)>,
    progress: Option<indicatif::ProgressBar>,
}

impl FileSource {
    /// Moves on to the next file: false when there is none. A file a
    /// restored snapshot says is done is passed over (true, nothing open).
    fn open_next(&mut self, out: &mut SourceOutput) -> Result<bool, RuntimeError> {
        let Some(path) = self.files.get(self.next_file).cloned() else {
            return Ok(false);
        };
        self.next_file += 1;
        let name = path.display().to_string();
        if self.done.contains(&name) {
            return Ok(true);
        }
        let mut file =
            File::open(&path).map_err(io_error(format!("cannot open {}", path.display())))?;
        let (offset, line) = self.resume.get(&name).copied().unwrap_or((0, 0));
        if offset > 0 {
            file.seek(std::io::SeekFrom::Start(offset))
                .map_err(io_error(format!("cannot seek in {}", path.display())))?;
            if let Some(p) = &self.progress {
                p.inc(offset);
            }
        }
        let split = out.add_split(name, PositionKind::Line);
        self.buf.clear();
        self.start = 0;
        self.buf_offset = offset;
        self.current = Some(OpenFile {
            file,
            split,
            path,
            line,
            eof: false,
        });
        Ok(true)
    }

    fn fill(&mut self) -> Result<(), RuntimeError> {
        let f = self.current.as_mut().expect("open file");
        self.buf.drain(..self.start);
        self.buf_offset += self.start as u64;
        self.start = 0;
        let old = self.buf.len();
        self.buf.resize(old + CHUNK, 0);
        let n = f
            .file
            .read(&mut self.buf[old..])
            .map_err(io_error(format!("cannot read {}", f.path.display())))?;
        self.buf.truncate(old + n);
        if n == 0 {
            f.eof = true;
        }
        if let Some(p) = &self.progress {
            p.inc(n as u64);
        }
        Ok(())
    }
}

impl Source for FileSource {
    fn open(&mut self, _out: &mut SourceOutput) -> Result<(), RuntimeError> {
        if std::io::stderr().is_terminal() && !self.files.is_empty() {
            let total: u64 = self
                .files
                .iter()
                .filter_map(|p| std::fs::metadata(p).ok())
                .map(|m| m.len())
                .sum();
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
                )
                .expect("progress template")
                .progress_chars("=> "),
            );
            bar.set_message("reading");
            self.progress = Some(bar);
        }
        Ok(())
    }

    fn snapshot(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        for name in &self.done {
            m.insert(name.clone(), serde_json::json!({ "done": true }));
        }
        if let Some(f) = &self.current {
            m.insert(
                f.path.display().to_string(),
                serde_json::json!({ "offset": self.buf_offset + self.start as u64, "line": f.line }),
            );
        }
        m
    }

    fn restore(
        &mut self,
        positions: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), RuntimeError> {
        for f in &self.files {
            let name = f.display().to_string();
            let Some(p) = positions.get(&name) else {
                continue;
            };
            if p.get("done").and_then(|d| d.as_bool()) == Some(true) {
                self.done.push(name);
            } else {
                let offset = p.get("offset").and_then(|v| v.as_u64());
                let line = p.get("line").and_then(|v| v.as_u64());
                let (Some(offset), Some(line)) = (offset, line) else {
                    return Err(RuntimeError::Internal(format!(
                        "the snapshot's position for {name} is not readable: {p}"
                    )));
                };
                self.resume.insert(name, (offset, line));
            }
        }
        Ok(())
    }

    fn poll(&mut self, out: &mut SourceOutput) -> Result<SourcePoll, RuntimeError> {
        loop {
            // Files a restored snapshot says are done open to nothing.
            while self.current.is_none() {
                if !self.open_next(out)? {
                    if let Some(p) = self.progress.take() {
                        p.finish_and_clear();
                    }
                    return Ok(SourcePoll::Finished);
                }
            }
            while let Some(nl) = memchr::memchr(b'\n', &self.buf[self.start..]) {
                let f = self.current.as_mut().expect("open file");
                let line = &self.buf[self.start..self.start + nl];
                self.start += nl + 1;
                f.line += 1;
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if !line.trim_ascii().is_empty() {
                    out.push(f.split, None, line, f.line)?;
                }
                if out.is_full() {
                    return Ok(SourcePoll::More);
                }
            }
            let f = self.current.as_ref().expect("open file");
            if f.eof {
                let split = f.split;
                let last_line = f.line + 1;
                let rest = &self.buf[self.start..];
                if !rest.trim_ascii().is_empty() {
                    out.push(split, None, rest, last_line)?;
                }
                out.finish_split(split);
                self.done.push(f.path.display().to_string());
                self.current = None;
                if out.is_full() {
                    return Ok(SourcePoll::More);
                }
                continue;
            }
            self.fill()?;
        }
    }
}

//! Searching a process's dumped memory for a byte string or a regular expression
//! (`revive memgrep`).
//!
//! Every present page run is read in chunks of [`CHUNK`] bytes that overlap by
//! [`Pattern::window`] bytes, so memory of any size is searched in bounded memory and a
//! match that crosses a chunk's end is found once, in the chunk where it starts. A run is
//! contiguous in the process's address space; a match is never sought across two runs.

use memchr::memmem;
use serde::Serialize;

use super::ImageError;
use super::images::Source;
use super::memory::{Mapping, Memory, PagesAt};

/// Bytes read from a pages file at a time.
pub const CHUNK: usize = 8 << 20;
/// The longest match a regular expression is sure to be found with: a regular expression
/// is run over chunks overlapping by this much.
pub const REGEX_WINDOW: usize = 64 << 10;
/// Most bytes of context kept on each side of a match.
pub const MAX_CONTEXT: usize = 4096;
/// Most longest literal pattern.
pub const MAX_LITERAL: usize = REGEX_WINDOW;

/// What to look for.
pub enum Pattern {
    Literal(Box<memmem::Finder<'static>>),
    Regex(regex::bytes::Regex),
}

/// Why a pattern cannot be searched for.
#[derive(Debug, thiserror::Error)]
pub enum PatternError {
    #[error("the pattern is empty: give the string or bytes to look for")]
    Empty,
    #[error("the pattern is {0} bytes long; memgrep looks for at most {MAX_LITERAL}")]
    TooLong(usize),
    #[error(
        "the byte pattern {0:?} is not hexadecimal: write it as pairs of hex digits, e.g. 7f454c46"
    )]
    Hex(String),
    #[error("the regular expression does not compile: {0}")]
    Regex(#[from] regex::Error),
}

impl Pattern {
    pub fn literal(bytes: &[u8]) -> Result<Pattern, PatternError> {
        match bytes.len() {
            0 => Err(PatternError::Empty),
            n if n > MAX_LITERAL => Err(PatternError::TooLong(n)),
            _ => Ok(Pattern::Literal(Box::new(
                memmem::Finder::new(bytes).into_owned(),
            ))),
        }
    }

    /// A byte pattern written in hex ("7f454c46", spaces allowed).
    pub fn hex(text: &str) -> Result<Pattern, PatternError> {
        let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let bytes = hex::decode(&digits).map_err(|_| PatternError::Hex(text.to_string()))?;
        Pattern::literal(&bytes)
    }

    pub fn regex(expr: &str) -> Result<Pattern, PatternError> {
        if expr.is_empty() {
            return Err(PatternError::Empty);
        }
        Ok(Pattern::Regex(
            regex::bytes::RegexBuilder::new(expr)
                .size_limit(16 << 20)
                .build()?,
        ))
    }

    /// How much consecutive chunks overlap.
    fn window(&self) -> usize {
        match self {
            Pattern::Literal(f) => f.needle().len().saturating_sub(1),
            Pattern::Regex(_) => REGEX_WINDOW,
        }
    }

    /// Calls `found` with (start, end) of every match in `hay` that starts before `limit`.
    fn each(&self, hay: &[u8], limit: usize, found: &mut dyn FnMut(usize, usize) -> bool) {
        match self {
            Pattern::Literal(f) => {
                for start in f.find_iter(hay) {
                    if start >= limit || !found(start, start + f.needle().len()) {
                        return;
                    }
                }
            }
            Pattern::Regex(r) => {
                for m in r.find_iter(hay) {
                    if m.start() >= limit || !found(m.start(), m.end()) {
                        return;
                    }
                }
            }
        }
    }
}

/// One match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hit {
    pub pid: u32,
    /// The address of the match's first byte in the process.
    pub address: u64,
    pub len: usize,
    /// The mapping it lies in.
    pub mapping: Option<Mapping>,
    /// The bytes before, of and after the match (at most the context asked for each side,
    /// within the run).
    #[serde(skip)]
    pub before: Vec<u8>,
    #[serde(skip)]
    pub matched: Vec<u8>,
    #[serde(skip)]
    pub after: Vec<u8>,
}

/// Searches the present pages of `memory`; calls `found` for every match in address order
/// until it returns false. Returns how many bytes were searched.
pub fn search(
    source: &dyn Source,
    memory: &Memory,
    pattern: &Pattern,
    context: usize,
    found: &mut dyn FnMut(Hit) -> bool,
) -> Result<u64, ImageError> {
    let context = context.min(MAX_CONTEXT);
    let window = pattern.window().max(context);
    let mut buf = Vec::new();
    let mut searched = 0u64;
    for run in &memory.runs {
        let PagesAt::Here(offset) = run.at else {
            continue;
        };
        let len = run.end() - run.vaddr;
        let mut at = 0u64;
        while at < len {
            // The chunk: `context` bytes before `at` (when in the run), CHUNK bytes from
            // `at`, and `window` bytes after, for matches starting before the chunk's end.
            let lead = (context as u64).min(at);
            let start = at - lead;
            let end = (at + CHUNK as u64 + window as u64).min(len);
            buf.resize((end - start) as usize, 0);
            source.read_at(&memory.pages_file, offset + start, &mut buf)?;
            let from = lead as usize;
            let limit = ((at + CHUNK as u64).min(len) - start) as usize;
            let mut go_on = true;
            pattern.each(&buf[from..], limit - from, &mut |s, e| {
                let (s, e) = (s + from, e + from);
                let address = run.vaddr + start + s as u64;
                go_on = found(Hit {
                    pid: memory.pid,
                    address,
                    len: e - s,
                    mapping: memory.mapping_at(address).cloned(),
                    before: buf[s.saturating_sub(context)..s].to_vec(),
                    matched: buf[s..e].to_vec(),
                    after: buf[e..(e + context).min(buf.len())].to_vec(),
                });
                go_on
            });
            if !go_on {
                return Ok(searched);
            }
            searched += (limit - from) as u64;
            at += CHUNK as u64;
        }
    }
    Ok(searched)
}

//! Where each HTTP/1 request on a client connection begins and ends, followed as its bytes
//! arrive, beneath Pingora's parser.
//!
//! Two things need this:
//! - A chunked body's framing lines must end in CRLF. The chunk-size parser Pingora uses
//!   (httparse) takes a bare LF inside a chunk extension as extension text and reads on into
//!   the next line, where a front proxy that ends the line at the LF sees the chunk data: the
//!   two disagree on where the body ends, and the bytes in between become a smuggled request
//!   (the pattern of CVE-2025-55315). Here a bare LF (or a CR without LF) anywhere in a
//!   chunk-size line, after chunk data or in the trailer section is refused, so Pingora never
//!   reads such a body.
//! - The request-header deadline needs to know when a request's header section starts and ends,
//!   also for pipelined requests whose bytes arrive before the previous response.
//!
//! The header section's end is found here (the first empty line, LF or CRLF, after the request
//! line, as httparse finds it); the body's framing (none, a length, chunked) is told by the
//! proxy once Pingora has parsed the header ([`Tracker::set_framing`]). Bytes after a header
//! section are therefore held back until the framing is known, and bytes after a body until
//! Pingora reads again: [`Tracker::scan`] says how many of the bytes read may go to Pingora now.

use std::fmt;

/// How the body of the request whose header section was just read is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length` bytes (0: no body).
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// The connection stops carrying HTTP/1 requests (a `101 Switching Protocols`): its bytes
    /// are no longer followed.
    PassThrough,
}

/// Bytes that break HTTP/1 request framing; the connection must not be read further.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingError {
    /// A bare LF, or a CR not followed by LF, where chunked coding requires CRLF.
    ChunkLineEnd,
    /// A chunk-size line that is not a hex size, optional whitespace and extensions.
    ChunkSize,
    /// Bytes arrived after a header section while its framing was not known: Pingora read on
    /// where this tracker saw the header end (they disagree on the framing).
    Desync,
}

impl fmt::Display for FramingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FramingError::ChunkLineEnd => "chunked body line not ended by CRLF",
            FramingError::ChunkSize => "invalid chunk size line",
            FramingError::Desync => "request framing out of step",
        })
    }
}

impl std::error::Error for FramingError {}

/// Where in a header section the last byte left off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Head {
    /// Before the request line: empty lines are skipped (as httparse does).
    Start,
    /// A CR before the request line.
    StartCr,
    /// Inside the request line.
    RequestLine,
    /// A CR in the request line, at the end of the bytes read so far: LF must follow.
    RequestLineCr,
    /// Inside a header field line.
    Line,
    /// Just after a line's LF: an LF or CRLF here ends the section.
    LineStart,
    /// A CR at the start of a line.
    LineStartCr,
}

/// Where in a chunked body the last byte left off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// The chunk-size digits (as httparse: at most 16).
    Digits { count: u8, size: u64 },
    /// Whitespace after the digits, before `;` or the line end.
    Space { size: u64 },
    /// A chunk extension: anything up to the line end.
    Extension { size: u64 },
    /// A CR ending the size line; LF must follow.
    SizeLf { size: u64 },
    /// Chunk data still to come.
    Data(u64),
    /// The CR after chunk data.
    DataCr,
    /// The LF after chunk data.
    DataLf,
    /// At the start of a trailer line (or the empty line ending the body).
    TrailerStart,
    /// Inside a trailer field line; `cr` when its last byte was CR.
    TrailerLine { cr: bool },
    /// The CR of the empty line ending the body.
    TrailerEndLf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a header section; `started` once any of its bytes arrived.
    Head {
        at: Head,
        started: bool,
    },
    /// A header section was handed over; its body's framing is not known yet.
    AwaitFraming,
    /// Body bytes still to come.
    Length(u64),
    Chunked(Chunk),
    PassThrough,
    /// An error was returned: nothing more is read.
    Failed(FramingError),
}

/// The framing state of one client connection.
#[derive(Debug, Clone)]
pub struct Tracker {
    state: State,
    /// The last request line seen had a control character.
    request_line_control: bool,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker {
            state: State::idle(),
            request_line_control: false,
        }
    }
}

/// What [`Tracker::scan`] found in a piece of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scanned {
    /// How many of the bytes may be handed to Pingora now; the rest wait for the framing.
    pub deliver: usize,
    /// A header section ended within the delivered bytes.
    pub head_ended: bool,
}

/// The largest chunk-size value httparse takes: 16 hex digits.
const MAX_SIZE_DIGITS: u8 = 16;

impl Tracker {
    /// Follows `bytes`, the next bytes of the connection. Stops at the end of a header
    /// section and at the end of a body: what follows is for a later read, so that Pingora
    /// gets the next request's header only once it has finished the one before (and the bytes
    /// after a header section wait for [`Tracker::set_framing`]). Takes at least one byte of a
    /// non-empty `bytes`, or fails.
    pub fn scan(&mut self, bytes: &[u8]) -> Result<Scanned, FramingError> {
        if bytes.is_empty() {
            return Ok(Scanned {
                deliver: 0,
                head_ended: false,
            });
        }
        let mut head_ended = false;
        let deliver = match &mut self.state {
            State::Head { at, started } => {
                if !*started {
                    self.request_line_control = false;
                }
                *started = true;
                match scan_head(at, &mut self.request_line_control, bytes) {
                    Some(end) => {
                        self.state = State::AwaitFraming;
                        head_ended = true;
                        end
                    }
                    None => bytes.len(),
                }
            }
            State::AwaitFraming => return Err(self.fail(FramingError::Desync)),
            State::Length(left) => {
                // Never 0 here: a body of length 0 goes straight back to `Head`.
                let used = (*left).min(bytes.len() as u64);
                *left -= used;
                if *left == 0 {
                    self.state = State::idle();
                }
                used as usize
            }
            State::Chunked(chunk) => match scan_chunked(chunk, bytes) {
                Ok((used, done)) => {
                    if done {
                        self.state = State::idle();
                    }
                    used
                }
                Err(e) => return Err(self.fail(e)),
            },
            State::PassThrough => bytes.len(),
            State::Failed(e) => return Err(*e),
        };
        Ok(Scanned {
            deliver,
            head_ended,
        })
    }

    /// The framing of the request whose header section was handed over last. Told while no
    /// header section awaits it, Pingora and this tracker are out of step: the next read fails.
    pub fn set_framing(&mut self, framing: Framing) {
        self.state = match (self.state, framing) {
            (State::Failed(e), _) => State::Failed(e),
            (_, Framing::PassThrough) => State::PassThrough,
            (State::AwaitFraming, Framing::Length(0)) => State::idle(),
            (State::AwaitFraming, Framing::Length(n)) => State::Length(n),
            (State::AwaitFraming, Framing::Chunked) => {
                State::Chunked(Chunk::Digits { count: 0, size: 0 })
            }
            _ => State::Failed(FramingError::Desync),
        };
    }

    /// Some bytes of a header section have arrived, and not yet its end.
    pub fn in_head(&self) -> bool {
        matches!(self.state, State::Head { started: true, .. })
    }

    /// The request line of the last header section has a control character (a byte below
    /// 0x20 other than the CR of its CRLF, or DEL), which Pingora would percent-encode and
    /// forward.
    pub fn request_line_has_control(&self) -> bool {
        self.request_line_control
    }

    /// A header section was handed over and its framing is not known yet.
    pub fn awaits_framing(&self) -> bool {
        self.state == State::AwaitFraming
    }

    fn fail(&mut self, e: FramingError) -> FramingError {
        self.state = State::Failed(e);
        e
    }
}

impl State {
    /// Between requests.
    fn idle() -> State {
        State::Head {
            at: Head::Start,
            started: false,
        }
    }
}

/// Follows a header section; returns the index just past its end if it ends within `bytes`.
/// Sets `control` when the request line has a control character (Pingora would percent-encode
/// it and go on).
fn scan_head(head: &mut Head, control: &mut bool, bytes: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match *head {
            Head::Start => match b {
                b'\n' => {}
                b'\r' => *head = Head::StartCr,
                _ => {
                    *head = Head::RequestLine;
                    continue;
                }
            },
            // A CR without LF here is refused by the parser; whatever follows is a line.
            Head::StartCr => *head = if b == b'\n' { Head::Start } else { Head::Line },
            Head::RequestLine => {
                let rest = &bytes[i..];
                let lf = memchr::memchr(b'\n', rest);
                let line = &rest[..lf.unwrap_or(rest.len())];
                // A CR belongs only right before the LF (which may be in the next read).
                let (line, cr) = match line.split_last() {
                    Some((b'\r', before)) => (before, true),
                    _ => (line, false),
                };
                *control |= line.iter().any(|&b| b < 0x20 || b == 0x7f);
                match lf {
                    Some(lf) => {
                        i += lf;
                        *head = Head::LineStart;
                    }
                    None => {
                        if cr {
                            *head = Head::RequestLineCr;
                        }
                        return None;
                    }
                }
            }
            Head::RequestLineCr => {
                if b == b'\n' {
                    *head = Head::LineStart;
                } else {
                    *control = true;
                    *head = Head::RequestLine;
                    continue;
                }
            }
            Head::Line => match memchr::memchr(b'\n', &bytes[i..]) {
                Some(lf) => {
                    i += lf;
                    *head = Head::LineStart;
                }
                None => return None,
            },
            Head::LineStart | Head::LineStartCr if b == b'\n' => return Some(i + 1),
            Head::LineStart if b == b'\r' => *head = Head::LineStartCr,
            Head::LineStart | Head::LineStartCr => *head = Head::Line,
        }
        i += 1;
    }
    None
}

/// Follows a chunked body; returns how many bytes it took and whether the body ended with them.
fn scan_chunked(chunk: &mut Chunk, bytes: &[u8]) -> Result<(usize, bool), FramingError> {
    let mut i = 0;
    while i < bytes.len() {
        if let Chunk::Data(left) = *chunk {
            // Data is skipped whole, not byte by byte.
            let used = left.min((bytes.len() - i) as u64);
            i += used as usize;
            *chunk = if used == left {
                Chunk::DataCr
            } else {
                Chunk::Data(left - used)
            };
            continue;
        }
        if *chunk == Chunk::TrailerEndLf {
            return match bytes[i] {
                b'\n' => Ok((i + 1, true)),
                _ => Err(FramingError::ChunkLineEnd),
            };
        }
        *chunk = chunk_line_byte(*chunk, bytes[i])?;
        i += 1;
    }
    Ok((i, false))
}

/// The state after one byte of a chunk-size line, of the CRLF after chunk data, or of the
/// trailer section.
fn chunk_line_byte(chunk: Chunk, b: u8) -> Result<Chunk, FramingError> {
    use FramingError::{ChunkLineEnd, ChunkSize};
    Ok(match (chunk, b) {
        (Chunk::Digits { count, size }, b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F') => {
            if count == MAX_SIZE_DIGITS {
                return Err(ChunkSize);
            }
            let digit = u64::from((b as char).to_digit(16).unwrap_or(0));
            Chunk::Digits {
                count: count + 1,
                size: size * 16 + digit,
            }
        }
        (Chunk::Digits { size, .. } | Chunk::Space { size }, b' ' | b'\t') => Chunk::Space { size },
        (Chunk::Digits { size, .. } | Chunk::Space { size }, b';') => Chunk::Extension { size },
        (Chunk::Digits { size, .. } | Chunk::Space { size } | Chunk::Extension { size }, b'\r') => {
            Chunk::SizeLf { size }
        }
        (Chunk::Digits { .. } | Chunk::Space { .. } | Chunk::Extension { .. }, b'\n') => {
            return Err(ChunkLineEnd)
        }
        (Chunk::Digits { .. } | Chunk::Space { .. }, _) => return Err(ChunkSize),
        (Chunk::Extension { size }, _) => Chunk::Extension { size },
        (Chunk::SizeLf { size: 0 }, b'\n') => Chunk::TrailerStart,
        (Chunk::SizeLf { size }, b'\n') => Chunk::Data(size),
        (Chunk::DataCr, b'\r') => Chunk::DataLf,
        (Chunk::DataLf, b'\n') => Chunk::Digits { count: 0, size: 0 },
        (Chunk::TrailerStart, b'\r') => Chunk::TrailerEndLf,
        (Chunk::TrailerStart | Chunk::TrailerLine { cr: false }, b'\n') => {
            return Err(ChunkLineEnd)
        }
        (Chunk::TrailerLine { cr: false }, b'\r') => Chunk::TrailerLine { cr: true },
        (Chunk::TrailerStart | Chunk::TrailerLine { cr: false }, _) => {
            Chunk::TrailerLine { cr: false }
        }
        (Chunk::TrailerLine { cr: true }, b'\n') => Chunk::TrailerStart,
        // A CR not followed by LF; a missing CRLF after data. (Data and the final LF are
        // handled by the caller.)
        (
            Chunk::SizeLf { .. }
            | Chunk::DataCr
            | Chunk::DataLf
            | Chunk::TrailerLine { cr: true }
            | Chunk::TrailerEndLf
            | Chunk::Data(_),
            _,
        ) => return Err(ChunkLineEnd),
    })
}

#[cfg(test)]
mod tests;

//! The log masker: replaces every registered secret, and its common encodings, with `***`,
//! in whole texts and in streams cut anywhere.

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine as _;
use std::borrow::Cow;

/// What a masked value is replaced with.
pub const MASK: &str = "***";

/// Encoded forms shorter than this are not masked: a two-character base64 fragment would blank
/// out unrelated text while revealing nothing about the secret.
const MIN_DERIVED: usize = 6;

/// Values (and lines of multi-line values) shorter than this many characters, once trimmed,
/// are not masked: masking `ab` would blank out every `ab` of a log, and where the masks fall
/// would give the value away anyway. GitHub Actions does the same; callers warn about them
/// (see [`too_short`]).
pub const MIN_SECRET_CHARS: usize = 4;

/// True when `value` is too short to be masked ([`MIN_SECRET_CHARS`]).
///
/// ```
/// assert!(pipewright_secrets::too_short(" ab "));
/// assert!(!pipewright_secrets::too_short("abcd"));
/// ```
pub fn too_short(value: &str) -> bool {
    value.trim().chars().count() < MIN_SECRET_CHARS
}

/// A set of secrets compiled for masking. Build one per build from every resolved value; share
/// it behind an `Arc`. Masking is leftmost-longest: of two secrets starting at the same byte,
/// the longer one wins.
///
/// For each secret the masker matches:
/// - the value, and each line of a multi-line value (trailing `\r` removed), and the value
///   trimmed of surrounding whitespace;
/// - its standard and URL-safe base64 at all three byte alignments (the characters that depend
///   on the secret alone, so the secret is found inside a larger encoded blob too);
/// - its percent-encoded forms — everything but letters and digits, RFC 3986 (`-_.~` kept),
///   Python's `quote` (`/` kept too), `encodeURIComponent`, and the form encodings with `+` for
///   a space (Python `quote_plus`, Go `QueryEscape`, WHATWG, PHP `urlencode`), each with upper-
///   and lower-case hex — and its JSON-escaped form, when they differ from the value.
///
/// Values shorter than [`MIN_SECRET_CHARS`] are not masked at all. Other encodings (hex,
/// reversed, case-changed, partly encoded) are not matched.
///
/// No pattern contains a newline, which lets a [`StreamMasker`] release each complete line at
/// once.
///
/// ```
/// use pipewright_secrets::Masker;
/// let m = Masker::new(["hunter2-password"]);
/// assert_eq!(m.mask_str("pw=hunter2-password"), "pw=***");
/// // base64 of the value: the last character also carries bits of whatever follows, so it stays
/// assert_eq!(m.mask_str("aHVudGVyMi1wYXNzd29yZA=="), "***A==");
/// ```
#[derive(Clone, Default)]
pub struct Masker {
    ac: Option<AhoCorasick>,
    longest: usize,
    patterns: usize,
    secrets: usize,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Masker")
            .field("secrets", &self.secrets)
            .field("patterns", &self.patterns)
            .field("longest", &self.longest)
            .finish()
    }
}

impl Masker {
    /// A masker for `secrets`; empty values and values shorter than [`MIN_SECRET_CHARS`] are
    /// ignored.
    pub fn new<I, S>(secrets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut pats: Vec<String> = Vec::new();
        let mut secrets_n = 0;
        for s in secrets {
            let s = s.as_ref();
            if too_short(s) {
                continue;
            }
            secrets_n += 1;
            variants(s, &mut pats);
        }
        pats.sort();
        pats.dedup();
        let longest = pats.iter().map(String::len).max().unwrap_or(0);
        let ac = if pats.is_empty() {
            None
        } else {
            // Building only fails for absurd pattern sets (beyond the automaton's size limits);
            // then fall back to masking nothing would leak, so mask the raw values one by one.
            match AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&pats)
            {
                Ok(ac) => Some(ac),
                Err(e) => {
                    tracing::error!(error = %e, "cannot compile the masker");
                    None
                }
            }
        };
        Self {
            ac,
            longest,
            patterns: pats.len(),
            secrets: secrets_n,
        }
    }

    /// A masker that masks nothing.
    pub fn empty() -> Self {
        Self::default()
    }

    /// How many secrets were registered.
    pub fn secrets(&self) -> usize {
        self.secrets
    }

    /// How many patterns (values and encodings) are matched.
    pub fn patterns(&self) -> usize {
        self.patterns
    }

    /// The longest pattern in bytes: a stream holds back at most this minus one byte.
    pub fn longest(&self) -> usize {
        self.longest
    }

    /// Masks a whole text.
    pub fn mask<'a>(&self, text: &'a [u8]) -> Cow<'a, [u8]> {
        let Some(ac) = &self.ac else {
            return Cow::Borrowed(text);
        };
        let mut out = Vec::new();
        let mut cursor = 0;
        for m in ac.find_iter(text) {
            out.extend_from_slice(&text[cursor..m.start()]);
            out.extend_from_slice(MASK.as_bytes());
            cursor = m.end();
        }
        if cursor == 0 {
            return Cow::Borrowed(text);
        }
        out.extend_from_slice(&text[cursor..]);
        Cow::Owned(out)
    }

    /// Masks `text` into a [`Masked`], the form result types keep texts in.
    pub fn masked(&self, text: &str) -> Masked {
        Masked(self.mask_str(text).into_owned())
    }

    /// Masks a whole string. Patterns are whole UTF-8 strings, so the result stays UTF-8.
    pub fn mask_str<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match self.mask(text.as_bytes()) {
            Cow::Borrowed(_) => Cow::Borrowed(text),
            Cow::Owned(v) => Cow::Owned(String::from_utf8_lossy(&v).into_owned()),
        }
    }
}

/// Text that went through a [`Masker`]. Only [`Masker::masked`] makes one, so a field of this
/// type (a failure reason in a build result) cannot hold a value the masker knew in plain.
///
/// It serializes as the plain string; deserializing one (a stored build result) trusts that it
/// was masked when it was written.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Masked(String);

impl Masked {
    /// The masked text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The masked text, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl std::ops::Deref for Masked {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Masked {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Masked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for Masked {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Masked {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// Masks a stream written in chunks cut anywhere: the output is exactly what [`Masker::mask`]
/// gives for the whole stream. It holds back at most `longest - 1` bytes, and never bytes
/// before the last newline seen, so complete lines flow out at once.
#[derive(Debug, Default, Clone)]
pub struct StreamMasker {
    pending: Vec<u8>,
}

impl StreamMasker {
    /// An empty stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes held back, waiting to see whether they start a secret.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Feeds `chunk` and appends what is safe to release to `out`. The masker may change
    /// between calls (a secret registered later); the pending bytes are rescanned with it.
    pub fn push(&mut self, masker: &Masker, chunk: &[u8], out: &mut Vec<u8>) {
        let Some(ac) = &masker.ac else {
            out.append(&mut self.pending);
            out.extend_from_slice(chunk);
            return;
        };
        let buf: Cow<[u8]> = if self.pending.is_empty() {
            Cow::Borrowed(chunk)
        } else {
            let mut b = std::mem::take(&mut self.pending);
            b.extend_from_slice(chunk);
            Cow::Owned(b)
        };
        // A match starting before `safe` is complete within `buf` whatever comes next, and a
        // match never spans a newline: so everything before `safe` can be decided now.
        let by_len = buf.len().saturating_sub(masker.longest.saturating_sub(1));
        let by_line = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let safe = by_len.max(by_line);
        let mut cursor = 0;
        for m in ac.find_iter(&*buf) {
            if m.start() >= safe {
                break;
            }
            out.extend_from_slice(&buf[cursor..m.start()]);
            out.extend_from_slice(MASK.as_bytes());
            cursor = m.end();
        }
        let keep_from = cursor.max(safe);
        out.extend_from_slice(&buf[cursor..keep_from]);
        self.pending.clear();
        self.pending.extend_from_slice(&buf[keep_from..]);
    }

    /// Ends the stream: masks and releases whatever is held back.
    pub fn finish(&mut self, masker: &Masker, out: &mut Vec<u8>) {
        let rest = std::mem::take(&mut self.pending);
        out.extend_from_slice(&masker.mask(&rest));
    }
}

/// Every pattern that reveals `s` (already known not to be too short).
fn variants(s: &str, out: &mut Vec<String>) {
    let mut raw: Vec<&str> = vec![s, s.trim()];
    if s.contains('\n') {
        raw.retain(|r| !r.contains('\n'));
        raw.extend(s.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)));
    }
    // A short line (`}` of a JSON document) would blank out every such line of the log.
    for r in raw {
        if !too_short(r) {
            out.push(r.to_owned());
        }
    }
    let derived = |p: String, out: &mut Vec<String>| {
        if p.len() >= MIN_DERIVED && !p.contains('\n') && p != s {
            out.push(p);
        }
    };
    for engine in [
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ] {
        for offset in 0..3 {
            derived(base64_fragment(engine, s.as_bytes(), offset), out);
        }
    }
    for form in URL_FORMS {
        for lower in [false, true] {
            derived(url_encode(s, form, lower), out);
        }
    }
    if let Ok(json) = serde_json::to_string(s) {
        derived(json[1..json.len() - 1].to_owned(), out);
    }
}

/// One way of percent-encoding: the bytes besides ASCII letters and digits left as they are,
/// and whether a space becomes `+` (form encoding) rather than `%20`.
struct UrlForm {
    keep: &'static [u8],
    plus: bool,
}

/// The percent-encodings common tools produce; each is also matched with lower-case hex.
/// Identical results collapse, so a secret of letters, digits and `-` adds one pattern at most.
const URL_FORMS: &[UrlForm] = &[
    // Every byte but letters and digits.
    UrlForm {
        keep: b"",
        plus: false,
    },
    // RFC 3986 unreserved: Python `quote(s, safe="")`, curl, PHP `rawurlencode`.
    UrlForm {
        keep: b"-_.~",
        plus: false,
    },
    // Python `quote(s)`, whose default keeps `/`.
    UrlForm {
        keep: b"-_.~/",
        plus: false,
    },
    // JavaScript `encodeURIComponent`.
    UrlForm {
        keep: b"-_.!~*'()",
        plus: false,
    },
    // Python `quote_plus`, Go `url.QueryEscape`.
    UrlForm {
        keep: b"-_.~",
        plus: true,
    },
    // HTML forms and `URLSearchParams` (WHATWG), Java `URLEncoder`.
    UrlForm {
        keep: b"*-._",
        plus: true,
    },
    // PHP `urlencode`.
    UrlForm {
        keep: b"-_.",
        plus: true,
    },
];

/// `s` percent-encoded as `form` says, with upper- or lower-case hex digits.
fn url_encode(s: &str, form: &UrlForm, lower: bool) -> String {
    let hex: &[u8; 16] = if lower {
        b"0123456789abcdef"
    } else {
        b"0123456789ABCDEF"
    };
    let mut out = String::with_capacity(s.len() * 3);
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || form.keep.contains(&b) {
            out.push(char::from(b));
        } else if b == b' ' && form.plus {
            out.push('+');
        } else {
            out.push('%');
            out.push(char::from(hex[usize::from(b >> 4)]));
            out.push(char::from(hex[usize::from(b & 0x0f)]));
        }
    }
    out
}

/// The base64 characters determined by `secret` alone when it starts `offset` bytes into an
/// encoded stream: encode `offset` filler bytes + the secret, then drop the characters that mix
/// in filler bits or the unknown bytes after the secret.
fn base64_fragment(
    engine: &base64::engine::GeneralPurpose,
    secret: &[u8],
    offset: usize,
) -> String {
    let mut data = vec![0u8; offset];
    data.extend_from_slice(secret);
    let enc = engine.encode(&data);
    let first_bit = offset * 8;
    let end_bit = (offset + secret.len()) * 8;
    let first = first_bit.div_ceil(6);
    let last = end_bit / 6; // exclusive: characters fully inside the secret's bits
    if last <= first {
        return String::new();
    }
    enc.get(first..last).unwrap_or("").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_fragments_are_found_in_encoded_blobs_at_every_alignment() {
        let secret = "correct horse battery staple";
        let m = Masker::new([secret]);
        for prefix in ["", "a", "ab", "abc", "abcd"] {
            for suffix in ["", "x", "xy", "xyz"] {
                let blob = base64::engine::general_purpose::STANDARD
                    .encode(format!("{prefix}{secret}{suffix}"));
                let masked = m.mask_str(&blob);
                assert!(
                    masked.contains(MASK),
                    "{prefix:?}/{suffix:?}: {blob} → {masked}"
                );
            }
        }
    }

    #[test]
    fn longer_secret_wins_and_lines_are_masked_separately() {
        let m = Masker::new(["abc-1234", "abc-1234-extra", "line-one\r\nline-two\n"]);
        assert_eq!(m.mask_str("x abc-1234-extra y"), "x *** y");
        assert_eq!(m.mask_str("line-one\nline-two"), "***\n***");
        assert_eq!(m.mask_str("nothing here"), "nothing here");
    }
}

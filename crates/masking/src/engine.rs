//! The one-pass scanner: byte-class and literal prefilters find candidate starts, one
//! anchored multi-pattern DFA (`MatchKind::All`) runs only there, validators run only on
//! the DFA's candidate matches, and the longest valid match wins.

use regex_automata::dfa::{Automaton, StartKind, dense};
use regex_automata::util::prefilter::Prefilter;
use regex_automata::util::primitives::StateID;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input, MatchKind, Span};

use crate::MaskingError;
use crate::detectors::{Boundary, Validator, ValuePart};

/// Longest match the DFA is walked for from one start (PEM bodies excepted: they are
/// consumed by the PEM state machine without limit). Also the streaming carry bound.
pub const MAX_MATCH: usize = 8192;
/// Longest look-back from a trigger byte to the start of its match (e-mail local part).
pub(crate) const MAX_BACKSCAN: usize = 64;
/// Bytes of already-emitted input a stream keeps as look-behind context.
pub(crate) const CONTEXT: usize = MAX_BACKSCAN + 2;

const DIGIT: u8 = 1;
const AT: u8 = 2;
const COLON: u8 = 4;
const CUSTOM_ANY: u8 = 8;
const CUSTOM_WORD: u8 = 16;

/// One pattern of the automaton.
#[derive(Debug, Clone)]
pub(crate) struct PatternInfo {
    pub detector: u16,
    pub validator: Validator,
    pub boundary: Boundary,
    pub value: ValuePart,
    pub pem: bool,
}

/// Pattern source handed to [`Engine::build`].
pub(crate) struct PatternSource {
    pub regex: String,
    pub info: PatternInfo,
    /// Custom detectors: trigger on every possible first byte (`Some(word)`: word starts only).
    pub custom_trigger: Option<bool>,
}

/// What triggers built-in candidates.
#[derive(Default, Clone, Copy)]
pub(crate) struct Triggers {
    pub digits: bool,
    pub iban: bool,
    pub at: bool,
    pub colon: bool,
}

/// A match chosen by the scanner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Found {
    pub start: usize,
    pub end: usize,
    pub mask_start: usize,
    pub mask_end: usize,
    pub detector: u16,
}

/// How much of the input is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// More input may follow: undecidable candidates are deferred.
    More,
    /// Decide everything now as if the input ended, but keep an open PEM block open.
    Flush,
    /// The input ends here.
    Final,
}

/// State of the PEM body machine (looking for `-----END ...-----`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PemState {
    Body { dashes: u8 },
    End { matched: u8 },
    Label { len: u8, dashes: u8 },
}

/// Result of feeding bytes to the PEM machine.
pub(crate) enum PemStep {
    /// The block ends after `consumed` bytes.
    Ended(usize),
    /// Every byte was consumed; still inside the block.
    Open(PemState),
}

fn pem_body_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'+' | b'/' | b'=' | b' ' | b'\t' | b'\r' | b'\n' | b'\\' | b':' | b',' | b'-' | b'.'
        )
}

impl PemState {
    pub(crate) const START: PemState = PemState::Body { dashes: 0 };

    fn body(b: u8, dashes: u8) -> PemState {
        if b == b'-' {
            if dashes + 1 >= 5 {
                PemState::End { matched: 0 }
            } else {
                PemState::Body { dashes: dashes + 1 }
            }
        } else {
            PemState::Body { dashes: 0 }
        }
    }

    /// Feeds `bytes`; the block ends after an `-----END <label>-----` line or before the
    /// first byte that cannot appear in a PEM body (base64, whitespace, `\`, `:`, `,`, `-`, `.`).
    pub(crate) fn feed(mut self, bytes: &[u8]) -> PemStep {
        for (i, &b) in bytes.iter().enumerate() {
            if !pem_body_byte(b) {
                return PemStep::Ended(i);
            }
            self = match self {
                PemState::Body { dashes } => PemState::body(b, dashes),
                PemState::End { matched } => {
                    let want = b"END".get(usize::from(matched)).copied();
                    if Some(b) == want {
                        if matched + 1 == 3 {
                            PemState::Label { len: 0, dashes: 0 }
                        } else {
                            PemState::End {
                                matched: matched + 1,
                            }
                        }
                    } else if b == b'-' && matched == 0 {
                        PemState::End { matched: 0 }
                    } else {
                        PemState::body(b, 0)
                    }
                }
                PemState::Label { len, dashes } => {
                    if b == b'-' {
                        if dashes + 1 == 5 {
                            return PemStep::Ended(i + 1);
                        }
                        PemState::Label {
                            len,
                            dashes: dashes + 1,
                        }
                    } else if dashes == 0
                        && len < 64
                        && (b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' ')
                    {
                        PemState::Label {
                            len: len + 1,
                            dashes,
                        }
                    } else {
                        PemState::body(b, 0)
                    }
                }
            };
        }
        PemStep::Open(self)
    }
}

/// Reusable buffers of one scan.
#[derive(Default)]
pub(crate) struct Scratch {
    cands: Vec<usize>,
    ends: Vec<(usize, usize)>,
    pub found: Vec<Found>,
}

/// Outcome of a scan.
pub(crate) struct ScanEnd {
    /// Input before this offset is decided (matches in `found` lie before it).
    pub done: usize,
    /// A PEM block runs to the end of the input and is still open.
    pub pem: Option<PemState>,
}

/// The compiled scanner.
pub(crate) struct Engine {
    dfa: dense::DFA<Vec<u32>>,
    start: Option<StateID>,
    patterns: Vec<PatternInfo>,
    class: [u8; 256],
    custom_on_digits: bool,
    swar: bool,
    iban: bool,
    literals: Option<Prefilter>,
    literal_list: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("patterns", &self.patterns.len())
            .field("dfa_bytes", &self.dfa.memory_usage())
            .finish()
    }
}

fn syntax_config() -> syntax::Config {
    syntax::Config::new().unicode(false).utf8(false)
}

fn is_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

/// Bytes a future trigger can look back over (for the streaming hold-back).
fn is_backscan(b: u8) -> bool {
    is_local(b) || matches!(b, b':' | b'(')
}

fn at(hay: &[u8], i: usize) -> Option<u8> {
    hay.get(i).copied()
}

fn before(hay: &[u8], i: usize, back: usize) -> Option<u8> {
    i.checked_sub(back).and_then(|j| hay.get(j).copied())
}

/// Decides whether a digit run is worth a DFA walk: 7+ digits, or an IPv4 shape.
/// `None`: the run reaches the end of a non-final input.
#[inline(never)]
fn numeric_filter(hay: &[u8], i: usize, eof: bool) -> Option<bool> {
    // ISO dates and timestamps (`2024-03-01`, `2024/03/01`): no detector starts with
    // four digits, a separator and two digits followed by the same separator.
    if let Some(w) = hay.get(i..i + 8)
        && w.iter().take(4).all(u8::is_ascii_digit)
        && matches!(w.get(4), Some(b'-' | b'/'))
        && w.get(5..7)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
        && w.get(7) == w.get(4)
    {
        return Some(false);
    }
    let mut digits = 0u32;
    let mut dots = 0u32;
    let end = hay.len().min(i + 48);
    let mut j = i;
    while j < end {
        let b = hay.get(j).copied().unwrap_or(0);
        if b.is_ascii_digit() {
            digits += 1;
            if digits >= 7 {
                return Some(true);
            }
        } else if b == b'.' {
            dots += 1;
        } else if matches!(b, b'-' | b'(' | b')' | b'/') {
        } else if b == b' ' {
            match hay.get(j + 1) {
                Some(n) if n.is_ascii_digit() || *n == b'(' => {}
                None if !eof => return None,
                _ => break,
            }
        } else {
            break;
        }
        j += 1;
    }
    if j == hay.len() && !eof {
        return None;
    }
    Some(dots >= 3 && digits >= 4)
}

fn build_dfa(patterns: &[&str], kind: StartKind) -> Result<dense::DFA<Vec<u32>>, String> {
    dense::Builder::new()
        .configure(
            dense::DFA::config()
                .match_kind(MatchKind::All)
                .start_kind(kind)
                .accelerate(false)
                .specialize_start_states(false)
                .dfa_size_limit(Some(64 << 20))
                .determinize_size_limit(Some(64 << 20)),
        )
        .syntax(syntax_config())
        .build_many(patterns)
        .map_err(|e| e.to_string())
}

/// Possible first bytes of a pattern, and whether it matches the empty string.
pub(crate) fn first_bytes(regex: &str) -> Result<([bool; 256], bool), String> {
    let dfa = build_dfa(&[regex], StartKind::Anchored)?;
    let start = dfa
        .universal_start_state(Anchored::Yes)
        .ok_or_else(|| "look-around assertions at the start are not supported".to_string())?;
    let mut set = [false; 256];
    for (b, slot) in set.iter_mut().enumerate() {
        let byte = u8::try_from(b).unwrap_or(0);
        let next = dfa.next_state(start, byte);
        *slot = !dfa.is_dead_state(next);
    }
    let empty = dfa.is_match_state(dfa.next_eoi_state(start));
    Ok((set, empty))
}

impl Engine {
    pub(crate) fn build(
        sources: Vec<PatternSource>,
        triggers: Triggers,
        literals: Vec<Vec<u8>>,
    ) -> Result<Engine, MaskingError> {
        let regexes: Vec<&str> = sources.iter().map(|s| s.regex.as_str()).collect();
        let dfa = build_dfa(&regexes, StartKind::Anchored)
            .map_err(|e| MaskingError::config("detectors", format!("automaton: {e}")))?;
        let start = dfa.universal_start_state(Anchored::Yes);
        let mut class = [0u8; 256];
        if triggers.digits || triggers.iban {
            for b in b'0'..=b'9' {
                class[usize::from(b)] |= DIGIT;
            }
        }
        if triggers.at {
            class[usize::from(b'@')] |= AT;
        }
        if triggers.colon {
            class[usize::from(b':')] |= COLON;
        }
        let mut custom_on_digits = false;
        for s in &sources {
            if let Some(word) = s.custom_trigger {
                let (set, _) = first_bytes(&s.regex)
                    .map_err(|e| MaskingError::config("custom", format!("automaton: {e}")))?;
                for (b, on) in set.iter().enumerate() {
                    if *on {
                        if let Some(c) = class.get_mut(b) {
                            *c |= if word { CUSTOM_WORD } else { CUSTOM_ANY };
                        }
                        if (usize::from(b'0')..=usize::from(b'9')).contains(&b) {
                            custom_on_digits = true;
                        }
                    }
                }
            }
        }
        // The word-at-a-time skip knows digits, `@` and `:` only.
        let swar = class.iter().enumerate().all(|(b, c)| {
            *c == 0 || u8::try_from(b).is_ok_and(|b| b.is_ascii_digit() || b == b'@' || b == b':')
        });
        let prefilter = if literals.is_empty() {
            None
        } else {
            Some(
                Prefilter::new(MatchKind::LeftmostFirst, &literals).ok_or_else(|| {
                    MaskingError::Internal("literal prefilter could not be built".into())
                })?,
            )
        };
        Ok(Engine {
            dfa,
            start,
            patterns: sources.into_iter().map(|s| s.info).collect(),
            class,
            custom_on_digits,
            swar,
            iban: triggers.iban,
            literals: prefilter,
            literal_list: literals,
        })
    }

    /// Bytes at the end of a non-final input that a later trigger could still claim.
    fn holdback(&self, hay: &[u8]) -> usize {
        let len = hay.len();
        let mut h = 0;
        while h < MAX_BACKSCAN && h < len && before(hay, len, h + 1).is_some_and(is_backscan) {
            h += 1;
        }
        let max_lit = self.literal_list.iter().map(Vec::len).max().unwrap_or(0);
        for k in (h + 1..max_lit.min(len + 1)).rev() {
            let tail = hay.get(len - k..).unwrap_or_default();
            if self
                .literal_list
                .iter()
                .any(|l| l.len() > k && l.starts_with(tail))
            {
                h = k;
                break;
            }
        }
        h
    }

    /// Position of the next byte with a trigger class at or after `i`.
    #[inline]
    fn next_trigger(&self, hay: &[u8], mut i: usize) -> Option<usize> {
        let class = &self.class;
        if self.swar {
            // Eight bytes at a time: skip words holding no digit, `@` or `:`.
            const LO: u64 = 0x0101_0101_0101_0101;
            const HI: u64 = 0x8080_8080_8080_8080;
            const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
            let zero = |y: u64| !(((y & LOW7).wrapping_add(LOW7)) | y) & HI;
            while let Some(chunk) = hay.get(i..i + 8) {
                let mut w = [0u8; 8];
                w.copy_from_slice(chunk);
                let x = u64::from_le_bytes(w);
                let t = x & LOW7;
                let ge0 = t.wrapping_add(LO * (0x80 - 0x30));
                let ge_colon = t.wrapping_add(LO * (0x80 - 0x3a));
                let digit = ge0 & !ge_colon & !x & HI;
                let m = digit | zero(x ^ (LO * 0x40)) | zero(x ^ (LO * 0x3a));
                if m == 0 {
                    i += 8;
                    continue;
                }
                let j = i + (m.trailing_zeros() / 8) as usize;
                if class[usize::from(at(hay, j).unwrap_or(0))] != 0 {
                    return Some(j);
                }
                i = j + 1;
            }
        }
        hay.get(i..)
            .and_then(|rest| rest.iter().position(|b| class[usize::from(*b)] != 0))
            .map(|off| i + off)
    }

    /// Finds candidate starts at or after `floor`; returns the first start that cannot
    /// be decided yet (`hay.len()` when none).
    #[inline(never)]
    fn gather(&self, hay: &[u8], floor: usize, eof: bool, cands: &mut Vec<usize>) -> usize {
        let len = hay.len();
        let mut undecided = len;
        let class = &self.class;
        let mut i = floor;
        let mut colon_done = 0usize;
        while i < len {
            let Some(next) = self.next_trigger(hay, i) else {
                break;
            };
            i = next;
            let b = at(hay, i).unwrap_or(0);
            let c = class[usize::from(b)];
            let prev = before(hay, i, 1);
            if c & CUSTOM_ANY != 0 {
                cands.push(i);
            }
            if c & CUSTOM_WORD != 0 && !prev.is_some_and(|p| p.is_ascii_alphanumeric()) {
                cands.push(i);
            }
            if c & DIGIT != 0 {
                let mut run_end = i + 1;
                while at(hay, run_end).is_some_and(|b| b.is_ascii_digit()) {
                    run_end += 1;
                }
                if prev.is_some_and(|p| p.is_ascii_digit()) {
                    // Inside a run that started before `floor`.
                } else if prev.is_some_and(|p| p.is_ascii_alphabetic()) {
                    if self.iban
                        && i >= floor + 2
                        && prev.is_some_and(|p| p.is_ascii_uppercase())
                        && before(hay, i, 2).is_some_and(|p| p.is_ascii_uppercase())
                        && !before(hay, i, 3).is_some_and(|p| p.is_ascii_alphanumeric())
                    {
                        cands.push(i - 2);
                    }
                } else {
                    let opener = matches!(prev, Some(b'+' | b'(')) && i > floor;
                    match numeric_filter(hay, i, eof) {
                        Some(true) => {
                            if opener {
                                cands.push(i - 1);
                            }
                            cands.push(i);
                        }
                        Some(false) => {}
                        None => undecided = undecided.min(if opener { i - 1 } else { i }),
                    }
                }
                i = if self.custom_on_digits {
                    i + 1
                } else {
                    run_end
                };
                continue;
            }
            if c & AT != 0 {
                let lo = i.saturating_sub(MAX_BACKSCAN);
                let mut s = i;
                while s > lo && before(hay, s, 1).is_some_and(is_local) {
                    s -= 1;
                }
                if s < i {
                    if s >= floor {
                        cands.push(s);
                    }
                    if let Some(first) = hay
                        .get(s..i)
                        .and_then(|r| r.iter().position(u8::is_ascii_alphanumeric))
                        && first > 0
                        && s + first >= floor
                    {
                        cands.push(s + first);
                    }
                }
            }
            if c & COLON != 0 && i >= colon_done {
                let lo = i.saturating_sub(39);
                let mut s = i;
                while s > lo
                    && before(hay, s, 1).is_some_and(|p| p.is_ascii_hexdigit() || p == b':')
                {
                    s -= 1;
                }
                let mut j = s;
                let mut colons = 0;
                let mut dots = 0;
                let mut double = false;
                let mut prev_colon = false;
                while j < len
                    && j - s < 64
                    && at(hay, j).is_some_and(|p| p.is_ascii_hexdigit() || p == b':' || p == b'.')
                {
                    let is_colon = at(hay, j) == Some(b':');
                    if is_colon {
                        colons += 1;
                        double |= prev_colon;
                    } else if at(hay, j) == Some(b'.') {
                        dots += 1;
                    }
                    prev_colon = is_colon;
                    j += 1;
                }
                colon_done = j;
                // An IPv6 address has `::`, or 7 colons, or 6 and an IPv4 tail.
                let plausible = double || colons >= 7 || (colons == 6 && dots >= 3);
                if s >= floor {
                    if plausible {
                        cands.push(s);
                    } else if j == len && !eof {
                        undecided = undecided.min(s);
                    }
                }
            }
            i += 1;
        }
        if let Some(pre) = &self.literals {
            let mut from = floor;
            while from < len {
                match pre.find(
                    hay,
                    Span {
                        start: from,
                        end: len,
                    },
                ) {
                    Some(sp) => {
                        cands.push(sp.start);
                        from = sp.start + 1;
                    }
                    None => break,
                }
            }
        }
        undecided
    }

    /// Walks the DFA from `s`; picks the longest valid match (earlier pattern wins a tie).
    /// `Err(())`: undecidable without more input.
    #[inline(never)]
    fn try_at(
        &self,
        hay: &[u8],
        s: usize,
        eof: bool,
        ends: &mut Vec<(usize, usize)>,
    ) -> Result<Option<Found>, ()> {
        let dfa = &self.dfa;
        let mut sid = match self.start {
            Some(sid) => sid,
            None => {
                let input = Input::new(hay).range(s..).anchored(Anchored::Yes);
                match dfa.start_state_forward(&input) {
                    Ok(sid) => sid,
                    Err(_) => return Ok(None),
                }
            }
        };
        ends.clear();
        let len = hay.len();
        let cap = len.min(s.saturating_add(MAX_MATCH));
        let mut i = s;
        loop {
            if i >= cap {
                if cap == len && !eof {
                    return Err(());
                }
                sid = dfa.next_eoi_state(sid);
                if dfa.is_match_state(sid) {
                    for k in 0..dfa.match_len(sid) {
                        ends.push((dfa.match_pattern(sid, k).as_usize(), i));
                    }
                }
                break;
            }
            let b = at(hay, i).unwrap_or(0);
            sid = dfa.next_state(sid, b);
            if dfa.is_special_state(sid) {
                if dfa.is_dead_state(sid) || dfa.is_quit_state(sid) {
                    break;
                }
                if dfa.is_match_state(sid) {
                    for k in 0..dfa.match_len(sid) {
                        ends.push((dfa.match_pattern(sid, k).as_usize(), i));
                    }
                }
            }
            i += 1;
        }
        if ends.is_empty() {
            return Ok(None);
        }
        // `ends` grows by end offset, and pattern ids ascend within one end: walk the
        // groups from the longest, each group in pattern order (priority).
        let mut hi = ends.len();
        while hi > 0 {
            let group_end = ends.get(hi - 1).map_or(0, |e| e.1);
            let mut lo = hi - 1;
            while lo > 0 && ends.get(lo - 1).is_some_and(|e| e.1 == group_end) {
                lo -= 1;
            }
            let group = lo..hi;
            hi = lo;
            for k in group {
                let Some(&(pid, end)) = ends.get(k) else {
                    continue;
                };
                let Some(info) = self.patterns.get(pid) else {
                    continue;
                };
                if end <= s || !info.boundary.left_ok(hay, s) {
                    continue;
                }
                let value = hay.get(s..end).unwrap_or_default();
                if !info.validator.check(value) {
                    continue;
                }
                if !info.pem {
                    match info.boundary.right_ok(hay, end, eof) {
                        None => return Err(()),
                        Some(false) => continue,
                        Some(true) => {}
                    }
                }
                let (ms, me) = info.value.span(value);
                return Ok(Some(Found {
                    start: s,
                    end,
                    mask_start: s + ms,
                    mask_end: s + me,
                    detector: info.detector,
                }));
            }
        }
        Ok(None)
    }

    /// Scans `hay[floor..]` (`hay[..floor]` is look-behind context only) and appends the
    /// chosen matches to `scratch.found`.
    pub(crate) fn scan(
        &self,
        hay: &[u8],
        floor: usize,
        mode: Mode,
        scratch: &mut Scratch,
    ) -> ScanEnd {
        let len = hay.len();
        let eof = mode != Mode::More;
        scratch.cands.clear();
        let undecided = self.gather(hay, floor, eof, &mut scratch.cands);
        let mut limit = undecided;
        if mode == Mode::More {
            limit = limit.min(len - self.holdback(hay).min(len - floor));
        }
        if scratch.cands.is_empty() {
            return ScanEnd {
                done: limit,
                pem: None,
            };
        }
        scratch.cands.sort_unstable();
        scratch.cands.dedup();
        let mut last_end = floor;
        let mut stop = limit;
        let cands = std::mem::take(&mut scratch.cands);
        let mut pem = None;
        for &s in &cands {
            if s < last_end {
                continue;
            }
            if s >= limit {
                break;
            }
            match self.try_at(hay, s, eof, &mut scratch.ends) {
                Err(()) => {
                    stop = s;
                    break;
                }
                Ok(None) => {}
                Ok(Some(mut f)) => {
                    let is_pem = self
                        .patterns
                        .iter()
                        .any(|p| p.pem && p.detector == f.detector);
                    if is_pem {
                        let body = hay.get(f.end..).unwrap_or_default();
                        match PemState::START.feed(body) {
                            PemStep::Ended(n) => f.end += n,
                            PemStep::Open(state) => {
                                f.end = len;
                                if mode != Mode::Final {
                                    pem = Some(state);
                                }
                            }
                        }
                        f.mask_end = f.end;
                    }
                    scratch.found.push(f);
                    last_end = f.end;
                    if pem.is_some() {
                        break;
                    }
                }
            }
        }
        scratch.cands = cands;
        let done = if pem.is_some() {
            len
        } else {
            stop.min(limit).max(last_end)
        };
        ScanEnd { done, pem }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_machine_finds_end_line() {
        let body = b"\nMIIEv\nabc==\n-----END RSA PRIVATE KEY-----\nafter";
        match PemState::START.feed(body) {
            PemStep::Ended(n) => assert_eq!(&body[n..], b"\nafter"),
            PemStep::Open(_) => panic!("should end"),
        }
        // Split anywhere gives the same end.
        for cut in 0..body.len() {
            let (a, b) = body.split_at(cut);
            let n = match PemState::START.feed(a) {
                PemStep::Ended(n) => n,
                PemStep::Open(st) => match st.feed(b) {
                    PemStep::Ended(n) => cut + n,
                    PemStep::Open(_) => panic!("open"),
                },
            };
            assert_eq!(&body[n..], b"\nafter", "cut {cut}");
        }
    }

    #[test]
    fn pem_machine_stops_at_foreign_byte() {
        match PemState::START.feed(b"\nMIIE\nnot a key; text") {
            PemStep::Ended(n) => assert_eq!(n, 15),
            PemStep::Open(_) => panic!("should end"),
        }
    }

    #[test]
    fn word_skip_agrees_with_byte_loop() {
        let m = crate::Masker::with_defaults().unwrap();
        let engine = m.inner.engine.as_ref().unwrap();
        assert!(engine.swar);
        let mut rng = crate::corpus::Rng::new(9);
        for _ in 0..200 {
            let len = usize::try_from(rng.below(64)).unwrap();
            let hay: Vec<u8> = (0..len)
                .map(|_| match rng.below(6) {
                    0 => b"0123456789@:"[usize::try_from(rng.below(12)).unwrap()],
                    _ => u8::try_from(rng.below(256)).unwrap(),
                })
                .collect();
            for start in 0..=hay.len() {
                let naive = hay[start..]
                    .iter()
                    .position(|b| engine.class[usize::from(*b)] != 0)
                    .map(|o| start + o);
                assert_eq!(engine.next_trigger(&hay, start), naive, "{hay:?} {start}");
            }
        }
    }

    #[test]
    fn numeric_filter_cases() {
        assert_eq!(numeric_filter(b"1234.56 ", 0, true), Some(false));
        assert_eq!(numeric_filter(b"555-123-4567", 0, true), Some(true));
        assert_eq!(numeric_filter(b"10.0.0.1", 0, true), Some(true));
        assert_eq!(numeric_filter(b"12", 0, false), None);
        assert_eq!(numeric_filter(b"4111 1111 1111 1111", 0, true), Some(true));
    }
}

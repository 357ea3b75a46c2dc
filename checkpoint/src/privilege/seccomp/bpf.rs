//! Seccomp's classic BPF: programs checked as the kernel checks them before it attaches them,
//! and run symbolically over every `struct seccomp_data` at once.
//!
//! The input is 16 little-endian 32-bit words: 0 the system call number, 1 the audit
//! architecture, 2 and 3 the instruction pointer, then the low and high word of each of the
//! six arguments. A run fixes the architecture and leaves every other word free: it follows
//! every path a program can take and returns one [`Leaf`] per path, with what the path
//! requires of each word ([`Region`]) and the value it returns. What a path requires is
//! tracked exactly where a program compares a word with a constant, or tests a word under a
//! mask for equality or set bits (all libseccomp generates), up to [`MAX_NE`] excluded values
//! a word; anything else (arithmetic on input words, comparing two input words, returning a
//! computed value) is over-approximated: both branches are taken, and a computed return value
//! counts as SECCOMP_RET_ALLOW. So the leaves cover every input, and a leaf may cover inputs
//! the program never sends down its path, never the reverse.
//!
//! Invariants: nothing here panics on any program or input; every run is bounded by a
//! [`Budget`] shared by everything one check runs.

use std::fmt;

/// BPF_MAXINSNS: the most instructions the kernel accepts in one program.
pub const MAX_INSNS: usize = 4096;
/// BPF_MEMWORDS: scratch memory words.
const MEM_WORDS: usize = 16;
/// Words of `struct seccomp_data`.
pub const WORDS: usize = 16;
/// Word indexes of the system call number and the architecture.
pub const NR: usize = 0;
pub const ARCH: usize = 1;

/// SECCOMP_RET_ALLOW: what a computed return value is taken for.
pub const RET_ALLOW: u32 = 0x7fff_0000;

/// The words of argument `index` (0 to 5): low, high.
pub fn arg_words(index: u8) -> (usize, usize) {
    let lo = 4 + 2 * index as usize;
    (lo, lo + 1)
}

/// Instruction codes seccomp accepts (`seccomp_check_filter`), as `struct sock_filter` holds
/// them.
mod op {
    pub const LD_W_ABS: u16 = 0x20;
    pub const LD_W_LEN: u16 = 0x80;
    pub const LDX_W_LEN: u16 = 0x81;
    pub const LD_IMM: u16 = 0x00;
    pub const LDX_IMM: u16 = 0x01;
    pub const LD_MEM: u16 = 0x60;
    pub const LDX_MEM: u16 = 0x61;
    pub const ST: u16 = 0x02;
    pub const STX: u16 = 0x03;
    pub const RET_K: u16 = 0x06;
    pub const RET_A: u16 = 0x16;
    pub const TAX: u16 = 0x07;
    pub const TXA: u16 = 0x87;
    pub const JA: u16 = 0x05;
    pub const NEG: u16 = 0x84;
    /// BPF_ALU and BPF_JMP classes, and BPF_X.
    pub const ALU: u16 = 0x04;
    pub const JMP: u16 = 0x05;
    pub const X: u16 = 0x08;
    /// ALU operations (`code & 0xf0`) seccomp accepts with K or X.
    pub const ADD: u16 = 0x00;
    pub const SUB: u16 = 0x10;
    pub const MUL: u16 = 0x20;
    pub const DIV: u16 = 0x30;
    pub const OR: u16 = 0x40;
    pub const AND: u16 = 0x50;
    pub const LSH: u16 = 0x60;
    pub const RSH: u16 = 0x70;
    pub const XOR: u16 = 0xa0;
    /// Conditional jumps (`code & 0xf0`), with K or X.
    pub const JEQ: u16 = 0x10;
    pub const JGT: u16 = 0x20;
    pub const JGE: u16 = 0x30;
    pub const JSET: u16 = 0x40;
}

/// One `struct sock_filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

fn is_alu(code: u16) -> bool {
    code & 0x07 == op::ALU
        && code & !(op::X | 0xf0) == op::ALU
        && matches!(
            code & 0xf0,
            op::ADD | op::SUB | op::MUL | op::DIV | op::OR | op::AND | op::LSH | op::RSH | op::XOR
        )
}

fn is_cond_jump(code: u16) -> bool {
    code & !(op::X | 0xf0) == op::JMP
        && matches!(code & 0xf0, op::JEQ | op::JGT | op::JGE | op::JSET)
}

/// Why the kernel would refuse to attach a program; the text completes "its program ...".
/// The checkpoint's filter is not one a kernel attached, so it was made or altered by hand:
/// take the checkpoint again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProgramError {
    /// The program has no instruction.
    #[error("is empty")]
    Empty,
    /// The program's bytes are not a whole number of instructions.
    #[error("is {0} bytes long, not a whole number of 8-byte instructions")]
    Length(usize),
    /// The program is longer than BPF_MAXINSNS.
    #[error("has {0} instructions, more than the kernel's {MAX_INSNS}")]
    TooLong(usize),
    /// An absolute load outside `struct seccomp_data`, or not aligned.
    #[error(
        "loads offset {offset}, outside the 64 bytes of struct seccomp_data or not 32-bit \
         aligned (instruction {pc})"
    )]
    LoadOffset { pc: usize, offset: u32 },
    /// A scratch memory word past the 16 there are.
    #[error("uses scratch memory word {word} of 16 (instruction {pc})")]
    MemoryWord { pc: usize, word: u32 },
    /// A jump past the last instruction.
    #[error("jumps past the end (instruction {pc})")]
    JumpPastEnd { pc: usize },
    /// A division by the constant 0.
    #[error("divides by the constant 0 (instruction {pc})")]
    DivideByZero { pc: usize },
    /// A shift by 32 bits or more.
    #[error("shifts by {shift} (instruction {pc})")]
    Shift { pc: usize, shift: u32 },
    /// An opcode seccomp's checker does not accept.
    #[error("has opcode {code:#06x}, which seccomp does not accept (instruction {pc})")]
    Opcode { pc: usize, code: u16 },
    /// The last instruction is not a return.
    #[error("does not end with a return")]
    NoReturn,
    /// A scratch memory word loaded on a path that has not stored it.
    #[error("loads scratch memory word {word} before a store to it (instruction {pc})")]
    LoadBeforeStore { pc: usize, word: u32 },
}

/// Decodes a program (`struct sock_filter` array, little-endian) and checks it as the kernel
/// does before attaching it (`bpf_check_classic`, `seccomp_check_filter`): a program the
/// kernel would refuse is an error, saying what is wrong.
pub fn decode(program: &[u8]) -> Result<Vec<Insn>, ProgramError> {
    if program.is_empty() {
        return Err(ProgramError::Empty);
    }
    if !program.len().is_multiple_of(8) {
        return Err(ProgramError::Length(program.len()));
    }
    let n = program.len() / 8;
    if n > MAX_INSNS {
        return Err(ProgramError::TooLong(n));
    }
    let insns: Vec<Insn> = program
        .chunks_exact(8)
        .map(|b| Insn {
            code: u16::from_le_bytes([b[0], b[1]]),
            jt: b[2],
            jf: b[3],
            k: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        })
        .collect();
    for (pc, i) in insns.iter().enumerate() {
        let left = (n - pc - 1) as u64;
        match i.code {
            op::LD_W_ABS => {
                if i.k >= 64 || i.k % 4 != 0 {
                    return Err(ProgramError::LoadOffset { pc, offset: i.k });
                }
            }
            op::LD_MEM | op::LDX_MEM | op::ST | op::STX => {
                if i.k as usize >= MEM_WORDS {
                    return Err(ProgramError::MemoryWord { pc, word: i.k });
                }
            }
            op::JA => {
                if u64::from(i.k) >= left {
                    return Err(ProgramError::JumpPastEnd { pc });
                }
            }
            op::LD_W_LEN
            | op::LDX_W_LEN
            | op::LD_IMM
            | op::LDX_IMM
            | op::RET_K
            | op::RET_A
            | op::TAX
            | op::TXA
            | op::NEG => {}
            c if is_alu(c) => {
                let op = c & 0xf0;
                if c & op::X == 0 && op == op::DIV && i.k == 0 {
                    return Err(ProgramError::DivideByZero { pc });
                }
                if c & op::X == 0 && matches!(op, op::LSH | op::RSH) && i.k >= 32 {
                    return Err(ProgramError::Shift { pc, shift: i.k });
                }
            }
            c if is_cond_jump(c) => {
                if u64::from(i.jt) >= left || u64::from(i.jf) >= left {
                    return Err(ProgramError::JumpPastEnd { pc });
                }
            }
            code => return Err(ProgramError::Opcode { pc, code }),
        }
    }
    if !matches!(insns[n - 1].code, op::RET_K | op::RET_A) {
        return Err(ProgramError::NoReturn);
    }
    check_load_and_stores(&insns)?;
    Ok(insns)
}

/// The kernel's `check_load_and_stores`: scratch memory is stored before it is loaded, on
/// every path (joins keep only what every incoming path stored).
fn check_load_and_stores(insns: &[Insn]) -> Result<(), ProgramError> {
    let mut masks = vec![u16::MAX; insns.len()];
    let mut valid: u16 = 0;
    for (pc, i) in insns.iter().enumerate() {
        valid &= masks[pc];
        match i.code {
            op::ST | op::STX => valid |= 1 << i.k,
            op::LD_MEM | op::LDX_MEM if valid & (1 << i.k) == 0 => {
                return Err(ProgramError::LoadBeforeStore { pc, word: i.k });
            }
            op::JA => {
                masks[pc + 1 + i.k as usize] &= valid;
                valid = u16::MAX;
            }
            c if is_cond_jump(c) => {
                masks[pc + 1 + i.jt as usize] &= valid;
                masks[pc + 1 + i.jf as usize] &= valid;
                valid = u16::MAX;
            }
            _ => {}
        }
    }
    Ok(())
}

/// One condition on a word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Atom {
    /// `(w & mask) == value` (`eq`) or `!=`.
    Masked {
        mask: u32,
        value: u32,
        eq: bool,
    },
    AtLeast(u32),
    AtMost(u32),
    /// No word satisfies it.
    Never,
}

impl Atom {
    /// The words whose bits under `mask` equal `value` (`eq`), or differ from it (`!eq`).
    pub fn masked(mask: u32, value: u32, eq: bool) -> Atom {
        Atom::Masked { mask, value, eq }
    }

    pub fn eq(value: u32) -> Atom {
        Atom::masked(u32::MAX, value, true)
    }

    pub fn ne(value: u32) -> Atom {
        Atom::masked(u32::MAX, value, false)
    }

    pub fn above(value: u32) -> Atom {
        value.checked_add(1).map_or(Atom::Never, Atom::AtLeast)
    }

    pub fn below(value: u32) -> Atom {
        value.checked_sub(1).map_or(Atom::Never, Atom::AtMost)
    }
}

/// The values a word may take: a range, bits known to be set or clear, and values (or
/// values under a mask) excluded. Exclusions past [`MAX_NE`] or [`MAX_MASKED_NE`] are
/// dropped: the set is then larger than the conditions say, never smaller.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WordSet {
    lo: u32,
    hi: u32,
    ones: u32,
    zeros: u32,
    /// Excluded values, sorted.
    ne: Vec<u32>,
    /// Excluded `(w & mask) == value`.
    masked_ne: Vec<(u32, u32)>,
    /// No member is below it (the smallest member, as [`WordSet::first`] finds it); `None`:
    /// the set is empty.
    min: Option<u32>,
}

/// Candidates tried past the excluded values before a set is taken to be non-empty.
const SEARCH: usize = 64;
/// Exclusions kept on one word.
const MAX_NE: usize = 256;
const MAX_MASKED_NE: usize = 32;

impl Atom {
    fn holds(self, w: u32) -> bool {
        match self {
            Atom::Masked { mask, value, eq } => (w & mask == value) == eq,
            Atom::AtLeast(v) => w >= v,
            Atom::AtMost(v) => w <= v,
            Atom::Never => false,
        }
    }
}

impl WordSet {
    pub const ANY: WordSet = WordSet {
        lo: 0,
        hi: u32::MAX,
        ones: 0,
        zeros: 0,
        ne: Vec::new(),
        masked_ne: Vec::new(),
        min: Some(0),
    };

    pub fn lo(&self) -> u32 {
        self.lo
    }

    pub fn hi(&self) -> u32 {
        self.hi
    }

    fn add(&mut self, atom: Atom) {
        let Some(min) = self.min else {
            return;
        };
        match atom {
            Atom::Never => {
                self.lo = 1;
                self.hi = 0;
            }
            Atom::AtLeast(v) => self.lo = self.lo.max(v),
            Atom::AtMost(v) => self.hi = self.hi.min(v),
            Atom::Masked {
                mask,
                value,
                eq: true,
            } => {
                if value & !mask != 0 {
                    return self.add(Atom::Never);
                }
                self.ones |= value;
                self.zeros |= mask & !value;
            }
            Atom::Masked {
                mask,
                value,
                eq: false,
            } => {
                if value & !mask != 0 {
                    // Always true.
                } else if mask == 0 {
                    return self.add(Atom::Never);
                } else if mask == u32::MAX {
                    if let Err(at) = self.ne.binary_search(&value)
                        && self.ne.len() < MAX_NE
                    {
                        self.ne.insert(at, value);
                    }
                } else if !self.masked_ne.contains(&(mask, value))
                    && self.masked_ne.len() < MAX_MASKED_NE
                {
                    self.masked_ne.push((mask, value));
                }
            }
        }
        // Members only go: the smallest one is still a member, or it is past it.
        if !atom.holds(min) || !self.contains(min) {
            self.min = self.first(min, &[]);
        }
    }

    /// The smallest member not below `from` and not in `exclude` (sorted), if any. Past
    /// [`SEARCH`] excluded candidates it gives up and answers the next candidate: an answer
    /// may then not be a member (the set is taken to be larger than it is, never smaller).
    pub fn first(&self, from: u32, exclude: &[u32]) -> Option<u32> {
        let min = self.min?;
        if self.ones & self.zeros != 0 {
            return None;
        }
        // Exclusions under a mask: one whose masked bits are all known either excludes
        // every member or none, one with a single unknown bit fixes that bit; the others
        // need a look at each candidate.
        let (mut ones, mut zeros) = (self.ones, self.zeros);
        let mut masked: Vec<(u32, u32)> = self.masked_ne.clone();
        loop {
            let known = ones | zeros;
            let before = masked.len();
            let mut kept = Vec::with_capacity(masked.len());
            for (m, v) in masked {
                let free = m & !known;
                if ones & m & known != v & known {
                    continue;
                }
                if free == 0 {
                    return None;
                }
                if free & (free - 1) == 0 {
                    if v & free == 0 {
                        ones |= free;
                    } else {
                        zeros |= free;
                    }
                    continue;
                }
                kept.push((m, v));
            }
            masked = kept;
            if masked.len() == before {
                break;
            }
        }
        let known = ones | zeros;
        let mut w = next_with_bits(from.max(self.lo).max(min), ones, zeros)?;
        let limit = self.ne.len() + exclude.len() + SEARCH;
        for _ in 0..limit {
            if w > self.hi {
                return None;
            }
            let next = if let Some(&(m, _)) = masked.iter().find(|&&(m, v)| w & m == v) {
                // Every value up to the next change of the lowest unknown masked bit is
                // excluded too.
                let free = m & !known;
                let low = free & free.wrapping_neg();
                (w | (low - 1)).checked_add(1)?
            } else if self.ne.binary_search(&w).is_ok() || exclude.binary_search(&w).is_ok() {
                w.checked_add(1)?
            } else {
                return Some(w);
            };
            w = next_with_bits(next, ones, zeros)?;
        }
        (w <= self.hi).then_some(w)
    }

    /// Whether every member satisfies `atom` (`Some(true)`), none does (`Some(false)`), or
    /// it takes a closer look (`None`).
    fn implied(&self, atom: Atom) -> Option<bool> {
        let known = self.ones | self.zeros;
        match atom {
            _ if known == u32::MAX => Some(atom.holds(self.ones)),
            Atom::Never => Some(false),
            Atom::AtLeast(v) if self.lo >= v => Some(true),
            Atom::AtLeast(v) if self.hi < v => Some(false),
            Atom::AtMost(v) if self.hi <= v => Some(true),
            Atom::AtMost(v) if self.lo > v => Some(false),
            Atom::Masked { mask, value, eq } if mask & known == mask => {
                Some((self.ones & mask == value) == eq)
            }
            _ => None,
        }
    }

    /// The set with `atom` required, if it is not empty.
    fn narrowed(&self, atom: Atom) -> Option<Narrowed> {
        match self.implied(atom) {
            Some(true) => Some(Narrowed::Same),
            Some(false) => None,
            None => {
                let mut set = self.clone();
                set.add(atom);
                (!set.is_empty()).then_some(Narrowed::To(set))
            }
        }
    }

    /// Whether `v` is a member.
    pub fn contains(&self, v: u32) -> bool {
        (self.lo..=self.hi).contains(&v)
            && v & self.ones == self.ones
            && v & self.zeros == 0
            && self.ne.binary_search(&v).is_err()
            && !self.masked_ne.iter().any(|&(m, x)| v & m == x)
    }

    pub fn is_empty(&self) -> bool {
        self.min.is_none()
    }

    /// The only member, if the set holds exactly one value.
    #[cfg(test)]
    pub fn single(&self) -> Option<u32> {
        let w = self.first(0, &[])?;
        match w.checked_add(1) {
            Some(next) if self.first(next, &[]).is_some() => None,
            _ => Some(w),
        }
    }
}

/// The smallest `w >= x` with every bit of `ones` set and every bit of `zeros` clear.
fn next_with_bits(x: u32, ones: u32, zeros: u32) -> Option<u32> {
    if ones & zeros != 0 {
        return None;
    }
    // Walk down from the top bit, keeping the bits of x while they fit; remember the
    // smallest way to exceed x so far (a clear bit of x that may be set).
    let mut best = None;
    for i in (0..32).rev() {
        let bit = 1u32 << i;
        let above = x & !((bit << 1).wrapping_sub(1));
        let below_ones = ones & (bit - 1);
        let xi = x & bit != 0;
        if !xi && zeros & bit == 0 {
            best = Some(above | bit | below_ones);
        }
        if (xi && zeros & bit != 0) || (!xi && ones & bit != 0) {
            return best;
        }
    }
    Some(x)
}

/// A word set with one more condition: the same, or a new one.
enum Narrowed {
    Same,
    To(WordSet),
}

/// What a path requires of every word of `struct seccomp_data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    words: Vec<WordSet>,
}

impl Default for Region {
    fn default() -> Region {
        Region {
            words: vec![WordSet::ANY; WORDS],
        }
    }
}

impl Region {
    pub fn word(&self, w: usize) -> &WordSet {
        &self.words[w]
    }

    /// What copying or searching the region costs, in [`Budget`] steps.
    pub fn weight(&self) -> u64 {
        let entries: usize = self
            .words
            .iter()
            .map(|w| w.ne.len() / 16 + w.masked_ne.len() * 4)
            .sum();
        1 + entries as u64
    }

    /// Whether the region requires anything of the instruction pointer or the arguments.
    pub fn constrains_args(&self) -> bool {
        self.words[2..].iter().any(|w| *w != WordSet::ANY)
    }

    /// The region with `atom` required of word `w`, if any input is left in it.
    pub fn with(&self, w: usize, atom: Atom) -> Option<Region> {
        let narrowed = self.words[w].narrowed(atom)?;
        let mut r = self.clone();
        r.apply(w, narrowed);
        Some(r)
    }

    fn apply(&mut self, w: usize, narrowed: Narrowed) {
        if let Narrowed::To(set) = narrowed {
            self.words[w] = set;
        }
    }

    /// The region with every `(word, atom)` required, if any input is left in it.
    pub fn with_all(&self, atoms: &[(usize, Atom)]) -> Option<Region> {
        let mut r = self.clone();
        for &(w, atom) in atoms {
            r.words[w].add(atom);
        }
        atoms
            .iter()
            .all(|&(w, _)| !r.words[w].is_empty())
            .then_some(r)
    }
}

/// Work left for everything one check runs: instructions executed and paths kept.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub steps: u64,
    pub paths: u64,
}

/// The budget ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exhausted;

impl fmt::Display for Exhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "too many paths to check")
    }
}

/// A path through a program: the inputs that may take it and the value it returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    pub region: Region,
    pub ret: u32,
}

/// What a register or scratch word holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Val {
    Const(u32),
    /// An input word under a mask.
    Word {
        word: u8,
        mask: u32,
    },
    Unknown,
}

fn masked(word: usize, mask: u32) -> Val {
    if mask == 0 {
        Val::Const(0)
    } else {
        Val::Word {
            word: word as u8,
            mask,
        }
    }
}

struct State {
    pc: usize,
    a: Val,
    x: Val,
    mem: [Option<Val>; MEM_WORDS],
    region: Region,
}

/// How a conditional jump goes: decided, or split with what each side requires (nothing,
/// where the condition is not one the region can hold).
enum Branch {
    Known(bool),
    Split(Option<(usize, Atom)>, Option<(usize, Atom)>),
}

fn branch(jump: u16, a: Val, b: Val) -> Branch {
    use Val::*;
    match (a, b) {
        (Const(a), Const(b)) => Branch::Known(match jump {
            op::JEQ => a == b,
            op::JGT => a > b,
            op::JGE => a >= b,
            _ => a & b != 0,
        }),
        (Word { word, mask }, Const(k)) | (Const(k), Word { word, mask })
            if matches!(jump, op::JEQ | op::JSET) =>
        {
            let w = word as usize;
            if jump == op::JEQ {
                let t = Atom::masked(mask, k, true);
                let f = Atom::masked(mask, k, false);
                Branch::Split(Some((w, t)), Some((w, f)))
            } else {
                let bits = mask & k;
                if bits == 0 {
                    return Branch::Known(false);
                }
                let t = Atom::masked(bits, 0, false);
                let f = Atom::masked(bits, 0, true);
                Branch::Split(Some((w, t)), Some((w, f)))
            }
        }
        (
            Word {
                word,
                mask: u32::MAX,
            },
            Const(k),
        ) => {
            let w = word as usize;
            match jump {
                // w > k
                op::JGT => Branch::Split(Some((w, Atom::above(k))), Some((w, Atom::AtMost(k)))),
                // w >= k
                _ => Branch::Split(Some((w, Atom::AtLeast(k))), Some((w, Atom::below(k)))),
            }
        }
        (
            Const(k),
            Word {
                word,
                mask: u32::MAX,
            },
        ) => {
            let w = word as usize;
            match jump {
                // k > w
                op::JGT => Branch::Split(Some((w, Atom::below(k))), Some((w, Atom::AtLeast(k)))),
                // k >= w
                _ => Branch::Split(Some((w, Atom::AtMost(k))), Some((w, Atom::above(k)))),
            }
        }
        _ => Branch::Split(None, None),
    }
}

/// `a OP b` for the ALU operations; `None` for a division by zero.
fn alu(operation: u16, a: Val, b: Val) -> Option<Val> {
    use Val::*;
    Some(match (operation, a, b) {
        (op::DIV, _, Const(0)) => return None,
        (_, Const(a), Const(b)) => Const(match operation {
            op::ADD => a.wrapping_add(b),
            op::SUB => a.wrapping_sub(b),
            op::MUL => a.wrapping_mul(b),
            op::DIV => a / b,
            op::OR => a | b,
            op::AND => a & b,
            op::XOR => a ^ b,
            // The kernel refuses constant shifts of 32 or more; what a computed one gives
            // is left open.
            op::LSH if b < 32 => a << b,
            op::RSH if b < 32 => a >> b,
            _ => return Some(Unknown),
        }),
        (op::AND, Word { word, mask }, Const(c)) | (op::AND, Const(c), Word { word, mask }) => {
            masked(word as usize, mask & c)
        }
        (op::AND, _, Const(0)) | (op::AND, Const(0), _) => Const(0),
        (op::ADD | op::SUB | op::OR | op::XOR | op::LSH | op::RSH, v, Const(0)) => v,
        (op::MUL, v, Const(1)) | (op::DIV, v, Const(1)) => v,
        _ => Unknown,
    })
}

/// Runs `program` (decoded by [`decode`]) for audit architecture `arch` over the inputs of
/// `start`, and appends a leaf for every path some input of `start` may take.
pub fn run(
    program: &[Insn],
    arch: u32,
    start: Region,
    budget: &mut Budget,
    out: &mut Vec<Leaf>,
) -> Result<(), Exhausted> {
    let mut stack = vec![State {
        pc: 0,
        // The kernel zeroes A and X before a classic program runs.
        a: Val::Const(0),
        x: Val::Const(0),
        mem: [None; MEM_WORDS],
        region: start,
    }];
    while let Some(mut s) = stack.pop() {
        loop {
            if budget.steps == 0 {
                return Err(Exhausted);
            }
            budget.steps -= 1;
            // `decode` bounds every jump, and the last instruction returns.
            let Some(&i) = program.get(s.pc) else {
                return Err(Exhausted);
            };
            let mem = |s: &State| s.mem.get(i.k as usize).copied().flatten();
            match i.code {
                op::LD_W_ABS => {
                    let w = (i.k / 4) as usize;
                    s.a = if w == ARCH {
                        Val::Const(arch)
                    } else {
                        masked(w, u32::MAX)
                    };
                }
                op::LD_W_LEN => s.a = Val::Const(64),
                op::LDX_W_LEN => s.x = Val::Const(64),
                op::LD_IMM => s.a = Val::Const(i.k),
                op::LDX_IMM => s.x = Val::Const(i.k),
                op::LD_MEM => s.a = mem(&s).unwrap_or(Val::Unknown),
                op::LDX_MEM => s.x = mem(&s).unwrap_or(Val::Unknown),
                op::ST | op::STX => {
                    let v = if i.code == op::ST { s.a } else { s.x };
                    if let Some(slot) = s.mem.get_mut(i.k as usize) {
                        *slot = Some(v);
                    }
                }
                op::TAX => s.x = s.a,
                op::TXA => s.a = s.x,
                op::NEG => {
                    s.a = match s.a {
                        Val::Const(v) => Val::Const(v.wrapping_neg()),
                        _ => Val::Unknown,
                    }
                }
                op::RET_K | op::RET_A => {
                    let ret = match (i.code, s.a) {
                        (op::RET_K, _) => i.k,
                        (_, Val::Const(v)) => v,
                        _ => RET_ALLOW,
                    };
                    leaf(out, s.region, ret, budget)?;
                    break;
                }
                op::JA => {
                    s.pc += 1 + i.k as usize;
                    continue;
                }
                c if is_alu(c) => {
                    let b = if c & op::X != 0 { s.x } else { Val::Const(i.k) };
                    match alu(c & 0xf0, s.a, b) {
                        Some(v) => s.a = v,
                        // A division by a register holding 0 returns 0 (the kernel's
                        // conversion of classic BPF), SECCOMP_RET_KILL_THREAD.
                        None => {
                            leaf(out, s.region, 0, budget)?;
                            break;
                        }
                    }
                    if c & 0xf0 == op::DIV && c & op::X != 0 && !matches!(s.x, Val::Const(_)) {
                        // A division by an input: the inputs where it is 0 return 0.
                        let zero = match s.x {
                            Val::Word { word, mask } => {
                                s.region.with(word as usize, Atom::masked(mask, 0, true))
                            }
                            _ => Some(s.region.clone()),
                        };
                        if let Some(r) = zero {
                            leaf(out, r, 0, budget)?;
                        }
                        if let Val::Word { word, mask } = s.x {
                            let nonzero = Atom::masked(mask, 0, false);
                            match s.region.with(word as usize, nonzero) {
                                Some(r) => s.region = r,
                                None => break,
                            }
                        }
                    }
                }
                c if is_cond_jump(c) => {
                    let b = if c & op::X != 0 { s.x } else { Val::Const(i.k) };
                    let taken = s.pc + 1 + i.jt as usize;
                    let not_taken = s.pc + 1 + i.jf as usize;
                    match branch(c & 0xf0, s.a, b) {
                        Branch::Known(true) => s.pc = taken,
                        Branch::Known(false) => s.pc = not_taken,
                        Branch::Split(t, f) => {
                            let side = |need: Option<(usize, Atom)>| match need {
                                Some((w, atom)) => s.region.words[w].narrowed(atom).map(|n| (w, n)),
                                None => Some((NR, Narrowed::Same)),
                            };
                            match (side(t), side(f)) {
                                (Some((wt, nt)), Some((wf, nf))) => {
                                    if budget.paths == 0 {
                                        return Err(Exhausted);
                                    }
                                    budget.paths -= 1;
                                    budget.steps = budget
                                        .steps
                                        .checked_sub(s.region.weight())
                                        .ok_or(Exhausted)?;
                                    let mut rt = s.region.clone();
                                    rt.apply(wt, nt);
                                    stack.push(State {
                                        pc: taken,
                                        region: rt,
                                        ..s
                                    });
                                    s.pc = not_taken;
                                    s.region.apply(wf, nf);
                                }
                                (Some((w, n)), None) => {
                                    s.pc = taken;
                                    s.region.apply(w, n);
                                }
                                (None, Some((w, n))) => {
                                    s.pc = not_taken;
                                    s.region.apply(w, n);
                                }
                                (None, None) => break,
                            }
                        }
                    }
                    continue;
                }
                // `decode` lets no other code through.
                _ => return Err(Exhausted),
            }
            s.pc += 1;
        }
    }
    Ok(())
}

fn leaf(
    out: &mut Vec<Leaf>,
    region: Region,
    ret: u32,
    budget: &mut Budget,
) -> Result<(), Exhausted> {
    if budget.paths == 0 {
        return Err(Exhausted);
    }
    budget.paths -= 1;
    out.push(Leaf { region, ret });
    Ok(())
}

/// A program of one `struct sock_filter` for each (code, jt, jf, k), as the kernel reads it.
#[cfg(test)]
pub fn assemble(insns: &[(u16, u8, u8, u32)]) -> Vec<u8> {
    insns
        .iter()
        .flat_map(|&(code, jt, jf, k)| {
            let mut b = code.to_le_bytes().to_vec();
            b.extend([jt, jf]);
            b.extend(k.to_le_bytes());
            b
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use assemble as prog;

    #[test]
    fn next_with_bits_finds_the_smallest_fit() {
        for (x, ones, zeros) in [
            (0, 0, 0),
            (5, 0, 0),
            (5, 0b1000, 0),
            (9, 0b1000, 0b1),
            (0x7fff_ffff, 0, 0x8000_0000),
            (13, 0b0100, 0b0010),
            (0xffff_fff0, 0xf, 0),
            (0x4000_0001, 0x4000_0000, 0),
        ] {
            let brute = (x..=u32::MAX)
                .take(1 << 20)
                .find(|w| w & ones == ones && w & zeros == 0);
            assert_eq!(
                next_with_bits(x, ones, zeros),
                brute,
                "{x:#x} {ones:#x} {zeros:#x}"
            );
        }
        assert_eq!(next_with_bits(0x8000_0001, 0, 0x8000_0000), None);
        assert_eq!(next_with_bits(0, 1, 1), None);
    }

    #[test]
    fn word_sets_hold_exactly_their_conditions() {
        let mut s = WordSet::ANY;
        s.add(Atom::AtLeast(10));
        s.add(Atom::AtMost(12));
        s.add(Atom::ne(10));
        s.add(Atom::ne(11));
        assert_eq!(s.single(), Some(12));
        s.add(Atom::masked(0b100, 0, false));
        assert_eq!(s.single(), Some(12));
        s.add(Atom::ne(12));
        assert!(s.is_empty());
        // Known bits against an exclusion under the same mask.
        let mut s = WordSet::ANY;
        s.add(Atom::masked(0x7e02_0000, 0, true));
        s.add(Atom::masked(0x7e02_0000, 0, false));
        assert!(s.is_empty());
        let mut s = WordSet::ANY;
        s.add(Atom::masked(0xf, 0x10, true));
        assert!(s.is_empty(), "a value outside its mask never matches");
        assert!(WordSet::ANY.first(0, &[0, 1, 2]) == Some(3));
    }

    #[test]
    fn the_kernel_s_checks_refuse_bad_programs() {
        let ret_allow = (op::RET_K, 0, 0, RET_ALLOW);
        for (p, why) in [
            (vec![], "is empty"),
            (prog(&[ret_allow])[..7].to_vec(), "8-byte"),
            (prog(&vec![ret_allow; 5000]), "more than the kernel's 4096"),
            (prog(&[(0x94, 0, 0, 0), ret_allow]), "opcode 0x0094"),
            (prog(&[(op::LD_W_ABS, 0, 0, 64), ret_allow]), "offset 64"),
            (prog(&[(op::LD_W_ABS, 0, 0, 2), ret_allow]), "offset 2"),
            (prog(&[(0x15, 5, 0, 0), ret_allow]), "jumps past the end"),
            (prog(&[(op::JA, 0, 0, 1), ret_allow]), "jumps past the end"),
            (
                prog(&[(0x34, 0, 0, 0), ret_allow]),
                "divides by the constant 0",
            ),
            (prog(&[(0x64, 0, 0, 32), ret_allow]), "shifts by 32"),
            (prog(&[(op::LD_MEM, 0, 0, 16), ret_allow]), "word 16"),
            (prog(&[(op::LD_MEM, 0, 0, 3), ret_allow]), "before a store"),
            (prog(&[(op::LD_IMM, 0, 0, 3)]), "does not end with a return"),
        ] {
            let err = decode(&p).expect_err(why).to_string();
            assert!(err.contains(why), "{why:?} not in {err:?}");
        }
        // A store on only one side of a branch is not a store on every path.
        let p = prog(&[
            (0x15, 0, 1, 0),
            (op::ST, 0, 0, 0),
            (op::LD_MEM, 0, 0, 0),
            ret_allow,
        ]);
        assert_eq!(
            decode(&p),
            Err(ProgramError::LoadBeforeStore { pc: 2, word: 0 })
        );
    }

    fn leaves(p: &[(u16, u8, u8, u32)], arch: u32) -> Vec<Leaf> {
        let insns = decode(&prog(p)).unwrap();
        let mut out = Vec::new();
        let mut budget = Budget {
            steps: 1 << 20,
            paths: 1 << 20,
        };
        run(&insns, arch, Region::default(), &mut budget, &mut out).unwrap();
        out
    }

    #[test]
    fn symbolic_runs_split_inputs_by_their_conditions() {
        // if arch == 1: if nr == 7: allow, else if arg0 & 0xf0 == 0x10 errno else kill.
        let out = leaves(
            &[
                (op::LD_W_ABS, 0, 0, 4),
                (0x15, 0, 6, 1),
                (op::LD_W_ABS, 0, 0, 0),
                (0x15, 3, 0, 7),
                (op::LD_W_ABS, 0, 0, 16),
                (0x54, 0, 0, 0xf0),
                (0x15, 2, 1, 0x10),
                (op::RET_K, 0, 0, RET_ALLOW),
                (op::RET_K, 0, 0, 0),
                (op::RET_K, 0, 0, 0x5_0001),
            ],
            1,
        );
        let rets: Vec<u32> = out.iter().map(|l| l.ret).collect();
        assert_eq!(rets.len(), 3, "{out:?}");
        let allow = out.iter().find(|l| l.ret == RET_ALLOW).unwrap();
        assert_eq!(allow.region.word(NR).single(), Some(7));
        let errno = out.iter().find(|l| l.ret == 0x5_0001).unwrap();
        assert_eq!(errno.region.word(4).first(0, &[]), Some(0x10));
        assert!(errno.region.word(NR).first(7, &[]) != Some(7));
        // Another architecture never gets past the first test.
        let out = leaves(
            &[
                (op::LD_W_ABS, 0, 0, 4),
                (0x15, 0, 1, 1),
                (op::RET_K, 0, 0, RET_ALLOW),
                (op::RET_K, 0, 0, 0),
            ],
            2,
        );
        assert_eq!(out.iter().map(|l| l.ret).collect::<Vec<_>>(), [0]);
        // A computed return value counts as an allow; a division by an input word that may
        // be 0 returns 0 there.
        let out = leaves(
            &[
                (op::LD_W_ABS, 0, 0, 16),
                (op::TAX, 0, 0, 0),
                (op::LD_IMM, 0, 0, 100),
                (0x3c, 0, 0, 0),
                (op::RET_A, 0, 0, 0),
            ],
            1,
        );
        let mut rets: Vec<u32> = out.iter().map(|l| l.ret).collect();
        rets.sort();
        assert_eq!(rets, [0, RET_ALLOW]);
    }

    #[test]
    fn runs_are_bounded() {
        // 12 independent tests on the instruction pointer: 4096 paths.
        let mut p = Vec::new();
        for bit in 0..12 {
            p.push((op::LD_W_ABS, 0, 0, 8));
            p.push((0x45, 0, 0, 1 << bit));
        }
        p.push((op::RET_K, 0, 0, RET_ALLOW));
        let insns = decode(&prog(&p)).unwrap();
        let mut budget = Budget {
            steps: 1 << 20,
            paths: 100,
        };
        let mut out = Vec::new();
        assert_eq!(
            run(&insns, 1, Region::default(), &mut budget, &mut out),
            Err(Exhausted)
        );
    }
}

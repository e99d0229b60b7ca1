//! Assembles a [`Policy`] into a `BPF_PROG_TYPE_CGROUP_DEVICE` program.
//!
//! The kernel calls the program with a pointer to `struct
//! bpf_cgroup_dev_ctx` in r1: three u32 fields, `access_type` at offset 0
//! (device type in the low 16 bits, access bits in the high 16), `major` at
//! 4 and `minor` at 8. It returns 1 to allow and 0 to deny. The program
//! calls no helpers and uses no maps: it copies the fields into r2..r5,
//! then tests each rule in order, jumping to the next rule's block on the
//! first mismatch; the last block denies.

use super::{Access, Policy, Rule, Verdict};

/// Offsets of the context's fields.
const CTX_ACCESS_TYPE: i16 = 0;
const CTX_MAJOR: i16 = 4;
const CTX_MINOR: i16 = 8;

/// Registers: r1 holds the context and is free once it has been read.
const R0: u8 = 0;
const R_CTX: u8 = 1;
const R_TMP: u8 = 1;
const R_TYPE: u8 = 2;
const R_ACCESS: u8 = 3;
const R_MAJOR: u8 = 4;
const R_MINOR: u8 = 5;

/// Opcodes (class | operation | source), from the kernel's `bpf_common.h`
/// and `bpf.h`.
const LDX_MEM_W: u8 = 0x61;
const ALU_AND_K: u8 = 0x54;
const ALU_RSH_K: u8 = 0x74;
const ALU_MOV_X: u8 = 0xbc;
const ALU64_MOV_K: u8 = 0xb7;
const JMP_JEQ_K: u8 = 0x15;
const JMP_JNE_K: u8 = 0x55;
const JMP_JNE_X: u8 = 0x5d;
const JMP_EXIT: u8 = 0x95;

/// One eBPF instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    dst: u8,
    src: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            dst,
            src,
            off,
            imm,
        }
    }

    /// The eight bytes the kernel reads, in this machine's byte order (the
    /// register nibbles follow the bitfield layout of `struct bpf_insn` on
    /// little-endian machines).
    fn encode(&self) -> [u8; 8] {
        let mut out = [0u8; 8];
        out[0] = self.code;
        out[1] = if cfg!(target_endian = "little") {
            (self.src << 4) | (self.dst & 0x0f)
        } else {
            (self.dst << 4) | (self.src & 0x0f)
        };
        out[2..4].copy_from_slice(&self.off.to_ne_bytes());
        out[4..8].copy_from_slice(&self.imm.to_ne_bytes());
        out
    }
}

/// An assembled device program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    insns: Vec<Insn>,
}

impl Program {
    /// Assembles a policy.
    pub fn assemble(policy: &Policy) -> Program {
        let mut insns = vec![
            Insn::new(LDX_MEM_W, R_TYPE, R_CTX, CTX_ACCESS_TYPE, 0),
            Insn::new(ALU_AND_K, R_TYPE, 0, 0, 0xffff),
            Insn::new(LDX_MEM_W, R_ACCESS, R_CTX, CTX_ACCESS_TYPE, 0),
            Insn::new(ALU_RSH_K, R_ACCESS, 0, 0, 16),
            Insn::new(LDX_MEM_W, R_MAJOR, R_CTX, CTX_MAJOR, 0),
            Insn::new(LDX_MEM_W, R_MINOR, R_CTX, CTX_MINOR, 0),
        ];
        for rule in policy.rules() {
            let total = rule.is_total();
            insns.extend(block(rule));
            // The verifier rejects unreachable instructions, and nothing
            // after a rule that matches everything can be reached.
            if total {
                return Program { insns };
            }
        }
        insns.extend(verdict(Verdict::Deny));
        Program { insns }
    }

    /// The number of instructions.
    pub fn len(&self) -> usize {
        self.insns.len()
    }

    /// Whether there are no instructions (never, for an assembled policy).
    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    /// The instructions as the kernel reads them.
    pub fn bytes(&self) -> Vec<u8> {
        self.insns.iter().flat_map(Insn::encode).collect()
    }
}

/// The instructions of one rule: tests that jump past the block on a
/// mismatch, then the verdict.
fn block(rule: &Rule) -> Vec<Insn> {
    // Each test ends in a jump past the block; the offsets are filled in
    // once the block's length is known.
    let mut tests: Vec<Vec<Insn>> = Vec::new();
    let devices = rule.devices;
    if let Some(kind) = devices.kind {
        tests.push(vec![jump(JMP_JNE_K, R_TYPE, 0, kind.code())]);
    }
    if let Some(major) = devices.major {
        tests.push(vec![jump(JMP_JNE_K, R_MAJOR, 0, major)]);
    }
    if let Some(minor) = devices.minor {
        tests.push(vec![jump(JMP_JNE_K, R_MINOR, 0, minor)]);
    }
    if rule.access != Access::ALL {
        let masked = [
            Insn::new(ALU_MOV_X, R_TMP, R_ACCESS, 0, 0),
            Insn::new(ALU_AND_K, R_TMP, 0, 0, rule.access.bits() as i32),
        ];
        let test = match rule.verdict {
            // Every access asked for is granted: (asked & rule) == asked.
            Verdict::Allow => jump(JMP_JNE_X, R_TMP, R_ACCESS, 0),
            // Some access asked for is refused: (asked & rule) != 0.
            Verdict::Deny => jump(JMP_JEQ_K, R_TMP, 0, 0),
        };
        tests.push(vec![masked[0], masked[1], test]);
    }

    let end = verdict(rule.verdict);
    let mut insns: Vec<Insn> = tests.into_iter().flatten().collect();
    let len = insns.len() + end.len();
    for (i, insn) in insns.iter_mut().enumerate() {
        if is_jump(insn.code) {
            // Offsets count from the instruction after the jump.
            insn.off = (len - i - 1) as i16;
        }
    }
    insns.extend(end);
    insns
}

fn jump(code: u8, dst: u8, src: u8, imm: u32) -> Insn {
    // Majors and minors fit in 20 bits, so the immediate is never negative.
    Insn::new(code, dst, src, 0, imm as i32)
}

fn is_jump(code: u8) -> bool {
    matches!(code, JMP_JEQ_K | JMP_JNE_K | JMP_JNE_X)
}

fn verdict(verdict: Verdict) -> [Insn; 2] {
    let value = match verdict {
        Verdict::Allow => 1,
        Verdict::Deny => 0,
    };
    [
        Insn::new(ALU64_MOV_K, R0, 0, 0, value),
        Insn::new(JMP_EXIT, 0, 0, 0, 0),
    ]
}

#[cfg(test)]
impl Program {
    /// Runs the bytes in a user-space interpreter over one request, the way
    /// the kernel calls the program.
    pub(crate) fn interpret(&self, request: &super::Request) -> Verdict {
        let bytes = self.bytes();
        let vm = rbpf::EbpfVmRaw::new(Some(&bytes)).expect("rbpf accepts the program");
        let access_type = (request.access.bits() << 16) | request.kind.code();
        let mut ctx = Vec::with_capacity(12);
        for field in [access_type, request.major, request.minor] {
            ctx.extend_from_slice(&field.to_ne_bytes());
        }
        match vm.execute_program(&mut ctx).expect("the program runs") {
            1 => Verdict::Allow,
            0 => Verdict::Deny,
            other => panic!("the program returned {other}, not 0 or 1"),
        }
    }
}

#[cfg(test)]
mod tests;

//! The assembled bytes run in a user-space eBPF interpreter over tables of
//! requests, so the filter's logic is checked without privileges.

use super::*;
use crate::cgroup::device::{DeviceType, Devices, Request, Rule};

const R: Access = Access::READ;
const W: Access = Access::WRITE;
const M: Access = Access::MKNOD;
const RW: Access = Access::READ_WRITE;
const RWM: Access = Access::ALL;

fn run(program: &Program, request: &Request) -> Verdict {
    program.interpret(request)
}

fn char(major: u32, minor: u32, access: Access) -> Request {
    Request {
        kind: DeviceType::Char,
        major,
        minor,
        access,
    }
}

fn block(major: u32, minor: u32, access: Access) -> Request {
    Request {
        kind: DeviceType::Block,
        major,
        minor,
        access,
    }
}

/// Checks each named case against both the bytecode and the reference
/// evaluator, so the two cannot drift apart.
fn check(policy: &Policy, cases: &[(&str, Request, Verdict)]) {
    let program = Program::assemble(policy);
    for (name, request, want) in cases {
        assert_eq!(
            run(&program, request),
            *want,
            "bytecode, case {name}\n{policy}"
        );
        assert_eq!(
            policy.decide(request),
            *want,
            "reference, case {name}\n{policy}"
        );
    }
}

use Verdict::{Allow, Deny};

#[test]
fn an_empty_policy_denies_everything() {
    check(
        &Policy::new(),
        &[
            ("char read", char(1, 3, R), Deny),
            ("block write", block(8, 0, W), Deny),
            ("mknod", char(1, 3, M), Deny),
        ],
    );
}

#[test]
fn a_read_only_allow_does_not_let_read_write_through() {
    let mut policy = Policy::new();
    policy.push(Rule::allow(Devices::char(1, 3), R));
    check(
        &policy,
        &[
            ("read", char(1, 3, R), Allow),
            ("write", char(1, 3, W), Deny),
            ("read+write", char(1, 3, RW), Deny),
            ("mknod", char(1, 3, M), Deny),
            ("other minor", char(1, 5, R), Deny),
            ("block with the same numbers", block(1, 3, R), Deny),
        ],
    );
}

#[test]
fn a_write_deny_catches_read_write_and_leaves_read() {
    let mut policy = Policy::new();
    policy
        .push(Rule::deny(Devices::char(1, 3), W))
        .push(Rule::allow(Devices::ANY, RWM));
    check(
        &policy,
        &[
            ("read", char(1, 3, R), Allow),
            ("write", char(1, 3, W), Deny),
            ("read+write", char(1, 3, RW), Deny),
            ("mknod", char(1, 3, M), Allow),
            ("other device write", char(1, 5, W), Allow),
        ],
    );
}

#[test]
fn wildcards_match_any_type_major_or_minor() {
    let mut policy = Policy::new();
    policy
        .push(Rule::allow(Devices::char_major(195), RW))
        .push(Rule::allow(
            Devices {
                kind: None,
                major: Some(7),
                minor: None,
            },
            R,
        ))
        .push(Rule::allow(
            Devices {
                kind: Some(DeviceType::Block),
                major: None,
                minor: Some(0),
            },
            RWM,
        ));
    check(
        &policy,
        &[
            ("char major, any minor", char(195, 77, RW), Allow),
            ("char major, mknod not granted", char(195, 77, M), Deny),
            ("block of the char major", block(195, 0, W), Allow),
            ("any type: char", char(7, 1, R), Allow),
            ("any type: block", block(7, 9, R), Allow),
            ("any type: write not granted", block(7, 9, W), Deny),
            ("block minor 0 of any major", block(259, 0, RWM), Allow),
            ("block minor 1", block(259, 1, R), Deny),
        ],
    );
}

#[test]
fn the_first_matching_rule_decides() {
    let mut policy = Policy::new();
    policy
        .push(Rule::allow(Devices::char(195, 1), RWM))
        .push(Rule::deny(Devices::char_major(195), RWM))
        .push(Rule::allow(Devices::ANY, RWM));
    check(
        &policy,
        &[
            ("allowed before the deny", char(195, 1, RW), Allow),
            ("denied by the major", char(195, 0, R), Deny),
            ("denied mknod", char(195, 2, M), Deny),
            ("everything else", char(1, 3, RW), Allow),
            ("block devices", block(8, 1, RWM), Allow),
        ],
    );
}

#[test]
fn nothing_follows_a_rule_that_matches_everything() {
    let mut total = Policy::new();
    total.push(Rule::allow(Devices::ANY, RWM));
    // Six loads, then `r0 = 1; exit`: no unreachable default.
    assert_eq!(Program::assemble(&total).len(), 8);

    let mut shadowed = total.clone();
    shadowed.push(Rule::deny(Devices::char(1, 3), RWM));
    assert_eq!(Program::assemble(&shadowed), Program::assemble(&total));
    check(&shadowed, &[("shadowed deny", char(1, 3, R), Allow)]);
}

#[test]
fn a_rule_without_access_is_left_out() {
    let mut policy = Policy::new();
    policy.push(Rule::allow(Devices::ANY, Access::from_bits(0)));
    assert!(policy.rules().is_empty());
    check(&policy, &[("still denied", char(1, 3, R), Deny)]);
}

#[test]
fn the_bytecode_agrees_with_the_reference_on_every_request() {
    let mut policy = Policy::new();
    policy
        .push(Rule::allow(Devices::char(10, 1), R | M))
        .push(Rule::deny(Devices::char_major(10), W))
        .push(Rule::allow(Devices::char_major(10), RW))
        .push(Rule::deny(Devices::char(11, 0), RWM))
        .push(Rule::allow(
            Devices {
                kind: Some(DeviceType::Block),
                major: None,
                minor: None,
            },
            R,
        ));
    let program = Program::assemble(&policy);
    for kind in [DeviceType::Char, DeviceType::Block] {
        for major in [10, 11, 12] {
            for minor in [0, 1, 2] {
                for bits in 1..=7 {
                    let request = Request {
                        kind,
                        major,
                        minor,
                        access: Access::from_bits(bits),
                    };
                    assert_eq!(
                        run(&program, &request),
                        policy.decide(&request),
                        "{request:?}\n{policy}"
                    );
                }
            }
        }
    }
}

#[test]
fn policies_print_like_the_v1_device_lists() {
    let mut policy = Policy::new();
    policy
        .push(Rule::deny(Devices::char(195, 0), RWM))
        .push(Rule::allow(Devices::ANY, RW));
    assert_eq!(
        policy.to_string(),
        "deny c 195:0 rwm\nallow a *:* rw\ndeny a *:* rwm"
    );
}

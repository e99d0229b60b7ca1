//! Placement and sharing arithmetic on the fixture machines.

use std::path::PathBuf;

use super::*;
use crate::accel::discover;
use crate::plan::{parse_cpu, parse_gpu_ids};

fn machine(name: &str) -> Machine {
    discover(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/accel")
            .join(name),
    )
}

fn hold(profile: &str, m: &Machine, index: usize, share: u8) -> Holding {
    Holding {
        profile: profile.into(),
        bus_id: m.gpus[index].bus_id.clone(),
        share,
    }
}

fn ask(count: u32, share: u8) -> Request<'static> {
    Request {
        profile: "job",
        count,
        share,
        ids: None,
    }
}

fn indices(gpus: &[&Gpu]) -> Vec<u32> {
    gpus.iter().map(|g| g.index).collect()
}

#[test]
fn placement_prefers_one_numa_node_then_the_least_shared() {
    let m = machine("h100-8x");
    let h = |held: &[(usize, u8)]| -> Vec<Holding> {
        held.iter().map(|&(i, s)| hold("other", &m, i, s)).collect()
    };
    // (name, holdings, count, share, chosen)
    type Case = (&'static str, Vec<Holding>, u32, u8, Vec<u32>);
    let cases: Vec<Case> = vec![
        (
            "empty machine: lowest node, lowest indices",
            h(&[]),
            2,
            100,
            vec![0, 1],
        ),
        ("four fit on node 0", h(&[]), 4, 100, vec![0, 1, 2, 3]),
        (
            "node 0 has three free: all four from node 1",
            h(&[(0, 100)]),
            4,
            100,
            vec![4, 5, 6, 7],
        ),
        (
            "six cannot fit one node: all of the fuller node first",
            h(&[(0, 100)]),
            6,
            100,
            vec![1, 2, 4, 5, 6, 7],
        ),
        (
            "half GPUs: unshared before shared",
            h(&[(0, 50), (1, 50)]),
            2,
            50,
            vec![2, 3],
        ),
        (
            "half GPUs: shared ones still fit when needed",
            h(&[
                (0, 50),
                (1, 50),
                (2, 100),
                (3, 100),
                (4, 100),
                (5, 100),
                (6, 100),
                (7, 100),
            ]),
            2,
            50,
            vec![0, 1],
        ),
        (
            "the node whose GPUs are least shared",
            h(&[(0, 20), (1, 20), (2, 20), (3, 20), (4, 10), (5, 10)]),
            2,
            50,
            vec![6, 7],
        ),
    ];
    for (name, holdings, count, share, want) in cases {
        let got = choose(&m, &holdings, &ask(count, share), "/").unwrap();
        assert_eq!(indices(&got), want, "{name}");
    }
}

#[test]
fn shares_add_up_to_at_most_one_whole_gpu() {
    let cases: &[(u32, u8, bool)] = &[
        (0, 100, true),
        (1, 100, false),
        (50, 50, true),
        (50, 51, false),
        (80, 20, true),
        (99, 1, true),
        (100, 1, false),
    ];
    for &(used, share, want) in cases {
        assert_eq!(fits(used, share), want, "{used}% used + {share}%");
    }
    let m = machine("workstation");
    let holdings = vec![hold("a", &m, 1, 50), hold("b", &m, 1, 30)];
    assert_eq!(used(&holdings).get(m.gpus[1].bus_id.as_str()), Some(&80));
}

#[test]
fn not_enough_says_how_many_are_free_and_who_holds_the_rest() {
    let m = machine("h100-8x");
    let holdings: Vec<Holding> = (0..6)
        .map(|i| hold(if i < 4 { "train" } else { "serve" }, &m, i, 100))
        .collect();
    let err = choose(&m, &holdings, &ask(3, 100), "/").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(
        err.to_string(),
        "not enough GPUs for profile 'job': it asks for 3 at 100% each, and 2 of the 8 GPU(s) \
         here have room for that; held by 'serve' (GPUs 4, 5 at 100%), 'train' (GPUs 0, 1, 2, 3 \
         at 100%): delete or change one of those profiles, ask for fewer GPUs, or a smaller \
         --gpu-share"
    );
}

#[test]
fn no_gpus_at_all() {
    let err = choose(&machine("none"), &[], &ask(1, 100), "/sys/bus/pci/devices").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadInput);
    assert!(
        err.to_string().starts_with(
            "profile 'job' asks for 1 GPU(s), but no GPU was found on this machine (none under /sys/bus/pci/devices)"
        ),
        "{err}"
    );
}

#[test]
fn an_integrated_gpu_only_when_nothing_else_fits() {
    let m = machine("workstation");
    let got = choose(&m, &[], &ask(1, 100), "/").unwrap();
    assert_eq!(indices(&got), vec![1], "the discrete NVIDIA GPU");
    let got = choose(&m, &[hold("a", &m, 1, 100)], &ask(1, 100), "/").unwrap();
    assert_eq!(
        indices(&got),
        vec![0],
        "the iGPU when the discrete one is taken"
    );
    let got = choose(&m, &[], &ask(2, 100), "/").unwrap();
    assert_eq!(indices(&got), vec![0, 1]);
}

#[test]
fn gpus_asked_for_by_id() {
    let m = machine("h100-8x");
    let by = |text: &str, holdings: &[Holding]| {
        let ids = parse_gpu_ids(text).unwrap();
        let request = Request {
            profile: "job",
            count: ids.len() as u32,
            share: 50,
            ids: Some(&ids),
        };
        choose(&m, holdings, &request, "/").map(|g| indices(&g))
    };
    assert_eq!(by("3,0", &[]), Ok(vec![0, 3]));
    assert_eq!(
        by("GPU-2F8B1D57-9C4E-4A06-B7E3-5D1F8A2C9E58,0000:db:00.0", &[]),
        Ok(vec![4, 7]),
        "UUIDs in any case, PCI addresses"
    );
    assert_eq!(by("ab:00.0", &[]), Ok(vec![5]), "an address without domain");
    assert_eq!(
        by("8", &[]).unwrap_err().to_string(),
        "no GPU '8' on this machine (8 GPU(s), indices 0-7): see `cortex limits gpus`"
    );
    assert_eq!(
        by("1,1", &[]).unwrap_err(),
        PlaceError::Duplicate { index: 1 }
    );
    let held = [hold("a", &m, 2, 30), hold("b", &m, 2, 40)];
    assert_eq!(
        by("2", &held).unwrap_err().to_string(),
        "GPU 2 has 30% free, not the 50% profile 'job' asks for; held by 'a' (GPU 2 at 30%), \
         'b' (GPU 2 at 40%): choose another GPU (see `cortex limits gpus`) or a smaller --gpu-share"
    );
    let ids = parse_gpu_ids("0,1").unwrap();
    let err = choose(
        &m,
        &[],
        &Request {
            profile: "job",
            count: 3,
            share: 100,
            ids: Some(&ids),
        },
        "/",
    )
    .unwrap_err();
    assert_eq!(err, PlaceError::CountMismatch { ids: 2, count: 3 });
}

#[test]
fn cpus_near_the_gpus_sized_to_the_quota() {
    let m = machine("h100-8x");
    let g = |i: usize| &m.gpus[i];
    let none = CpuSet::default();
    // (name, gpus, quota, pinned elsewhere, cpus, mems)
    type Case<'a> = (&'a str, Vec<&'a Gpu>, &'a str, CpuSet, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (
            "4 cores on node 0",
            vec![g(0)],
            "400",
            none.clone(),
            "0-3",
            "0",
        ),
        (
            "2.5 cores round up",
            vec![g(5)],
            "250",
            none.clone(),
            "28-30",
            "1",
        ),
        (
            "no quota: every local CPU",
            vec![g(0)],
            "max",
            none.clone(),
            "0-27,56-83",
            "0",
        ),
        (
            "more cores than local CPUs: all of them",
            vec![g(0)],
            "10000",
            none.clone(),
            "0-27,56-83",
            "0",
        ),
        (
            "GPUs on both nodes",
            vec![g(3), g(4)],
            "max",
            none.clone(),
            "0-111",
            "0-1",
        ),
        (
            "CPUs pinned by others come last",
            vec![g(0)],
            "400",
            CpuSet::parse("0-1").unwrap(),
            "2-5",
            "0",
        ),
    ];
    for (name, gpus, quota, pinned, cpus, mems) in cases {
        let got = near(&gpus, parse_cpu(quota).unwrap(), &pinned).unwrap();
        assert_eq!(got.cpus.to_string(), cpus, "{name}");
        assert_eq!(
            got.mems.map(|m| m.to_string()).as_deref(),
            Some(mems),
            "{name}"
        );
    }

    let ws = machine("workstation");
    let got = near(&[&ws.gpus[1]], parse_cpu("800").unwrap(), &none).unwrap();
    assert_eq!(
        (got.cpus.to_string(), got.mems),
        ("0-7".to_string(), None),
        "no NUMA node known"
    );
    let bare = Gpu {
        local_cpus: CpuSet::default(),
        ..ws.gpus[1].clone()
    };
    assert_eq!(near(&[&bare], parse_cpu("400").unwrap(), &none), None);
}

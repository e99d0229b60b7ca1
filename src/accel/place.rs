//! Choosing GPUs for a profile and the CPUs and memory nodes near them.
//!
//! Several profiles may hold one GPU while their shares add up to at most
//! 100%, so a 100% share is exclusive. Placement prefers GPUs on one NUMA
//! node (a job's GPUs then talk through one host bridge and its threads
//! stay on one memory controller), then the least shared ones, then the
//! lowest index. Everything here is a pure function over what discovery
//! found and what the store holds; the store's transaction makes it
//! atomic.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use thiserror::Error;

use super::{Gpu, Machine};
use crate::cpuset::CpuSet;
use crate::error::ErrorKind;
use crate::plan::{CpuQuota, GpuSelector, CPU_PERIOD_USEC};
use crate::units::Limit;

/// The whole of a GPU, in percent.
pub const WHOLE: u32 = 100;

/// A share of one GPU held by one profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    /// The profile holding it.
    pub profile: String,
    /// The GPU's PCI address.
    pub bus_id: String,
    /// The share held, in percent.
    pub share: u8,
}

/// What a profile asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// The profile asking, named in errors.
    pub profile: &'a str,
    /// How many GPUs.
    pub count: u32,
    /// The share of each, in percent.
    pub share: u8,
    /// Particular GPUs, if asked for.
    pub ids: Option<&'a [GpuSelector]>,
}

/// Who holds what of the GPUs a request could not get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holders(pub Vec<(String, Vec<u32>, u8)>);

impl fmt::Display for Holders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(profile, gpus, share)| {
                let list: Vec<String> = gpus.iter().map(u32::to_string).collect();
                let noun = if gpus.len() == 1 { "GPU" } else { "GPUs" };
                format!("'{profile}' ({noun} {} at {share}%)", list.join(", "))
            })
            .collect();
        f.write_str(&parts.join(", "))
    }
}

/// Why GPUs could not be placed.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum PlaceError {
    /// The machine has no GPU at all.
    #[error("profile '{profile}' asks for {count} GPU(s), but no GPU was found on this machine (none under {root}): use --gpus 0 to hide GPUs, or --gpus-export-only to keep the count for another machine")]
    NoGpus {
        /// The profile.
        profile: String,
        /// How many it asked for.
        count: u32,
        /// Where discovery looked.
        root: String,
    },
    /// Too few GPUs have room for the share.
    #[error("not enough GPUs for profile '{profile}': it asks for {count} at {share}% each, and {free} of the {total} GPU(s) here have room for that; held by {holders}: delete or change one of those profiles, ask for fewer GPUs, or a smaller --gpu-share")]
    NotEnough {
        /// The profile.
        profile: String,
        /// How many it asked for.
        count: u32,
        /// The share asked for.
        share: u8,
        /// How many have room.
        free: u32,
        /// How many the machine has.
        total: u32,
        /// Who holds the rest.
        holders: Holders,
    },
    /// `--gpu-ids` names a GPU that is not here.
    #[error("no GPU '{id}' on this machine ({total} GPU(s), indices 0-{last}): see `cortex limits gpus`", last = total.saturating_sub(1))]
    UnknownId {
        /// The id as given.
        id: String,
        /// How many GPUs the machine has.
        total: u32,
    },
    /// `--gpu-ids` names one GPU twice.
    #[error("GPU {index} is named twice in --gpu-ids: name each GPU once")]
    Duplicate {
        /// The GPU.
        index: u32,
    },
    /// `--gpu-ids` and `--gpus` disagree.
    #[error("--gpu-ids names {ids} GPU(s) but --gpus asks for {count}: give as many ids as GPUs, or leave out --gpus")]
    CountMismatch {
        /// How many ids.
        ids: u32,
        /// The count asked for.
        count: u32,
    },
    /// A GPU asked for by id lacks room for the share.
    #[error("GPU {index} has {free}% free, not the {share}% profile '{profile}' asks for; held by {holders}: choose another GPU (see `cortex limits gpus`) or a smaller --gpu-share")]
    Taken {
        /// The profile.
        profile: String,
        /// The GPU.
        index: u32,
        /// The share still free on it.
        free: u32,
        /// The share asked for.
        share: u8,
        /// Who holds it.
        holders: Holders,
    },
}

impl PlaceError {
    /// The kind of failure, for the exit code: a GPU that is taken is a
    /// conflict; a request that can never fit here is bad input.
    pub fn kind(&self) -> ErrorKind {
        match self {
            PlaceError::NotEnough { .. } | PlaceError::Taken { .. } => ErrorKind::Conflict,
            _ => ErrorKind::BadInput,
        }
    }
}

/// The share of each GPU already held, by PCI address.
pub fn used(holdings: &[Holding]) -> BTreeMap<&str, u32> {
    let mut used = BTreeMap::new();
    for h in holdings {
        *used.entry(h.bus_id.as_str()).or_insert(0) += u32::from(h.share);
    }
    used
}

/// Whether a GPU with `used` percent held has room for `share` more.
pub fn fits(used: u32, share: u8) -> bool {
    used + u32::from(share) <= WHOLE
}

/// The GPUs for a request, in index order.
pub fn choose<'m>(
    machine: &'m Machine,
    holdings: &[Holding],
    request: &Request<'_>,
    root: &str,
) -> Result<Vec<&'m Gpu>, PlaceError> {
    let used = used(holdings);
    let used_of = |g: &Gpu| used.get(g.bus_id.as_str()).copied().unwrap_or(0);
    let total = machine.gpus.len() as u32;
    if let Some(ids) = request.ids {
        if ids.len() as u32 != request.count {
            return Err(PlaceError::CountMismatch {
                ids: ids.len() as u32,
                count: request.count,
            });
        }
        return by_ids(machine, holdings, request, ids);
    }
    if machine.gpus.is_empty() {
        return Err(PlaceError::NoGpus {
            profile: request.profile.to_string(),
            count: request.count,
            root: root.to_string(),
        });
    }

    let free: Vec<&Gpu> = machine
        .gpus
        .iter()
        .filter(|g| fits(used_of(g), request.share))
        .collect();
    // Integrated GPUs are used only when there is nothing else: a job
    // asking for a GPU on a workstation means the discrete one.
    let discrete: Vec<&Gpu> = free.iter().copied().filter(|g| !g.integrated).collect();
    let pool = if discrete.len() as u32 >= request.count {
        discrete
    } else {
        free.clone()
    };
    if (pool.len() as u32) < request.count {
        return Err(PlaceError::NotEnough {
            profile: request.profile.to_string(),
            count: request.count,
            share: request.share,
            free: free.len() as u32,
            total,
            holders: holders(machine, holdings, |_| true),
        });
    }

    // Least shared first, then lowest index.
    let mut by_node: BTreeMap<Option<u32>, Vec<&Gpu>> = BTreeMap::new();
    for g in pool {
        by_node.entry(g.numa_node).or_default().push(g);
    }
    for gpus in by_node.values_mut() {
        gpus.sort_by_key(|g| (used_of(g), g.index));
    }
    let n = request.count as usize;
    let cost = |gpus: &[&Gpu]| gpus.iter().map(|g| used_of(g)).sum::<u32>();
    // One node that can hold them all: the one whose best GPUs are least
    // shared, then the lowest node.
    let single = by_node
        .values()
        .filter(|gpus| gpus.len() >= n)
        .min_by_key(|gpus| cost(&gpus[..n]));
    let mut chosen: Vec<&Gpu> = match single {
        Some(gpus) => gpus[..n].to_vec(),
        None => {
            // Spread over as few nodes as possible: fullest nodes first.
            let mut nodes: Vec<&Vec<&Gpu>> = by_node.values().collect();
            nodes.sort_by_key(|gpus| std::cmp::Reverse(gpus.len()));
            nodes.into_iter().flatten().copied().take(n).collect()
        }
    };
    chosen.sort_by_key(|g| g.index);
    Ok(chosen)
}

fn by_ids<'m>(
    machine: &'m Machine,
    holdings: &[Holding],
    request: &Request<'_>,
    ids: &[GpuSelector],
) -> Result<Vec<&'m Gpu>, PlaceError> {
    let used = used(holdings);
    let mut chosen: Vec<&Gpu> = Vec::new();
    for id in ids {
        let gpu =
            machine
                .gpus
                .iter()
                .find(|g| id.matches(g))
                .ok_or_else(|| PlaceError::UnknownId {
                    id: id.to_string(),
                    total: machine.gpus.len() as u32,
                })?;
        if chosen.iter().any(|c| c.bus_id == gpu.bus_id) {
            return Err(PlaceError::Duplicate { index: gpu.index });
        }
        let held = used.get(gpu.bus_id.as_str()).copied().unwrap_or(0);
        if !fits(held, request.share) {
            return Err(PlaceError::Taken {
                profile: request.profile.to_string(),
                index: gpu.index,
                free: WHOLE.saturating_sub(held),
                share: request.share,
                holders: holders(machine, holdings, |bus| bus == gpu.bus_id),
            });
        }
        chosen.push(gpu);
    }
    chosen.sort_by_key(|g| g.index);
    Ok(chosen)
}

/// Who holds which GPUs, profile by profile, for the GPUs `select` keeps.
fn holders(machine: &Machine, holdings: &[Holding], select: impl Fn(&str) -> bool) -> Holders {
    let mut by_profile: BTreeMap<(&str, u8), BTreeSet<u32>> = BTreeMap::new();
    for h in holdings.iter().filter(|h| select(&h.bus_id)) {
        let index = machine.by_bus_id(&h.bus_id).map_or(u32::MAX, |g| g.index);
        by_profile
            .entry((h.profile.as_str(), h.share))
            .or_default()
            .insert(index);
    }
    Holders(
        by_profile
            .into_iter()
            .map(|((p, share), gpus)| (p.to_string(), gpus.into_iter().collect(), share))
            .collect(),
    )
}

/// The CPUs and memory nodes a profile with GPUs is pinned to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// `cpuset.cpus`.
    pub cpus: CpuSet,
    /// `cpuset.mems`: the NUMA nodes of the GPUs.
    pub mems: Option<CpuSet>,
}

/// CPUs local to `gpus`, as many as the quota has cores (rounded up; all
/// local CPUs for no quota), preferring CPUs no other profile is pinned
/// to, lowest first, which on Linux's usual numbering puts one thread
/// per physical core before their siblings. `None` when the GPUs have no
/// known local CPUs.
pub fn near(gpus: &[&Gpu], cpu: Limit<CpuQuota>, pinned_elsewhere: &CpuSet) -> Option<Placement> {
    let local: BTreeSet<u32> = gpus.iter().flat_map(|g| g.local_cpus.iter()).collect();
    if local.is_empty() {
        return None;
    }
    let want = match cpu {
        Limit::Max => local.len(),
        Limit::Value(q) => q.usec().div_ceil(CPU_PERIOD_USEC) as usize,
    }
    .clamp(1, local.len());
    let (free, busy): (Vec<u32>, Vec<u32>) = local
        .into_iter()
        .partition(|c| !pinned_elsewhere.contains(*c));
    let cpus: CpuSet = free.into_iter().chain(busy).take(want).collect();
    let nodes: BTreeSet<u32> = gpus.iter().filter_map(|g| g.numa_node).collect();
    Some(Placement {
        cpus,
        mems: (!nodes.is_empty()).then(|| nodes.into_iter().collect()),
    })
}

#[cfg(test)]
mod tests;

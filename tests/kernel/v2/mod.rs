//! Tests for a cgroup v2 host with no manager: the fs driver at work.

mod apply;
mod create;
mod delete;
mod devices;
mod enforce;
mod gpus;
mod ops;
mod user;

use crate::support::{assert_lists, require_vm, CGROUP_ROOT};

#[test]
#[ignore = "needs a real cgroup v2 kernel: run with cargo xtask vm-test"]
fn kernel_offers_the_controllers_profiles_use() {
    require_vm();
    assert_lists(
        std::path::Path::new(CGROUP_ROOT).join("cgroup.controllers"),
        &["cpuset", "cpu", "io", "memory", "pids"],
    );
}

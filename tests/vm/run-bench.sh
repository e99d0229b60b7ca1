#!/bin/sh
# The benchmark's stand-in for run-tests.sh (`cargo xtask bench --vm`
# installs it as /tests/run-tests.sh): runs the in-VM driver for one mode
# and writes its result lines to ttyS1 between the same marker lines.
# The number of runs comes from the kernel command line (cortex.bench_runs=).

mode="$1"
exec >/dev/ttyS1 2>&1

runs=$(sed -n 's/.*cortex\.bench_runs=\([0-9]*\).*/\1/p' /proc/cmdline)
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
export HOME=/root
cd /tmp || exit 1

echo "@@cortex-vm begin uptime=$(cut -d' ' -f1 /proc/uptime)"
/tests/vm-helper vm-bench "$mode" "${runs:-100}"
rc=$?
echo "@@cortex-vm end rc=$rc uptime=$(cut -d' ' -f1 /proc/uptime)"

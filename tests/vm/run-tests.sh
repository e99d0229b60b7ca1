#!/bin/sh
# Runs the real-kernel tests for one mode (plain, hybrid or systemd) and
# writes the harness output to ttyS1, between marker lines the xtask reads:
#   @@cortex-vm begin uptime=SECONDS
#   @@cortex-vm end rc=STATUS uptime=SECONDS
# Kernel messages stay on the console (ttyS0), apart from the results.

mode="$1"
exec >/dev/ttyS1 2>&1

case "$mode" in
plain) filters="v2::" ;;
hybrid) filters="hybrid::" ;;
systemd) filters="systemd::" ;;
*) filters="no-such-mode" ;;
esac

export CORTEX_BIN=/tests/cortex
export CORTEX_VM_HELPER=/tests/vm-helper
export CORTEX_VM_MODE="$mode"
export RUST_BACKTRACE=1
export HOME=/root
cd /tmp || exit 1

echo "@@cortex-vm begin uptime=$(cut -d' ' -f1 /proc/uptime)"
# --show-output keeps what passing tests print (measurements) in the log.
# shellcheck disable=SC2086 # the filters are words on purpose
/tests/kernel-tests --ignored --test-threads=1 --show-output $filters
rc=$?
echo "@@cortex-vm end rc=$rc uptime=$(cut -d' ' -f1 /proc/uptime)"

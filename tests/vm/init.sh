#!/bin/busybox sh
# PID 1 of the busybox VM image. Mounts the kernel file systems, lays out
# cgroups for the mode named on the kernel command line (cortex.mode=), runs
# the tests and powers off. The results go to ttyS1; see run-tests.sh.

/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs -o mode=1777 tmpfs /tmp
exec </dev/console >/dev/console 2>&1

mode=$(sed -n 's/.*cortex\.mode=\([a-z]*\).*/\1/p' /proc/cmdline)
case "$mode" in
plain)
    mount -t cgroup2 cgroup2 /sys/fs/cgroup
    ;;
hybrid)
    # The layout of a host still on cgroup v1: every controller the kernel
    # has on a v1 hierarchy of its own, and a cgroup2 at unified/ that is
    # left with no controllers.
    mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup
    for controller in $(sed -n '2,$s/[[:space:]].*//p' /proc/cgroups); do
        mkdir /sys/fs/cgroup/$controller
        mount -t cgroup -o $controller cgroup /sys/fs/cgroup/$controller
    done
    mkdir /sys/fs/cgroup/unified
    mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified
    ;;
*)
    echo "init: unknown cortex.mode '$mode'"
    ;;
esac

/tests/run-tests.sh "$mode"

# Let the serial ports drain before the power goes.
sync
sleep 0.3
poweroff -f

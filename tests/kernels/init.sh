#!/bin/sh
# /init of the guests tests/kernels.rs boots: mounts what the exporter and
# the tests need, loads the modules the initramfs carries, runs
# /scenario.sh, and powers off. The report goes to fd 3, in sections:
# "@@begin NAME", the output, "@@end NAME STATUS SECONDS". Its device is the
# second serial port, or the one the kernel's command line names (report=,
# which the kernel passes on in the environment): arm64's virt machine has
# one UART, so there it is a virtio console, whose modules come first.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t bpf bpf /sys/fs/bpf
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
for m in /lib/modules/report/*.ko; do
    [ -e "$m" ] && insmod "$m"
done
report=${report:-/dev/ttyS1}
# A virtio console's device node appears once its port is set up, which the
# driver does after the module is loaded: under TCG on a busy host, that took
# more than 10 s (arm64, 6.1). The host's own deadline bounds the whole boot.
i=0
while [ ! -e "$report" ] && [ $i -lt 900 ]; do
    usleep 100000
    i=$((i + 1))
done
if [ ! -e "$report" ]; then
    echo "init: no report device $report after $((i / 10)) s" >&2
    poweroff -f
fi
exec 3>"$report"

# This busybox's shell runs its own applets before looking at PATH: these
# two are iproute2's (busybox's ip has no netns, its tc no clsact).
ip() { /usr/sbin/ip "$@"; }
tc() { /usr/sbin/tc "$@"; }

# section NAME COMMAND...: the command's output, exit status and duration in
# seconds (of the guest's clock), as a section.
section() {
    local name=$1 status start
    shift
    start=$(cut -d' ' -f1 /proc/uptime)
    echo "@@begin $name" >&3
    "$@" >&3 2>&1
    status=$?
    echo "@@end $name $status $(awk -v s="$start" '{ printf "%.1f", $1 - s }' /proc/uptime)" >&3
    return $status
}

# every_module: insmod each module the initramfs carries (none depends on another).
every_module() {
    for m in /lib/modules/*.ko; do
        [ -e "$m" ] || continue
        insmod "$m" || return 1
    done
}

section kernel uname -r
section modules every_module
/bin/ip link set lo up
cd /tmp || exit 1
. /scenario.sh
sync
poweroff -f

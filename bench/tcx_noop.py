#!/usr/bin/python3
"""Attach bench/noop.bpf.c to an interface's TCX ingress and egress hooks.

    ip netns exec NS /usr/bin/python3 bench/tcx_noop.py noop.bpf.o IFACE

Same attach API as the exporter (BPF_LINK_CREATE with BPF_TCX_INGRESS /
BPF_TCX_EGRESS), so the no-op variant pays exactly the hook cost the exporter
pays and nothing of the legacy clsact/cls_bpf path. Debian's bpftool 7.1 and
tc 6.1 cannot create TCX links, so this calls Debian's libbpf.so.1 through
ctypes. Prints "attached <prog ids>" and holds the links until stdin closes
or a signal arrives; the kernel detaches TCX links when their fds close, even
if this process is killed.
"""
import ctypes
import os
import signal
import socket
import sys

BPF_TCX_INGRESS = 46
BPF_TCX_EGRESS = 47


def main() -> int:
    obj_path, ifname = sys.argv[1], sys.argv[2]
    lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
    lib.bpf_object__open_file.restype = ctypes.c_void_p
    lib.bpf_object__open_file.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    lib.libbpf_get_error.argtypes = [ctypes.c_void_p]
    lib.libbpf_get_error.restype = ctypes.c_long
    lib.bpf_object__load.argtypes = [ctypes.c_void_p]
    lib.bpf_object__find_program_by_name.restype = ctypes.c_void_p
    lib.bpf_object__find_program_by_name.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.bpf_program__fd.argtypes = [ctypes.c_void_p]
    lib.bpf_link_create.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]

    obj = lib.bpf_object__open_file(obj_path.encode(), None)
    if not obj or lib.libbpf_get_error(obj):
        print(f"tcx_noop: cannot open {obj_path}", file=sys.stderr)
        return 1
    if lib.bpf_object__load(obj) != 0:
        print(f"tcx_noop: loading {obj_path} failed", file=sys.stderr)
        return 1
    ifindex = socket.if_nametoindex(ifname)
    links, ids = [], []
    for name, attach_type in ((b"noop_ingress", BPF_TCX_INGRESS), (b"noop_egress", BPF_TCX_EGRESS)):
        prog = lib.bpf_object__find_program_by_name(obj, name)
        prog_fd = lib.bpf_program__fd(prog)
        fd = lib.bpf_link_create(prog_fd, ifindex, attach_type, None)
        if fd < 0:
            print(f"tcx_noop: TCX attach of {name.decode()} to {ifname}: {os.strerror(-fd)}", file=sys.stderr)
            return 1
        links.append(fd)
        with open(f"/proc/self/fdinfo/{fd}") as f:
            ids += [line.split()[1] for line in f if line.startswith("prog_id:")]
    print("attached", " ".join(ids), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        sys.stdin.read()  # until the harness closes our stdin
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

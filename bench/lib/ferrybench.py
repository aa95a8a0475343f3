# SPDX-License-Identifier: MIT
"""What ferry's Python benches share (bench/migrate/run, bench/postcopy/run).

Pairs of ferryd on this host over loopback ("a" and "b" by default, or
other node names, one pair per fabric provider; each ferryd with its own
config, keys and state directory under one temporary directory), or over
a Link (two network namespaces joined by a veth pair shaped to a set rate),
the `ferry` CLI against any of them (over their unix control sockets, so
from the root namespace too), a source `ferry-vm` on a pair's source node
with the accelerator asked for (opt.accel), its RAM copied to a file QEMU
can map (the same bytes for both), and the clean-up: every process, file
and namespace goes on exit, also on SIGINT/SIGTERM/SIGHUP if the script
turns those into Interrupted.

Python 3 standard library only.
"""

import ctypes
import hashlib
import json
import mmap
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

MiB = 1 << 20
GiB = 1 << 30
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
QEMU_MIGRATE = os.path.join(ROOT, "bench", "qemu", "qemu-migrate")
PR_SET_PDEATHSIG = 1
SAMPLE = MiB  # bytes per sampled chunk of the same-bytes check
SHMEM_THP = "/sys/kernel/mm/transparent_hugepage/shmem_enabled"
NETNS_DIR = "/run/netns"
NS_PREFIX = "ferryb-"  # tests/integration/netns.c's hosts are ferryt-
LINK_PORT = 7411       # ferryd's listen port on a Link (namespaces are new)

_name = ["bench"]


class BenchError(Exception):
    """A failure with a message meant for the user."""


class Interrupted(BenchError):
    pass


def set_name(name):
    """The prefix of log lines: the bench's name."""
    _name[0] = name


def log(msg):
    print(_name[0] + ": " + msg, file=sys.stderr, flush=True)


def shmem_thp():
    """The selected shmem THP mode ("never" by default here), or "?"."""
    try:
        with open(SHMEM_THP) as f:
            words = f.read().split()
    except OSError:
        return "?"
    return next((w[1:-1] for w in words if w.startswith("[")), "?")


def set_shmem_thp(mode):
    with open(SHMEM_THP, "w") as f:
        f.write(mode)


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def cpu_s(pid):
    """User + system CPU seconds of process pid, all its threads."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_times():
    """(busy, total) jiffies of all CPUs since boot (/proc/stat); the
    busy share of a span is the difference of two readings."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
    return sum(v) - idle, sum(v)


def mem_available():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def fmt_bytes(n):
    for unit, div in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if n >= div:
            return "%.1f %s" % (n / div, unit)
    return "%d B" % n


_libc = ctypes.CDLL(None, use_errno=True)


MADV_POPULATE_WRITE = 23


def warm_memory(size):
    """Touch size bytes of fresh anonymous memory, then free it.

    On this machine (a VM whose balloon takes back free memory: free page
    reporting) a page the guest kernel has not used lately costs a fault
    in the hypervisor on first touch, 4-5x a warm page; freed pages stay
    warm for a few seconds.  Whichever engine ran first after a VM boot
    got cold pages and took 2-3x longer, so every run is preceded by this:
    each destination then allocates warm pages, as on a bare-metal host.
    """
    buf = mmap.mmap(-1, size, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        c = ctypes.c_char.from_buffer(buf)
        if _libc.madvise(ctypes.c_void_p(ctypes.addressof(c)),
                         ctypes.c_size_t(size), MADV_POPULATE_WRITE):
            for off in range(0, size, 4096):  # an old kernel
                buf[off] = 1
        del c
    finally:
        buf.close()


def alloc_floor(size, threads=2):
    """Seconds to allocate size bytes of a fresh memfd, with the machine's
    CPUs faulting it in in parallel (MADV_POPULATE_WRITE, halves).

    No data moves: it is what any destination writing into fresh shared
    memory pays at least, here, now; ctypes drops the GIL in madvise.
    """
    fd = os.memfd_create("ferry-bench-floor", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, size)
        buf = mmap.mmap(fd, size, mmap.MAP_SHARED)
        c = ctypes.c_char.from_buffer(buf)
        base = ctypes.addressof(c)
        part = size // threads // 4096 * 4096
        errs = []

        def one(i):
            n = size - i * part if i == threads - 1 else part
            if _libc.madvise(ctypes.c_void_p(base + i * part),
                             ctypes.c_size_t(n), MADV_POPULATE_WRITE):
                errs.append(ctypes.get_errno())
        ts = [threading.Thread(target=one, args=(i,))
              for i in range(threads)]
        t0 = time.monotonic()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        dt = time.monotonic() - t0
        del c
        buf.close()
    finally:
        os.close(fd)
    if errs:
        raise BenchError("MADV_POPULATE_WRITE: %s" % os.strerror(errs[0]))
    return dt


def die_with_parent():
    # Children die with the bench even if it is SIGKILLed.
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def free_ports(n):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def proc_gone(pid):
    """True when pid has exited (gone or a zombie: its memory is freed)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True


def stop_pid(pid, timeout=5.0):
    """SIGTERM, then SIGKILL after timeout; wait up to timeout for each."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        t = time.monotonic() + timeout
        while not proc_gone(pid) and time.monotonic() < t:
            time.sleep(0.02)
        if proc_gone(pid):
            return


def run_tool(*argv):
    """Run an ip or tc command; BenchError with its output if it fails."""
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode:
        raise BenchError("`%s` failed (%d): %s" %
                         (" ".join(argv), r.returncode,
                          r.stdout.decode(errors="replace").strip()))


def kill_in_netns(ino):
    """Stop every process whose network namespace is inode ino."""
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            if os.stat("/proc/%s/ns/net" % d).st_ino != ino:
                continue
        except OSError:
            continue
        stop_pid(int(d))


def remove_stale_netns():
    """Delete the names of the namespaces of a bench that died without
    cleaning up (ferryb-PID-*, PID gone): what ran in them died with it
    (PR_SET_PDEATHSIG), and the kernel frees a namespace nothing uses."""
    try:
        names = os.listdir(NETNS_DIR)
    except OSError:
        return
    for n in names:
        pid = n[len(NS_PREFIX):].split("-")[0]
        if not n.startswith(NS_PREFIX) or not pid.isdigit():
            continue
        if int(pid) == os.getpid() or os.path.exists("/proc/" + pid):
            continue
        log("removing stale namespace %s" % n)
        subprocess.run(["ip", "netns", "del", n], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)


# The receiving end of Link.measure(): bytes and seconds from the first
# byte to EOF.
_RECEIVER = """import socket, sys, time
s = socket.socket()
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
print("ready", flush=True)
c, _ = s.accept()
n, t0 = 0, None
while True:
    b = c.recv(1 << 20)
    if not b:
        break
    if t0 is None:
        t0 = time.monotonic()
    n += len(b)
print(n, time.monotonic() - (t0 or time.monotonic()), flush=True)
"""
_SENDER = """import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
b, t = bytes(1 << 20), time.monotonic() + float(sys.argv[3])
while time.monotonic() < t:
    s.sendall(b)
s.close()
"""


class Link:
    """Two network namespaces joined by a veth pair shaped to rate_bps: a
    link with a defined rate, for ferryd or QEMU on each side.

    tests/integration/netns.c's layout (names, addresses, htb), without
    its hub and bridge, K = 1 + pid % 254:

      ferryb-PID-h0: eth0 10.222.K.1 <-veth-> eth0 10.222.K.2 :ferryb-PID-h1

    Both ends' egress carry an htb class of rate = ceil = rate_bps
    (quantum 60000, as netns.c), so both directions are limited. Needs
    root. close() stops what is left in the namespaces and deletes them;
    the namespaces of a bench that was SIGKILLed are deleted when the next
    one starts (remove_stale_netns()).
    """

    def __init__(self, rate_bps):
        if os.geteuid():
            raise BenchError("a shaped link needs root (network "
                             "namespaces, veth, tc)")
        for tool in ("ip", "tc"):
            if not shutil.which(tool):
                raise BenchError("%s not found (apt-get install iproute2)" %
                                 tool)
        remove_stale_netns()
        self.rate_bps = rate_bps
        k = 1 + os.getpid() % 254
        self.ns = ["%s%d-h%d" % (NS_PREFIX, os.getpid(), i) for i in (0, 1)]
        self.addrs = ["10.222.%d.%d" % (k, i + 1) for i in (0, 1)]
        self.made, self.ino = [], []
        try:
            for ns in self.ns:
                run_tool("ip", "netns", "add", ns)
                self.made.append(ns)
                self.ino.append(os.stat(os.path.join(NETNS_DIR, ns)).st_ino)
            # born in h0, its far end goes straight into h1
            run_tool("ip", "-n", self.ns[0], "link", "add", "eth0", "type",
                     "veth", "peer", "name", "eth0", "netns", self.ns[1])
            for ns, addr in zip(self.ns, self.addrs):
                run_tool("ip", "-n", ns, "addr", "add", addr + "/24", "dev",
                         "eth0")
                run_tool("ip", "-n", ns, "link", "set", "eth0", "up")
                run_tool("ip", "-n", ns, "link", "set", "lo", "up")
                run_tool("tc", "-n", ns, "qdisc", "add", "dev", "eth0",
                         "root", "handle", "1:", "htb", "default", "1")
                run_tool("tc", "-n", ns, "class", "add", "dev", "eth0",
                         "parent", "1:", "classid", "1:1", "htb", "rate",
                         "%dbit" % rate_bps, "ceil", "%dbit" % rate_bps,
                         "quantum", "60000")
        except BaseException:
            self.close()
            raise
        log("link %s (%s) <-> %s (%s), htb %s bit/s each way" %
            (self.ns[0], self.addrs[0], self.ns[1], self.addrs[1],
             format(rate_bps, ",")))

    def exec_argv(self, i):
        """The prefix that runs a command in namespace i."""
        return ["ip", "netns", "exec", self.ns[i]]

    def measure(self, seconds=2.0):
        """Bytes/s one TCP stream gets from namespace 0 to namespace 1."""
        rx = subprocess.Popen(
            self.exec_argv(1) + [sys.executable, "-c", _RECEIVER,
                                 self.addrs[1], str(LINK_PORT + 1)],
            stdout=subprocess.PIPE, preexec_fn=die_with_parent)
        try:
            rx.stdout.readline()
            subprocess.run(self.exec_argv(0) + [
                sys.executable, "-c", _SENDER, self.addrs[1],
                str(LINK_PORT + 1), str(seconds)], check=True,
                timeout=seconds + 30, preexec_fn=die_with_parent)
            n, dt = rx.communicate(timeout=30)[0].split()
        except (subprocess.SubprocessError, ValueError) as e:
            raise BenchError("cannot send over the link %s -> %s: %s" %
                             (self.ns[0], self.ns[1], e))
        finally:
            if rx.poll() is None:
                rx.kill()
                rx.wait()
        return int(n) / float(dt)

    def close(self):
        for ino in self.ino:
            kill_in_netns(ino)
        for ns in self.made:
            subprocess.run(["ip", "netns", "del", ns],
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        self.made, self.ino = [], []


def htb(ns, dev, rate_bps):
    """An htb class of rate = ceil = rate_bps on dev's egress in ns
    (quantum 60000, as netns.c); rate_bps 0: nothing."""
    if not rate_bps:
        return
    run_tool("tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "handle",
             "1:", "htb", "default", "1")
    run_tool("tc", "-n", ns, "class", "add", "dev", dev, "parent", "1:",
             "classid", "1:1", "htb", "rate", "%dbit" % rate_bps, "ceil",
             "%dbit" % rate_bps, "quantum", "60000")


class Hub:
    """n hosts (network namespaces) joined by veth links to a bridge in a
    hub namespace: tests/integration/netns.c's layout, K = 1 + pid % 254:

      ferryb-PID-h0: eth0 10.222.K.1 <-veth-> p0 -+- br0 (ferryb-PID-hub)
      ferryb-PID-h1: eth0 10.222.K.2 <-veth-> p1 -+
      ...

    Each host's egress (its eth0, host to hub) is shaped with htb to
    out_bps, its ingress (the hub's pI, hub to host) to in_bps (0: not
    shaped). Needs root; close() as Link's.
    """

    def __init__(self, n, out_bps, in_bps):
        if os.geteuid():
            raise BenchError("shaped links need root (network namespaces, "
                             "veth, tc)")
        for tool in ("ip", "tc"):
            if not shutil.which(tool):
                raise BenchError("%s not found (apt-get install iproute2)" %
                                 tool)
        remove_stale_netns()
        self.out_bps, self.in_bps = out_bps, in_bps
        k = 1 + os.getpid() % 254
        pre = "%s%d-" % (NS_PREFIX, os.getpid())
        self.hub = pre + "hub"
        self.ns = ["%sh%d" % (pre, i) for i in range(n)]
        self.addrs = ["10.222.%d.%d" % (k, i + 1) for i in range(n)]
        self.made, self.ino = [], []
        try:
            for ns in [self.hub] + self.ns:
                run_tool("ip", "netns", "add", ns)
                self.made.append(ns)
                self.ino.append(os.stat(os.path.join(NETNS_DIR, ns)).st_ino)
                run_tool("ip", "-n", ns, "link", "set", "lo", "up")
            run_tool("ip", "-n", self.hub, "link", "add", "br0", "type",
                     "bridge", "stp_state", "0", "forward_delay", "0")
            run_tool("ip", "-n", self.hub, "link", "set", "br0", "up")
            for i, (ns, addr) in enumerate(zip(self.ns, self.addrs)):
                port = "p%d" % i
                # born in the hub, its far end goes straight into the host
                run_tool("ip", "-n", self.hub, "link", "add", port, "type",
                         "veth", "peer", "name", "eth0", "netns", ns)
                run_tool("ip", "-n", self.hub, "link", "set", port,
                         "master", "br0", "up")
                run_tool("ip", "-n", ns, "addr", "add", addr + "/24", "dev",
                         "eth0")
                run_tool("ip", "-n", ns, "link", "set", "eth0", "up")
                htb(ns, "eth0", out_bps)
                htb(self.hub, port, in_bps)
        except BaseException:
            self.close()
            raise
        log("%d hosts %s..%s on a bridge; each host's link: htb %s bit/s "
            "out, %s in" %
            (n, self.addrs[0], self.addrs[-1], format(out_bps, ","),
             "%s bit/s" % format(in_bps, ",") if in_bps else "not shaped"))

    def exec_argv(self, i):
        """The prefix that runs a command in host i."""
        return ["ip", "netns", "exec", self.ns[i]]

    def measure(self, pairs, seconds=2.0):
        """Bytes/s of one TCP stream per (from, to) pair of host indices,
        all at once: a list in the order of pairs."""
        rxs = []
        try:
            for n, (_, j) in enumerate(pairs):
                rx = subprocess.Popen(
                    self.exec_argv(j) + [sys.executable, "-c", _RECEIVER,
                                         self.addrs[j],
                                         str(LINK_PORT + 1 + n)],
                    stdout=subprocess.PIPE, preexec_fn=die_with_parent)
                rxs.append(rx)
                rx.stdout.readline()
            txs = [subprocess.Popen(
                self.exec_argv(i) + [sys.executable, "-c", _SENDER,
                                     self.addrs[j], str(LINK_PORT + 1 + n),
                                     str(seconds)],
                preexec_fn=die_with_parent)
                for n, (i, j) in enumerate(pairs)]
            for tx in txs:
                if tx.wait(timeout=seconds + 30):
                    raise BenchError("a sender failed")
            res = []
            for rx in rxs:
                n, dt = rx.communicate(timeout=30)[0].split()
                res.append(int(n) / float(dt))
            return res
        except (subprocess.SubprocessError, ValueError) as e:
            raise BenchError("cannot send between the hosts: %s" % e)
        finally:
            for rx in rxs:
                if rx.poll() is None:
                    rx.kill()
                    rx.wait()

    def close(self):
        for ino in self.ino:
            kill_in_netns(ino)
        for ns in self.made:
            subprocess.run(["ip", "netns", "del", ns],
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        self.made, self.ino = [], []


def ensure_build(build, rebuild, extra=()):
    """ferryd, ferry and ferry-vm of BUILD (relative to the tree, or
    absolute), and the paths of the extra targets asked for.

    A missing build directory is configured from this tree; the binaries
    are built when missing, or always with rebuild.  Not rebuilding by
    default keeps a run on the binaries one chose: other people may be
    editing the tree (build from `git archive HEAD` for committed code).
    """
    bdir = os.path.join(ROOT, build)
    targets = ["node/ferryd", "cli/ferry", "kvm-adapter/ferry-vm"] + \
        list(extra)
    bins = [os.path.join(bdir, t) for t in targets]
    if not os.path.isfile(os.path.join(bdir, "build.ninja")):
        log("configuring %s" % bdir)
        subprocess.run(["meson", "setup", bdir], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
    if rebuild or not all(os.access(b, os.X_OK) for b in bins):
        log("building %s in %s" % (" ".join(targets), bdir))
        r = subprocess.run(["ninja", "-C", bdir] + targets,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode:
            raise BenchError("building in %s failed:\n%s" %
                             (bdir, r.stdout.decode()[-2000:]))
    return bins


class Peers:
    """Pairs of ferryd (a, b by default) and the source VMs on them, in
    one temporary dir.

    opt needs build, rebuild, keep and accel, and provider for
    start_daemons().
    close() stops everything this object started and removes its files.
    """

    def __init__(self, opt, prefix, extra_targets=()):
        self.opt = opt
        bins = ensure_build(opt.build, opt.rebuild, extra_targets)
        self.ferryd, self.ferry, self.ferry_vm = bins[:3]
        self.extra_bins = bins[3:]
        self.tmp = tempfile.mkdtemp(prefix=prefix)
        self.daemons = {}      # node -> Popen
        self.vms = []          # our source ferry-vm Popens
        self.mem_file = None   # the RAM copy QEMU uses, in /dev/shm
        self.seq = 0
        self.accel = None      # what the source VMs ran with (accel_of())

    # ------------------------------------------------------------ teardown

    def close(self):
        for p in self.vms:
            if p.poll() is None:
                stop_pid(p.pid)
                p.wait()
        # Incoming ferry-vms were started by a destination ferryd in their
        # own session and outlive it by design: find them by our temporary
        # directory, which is in their --adapter path, and stop them.
        for pid in self.our_processes():
            stop_pid(pid)
        for p in self.daemons.values():
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.drop_mem_file()
        if self.opt.keep:
            log("kept %s" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def drop_mem_file(self):
        if self.mem_file and os.path.exists(self.mem_file):
            os.unlink(self.mem_file)
        self.mem_file = None

    def our_processes(self):
        pids = []
        me = self.tmp.encode()
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % d, "rb") as f:
                    cmd = f.read()
            except OSError:
                continue
            if me in cmd and cmd.split(b"\0")[0].endswith(b"ferry-vm"):
                pids.append(int(d))
        return pids

    # ------------------------------------------------------------- daemons

    def ferry_cmd(self, node, *args, timeout=30, check=True):
        r = subprocess.run([self.ferry, "-c", self.conf(node), "--json"] +
                           list(args), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout)
        if check and r.returncode:
            raise BenchError("ferry %s on %s failed (%d): %s%s" %
                             (" ".join(args), node, r.returncode,
                              r.stdout.decode(errors="replace"),
                              r.stderr.decode(errors="replace")))
        return r

    def ferry_argv(self, node, *args):
        """The argv of a ferry command, for callers that Popen it."""
        return [self.ferry, "-c", self.conf(node), "--json"] + list(args)

    def conf(self, node):
        return os.path.join(self.tmp, node + ".conf")

    def start_daemons(self):
        """The pair a, b with opt.provider."""
        self.start_pair(self.opt.provider)

    def start_pair(self, provider, src="a", dst="b", link=None):
        """Two ferryd, src and dst, peers of each other with [fabric]
        provider; returns once each sees the other reachable.

        With a Link, src runs in its first namespace and dst in its second,
        each listening (and its fabric bound) on its veth address.
        """
        self.start_nodes(provider, (src, dst), link)

    def start_nodes(self, provider, nodes, net=None):
        """ferryd for each of nodes, every one a peer of every other with
        [fabric] provider; returns once each sees all others reachable.

        With net (a Link or a Hub), node i runs in its namespace i,
        listening (and its fabric bound) on its address; else all on
        loopback.
        """
        if net:
            addrs = dict(zip(nodes, net.addrs))
            ports = dict((n, LINK_PORT) for n in nodes)
        else:
            addrs = dict((n, "127.0.0.1") for n in nodes)
            ports = dict(zip(nodes, free_ports(len(nodes))))
        keys = {}
        for node in nodes:
            os.mkdir(os.path.join(self.tmp, node), 0o700)
            with open(self.conf(node), "w") as f:
                f.write("[node]\nname = %s\nlisten = tcp://%s:%d\n"
                        "state_dir = %s/%s/state\ncontrol = %s/%s/run/"
                        "ferryd.sock\nferry_vm = %s\n%s\n[fabric]\n"
                        "provider = %s\naddress = %s\n" %
                        (node, addrs[node], ports[node], self.tmp, node,
                         self.tmp, node, self.ferry_vm,
                         # lines a bench adds to a node's [node] section
                         getattr(self, "node_conf", {}).get(node, ""),
                         provider, addrs[node]))
            keys[node] = subprocess.run(
                [self.ferryd, "--config", self.conf(node), "--genkey"],
                check=True, stdout=subprocess.PIPE).stdout.decode().strip()
        for node in nodes:
            with open(self.conf(node), "a") as f:
                for other in (o for o in nodes if o != node):
                    # the bench's peers are this machine: user VMs are fine
                    f.write("\n[peer %s]\naddress = tcp://%s:%d\n"
                            "public_key = %s\naccept_user_vms = true\n" %
                            (other, addrs[other], ports[other],
                             keys[other]))
        for i, node in enumerate(nodes):
            log_f = open(os.path.join(self.tmp, node + ".log"), "w")
            self.daemons[node] = subprocess.Popen(
                (net.exec_argv(i) if net else []) +
                [self.ferryd, "--config", self.conf(node)], stderr=log_f,
                stdout=subprocess.DEVNULL, preexec_fn=die_with_parent)
            log_f.close()
        deadline = time.monotonic() + 20
        want = ('"state":"reachable"').encode()
        while True:
            ok = 0
            for node in nodes:
                r = self.ferry_cmd(node, "peers", check=False)
                if r.returncode == 0 and \
                        r.stdout.count(want) == len(nodes) - 1:
                    ok += 1
            if ok == len(nodes):
                break
            for node in nodes:
                p = self.daemons[node]
                if p.poll() is not None:
                    raise BenchError("ferryd %s exited (%d), see %s.log" %
                                     (node, p.returncode, node))
            if time.monotonic() > deadline:
                raise BenchError("ferryd %s never all saw each other" %
                                 ", ".join(nodes))
            time.sleep(0.2)
        log("%s: ferryd %s see each other" %
            (provider, ", ".join("%s (pid %d)" % (n, self.daemons[n].pid)
                                 for n in nodes)))

    # ----------------------------------------------------------- a source VM

    def start_vm(self, size, content, guest="idle", node="a", extra=()):
        """A ferry-vm on node with --accel opt.accel (RAM prefilled from
        seed 1 for "random"; extra: more ferry-vm options); returns (name,
        Popen) once node's ferryd lists it."""
        self.seq += 1
        name = "g%d" % self.seq
        sock = os.path.join(self.tmp, node, "state", "vms", name + ".sock")
        cmd = [self.ferry_vm, "--mem", "%dM" % (size // MiB), "--guest",
               guest, "--accel", self.opt.accel, "--report", "0",
               "--adapter", sock] + [str(x) for x in extra]
        if content == "random":
            cmd += ["--prefill", "random", "--seed", "1"]
        log_f = open(os.path.join(self.tmp, name + ".log"), "w")
        p = subprocess.Popen(cmd, stderr=log_f, stdout=subprocess.DEVNULL,
                             preexec_fn=die_with_parent)
        log_f.close()
        self.vms.append(p)
        deadline = time.monotonic() + 60 + 10 * size / GiB
        while True:
            if p.poll() is not None:
                raise BenchError("ferry-vm %s exited (%d)" %
                                 (name, p.returncode))
            if os.path.exists(sock):
                r = self.ferry_cmd(node, "vms", check=False)
                if r.returncode == 0 and \
                        ('"name":"%s"' % name).encode() in r.stdout:
                    break
            if time.monotonic() > deadline:
                raise BenchError("ferryd %s never saw %s" % (node, name))
            time.sleep(0.05)
        return name, p

    def accel_of(self, node, name):
        """The accelerator VM name runs with ("accel" of `ferry vms`), or
        "?"; the first one seen is kept in self.accel for the report."""
        v = self.vm_info(node, name)
        a = (v or {}).get("accel") or "?"
        if self.accel is None and a != "?":
            self.accel = a
        return a

    def vm_info(self, node, name):
        """VM name's entry of `ferry vms` on node, or None."""
        r = self.ferry_cmd(node, "vms", check=False)
        if r.returncode:
            return None
        try:
            vms = json.loads(r.stdout.decode())
        except ValueError:
            return None
        return next((v for v in vms.get("vms", [])
                     if v.get("name") == name), None)

    def ram_fd_path(self, pid):
        d = "/proc/%d/fd" % pid
        for fd in os.listdir(d):
            try:
                if os.readlink(os.path.join(d, fd)).startswith(
                        "/memfd:ferry-vm-ram"):
                    return os.path.join(d, fd)
            except OSError:
                continue
        raise BenchError("no ferry-vm-ram memfd in %s" % d)

    def copy_ram(self, pid, size, prefix):
        """Copy the VM's RAM to a /dev/shm file, holes kept as holes.

        The file becomes self.mem_file.  Returns it and its data extents
        (offset, length).
        """
        fd_in = os.open(self.ram_fd_path(pid), os.O_RDONLY)
        try:
            if os.fstat(fd_in).st_size != size:
                raise BenchError("the RAM memfd is not %d bytes" % size)
            path = tempfile.mkstemp(prefix=prefix, dir="/dev/shm")[1]
            self.mem_file = path
            fd_out = os.open(path, os.O_WRONLY | os.O_TRUNC)
            extents = []
            try:
                os.ftruncate(fd_out, size)
                off = 0
                while off < size:
                    try:
                        data = os.lseek(fd_in, off, os.SEEK_DATA)
                    except OSError:  # ENXIO: no data after off
                        break
                    hole = os.lseek(fd_in, data, os.SEEK_HOLE)
                    extents.append((data, hole - data))
                    pos = data
                    while pos < hole:
                        n = min(8 * MiB, hole - pos)
                        buf = os.pread(fd_in, n, pos)
                        os.pwrite(fd_out, buf, pos)
                        pos += len(buf)
                    off = hole
            finally:
                os.close(fd_out)
        finally:
            os.close(fd_in)
        return path, extents

    def sample_hash(self, path, size):
        """blake2b of 32 chunks of 1 MiB spread over the RAM (cheap)."""
        h = hashlib.blake2b(digest_size=16)
        fd = os.open(path, os.O_RDONLY)
        try:
            for i in range(32):
                off = (size - SAMPLE) * i // 31 // 4096 * 4096
                h.update(os.pread(fd, SAMPLE, off))
        finally:
            os.close(fd)
        return h.hexdigest()

    def stop_incoming(self, name, node="b"):
        """Stop node's ferry-vm of name (the destination), so the next run
        starts with free memory."""
        r = self.ferry_cmd(node, "vms", check=False)
        try:
            vms = json.loads(r.stdout.decode())
        except ValueError:
            return
        for v in vms.get("vms", []):
            if v.get("name") == name and v.get("pid"):
                stop_pid(v["pid"])

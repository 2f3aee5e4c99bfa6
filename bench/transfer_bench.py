#!/usr/bin/env python3
"""bench/run transfer: cpn transfer against iperf3, on loopback and on an emulated WAN.

Loopback (no emulator): memory to memory (source and receiver root in
/dev/shm; every chunk verified) against iperf3 single stream; disk to disk
against this machine's sequential write rate (dd with fsync); CPU seconds per
GB of sender plus receiver for both.

WAN: east and west network namespaces joined through a router namespace whose
userspace emulator (scripts/wan/) gives 50 ms RTT and 1 Gbit/s (goodput
ceiling 956 Mbit/s at MTU 1500), at 0%, 0.1% and 1% per-packet loss. In each:
iperf3 single stream (cubic), iperf3 -P 8 (cubic), iperf3 single stream
(bbr), and `cpn transfer` of a 2 GB dataset, each as a ratio to the ceiling.
iperf3 runs for about as long as cpn needs for 2 GB at the ceiling (18 s)
and, like cpn's figure, counts from its first byte (no -O: slow start is
in both).

Needs root (network namespaces, NFQUEUE). Prints a table, then one JSON line.
Options: --quick (smaller datasets, shorter iperf3 runs, 0% and 1% loss
only), --wan-only, --loopback-only, --size-gb N.
"""
import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CEILING_MBIT = 1000 * 1448 / 1514  # TCP goodput at 1 Gbit/s, MTU 1500
PACKAGES = ["iperf3", "iputils-ping", "ethtool", "iptables", "libnetfilter-queue-dev",
            "libmnl-dev", "gcc"]


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, text=True, capture_output=True, **kw)


def ensure_packages():
    missing = [p for p in PACKAGES
               if subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], capture_output=True,
                                 text=True).stdout.find("install ok installed") < 0]
    if missing:
        print("installing " + " ".join(missing), file=sys.stderr)
        sh("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
           "--no-install-recommends " + " ".join(missing))


def proc_cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_s():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def make_file(path, gb):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    want = int(gb * (1 << 30))
    if os.path.exists(path) and os.path.getsize(path) == want:
        return
    # Random, so compression cannot help and checksums see real data.
    with open("/dev/urandom", "rb") as src, open(path, "wb") as out:
        left = want
        while left > 0:
            block = src.read(min(left, 16 << 20))
            out.write(block)
            left -= len(block)


def iperf(client_prefix, server_addr, seconds, parallel=1, cc="cubic", omit=0):
    out = subprocess.run(
        f"{client_prefix} iperf3 -c {server_addr} -t {seconds} -O {omit} -P {parallel} -C {cc} -J",
        shell=True, capture_output=True, text=True)
    try:
        j = json.loads(out.stdout)
        return j["end"]["sum_received"]["bits_per_second"] / 1e6
    except (ValueError, KeyError):
        print(out.stdout[-400:], out.stderr[-400:], file=sys.stderr)
        return 0.0


class Receiver:
    """cpn transfer serve, possibly inside a network namespace."""

    def __init__(self, cpn, root, address, port, netns=None):
        shutil.rmtree(root, ignore_errors=True)
        cmd = [cpn, "transfer", "serve", "--root", root, "--listen", address, "--port", str(port)]
        if netns:
            cmd = ["ip", "netns", "exec", netns] + cmd
        self.proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
        self.pid = self.proc.pid
        time.sleep(0.5)
        if netns:  # the cpn process is the child of `ip netns exec` (it execs, same pid)
            pass
        self.cpu0 = proc_cpu_s(self.pid)

    def cpu(self):
        return proc_cpu_s(self.pid) - self.cpu0

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def cpn_push(cpn, src, dst, netns=None, extra=""):
    cmd = f"{cpn} transfer {src} {dst} --json {extra}"
    if netns:
        cmd = f"ip netns exec {netns} {cmd}"
    c0 = children_cpu_s()
    out = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    cpu = children_cpu_s() - c0
    if out.returncode != 0:
        print(out.stdout, out.stderr, file=sys.stderr)
        return None, cpu
    j = json.loads(out.stdout.strip().splitlines()[-1])
    j["mbit_s"] = j["bytes_sent"] * 8 / 1e6 / j["data_seconds"] if j["data_seconds"] > 0 else 0
    return j, cpu


def loopback(cpn, gb, seconds):
    res = {}
    srv = subprocess.Popen(["iperf3", "-s", "-p", "5299"], stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    res["iperf3_single_mbit"] = iperf("", "127.0.0.1 -p 5299", seconds, omit=1)
    srv.terminate()
    srv.wait()

    # Three runs (rates on a shared 2-vCPU machine vary); the median counts.
    mem = "/dev/shm/cpn-transfer-bench"
    make_file(f"{mem}/src/data.bin", gb)
    runs = []
    for i in range(3):
        rx = Receiver(cpn, f"{mem}/root", "127.0.0.1", 7391)
        j, cpu = cpn_push(cpn, f"{mem}/src/data.bin", f"127.0.0.1:7391:mem{i}")
        rx_cpu = rx.cpu()
        rx.stop()
        shutil.rmtree(f"{mem}/root", ignore_errors=True)
        if j:
            runs.append((j["mbit_s"], j["streams"], (cpu + rx_cpu) / gb))
    shutil.rmtree(mem, ignore_errors=True)
    runs.sort()
    mid = runs[len(runs) // 2] if runs else (0, 0, 0)
    res["mem_to_mem_runs_mbit"] = [r[0] for r in runs]
    res["mem_to_mem_mbit"] = mid[0]
    res["mem_to_mem_streams"] = mid[1]
    res["mem_to_mem_cpu_s_per_gb"] = mid[2]
    res["mem_vs_iperf3"] = res["mem_to_mem_mbit"] / max(1e-9, res["iperf3_single_mbit"])

    disk = os.path.join(ROOT, "build-bench", "transfer-bench")
    make_file(f"{disk}/src/data.bin", gb)
    dd = subprocess.run(f"dd if=/dev/zero of={disk}/dd.bin bs=4M count={int(gb * 256)} "
                        "conv=fsync 2>&1 | tail -1", shell=True, capture_output=True, text=True)
    os.remove(f"{disk}/dd.bin")
    # "... copied, 1.23 s, 873 MB/s"
    try:
        secs = float(dd.stdout.split(",")[-2].split()[0])
        res["dd_fsync_mbit"] = gb * (1 << 30) * 8 / 1e6 / secs
    except (IndexError, ValueError):
        res["dd_fsync_mbit"] = 0
    rx = Receiver(cpn, f"{disk}/root", "127.0.0.1", 7392)
    t0 = time.time()
    j, cpu = cpn_push(cpn, f"{disk}/src/data.bin", "127.0.0.1:7392:disk")
    wall = time.time() - t0
    rx_cpu = rx.cpu()
    rx.stop()
    shutil.rmtree(disk, ignore_errors=True)
    res["disk_to_disk_mbit"] = j["mbit_s"] if j else 0
    # Including the receiver's final digest check, fsync and rename.
    res["disk_to_disk_end_to_end_mbit"] = (j["bytes_sent"] * 8 / 1e6 / j["seconds"]) if j else 0
    res["disk_to_disk_cpu_s_per_gb"] = (cpu + rx_cpu) / gb
    res["disk_vs_dd"] = res["disk_to_disk_end_to_end_mbit"] / max(1e-9, res["dd_fsync_mbit"])
    res["disk_wall_s"] = wall
    return res


def wan(cpn, gb, seconds, losses):
    wandir = os.path.join(ROOT, "scripts", "wan")
    src = os.path.join(ROOT, "build-bench", "transfer-bench-wan", "data.bin")
    make_file(src, gb)
    rows = []
    try:
        for loss in losses:
            sh(f"WAN_VERIFY=0 bash {wandir}/wan-up.sh 50 1gbit {loss}")
            srv = subprocess.Popen("ip netns exec west iperf3 -s -p 5201", shell=True,
                                   stdout=subprocess.DEVNULL)
            time.sleep(0.5)
            row = {"loss_pct": loss}
            row["iperf3_cubic_1"] = iperf("ip netns exec east", "10.77.0.2 -p 5201", seconds)
            row["iperf3_cubic_8"] = iperf("ip netns exec east", "10.77.0.2 -p 5201", seconds, 8)
            row["iperf3_bbr_1"] = iperf("ip netns exec east", "10.77.0.2 -p 5201", seconds, 1,
                                        "bbr")
            srv.terminate()
            srv.wait()
            rx = Receiver(cpn, "/tmp/cpn-transfer-bench-west", "10.77.0.2", 7393, netns="west")
            j, _ = cpn_push(cpn, src, "10.77.0.2:7393:wan", netns="east")
            rx.stop()
            shutil.rmtree("/tmp/cpn-transfer-bench-west", ignore_errors=True)
            row["cpn"] = j["mbit_s"] if j else 0
            row["cpn_streams"] = j["streams"] if j else 0
            row["cpn_resent_chunks"] = j["chunks_resent"] if j else 0
            best = max(row["iperf3_cubic_1"], row["iperf3_cubic_8"], row["iperf3_bbr_1"])
            row["cpn_vs_ceiling"] = row["cpn"] / CEILING_MBIT
            row["cpn_vs_best_iperf3"] = row["cpn"] / best if best > 0 else 0
            for k in ("iperf3_cubic_1", "iperf3_cubic_8", "iperf3_bbr_1"):
                row[k + "_vs_ceiling"] = row[k] / CEILING_MBIT
            rows.append(row)
            print(f"  loss {loss}%: cpn {row['cpn']:.0f} Mbit/s", file=sys.stderr)
    finally:
        subprocess.run(f"bash {wandir}/wan-down.sh", shell=True, capture_output=True)
        shutil.rmtree(os.path.dirname(src), ignore_errors=True)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--wan-only", action="store_true")
    ap.add_argument("--loopback-only", action="store_true")
    ap.add_argument("--size-gb", type=float, default=None)
    ap.add_argument("--cpn", default=os.path.join(ROOT, "build-bench", "cpn"))
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/run transfer needs root (network namespaces and NFQUEUE)")
    ensure_packages()
    gb = a.size_gb or (0.25 if a.quick else 2.0)
    seconds = 5 if a.quick else 10
    losses = [0, 1] if a.quick else [0, 0.1, 1]
    out = {"bench": "transfer", "dataset_gb": gb, "ceiling_mbit": round(CEILING_MBIT, 1)}
    if not a.wan_only:
        lb = loopback(a.cpn, min(gb, 1.0), seconds)
        out["loopback"] = lb
        print("Loopback (no emulator)")
        print(f"  {'':38} {'Mbit/s':>10} {'ratio':>8} {'CPU s/GB':>9}")
        print(f"  {'iperf3 single stream':38} {lb['iperf3_single_mbit']:10.0f}")
        print(f"  {'cpn memory to memory (verified)':38} {lb['mem_to_mem_mbit']:10.0f} "
              f"{lb['mem_vs_iperf3']:8.2f} {lb['mem_to_mem_cpu_s_per_gb']:9.2f}")
        print(f"  {'dd to disk with fsync':38} {lb['dd_fsync_mbit']:10.0f}")
        print(f"  {'cpn disk to disk (end to end)':38} {lb['disk_to_disk_end_to_end_mbit']:10.0f} "
              f"{lb['disk_vs_dd']:8.2f} {lb['disk_to_disk_cpu_s_per_gb']:9.2f}")
    if not a.loopback_only:
        wan_seconds = max(5, round(gb * (1 << 30) * 8 / 1e6 / CEILING_MBIT))
        rows = wan(a.cpn, gb, wan_seconds, losses)
        out["wan"] = rows
        print(f"WAN 50 ms RTT, 1 Gbit/s (ceiling {CEILING_MBIT:.0f} Mbit/s); ratio to the ceiling")
        print(f"  {'loss':>6} {'cubic x1':>10} {'cubic x8':>10} {'bbr x1':>10} {'cpn':>10} "
              f"{'cpn/best iperf3':>16}")
        for r in rows:
            print(f"  {r['loss_pct']:>5}% {r['iperf3_cubic_1_vs_ceiling']:10.2f} "
                  f"{r['iperf3_cubic_8_vs_ceiling']:10.2f} {r['iperf3_bbr_1_vs_ceiling']:10.2f} "
                  f"{r['cpn_vs_ceiling']:10.2f} {r['cpn_vs_best_iperf3']:16.2f}")
    out["targets"] = {"wan_vs_ceiling_at_0_and_0.1": 0.9, "wan_vs_ceiling_at_1": 0.75,
                      "vs_best_iperf3": 0.95, "mem_vs_iperf3": 0.4}
    print(json.dumps(out))


if __name__ == "__main__":
    main()

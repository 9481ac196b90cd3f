#!/usr/bin/env python3
# fleetkey-server's cost of opening and of stopping with N idle device connections, in server
# CPU (not wall time: the machine is shared). Opens N connections with fleet_load hold on the
# fleet bench_server.sh cached in BUILD_DIR/bench-fleet/N (run that first with
# FK_BENCH_CONNS=N), prints the server CPU per connection opened (/proc/PID/stat), then sends
# SIGTERM and prints the wall time and the server CPU until it exited (its rusage, wait4).
# fleet_load never answers a close, so the stop always waits its 2 s drain bound.
#
# usage: server_stop_probe.py BUILD_DIR N   (work files in BUILD_DIR/stop-probe)
import os, signal, subprocess, sys, time, shutil, resource
BD = os.path.abspath(sys.argv[1])
N = int(sys.argv[2])
B, FLEET, W = f"{BD}/bin", f"{BD}/bench-fleet/{N}", f"{BD}/stop-probe"
shutil.rmtree(W, ignore_errors=True); os.makedirs(W)
os.chdir(W)
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
shutil.copy(f"{FLEET}/inventory.db", "fleet.db")
tck = os.sysconf("SC_CLK_TCK")
def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tck
srv = subprocess.Popen([f"{B}/fleetkey-server", "--listen", "127.0.0.1", "--port", "0", "--port-file", "port",
    "--cert", f"{FLEET}/pki/servers/localhost.chain.pem", "--key", f"{FLEET}/pki/servers/localhost.key.pem",
    "--ca", f"{FLEET}/pki/ca-chain.pem", "--crl", f"{FLEET}/crl.pem", "--inventory", "fleet.db",
    "--log_level", "error", "--max_connections", str(N + 16), "--hello_timeout", "3600",
    "--ping_interval", "3600"], stderr=open("srv.log", "w"))
for _ in range(600):
    if os.path.exists("port") and open("port").read().strip(): break
    time.sleep(0.1)
P = open("port").read().strip()
c0 = cpu(srv.pid)
fl = subprocess.Popen([f"{B}/fleet_load", "hold", "--port", P, "--ca", f"{FLEET}/pki/ca-chain.pem",
    "--creds", f"{FLEET}/creds.bin", "--conns", str(N), "--procs", "2", "--ready-file", "ready",
    "--hold-file", "hold", "--timeout", "3000"], stdout=open("fleet.txt", "w"), stderr=open("fleet.err", "w"))
for _ in range(30000):
    if os.path.exists("ready") and open("ready").read().strip(): break
    if fl.poll() is not None: break
    time.sleep(0.1)
time.sleep(2)
c1 = cpu(srv.pid)
opened = int(open("ready").read().strip() or 0)
t0 = time.monotonic()
srv.send_signal(signal.SIGTERM)
_, status, ru = os.wait4(srv.pid, 0)
t1 = time.monotonic()
c2 = ru.ru_utime + ru.ru_stime
open("hold", "w").close()
fl.terminate(); fl.wait()
print(f"N {N} opened {opened}: open {1000*(c1-c0)/max(opened,1):.3f} ms server CPU/conn; "
      f"shutdown: wall {t1-t0:.2f} s, server CPU {c2-c1:.2f} s; exit status {status}")

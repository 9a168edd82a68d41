"""glibc client: `getent hosts NAME` in a loop (inside the client namespace, whose
/etc/netns/<ns>/resolv.conf lists both VIPs). One line per lookup: <t_start> <t_end> <addr|->.
SIGTERM: finish the lookup in flight, then exit."""
import signal
import subprocess
import sys
import time

stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
out = open(sys.argv[1], "w", buffering=1)
name = sys.argv[2] if len(sys.argv) > 2 else "test.example"
pause = float(sys.argv[3]) if len(sys.argv) > 3 else 0.05
while not stop:
    t0 = time.monotonic()
    r = subprocess.run(["getent", "hosts", name], capture_output=True, text=True)
    t1 = time.monotonic()
    addr = r.stdout.split()[0] if r.returncode == 0 and r.stdout.strip() else "-"
    out.write(f"{t0:.6f} {t1:.6f} {addr}\n")
    if not stop:
        time.sleep(pause)

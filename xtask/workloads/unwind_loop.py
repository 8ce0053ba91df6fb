# unwind_loop.py: a busy Python loop for the `unwind` section of
# `cargo xtask bench`, run by Debian's /usr/bin/python3 (built without frame
# pointers). Renames its thread to "unwind-py" so that both tools' samples of
# it are easy to pick out, prints "ready", and on SIGTERM prints
# "ROUNDS SECONDS" (calls of work() and the time since "ready").
import signal
import time

stop = False


def on_term(_sig, _frame):
    global stop
    stop = True


def work(n):
    s = 0
    for i in range(n):
        s += i * i
    return s


signal.signal(signal.SIGTERM, on_term)
with open("/proc/self/comm", "w") as comm:
    comm.write("unwind-py")
print("ready", flush=True)
begin = time.monotonic()
rounds = 0
while not stop:
    work(10_000)
    rounds += 1
print(rounds, f"{time.monotonic() - begin:.3f}", flush=True)

# A pure-Python busy loop for the unwinding truth test (tests/tests/unwind.rs),
# run by Debian's interpreter: /usr/bin/python3 busy_loop.py SECONDS.
# Debian builds python3 without frame pointers and strips it; its exported
# symbols (Py_RunMain, _PyEval_EvalFrameDefault, ...) remain. Every sample
# of the loop is inside _PyEval_EvalFrameDefault, called (through unexported
# helpers) from Py_RunMain <- Py_BytesMain <- __libc_start_call_main: Debian's
# `main` tail-calls Py_BytesMain, so `main` itself is not on the stack.
# Announces `pid N`, `tid main N` and `ready`, then spins for SECONDS.
import os
import signal
import sys


def tp_busy_loop():
    i = 0
    while True:
        i += 1


if len(sys.argv) != 2:
    sys.exit("usage: busy_loop.py SECONDS")
signal.alarm(int(sys.argv[1]))
print(f"pid {os.getpid()}\ntid main {os.getpid()}\nready", flush=True)
tp_busy_loop()

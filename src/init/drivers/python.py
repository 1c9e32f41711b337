"""Bunker's Python driver: the session's persistent Python interpreter.

bunker-init starts it as the session's user and speaks to it over two pipes
(src/init/interp_int.h): requests on fd 60, "<seq> <length> <timeout ms>\n"
and then the program text; answers on fd 61, "R\n" once ready and
"D <seq> <status>\n" once a request has run and stdout and stderr are
flushed. Between runs, SIGINT is ignored; during one it raises
KeyboardInterrupt, which is how init interrupts a run past its timeout.

Every run executes in one namespace, the __main__ module's, as cells of a
notebook do: globals, imports, functions and classes stay. A bare expression
at the end has its value shown (sys.displayhook: its repr, unless None).
Top-level await works. An exception prints its traceback on stderr and the
run's status is 1; SystemExit (exit(), sys.exit(3)) ends the interpreter with
its code, and init starts a new one for the next run.
"""

import ast
import builtins
import importlib
import linecache
import os
import signal
import site
import sys
import traceback
import types

REQ_FD, ANS_FD = 60, 61
DRIVER = __file__
running = False


def on_sigint(signum, frame):
    if running:
        raise KeyboardInterrupt


def answer(text):
    os.write(ANS_FD, text.encode())


def flush():
    for f in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            f.flush()
        except Exception:
            pass


def user_site_refresh():
    """pip installs into the user site, which may not have existed when the
    interpreter started: add it, and forget what the import system cached
    about directories, so that a package installed by the last run (or by
    `pip install` in another execution) imports in this one."""
    user_site = site.getusersitepackages()
    if site.ENABLE_USER_SITE and user_site not in sys.path and os.path.isdir(user_site):
        site.addsitedir(user_site)
    importlib.invalidate_caches()


class Runner:
    def __init__(self):
        main = types.ModuleType("__main__")
        main.__dict__["__builtins__"] = builtins
        sys.modules["__main__"] = main
        self.ns = main.__dict__
        self.loop = None

    def evaluate(self, code_obj):
        value = eval(code_obj, self.ns)
        if code_obj.co_flags & 0x80:  # CO_COROUTINE: top-level await
            if self.loop is None:
                import asyncio

                self.loop = asyncio.new_event_loop()
                asyncio.set_event_loop(self.loop)
            value = self.loop.run_until_complete(value)
        return value

    def run(self, seq, source):
        """Runs one request; returns its status."""
        name = "<execution %d>" % seq
        linecache.cache[name] = (len(source), None, source.splitlines(True), name)
        flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        try:
            tree = ast.parse(source, name, "exec")
            last = None
            if tree.body and isinstance(tree.body[-1], ast.Expr):
                last = ast.Expression(tree.body.pop().value)
            self.evaluate(compile(tree, name, "exec", flags))
            if last is not None:
                sys.displayhook(self.evaluate(compile(last, name, "eval", flags)))
            return 0
        except SystemExit:
            raise
        except BaseException:
            kind, value, tb = sys.exc_info()
            # The user's frames only.
            while tb is not None and tb.tb_frame.f_code.co_filename == DRIVER:
                tb = tb.tb_next
            traceback.print_exception(kind, value, tb)
            return 1


def read_request(req):
    header = req.readline()
    if not header:
        return None
    fields = header.split()
    if len(fields) != 3 or not all(f.isdigit() for f in fields):
        answer("E bad header\n")
        os._exit(125)
    seq, length = int(fields[0]), int(fields[1])
    data = req.read(length)
    if len(data) != length:
        return None
    return seq, data.decode("utf-8", "replace")


def main():
    global running
    signal.signal(signal.SIGINT, on_sigint)
    for fd in (REQ_FD, ANS_FD):
        os.set_inheritable(fd, False)
    # As in the REPL: imports resolve from the working directory, not from
    # the driver's.
    sys.path[0] = ""
    try:
        sys.stdout.reconfigure(line_buffering=True)
    except Exception:
        pass
    runner = Runner()
    req = open(REQ_FD, "rb", closefd=False)
    answer("R\n")
    while True:
        request = read_request(req)
        if request is None:
            # init is done with this interpreter; threads the code left
            # running must not keep it.
            flush()
            os._exit(0)
        seq, source = request
        user_site_refresh()
        try:
            running = True
            status = runner.run(seq, source)
            running = False
        except KeyboardInterrupt:
            # Between the run's own handler and the flag.
            running = False
            status = 130
        flush()
        answer("D %d %d\n" % (seq, status))


if __name__ == "__main__":
    main()

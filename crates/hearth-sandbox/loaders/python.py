# hearth's prestart loader for Python: started in the sandbox before the code exists, it
# says it is ready on fd 4, waits for the program's argv on fd 3 (NUL-separated), then runs
# the program exactly as `python3 main.py args...` would: sys.argv, sys.orig_argv,
# sys.path[0], a fresh __main__ with __file__ and __loader__, the exit status, and
# tracebacks without a loader frame.
def _hearth_run():
    import os, sys
    os.write(4, b"r")
    os.close(4)
    chunks = []
    while True:
        chunk = os.read(3, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(3)
    argv = b"".join(chunks).decode("utf-8", "surrogateescape").split("\0")
    path = os.path.join(os.getcwd(), argv[0])
    sys.argv[:] = argv
    sys.orig_argv[:] = [sys.orig_argv[0]] + argv
    sys.path[0] = os.path.dirname(path)
    import __main__, builtins, importlib.machinery
    scope = __main__.__dict__
    scope.clear()
    scope.update(
        __name__="__main__", __doc__=None, __package__=None, __spec__=None, __cached__=None,
        __loader__=importlib.machinery.SourceFileLoader("__main__", path),
        __file__=path, __builtins__=builtins, __annotations__={},
    )
    with open(path, "rb") as f:
        code = compile(f.read(), path, "exec", dont_inherit=True)
    try:
        exec(code, scope)
    except SystemExit:
        raise
    except BaseException as e:
        e.__traceback__ = e.__traceback__.tb_next  # drop this loader's frame
        sys.excepthook(type(e), e, e.__traceback__)
        sys.exit(1)
_hearth_run()

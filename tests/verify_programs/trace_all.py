"""Trace each program given in one interpreter, as ``bnrepro trace --out OUT/NAME PROGRAM MODE``
would: ``python trace_all.py MODE OUT PROGRAM...`` (MODE ``v2`` or ``graph``). Prints one line per
program, ``NAME STATUS``."""
import os
import sys

import tensorflow as tf

mode, out, programs = sys.argv[1], sys.argv[2], sys.argv[3:]
if mode == "v2":
    tf.compat.v1.disable_v2_behavior()
else:
    tf.compat.v1.disable_eager_execution()

from bnrepro.graphs.tracing import trace_script  # noqa: E402 (after the mode is set)

for program in programs:
    tf.compat.v1.reset_default_graph()
    if "tf_keras" in sys.modules:
        sys.modules["tf_keras"].backend.clear_session()
    name = os.path.splitext(os.path.basename(program))[0]
    status = trace_script(program, [mode], os.path.join(out, name), write=None)
    print(name, status, flush=True)

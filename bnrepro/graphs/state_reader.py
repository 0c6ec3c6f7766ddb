"""Reading a graph's tracked variables after a run, at a fraction of a ``session.run``'s cost."""
from __future__ import annotations

import weakref

from tensorflow.core.protobuf import config_pb2
from tensorflow.python.client import pywrap_tf_session


class StateReader:
    """Reads a graph's tracked variables in one session: what ``session.run(variables)`` returns,
    as a list, through a ``Session::MakeCallable`` handle. This read follows every run that may
    change the statistics; run as a callable, in the calling thread, it costs a fraction of a
    ``session.run`` (no fetch mapping, no hand-over to TensorFlow's threads).

    ``BaseSession._make_callable_from_options`` makes the same callable but keeps the session alive
    for as long as the callable lives. This one holds the session weakly, so a session the program
    drops unclosed is freed as it would be untraced, and takes itself out of ``readers``
    (``id(session)`` -> reader, where it puts itself) when the session goes."""

    def __init__(self, session, variables, readers):
        self._handle = None
        graph = session.graph
        options = config_pb2.CallableOptions(fetch=[  # the tensors session.run fetches for them
            graph.as_graph_element(variable, allow_tensor=True, allow_operation=False).name
            for variable in variables])
        # in the calling thread: for a few reads, handing them to the inter-op threads and
        # waiting (often for a parked thread to wake) costs more than the reads
        options.run_options.inter_op_thread_pool = -1
        key = id(session)
        self.session = weakref.ref(session, lambda _: readers.pop(key, None))
        session._extend_graph()  # noqa: SLF001  as _make_callable_from_options: add new operations
        buffer = pywrap_tf_session.TF_NewBufferFromString(options.SerializeToString())
        try:
            self._handle = pywrap_tf_session.TF_SessionMakeCallable(
                session._session, buffer)  # noqa: SLF001
        finally:
            pywrap_tf_session.TF_DeleteBuffer(buffer)
        readers[key] = self

    def __call__(self):
        """The variables' values, in order (arrays that may share the variables' buffers)."""
        return pywrap_tf_session.TF_SessionRunCallable(
            self.session()._session, self._handle, [], None)  # noqa: SLF001

    def __del__(self):
        """Release the handle, as ``BaseSession._Callable`` does, while the session is open (a
        closed or deleted session has released it)."""
        session = self.session() if hasattr(self, "session") else None
        try:
            if (self._handle is not None and session is not None
                    and session._session is not None and not session._closed):  # noqa: SLF001
                pywrap_tf_session.TF_SessionReleaseCallable(session._session,  # noqa: SLF001
                                                            self._handle)
        except (AttributeError, TypeError):  # at interpreter exit
            pass

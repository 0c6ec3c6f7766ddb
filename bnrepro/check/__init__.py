"""The checks: NumPy only, never TensorFlow (``tests/test_layout.py`` imports every module here in a
fresh interpreter and fails if TensorFlow is loaded).

From the bottom up: :mod:`~bnrepro.check.formulas` (batch norm's formulas, as computed),
:mod:`~bnrepro.check.tolerances` (the one tolerance policy: the float32 bound of every comparison,
and :class:`~bnrepro.check.tolerances.Check`, which holds values to it),
:mod:`~bnrepro.check.layer_modes` (ghost batches, renorm), :mod:`~bnrepro.check.conventions`
(other frameworks' epsilons and variances), then :mod:`~bnrepro.check.verify` (a trace against the
formulas), :mod:`~bnrepro.check.diagnose` (which known convention a trace follows),
:mod:`~bnrepro.check.explain` (one step's arithmetic), :mod:`~bnrepro.check.reference` (the posts'
whole training steps in NumPy) and :mod:`~bnrepro.check.posts` (the numbers the posts printed).
They take a trace as read by :func:`bnrepro.trace.read_trace` and import nothing from the rest of
bnrepro but :mod:`bnrepro.errors`.
"""

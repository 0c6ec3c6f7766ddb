"""``bnrepro compare``: post 002's normalisation methods on MNIST, trained side by side.

:mod:`~bnrepro.compare.run` is the command (``run_compare``); :mod:`~bnrepro.compare.training` the
training loop of one method (TensorFlow, bn traced); :mod:`~bnrepro.compare.report` the summaries,
``history.csv`` and ``results.md``; :mod:`~bnrepro.compare.figures` the figures;
:mod:`~bnrepro.compare.progress` the progress bars; :mod:`~bnrepro.compare.data` the MNIST digits.
Only ``run`` and ``training`` import TensorFlow.
"""

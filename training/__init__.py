"""Training data, the CNN, training and evaluation (issue 3).

- :mod:`training.presets` -- the paper's Table 1 presets and options beyond it
- :mod:`training.sampling`, :mod:`training.generate`, :mod:`training.dataset` -- sharded,
  resumable, deterministic datasets
- :mod:`training.networks`, :mod:`training.train`, :mod:`training.export` -- the network, its
  training and the model bundle
- :mod:`training.evaluate`, :mod:`training.report` -- Table 2, bands and figures
"""

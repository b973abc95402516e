"""Training data, the CNN, training and evaluation (issue 3).

- :mod:`xrd_strain_training.presets` -- the paper's Table 1 presets and options beyond it
- :mod:`xrd_strain_training.sampling`, :mod:`xrd_strain_training.generate`, :mod:`xrd_strain_training.dataset` -- sharded,
  resumable, deterministic datasets
- :mod:`xrd_strain_training.networks`, :mod:`xrd_strain_training.train`, :mod:`xrd_strain_training.export` -- the network, its
  training and the model bundle
- :mod:`xrd_strain_training.evaluate`, :mod:`xrd_strain_training.report` -- Table 2, bands and figures
"""

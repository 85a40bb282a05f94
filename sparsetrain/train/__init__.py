"""Training: the loop (:mod:`~sparsetrain.train.loop`) and the pieces it asks.

:mod:`~sparsetrain.train.build` assembles the components from the job,
:mod:`~sparsetrain.train.guards` may refuse a step, :mod:`~sparsetrain.train.state` saves and
restores checkpoints, :mod:`~sparsetrain.train.rows` averages and logs metric rows, and
:mod:`~sparsetrain.train.faults` injects faults for tests.
"""

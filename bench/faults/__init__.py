"""Generated training runs with injected faults: real numpy models trained with minibatch SGD.

`families` and `models_det` hold the models and their data, `optim` the optimisers, LR schedules and
fp16-style loss scaling, `train` the training loop (with the faults), `writers` the framework-style
logs, `labels` the truthful labels, `plan` which runs exist. `bench/make_faults.py` is the entry point.
"""

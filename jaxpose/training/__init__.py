"""Training: the train loop (`trainer`), data parallelism, checkpoints, preemption, progressive resizing, MFU, metric writers."""

"""The `.wandb` wing: reading W&B's local transaction logs without the `wandb` package.

- `reader`: `WandbLogReader`, record by record, for live tails (any piece sizes, torn records wait).
- `bulk`: `WandbBulkReader`, a whole file in big pieces as column blocks, for catching up; its
  `resume_state()` hands a live reader (`WandbLogReader.resume`) the place and state to go on from.
- `keys`: history keys to columns; `numparse`: fast parsing of the JSON numbers values are stored as.
- `feed`: `WandbFeed`, the bytes of one run into its analysis.
Wire decoding (protobuf fields) is shared with TensorBoard files in `monitor.protowire`.
"""

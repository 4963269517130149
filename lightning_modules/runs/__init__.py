"""Run directories: where each `fit`/`validate`/`test`/`predict` writes, and what it records.

`directory` decides the run's name and folder (and resumption), `meta` gathers `run_meta.json`,
`callbacks` write the config, the metadata and the checkpoints, `lightning_cli` is the
LightningCLI that wires them in, and `wandb_files` reads offline W&B runs back.
"""

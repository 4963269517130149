"""W&B sweep files checked before launch, and run where W&B cannot be reached.

`agent` expands a sweep's `command` as the W&B agent does, `engine` draws parameters with W&B's
own sweep engine (the `sweeps` package) and keeps the trials, `dry_run` checks a command with
`--print_config`, `runner` runs trials and ranks them; the command is `crossdistill sweep`
(`lightning_modules.commands.sweep`).
"""

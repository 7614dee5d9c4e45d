"""The local backend: a RolloutRun carried through its phases on this machine.

`rolloutctl run -f rolloutrun.yaml` uses the very phase code of the operator's pods (sync,
serve-tools, work, aggregate); this package only decides where each phase runs here (local
processes, bubblewrap sandboxes, loopback ports) and shows the run's progress.
"""

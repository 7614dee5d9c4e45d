"""Pure reconcile decisions: no kopf, no kubernetes client, no I/O."""

"""Kopf glue: the only package (with `rolloutctl operator`) that imports kopf."""

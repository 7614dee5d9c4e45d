"""`rolloutctl operator` with no cluster to talk to: one line saying how to point it at one,
exit 2, at once (no retry loop, no traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_operator_without_a_kubeconfig_exits_2_with_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("KUBERNETES_SERVICE")}
    env.update(KUBECONFIG=str(tmp_path / "missing" / "config"), HOME=str(tmp_path),
               PYTHONPATH=os.pathsep.join([str(ROOT / "operator"), str(ROOT)]))
    done = subprocess.run([sys.executable, "-m", "rollout_operator.cli.main", "operator"],
                          env=env, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("rolloutctl operator: no cluster to talk to")
    assert str(tmp_path / "missing" / "config") in lines[0]
    assert "Point KUBECONFIG at a kubeconfig file" in lines[0]
    assert done.stdout == ""


def test_a_kubeconfig_without_a_current_context_is_named(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("KUBERNETES_SERVICE")}
    env.update(KUBECONFIG=str(config), HOME=str(tmp_path),
               PYTHONPATH=os.pathsep.join([str(ROOT / "operator"), str(ROOT)]))
    done = subprocess.run([sys.executable, "-m", "rollout_operator.cli.main", "operator"],
                          env=env, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, cwd=tmp_path)
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert f"the kubeconfig ({config}) cannot be used" in line and "Traceback" not in line

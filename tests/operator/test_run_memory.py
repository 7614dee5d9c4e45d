"""What a run remembers of the children it created until its watches show them."""

from __future__ import annotations

from rollout_operator.handlers.memory import RunMemory


def test_a_created_child_is_remembered_until_the_index_shows_it() -> None:
    memory = RunMemory()
    memory.created_now("Job", "run-sync", "10")
    # The Job watch is behind: it shows only an older Job of the run.
    assert memory.not_yet_seen([("Job", "run-inspect", "8")]) == {("Job", "run-sync")}
    assert memory.not_yet_seen([]) == {("Job", "run-sync")}
    # Other kinds' watches do not tell where the Job watch is.
    assert memory.not_yet_seen([("Service", "run-tools", "30")]) == {("Job", "run-sync")}
    assert memory.not_yet_seen([("Job", "run-sync", "10")]) == frozenset()
    assert memory.not_yet_seen([]) == frozenset()


def test_a_child_the_watch_has_passed_without_showing_it_is_forgotten() -> None:
    memory = RunMemory()
    memory.created_now("Job", "run-sync", "10")
    # A Job made after it is in the index, it is not: it was deleted since.
    assert memory.not_yet_seen([("Job", "run-workers", "12")]) == frozenset()


def test_a_child_found_existing_is_remembered_until_seen() -> None:
    memory = RunMemory()
    memory.created_now("Deployment", "run-tools")  # AlreadyExists: no version known
    assert memory.not_yet_seen([("Deployment", "run-scorer", "99")]) == {
        ("Deployment", "run-tools")}
    memory.deleted("Deployment", "run-tools")
    assert memory.not_yet_seen([]) == frozenset()


def test_passes_over_a_run_never_overlap_and_a_trigger_meanwhile_is_not_lost() -> None:
    memory = RunMemory()
    assert memory.begin()
    assert not memory.begin()  # a trigger during the pass: it passes once more
    assert not memory.begin()  # two of them: still once
    assert memory.again()
    assert not memory.again()  # the pass is over
    assert memory.begin()  # the next trigger passes itself
    memory.end()
    assert memory.begin()

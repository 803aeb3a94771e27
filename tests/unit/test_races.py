"""Two sides at once, in real threads: the training cap, a run's status, the review marks, the digest cache."""

import threading
from pathlib import Path



def run_together(count: int, work) -> list:
    """``work(index)`` in ``count`` threads started together; each one's result or exception."""
    results = [None] * count
    start = threading.Barrier(count)

    def side(index):
        start.wait()
        try:
            results[index] = work(index)
        except Exception as error:   # noqa: BLE001  (the test looks at what each side got)
            results[index] = error

    threads = [threading.Thread(target=side, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_three_sessions_starting_trainings_at_once_get_at_most_the_cap(tmp_path, monkeypatch):
    """The cap was checked, then acted on, outside its lock: three clicks at once could all pass the check."""
    from dashboard import jobs

    release = threading.Event()
    monkeypatch.setattr(jobs, "_train", lambda *arguments, **keywords: release.wait(30))
    arrived = threading.Barrier(3)
    claim = jobs.claim_run_folder

    def slow_claim(path):   # every side that passed the check waits here for the others: the window made wide
        try:
            arrived.wait(timeout=2)
        except threading.BrokenBarrierError:
            pass
        return claim(path)

    monkeypatch.setattr(jobs, "claim_run_folder", slow_claim)
    try:
        results = run_together(3, lambda index: jobs.start_training(tmp_path, "demo", "", "lattice", 1, 128, index))
    finally:
        release.set()
    started = [result for result in results if isinstance(result, Path)]
    refused = [result for result in results if isinstance(result, jobs.TooManyJobs)]
    assert len(started) == jobs.MAX_TRAINING_JOBS and len(refused) == 3 - jobs.MAX_TRAINING_JOBS, results
    for run in started:
        jobs.join(run.name, timeout=30)


def test_status_updates_from_many_threads_are_all_kept(tmp_path):
    """A rename and the training's progress read-modify-wrote status.json without a lock: one could be lost."""
    from core.runs.store import read_status, write_status

    run = tmp_path / "run"
    run.mkdir()
    run_together(8, lambda index: [write_status(run, **{f"field_{index}": step}) for step in range(40)])
    status = read_status(run)
    assert all(status.get(f"field_{index}") == 39 for index in range(8)), status


def test_two_sessions_marking_the_same_run_keep_both_marks(tmp_path):
    """Each browser session holds its own copy of the marks; the last to save used to erase the other's."""
    from core.runs.corrections import load_corrections

    path = tmp_path / "corrections" / "run-data.json"
    first, second = load_corrections(path), load_corrections(path)
    first.mark("test/good/001.png", "good")
    second.mark("test/crack/002.png", "defect", "crack")
    second.undo("nothing/marked.png")
    assert set(load_corrections(path).entries) == {"test/good/001.png", "test/crack/002.png"}
    # and many at once, from threads
    sessions = [load_corrections(path) for _ in range(6)]
    run_together(6, lambda index: [sessions[index].mark(f"image_{index}_{step}.png", "exclude") for step in range(10)])
    assert len(load_corrections(path).entries) == 2 + 60


def test_the_digest_cache_never_loses_a_digest_it_just_computed(tmp_path, monkeypatch):
    """The cache could be cleared by another thread between its write and the read after it (a KeyError). The
    other thread is played by a cache that empties itself the moment it is written to; then real threads."""
    from core.detectors import saving

    class ClearedAtOnce(dict):
        def __setitem__(self, key, value):
            super().__setitem__(key, value)
            self.clear()

    path = tmp_path / "model.keras"
    path.write_bytes(b"weights" * 100)
    monkeypatch.setattr(saving, "_DIGESTS", ClearedAtOnce())
    assert saving.sha256_of(path, reuse=True) == saving.sha256_of(path)

    monkeypatch.setattr(saving, "_DIGESTS", {})
    monkeypatch.setattr(saving, "_DIGESTS_LIMIT", 3)   # cleared all the time
    files = []
    for index in range(24):
        file = tmp_path / f"f{index}.bin"
        file.write_bytes(bytes([index]) * 64)
        files.append(file)
    expected = {file: saving.sha256_of(file) for file in files}
    results = run_together(8, lambda index: [saving.sha256_of(file, reuse=True) == expected[file]
                                             for _ in range(30) for file in files])
    assert all(isinstance(result, list) and all(result) for result in results), \
        [result for result in results if not isinstance(result, list)][:1]

import pytest


@pytest.fixture(autouse=True)
def runs_root(tmp_path, monkeypatch):
    """Pages write runs, comparisons and their saved figures into a folder of the test's own, never the project's:
    this one, which a test that puts runs there asks for by name."""
    import dashboard.resources

    monkeypatch.setattr(dashboard.resources, "RUNS_ROOT", tmp_path / "runs")
    return tmp_path / "runs"


@pytest.fixture(autouse=True)
def network_warm_ups(monkeypatch):
    """The pages' background warm-up of the ImageNet network, counted instead of started: in the test process a
    thread building it could write into the Keras folder another test has just made its own."""
    import dashboard.resources

    calls = []
    monkeypatch.setattr(dashboard.resources, "warm_packaged_network_in_background", lambda: calls.append(1))
    return calls

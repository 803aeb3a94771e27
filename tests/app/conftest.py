import pytest


@pytest.fixture(autouse=True)
def runs_root(tmp_path, monkeypatch):
    """Pages write runs, comparisons and their saved figures into a folder of the test's own, never the project's:
    this one, which a test that puts runs there asks for by name."""
    import dashboard.resources

    monkeypatch.setattr(dashboard.resources, "RUNS_ROOT", tmp_path / "runs")
    return tmp_path / "runs"

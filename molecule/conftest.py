"""Shared by every scenario's testinfra run: the log gate (log_gate_check.py)
runs after the scenario's own tests, whatever order the paths came in."""


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: item.path.name == "log_gate_check.py")

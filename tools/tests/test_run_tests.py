"""Scenario requirements: a missing source is a SKIPPED reason, a present one is not."""

from __future__ import annotations

import opensips_source
import run_tests

BASE_IMAGE = "sipedge/debian12-systemd:latest"  # built by `make images` before the tests run


def test_image_requirement_is_met_by_a_local_image(monkeypatch):
    monkeypatch.delenv("SIPEDGE_TEST_IMAGE", raising=False)
    assert run_tests.missing([f"image:SIPEDGE_TEST_IMAGE={BASE_IMAGE}"], opensips_source.Source("3.6")) == ""


def test_image_requirement_names_the_image_and_the_variable(monkeypatch):
    monkeypatch.setenv("SIPEDGE_TEST_IMAGE", "sipedge/no-such-image:never")
    reason = run_tests.missing([f"image:SIPEDGE_TEST_IMAGE={BASE_IMAGE}"], opensips_source.Source("3.6"))
    assert reason == "image sipedge/no-such-image:never is not present (load it, or name another with SIPEDGE_TEST_IMAGE)"


def test_package_requirement_without_a_source_is_a_reason():
    assert "no OpenSIPS package source" in run_tests.missing(["opensips-package"], opensips_source.Source("3.6"))

"""Unit tests of the SIP test kit's parsing, on statistics files written by a real SIPp 3.6.1 run."""

import math
from pathlib import Path

import pytest

import sipkit

FIXTURES = Path(__file__).parent / "fixtures"


def test_stat_csv_of_a_successful_run():
    stats = sipkit.parse_stat_csv((FIXTURES / "uac_call_stat.csv").read_text())
    result = sipkit.SippResult(command="sipp", rc=0, stats=stats)
    assert result.created == 4
    assert result.successful == 4
    assert result.failed == 0
    assert result.retransmissions == 0


def test_stat_csv_of_a_failed_run():
    stats = sipkit.parse_stat_csv((FIXTURES / "register_failed_stat.csv").read_text())
    result = sipkit.SippResult(command="sipp", rc=1, stats=stats)
    assert result.created == 2
    assert result.successful == 0
    assert result.failed == 2
    assert result.unexpected == 2


def test_stat_csv_without_data_row_is_an_error():
    with pytest.raises(ValueError):
        sipkit.parse_stat_csv("StartTime;SuccessfulCall(C)\n")


def test_rtt_csv_gives_one_time_per_call():
    times = sipkit.parse_rtt_csv((FIXTURES / "uac_call_rtt.csv").read_text())
    assert len(times) == 4
    assert all(500 <= t < 600 for t in times)  # the UAS rings 500 ms before it answers


@pytest.mark.parametrize(
    ("values", "pct", "expected"),
    [([5.0, 1.0, 3.0, 2.0, 4.0], 50, 3.0), ([5.0, 1.0, 3.0, 2.0, 4.0], 99, 5.0), ([7.0], 1, 7.0)],
)
def test_percentile_nearest_rank(values, pct, expected):
    assert sipkit.percentile(values, pct) == expected


def test_percentile_of_nothing_is_nan():
    assert math.isnan(sipkit.percentile([], 50))


def test_injection_file_has_sequential_header_and_fields():
    text = sipkit.injection_file([sipkit.Account("alice", "lab.test", "pw", "1000")])
    assert text == "SEQUENTIAL\nalice;lab.test;pw;1000\n"


def test_injection_file_refuses_separator_in_fields():
    with pytest.raises(ValueError, match="cannot contain"):
        sipkit.injection_file([sipkit.Account("al;ice", "lab.test", "pw")])


def test_sipp_command_writes_statistics_into_the_working_directory():
    argv = sipkit.sipp_command("uac_call", "10.0.0.1:5060", calls=3, rate=2, hold_ms=250, inf="a.csv")
    assert argv[:2] == ["sipp", "10.0.0.1:5060"]
    assert argv[argv.index("-sf") + 1] == f"{sipkit.SCENARIO_DIR}/uac_call.xml"
    assert argv[argv.index("-m") + 1] == "3"
    assert argv[argv.index("-d") + 1] == "250"
    assert argv[argv.index("-stf") + 1] == "stat.csv"
    assert "-timeout_error" in argv
    assert argv[argv.index("-inf") + 1] == "a.csv"


def test_sipp_command_traces_messages_only_when_asked():
    assert "-trace_msg" not in sipkit.sipp_command("uac_call", "10.0.0.1:5060")
    argv = sipkit.sipp_command("uac_call", "10.0.0.1:5060", trace_messages=True)
    assert argv[argv.index("-message_file") + 1] == "messages.log"

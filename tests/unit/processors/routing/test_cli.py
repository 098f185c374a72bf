"""`eventweir test-pattern` run as a user would, in a subprocess."""
import json
import subprocess
import sys

EVENT = {"id": "1", "account": "123456789012", "source": "app", "time": "2026-01-01T00:00:00Z",
         "region": "us-east-1", "detail-type": "t", "resources": [], "detail": {"n": 5}}


def run(*args):
    return subprocess.run([sys.executable, "-m", "streams.cli", "test-pattern", *args],
                          capture_output=True, text=True, timeout=60)


def test_match_and_no_match_print_result_and_exit_0():
    r = run("--event-pattern", '{"detail": {"n": [{"numeric": [">", 1]}]}}', "--event", json.dumps(EVENT))
    assert (r.returncode, r.stdout.strip()) == (0, '{"Result": true}')
    r = run("--event-pattern", '{"source": ["other"]}', "--event", json.dumps(EVENT))
    assert (r.returncode, r.stdout.strip()) == (0, '{"Result": false}')


def test_files_with_at_sign(tmp_path):
    (tmp_path / "p.json").write_text('{"source": ["app"]}')
    (tmp_path / "e.json").write_text(json.dumps(EVENT))
    r = run("--event-pattern", f"@{tmp_path / 'p.json'}", "--event", f"@{tmp_path / 'e.json'}")
    assert (r.returncode, r.stdout.strip()) == (0, '{"Result": true}')


def test_invalid_pattern_exits_2_with_aws_message():
    r = run("--event-pattern", '{"source": [{"wildcard": "a**"}]}', "--event", json.dumps(EVENT))
    assert r.returncode == 2
    assert r.stderr.strip() == ("InvalidEventPatternException: Event pattern is not valid. "
                                "Reason: Consecutive wildcard characters at pos 2")
    assert r.stdout == ""


def test_invalid_event_exits_2():
    r = run("--event-pattern", '{"source": ["app"]}', "--event", '{"source": "app"}')
    assert (r.returncode, r.stderr.strip()) == (2, "ValidationException: Parameter Event is not valid.")

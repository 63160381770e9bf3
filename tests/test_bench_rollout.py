"""`phasebook bench rollout`: both paths sample the same tokens, the record carries provenance."""

from __future__ import annotations

import json

from phasebook.cli import main


def test_bench_rollout_writes_a_record_with_the_same_tokens_on_both_paths(tmp_path, capsys):
    out = tmp_path / "rollout.json"
    assert main(["bench", "rollout", "--new-tokens", "24", "--batch-size", "3", "--repeat", "1",
                 "--device", "cpu", "--out", str(out)]) == 0
    record = json.loads(out.read_text(encoding="utf-8"))
    assert record["same_tokens"] is True and record["device"] == "cpu" and record["new_tokens"] == 24
    assert record["speedup"] == record["kv_cache"]["tokens_per_s"] / record["recompute"]["tokens_per_s"]
    assert record["hardware"]["cpu_count"] >= 1 and record["commit"] and record["date"]
    printed = capsys.readouterr().out
    assert "speed-up:" in printed and f"written: {out}" in printed

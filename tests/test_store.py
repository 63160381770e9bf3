"""The content-addressed store: computed once, atomic, and never trusts a corrupt entry."""

from __future__ import annotations

import numpy as np
import pytest

from phasebook.store import Store


def test_memo_computes_once_per_config(tmp_path):
    store, calls = Store(tmp_path), []

    def compute():
        calls.append(1)
        return {"a": np.arange(3), "score": 0.5}

    first = store.memo("toy", {"n": 3}, compute)
    second = store.memo("toy", {"n": 3}, compute)
    store.memo("toy", {"n": 4}, compute)
    assert len(calls) == 2
    assert np.array_equal(second["a"], first["a"]) and second["score"] == 0.5


def test_failed_computation_leaves_nothing(tmp_path):
    store = Store(tmp_path)

    def boom():
        raise RuntimeError("killed halfway")

    with pytest.raises(RuntimeError):
        store.memo("toy", {"n": 1}, boom)
    assert not store.path("toy", {"n": 1}).exists()


def test_corrupt_entry_is_moved_aside_and_recomputed(tmp_path):
    store, calls = Store(tmp_path), []

    def compute():
        calls.append(1)
        return {"a": np.ones(4)}

    store.memo("toy", {"n": 1}, compute)
    path = store.path("toy", {"n": 1})
    (path / "arrays.npz").write_bytes(b"not a numpy file")
    with pytest.warns(UserWarning, match="unreadable"):
        result = store.memo("toy", {"n": 1}, compute)
    assert len(calls) == 2 and np.array_equal(result["a"], np.ones(4))
    assert path.with_name(path.name + ".corrupt").is_dir()


def test_later_stage_code_versions_only_their_own_results(tmp_path, monkeypatch):
    """Editing post-training code changes the version of "post-…" results and of nothing earlier."""
    from phasebook import provenance

    for name, text in {"model.py": "a", "post/sft.py": "b", "book/site.py": "c"}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(provenance, "PACKAGE_DIR", tmp_path)

    def versions() -> tuple[str, str]:
        provenance.compute_version.cache_clear()
        return provenance.kind_version("pretrain"), provenance.kind_version("post-sft")

    pretrain_0, post_0 = versions()
    (tmp_path / "post/sft.py").write_text("b2")
    pretrain_1, post_1 = versions()
    assert pretrain_1 == pretrain_0 and post_1 != post_0
    (tmp_path / "model.py").write_text("a2")
    pretrain_2, post_2 = versions()
    assert pretrain_2 != pretrain_1 and post_2 != post_1
    (tmp_path / "book/site.py").write_text("c2")
    assert versions() == (pretrain_2, post_2)
    provenance.compute_version.cache_clear()

"""The training loop with a stand-in model: exact resume after SIGKILL, corrupt checkpoints,
rewinds on NaN and spikes, gradient accumulation, metrics and MFU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from phasebook.errors import PhasebookError
from phasebook.train import (
    CheckpointError,
    MetricsLog,
    OptimizerConfig,
    ScheduleConfig,
    TrainConfig,
    autocast,
    data_indices,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_weights,
    mfu,
    peak_flops,
    save_weights,
    train,
)
from phasebook.train.metrics import peak_flops_for_name
from phasebook.validation import ConfigError, from_mapping

ROOT = Path(__file__).resolve().parents[1]
VOCAB = 14
NAN_TOKEN, SPIKE_TOKEN = VOCAB - 1, VOCAB - 2  # never produced by the pattern itself


class StandInLM(nn.Module):
    """Embedding, a residual hidden layer, a norm and a head: the interface of the real GPT.

    A batch holding NAN_TOKEN gets a NaN loss, one holding SPIKE_TOKEN a loss ten times too big.
    """

    def __init__(self, dim: int = 24, dropout: float = 0.0):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, dim)
        self.dropout = nn.Dropout(dropout)
        self.hidden = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, VOCAB, bias=False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> SimpleNamespace:
        h = self.embed(x)
        h = h + self.dropout(torch.tanh(self.hidden(h)))
        logits = self.lm_head(self.norm(h)).float()
        ce = nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
        loss = ce + 1e-4 * torch.logsumexp(logits, -1).pow(2).mean()  # a z-loss, as in the GPT
        if (x == NAN_TOKEN).any():
            loss = loss * float("nan")
        if (x == SPIKE_TOKEN).any():
            loss = loss * 10.0
        return SimpleNamespace(loss=loss, ce_loss=ce)

    def flops_per_token(self, seq_len: int) -> float:
        return 6.0 * sum(p.numel() for p in self.parameters())


def make_model(seed: int = 0, dropout: float = 0.0) -> StandInLM:
    torch.manual_seed(seed)
    return StandInLM(dropout=dropout)


class PatternData:
    """Arithmetic token sequences; batch `i` of size `b` holds samples i·b ... (i+1)·b - 1, each a
    pure function of (seed, sample). `poison` maps a sample index to a token put at its start."""

    def __init__(self, seed: int = 0, poison: dict[int, int] | None = None):
        self.seed, self.poison = seed, poison or {}

    def batch(self, index: int, batch_size: int, seq_len: int, rank: int = 0,
              world_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        rows = []
        for sample in range(index * batch_size, (index + 1) * batch_size):
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + sample)
            start, stride = torch.randint(0, VOCAB - 2, (2,), generator=g)
            row = (start + (stride % 3 + 1) * torch.arange(seq_len + 1)) % (VOCAB - 2)
            if sample in self.poison:
                row[0] = self.poison[sample]
            rows.append(row)
        tokens = torch.stack(rows)
        return tokens[:, :-1], tokens[:, 1:]


def config(**overrides: object) -> TrainConfig:
    base: dict[str, object] = {
        "steps": 20, "batch_size": 4, "seq_len": 12, "checkpoint_interval": 5, "log_interval": 1,
        "eval_interval": 10, "eval_batches": 2, "progress": False,
        "schedule": ScheduleConfig(name="cosine", warmup_steps=2),
        "optimizer": OptimizerConfig(lr=1e-2)}
    return TrainConfig(**{**base, **overrides})


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- resume after SIGKILL ----------------------------------------------------------------------

RESUME_SCRIPT = """
import os, signal, sys
import torch
torch.set_num_threads(1)
from phasebook.train import OptimizerConfig, train
from tests.test_train_loop import PatternData, config, make_model
run_dir, kill_at, optimizer = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def on_log(record):
    if record["step"] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
cfg = config(steps=30, checkpoint_interval=10, optimizer=OptimizerConfig(name=optimizer, lr=1e-2))
train(make_model(dropout=0.1), PatternData(0), cfg, run_dir, eval_data=PatternData(1), on_log=on_log)
"""


def run_script(run_dir: Path, kill_at: int, optimizer: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "lib")])}
    return subprocess.run([sys.executable, "-c", RESUME_SCRIPT, str(run_dir), str(kill_at), optimizer],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_resume_after_sigkill_reproduces_the_uninterrupted_run_bit_for_bit(tmp_path: Path) -> None:
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert run_script(whole, -1, "adamw").returncode == 0
    died = run_script(killed, 25, "adamw")  # after the step-20 checkpoint, before step 30's
    assert died.returncode == -9, died.stderr
    assert latest_checkpoint(killed).name == "step-000020"
    assert MetricsLog(killed / "metrics.jsonl").read()[-1]["step"] == 25
    # What a kill during a write leaves behind: a torn metrics line, a half-written checkpoint.
    with (killed / "metrics.jsonl").open("a") as f:
        f.write('{"step": 26, "loss": 1.2')
    leftover = killed / "checkpoints" / ".tmp-step-000030-abc"
    leftover.mkdir()
    (leftover / "model.safetensors").write_bytes(b"partial")

    resumed = run_script(killed, -1, "adamw")
    assert resumed.returncode == 0, resumed.stderr
    assert not leftover.exists()
    assert [r["step"] for r in MetricsLog(killed / "metrics.jsonl").read()] == list(range(1, 31))
    assert exact_metrics(killed) == exact_metrics(whole)  # floats compared exactly
    final = "checkpoints/step-000030/__0_0.distcp"  # the weights and optimizer state, as DCP wrote them
    assert (killed / final).read_bytes() == (whole / final).read_bytes()


class Interrupted(Exception):
    pass


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_interrupted_run_resumes_exactly_with_either_optimizer(tmp_path: Path, optimizer: str) -> None:
    cfg = config(steps=30, checkpoint_interval=10, optimizer=OptimizerConfig(name=optimizer, lr=1e-2))

    def stop_at_25(record: dict) -> None:
        if record["step"] == 25:
            raise Interrupted

    train(make_model(dropout=0.1), PatternData(0), cfg, tmp_path / "whole", eval_data=PatternData(1))
    with pytest.raises(Interrupted):
        train(make_model(dropout=0.1), PatternData(0), cfg, tmp_path / "cut", eval_data=PatternData(1),
              on_log=stop_at_25)
    torch.manual_seed(123)  # the resumed run must restore the generators itself (dropout draws)
    train(make_model(seed=9, dropout=0.1), PatternData(0), cfg, tmp_path / "cut", eval_data=PatternData(1))
    assert exact_metrics(tmp_path / "cut") == exact_metrics(tmp_path / "whole")


def exact_metrics(run_dir: Path) -> list[list[object]]:
    keys = ("step", "loss", "ce_loss", "lr", "grad_norm", "tokens", "val_loss")
    return [[r.get(k) for k in keys] for r in MetricsLog(run_dir / "metrics.jsonl").read()]


# --- corrupt checkpoints ------------------------------------------------------------------------

def flip_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(("name", "damage", "words"), [
    ("__0_0.distcp", flip_bit, "corrupt"),  # weights and optimizer state
    (".metadata", truncate, "truncated"),  # DCP's index of what lies where
    ("rng-0.pt", Path.unlink, "missing"),
    ("manifest.json", truncate, "unreadable"),
])
def test_damaged_checkpoint_is_named_and_nothing_is_overwritten(tmp_path: Path, name: str, damage,
                                                                words: str) -> None:
    train(make_model(), PatternData(), config(steps=10), tmp_path)
    latest = latest_checkpoint(tmp_path)
    assert latest.name == "step-000010"
    damage(latest / name)
    before = snapshot(tmp_path)
    with pytest.raises(CheckpointError) as err:
        train(make_model(), PatternData(), config(steps=20), tmp_path)
    assert err.value.path == latest / name
    assert name in str(err.value) and words in str(err.value)
    assert snapshot(tmp_path) == before
    with pytest.raises(CheckpointError):
        load_checkpoint(latest, make_model())


def test_resume_refuses_another_configuration(tmp_path: Path) -> None:
    train(make_model(), PatternData(), config(steps=5), tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(PhasebookError, match="batch_size: 4 -> 8"):
        train(make_model(), PatternData(), config(steps=10, batch_size=8), tmp_path)
    with pytest.raises(PhasebookError, match=r"optimizer: .*'adamw'.* -> .*'muon'") as err:
        train(make_model(), PatternData(), config(steps=10, optimizer=OptimizerConfig(name="muon")), tmp_path)
    assert not isinstance(err.value, CheckpointError)  # the configuration is named, not a file
    assert snapshot(tmp_path) == before


def test_finished_run_is_returned_without_training_again(tmp_path: Path) -> None:
    first = train(make_model(), PatternData(), config(steps=10), tmp_path, eval_data=PatternData(1))
    lines = (tmp_path / "metrics.jsonl").read_text()
    again = train(make_model(seed=5), PatternData(), config(steps=10), tmp_path, eval_data=PatternData(1))
    assert again.steps == 10
    assert (again.final_loss, again.final_val_loss) == (first.final_loss, first.final_val_loss)
    assert (tmp_path / "metrics.jsonl").read_text() == lines


# --- rewinds ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("token", "bad_index"), [(NAN_TOKEN, 7), (SPIKE_TOKEN, 12)])
def test_bad_batch_rewinds_once_and_is_skipped(tmp_path: Path, token: int, bad_index: int) -> None:
    cfg = config(steps=16)
    clean = train(make_model(), PatternData(), cfg, tmp_path / "clean")
    poisoned = PatternData(poison={bad_index * cfg.batch_size + 1: token})
    result = train(make_model(), poisoned, cfg, tmp_path / "bad")
    assert result.rewinds == 1
    assert result.skipped == [bad_index]
    assert result.final_loss is not None and result.final_loss == result.final_loss  # finite
    assert [r["step"] for r in result.metrics] == list(range(1, 17))  # replayed lines not doubled
    # Steps before the bad batch are replayed exactly; the bad batch is never trained on.
    assert [r["loss"] for r in result.metrics[:bad_index]] == [r["loss"] for r in clean.metrics[:bad_index]]
    state = json.loads((latest_checkpoint(tmp_path / "bad") / "state.json").read_text())
    assert state["skipped"] == [bad_index] and state["rewinds"] == 1


def test_too_many_rewinds_stop_with_a_clear_error(tmp_path: Path) -> None:
    poisoned = PatternData(poison={s: NAN_TOKEN for s in range(24, 400)})  # every batch from index 6 on
    with pytest.raises(PhasebookError, match=r"unstable.*after 2 rewinds.*max_rewinds"):
        train(make_model(), poisoned, config(steps=20, max_rewinds=2), tmp_path)


def test_data_indices_shift_past_skipped_slots() -> None:
    assert data_indices(3, 1, []) == [3]
    assert data_indices(3, 1, [5]) == [3]
    assert data_indices(5, 1, [5]) == [6]
    assert data_indices(5, 1, [5, 6]) == [7]
    assert data_indices(0, 2, [2, 3]) == [0, 1]  # grad_accum 2: slot 1 (indices 2, 3) skipped
    assert data_indices(1, 2, [2, 3]) == [4, 5]


# --- gradient accumulation, precision, checkpoints ---------------------------------------------

def test_grad_accumulation_matches_one_big_batch(tmp_path: Path) -> None:
    cfg = config(steps=6, batch_size=8, eval_interval=0)
    one = train(make_model(), PatternData(), cfg, tmp_path / "one", eval_data=PatternData(1))
    two_model = make_model()
    two = train(two_model, PatternData(), config(steps=6, batch_size=8, grad_accum=2, eval_interval=0),
                tmp_path / "two", eval_data=PatternData(1))
    assert two.final_val_loss == pytest.approx(one.final_val_loss, rel=1e-5)  # same evaluation sequences
    assert [r["loss"] for r in two.metrics] == pytest.approx([r["loss"] for r in one.metrics], rel=1e-5)
    assert [r["grad_norm"] for r in two.metrics] == pytest.approx([r["grad_norm"] for r in one.metrics],
                                                                   rel=1e-4)
    one_model = make_model()
    load_checkpoint(latest_checkpoint(tmp_path / "one"), one_model)
    for a, b in zip(one_model.parameters(), two_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_autocast_switches_matmul_precision_and_fp8_without_linears_fails_early(tmp_path: Path) -> None:
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with autocast("bf16", "cpu"):
        assert (a @ b).dtype == torch.bfloat16
    with autocast("fp32", "cpu"):
        assert (a @ b).dtype == torch.float32
    with autocast("fp8", "cpu"):  # fp8 linears aside, the rest of the model runs in bf16
        assert (a @ b).dtype == torch.bfloat16
    # The stand-in's only bias-free linear is its output head, which fp8 leaves alone.
    with pytest.raises(PhasebookError, match=r"no bias-free nn\.Linear"):
        train(make_model(), PatternData(), config(precision="fp8"), tmp_path / "fp8")
    assert not (tmp_path / "fp8").exists()


def test_checkpoints_pruned_except_wsd_branch_point(tmp_path: Path) -> None:
    cfg = config(steps=20, checkpoint_interval=4, keep_checkpoints=2,
                 schedule=ScheduleConfig(name="wsd", warmup_steps=2, decay_fraction=0.25))
    train(make_model(), PatternData(), cfg, tmp_path)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-000015", "step-000016", "step-000020"]
    manifest = json.loads((tmp_path / "checkpoints" / "step-000015" / "manifest.json").read_text())
    assert manifest["keep_forever"] is True


def test_weights_round_trip_keeps_tied_weights_and_checks_sums(tmp_path: Path) -> None:
    model = make_model(1)
    model.lm_head.weight = model.embed.weight
    path = save_weights(model, tmp_path / "final" / "model.safetensors")
    other = make_model(2)
    other.lm_head.weight = other.embed.weight
    load_weights(other, path)
    assert other.lm_head.weight is other.embed.weight
    for a, b in zip(model.state_dict().values(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    flip_bit(path)
    with pytest.raises(CheckpointError) as err:
        load_weights(other, path)
    assert err.value.path == path
    path.with_name("model.safetensors.sha256").unlink()
    with pytest.raises(CheckpointError, match="sha256"):
        load_weights(other, path)


# --- metrics and MFU ----------------------------------------------------------------------------

def test_metrics_file_has_one_line_per_logged_step(tmp_path: Path) -> None:
    seen: list[dict] = []
    cfg = config(steps=20, log_interval=5, eval_interval=10)
    result = train(make_model(), PatternData(), cfg, tmp_path, eval_data=PatternData(1), on_log=seen.append)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["step"] for r in records] == [5, 10, 15, 20]
    assert records == seen == result.metrics
    assert [("val_loss" in r) for r in records] == [False, True, False, True]
    keys = {"loss", "ce_loss", "lr", "grad_norm", "tokens", "tokens_per_s", "mfu", "elapsed_s"}
    assert keys <= set(records[0])
    assert records[-1]["tokens"] == 20 * cfg.batch_size * cfg.seq_len == result.tokens_seen
    assert all(r["ce_loss"] < r["loss"] for r in records)  # the z-loss is in loss, not ce_loss
    assert result.final_val_loss == records[-1]["val_loss"]
    assert result.mfu is None and all(r["mfu"] is None for r in records)  # a CPU has no known peak


def test_peak_flops_table_and_mfu(monkeypatch: pytest.MonkeyPatch) -> None:
    assert peak_flops(torch.device("cpu"), "bf16") is None
    assert peak_flops_for_name("NVIDIA H100 80GB HBM3", "bf16") == pytest.approx(989.5e12)
    assert peak_flops_for_name("NVIDIA H100 PCIe", "fp8") == pytest.approx(1513e12)
    assert peak_flops_for_name("NVIDIA GH200 480GB", "bf16") == pytest.approx(989.5e12)
    assert peak_flops_for_name("NVIDIA A100-SXM4-80GB", "fp32", tf32=True) == pytest.approx(156e12)
    assert peak_flops_for_name("NVIDIA A100-SXM4-80GB", "fp8") is None  # no fp8 units
    assert peak_flops_for_name("NVIDIA L40", "bf16") is None  # not an L4, not an L40S
    assert peak_flops_for_name("Tesla T4", "bf16") is None
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    assert peak_flops(torch.device("cuda"), "bf16") == pytest.approx(989.5e12)
    assert mfu(1000.0, 6e9, 1e13) == pytest.approx(0.6)
    assert mfu(1000.0, 6e9, None) is None and mfu(1000.0, None, 1e13) is None


def test_truncate_after_drops_later_lines_and_torn_ones(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "m.jsonl")
    for step in (1, 2, 3, 4):
        log.append({"step": step, "loss": step / 3})
    with log.path.open("a") as f:
        f.write('{"step": 5, "lo')
    log.truncate_after(2)
    assert log.path.read_text().splitlines() == ['{"step": 1, "loss": 0.3333333333333333}',
                                                 '{"step": 2, "loss": 0.6666666666666666}']


def test_invalid_train_config_names_the_fields() -> None:
    with pytest.raises(ConfigError) as err:
        TrainConfig(steps=0, batch_size=6, grad_accum=4, spike_factor=0.5, device="tpu")
    text = str(err.value)
    for name in ("steps", "batch_size", "spike_factor", "device"):
        assert f"{name}:" in text
    assert "multiple of grad_accum" in text
    nested = from_mapping(TrainConfig, {"steps": 100, "optimizer": {"name": "muon"},
                                        "schedule": {"name": "wsd", "warmup_steps": 5}})
    assert nested.optimizer.name == "muon" and nested.schedule.name == "wsd"
    with pytest.raises(ConfigError, match="warmup_steps is 50; must not exceed steps"):
        TrainConfig(steps=10)

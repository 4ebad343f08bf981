"""DARTS on nb201: the relaxation and its payloads, first/second order, DARTS- and resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from search_engine import create_space
from search_engine.oneshot import alpha_table, create_oneshot, load_checkpoint, most_likely_cells
from search_engine.oneshot.darts import DartsJob, dead_cells
from search_engine.oneshot.supernet import choices_to_arch
from search_engine.spaces.nb201 import EDGE_LABELS, OPS
from search_engine.task import make_task


def digits_task(per_class: int | None = 40, seed: int = 0):
    data = load_digits()
    rng = np.random.default_rng(seed)
    if per_class is None:
        keep = np.arange(len(data.target))
    else:
        keep = np.sort(np.concatenate([rng.permutation(np.flatnonzero(data.target == c))[:per_class]
                                       for c in range(10)]))
    X = (data.images[keep] / 16.0)[:, None].astype(np.float32)
    return make_task("digits" if per_class is None else "digits-small", X, data.target[keep], seed=seed)


@pytest.fixture(scope="module")
def task():
    return digits_task()


@pytest.fixture(scope="module")
def space():
    return create_space("nb201", C=4, N=1)


FAST = {"epochs": 2, "batch_size": 32, "device": "cpu", "threads": 1, "top_k": 3, "warmup_fraction": 0.0}


def darts_job(space, seed=0, **overrides) -> DartsJob:
    return create_oneshot("darts", space, seed=seed, **{**FAST, **overrides})


def comparable(history):
    return [{k: v for k, v in h.items() if k not in ("epoch_time_s", "replayed")} for h in history]


class Crash(Exception):
    pass


# -- payloads ------------------------------------------------------------------------------------


def test_it_reports_alphas_and_the_discretised_cell_every_epoch(space, task):
    progress = []
    result = darts_job(space, arch_lr=3e-3, remedy="darts_minus").run(
        task, report_progress=lambda s, v: progress.append((s, v)))

    assert [s for s, _ in progress] == [1, 2]
    for _, values in progress:
        assert {"supernet_loss", "supernet_acc", "val_acc", "alphas", "genotype", "skip_fraction", "beta"} <= set(values)
        assert list(values["alphas"]) == list(EDGE_LABELS)
        for weights in values["alphas"].values():
            assert list(weights) == list(OPS)
            assert sum(weights.values()) == pytest.approx(1.0, abs=1e-5)
        arch = space.from_string(values["genotype"])
        argmax = {edge: max(w, key=w.get) for edge, w in values["alphas"].items()}
        assert arch == argmax
        assert values["skip_fraction"] == sum(op == "skip_connect" for op in arch.values()) / 6
    assert progress[0][1]["alphas"] != progress[1][1]["alphas"], "the alphas must move"
    # The first of the top cells is the argmax cell; scores are probabilities, best first.
    assert space.to_string(result.top_archs[0][0]) == progress[-1][1]["genotype"]
    scores = [p for _, p in result.top_archs]
    assert scores == sorted(scores, reverse=True) and 0 < scores[-1] <= scores[0] < 1
    assert result.score_name == "alpha_probability"


def test_the_most_likely_cells_are_exact_and_sum_to_one():
    alphas = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    cells = most_likely_cells(alphas, 5 ** 6)

    assert cells[0][0] == alphas.argmax(dim=-1).tolist()
    assert sum(p for _, p in cells) == pytest.approx(1.0, abs=1e-9)
    assert [p for _, p in cells] == sorted((p for _, p in cells), reverse=True)
    table = alpha_table(alphas)
    expected = F.softmax(alphas.double(), dim=-1)[2, 3].item()
    assert table[EDGE_LABELS[2]][OPS[3]] == pytest.approx(expected, abs=1e-6)


def test_the_auxiliary_skip_decays_linearly_to_zero_only_with_darts_minus(space, task):
    minus = darts_job(space, epochs=4, remedy="darts_minus", beta0=1.0)
    plain = darts_job(space, epochs=4, remedy="none")
    for job in (minus, plain):
        job.task, job.device = task, torch.device("cpu")
        job.setup(task, job.device)
    total = minus.steps * 4

    assert [minus.beta(s) for s in (0, total // 2, total)] == pytest.approx([1.0, 1 - (total // 2) / total, 0.0])
    assert plain.beta(0) == 0.0


# -- second order --------------------------------------------------------------------------------


def test_the_second_order_gradient_reduces_to_the_first_order_one_without_a_virtual_step(space, task):
    job = darts_job(space, order="second")
    job.task, job.device = task, torch.device("cpu")
    job.setup(task, job.device)
    xt, yt, xv, yv = task.X_train[:16], task.y_train[:16], task.X_val[:16], task.y_val[:16]
    before = {k: v.clone() for k, v in job.model.state_dict().items()}

    second = job._unrolled_arch_grad(xt, yt, xv, yv, lr=0.0, beta=0.5)
    after = {k: v.clone() for k, v in job.model.state_dict().items()}
    (first,) = torch.autograd.grad(F.cross_entropy(job.model(xv, aux_skip=0.5), yv), [job.model.alphas])

    assert all(torch.equal(before[k], after[k]) for k in before), "weights and BN stats are restored"
    assert torch.allclose(second, first, atol=1e-6)
    with_step = job._unrolled_arch_grad(xt, yt, xv, yv, lr=0.05, beta=0.5)
    assert torch.isfinite(with_step).all() and not torch.allclose(with_step, first)


def test_second_order_darts_runs_an_epoch(space, task):
    result = darts_job(space, epochs=1, order="second", arch_lr=3e-3).run(task)

    assert result.completed and np.isfinite(result.history[0]["supernet_loss"])
    space.from_string(result.history[0]["genotype"])


# -- resume and determinism ----------------------------------------------------------------------


def test_a_killed_darts_job_resumes_to_the_same_alphas_and_weights(space, task, tmp_path):
    straight = darts_job(space, epochs=4).run(task, checkpoint_dir=tmp_path / "straight")

    def crash(step, values):
        if step == 2:
            raise Crash

    with pytest.raises(Crash):
        darts_job(space, epochs=4).run(task, report_progress=crash, checkpoint_dir=tmp_path / "killed")
    resumed = darts_job(space, epochs=4).run(task, checkpoint_dir=tmp_path / "killed")

    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "killed")
    assert torch.equal(a["model"]["alphas"], b["model"]["alphas"])
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["optimizers"]["arch"]["state"][0]["step"] == b["optimizers"]["arch"]["state"][0]["step"]
    assert comparable(resumed.history) == comparable(straight.history)
    assert resumed.top_archs == straight.top_archs


def test_darts_is_deterministic_for_a_seed(space, task):
    first = darts_job(space, epochs=1).run(task)
    again = darts_job(space, epochs=1).run(task)
    other = darts_job(space, seed=1, epochs=1).run(task)

    assert comparable(first.history) == comparable(again.history)
    assert first.history[0]["alphas"] != other.history[0]["alphas"]


# -- the collapse remedy ---------------------------------------------------------------------------


def _all_skip_alphas() -> torch.Tensor:
    alphas = torch.zeros(6, 5)
    alphas[:, OPS.index("skip_connect")] = 4.0
    alphas[:, OPS.index("none")] = 3.0
    return alphas


def test_the_skip_cap_never_returns_too_many_skips_or_a_dead_cell(space, task):
    job = darts_job(space, remedy="skip_cap", max_skip=2, top_k=20)
    job.task, job.device = task, torch.device("cpu")
    job.setup(task, job.device)
    with torch.no_grad():
        job.model.alphas.copy_(_all_skip_alphas())  # the collapsed state, as if the cap never stopped it

    top, final = job.finish(lambda s, v: None, lambda: False)

    assert len(top) == 20
    for arch, _ in top:
        ops = list(arch.values())
        assert ops.count("skip_connect") <= 2
        assert not dead_cells(np.array([[OPS.index(op) for op in ops]]))[0]
    assert final["genotype"] == space.to_string(top[0][0])
    # Unconstrained, the same alphas give the all-skip cell: the cap is what changed the answer.
    assert set(choices_to_arch(most_likely_cells(_all_skip_alphas(), 1)[0][0]).values()) == {"skip_connect"}


def test_dead_cells_are_those_without_a_path_from_input_to_output():
    def cell(text):
        return np.array([[OPS.index(op) for op in create_space("nb201").from_string(text).values()]])

    assert dead_cells(cell("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"))[0]
    assert dead_cells(cell("|skip_connect~0|+|none~0|none~1|+|none~0|none~1|none~2|"))[0]
    assert not dead_cells(cell("|skip_connect~0|+|none~0|none~1|+|none~0|skip_connect~1|none~2|"))[0]
    assert not dead_cells(cell("|none~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|"))[0]


def test_the_skip_cap_stops_the_search_early_and_a_resume_does_not_train_on(space, task, tmp_path):
    progress = []
    result = darts_job(space, epochs=4, arch_lr=0.05, remedy="skip_cap", max_skip=0).run(
        task, report_progress=lambda s, v: progress.append(v), checkpoint_dir=tmp_path)

    stop = [v for v in progress if "early_stop" in v]
    assert len(stop) == 1 and stop[0] is progress[-1] and stop[0]["epoch"] < 4
    assert stop[0]["skip_fraction"] > 0
    assert result.completed and result.stopped_because.startswith("early stop")
    assert all("skip_connect" not in arch.values() for arch, _ in result.top_archs)
    again = darts_job(space, epochs=4, arch_lr=0.05, remedy="skip_cap", max_skip=0).run(task, checkpoint_dir=tmp_path)
    assert again.epochs_done == result.epochs_done and again.top_archs == result.top_archs


@pytest.mark.parametrize("remedy", ["skip_cap"])
def test_with_the_remedy_the_cell_is_neither_all_skip_nor_all_none(remedy):
    space = create_space("nb201", C=8, N=1)
    result = create_oneshot(
        "darts", space, seed=0, epochs=4, batch_size=32, arch_lr=3e-3, remedy=remedy,
        device="cpu", threads=1,
    ).run(digits_task(per_class=60))

    for arch, _ in result.top_archs:
        assert set(arch.values()) not in ({"skip_connect"}, {"none"}), space.to_string(arch)
    assert set(space.from_string(result.final["genotype"]).values()) not in ({"skip_connect"}, {"none"})


@pytest.mark.slow
def test_the_skip_cap_stops_a_drift_to_skip_connections_and_keeps_convolutions():
    """The bench's collapse setting (digits, C=4, N=3, 3 warm-up epochs of 10): until the cap
    acts, the trajectory IS plain DARTS (same seed; the remedy only decides when to stop), and
    plain DARTS drifts to half of the edges being skip connections by epoch 7."""
    space = create_space("nb201", C=4, N=3)
    result = create_oneshot(
        "darts", space, seed=0, epochs=10, batch_size=64, arch_lr=3e-3, warmup_fraction=0.3,
        remedy="skip_cap", device="cpu", threads=1,
    ).run(digits_task(per_class=None))

    assert result.stopped_because.startswith("early stop") and result.epochs_done < 10
    assert result.history[-1]["skip_fraction"] > 2 / 6
    kept = space.from_string(result.final["genotype"])
    assert list(kept.values()).count("skip_connect") <= 2
    assert {"nor_conv_1x1", "nor_conv_3x3"} & set(kept.values())

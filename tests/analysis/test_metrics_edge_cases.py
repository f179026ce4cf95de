"""Evaluation edge cases (issue 15): non-finite outputs, NaN scores in AUC, labels outside [0, C), and
empty inputs — each a test, each computed by hand here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vittui.analysis import metrics as M
from vittui.analysis.evaluate import evaluate

NAN = float("nan")


def test_non_finite_rows_count_as_wrong_and_are_reported():
    probs = np.array([[0.9, 0.05, 0.05], [NAN, NAN, NAN], [0.1, 0.8, 0.1], [np.inf, 0, 0], [0.2, 0.2, 0.6]])
    labels = np.array([0, 0, 1, 2, 2])
    r = M.report_from_probs(probs, labels, 3)
    assert r.nonfinite == 2
    assert r.top1 == pytest.approx(3 / 5)  # the two bad rows are wrong, not class 0
    assert r.top5 == pytest.approx(3 / 5)  # k = 3 = every class, still wrong for the bad rows
    assert r.confusion == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]  # bad rows predict nothing
    assert [c["support"] for c in r.per_class] == [2, 1, 2]
    assert [c["recall"] for c in r.per_class] == [0.5, 1.0, 0.5]
    assert [c["precision"] for c in r.per_class] == [1.0, 1.0, 1.0]
    assert math.isfinite(r.ece)  # over the finite rows
    assert "non-finite outputs (NaN/Inf, counted wrong) | 2" in r.to_markdown()


def test_all_nan_logits_through_evaluate():
    class NaNModel(torch.nn.Module):
        def forward(self, x):
            return torch.full((len(x), 3), float("nan"))

    loader = [(torch.zeros(5, 1), torch.tensor([0, 0, 1, 2, 1]))]
    r = evaluate(NaNModel(), loader, 3)
    assert (r.nonfinite, r.top1, r.confusion) == (5, 0.0, [[0] * 3] * 3)
    assert r.balanced_accuracy == 0.0 and r.macro_f1 == 0.0


def test_auc_refuses_nan_scores_and_clinical_metrics_say_how_many():
    with pytest.raises(ValueError, match="1 of 4 scores are not finite"):
        M.roc_auc(np.array([NAN, 0.2, 0.8, 0.4]), np.array([1, 0, 1, 0]))
    b = M.binary_clinical(np.array([NAN, 0.2, 0.8, 0.4]), np.array([1, 0, 1, 0]))
    assert b["nonfinite"] == 1
    assert b["auc"] == 1.0 and b["sensitivity"] == 1.0 and b["tp"] + b["fn"] == 1  # the NaN row left out
    r = M.report_from_probs(np.array([[NAN, NAN], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]]), [1, 0, 1, 0], 2)
    assert r.binary["nonfinite"] == 1 and r.nonfinite == 1


@pytest.mark.parametrize("bad", [-1, 3, 7])
def test_label_outside_the_classes_is_an_error(bad):
    with pytest.raises(ValueError, match=rf"label {bad} \(row 2\) is outside \[0, 3\)"):
        M.confusion_matrix([0, 1, bad], [0, 1, 1], 3)
    with pytest.raises(ValueError, match="outside"):
        M.report_from_probs(np.full((3, 3), 1 / 3), [0, 1, bad], 3)


def test_prediction_outside_the_classes_is_an_error():
    with pytest.raises(ValueError, match="prediction -1"):
        M.confusion_matrix([0, 1, 2], [0, 1, -1], 3)


def test_empty_inputs_give_nan_for_every_metric():
    r = M.report_from_probs(np.zeros((0, 3)), np.zeros(0, dtype=int), 3, loss=0.0)
    rates = [r.top1, r.top5, r.macro_f1, r.balanced_accuracy, r.ece, r.loss]
    rates += [c[k] for c in r.per_class for k in ("precision", "recall", "f1")]
    assert all(math.isnan(v) for v in rates), rates
    assert r.n == 0 and r.nonfinite == 0 and r.confidence_correct is None and r.confidence_wrong is None
    assert math.isnan(M.topk_accuracy(np.zeros((0, 3)), [], 1))
    assert math.isnan(M.expected_calibration_error([], []))


@pytest.mark.parametrize("loader", [[], [(torch.zeros(0, 1), torch.zeros(0, dtype=torch.long))]],
                         ids=["no batch", "one empty batch"])
def test_empty_loader_gives_nan_loss_either_way(loader):
    r = evaluate(torch.nn.Linear(1, 3), loader, 3)
    assert r.n == 0 and math.isnan(r.loss) and math.isnan(r.top1) and math.isnan(r.macro_f1)

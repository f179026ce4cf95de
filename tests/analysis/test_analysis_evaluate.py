import json

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from vittui.analysis import evaluate as E
from vittui.analysis import metrics as M


def tiny_timm(num_classes=10):
    import timm

    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2, embed_dim=64,
                             num_heads=2, num_classes=num_classes)


def synthetic_loader(n_batches=3, bs=8, num_classes=10, seed=0, skipped=False):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n_batches):
        x = torch.randn(bs, 3, 32, 32, generator=g)
        y = torch.randint(0, num_classes, (bs,), generator=g)
        out.append((x, y, i) if skipped else (x, y))
    return out


# ---- calibration ----------------------------------------------------------------------------------------------

def ref_ece(conf, correct, n_bins=15):
    total, ece = len(conf), 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        idx = [i for i, c in enumerate(conf) if (lo < c <= hi) or (b == 0 and c == 0)]
        if idx:
            acc = sum(correct[i] for i in idx) / len(idx)
            cf = sum(conf[i] for i in idx) / len(idx)
            ece += len(idx) / total * abs(acc - cf)
    return ece


def test_ece_perfectly_calibrated_is_zero():
    conf = [0.5] * 2 + [0.75] * 4 + [0.9] * 10 + [1.0] * 5
    correct = [1, 0] + [1, 1, 1, 0] + [1] * 9 + [0] + [1] * 5
    assert M.expected_calibration_error(conf, correct) == pytest.approx(0.0, abs=1e-12)
    rng = np.random.default_rng(0)
    c = rng.uniform(0.1, 1.0, 200_000)
    ok = rng.random(c.size) < c
    assert M.expected_calibration_error(c, ok) < 0.01


def test_ece_known_miscalibration():
    conf = [0.9] * 10 + [0.65] * 10
    correct = [1] * 6 + [0] * 4 + [1] * 6 + [0] * 4
    # half the samples at 0.9 with 60% right, half at 0.65 with 60% right
    assert M.expected_calibration_error(conf, correct) == pytest.approx(0.5 * 0.3 + 0.5 * 0.05, abs=1e-9)
    rng = np.random.default_rng(1)
    c = rng.random(500)
    ok = rng.random(500) < 0.5
    assert M.expected_calibration_error(c, ok) == pytest.approx(ref_ece(list(c), list(ok)), abs=1e-9)


def test_reliability_table_rows():
    rows = M.reliability_table([0.05, 0.9, 0.95, 0.0], [1, 1, 0, 0])
    assert len(rows) == 15 and rows[0]["lo"] == 0.0 and rows[-1]["hi"] == 1.0
    assert rows[0]["count"] == 2 and rows[0]["accuracy"] == 0.5 and rows[0]["confidence"] == pytest.approx(0.025)
    assert rows[13]["count"] == 1 and rows[14]["count"] == 1  # 0.9 -> (0.867, 0.933], 0.95 -> last bin
    assert rows[5]["count"] == 0 and rows[5]["accuracy"] is None
    assert sum(r["count"] for r in rows) == 4


# ---- classification metrics -------------------------------------------------------------------------------------

def test_confusion_and_per_class_match_sklearn():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 5, 300)
    p = np.where(rng.random(300) < 0.6, y, rng.integers(0, 4, 300))  # class 4 never predicted wrongly
    p[p == 4] = 3  # and never predicted at all: precision 0 by convention
    cm = M.confusion_matrix(y, p, 5)
    np.testing.assert_array_equal(cm, skm.confusion_matrix(y, p, labels=range(5)))
    m = M.per_class_metrics(y, p, 5)
    pr, rc, f1, sup = skm.precision_recall_fscore_support(y, p, labels=range(5), zero_division=0)
    np.testing.assert_allclose(m["precision"], pr, atol=1e-12)
    np.testing.assert_allclose(m["recall"], rc, atol=1e-12)
    np.testing.assert_allclose(m["f1"], f1, atol=1e-12)
    np.testing.assert_array_equal(m["support"], sup)


def test_topk_and_auc_match_sklearn():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(200, 7))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = rng.integers(0, 7, 200)
    for k in (1, 3, 5):
        assert M.topk_accuracy(probs, y, k) == pytest.approx(skm.top_k_accuracy_score(y, probs, k=k, labels=range(7)))
    scores = np.round(rng.random(300), 1)  # many ties
    labels = rng.integers(0, 2, 300)
    assert M.roc_auc(scores, labels == 1) == pytest.approx(skm.roc_auc_score(labels, scores), abs=1e-12)
    assert M.roc_auc([0.1, 0.2], [True, True]) is None


def test_binary_clinical_counts():
    s = [0.9, 0.8, 0.3, 0.6, 0.2, 0.1, 0.5]
    y = [1, 1, 1, 0, 0, 0, 0]
    b = M.binary_clinical(s, y, threshold=0.5)
    # predicted positive: 0.9, 0.8, 0.6, 0.5 -> tp 2, fp 2; negative: 0.3 (fn), 0.2, 0.1 (tn)
    assert (b["tp"], b["fp"], b["tn"], b["fn"]) == (2, 2, 2, 1)
    assert b["sensitivity"] == pytest.approx(2 / 3)
    assert b["specificity"] == pytest.approx(0.5)
    assert b["auc"] == pytest.approx(skm.roc_auc_score(y, s))


# ---- running models ---------------------------------------------------------------------------------------------

def test_evaluate_tiny_model(tmp_path):
    model = tiny_timm()
    model.train()
    loader = synthetic_loader(skipped=True)
    report = E.evaluate(model, loader, 10, class_names=[f"c{i}" for i in range(10)])
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(x) for x, _, _ in loader])
    y = torch.cat([b[1] for b in loader])
    assert report.n == 24 and report.skipped == 0 + 1 + 2
    assert report.top1 == pytest.approx(float((logits.argmax(1) == y).float().mean()))
    assert report.top5_k == 5
    assert report.top5 == pytest.approx(float((logits.topk(5, 1).indices == y[:, None]).any(1).float().mean()))
    assert report.loss == pytest.approx(float(torch.nn.functional.cross_entropy(logits, y)), rel=1e-5)
    assert np.array(report.confusion).sum() == 24 and report.binary is None
    assert len(report.reliability) == 15 and len(report.per_class) == 10

    report.throughput = E.throughput(model, 32, batch_sizes=(1, 4), repeats=2, warmup=1)
    assert [r["batch_size"] for r in report.throughput["runs"]] == [1, 4]
    assert all(r["images_per_s"] > 0 and r["latency_ms"] > 0 for r in report.throughput["runs"])
    report.robustness = E.robustness(model, loader, max_batches=1)
    assert len(report.robustness) == 1 + 9 and report.robustness[0]["corruption"] == "clean"

    pj, pm = M.write_report(tmp_path, report)
    d = json.loads(pj.read_text())
    assert d["top1"] == report.top1 and d["class_names"][3] == "c3"
    assert M.EvalReport.from_dict(d).confusion == report.confusion
    md = pm.read_text()
    for heading in ("## Summary", "## Per class", "## Confusion matrix", "## Reliability", "## Robustness",
                    "## Throughput"):
        assert heading in md
    assert "| c3 |" in md


def test_evaluate_binary_hf_model():
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    model = ViTForImageClassification(ViTConfig(image_size=32, patch_size=8, num_hidden_layers=2, hidden_size=64,
                                                num_attention_heads=2, intermediate_size=128, num_labels=2))
    loader = synthetic_loader(n_batches=4, num_classes=2, seed=5)
    report = E.evaluate(model, loader, 2, threshold=0.5)
    model.eval()
    with torch.no_grad():
        probs = torch.cat([model(x).logits.softmax(-1) for x, _ in loader])[:, 1].numpy()
    y = torch.cat([b[1] for b in loader]).numpy()
    assert report.top5_k == 2 and report.top5 == 1.0
    assert report.binary["auc"] == pytest.approx(skm.roc_auc_score(y, probs), abs=1e-9)
    pred = probs >= 0.5
    assert report.binary["sensitivity"] == pytest.approx(pred[y == 1].mean())
    assert report.binary["specificity"] == pytest.approx((~pred[y == 0]).mean())
    assert "AUC" in report.to_markdown()


def test_corruptions_on_normalised_tensors():
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    x01 = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    m = torch.tensor(mean, dtype=torch.float64).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float64).view(1, 3, 1, 1)
    x = (x01 - m) / s
    # identities
    torch.testing.assert_close(E.corrupt(x, "contrast", 1.0, mean, std), x)
    torch.testing.assert_close(E.corrupt(x, "gaussian_noise", 0.0, mean, std), x)
    # contrast 0 leaves each image's per-channel mean everywhere
    flat = E.corrupt(x, "contrast", 0.0, mean, std) * s + m
    torch.testing.assert_close(flat, x01.mean(dim=(-2, -1), keepdim=True).expand_as(x01))
    # blur keeps a constant image constant and matches a hand-written separable convolution inside
    const = torch.full((1, 3, 16, 16), 0.3, dtype=torch.float64)
    torch.testing.assert_close(E.corrupt01(const, "gaussian_blur", 1.0), const)
    k = E.gaussian_kernel1d(1.0)
    assert float(k.sum()) == pytest.approx(1.0) and k.numel() == 7
    blurred = E.corrupt01(x01, "gaussian_blur", 1.0)
    i, j = 8, 7
    ref = sum(k[a] * k[b] * x01[0, 1, i + a - 3, j + b - 3] for a in range(7) for b in range(7))
    assert float(blurred[0, 1, i, j]) == pytest.approx(float(ref), abs=1e-9)
    # noise is reproducible with a seeded generator and stays in range after clipping
    a = E.corrupt01(x01, "gaussian_noise", 0.2, torch.Generator().manual_seed(0))
    b = E.corrupt01(x01, "gaussian_noise", 0.2, torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    with pytest.raises(ValueError):
        E.corrupt01(x01, "fog", 1.0)

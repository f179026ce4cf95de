import subprocess
import sys

import pytest

from vittui import recipe as R
from vittui.recipe import Recipe, RecipeError


@pytest.mark.parametrize("name", R.list_presets())
def test_every_preset_loads_validates_and_round_trips(name):
    r = R.load_preset(name)
    assert R.loads(R.dumps(r)) == r
    assert R.dumps(R.loads(R.dumps(r))) == R.dumps(r)


def test_required_presets_are_shipped():
    assert {"demo-digits", "deit-tiny-scratch", "deit-small-scratch", "finetune-vit-base", "linear-probe",
            "lora-vit-base"} <= set(R.list_presets())


def test_deit_recipe_matches_the_paper():
    r = R.load_preset("deit-small-scratch")
    assert r.optim.name == "adamw" and r.optim.lr == pytest.approx(5e-4 * r.data.batch_size / 512)
    assert r.optim.weight_decay == 0.05 and r.schedule.warmup_epochs == 5 and r.schedule.kind == "cosine"
    assert r.regularize.label_smoothing == 0.1 and r.regularize.drop_path == 0.1
    assert r.augment.auto_augment == "rand-m9-mstd0.5-inc1"
    assert (r.augment.mixup, r.augment.cutmix, r.augment.re_prob) == (0.8, 1.0, 0.25)
    t = R.load_preset("deit-tiny-scratch")
    assert t.optim.lr == pytest.approx(5e-4 * t.data.batch_size / 512)


def test_default_round_trip_and_none_fields_omitted():
    r = Recipe()
    text = R.dumps(r)
    assert "patch_size" not in text  # None: left out, since TOML has no null
    assert R.loads(text) == r


def test_overrides_parse_toml_values():
    r = Recipe().with_overrides(["optim.lr=3e-4", "data.batch_size=8", "model.name=deit_small_patch16_224",
                                 "augment.crop_scale=[0.5, 1.0]", "regularize.ema=true"])
    assert r.optim.lr == 3e-4 and r.data.batch_size == 8 and r.model.name == "deit_small_patch16_224"
    assert r.augment.crop_scale == (0.5, 1.0) and r.regularize.ema is True


def test_int_widens_to_float_but_not_the_reverse():
    assert Recipe().with_overrides({"optim.lr": 1}).optim.lr == 1.0
    with pytest.raises(RecipeError, match="data.batch_size must be an integer"):
        Recipe().with_overrides({"data.batch_size": 1.5})


MALFORMED = [
    ("[optim]\nlr = -0.1", "optim.lr must be > 0 (got -0.1)"),
    ("[optim]\nlr = 0", "optim.lr must be > 0"),
    ("[optim]\nlrr = 0.1", "unknown key optim.lrr (did you mean optim.lr?)"),
    ("[optimizer]\nlr = 0.1", "unknown key optimizer (did you mean optim?)"),
    ("[optim]\nname = 'adam'", "optim.name must be one of adamw, sgd (got 'adam'); did you mean 'adamw'?"),
    ("[optim]\nlayer_decay = 1.5", "optim.layer_decay must be <= 1"),
    ("[optim]\nbetas = [0.9, 1.0]", "optim.betas"),
    ("[optim]\nbetas = [0.9]", "optim.betas must have 2 entries"),
    ("[optim]\nmomentum = 1.0", "optim.momentum must be < 1"),
    ("[data]\nbatch_size = 0", "data.batch_size must be >= 1"),
    ("[data]\nbatch_size = '64'", "data.batch_size must be an integer"),
    ("[data]\nsource = 'imagefolder'", "data.path is required"),
    ("[data]\nsource = 'cifar'", "data.source must be one of"),
    ("[data]\nval_fraction = 1.0", "data.val_fraction must be < 1"),
    ("[data]\nstd = [0.2, 0.0, 0.2]", "data.std entries must be > 0"),
    ("[data]\nmean = [0.5, 0.5]", "data.mean and data.std"),
    ("[augment]\nre_prob = 2", "augment.re_prob must be <= 1"),
    ("[augment]\nmixup = -1", "augment.mixup must be >= 0"),
    ("[augment]\ncrop_scale = [0.9, 0.5]", "augment.crop_scale must satisfy"),
    ("[augment]\nauto_augment = 'randaug'", "augment.auto_augment must be a timm policy"),
    ("[augment]\nhflip = true", "augment.hflip must be a number"),
    ("[regularize]\nlabel_smoothing = 1.0", "regularize.label_smoothing must be < 1"),
    ("[regularize]\ndrop_path = -0.1", "regularize.drop_path must be >= 0"),
    ("[regularize]\nema = 1", "regularize.ema must be true or false"),
    ("[schedule]\nepochs = 0", "schedule.epochs must be >= 1"),
    ("[schedule]\nkind = 'step'", "schedule.kind must be one of"),
    ("[schedule]\nmin_lr = 1.0", "schedule.min_lr (1) must not exceed optim.lr"),
    ("[adapt]\nfreeze = 'first_n'", "adapt.freeze_blocks must be >= 1"),
    ("[adapt]\nfreeze = 'head'", "adapt.freeze must be one of"),
    ("[adapt]\nlora_r = 0", "adapt.lora_r must be >= 1"),
    ("[model]\nimg_size = 30\npatch_size = 4", "model.img_size (30) must be a multiple of model.patch_size (4)"),
    ("[model]\nembed_dim = 100\nnum_heads = 3", "model.embed_dim (100) must be divisible by model.num_heads (3)"),
    ("[model]\nsource = 'torchvision'", "model.source must be one of"),
    ("[model]\ndepth = 2\n[adapt]\nfreeze = 'all_but_last_n'\nfreeze_blocks = 3", "adapt.freeze_blocks (3) exceeds model.depth (2)"),
    ("[compute]\nprecision = 'fp16'\ndevice = 'cpu'", "needs a CUDA device"),
    ("[compute]\naccumulation = 0", "compute.accumulation must be >= 1"),
    ("[compute]\nprecision = 'float16'", "compute.precision must be one of"),
    ("[run]\nname = '../x'", "run.name must be a plain folder name"),
    ("[run]\nkeep_last = 0", "run.keep_last must be >= 1"),
    ("optim = 3", "[optim] must be a table"),
    ("[optim\nlr = 1", "TOML syntax error"),
    ("[optim]\nlr = 1e-3\nlr = 2e-3", "TOML syntax error"),
    ("[optim]\nlr = nan", "optim.lr must be a finite number"),
    ("[run]\nnotify = ['ntfy.sh/mytopic']", "run.notify entries must be URLs with a scheme"),
    ("[run]\nnotify = 'json://host/x'", "run.notify must be a list of strings"),
    ("[run]\nnotify = [3]", "run.notify[0] must be a string"),
]


def test_notify_urls_round_trip():
    r = R.loads("[run]\nnotify = ['json://127.0.0.1:8080/hook', 'ntfy://vittui-runs']")
    assert r.run.notify == ("json://127.0.0.1:8080/hook", "ntfy://vittui-runs")
    assert R.loads(r.to_toml()) == r


@pytest.mark.parametrize("text,message", MALFORMED)
def test_malformed_recipes_name_the_field(text, message):
    with pytest.raises(RecipeError) as info:
        R.loads(text, source="presets/x.toml")
    assert message in str(info.value)
    assert str(info.value).endswith("[presets/x.toml]")


def test_every_field_refuses_a_value_of_the_wrong_kind_and_names_itself():
    """Beyond the hand-picked cases above: each of the Recipe's fields, given a TOML table or a nested
    list, is refused with a RecipeError that names that field and the file."""
    wrong = []
    keys = R.field_keys()
    assert len(keys) > 50 and "optim.lr" in keys and "run.name" in keys
    for key in keys:
        section, leaf = key.split(".", 1)
        for value in ("{bogus = 1}", "[[1]]"):
            try:
                R.loads(f"[{section}]\n{leaf} = {value}", source="presets/x.toml")
                wrong.append(f"{key} = {value}: accepted")
            except RecipeError as e:
                if key not in str(e) or not str(e).endswith("[presets/x.toml]"):
                    wrong.append(f"{key} = {value}: {e}")
    assert wrong == []


def test_toml_syntax_error_names_the_line():
    with pytest.raises(RecipeError, match=r"line 3"):
        R.loads("[optim]\nlr = 1e-3\nweight_decay = = 2\n")


def test_missing_file():
    with pytest.raises(RecipeError, match="recipe file not found"):
        R.load_preset("no-such-preset")


def test_diff_lists_changed_fields():
    a = Recipe()
    b = a.with_overrides(["optim.lr=3e-4", "data.batch_size=8"])
    assert R.diff(a, b) == {"optim.lr": (1e-3, 3e-4), "data.batch_size": (64, 8)}


def test_set_value_keeps_old_recipe_on_error():
    r = Recipe()
    with pytest.raises(RecipeError):
        R.set_value(r, "optim.lr", -1.0)
    assert r.optim.lr == 1e-3


def test_cli_bad_recipe_exits_2_without_traceback(tmp_path):
    bad = tmp_path / "x.toml"
    bad.write_text("[optim]\nlr = -0.1\n")
    p = subprocess.run([sys.executable, "-m", "vittui.cli", "train", str(bad)], capture_output=True, text=True,
                       cwd=tmp_path)
    assert p.returncode == 2
    assert "RecipeError: optim.lr must be > 0 (got -0.1)" in p.stderr
    assert "Traceback" not in p.stderr

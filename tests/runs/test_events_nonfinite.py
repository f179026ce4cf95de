"""Non-finite numbers in events: the writer emits them as json's `Infinity`/`NaN`; every reader must get them back."""

import math

from vittui.runs import events as ev


def test_non_finite_numbers_are_read_back(tmp_path):
    # Under fp16 the GradScaler's first steps often overflow: the loop emits grad_norm = inf, written as
    # `Infinity` (json allow_nan). orjson refuses that literal; a reader that drops the line loses the step
    # from every plot and from the history a resumed dashboard rebuilds.
    path = tmp_path / "events.jsonl"
    w = ev.EventWriter(path)
    w.write(ev.Step(step=1, epoch=0.1, loss=2.3, lr=1e-3, grad_norm=float("inf"), images_per_s=100.0,
                    data_time=0.01, step_time=0.2))
    w.write(ev.Eval(step=1, epoch=0.1, loss=float("nan"), top1=10.0, top5=50.0))
    w.close()
    back = ev.read_all(path)
    assert [type(e) for e in back] == [ev.Step, ev.Eval]
    assert math.isinf(back[0].grad_norm) and math.isnan(back[1].loss)
    assert [type(e) for e in ev.EventTail(path).poll()] == [ev.Step, ev.Eval]

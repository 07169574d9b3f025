"""scripts/collect_results.py: rows collected in an earlier call join the plot of a later one."""

import json

import pytest

from conftest import load_script


def _row(run, params, m):
    return {"run": run, "model": run, "params": params, "mAP": m}


def test_plot_also_adds_earlier_rows_once_and_this_runs_rows_win(tmp_path):
    pytest.importorskip("matplotlib")
    cr = load_script("collect_results")
    first = tmp_path / "first.json"
    rows = [_row("cnn14_panns_like", 76e6, 0.36), _row("audiomamba_micro", 10e6, 0.1), _row("vit_b_ast_like", 86e6, None)]
    first.write_text(json.dumps({"comparison": rows}))
    second = tmp_path / "second.json"
    rows = [_row("cnn14_panns_like", 76e6, 0.99), _row("swin_t_htsat_like", 28e6, 0.05)]
    second.write_text(json.dumps({"comparison": rows}))
    this = [_row("audiomamba_micro", 10.5e6, 0.405)]
    extra = cr.earlier_rows([first, second], {r["run"] for r in this})
    assert [(r["run"], r["mAP"]) for r in extra] == [("cnn14_panns_like", 0.36), ("vit_b_ast_like", None),
                                                    ("swin_t_htsat_like", 0.05)]
    png = tmp_path / "p.png"
    plotted = cr.plot(this + extra, png)
    assert plotted == ["audiomamba_micro", "cnn14_panns_like", "swin_t_htsat_like"]  # rows without mAP are left out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit, match="--plot-also .*missing.json"):
        cr.earlier_rows([tmp_path / "missing.json"], set())

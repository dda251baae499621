"""The large-image presets and their demo: the presets chain correctly, the demo runs end to end (in miniature),
and the `spn train` commands it prints are ones `spn train` accepts."""

import json
import shlex

import torch

from spn import configs
from spn.demo_large import train_commands
from spn.pipeline import Pipeline


def test_photo_presets_chain_size_then_depth():
    for name, size, s in (("cpu_photo256", 256, 8), ("cpu_photo512", 512, 16)):
        with torch.device("meta"):
            pipe = configs.build(name)
        assert isinstance(pipe, Pipeline)
        base, up, depth = (st.config for st in pipe.stages)
        assert (base.image_size, base.bits, base.subscale) == (32, 3, 2)
        assert (up.image_size, up.bits, up.subscale, up.first_slice_given) == (size, 3, s, True)
        assert (depth.image_size, depth.bits, depth.subscale, depth.cond_bits) == (size, 8, s, 3)
        assert up.slice_size == depth.slice_size == 32


def test_photo256_scores_an_image():
    pipe = configs.build("cpu_photo256")
    x = torch.randint(0, 256, (1, 3, 256, 256))
    with torch.no_grad():
        per = pipe.stage_bits_per_dim(x)
    assert per.shape == (1, 4) and torch.isfinite(per).all()


def test_large_demo_quick_runs_end_to_end(tmp_path, capsys):
    from spn.cli import main

    assert main(["demo", "--size", "256", "--quick", "--out", str(tmp_path)]) == 0  # run_large_demo, via spn demo
    r = json.loads((tmp_path / "results.json").read_text())
    held = r["bits_per_dim"]["held-out"]
    assert len(held["stages"]) == 3 and held["crops"] == 8
    # the total is the stages' bits weighted by the dims each models, per dim of the final image
    dims = [4 * 4 * 3, 15 * 4 * 4 * 3, 16 * 16 * 3]
    assert abs(sum(b * d for b, d in zip(held["stages"], dims)) / (16 * 16 * 3) - held["total"]) < 1e-9
    for i in range(3):
        assert (tmp_path / f"samples_stage{i}.png").is_file()
    assert "stage 2" in capsys.readouterr().out


def test_printed_train_commands_parse():
    from spn.cli import build_parser

    for size in (256, 512):
        for i, cmd in enumerate(train_commands(size, 300)):
            a = build_parser().parse_args(shlex.split(cmd)[1:])
            assert (a.preset, a.stage, a.time_budget) == (f"cpu_photo{size}", i, 100)
            assert a.subsample == (size // 32 if i == 0 else 1)


def test_demo_size_flags_that_do_not_combine(tmp_path, capsys):
    from spn.cli import main

    assert main(["demo", "--size", "256", "--labels", "--quick", "--out", str(tmp_path / "a")]) == 2
    assert main(["demo", "--data", "somewhere", "--quick", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "does not combine with --size" in err and "--data is for --size 256/512" in err

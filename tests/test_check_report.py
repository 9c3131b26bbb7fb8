"""The cross-checker on its own: `convhub check`, user inputs, unchecked artifacts, the HTML report."""

import json
import shutil
import tempfile

import numpy as np
import pytest

import convhub
from convhub import cli, hookimpl, parity, pipeline, report
from convhub.plugins import Registry, plugin_manager
from convhub.types import Conversion, Format
from conftest import build_cnn, screenshot



@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """A SavedModel, its faithful .tflite, and a .tflite of the same model with one weight off by 5%."""
    root = tmp_path_factory.mktemp("check")
    model = build_cnn(seed=11)
    model.export(str(root / "sm"), verbose=False)
    convhub.convert(root / "sm", to="tflite", output=root / "good.tflite")
    kernel = model.layers[-1].kernel
    kernel.assign(kernel * 1.05)
    with tempfile.TemporaryDirectory() as tmp:
        model.export(tmp, verbose=False)
        convhub.convert(tmp, to="tflite", output=root / "drifted.tflite")
    return root


def test_check_compares_without_converting(artifacts, capsys):
    code = cli.main(["check", str(artifacts / "sm"), str(artifacts / "good.tflite"), str(artifacts / "drifted.tflite"), "--json", "-q"])
    report_json = json.loads(capsys.readouterr().out)
    assert code == 1 and report_json["ok"] is False
    good, drifted = report_json["parity"]
    assert good["passed"] and good["max_abs_diff"] < 1e-4
    assert not drifted["passed"] and drifted["max_abs_diff"] > 1e-3
    out = drifted["outputs"][0]
    assert out["name"] == "output_0" and out["beyond_fraction"] > 0.5 and 0.9 < out["cosine"] < 1.0
    assert set(out) >= {"max_abs_diff", "max_rel_diff", "mean_abs_diff", "beyond_fraction", "cosine", "top1_agreement"}
    assert "drifted.tflite" in report_json["error"] and "output 'output_0'" in report_json["error"]


def test_the_reported_needed_atol_is_the_smallest_that_passes(artifacts):
    """Rerun what `check` ran (seed 0): the reported atol passes the drifted outputs, 10% less fails."""
    from convhub_tensorflow.saved_model import Session as SavedModelSession
    from convhub_tflite.tflite import Session as TFLiteSession

    result = pipeline.check(artifacts / "sm", [artifacts / "drifted.tflite"])
    (entry,) = result.parity
    (reported,) = entry.outputs
    reference = SavedModelSession(result.reference)
    feeds = parity.make_inputs(reference.inputs, result.seed)
    ref = reference.run(feeds)["output_0"]
    cand = TFLiteSession(result.candidates[0]).run(feeds)["output_0"]
    rtol = entry.tolerance.rtol
    assert not parity.compare_output("output_0", ref, cand, entry.tolerance).passed
    assert parity.compare_output("output_0", ref, cand, parity.Tolerance(reported.needed_atol, rtol)).passed
    assert not parity.compare_output("output_0", ref, cand, parity.Tolerance(reported.needed_atol * 0.9, rtol)).passed


def test_a_failed_agreement_says_when_its_rows_cannot_tell_it_from_a_pass():
    """27 of 32 rows agreeing (84 %) fails an 85 % top-1 floor, but 32 rows cannot tell 84 % from
    85 % (the 95 % interval is 68-93 %): the verdict stays a failure and says what would decide.
    112 of 128 (87.5 %) passes; 64 of 128 (50 %) fails with no such note."""
    int8 = parity.TOLERANCES["int8"]
    rng = np.random.default_rng(0)

    def scores(rows, flipped):
        ref = rng.normal(0, 1, (rows, 10)).astype(np.float32)
        ref[np.arange(rows), np.arange(rows) % 10] += 5  # a clear winner in each row
        cand = ref.copy()
        cand[np.arange(flipped), (np.arange(flipped) + 1) % 10] += 10  # another class wins in the first rows
        return ref, cand

    close = parity.compare_output("probs", *scores(32, 5), parity.Tolerance(atol=100, rtol=0.0, min_top1=int8.min_top1))
    assert not close.passed and close.top1_agreement == 27 / 32
    assert "top-1 agreement 84.4% < 85% over 32 rows (95% interval 68%–93%: within sampling error" in close.reason
    clear_pass = parity.compare_output("probs", *scores(128, 16), parity.Tolerance(atol=100, rtol=0.0, min_top1=int8.min_top1))
    assert clear_pass.passed and "top-1 87.5% ≥ 85% over 128 rows" in clear_pass.criterion
    clear_fail = parity.compare_output("probs", *scores(128, 64), parity.Tolerance(atol=100, rtol=0.0, min_top1=int8.min_top1))
    assert not clear_fail.passed and "50.0% < 85% over 128 rows" in clear_fail.reason and "interval" not in clear_fail.reason


def test_tied_scores_rank_the_same_in_top_1_and_top_5():
    """Scores tied across classes (a constant output) have their arg-max at the first of them; top-5
    breaks ties the same way, so it cannot fail where top-1 agrees (it did: 0 % against 100 %)."""
    tied = np.zeros((32, 2048), np.float32)
    same = parity.compare_output("scores", tied, tied.copy(), parity.TOLERANCES["uint8-weights"])
    assert same.top1_agreement == 1.0 and same.top5_agreement == 1.0


def test_a_quantized_models_integer_labels_are_judged_by_how_many_agree():
    """An int32 label output (an argmax, as the zoo's Orbax model returns) of a quantized model:
    8 of 128 labels flipped to far-off classes is 93.8 % agreement, a pass by the int8 top-1 floor,
    not "max abs diff 7" against a magnitude; 32 of 128 flipped (75 %) fails. A float32 check still
    wants every label equal."""
    int8 = parity.TOLERANCES["int8"]
    ref = np.random.default_rng(1).integers(0, 3, 128).astype(np.int32)
    cand = ref.copy()
    cand[:8] += 7
    passed = parity.compare_output("label", ref, cand, int8)
    assert passed.passed and passed.criterion == "equal values 93.8% ≥ 85% over 128 values"
    assert passed.rel_rms is None and passed.allowance_used is None and passed.max_abs_diff == 7
    cand[:32] = ref[:32] + 7
    failed = parity.compare_output("label", ref, cand, int8)
    assert not failed.passed and failed.reason == "equal values 75.0% < 85% over 128 values"
    assert not parity.compare_output("label", ref, ref + (np.arange(128) == 5), parity.TOLERANCES["float32"]).passed
    mask = ref > 0  # a boolean output is a decision too
    assert parity.compare_output("mask", mask, mask ^ (np.arange(128) < 8), int8).passed


def test_user_inputs_from_npz_are_used_and_reported(artifacts, tmp_path):
    feeds = tmp_path / "inputs.npz"
    np.savez(feeds, image=np.full((2, 12, 12, 2), 0.25, "float32"))
    result = pipeline.check(artifacts / "sm", [artifacts / "good.tflite"], inputs=feeds)
    assert result.ok and result.inputs == str(feeds) and result.seed is None
    bad = tmp_path / "bad.npz"
    np.savez(bad, pixels=np.zeros((2, 12, 12, 2), "float32"))
    with pytest.raises(convhub.InputError, match=r"holds \['pixels'\]; the model's inputs are \['image'\]"):
        pipeline.check(artifacts / "sm", [artifacts / "good.tflite"], inputs=bad)


class CopyWithoutRunner:
    """A new format no runtime can run: its artifacts are reported as not checked, never as passed."""

    @hookimpl
    def convhub_formats(self):
        return [Format("tflite-copy", "a copy of a .tflite", suffix=".bin")]

    @hookimpl
    def convhub_conversions(self):
        def copy(artifact, destination, options):
            shutil.copy(artifact.path, destination)

        return [Conversion("tflite", "tflite-copy", convert=copy)]


def test_an_artifact_no_runtime_can_run_is_not_checked_and_not_ok(artifacts, tmp_path):
    pm = plugin_manager()
    pm.register(CopyWithoutRunner(), name="copier")
    result = pipeline.run(artifacts / "good.tflite", "tflite-copy", tmp_path / "x.bin", registry=Registry(pm))
    (entry,) = result.parity
    assert not entry.checked and not entry.passed
    assert "not checked: no runner for 'tflite-copy'" in entry.reason
    assert not result.ok and not (tmp_path / "x.bin").exists()


def test_html_report_is_self_contained_and_shows_the_plots(artifacts, tmp_path):
    result = pipeline.check(artifacts / "sm", [artifacts / "good.tflite", artifacts / "drifted.tflite"])
    page = report.write([result], tmp_path / "report.html").read_text()
    assert "<svg" in page and page.count("<rect") > 10 and "drifted.tflite" in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "") and "<script" not in page
    png = screenshot(tmp_path / "report.html", tmp_path / "report.png")
    from PIL import Image

    pixels = Image.open(png).convert("RGB").getdata()
    bar_blue = sum(1 for p in pixels if p == (0x3B, 0x6F, 0xB6))
    assert bar_blue > 500, "the histogram bars are not on the screenshot"

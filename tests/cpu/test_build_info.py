"""The manifest, the build info it generates, and `python -m kvinfer info`."""
import os
import subprocess
import sys

import pytest

import kvinfer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MANIFEST = os.path.join(ROOT, "cuda", "manifest.py")


def test_info_matches_native_core():
    from kvinfer import _C
    d = kvinfer.info()
    assert d["version"] == kvinfer.__version__ == _C.version()
    assert d["num_instances"] == _C.num_instances() == len(d["instances"])
    assert {i["name"] for i in d["instances"]} >= {"merge_fp16", "merge_bf16", "merge_fp32"}
    assert d["cuda_archs"] and all(set(i["archs"]) <= set(d["cuda_archs"]) for i in d["instances"])
    assert len(d["gpus"]) == _C.device_count()


def test_cli_info():
    r = subprocess.run([sys.executable, "-m", "kvinfer", "info"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    d = kvinfer.info()
    assert f"kvinfer {d['version']}" in r.stdout
    assert "sm_" + d["cuda_archs"][0] in r.stdout
    assert f"kernel instances: {d['num_instances']}" in r.stdout
    assert ("none detected" in r.stdout) == (not d["gpus"])


def run_manifest(tmp_path, *args):
    return subprocess.run([sys.executable, MANIFEST, "--out", str(tmp_path), *args], capture_output=True, text=True)


def test_manifest_generates_one_file_per_instance(tmp_path):
    r = run_manifest(tmp_path, "--archs", "80;90a", "--head-dims", "128", "--dtypes", "bf16")
    assert r.returncode == 0, r.stderr
    files = sorted(os.listdir(tmp_path / "instances"))
    assert files == ["append_kv_1byte.cu", "append_kv_2byte.cu", "attention_sm80_d128_bf16_decode.cu",
                     "attention_sm80_d128_bf16_decode_lean.cu", "attention_sm80_d128_bf16_prefill.cu", "attention_sm90_d128_bf16.cu", "merge_bf16.cu",
                     "merge_fp16.cu", "merge_fp32.cu"]
    cmake = (tmp_path / "instances.cmake").read_text()
    assert all(f in cmake for f in files) and "|80,90a" in cmake
    # The Hopper instances need sm_90a (wgmma, setmaxnreg): built for 90a only.
    assert 'attention_sm90_d128_bf16.cu|90a"' in cmake
    ns = {}
    exec((tmp_path / "_build_info.py").read_text(), ns)
    assert ns["BUILD_INFO"]["head_dims"] == [128] and ns["BUILD_INFO"]["dtypes"] == ["bf16"]
    assert "KVINFER_MERGE_INSTANCE(DType::kBF16)" in (tmp_path / "dispatch_merge.inc").read_text()
    attn = (tmp_path / "dispatch_attention.inc").read_text()
    assert "KVINFER_ATTENTION_INSTANCE(128, DType::kBF16, AttnTile::kDecode)" in attn and "kF16" not in attn
    assert "KVINFER_ATTENTION_SM90_INSTANCE(128, DType::kBF16, 128)" in (tmp_path / "dispatch_attention_sm90.inc").read_text()


def test_manifest_hopper_wide_kv_tiles(tmp_path):
    # Head dims 64 / 256: the default KV tile (128 / 64 tokens) and the wide one the planner picks for
    # long KV (192 / 80); head dim 128 has one.
    r = run_manifest(tmp_path, "--archs", "90a", "--head-dims", "64;128;256", "--dtypes", "fp16")
    assert r.returncode == 0, r.stderr
    sm90 = sorted(f for f in os.listdir(tmp_path / "instances") if "sm90" in f)
    assert sm90 == ["attention_sm90_d128_fp16.cu", "attention_sm90_d256_fp16.cu", "attention_sm90_d256_fp16_kv80.cu",
                    "attention_sm90_d64_fp16.cu", "attention_sm90_d64_fp16_kv192.cu"]
    inc = (tmp_path / "dispatch_attention_sm90.inc").read_text()
    for entry in ("(64, DType::kF16, 128)", "(64, DType::kF16, 192)", "(128, DType::kF16, 128)", "(256, DType::kF16, 64)",
                  "(256, DType::kF16, 80)"):
        assert "KVINFER_ATTENTION_SM90_INSTANCE" + entry in inc
    assert "launch_attention_sm90<64, 192, DType::kF16>" in (tmp_path / "instances" / sm90[4]).read_text()
    assert "launch_attention_sm90<256, 80, DType::kF16>" in (tmp_path / "instances" / sm90[2]).read_text()


def test_manifest_without_90a_has_no_hopper_instances(tmp_path):
    r = run_manifest(tmp_path, "--archs", "80", "--head-dims", "128", "--dtypes", "bf16")
    assert r.returncode == 0, r.stderr
    assert not [f for f in os.listdir(tmp_path / "instances") if "sm90" in f]
    assert "INSTANCE" not in (tmp_path / "dispatch_attention_sm90.inc").read_text()


@pytest.mark.parametrize("args,word", [
    (("--archs", "75"), "arch"),
    (("--dtypes", "fp8"), "dtype"),
    (("--head-dims", "96"), "head dim"),
])
def test_manifest_rejects_unknown_options(tmp_path, args, word):
    r = run_manifest(tmp_path, *args)
    assert r.returncode != 0 and word in r.stderr

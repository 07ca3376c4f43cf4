"""The C++ consumer runs a merge on the GPU through the installed package and checks it."""
import subprocess

import pytest

import kvinfer

pytestmark = pytest.mark.skipif(not kvinfer.cuda_available(), reason="no CUDA GPU")


def test_consumer_runs(cpp_consumer):
    r = subprocess.run([cpp_consumer], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "kvinfer C++ consumer OK" in r.stdout

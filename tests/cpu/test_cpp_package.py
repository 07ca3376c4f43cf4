"""The installed C++ package: a consumer builds with find_package(kvinfer) and links."""
import os
import subprocess

import kvinfer


def test_cmake_package_is_installed():
    d = kvinfer.cmake_dir()
    assert os.path.isfile(os.path.join(d, "kvinferConfig.cmake"))
    assert os.path.isfile(os.path.join(d, "kvinferTargets.cmake"))


def test_consumer_builds_and_reports_no_gpu(cpp_consumer):
    assert os.path.isfile(cpp_consumer)
    if kvinfer.cuda_available():
        return  # tests/gpu/test_cpp_consumer.py runs it
    r = subprocess.run([cpp_consumer], capture_output=True, text=True)
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"kvinfer {kvinfer.__version__}" in r.stdout

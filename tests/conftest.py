import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def cpp_consumer(tmp_path_factory):
    """Builds tests/cpp_consumer against the installed kvinfer package; returns the executable path."""
    import kvinfer
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed")
    build = tmp_path_factory.mktemp("cpp_consumer")
    src = os.path.join(ROOT, "tests", "cpp_consumer")
    for cmd in (["cmake", "-S", src, "-B", str(build), f"-Dkvinfer_DIR={kvinfer.cmake_dir()}",
                 "-DCMAKE_BUILD_TYPE=Release"],
                ["cmake", "--build", str(build)]):
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr}"
    return str(build / "consumer")

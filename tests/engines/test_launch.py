"""The launch sequence shared by the host and GPU engines: arguments taken by name."""
import pytest

from gpu_features.engines import abi
from gpu_features.errors import EngineError


def test_launch_arguments_are_taken_by_name():
    pool = {p.name: p.name.upper() for p in abi.KERNELS["pf_check"]}
    assert abi.arguments("pf_check", pool) == [p.name.upper() for p in abi.KERNELS["pf_check"]]
    del pool["bad"]
    with pytest.raises(EngineError, match="no value for its parameter"):
        abi.arguments("pf_check", pool)

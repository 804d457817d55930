"""Each kernel's parameter list, written once in engines/abi.py: the kernel sources match it."""
import re

import pytest

from gpu_features.engines import abi


def _c_params(text: str) -> list[tuple[str, str]]:
    """``(ctype, name)`` of each parameter of a C parameter list, ``__restrict__`` dropped."""
    out = []
    for item in text.replace("__restrict__", "").split(","):
        words = item.replace("*", " * ").split()
        name, ctype = words[-1], " ".join(words[:-1]).replace(" *", "*")
        out.append((ctype, name))
    return out


@pytest.mark.parametrize("kernel", sorted(abi.KERNELS))
def test_kernel_signatures_match_the_abi_table(kernel):
    """Each .cu kernel, its host entry point and the host launch list name the ABI's parameters in order.

    Names and C types are compared, so two pointers of one kind swapped in any of the four places fail here.
    """
    src = abi.kernel_dir()
    want = [(p.ctype, p.name) for p in abi.KERNELS[kernel]]
    cu = "".join((src / name).read_text() for name in abi.KERNEL_FILES)
    kernel_sig = re.search(rf"PF_KERNEL void {kernel}\(([^)]*)\)", cu)
    assert kernel_sig, f"{kernel} not found in the .cu sources"
    assert _c_params(kernel_sig.group(1)) == want
    entry = (src / "host_entry.cpp").read_text()
    host_sig = re.search(rf"void host_{kernel}\(([^)]*)\)", entry)
    assert host_sig, f"host_{kernel} not found in host_entry.cpp"
    assert _c_params(host_sig.group(1)) == [("pf_i64", "n_threads")] + want
    # Chunk kernels go through PF_LAUNCH; elementwise ones run their ``_element`` body with PF_FOR_EACH.
    launch_args = re.search(rf"PF_(?:LAUNCH\({kernel}, n_threads, \w+|FOR_EACH\({kernel}_element, n_threads), "
                            r"([^;]*)\);", entry)
    assert launch_args, f"PF_LAUNCH of {kernel} not found in host_entry.cpp"
    assert [a.strip() for a in launch_args.group(1).split(",")] == [p.name for p in abi.KERNELS[kernel]]


def test_abi_signatures_are_the_kinds_of_the_parameters():
    assert abi.SIGNATURES["pf_candle"] == "qppppdp"
    assert abi.SIGNATURES["pf_scan"] == "q" + "p" * 9 + "q" + "p" * 6 + "q" + "p"
    assert abi.SIGNATURES["pf_advance"] == "q" + "p" * 10
    assert all(len(abi.SIGNATURES[k]) == len(abi.KERNELS[k]) for k in abi.KERNELS)

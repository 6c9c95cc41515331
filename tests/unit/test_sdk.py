"""handlers.sdk: the SDK imported without py-cpuinfo's subprocess and without its CLI's modules."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from handlers.sdk import processor_name

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
import cpuinfo
real = cpuinfo.get_cpu_info
from handlers.sdk import import_runpod
runpod = import_runpod()
from runpod.serverless.utils import rp_debugger
deferred = type(sys.modules["paramiko"]).__name__
import runpod.cli.groups.ssh.functions as ssh
key_class = ssh.paramiko.RSAKey.__name__
print(json.dumps({
    "restored": cpuinfo.get_cpu_info is real,
    "processor": rp_debugger.PROCESSOR,
    "deferred_before_use": deferred,
    "key_class": key_class,
    "real_after_use": type(sys.modules["paramiko"]).__name__,
}))
"""


def test_processor_name_reads_the_model_name() -> None:
    text = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nflags\t: fpu\n"
    assert processor_name(text) == "AMD EPYC 7B13"
    assert processor_name("processor\t: 0\n") == "Unable to get processor info."


def test_import_runpod_answers_cpuinfo_from_proc_and_defers_cli_modules() -> None:
    run = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, check=True
    )
    seen = json.loads(run.stdout)
    assert seen["restored"] is True
    assert seen["processor"] == processor_name()
    assert seen["deferred_before_use"] == "_Deferred"
    assert seen["key_class"] == "RSAKey"  # the SDK's own use of paramiko still works
    assert seen["real_after_use"] == "module"

"""The core imports neither typer nor rich (nor click), nor any optional extra's package (torch,
keras, tensorflow, tensorboard): proven in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys

FRAMEWORKS = ("typer", "rich", "click")
EXTRAS = ("torch", "keras", "tensorflow", "tensorboard", "tensorboardX", "matplotlib")

PROBE = """
import json, sys
from pathlib import Path
import gradscope
frameworks_after_init = sorted(m for m in {frameworks!r} if m in sys.modules)
# Found on disk, not with pkgutil.walk_packages, which imports every package (the CLI too).
root = Path(gradscope.__file__).parent
names = [".".join(("gradscope", *p.relative_to(root).with_suffix("").parts)).removesuffix(".__init__")
         for p in sorted(root.rglob("*.py"))]
# gradscope.torch and gradscope.keras are the adapters of the user's torch and Keras: they need
# them, and the core never imports them (gradscope.tensorboard draws with numpy and imports nothing)
core = [n for n in names if not n.startswith(("gradscope.cli", "gradscope.render", "gradscope.__main__",
                                              "gradscope.torch", "gradscope.keras"))]
for name in core:
    __import__(name)
print(json.dumps({{
    "after_init": frameworks_after_init,
    "core": core,
    "frameworks": sorted(m for m in {frameworks!r} if m in sys.modules),
    "extras": sorted(m for m in {extras!r} if m in sys.modules),
    "ui": sorted(m for m in sys.modules if m.startswith(("gradscope.cli", "gradscope.render"))),
}}))
"""


def probe(code: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_core_imports_no_cli_framework():
    seen = probe(PROBE.format(frameworks=FRAMEWORKS, extras=EXTRAS))
    assert seen["after_init"] == [], "import gradscope pulled in a CLI framework"
    assert {"gradscope.commands.analyze", "gradscope.commands.check", "gradscope.project_config",
            "gradscope.schemas", "gradscope.serialize"} <= set(seen["core"])
    assert seen["frameworks"] == [], f"the core imports {seen['frameworks']}"
    assert seen["ui"] == [], f"the core imports {seen['ui']}"
    assert {"gradscope.recording", "gradscope.tensorboard"} <= set(seen["core"])
    assert seen["extras"] == [], f"the core imports {seen['extras']}"


def test_the_probe_notices_a_framework():
    """Importing the CLI does load typer and rich, so the probe above can fail."""
    seen = probe("import json, sys, gradscope.cli\n"
                 f"print(json.dumps({{'frameworks': sorted(m for m in {FRAMEWORKS!r} if m in sys.modules)}}))")
    assert {"typer", "rich"} <= set(seen["frameworks"])


def test_the_cli_runs_without_click_installed():
    """typer 0.29 vendors click and does not install it: nothing of ours may import click itself."""
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'click' or name.startswith('click.'):\n"
        "            raise ImportError('click is not installed')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from gradscope.cli import main\n"
        "sys.exit(main(['analyze', '--seq-len', '5', '--json']))\n"
    )
    done = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr

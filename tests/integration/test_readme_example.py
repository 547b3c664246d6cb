"""The README's "Python API" example runs as written and prints what its comments say."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def python_api_example() -> str:
    section = README.read_text().split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 1, "the Python API section holds one python example"
    return blocks[0]


def test_readme_python_api_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the example writes runs/notebook relative to the working folder
    code = python_api_example()
    exec(compile(code, f"{README}:Python API", "exec"), {"__name__": "readme_example"})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "(400, 10) (400, 10)"
    assert 0.0 <= float(printed[1]) <= 1.0
    assert printed[2] == "(8, 1, 28, 28) (3, 5, 1, 28, 28)"
    assert (tmp_path / "runs" / "notebook" / "metrics.json").exists()

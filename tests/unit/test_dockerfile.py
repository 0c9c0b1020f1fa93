"""The image holds every package the project installs and every program the code runs."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_image_copies_every_package_and_installs_the_programs_the_code_runs() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    for package in contracts["root_packages"]:  # the image lacked gitopskit once: nothing imported
        assert re.search(rf"^COPY {package} \./{package}$", dockerfile, re.M), package
    installed = re.search(r"apt-get install -y --no-install-recommends ([^&\\]+)", dockerfile)
    assert installed is not None
    # git and ssh for every git operation; gpg for commits signed with a Flux signingKey (gitopskit.openpgp)
    assert {"git", "openssh-client", "gnupg"} <= set(installed.group(1).split())

"""The published package: build it, check its metadata and exactly what each archive holds,
install the wheel into a fresh virtualenv next to a project made with
``django-admin startproject``, and drive a protected viewset through it.

Slow (a build and a pip install, well under two minutes): deselect with ``-m "not packaging"``.
pip fetches setuptools, Django and DRF from the package index (or its cache). With ``DIST_DIR``
set, the wheel and sdist found there are checked instead of building new ones (``.ci/run``
builds once and checks what it built).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest

import idempotency

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parent.parent

SHOP_MODELS = """
from django.db import models


class Charge(models.Model):
    amount = models.IntegerField()
"""

SHOP_VIEWS = """
from rest_framework import serializers, viewsets

from idempotency.mixins import IdempotentMixin
from shop.models import Charge


class ChargeSerializer(serializers.ModelSerializer):
    class Meta:
        model = Charge
        fields = ["id", "amount"]


class ChargeViewSet(IdempotentMixin, viewsets.ModelViewSet):
    queryset = Charge.objects.all()
    serializer_class = ChargeSerializer
"""

SITE_URLS = """
from rest_framework.routers import SimpleRouter

from shop.views import ChargeViewSet

router = SimpleRouter()
router.register("charges", ChargeViewSet)
urlpatterns = router.urls
"""

SITE_SETTINGS_TAIL = """
INSTALLED_APPS += ["rest_framework", "idempotency", "shop"]
"""

# Run inside the fresh virtualenv: a request, a replay, a 409 and a 422.
DRIVE = """
import json
from datetime import timedelta

import django

django.setup()

from django.test.utils import setup_test_environment
from rest_framework.test import APIClient

from idempotency.models import IdempotencyRecord
from idempotency.store import RecordStore
from shop.models import Charge

setup_test_environment()
client = APIClient()


def post(key, amount):
    return client.post(
        "/charges/", {"amount": amount}, format="json", headers={"Idempotency-Key": key}
    )


first, replay = post("k1", 100), post("k1", 100)
mismatch = post("k1", 999)

# Hold k2 as a concurrent request would: reserved with the fingerprint of the same request.
post("probe", 100)
fingerprint = IdempotencyRecord.objects.get(key="probe").fingerprint
RecordStore().reserve(
    scope="anonymous", key="k2", fingerprint=fingerprint, method="POST", path="/charges/",
    lease=timedelta(seconds=30), expiry=timedelta(hours=1),
)
conflict = post("k2", 100)
print(json.dumps(default=bytes.decode, obj={
    "first": [first.status_code, first.get("Idempotent-Replayed")],
    "replay": [replay.status_code, replay.get("Idempotent-Replayed"), replay.content],
    "first_content": first.content,
    "mismatch": [mismatch.status_code, mismatch["Content-Type"], mismatch.json()["type"]],
    "conflict": [conflict.status_code, conflict["Content-Type"], conflict.json()["type"]],
    "retry_after": int(conflict["Retry-After"]),
    "charges": sorted(Charge.objects.values_list("amount", flat=True)),
}))
"""


def run(*args, cwd=ROOT, env=None, timeout=240):
    result = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    if os.environ.get("DIST_DIR"):
        out = Path(os.environ["DIST_DIR"])
    else:
        out = tmp_path_factory.mktemp("dist")
        run(sys.executable, "-m", "build", "--outdir", out, ROOT)
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return wheel, sdist


def package_files():
    """The files of idempotency/ in this tree, as the archives name them."""
    package = ROOT / "idempotency"
    return {
        path.relative_to(ROOT).as_posix()
        for path in package.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


NAME = f"django_idempotency-{idempotency.__version__}"


def test_the_wheel_holds_the_idempotency_package_and_its_metadata_only(dist):
    wheel, _ = dist
    assert wheel.name == f"{NAME}-py3-none-any.whl"
    names = set(zipfile.ZipFile(wheel).namelist())
    metadata = {
        f"{NAME}.dist-info/{name}"
        for name in ("METADATA", "WHEEL", "RECORD", "top_level.txt", "licenses/LICENSE")
    }
    assert names == package_files() | metadata
    assert {"idempotency/py.typed", "idempotency/migrations/0001_initial.py"} <= names
    assert "idempotency/contrib/drf_spectacular.py" in names
    assert "idempotency/templates/admin/idempotency/idempotencyrecord/change_list.html" in names


def test_the_sdist_holds_the_package_and_what_builds_it_only(dist):
    _, sdist = dist
    assert sdist.name == f"{NAME}.tar.gz"
    with tarfile.open(sdist) as archive:
        files = {member.name for member in archive.getmembers() if member.isfile()}
    build_inputs = {
        "PKG-INFO",
        "pyproject.toml",
        "setup.cfg",
        "MANIFEST.in",
        "LICENSE",
        "PYPI.md",
        "CHANGELOG.md",
    }
    egg_info = {
        f"django_idempotency.egg-info/{name}"
        for name in (
            "PKG-INFO",
            "SOURCES.txt",
            "dependency_links.txt",
            "requires.txt",
            "top_level.txt",
        )
    }
    assert files == {f"{NAME}/{name}" for name in build_inputs | egg_info | package_files()}


def test_the_metadata_passes_twine_check_strict_and_describes_the_library(dist):
    wheel, sdist = dist
    run(sys.executable, "-m", "twine", "check", "--strict", wheel, sdist)
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(f"{NAME}.dist-info/METADATA").decode()
    headers, _, description = metadata.partition("\n\n")
    assert f"Version: {idempotency.__version__}" in headers.splitlines()
    assert "License-Expression: MIT" in headers.splitlines()
    assert "Description-Content-Type: text/markdown" in headers.splitlines()
    assert "Project-URL: Documentation, https://" in headers
    # The package page shows the library's description, not the repository's README.
    assert description.strip() == (ROOT / "PYPI.md").read_text().strip()


def test_the_wheel_works_in_a_fresh_project(dist, tmp_path):
    wheel, _ = dist
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "--disable-pip-version-check", "-q", wheel)

    project = tmp_path / "project"
    project.mkdir()
    run(venv / "bin" / "django-admin", "startproject", "mysite", project)
    run(python, "manage.py", "startapp", "shop", cwd=project)
    (project / "shop" / "models.py").write_text(textwrap.dedent(SHOP_MODELS))
    (project / "shop" / "views.py").write_text(textwrap.dedent(SHOP_VIEWS))
    (project / "mysite" / "urls.py").write_text(textwrap.dedent(SITE_URLS))
    with (project / "mysite" / "settings.py").open("a") as settings:
        settings.write(SITE_SETTINGS_TAIL)

    env = {"DJANGO_SETTINGS_MODULE": "mysite.settings", "PYTHONPATH": str(project)}
    run(python, "manage.py", "makemigrations", "shop", cwd=project, env=env)
    # The wheel carries every migration of the app: none missing, none to make.
    run(python, "manage.py", "makemigrations", "--check", "--dry-run", cwd=project, env=env)
    run(python, "manage.py", "migrate", cwd=project, env=env)
    run(python, "manage.py", "check", "--fail-level", "WARNING", cwd=project, env=env)
    output = run(python, "-c", DRIVE, cwd=project, env=env)

    outcome = json.loads(output.strip().splitlines()[-1])
    problem = "urn:django-idempotency:problem:"
    assert outcome.pop("first_content") == outcome["replay"][2]
    assert outcome == {
        "first": [201, None],
        "replay": [201, "true", outcome["replay"][2]],
        "mismatch": [422, "application/problem+json", f"{problem}key-reused"],
        "conflict": [409, "application/problem+json", f"{problem}request-in-progress"],
        "retry_after": 1,  # the RETRY_AFTER hint, not the 30 s left of the lease
        "charges": [100, 100],  # k1 once and the probe; never the replay, the 422 or the 409
    }

"""Build every ferryman image with podman, cached at each step.

1. The base: a Debian bookworm root file system with python3, made by mmdebstrap
   (the tarball is kept under ``~/.cache/ferryman/images``) and ``podman import``-ed
   as ``localhost/ferryman-base:bookworm``; the edge-logs image's adds systemd for
   journalctl. Skipped when ``--base-image`` names an operator's own.
2. The wheelhouse, the build's whole context: ferryman's wheel (its native module
   built by the same ``pip wheel``, with cargo on this host) and every dependency's
   wheel, each rebuilt only when its inputs changed, with ``requirements.txt``
   pinning them.
3. One ``podman build`` per image; podman's layer cache makes an unchanged image a
   matter of seconds, and all of them share the build stage and the virtualenv
   layer.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from infra.local.install import apt_install
from infra.local.paths import default_layout
from infra.local.procs import run_captured

__all__ = ["PODMAN", "PODMAN_LIMITS", "ImageSpec", "build", "main", "specs", "version"]

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = Path(__file__).with_name("Containerfile")
# Without these podman 4.3 fails where the default limits exceed the container's
# ("error setting rlimit"); the host network because a bridge needs privileges and
# setup this machine (and CI) need not have.
PODMAN_LIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")
# runc rather than Debian's default crun, which refuses hosts with cgroups v1 and v2
# mounted side by side (hybrid), as this project's CI machine has them.
PODMAN = ("podman", "--runtime", "runc")
_BASE_PACKAGES = ("python3", "ca-certificates")


def _mmdebstrap(packages: Sequence[str] = ()) -> tuple[str, ...]:
    """The command making a base with ``packages`` beyond python3 (mmdebstrap installs
    no recommends)."""
    return (
        "mmdebstrap",
        "--format=tar",
        "--variant=minbase",
        f"--include={','.join((*_BASE_PACKAGES, *packages))}",
        # Docs, manuals and translations are a third of a minimal root and never read.
        *(
            f"--dpkgopt=path-exclude=/usr/share/{d}/*"
            for d in ("doc", "man", "locale", "info", "lintian")
        ),
        '--aptopt=Acquire::Languages "none"',
        "bookworm",
    )


# The log shipper's journal source runs journalctl (edge/logs/journal.py), which
# bookworm ships only in systemd: the edge-logs image alone stands on a base with it.
JOURNAL_PACKAGES = ("systemd",)
INPUTS_LABEL = "io.ferryman.inputs"
_SOURCES = ("ferryman", "edge", "workers", "functions", "infra")
_NATIVE_SOURCES = ("Cargo.toml", "Cargo.lock", "src", "python")


class ImageSpec:
    """One image: its name (``ferryman-worker-loki``), its ``FUNCTION`` argument and
    the Debian packages its base has beyond python3 (none by default)."""

    def __init__(self, name: str, function: str, packages: Sequence[str] = ()) -> None:
        self.name = name
        self.function = function
        self.packages = tuple(packages)

    def tag(self, version: str) -> str:
        return f"{self.name}:{version}"


def version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as f:
        value: str = tomllib.load(f)["project"]["version"]
    return value


def specs() -> list[ImageSpec]:
    """Every image, from the registry: a new function is a new image, no other edit.
    Names as ``infra/k8s/generate.py`` gives them to the manifests."""
    from functions.registry import names

    workers = [ImageSpec(f"ferryman-worker-{n.replace('_', '-')}", n) for n in names()]
    return [
        *workers,
        ImageSpec("ferryman-edge-metrics", "edge-metrics"),
        ImageSpec("ferryman-edge-logs", "edge-logs", JOURNAL_PACKAGES),
        ImageSpec("ferryman-edge-traces", "edge-traces"),
        ImageSpec("ferryman-gateway", "gateway"),
    ]


def _cache() -> Path:
    path = default_layout().home / "images"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _run(argv: Sequence[str], *, cwd: Path | None = None) -> str:
    done = run_captured(argv, cwd=cwd)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(argv)}\n{done.tail(40)}")
    return done.output


def _digest(paths: Iterable[Path], *extra: str) -> str:
    """A hash of the files under ``paths`` (names and contents) and ``extra``."""
    h = hashlib.sha256("\0".join(extra).encode())
    for top in paths:
        files = sorted(top.rglob("*")) if top.is_dir() else [top]
        for f in files:
            # Not cargo's target nor an editable install's extension: build outputs.
            built = "target" in f.parts or f.suffix == ".so"
            if f.is_file() and "__pycache__" not in f.parts and not built:
                h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def _label(tag: str, name: str) -> str | None:
    """A label of image ``tag``; None when there is no such image."""
    proc = subprocess.run(
        [*PODMAN, "image", "inspect", "--format", f'{{{{index .Labels "{name}"}}}}', tag],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def _image_id(tag: str) -> str:
    return _run([*PODMAN, "image", "inspect", "--format", "{{.Id}}", tag]).strip()


_PIP_PASSED = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "PIP_DEFAULT_TIMEOUT")
_PROXIES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy")


def _pip_environment() -> list[str]:
    """podman arguments giving pip in a container this host's index, proxy and CA
    bundle settings (an index behind a TLS-inspecting proxy needs the host's CA)."""
    out = [f"--env={name}" for name in (*_PIP_PASSED, *_PROXIES) if name in os.environ]
    cert = os.environ.get("PIP_CERT")
    if cert and Path(cert).is_file():
        out += [f"--volume={cert}:/run/host-ca.crt:ro", "--env=PIP_CERT=/run/host-ca.crt"]
    return out


def ensure_tools() -> None:
    """podman, runc and mmdebstrap from Debian, when missing (CI installs them here)."""
    if not all(shutil.which(tool) for tool in ("podman", "runc", "mmdebstrap")):
        apt_install("images", ["podman", "runc", "buildah", "mmdebstrap", "uidmap"])


def ensure_base(say: Callable[[str], None], packages: Sequence[str] = ()) -> str:
    """The tag of the base built here with ``packages`` beyond python3, keyed by the
    mmdebstrap command that made it."""
    command = _mmdebstrap(packages)
    key = _digest([], *command)
    tag = f"localhost/ferryman-base:bookworm-{key}"
    if subprocess.run([*PODMAN, "image", "exists", tag], check=False).returncode == 0:
        say(f"base {tag}: cached")
        return tag
    tarball = _cache() / f"bookworm-{'-'.join(('python3', *packages))}-{key}.tar"
    if not tarball.exists():
        with _step(say, f"base: a bookworm root file system (mmdebstrap, {command[3]})"):
            partial = tarball.with_suffix(".partial")
            _run([*command, str(partial)])
            partial.rename(tarball)
    started = time.monotonic()
    _run([*PODMAN, "import", str(tarball), tag])
    if not packages:
        # The Containerfile's default BASE_IMAGE, for a plain `podman build` of it.
        _run([*PODMAN, "tag", tag, "localhost/ferryman-base:bookworm"])
    say(f"base {tag}: imported in {time.monotonic() - started:.1f} s")
    return tag


def _pip(*args: str) -> list[str]:
    return [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]


def _one(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    if len(found) != 1:
        raise SystemExit(f"expected one {pattern} in {folder}, found {found}")
    return found[0]


@contextlib.contextmanager
def _step(say: Callable[[str], None], what: str) -> Iterator[None]:
    started = time.monotonic()
    say(f"{what} ...")
    yield
    say(f"{what}: {time.monotonic() - started:.1f} s")


def wheelhouse(base: str, say: Callable[[str], None]) -> tuple[Path, str]:
    """The build context (``wheels/`` with every wheel, ``pip.whl`` and
    ``requirements.txt``; each part rebuilt only when its inputs changed) and a key
    naming its content."""
    cache = _cache()
    app_key = _digest(
        [
            *(ROOT / n for n in (*_SOURCES, "pyproject.toml", "README.md")),
            *(ROOT / "native" / n for n in _NATIVE_SOURCES),
        ]
    )
    app = cache / "app" / app_key
    if not app.exists():
        with _step(say, "wheelhouse: ferryman's wheel with its native module (cargo, release)"):
            tmp = app.with_name(app_key + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            # pip builds in the checkout: cargo's native/target makes the Rust part
            # incremental, and setuptools' build/ is removed so that a module deleted
            # from the sources cannot ride along from an earlier build.
            shutil.rmtree(ROOT / "build", ignore_errors=True)
            _run(_pip("wheel", "--no-deps", "--wheel-dir", str(tmp), str(ROOT)))
            tmp.rename(app)
    # Dependencies follow pyproject's requirements and the base: resolved by the base's
    # own python3 (markers such as python_full_version are the image's, not this
    # host's), so a source change reuses them.
    with (ROOT / "pyproject.toml").open("rb") as f:
        requirements: list[str] = tomllib.load(f)["project"]["dependencies"]
    deps_key = _digest([], *requirements, _image_id(base))
    deps = cache / "deps" / deps_key
    if not deps.exists():
        with _step(say, "wheelhouse: the dependencies' wheels (pip in the base)"):
            tmp = deps.with_name(deps_key + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            _run(_pip("download", "--only-binary", ":all:", "--no-deps", "--dest", str(tmp), "pip"))
            _one(tmp, "pip-*.whl").rename(tmp / "pip.whl")
            _run(
                [
                    *PODMAN,
                    "run",
                    "--rm",
                    "--network",
                    "host",
                    *PODMAN_LIMITS,
                    "--volume",
                    f"{tmp}:/out",
                    *_pip_environment(),
                    base,
                    "python3",
                    "/out/pip.whl/pip",
                    "download",
                    "--disable-pip-version-check",
                    "--no-cache-dir",
                    "--only-binary",
                    ":all:",
                    "--dest",
                    "/out",
                    *requirements,
                ]
            )
            tmp.rename(deps)
    context = cache / "context"
    wheels = context / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir(parents=True)
    for source in (app, deps):
        for wheel in source.glob("*.whl"):
            os.link(wheel, wheels / wheel.name)
    pins = sorted(
        "==".join(w.name.split("-")[:2]).replace("_", "-")
        for w in wheels.glob("*.whl")
        if w.name != "pip.whl"
    )
    (wheels / "requirements.txt").write_text("\n".join(pins) + "\n")
    # Hard links keep the mtimes, so an unchanged wheelhouse is an unchanged COPY layer.
    return context, f"{app_key}-{deps_key}"


def _source() -> str:
    """The repository's URL for org.opencontainers.image.source: the git remote
    origin's, ``unknown`` without one."""
    proc = subprocess.run(
        ["git", "-C", str(ROOT), "remote", "get-url", "origin"],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() or "unknown"


def build(
    images: Sequence[ImageSpec],
    *,
    base_image: str | None = None,
    say: Callable[[str], None] = print,
) -> list[str]:
    """Build ``images`` (all, by default) and return their tags."""
    ensure_tools()
    base = base_image or ensure_base(say)
    # The dependencies are resolved in the plain base; an image needing more has its own.
    bases = {
        packages: base_image or (ensure_base(say, packages) if packages else base)
        for packages in sorted({image.packages for image in images})
    }
    context, wheels_key = wheelhouse(base, say)
    tag_version = version()
    source = _source()
    tags = []
    for i, image in enumerate(images, 1):
        started = time.monotonic()
        tag = image.tag(tag_version)
        # podman takes seconds per image to find every layer cached; this label lets an
        # unchanged image be recognised at once.
        image_base = bases[image.packages]
        inputs = _digest([CONTAINERFILE], wheels_key, _image_id(image_base), image.function, source)
        if _label(tag, INPUTS_LABEL) == inputs:
            say(f"[{i}/{len(images)}] {tag}: up to date")
            tags.append(tag)
            continue
        _run(
            [
                *PODMAN,
                "build",
                "--network",
                "host",
                *PODMAN_LIMITS,
                "--layers",
                "--file",
                str(CONTAINERFILE),
                "--build-arg",
                f"BASE_IMAGE={image_base}",
                "--build-arg",
                f"FUNCTION={image.function}",
                "--build-arg",
                f"VERSION={tag_version}",
                "--build-arg",
                f"SOURCE={source}",
                "--label",
                f"{INPUTS_LABEL}={inputs}",
                "--tag",
                tag,
                str(context),
            ]
        )
        say(f"[{i}/{len(images)}] {tag} in {time.monotonic() - started:.1f} s")
        tags.append(tag)
    return tags


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.images", description=__doc__)
    parser.add_argument(
        "--base-image",
        help="an operator's own base for every image (Debian-like with python3.11, and "
        "journalctl for ferryman-edge-logs); default: built",
    )
    parser.add_argument("only", nargs="*", help="image names to build (default: all)")
    args = parser.parse_args(argv)
    chosen = [s for s in specs() if not args.only or s.name in args.only]
    unknown = set(args.only) - {s.name for s in chosen}
    if unknown:
        parser.error(f"unknown images: {', '.join(sorted(unknown))}")
    started = time.monotonic()
    build(chosen, base_image=args.base_image, say=lambda line: print(line, flush=True))
    print(f"{len(chosen)} images in {time.monotonic() - started:.1f} s", flush=True)
    return 0

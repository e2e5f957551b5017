#!/usr/bin/env python3
"""Build the kernels-service image (and the derived bash-kernel example) with podman or docker.

    python docker/image.py build            # the image, tagged kernels-service:latest
    python docker/image.py build --derived  # and examples/derived-bash as kernels-service-bash
    python docker/image.py build --kernel   # and docker/kernel as kernels-service-kernel (for containers)
    python docker/image.py build --derived --kernel  # both, and the bash image's as kernels-service-bash-kernel
    python docker/image.py build --kubernetes  # and docker/kubernetes as kernels-service-kubernetes
    python docker/image.py engine           # the engine command this script uses, as JSON

No image registry needs to be reachable. With podman (daemonless, preferred when it runs),
the base image is `debian:bookworm` made here with debootstrap from the Debian mirror this
machine's apt uses, stripped like `debian:bookworm-slim` (no apt lists, caches, docs, man
pages or locales), imported and kept under a local tag; podman's storage lives in a cache
directory (KERNELS_IMAGE_CACHE, default ~/.cache/kernels-service/podman), not in the
repository. With docker, the Dockerfile's own base (`debian:bookworm-slim`) is pulled.
BASE_IMAGE=<image> picks another base for either. Builds use the host's network, so apt
and pip inside reach the package registries; with podman, pip in the build steps trusts the
host's CA bundle (a read-only mount, not kept in the image), so it works behind a proxy
that inspects TLS. The tests (tests/test_image.py) use this module.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "kernels-service:latest"
DERIVED_IMAGE = "kernels-service-bash:latest"
#: What `build --<option>` also builds, on the image just built: its context, and its tag's
#: suffix (kernels-service-<suffix>:latest, or <tag>-<suffix>:latest with --tag).
ALSO_BUILT = {"derived": ("examples/derived-bash", "bash"), "kernel": ("docker/kernel", "kernel"),
              "kubernetes": ("docker/kubernetes", "kubernetes")}  # fmt: skip
DEBOOTSTRAP_BASE = "localhost/kernels-service-base:bookworm"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
#: What debian:bookworm-slim leaves out of every package, so the image's own apt installs
#: skip them too (the same dpkg rules as the official slim images).
SLIM_DPKG_RULES = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
"""
INSTALL_HINT = (
    "Install podman (Debian: apt-get install podman buildah runc uidmap fuse-overlayfs debootstrap) "
    "or run a Docker engine; KERNELS_IMAGE_ENGINE=podman|docker chooses one."
)


class ImageError(Exception):
    """Why the image could not be built or run here, in words for whoever ran the script."""


def cache_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kernels-service" / "podman"
    return Path(os.environ.get("KERNELS_IMAGE_CACHE", default))


def engine() -> list[str]:
    """The engine command: podman with its storage in the cache directory, or docker."""
    wanted = os.environ.get("KERNELS_IMAGE_ENGINE")
    candidates = [wanted] if wanted else ["podman", "docker"]
    reasons = []
    for name in candidates:
        if name not in ("podman", "docker"):
            raise ImageError(f"KERNELS_IMAGE_ENGINE={name!r}: podman or docker")
        if shutil.which(name) is None:
            reasons.append(f"{name}: not installed")
            continue
        command = [name]
        if name == "podman":
            store = cache_dir()
            command += [
                "--root",
                str(store / "storage"),
                "--runroot",
                str(Path(tempfile.gettempdir()) / f"kernels-service-podman-{os.getuid()}"),
            ]
        info = subprocess.run([*command, "info"], capture_output=True, text=True)
        if info.returncode == 0:
            return command
        reasons.append(f"{name} cannot run: {(info.stderr or info.stdout).strip()[-400:]}")
    raise ImageError("No container engine runs here. " + "; ".join(reasons) + ". " + INSTALL_HINT)


def is_podman(command: list[str]) -> bool:
    return Path(command[0]).name == "podman"


def run_options(command: list[str]) -> list[str]:
    """Options every `run` needs on this engine. podman as root asks for more open files and
    processes than a sandbox may grant (runc fails with "error setting rlimit"): ask for
    what this process has. (Without systemd, podman 4.3 logs that it cannot schedule the
    image's HEALTHCHECK, whatever the options; `podman healthcheck run` still runs it.)"""
    if not is_podman(command):
        return []
    files = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    files = 1048576 if files == resource.RLIM_INFINITY else min(files, 1048576)
    return ["--ulimit", f"nofile={files}:{files}", "--ulimit", "nproc=16384:16384"]


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (DEBIAN_MIRROR overrides it)."""
    if os.environ.get("DEBIAN_MIRROR"):
        return os.environ["DEBIAN_MIRROR"]
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for source in sources:
        text = source.read_text(errors="replace") if source.is_file() else ""
        deb822 = re.search(r"^URIs:\s*(\S+/debian)/?\s*$", text, re.MULTILINE)
        one_line = re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)/?\s", text, re.MULTILINE)
        for found in (deb822, one_line):
            if found:
                return found.group(1)
    raise ImageError("No Debian mirror found in /etc/apt; set DEBIAN_MIRROR=<url of a Debian mirror>")


def image_exists(command: list[str], tag: str) -> bool:
    return subprocess.run([*command, "image", "inspect", tag], capture_output=True).returncode == 0


def debootstrap_base(command: list[str]) -> str:
    """`debian:bookworm`, made here, slimmed and imported once; later builds reuse it."""
    if image_exists(command, DEBOOTSTRAP_BASE):
        return DEBOOTSTRAP_BASE
    if shutil.which("debootstrap") is None or os.geteuid() != 0:
        raise ImageError(
            "The base image is made with debootstrap, as root (apt-get install debootstrap), "
            "or give one: BASE_IMAGE=debian:bookworm-slim"
        )
    cache_dir().mkdir(parents=True, exist_ok=True)
    mirror = debian_mirror()
    with tempfile.TemporaryDirectory(dir=cache_dir(), prefix="rootfs-") as rootfs:
        progress(f"debootstrap bookworm (minbase) from {mirror} ...")
        subprocess.run(
            ["debootstrap", "--variant=minbase", "bookworm", rootfs, mirror],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        slim(Path(rootfs))
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(
            [*command, "import", "-", DEBOOTSTRAP_BASE], stdin=tar.stdout, check=True, stdout=subprocess.DEVNULL
        )
        if tar.wait() != 0:
            raise ImageError("tar of the debootstrapped root failed")
    return DEBOOTSTRAP_BASE


def slim(rootfs: Path) -> None:
    """What debian:bookworm-slim leaves out: apt lists and downloaded packages, docs, man
    pages, locales; and the dpkg rules that keep them out of later installs."""
    for pattern in ("var/lib/apt/lists/*", "var/cache/apt/*.bin", "var/cache/apt/archives/*.deb", "var/log/*.log"):
        for path in rootfs.glob(pattern):
            if path.is_file():
                path.unlink()
    for folder in ("usr/share/man", "usr/share/info", "usr/share/lintian"):
        shutil.rmtree(rootfs / folder, ignore_errors=True)
    for doc in (rootfs / "usr/share/doc").glob("*"):
        for path in doc.rglob("*"):
            if path.is_file() and path.name != "copyright":
                path.unlink()
    for locale in (rootfs / "usr/share/locale").glob("*"):
        if locale.is_dir():
            shutil.rmtree(locale)
    (rootfs / "etc/dpkg/dpkg.cfg.d/slim").write_text(SLIM_DPKG_RULES)


def base_image(command: list[str]) -> str | None:
    """BASE_IMAGE if given; with podman, the debootstrapped base; else the Dockerfile's."""
    if os.environ.get("BASE_IMAGE"):
        return os.environ["BASE_IMAGE"]
    return debootstrap_base(command) if is_podman(command) else None


def build_pip_config() -> Path:
    """A pip configuration for build steps that trusts the host's CA bundle (a proxy that
    inspects TLS signs with a CA only the host knows). Mounted over /etc/xdg/pip, where pip
    looks for its site configuration, during the build only."""
    folder = cache_dir() / "build-pip"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(HOST_CA_BUNDLE, folder / "ca-certificates.crt")
    (folder / "pip.conf").write_text("[global]\ncert = /etc/xdg/pip/ca-certificates.crt\n")
    return folder


def build(command: list[str], context: Path, tag: str, base: str | None) -> float:
    """Build `context`'s Dockerfile as `tag`; the seconds it took."""
    options = ["--network", "host", "-t", tag]
    if base:
        options += ["--build-arg", f"BASE_IMAGE={base}"]
    if is_podman(command):
        options += ["--format", "docker"]  # keeps HEALTHCHECK (the OCI format has none)
        if HOST_CA_BUNDLE.is_file():
            options += ["--volume", f"{build_pip_config()}:/etc/xdg/pip:ro"]
    progress(f"building {tag} from {context} ...")
    started = time.monotonic()
    subprocess.run([*command, "build", *options, str(context)], check=True)
    return time.monotonic() - started


def image_size(command: list[str], tag: str) -> int:
    """The image's size in bytes, as the engine reports it."""
    inspected = subprocess.run([*command, "image", "inspect", tag], capture_output=True, text=True, check=True)
    return int(json.loads(inspected.stdout)[0]["Size"])


def progress(line: str) -> None:
    print(f"[image] {line}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    build_parser = sub.add_parser("build", help="build the image (and with --derived, the bash example)")
    build_parser.add_argument("--tag", default=IMAGE)
    build_parser.add_argument("--derived", action="store_true", help="also build examples/derived-bash")
    build_parser.add_argument(
        "--kernel", action="store_true", help="also build docker/kernel: the image docker-provisioner runs kernels in"
    )
    build_parser.add_argument(
        "--kubernetes", action="store_true", help="also build docker/kubernetes: the service's image for Kubernetes"
    )
    sub.add_parser("engine", help="print the engine command and its run options as JSON")
    args = parser.parse_args(argv)
    try:
        command = engine()
        if args.action == "engine":
            print(json.dumps({"command": command, "run_options": run_options(command)}))
            return 0
        seconds = build(command, ROOT, args.tag, base_image(command))
        progress(f"{args.tag}: {image_size(command, args.tag) / 1e6:.0f} MB, built in {seconds:.0f} s")
        name = args.tag.split(":")[0]
        builds = [(context, f"{name}-{suffix}:latest", args.tag) for option, (context, suffix) in ALSO_BUILT.items()
                  if getattr(args, option)]  # fmt: skip
        if args.derived and args.kernel:  # the derived image as a kernel image too
            builds.append((ALSO_BUILT["kernel"][0], f"{name}-bash-kernel:latest", f"{name}-bash:latest"))
        for context, tag, base in builds:
            seconds = build(command, ROOT / context, tag, base)
            progress(f"{tag}: {image_size(command, tag) / 1e6:.0f} MB, built in {seconds:.0f} s")
    except ImageError as error:
        print(f"docker/image.py: {error}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as error:
        print(
            f"docker/image.py: {' '.join(map(str, error.cmd[:4]))} ... failed with exit code {error.returncode}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Write a kernelspec for kernels in containers, confined (`launch`'s limits).

    python -m kernels_service.containers.kernelspec --prefix=/srv/kernels \\
        --image=localhost/kernels-service-kernel:latest --name=container_python \\
        [--display-name=NAME] [--memory=512m] [--cpus=1] [--pids-limit=256] [--writable-root]
        [--env=KERNEL_USERNAME=kernels ...] [--kernel-class=bash_kernel.kernel.BashKernel --language=bash]

It runs `jupyter docker-spec install` (gateway_provisioners), so the kernelspec names
`docker-provisioner` with its configuration unchanged, then has it run our launcher
(`<this interpreter> -m kernels_service.containers.launch`) with the same arguments plus the
limits, instead of gateway_provisioners' `launch_docker.py` (which is removed from it).
`--env` adds to the kernelspec's `env`: `KERNEL_USERNAME` there names the container's
user for kernels no client asked for (the pool's); a client's own `KERNEL_*` win.
`--kernel-class` runs another kernel built on ipykernel (bash_kernel's, say) with the
kernel image's Python launcher: `--language` is then what clients see, and the kernelspec
tells the image's bootstrap to use that launcher (`KERNEL_LANGUAGE=python`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

#: Our launcher, run by the interpreter that writes the kernelspec (the one the service's
#: package is installed in): gateway_provisioners runs a kernelspec's `argv` as it is,
#: and `python` would be whatever comes first on the service's PATH, which for a service
#: started from a virtual environment that is not activated (a systemd unit running
#: /opt/venv/bin/kernels-service) is another interpreter, without this package.
LAUNCHER = [sys.executable, "-m", "kernels_service.containers.launch"]


def limit_arguments(args: argparse.Namespace) -> list[str]:
    """The launcher's options for the limits asked for."""
    limits = []
    for option in ("memory", "cpus", "pids_limit"):
        if getattr(args, option) is not None:
            limits.append(f"--{option.replace('_', '-')}={getattr(args, option)}")
    if args.writable_root:
        limits.append("--writable-root")
    return limits


def variable(text: str) -> str:
    """A `NAME=VALUE` pair, as `--env` takes it."""
    if "=" not in text or not text.split("=", 1)[0]:
        raise argparse.ArgumentTypeError(f"not NAME=VALUE: {text!r}")
    return text


def install(args: argparse.Namespace) -> Path:
    """The kernelspec, installed; its directory."""
    jupyter = Path(sys.executable).with_name("jupyter")
    command = [str(jupyter), "docker-spec", "install", f"--prefix={args.prefix}", f"--image-name={args.image}",
               f"--kernel-name={args.name}", "--replace"]  # fmt: skip
    if args.display_name:
        command.append(f"--display-name={args.display_name}")
    if args.kernel_class:
        command.append(f"--ipykernel-subclass-name={args.kernel_class}")
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)
    directory = Path(args.prefix) / "share" / "jupyter" / "kernels" / args.name
    spec_file = directory / "kernel.json"
    spec = json.loads(spec_file.read_text())
    script = spec["argv"][1]
    if not script.endswith("launch_docker.py"):
        raise SystemExit(f"unexpected kernelspec from jupyter docker-spec install: argv {spec['argv'][:2]}")
    spec["argv"] = [*LAUNCHER, *spec["argv"][2:], *limit_arguments(args)]
    spec["env"] = {**spec.get("env", {}), **dict(pair.split("=", 1) for pair in args.env)}
    if args.language and args.language != spec["language"]:
        spec["language"] = args.language
        spec["env"].setdefault("KERNEL_LANGUAGE", "python")  # the bootstrap's launcher: ipykernel's
    spec_file.write_text(json.dumps(spec, indent=2) + "\n")
    shutil.rmtree(directory / "scripts", ignore_errors=True)
    return directory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prefix", required=True, help="installed in PREFIX/share/jupyter/kernels/NAME")
    parser.add_argument("--image", required=True, help="the kernel image (python docker/image.py build --kernel)")
    parser.add_argument("--name", required=True, help="the kernelspec's name")
    parser.add_argument("--display-name")
    parser.add_argument("--memory", help="memory limit, as Docker writes it (512m, 2g)")
    parser.add_argument("--cpus", type=float, help="CPU limit, in CPUs")
    parser.add_argument("--pids-limit", type=int, help="most processes (and threads) in a kernel's container")
    parser.add_argument("--writable-root", action="store_true", help="leave the container's root filesystem writable")
    parser.add_argument("--kernel-class", help="a kernel class built on ipykernel (default: IPython's)")
    parser.add_argument("--language", help="the kernel's language, as clients see it (default: python)")
    parser.add_argument("--env", action="append", default=[], type=variable, help="NAME=VALUE for the kernelspec's env")
    args = parser.parse_args(argv)
    print(install(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The launcher of a container kernel: asks a Docker API for the kernel's container.

    python -m kernels_service.containers.launch --kernel-id ID --response-address IP:PORT
        --public-key KEY [--port-range A..B] [--transport-encryption auto]
        [--kernel-class-name CLASS] [--memory 512m] [--cpus 1] [--pids-limit 256]
        [--writable-root]

gateway_provisioners' `docker-provisioner` runs its kernelspec's `argv` beside the
service, and waits for the kernel, started in the container, to send its connection
information to the response address. `jupyter docker-spec install` writes an `argv` that
runs gateway_provisioners' own `launch_docker.py`; this launcher takes the same
arguments and environment and makes the same container (name, hostname, labels, user,
groups, network, environment, removed when it stops), and also confines it, which that
script cannot be told to do:

* a read-only root filesystem, with private `/tmp` and home as tmpfs (`--writable-root`
  turns this off, for images whose kernels write elsewhere);
* no capabilities at all, and no privilege gained by exec (`no-new-privileges`);
* the memory, CPU and process-count limits given here (`--memory`, `--cpus`,
  `--pids-limit`).

The limits come from the kernelspec's `argv`, which only the operator writes: a
client's `KERNEL_*` variables, which reach the launcher's environment, cannot lift them.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

#: Where the kernel may write with a read-only root: its temporary files, and its home
#: (ipykernel's runtime directory, IPython's profile). The kernel image's user is uid 1000.
WRITABLE = {"/tmp": "rw,mode=1777,size=256m", "/home/kernels": "rw,mode=0777,size=256m"}


#: The launcher's variables that describe the machine it runs on, not the image: the
#: container keeps the image's own (gateway_provisioners' launcher drops only PATH, and
#: its kernels then look for their home in the service's, which is not there).
IMAGES_OWN = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "VIRTUAL_ENV", "PYTHONPATH", "TMPDIR")


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kernel-id", required=True)
    parser.add_argument("--response-address", required=True)
    parser.add_argument("--public-key", required=True)
    parser.add_argument("--port-range", default="0..0")
    parser.add_argument("--spark-context-initialization-mode", default="none")
    parser.add_argument("--kernel-class-name")
    parser.add_argument("--transport-encryption")
    parser.add_argument("--memory", help="memory limit, as Docker writes it (512m, 2g)")
    parser.add_argument("--cpus", type=float, help="CPU limit, in CPUs (0.5, 2)")
    parser.add_argument("--pids-limit", type=int, help="most processes (and threads) in the container")
    parser.add_argument("--writable-root", action="store_true", help="do not make the root filesystem read-only")
    return parser.parse_args(argv)


def container_environment(args: argparse.Namespace, environ: dict[str, str]) -> dict[str, str]:
    """What the kernel's bootstrap reads (as gateway_provisioners' launcher passes it), then
    the launcher's own environment (the service chose it: its allow-list, the kernelspec's
    `env`, the client's `KERNEL_*`), but for what the image sets for itself (`IMAGES_OWN`)."""
    environment = {
        "PORT_RANGE": args.port_range,
        "PUBLIC_KEY": args.public_key,
        "RESPONSE_ADDRESS": args.response_address,
        "KERNEL_SPARK_CONTEXT_INIT_MODE": args.spark_context_initialization_mode,
    }
    if args.kernel_class_name:
        environment["KERNEL_CLASS_NAME"] = args.kernel_class_name
    if args.transport_encryption:
        environment["TRANSPORT_ENCRYPTION"] = args.transport_encryption
    environment.update(environ)
    for variable in IMAGES_OWN:
        environment.pop(variable, None)
    return environment


def container_options(args: argparse.Namespace, environ: dict[str, str]) -> dict[str, Any]:
    """The docker SDK's `containers.run` options for the kernel's container."""
    name = f"{environ.get('KERNEL_USERNAME', '')}-{args.kernel_id}"
    labels = {"kernel_id": args.kernel_id, "component": "kernel", "app": "gateway-provisioners"}
    options: dict[str, Any] = {
        "name": name,
        "hostname": name,
        "user": environ.get("KERNEL_UID"),
        "group_add": [environ.get("KERNEL_GID", "100"), "100"],
        "labels": labels,
        "environment": container_environment(args, environ),
        "network": environ.get("GP_DOCKER_NETWORK") or environ.get("DOCKER_NETWORK", "bridge"),
        "remove": environ.get("GP_REMOVE_CONTAINER", "True").lower() == "true",
        "detach": True,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
    }
    if environ.get("KERNEL_WORKING_DIR"):
        options["working_dir"] = environ["KERNEL_WORKING_DIR"]
    if not args.writable_root:
        options["read_only"] = True
        options["tmpfs"] = dict(WRITABLE)
    if args.memory:
        options["mem_limit"] = args.memory
        options["memswap_limit"] = args.memory  # no swap beyond the limit
    if args.cpus:
        options["nano_cpus"] = int(args.cpus * 1e9)
    if args.pids_limit:
        options["pids_limit"] = args.pids_limit
    return options


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(sys.argv[1:] if argv is None else argv)
    image = os.environ.get("KERNEL_IMAGE")
    if not image:
        print("ERROR - KERNEL_IMAGE not found in environment - kernel launch terminating!", file=sys.stderr)
        return 1
    from docker.client import DockerClient  # the containers extra; imported once the arguments are known

    DockerClient.from_env().containers.run(image, **container_options(args, dict(os.environ)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

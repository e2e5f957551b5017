"""Write kernelspecs.yaml: the kernelspecs of the Deployment, as a ConfigMap.

    python deploy/kubernetes/make_kernelspecs.py [--image=IMAGE] [--check]

Each kernelspec is what `jupyter k8s-spec install` (gateway_provisioners) writes, with one
change: the directory it was installed to is replaced, in `kernel.json`, by the one
where deployment.yaml mounts the ConfigMap (`MOUNTED`). A ConfigMap key cannot hold a
`/`, so each file is a key `<kernel>.<file name>`, and deployment.yaml's volume puts it
back in place (`items`). The logo is left out (it is binary and only a picture).
`--check` writes nothing, and fails if kernelspecs.yaml is not what this would write
(the tests run it, so the ConfigMap follows gateway_provisioners).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "kernelspecs.yaml"
MOUNTED = "/opt/kernelspecs"  # deployment.yaml: JUPYTER_PATH is MOUNTED/share/jupyter
LABELS = {"app.kubernetes.io/name": "kernels-service"}
KERNELS = {"k8s_python": "Python 3 on Kubernetes"}  # name: display name
FILES = ("kernel.json", "scripts/launch_kubernetes.py", "scripts/kernel-pod.yaml.j2")
HEADER = """\
# Written by make_kernelspecs.py from `jupyter k8s-spec install` (gateway_provisioners);
# do not edit by hand: change the script, run it, and commit both.
"""


def install(prefix: Path, image: str, name: str, display_name: str) -> Path:
    """`jupyter k8s-spec install` into `prefix`; the kernelspec's directory."""
    jupyter = Path(sys.executable).with_name("jupyter")
    command = [str(jupyter), "k8s-spec", "install", f"--prefix={prefix}", f"--image-name={image}",
               f"--kernel-name={name}", f"--display-name={display_name}"]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)
    return prefix / "share" / "jupyter" / "kernels" / name


def config_map(image: str) -> dict:
    data = {}
    with tempfile.TemporaryDirectory() as prefix:
        for name, display_name in KERNELS.items():
            directory = install(Path(prefix), image, name, display_name)
            for file in FILES:
                text = (directory / file).read_text()
                if file == "kernel.json":
                    text = text.replace(prefix, MOUNTED)
                data[f"{name}.{Path(file).name}"] = text
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "kernelspecs",
            "namespace": "kernels",
            "labels": {"app.kubernetes.io/name": "kernels-service"},
        },
        "data": data,
    }


def literal_blocks(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    """Multi-line strings as YAML literal blocks, so the files read as themselves."""
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


def render(image: str) -> str:
    dumper = type("BlockDumper", (yaml.SafeDumper,), {})
    dumper.add_representer(str, literal_blocks)
    return HEADER + yaml.dump(config_map(image), Dumper=dumper, sort_keys=False, width=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", default="kernels-service-kernel:latest", help="the kernels' image")
    parser.add_argument("--check", action="store_true", help="fail if kernelspecs.yaml differs; write nothing")
    args = parser.parse_args()
    text = render(args.image)
    if args.check:
        if OUTPUT.read_text() != text:
            print(f"{OUTPUT} is not what `jupyter k8s-spec install` writes now: run {Path(__file__).name}")
            return 1
        return 0
    OUTPUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

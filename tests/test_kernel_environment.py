"""What a kernel gets of the service's environment, tried from inside a real kernel, as
code a client sends would try it: the service's secrets are not there, what a kernel
needs to run is, and the operator, the kernelspec and the client add what they may."""

from __future__ import annotations

import json

from kernels_service.kernels.environment import INHERITED, SECRET_VARIABLES, inherited_environment
from kernels_service.testing.channels import ChannelsClient, stream_text
from kernels_service.testing.service import TOKEN, running_service
from tests.support.kernelspecs import write_kernelspec

SECRETS = {"AWS_SECRET_ACCESS_KEY": "aws-secret-0123", "DB_PASSWORD": "db-password-4567"}
LOOK_AROUND = "import json, os; print(json.dumps(dict(os.environ)))"


def environment_of_a_kernel(service, **body) -> dict[str, str]:
    """The environment a new kernel of `service` sees, printed by code inside it."""
    kernel = service.start_kernel(**body)
    client = ChannelsClient(service, kernel)
    try:
        _, outputs = client.execute(LOOK_AROUND)
        return json.loads(stream_text(outputs))
    finally:
        client.close()
        service.request("DELETE", f"api/kernels/{kernel}")


def test_a_kernel_sees_none_of_the_services_secrets_but_what_it_needs_to_run(tmp_path):
    argv = ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    write_kernelspec(tmp_path, "withenv", argv, env={"FROM_SPEC": "spec-${LANG}"})
    env = {**SECRETS, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TZ": "UTC", "JUPYTER_PATH": str(tmp_path)}
    with running_service("--initial-kernels=0", "--pool-size=0", from_env=True, env=env) as service:
        seen = environment_of_a_kernel(service, name="withenv", env={"KERNEL_USER": "ada"})
    leaked = {name for name, value in seen.items() if value in (*SECRETS.values(), TOKEN) or TOKEN in value}
    assert not leaked, f"the kernel can read the service's secrets: {sorted(leaked)}"
    assert {"PATH", "HOME", "LANG", "LC_ALL", "TZ", "JUPYTER_PATH"} <= set(seen)
    assert seen["FROM_SPEC"] == "spec-C.UTF-8" and seen["KERNEL_USER"] == "ada"


def test_the_operator_adds_names_or_patterns_but_the_token_never_passes():
    env = {**SECRETS, "AWS_REGION": "eu-west-1"}
    argv = ("--initial-kernels=0", "--pool-size=0", "--kernel-env-inherit=AWS_REGION", "--kernel-env-inherit=*")
    with running_service(*argv, from_env=True, env=env) as service:
        seen = environment_of_a_kernel(service)
    assert (
        seen["AWS_REGION"] == "eu-west-1" and seen["DB_PASSWORD"] == SECRETS["DB_PASSWORD"]
    )  # `*`: the operator's word
    assert "KERNELS_SERVICE_TOKEN" not in seen and not any(TOKEN in value for value in seen.values())


def test_the_allow_list_by_names_and_patterns():
    environ = {"PATH": "/bin", "LC_TIME": "C", "AWS_SECRET_ACCESS_KEY": "s", "CUDA_HOME": "/cuda", "lc_odd": "x"}
    environ |= {name: "t" for name in SECRET_VARIABLES}
    assert inherited_environment(environ) == {"PATH": "/bin", "LC_TIME": "C"}
    assert inherited_environment(environ, ["CUDA_*"]) == {"PATH": "/bin", "LC_TIME": "C", "CUDA_HOME": "/cuda"}
    assert set(inherited_environment(environ, ["*"])) == set(environ) - set(SECRET_VARIABLES)
    assert "PATH" in INHERITED and not any(pattern == "*" for pattern in INHERITED)

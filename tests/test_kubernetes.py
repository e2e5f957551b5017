"""deploy/kubernetes/: no cluster runs here, so the manifests are checked offline.

Each is validated against Kubernetes' own schemas (kubernetes-validate, strict: unknown
fields are errors); the kernelspec ConfigMap must be what `jupyter k8s-spec install`
writes; what the service account may do is checked against what gateway_provisioners'
code calls; the labels the NetworkPolicy selects against gateway_provisioners' kernel pod
template; and the Deployment's options and environment against the service itself.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import gateway_provisioners
import kubernetes_validate
import pytest
import yaml

from kernels_service.testing.service import TOKEN
from tests.support.container import WANTED, Container, Engine, image_script
from tests.support.paths import ROOT

MANIFESTS = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSIONS = ("1.33.0", "1.37.0")  # of the schemas kubernetes-validate 1.37.0 bundles
PROVISIONERS = Path(gateway_provisioners.__file__).parent
LAUNCHER = PROVISIONERS / "kernel-launchers" / "kubernetes" / "scripts"


def documents() -> list[dict]:
    loaded = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        loaded += [document for document in yaml.safe_load_all(path.read_text()) if document]
    return loaded


def find(kind: str, name: str | None = None) -> dict:
    (found,) = [d for d in documents() if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    return found


def deployment_container() -> dict:
    (container,) = find("Deployment")["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_validates_strictly_against_kubernetes_schemas(version: str):
    kinds = [document["kind"] for document in documents()]
    assert sorted(set(kinds)) == [
        "ConfigMap", "Deployment", "Namespace", "NetworkPolicy", "PodDisruptionBudget", "Role", "RoleBinding",
        "Service", "ServiceAccount",
    ]  # fmt: skip
    for document in documents():
        kubernetes_validate.validate(document, version, strict=True)


def test_the_validation_refuses_what_kubernetes_would():
    """The check above can fail: a wrong type and an unknown field are refused."""
    deployment = find("Deployment")
    deployment["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)
    service = find("Service")
    service["spec"]["prots"] = service["spec"].pop("ports")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(service, KUBERNETES_VERSIONS[-1], strict=True)


def test_the_kernelspecs_are_what_k8s_spec_install_writes():
    script = MANIFESTS / "make_kernelspecs.py"
    checked = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_mounted_kernelspecs_are_where_the_service_and_their_argv_look():
    config_map = find("ConfigMap", "kernelspecs")
    volume = next(v for v in find("Deployment")["spec"]["template"]["spec"]["volumes"] if v["name"] == "kernelspecs")
    mount = next(m for m in deployment_container()["volumeMounts"] if m["name"] == "kernelspecs")
    items = {item["key"]: item["path"] for item in volume["configMap"]["items"]}
    assert set(items) == set(config_map["data"]), "every file of the ConfigMap mounted, and nothing else"
    env = {e["name"]: e.get("value") for e in deployment_container()["env"]}
    assert mount["mountPath"] == env["JUPYTER_PATH"] + "/kernels"
    for key, text in config_map["data"].items():
        if key.endswith(".kernel.json"):
            launcher = json.loads(text)["argv"][1]
            assert launcher in {f"{mount['mountPath']}/{path}" for path in items.values()}, launcher


def test_the_service_account_may_do_only_what_the_provisioner_calls():
    """The verbs on pods are those of the Kubernetes API calls in gateway_provisioners'
    provisioner and launcher; its launcher makes nothing but a Pod from its template."""
    assert not [d for d in documents() if d["kind"].startswith("Cluster")], "nothing cluster-wide"
    (rule,) = find("Role")["rules"]
    code = (PROVISIONERS / "k8s.py").read_text() + (LAUNCHER / "launch_kubernetes.py").read_text()
    calls = set(re.findall(r"\.(create|read|list|delete|patch|replace)_namespaced_pod\(", code))
    verb = {
        "create": "create",
        "read": "get",
        "list": "list",
        "delete": "delete",
        "patch": "patch",
        "replace": "update",
    }
    assert (rule["apiGroups"], rule["resources"]) == ([""], ["pods"])
    assert set(rule["verbs"]) == {verb[call] for call in calls}
    template_kinds = re.findall(r"^kind: (\w+)", (LAUNCHER / "kernel-pod.yaml.j2").read_text(), re.MULTILINE)
    assert template_kinds == ["Pod"]
    binding = find("RoleBinding")
    deployment_pod = find("Deployment")["spec"]["template"]["spec"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "kernels-service"}
    assert [s["name"] for s in binding["subjects"]] == [deployment_pod["serviceAccountName"]]


def test_kernels_get_an_identity_with_no_rights_and_no_token():
    env = {e["name"]: e.get("value") for e in deployment_container()["env"]}
    kernel_account = find("ServiceAccount", env["GP_DEFAULT_KERNEL_SERVICE_ACCOUNT_NAME"])
    assert kernel_account["automountServiceAccountToken"] is False
    assert env["GP_SHARED_NAMESPACE"] == "True"  # no namespace per kernel, no cluster role bound to one
    bound = [s["name"] for s in find("RoleBinding")["subjects"]]
    assert kernel_account["metadata"]["name"] not in bound


def test_the_service_pod_is_non_root_read_only_with_no_capabilities_and_its_token_from_a_secret():
    pod = find("Deployment")["spec"]["template"]["spec"]
    container = deployment_container()
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
    }  # fmt: skip
    (token,) = [e for e in container["env"] if e["name"] == "KERNELS_SERVICE_TOKEN"]
    assert set(token) == {"name", "valueFrom"} and "secretKeyRef" in token["valueFrom"]
    assert not any("token" in arg for arg in container["args"]), "a token on the command line is readable by all"
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/api/health", "port": "http"}
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
    assert writable == {"/tmp", "/home/kernels"}  # the image's HOME (runtime directory) and /tmp


def test_kernels_are_reached_only_from_the_service():
    """The policy selects kernel pods by the labels gateway_provisioners' template gives
    them, and lets in only pods with the service's labels; the service's own policy lets
    only kernel pods send to the response port."""
    template = (LAUNCHER / "kernel-pod.yaml.j2").read_text()
    kernels = find("NetworkPolicy", "kernels-only-from-the-service")
    for label, value in kernels["spec"]["podSelector"]["matchLabels"].items():
        assert f"{label}: {value}" in template, f"the kernel pods carry no {label}={value}"
    service_labels = find("Deployment")["spec"]["template"]["metadata"]["labels"]
    (rule,) = kernels["spec"]["ingress"]
    assert [peer["podSelector"]["matchLabels"] for peer in rule["from"]] == [service_labels]
    assert "ports" not in rule  # the kernels' ports are random: all of them, from the service alone
    own = find("NetworkPolicy", "kernels-service")
    ports = {p["name"] for p in deployment_container()["ports"]}
    by_port = {tuple(p["port"] for p in r["ports"]): r.get("from") for r in own["spec"]["ingress"]}
    assert set(by_port) == {("http",), ("kernel-response",)} and {"http", "kernel-response"} == ports
    assert by_port[("kernel-response",)] == [{"podSelector": kernels["spec"]["podSelector"]}]


def test_the_service_takes_the_deployments_options_and_environment(tmp_path: Path):
    """The Deployment's arguments are real options of the service, with the environment
    the Deployment sets (its literal values), and the one kernelspec it allows is there."""
    container = deployment_container()
    literal = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    kernels = tmp_path / "share" / "jupyter" / "kernels"
    for key, text in find("ConfigMap", "kernelspecs")["data"].items():
        name, file = key.split(".", 1)
        if file == "kernel.json":
            (kernels / name).mkdir(parents=True)
            (kernels / name / file).write_text(text)
    env = {**literal, "JUPYTER_PATH": str(tmp_path / "share" / "jupyter"), "PATH": "/usr/bin:/bin"}
    shown = subprocess.run(
        [sys.executable, str(ROOT / "kernels.py"), *container["args"], "--show-config-json"],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    configuration = json.loads(shown.stdout)
    assert configuration["kernelspec.k8s_python.provisioner"]["value"] == "kubernetes-provisioner"
    assert not [name for name in configuration if name.startswith("kernelspec.") and ".k8s_python." not in name]
    assert configuration["environment.GP_SHARED_NAMESPACE"]["value"] == "True"


def pod_options(tmp_path: Path) -> tuple[str, ...]:
    """The Deployment's pod, as podman options: its user, read-only root, capabilities and
    privilege escalation, its emptyDir volumes as tmpfs, the ConfigMap's files where its
    volume puts them, and the environment's literal values."""
    pod = find("Deployment")["spec"]["template"]["spec"]
    container = deployment_container()
    security = container["securityContext"]
    options = ["--user", f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}"]
    if security["readOnlyRootFilesystem"]:
        options.append("--read-only")
    options += [f"--cap-drop={cap.lower()}" for cap in security["capabilities"]["drop"]]
    if not security["allowPrivilegeEscalation"]:
        options.append("--security-opt=no-new-privileges")
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    data = find("ConfigMap", "kernelspecs")["data"]
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "emptyDir" in volume:
            options += ["--tmpfs", f"{mount['mountPath']}:mode=0777"]  # an emptyDir is writable by all
            continue
        files = tmp_path / mount["name"]
        for item in volume["configMap"]["items"]:
            (files / item["path"]).parent.mkdir(parents=True, exist_ok=True)
            (files / item["path"]).write_text(data[item["key"]])
        subprocess.run(["chmod", "-R", "a+rX", str(tmp_path)], check=True)
        options += ["--volume", f"{files}:{mount['mountPath']}:ro"]
    for variable in container["env"]:
        if "value" in variable:
            options += ["--env", f"{variable['name']}={variable['value']}"]
    return (*options, "--env", "GP_NAMESPACE=kernels", "--env", "GP_RESPONSE_IP=127.0.0.1")  # the fieldRefs


@pytest.mark.skipif(not WANTED, reason="the image is built and run with CI set or KERNELS_TEST_IMAGE=1")
@pytest.mark.timeout(900)
def test_the_deployments_pod_serves_from_its_image_and_a_start_with_no_cluster_is_a_clear_503(tmp_path: Path):
    """As far as this machine goes: the Kubernetes image (`build --kubernetes`) run as the
    Deployment's pod would run (its user, read-only root, no capabilities, its volumes and
    environment, its arguments) serves its probe, offers the one kernelspec, and a kernel
    start with no cluster to reach is a 503 that names it, with no traceback and nothing
    left running; SIGTERM then stops it with exit 0."""
    engine = Engine()
    assert image_script().main(["build", "--kubernetes"]) == 0, "docker/image.py build --kubernetes failed (above)"
    arguments = deployment_container()["args"]
    container = Container(
        engine, "kernels-service-kubernetes:latest", *arguments, token=TOKEN, options=pod_options(tmp_path)
    )
    try:
        container.wait_serving()
        assert container.request("GET", "api/health", token="")[:3:2] == (200, {"status": "ok"})
        specs = container.request("GET", "api/kernelspecs")[2]
        assert (specs["default"], list(specs["kernelspecs"])) == ("k8s_python", ["k8s_python"])
        status, _, body = container.request("POST", "api/kernels", {"name": "k8s_python"})
        assert status == 503 and body["message"].startswith("The k8s_python kernel could not be started"), body
        assert container.request("GET", "api/kernels")[2] == []
        commands = [" ".join(p["args"]) for p in container.processes() if "PROCESS_LISTING" not in str(p["args"])]
        assert not [c for c in commands if "launch_kubernetes" in c or "ipykernel" in c], commands
        exit_code, _ = container.stop(timeout=10)
        logs = container.logs()
        assert exit_code == 0, logs
        assert "Kernel of k8s_python not started: ConfigException" in logs and "Traceback" not in logs, logs
    finally:
        container.remove()


def test_two_replicas_share_a_store_from_a_secret_and_roll_with_no_downtime():
    deployment = find("Deployment")["spec"]
    assert deployment["replicas"] == 2
    assert deployment["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    container = deployment_container()
    assert "--keep-kernels" in container["args"]
    env = {e["name"]: e for e in container["env"]}
    for name, key in (("KERNELS_KERNEL_STORE", "url"), ("PGPASSWORD", "password")):
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "kernels-service-store", "key": key}
    assert env["KERNELS_REPLICA_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert env["KERNELS_REPLICA_URL"]["value"] == "http://$(POD_IP):8000/"
    names = list(env)  # Kubernetes expands $(POD_IP) only from a variable defined before
    assert names.index("POD_IP") < names.index("KERNELS_REPLICA_URL")
    assert "sessionAffinity" not in find("Service")["spec"]


def test_a_drain_has_time_a_budget_and_a_readiness_probe_that_fails_at_once():
    """SIGTERM drains a replica (tests/test_takeover.py runs it for real): the pod has the
    time to hand over (15 s of waiting for clients, 8 s of stopping the rest), one replica
    at most is disrupted on purpose at a time, and the readiness probe, asked every 2 s,
    takes the draining pod's first 503 (tests/test_builder.py) as not ready."""
    pod = find("Deployment")["spec"]["template"]["spec"]
    container = deployment_container()
    assert pod["terminationGracePeriodSeconds"] >= 5 + 15 + 8 + 10  # preStop, hand-over, stop, margin
    assert container["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}
    probe = container["readinessProbe"]
    assert probe["httpGet"] == {"path": "/api/health", "port": "http"}
    assert (probe["periodSeconds"], probe["failureThreshold"]) == (2, 1)
    budget = find("PodDisruptionBudget")["spec"]
    assert budget["minAvailable"] == 1 < find("Deployment")["spec"]["replicas"]
    assert budget["selector"] == find("Deployment")["spec"]["selector"]

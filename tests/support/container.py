"""podman for the container test: the options this kind of machine needs, and a base image when none can be pulled.

The Dockerfile builds on python:3.11-slim-bookworm. Where no container registry can be reached, the same thing is
made from Debian's own packages: a bookworm root file system (debootstrap) with Python 3.11 made the `python` of
/usr/local, as in the official image, and imported into podman under a local name.
"""

from __future__ import annotations

import resource
import shutil
import subprocess
from pathlib import Path

BASE = "docker.io/library/python:3.11-slim-bookworm"
ROOTFS = "localhost/pacing-cds-test-rootfs:bookworm"
STAND_IN = "localhost/pacing-cds-test-base:bookworm"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
DEBIAN_MIRROR = "http://deb.debian.org/debian"


def podman() -> list[str]:
    """podman with runc when installed: crun refuses hosts with cgroups in hybrid mode."""
    runc = shutil.which("runc")
    return ["podman", "--runtime", runc] if runc else ["podman"]


def run_options() -> list[str]:
    """Limits no higher than this process's own: without CAP_SYS_RESOURCE podman's defaults cannot be set."""
    nofile_soft, nofile_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[0], 4096)
    return ["--ulimit", f"nofile={min(nofile_soft, 65536)}:{min(nofile_hard, 65536)}",
            "--ulimit", f"nproc={nproc}:{nproc}"]


def _podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*podman(), *args], capture_output=True, text=True, timeout=timeout)


def base_image(workdir: Path) -> tuple[str, str]:
    """(image to build on, how it was had): the official one if present or pullable, else the Debian stand-in."""
    if _podman("image", "exists", BASE).returncode == 0:
        return BASE, "present"
    try:
        pulled = _podman("pull", "--quiet", BASE)
        if pulled.returncode == 0:
            return BASE, "pulled"
        reason = (pulled.stderr.strip().splitlines() or ["no answer"])[-1][:300]
    except subprocess.TimeoutExpired:
        reason = "no answer within 120 s"
    if _podman("image", "exists", ROOTFS).returncode != 0:
        _import_rootfs(workdir)
    _trust_this_machine(workdir)
    return STAND_IN, f"stand-in built from Debian packages ({BASE} not pullable: {reason})"


def _trust_this_machine(workdir: Path) -> None:
    """The stand-in trusts the certificate authorities this machine trusts (its network may re-sign TLS), and
    tells pip so: the pip of Debian 12 reads its own bundle, not the system's. Its layers are cached."""
    context = workdir / "trust"
    context.mkdir(exist_ok=True)
    shutil.copy(HOST_CA_BUNDLE, context / "ca-certificates.crt")
    # The Python headers too, which python:3.11-slim has and Debian's minimal system has not (durable-rules
    # compiles against them).
    (context / "Containerfile").write_text(
        f"FROM {ROOTFS}\nCOPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt\n"
        "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt\n"
        "RUN apt-get update && apt-get install -y --no-install-recommends libpython3.11-dev"
        " && rm -rf /var/lib/apt/lists/*\n")
    subprocess.run([*podman(), "build", "--network", "host", "-t", STAND_IN, str(context)], check=True,
                   capture_output=True, timeout=900)


def _import_rootfs(workdir: Path) -> None:
    rootfs = workdir / "rootfs"
    subprocess.run(["debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates,passwd",
                    "bookworm", str(rootfs), DEBIAN_MIRROR], check=True, capture_output=True, timeout=1200)
    # python:3.11-slim has a python of its own in /usr/local whose pip installs freely; Debian's is managed by apt.
    subprocess.run(["chroot", str(rootfs), "python3", "-m", "venv", "/usr/local"], check=True, timeout=300)
    subprocess.run(["chroot", str(rootfs), "apt-get", "clean"], check=True, timeout=120)
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    try:
        subprocess.run([*podman(), "import", "--change", "ENV PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                        "--change", 'CMD ["python"]', "-", ROOTFS], stdin=tar.stdout, check=True,
                       capture_output=True, timeout=600)
    finally:
        if tar.stdout is not None:
            tar.stdout.close()
        tar.wait(timeout=600)
    shutil.rmtree(rootfs, ignore_errors=True)

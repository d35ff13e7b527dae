"""The Debian package on this machine: build (or reuse) it, lint it, install it with dpkg, check what it put
where, validate a real configuration, run a stretch of real video through it AS THE PACKAGE'S USER against
the real local stack, then remove, reinstall, upgrade in place and purge it and check nothing is left.

Needs root and dpkg (skipped otherwise, with the reason); everything else it needs it installs or builds.
Takes a few minutes (the package build is reused when its inputs did not change).
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

PKG = "vigint-edge"
USER = "vigint-edge"
VENV = Path("/usr/lib/vigint-edge")
MODEL = Path("/usr/share/vigint-edge/models/ssdlite_mobilenet_v2_coco")
ETC = Path("/etc/vigint-edge")
STATE = Path("/var/lib/vigint-edge")
UNIT = Path("/lib/systemd/system/vigint-edge.service")
CONFIG = ETC / "config.yaml"
#: Everything the package (or its maintainer scripts) may create; none of it may survive a purge.
FOOTPRINT = [VENV, MODEL.parent.parent, ETC, STATE, UNIT, Path("/usr/bin/vigint-edge"),
             Path("/usr/share/doc/vigint-edge"), Path("/usr/share/man/man1/vigint-edge.1.gz"),
             Path("/usr/share/lintian/overrides/vigint-edge"),
             Path("/etc/systemd/system/multi-user.target.wants/vigint-edge.service"),
             Path("/var/lib/systemd/deb-systemd-helper-enabled/vigint-edge.service.dsh-also"),
             Path("/var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/vigint-edge.service"),
             Path("/var/lib/systemd/deb-systemd-helper-masked/vigint-edge.service")]
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _require_root_and_dpkg() -> None:
    if os.geteuid() != 0:
        pytest.skip("installing a Debian package needs root (dpkg -i, adduser, runuser); run the test as root")
    if shutil.which("dpkg") is None or shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg is missing: this test installs a .deb and needs a Debian-based system")


def _run(cmd: list[str], check: bool = True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\n"
                             f"stderr:\n{proc.stderr[-3000:]}")
    return proc


def _status() -> str:
    """dpkg's status of the package: "install ok installed", "deinstall ok config-files", or ""."""
    return _run(["dpkg-query", "-W", "-f=${Status}", PKG], check=False).stdout.strip()


def _apt_install(*packages: str) -> None:
    missing = [p for p in packages if _run(["dpkg-query", "-W", "-f=${Status}", p], check=False)
               .stdout.strip() != "install ok installed"]
    if missing:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if _run(["apt-get", "install", "-y", "-q", *missing], check=False, env=env).returncode != 0:
            _run(["apt-get", "update", "-q"], env=env)
            _run(["apt-get", "install", "-y", "-q", *missing], env=env)


def _depends(deb: Path) -> list[str]:
    field = _run(["dpkg-deb", "-f", str(deb), "Depends"]).stdout
    return [item.split("(")[0].split("|")[0].strip() for item in field.split(",") if item.strip()]


def _purge() -> None:
    if _status():
        _run(["dpkg", "--purge", PKG])


def _install(deb: Path) -> None:
    _apt_install(*_depends(deb))
    _run(["dpkg", "-i", str(deb)])
    assert _status() == "install ok installed"


@pytest.fixture(scope="module")
def deb() -> Path:
    """The package, built by ``infra.deb`` (reused from .local/deb/ when built from the same inputs)."""
    _require_root_and_dpkg()
    from infra import deb as debbuild

    return debbuild.build()


@pytest.fixture(scope="module")
def installed(deb: Path):
    """The package installed with dpkg -i on a machine where it was not installed (purged first if it
    was); purged again at the end if a test left it installed."""
    _purge()
    started = time.monotonic()
    _install(deb)
    print(f"dpkg -i took {time.monotonic() - started:.0f} s")
    yield deb
    _purge()


@pytest.fixture(scope="module")
def creds(stack) -> dict:
    """A tenant and device provisioned on the local stack, as an operator would (once per module)."""
    return stack.provision("deb-tenant", "deb-nuc", recipients=["ops@deb-tenant.example"])


@pytest.fixture
def workdir():
    """A directory the service user can read (pytest's tmp_path is root-only)."""
    d = Path(tempfile.mkdtemp(prefix="vigint-deb-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _credentials_dir(workdir: Path, secret: str) -> Path:
    """What systemd's LoadCredential= gives the service: a directory only the service user can read,
    holding the file ``device-secret``."""
    creds = workdir / "credentials"
    creds.mkdir(mode=0o700)
    (creds / "device-secret").write_text(secret)
    (creds / "device-secret").chmod(0o400)
    uid, gid = pwd.getpwnam(USER).pw_uid, grp.getgrnam(USER).gr_gid
    for p in (creds, creds / "device-secret"):
        os.chown(p, uid, gid)
    creds.chmod(0o500)
    return creds


def _short_clip(video: Path, dest: Path, frames: int = 80) -> Path:
    """The first ``frames`` frames of ``video`` (vtest.avi: people walking from the start) as MJPEG .avi."""
    import cv2

    cap = cv2.VideoCapture(str(video))
    fps = cap.get(cv2.CAP_PROP_FPS) or 10.0
    ok, frame = cap.read()
    assert ok, f"cannot read {video}"
    out = cv2.VideoWriter(str(dest), cv2.VideoWriter_fourcc(*"MJPG"), fps, (frame.shape[1], frame.shape[0]))
    written = 0
    while ok and written < frames:
        out.write(frame)
        written += 1
        ok, frame = cap.read()
    out.release()
    cap.release()
    assert written == frames and dest.stat().st_size > 0
    dest.chmod(0o644)
    return dest


# ----------------------------------------------------------------------------------------------- tests

def test_files_user_and_permissions(installed):
    user = pwd.getpwnam(USER)
    group = grp.getgrnam(USER)
    assert user.pw_uid < 1000 and user.pw_gid == group.gr_gid, "a system user with its own group"
    assert user.pw_dir == str(STATE)
    assert user.pw_shell in ("/usr/sbin/nologin", "/bin/false", "/sbin/nologin")

    st = STATE.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (user.pw_uid, group.gr_gid, 0o750)
    st = ETC.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, group.gr_gid, 0o750), \
        "/etc/vigint-edge: root writes, the service group reads (dpkg-statoverride)"
    assert CONFIG.is_file()
    conffiles = _run(["dpkg-query", "-W", "-f=${Conffiles}", PKG]).stdout
    assert str(CONFIG) in conffiles

    wrapper = Path("/usr/bin/vigint-edge").read_text()
    assert wrapper.startswith("#!/bin/sh") and f"exec {VENV}/bin/python3 -I" in wrapper
    assert stat.S_IMODE(Path("/usr/bin/vigint-edge").stat().st_mode) == 0o755
    assert os.readlink(VENV / "bin" / "python3") == "/usr/bin/python3.11"
    assert sorted(p.name for p in (VENV / "bin").iterdir()) == ["python", "python3", "python3.11"]
    for f in ("model.xml", "model.bin", "labels.json", "model.json"):
        assert (MODEL / f).stat().st_size > 0
        assert stat.S_IMODE((MODEL / f).stat().st_mode) == 0o644
    assert UNIT.is_file()
    # Files owned by root and not writable by anyone else, everywhere the package installed something.
    listed = _run(["dpkg", "-L", PKG]).stdout.split("\n")
    for path in map(Path, filter(None, listed)):
        if path.is_symlink() or not path.exists() or path == ETC:
            continue
        st = path.lstat()
        assert st.st_uid == 0 and not st.st_mode & 0o022, f"{path}: owner {st.st_uid} mode {oct(st.st_mode)}"
    # postinst byte-compiled the venv (the package itself ships no .pyc).
    assert list((VENV / "lib").glob("python3.11/site-packages/vigint_edge/__pycache__/*.pyc"))
    # The packaged daemon finds the packaged model by itself.
    out = _run(["runuser", "-u", USER, "--", str(VENV / "bin" / "python3"), "-c",
                "from vigint_edge.detection.model_convert import default_model_path; print(default_model_path())"],
               env={"PATH": SYSTEM_PATH})
    assert out.stdout.strip() == str(MODEL / "model.xml")


def test_unit_verifies_and_is_hardened(installed):
    proc = _run(["systemd-analyze", "verify", str(UNIT)], check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "" and proc.stderr.strip() == "", \
        proc.stdout + proc.stderr
    proc = _run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(UNIT)], check=False)
    last = proc.stdout.strip().splitlines()[-1]
    print(last)
    exposure = float(last.split("exposure level for")[1].split(":")[1].split()[0])
    assert exposure <= 3.0, proc.stdout


def test_example_config_is_refused_then_real_config_checks(installed, stack, creds, workdir):
    # The shipped example must not pass as a configuration (CHANGE-ME placeholders).
    proc = _run(["vigint-edge", "check-config"], check=False, env={"PATH": SYSTEM_PATH})
    assert proc.returncode == 2 and "device.tenant_id" in proc.stderr, proc.stdout + proc.stderr

    _write_config(creds, stack)
    cred_dir = _credentials_dir(workdir, creds["secret"])
    proc = _run(["runuser", "-u", USER, "--", "vigint-edge", "check-config"],
                env={"PATH": SYSTEM_PATH, "CREDENTIALS_DIRECTORY": str(cred_dir)})
    assert proc.stdout.strip() == f"{CONFIG}: OK (1 camera(s))"
    assert creds["secret"] not in proc.stdout + proc.stderr


def _write_config(creds: dict, stack) -> None:
    CONFIG.write_text(
        f"""device:
  tenant_id: {creds['tenant_id']}
  device_id: {creds['device_id']}
  api_url: {stack.urls['edge_api']}
  key_version: {creds['key_version']}
cameras:
  - id: porch
    source: rtsp://127.0.0.1:1/none
events:
  pre_roll_s: 1
  post_roll_s: 2
"""
    )
    CONFIG.chmod(0o640)
    os.chown(CONFIG, 0, grp.getgrnam(USER).gr_gid)


def test_process_real_video_as_the_service_user(installed, stack, creds, vtest_video, workdir):
    from google.cloud import firestore

    _write_config(creds, stack)
    cred_dir = _credentials_dir(workdir, creds["secret"])
    clip = _short_clip(vtest_video, workdir / "vtest-80.avi")
    db = firestore.Client(project=stack.project)
    events = db.collection("tenants").document(creds["tenant_id"]).collection("events")
    before = {d.id for d in events.stream()}

    # Listen where systemd would ($NOTIFY_SOCKET) to see the daemon's READY=1 and watchdog pings.
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(workdir / "notify"))
    (workdir / "notify").chmod(0o666)
    env = {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8", "CREDENTIALS_DIRECTORY": str(cred_dir),
           "PUBSUB_EMULATOR_HOST": stack.env["PUBSUB_EMULATOR_HOST"],
           "NOTIFY_SOCKET": str(workdir / "notify"), "WATCHDOG_USEC": "1000000"}
    # Read as systemd does, while the daemon runs: a socket that nobody reads holds only ~10 datagrams.
    messages: list[str] = []
    notify.settimeout(0.2)
    reading = threading.Event()

    def read_notifications() -> None:
        while not reading.is_set():
            try:
                messages.append(notify.recv(4096).decode())
            except TimeoutError:
                continue
            except OSError:
                return

    reader = threading.Thread(target=read_notifications, daemon=True)
    reader.start()
    started = time.monotonic()
    proc = _run(["runuser", "-u", USER, "--", "vigint-edge", "process", "--video", str(clip),
                 "--config", str(CONFIG), "--camera", "porch", "--fast"], check=False, env=env, timeout=600)
    print(f"vigint-edge process: exit {proc.returncode} in {time.monotonic() - started:.0f} s")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert creds["secret"] not in proc.stdout + proc.stderr
    time.sleep(0.5)  # the last datagram (STOPPING=1) was sent before the process exited
    reading.set()
    reader.join(5)
    notify.close()
    assert messages and messages[0].startswith("READY=1\nSTATUS=watching 1 camera(s)"), messages
    assert "WATCHDOG=1" in messages, messages
    assert messages[-1] == "STOPPING=1", messages

    # The spool is the service user's, under the package's state directory, and was drained.
    spool = STATE / "spool"
    assert spool.stat().st_uid == pwd.getpwnam(USER).pw_uid

    deadline = time.monotonic() + 60
    new = []
    while time.monotonic() < deadline:
        new = [d.to_dict() for d in events.stream() if d.id not in before]
        if new:
            break
        time.sleep(0.5)
    assert new, "no event of the packaged daemon reached Firestore within 60 s"
    assert all(e.get("device_id") == creds["device_id"] for e in new), new
    assert any(e.get("camera_id") == "porch" for e in new), new


def test_remove_keeps_state_then_upgrade_then_purge_leaves_nothing(installed):
    deb = installed
    (ETC / "device-secret").write_text("not-a-real-secret")
    (ETC / "device-secret").chmod(0o600)
    (STATE / "spool").mkdir(exist_ok=True)
    marker = STATE / "spool" / "kept-on-remove"
    marker.write_text("x")

    # remove: programs go; configuration, state and the user stay.
    _run(["dpkg", "--remove", PKG])
    assert _status() == "deinstall ok config-files"
    assert not VENV.exists() and not Path("/usr/bin/vigint-edge").exists() and not MODEL.exists()
    assert CONFIG.exists() and (ETC / "device-secret").exists() and marker.exists()
    pwd.getpwnam(USER)

    # install again over the kept configuration, then "upgrade" in place (same version: prerm upgrade,
    # postinst configure <old-version>).
    _install(deb)
    assert marker.exists() and CONFIG.exists()
    _run(["dpkg", "-i", str(deb)])
    assert _status() == "install ok installed"
    assert list((VENV / "lib").glob("python3.11/site-packages/vigint_edge/__pycache__/*.pyc"))
    assert _run(["dpkg-statoverride", "--list", str(ETC)]).stdout.split()[:3] == ["root", USER, "750"]

    # purge: nothing left.
    _run(["dpkg", "--purge", PKG])
    assert _status() == ""
    left = [str(p) for p in FOOTPRINT if p.exists() or p.is_symlink()]
    assert not left, f"left behind after purge: {left}"
    with pytest.raises(KeyError):
        pwd.getpwnam(USER)
    with pytest.raises(KeyError):
        grp.getgrnam(USER)
    assert _run(["dpkg-statoverride", "--list", str(ETC)], check=False).stdout.strip() == ""


def test_lintian_reports_no_errors(deb: Path):
    """No lintian errors (the overrides in debian/vigint-edge.lintian-overrides carry their reasons)."""
    if shutil.which("lintian") is None:
        _apt_install("lintian")
    proc = _run(["lintian", "--fail-on", "error", str(deb)],
                check=False)
    errors = [ln for ln in proc.stdout.splitlines() if ln.startswith("E:")]
    assert proc.returncode == 0 and not errors, proc.stdout + proc.stderr

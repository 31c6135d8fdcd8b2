"""The CI scripts: Debian packages installed without leaving services enabled at boot, and the
wheel smoke test's list of commands."""

import os
import stat
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

FAKES = {
    # nothing is installed yet
    "dpkg-query": "#!/bin/sh\nexit 1\n",
    "sudo": '#!/bin/sh\nexec "$@"\n',
    # "installing" a package enables its service, as Debian's postinst scripts do
    "apt-get": """#!/bin/sh
echo "apt-get $*" >> "$FAKE_LOG"
[ "$1" = install ] || exit 0
for arg in "$@"; do
    case "$arg" in -*|install) continue;; esac
    mkdir -p "$TELEMREC_CI_ROOT/etc/systemd/system/multi-user.target.wants" "$TELEMREC_CI_ROOT/etc/rc2.d"
    ln -s "/lib/systemd/system/$arg.service" "$TELEMREC_CI_ROOT/etc/systemd/system/multi-user.target.wants/$arg.service"
    ln -s "../init.d/$arg" "$TELEMREC_CI_ROOT/etc/rc2.d/S01$arg"
    [ -x "$TELEMREC_CI_ROOT/usr/sbin/policy-rc.d" ] && echo "policy-rc.d present during install" >> "$FAKE_LOG"
done
""",
    "deb-systemd-helper": """#!/bin/sh
echo "deb-systemd-helper $*" >> "$FAKE_LOG"
rm -f "$TELEMREC_CI_ROOT"/etc/systemd/system/*.wants/"$2"
""",
    "update-rc.d": """#!/bin/sh
echo "update-rc.d $*" >> "$FAKE_LOG"
for link in "$TELEMREC_CI_ROOT"/etc/rc2.d/S??"$1"; do mv "$link" "$(dirname "$link")/K01$1"; done
""",
}


def test_debian_packages_leave_nothing_enabled_at_boot_that_was_not(tmp_path):
    root = tmp_path / "root"
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True)
    (root / "usr/sbin").mkdir(parents=True)
    (wants / "ssh.service").symlink_to("/lib/systemd/system/ssh.service")  # the admin's: stays
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in FAKES.items():
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    packages = tmp_path / "packages.txt"
    packages.write_text("# comment\nprometheus-node-exporter   # why\nslurmd\n")
    log = tmp_path / "log"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "TELEMREC_CI_ROOT": str(root),
           "TELEMREC_CI_PACKAGES": str(packages), "FAKE_LOG": str(log)}
    proc = subprocess.run(["bash", str(REPO / ".ci/debian_packages.sh")], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    calls = log.read_text().splitlines()
    assert "apt-get install -y -q --no-install-recommends prometheus-node-exporter slurmd" in calls
    assert calls.count("policy-rc.d present during install") == 2
    assert "deb-systemd-helper disable prometheus-node-exporter.service" in calls
    assert "deb-systemd-helper disable slurmd.service" in calls
    assert "update-rc.d prometheus-node-exporter disable" in calls and "update-rc.d slurmd disable" in calls
    assert not any("ssh" in call for call in calls)
    assert sorted(p.name for p in wants.iterdir()) == ["ssh.service"]
    assert not list((root / "etc/rc2.d").glob("S*"))
    assert not (root / "usr/sbin/policy-rc.d").exists()
    assert "disabled at boot what the install enabled" in proc.stdout

"""cjm's side of tests/integrations/test_cjm_plugin.py, run by Python >= 3.12 (.venv-py312).

Uses cjm's real ``PluginManager`` the way a cjm host does: validate the manifests
(``cjm-ctl validate``'s checks), discover them under ``$CJM_DATA_DIR/manifests``, load the
plugins (each in its own worker process, over HTTP), ask them, unload. Writes what cjm
returned as JSON to argv[1]; the test compares it with ``telemrec.snapshot`` in its own Python.

    cjm_host.py OUT.json WORKLOAD_TRACE
"""

import json
import os
import sys
import time
from pathlib import Path

from cjm_infra_plugin_system.plugin_interface import MonitorPlugin
from cjm_plugin_system.cli import _collect_manifest_warnings, _validate_manifest_dict
from cjm_plugin_system.core.manager import PluginManager


def ask(proxy):
    return {"status": proxy.get_system_status(), "processes": proxy.list_processes()}


def main(out_path, workload):
    result = {"validate": {}}
    for path in sorted((Path(os.environ["CJM_DATA_DIR"]) / "manifests").glob("*.json")):
        data = json.loads(path.read_text())
        result["validate"][path.name] = {"errors": _validate_manifest_dict(data),
                                         "warnings": _collect_manifest_warnings(data)}
    manager = PluginManager(plugin_interface=MonitorPlugin, sysmon_plugin_name="telemrec-replay")
    metas = {meta.name: meta for meta in manager.discover_manifests()}
    result["discovered"] = {name: {"category": m.category, "interface": m.interface, "module": m.manifest["module"],
                                   "class": m.manifest["class"]} for name, m in metas.items()}
    try:
        replay, live = metas["telemrec-replay"], metas["telemrec-live"]
        result["loaded"] = {
            # the manifest's default trace (--trace), held at +10 s
            "replay": manager.load_plugin(replay, {"speed": 0, "start": "+10s"}),
            # a second instance of the same plugin, on another trace, playing in real time
            "workload": manager.load_plugin(replay, {"trace": workload, "speed": 1, "start": "+5s", "loop": True},
                                            instance_id="workload"),
            "live": manager.load_plugin(live),
        }
        result["drift"] = {name: bool(getattr(m, "config_schema_drift", False)) for name, m in metas.items()}
        result["global_stats"] = manager._get_global_stats()   # what cjm's scheduler reads
        result["replay"] = ask(manager.get_plugin("telemrec-replay"))
        result["replay_config"] = manager.get_instance("telemrec-replay").proxy.get_current_config()
        workload = manager.get_instance("workload").proxy
        result["workload"] = [ask(workload)]
        time.sleep(0.6)
        result["workload"].append(ask(workload))
        result["live"] = ask(manager.get_plugin("telemrec-live"))
    finally:
        manager.unload_all()
    with open(out_path, "w") as f:
        json.dump(result, f, indent=1, allow_nan=False)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

"""Run by test_many.py in a process of its own (a LocalCluster leaves multiprocessing's resource
tracker running in the process that started it): the dask engine on a distributed cluster bound
to 127.0.0.1, compared with pandas, then `telemrec summary --scheduler` as a client of it.

    python dask_cluster_check.py TRACES_DIR   -> prints one JSON line of findings
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


def main(folder: str) -> dict:
    import distributed
    import pandas as pd

    from telemrec.analysis import load, summarize_traces

    paths = sorted(os.path.join(folder, p) for p in os.listdir(folder) if p.endswith(".h5"))
    found: dict = {}
    # one worker process (two threads): the traces are opened there, by path, as on a cluster
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, host="127.0.0.1", dashboard_address=None,
                                  processes=True) as cluster, distributed.Client(cluster) as client:
        ddf = load(paths, engine="dask", rates=True)
        got, want = ddf.compute(), load(paths, form="long", rates=True)
        pd.testing.assert_frame_equal(got, want)
        found["equal"] = got.attrs == want.attrs and len(got) > 0
        found["worker_pids"] = list(client.run(os.getpid).values())
        summary, base = summarize_traces(folder), summarize_traces(folder, engine="pandas")
        for name in ("traces", "hosts", "overall"):
            pd.testing.assert_frame_equal(getattr(summary, name), getattr(base, name))
        found["summary_equal"] = True
        cli = subprocess.run([sys.executable, "-m", "telemrec", "summary", folder, "--json", "--scheduler",
                              cluster.scheduler_address], capture_output=True, text=True, timeout=300)
        found["cli"] = json.loads(cli.stdout) if cli.returncode == 0 else cli.stderr
    found["pid"] = os.getpid()
    return found


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))

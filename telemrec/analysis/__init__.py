"""Analysis: traces into pandas, JUmPER's offline monitor and sessions, cjm snapshots,
summaries, plots and exports (docs/analysis.md).

Importing this package imports pandas; matplotlib and pyarrow load only when a plot
or a Parquet file is written.
"""

from telemrec.analysis.export import export
from telemrec.analysis.frames import load, read_series
from telemrec.analysis.jobsummary import TracesSummary, summarize_traces
from telemrec.analysis.jumper import export_jumper
from telemrec.analysis.offline import NodeInfo, OfflineMonitor
from telemrec.analysis.plot import plot_trace
from telemrec.analysis.rates import counter_rate
from telemrec.analysis.snapshots import ProcessStats, Snapshot, SystemStats, live_snapshot, snapshot
from telemrec.analysis.summary import Summary, summarize

__all__ = [
    "NodeInfo",
    "OfflineMonitor",
    "ProcessStats",
    "Snapshot",
    "Summary",
    "SystemStats",
    "TracesSummary",
    "counter_rate",
    "export",
    "export_jumper",
    "live_snapshot",
    "load",
    "plot_trace",
    "read_series",
    "snapshot",
    "summarize",
    "summarize_traces",
]
